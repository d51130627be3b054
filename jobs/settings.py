"""Where things live: the lakehouse, the MLflow store, caches and homes.

Everything defaults to folders inside the working directory (GENREC_HOME), so `make demo` needs no
server and writes nothing into the user's home. Each path can be overridden by an environment
variable, which is how tests point a run at a temporary folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    home: Path
    lakehouse: Path
    mlflow_uri: str
    mlflow_artifacts: Path
    cache: Path
    database: str = "genrec"
    spark_master: str = "local[*]"

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


def load_settings() -> Settings:
    home = Path(os.environ.get("GENREC_HOME", os.getcwd())).resolve()
    lakehouse = Path(os.environ.get("GENREC_LAKEHOUSE", home / "lakehouse")).resolve()
    mlruns = home / "mlruns"
    mlflow_uri = os.environ.get("GENREC_MLFLOW_URI", f"sqlite:///{mlruns / 'mlflow.db'}")
    artifacts = Path(os.environ.get("GENREC_MLFLOW_ARTIFACTS", mlruns / "artifacts")).resolve()
    cache = Path(os.environ.get("GENREC_CACHE", REPO_ROOT / ".cache")).resolve()
    master = os.environ.get("GENREC_SPARK_MASTER", "local[*]")
    return Settings(home=home, lakehouse=lakehouse, mlflow_uri=mlflow_uri,
                    mlflow_artifacts=artifacts, cache=cache, spark_master=master)


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
