"""Shared fixtures. Environment is pinned before anything imports Spark, MLflow or Airflow, so tests
never touch the user's home folder or the project's own lakehouse."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="genrec-test-"))

os.environ["GENREC_HOME"] = str(_SESSION_HOME)
os.environ.pop("GENREC_LAKEHOUSE", None)
os.environ.pop("GENREC_MLFLOW_URI", None)
os.environ.pop("GENREC_MLFLOW_ARTIFACTS", None)
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["GENREC_SHUFFLE_PARTITIONS"] = "2"
os.environ["GENREC_DRIVER_MEMORY"] = "2g"
for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "SPARK_LOCAL_IP": "127.0.0.1", "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW__API__HOST": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ[key] = value

# py4j logs from __del__ after pytest has closed its streams; that noise is not a failure.
logging.getLogger("py4j").setLevel(logging.WARNING)


def pytest_addoption(parser):
    parser.addoption("--backfill-twice", action="store_true",
                     help="real-server Airflow test: repeat the backfill and compare the tables (adds ~15 min; "
                          "`make test-airflow` sets it)")
    parser.addoption("--crash-chain", action="store_true",
                     help="crash safety: kill the pipeline at every stage boundary and twice inside publish, "
                          "then compare with an uninterrupted run (~9 min; `make test-crash` sets it)")


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def spark(session_home):
    from jobs.lake.settings import load_settings
    from jobs.lake.spark_session import get_spark

    session = get_spark(load_settings(), app_name="genrec-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_config():
    from genrec_core.config import load_config

    return load_config("tiny")


@pytest.fixture(scope="module")
def ctx(spark, tiny_config):
    from datetime import datetime, timezone

    from jobs.lake.settings import load_settings
    from jobs.stages.context import RunContext

    return RunContext(settings=load_settings(), config=tiny_config,
                      logical_time=datetime(2026, 3, 1, tzinfo=timezone.utc), _spark=spark)


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    path = SHARED_DATA / "amazon2014_p5" / "beauty"
    if not (path / "sequential_data.txt").is_file():
        pytest.skip(f"real dataset not present at {path} (research data lives in ../shared/data)")
    return path


def genrec_cli() -> list[str]:
    return [sys.executable, "-m", "jobs.cli"]
