"""What every stage receives: settings, the resolved config, the logical time, and a lazy Spark session."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional

from genrec_core.config import PipelineConfig
from jobs.settings import Settings


@dataclass
class RunContext:
    settings: Settings
    config: PipelineConfig
    # The run's logical time (Airflow's logical date, or the CLI's start); stamped on published rows only.
    logical_time: datetime
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Daily mode of the clean stage: rewrite only this date's partitions (None: clean everything).
    partition_date: Optional[date] = None
    _spark: Optional[Any] = None

    @property
    def spark(self):
        if self._spark is None:
            from jobs.spark import get_spark

            self._spark = get_spark(self.settings)
        return self._spark

    @property
    def dataset_key(self) -> str:
        """Short stable name for the dataset spec, used for landing folders and audit keys."""
        ds = self.config.data.dataset
        digest = hashlib.sha256(ds.encode()).hexdigest()[:8]
        return "synthetic" if ds == "synthetic" else f"p5-{digest}"


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
