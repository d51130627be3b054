"""MLflow: the experiment, runs and registered models of genrec.

Artifacts are folders of npz / safetensors / json files registered as model versions; nothing is
pickled. Versions carry a fingerprint tag so that a rerun on the same inputs finds the version it
registered before instead of adding a duplicate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

EXPERIMENT = "genrec"
TOKENIZER_MODEL = "genrec-tokenizer"
RECOMMENDER_MODEL = "genrec-recommender"


def client(settings):
    from jobs.lake.settings import quiet_environment

    quiet_environment()
    import mlflow
    from mlflow import MlflowClient

    Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    c = MlflowClient()
    if c.get_experiment_by_name(EXPERIMENT) is None:
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        c.create_experiment(EXPERIMENT, artifact_location=settings.mlflow_artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return c


def find_version(c, name: str, fingerprint: str):
    """The registered version of `name` tagged with this fingerprint, or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = c.search_model_versions(f"name='{name}' and tag.fingerprint='{fingerprint}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def register_folder(c, name: str, folder: Path, fingerprint: str, params: dict, metrics: dict,
                    tags: dict, run_name: str) -> tuple[str, str]:
    """Logs `folder` as a run's artifacts and registers it as a new version of `name`.
    Returns (model version, run id)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({mlflow_key(k): float(v) for k, v in metrics.items()})
        mlflow.set_tags({**tags, "fingerprint": fingerprint})
        mlflow.log_artifacts(str(folder), artifact_path="model")
    try:
        c.create_registered_model(name)
    except MlflowException:
        pass  # already registered
    mv = c.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                tags={**tags, "fingerprint": fingerprint})
    return str(mv.version), run.info.run_id


def mlflow_key(name: str) -> str:
    # MLflow metric names cannot hold '@'; "recall@10" is logged as "recall_at_10".
    return name.replace("@", "_at_")


def run_metrics(c, run_id: Optional[str]) -> dict:
    metrics = dict(c.get_run(run_id).data.metrics) if run_id else {}
    return {k.replace("_at_", "@"): v for k, v in metrics.items()}



def download_version(c, name: str, version: str, dst: Path) -> Path:
    """The files of registered version `version` of `name`, copied into dst once (a later call reuses them)."""
    import shutil

    import mlflow

    dst = Path(dst)
    if dst.is_dir():
        return dst
    tmp = dst.with_name(dst.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=c.get_model_version(name, str(version)).source,
                                                     dst_path=str(tmp)))
    local.rename(dst)  # the artifact folder itself, whole, or nothing
    shutil.rmtree(tmp, ignore_errors=True)
    return dst
