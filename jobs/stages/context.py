"""What every stage receives: settings, the resolved config, the logical time, and a lazy Spark session."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional

from genrec_core.config import PipelineConfig
from jobs.lake.settings import Settings


@dataclass
class RunContext:
    settings: Settings
    config: PipelineConfig
    # The run's logical time (Airflow's logical date, or the CLI's start); stamped on published rows only.
    logical_time: datetime
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Daily mode of the ingest stage: rewrite only this date's partitions (None: clean everything).
    partition_date: Optional[date] = None
    # The map version this run tokenized, when gate and publish run as separate tasks (Airflow's XCom).
    expected_map_version: Optional[str] = None
    _spark: Optional[Any] = None

    @property
    def spark(self):
        if self._spark is None:
            from jobs.lake.spark_session import get_spark

            self._spark = get_spark(self.settings)
        return self._spark
