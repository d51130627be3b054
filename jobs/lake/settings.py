"""Where things live and how Spark runs: every GENREC_* environment variable is read here, and only here.

Everything defaults to folders inside the working directory (GENREC_HOME), so `make demo` needs no
server and writes nothing into the user's home. Each setting can be overridden by an environment
variable (`ENVIRONMENT` lists them; the README's "Environment" section is written from it), which is
how tests point a run at a temporary folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# variable -> what it sets (default)
ENVIRONMENT = {
    "GENREC_HOME": "folder holding lakehouse/ and mlruns/ (the current folder; `--home` sets it)",
    "GENREC_LAKEHOUSE": "the Delta lakehouse folder (GENREC_HOME/lakehouse)",
    "GENREC_MLFLOW_URI": "MLflow tracking and registry URI (sqlite:///GENREC_HOME/mlruns/mlflow.db)",
    "GENREC_MLFLOW_ARTIFACTS": "MLflow artifact folder (GENREC_HOME/mlruns/artifacts)",
    "GENREC_CACHE": "caches: Delta jars, pip, benchmark data (the project's .cache/)",
    "GENREC_SPARK_MASTER": "Spark master URL (local[*])",
    "GENREC_SHUFFLE_PARTITIONS": "spark.sql.shuffle.partitions (8)",
    "GENREC_DRIVER_MEMORY": "spark.driver.memory (4g)",
    "GENREC_SPARK_UI": "true to serve the Spark UI (false)",
    "GENREC_DELTA_SNAPSHOT_PARTITIONS": "tasks Delta replays its log with (2)",
    "GENREC_FAISS_GPU": "0 to keep FAISS on the CPU on a GPU host (1)",
    "GENREC_DRIVER_ROWS": "the most rows a stage of the item path may collect to the driver (1000000)",
    "GENREC_DAG_PROFILE": "config profile of the DAGs' scheduled runs and the trigger form's default (demo)",
    "GENREC_DAG_DATASET": "dataset spec of the DAGs' scheduled runs and the trigger form's default (synthetic)",
    "GENREC_CRASH_AT": "tests only: exit hard at this point, after:STAGE or publish:registered|item_sid (unset)",
}


@dataclass(frozen=True)
class Settings:
    home: Path
    lakehouse: Path
    mlflow_uri: str
    mlflow_artifacts: Path
    cache: Path
    database: str = "genrec"
    spark_master: str = "local[*]"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    spark_ui: bool = False
    delta_snapshot_partitions: int = 2
    faiss_gpu: bool = True
    # The most rows a stage of the item path may collect to the driver (jobs/transforms/driver_rows.py).
    driver_rows: int = 1_000_000
    # What a scheduled DAG run (which has no trigger conf) processes: the DAG params' defaults.
    dag_profile: str = "demo"
    dag_dataset: str = "synthetic"
    # Crash injection for tests (jobs/lake/faults.py); empty in any real run.
    crash_at: str = ""

    @property
    def jars_dir(self) -> Path:
        return self.cache / "jars"

    @property
    def landing(self) -> Path:
        return self.lakehouse / "_landing"

    @property
    def staging(self) -> Path:
        return self.lakehouse / "_staging"

    def table_path(self, table: str) -> Path:
        return self.lakehouse / table

    def qualified(self, table: str) -> str:
        return f"{self.database}.{table}"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {raw!r}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("0", "1", "true", "false"):
        raise ValueError(f"{name} must be 0/1 or true/false, got {raw!r}")
    return raw in ("1", "true")


def load_settings() -> Settings:
    home = Path(os.environ.get("GENREC_HOME", os.getcwd())).resolve()
    lakehouse = Path(os.environ.get("GENREC_LAKEHOUSE", home / "lakehouse")).resolve()
    mlruns = home / "mlruns"
    return Settings(
        home=home, lakehouse=lakehouse,
        mlflow_uri=os.environ.get("GENREC_MLFLOW_URI", f"sqlite:///{mlruns / 'mlflow.db'}"),
        mlflow_artifacts=Path(os.environ.get("GENREC_MLFLOW_ARTIFACTS", mlruns / "artifacts")).resolve(),
        cache=Path(os.environ.get("GENREC_CACHE", REPO_ROOT / ".cache")).resolve(),
        spark_master=os.environ.get("GENREC_SPARK_MASTER", "local[*]"),
        shuffle_partitions=_int("GENREC_SHUFFLE_PARTITIONS", 8),
        driver_memory=os.environ.get("GENREC_DRIVER_MEMORY", "4g"),
        spark_ui=_flag("GENREC_SPARK_UI", False),
        delta_snapshot_partitions=_int("GENREC_DELTA_SNAPSHOT_PARTITIONS", 2),
        faiss_gpu=_flag("GENREC_FAISS_GPU", True),
        driver_rows=_int("GENREC_DRIVER_ROWS", 1_000_000),
        dag_profile=os.environ.get("GENREC_DAG_PROFILE", "demo"),
        dag_dataset=os.environ.get("GENREC_DAG_DATASET", "synthetic"),
        crash_at=os.environ.get("GENREC_CRASH_AT", "").strip())


def use_home(home: Path) -> None:
    """Points this process (and the Spark workers and subprocesses it starts) at `home`."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["GENREC_HOME"] = str(home.resolve())


def quiet_environment() -> None:
    """Environment defaults that keep libraries offline and out of the user's home folder."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / "airflow_home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
