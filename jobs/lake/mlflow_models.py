"""MLflow: the experiment, runs and registered models of genrec.

A model version is an MLflow pyfunc logged from code (jobs/serving/*_model.py) whose one artifact
is a folder of npz / safetensors / json files; nothing is pickled. Versions carry a fingerprint tag
so that a rerun on the same inputs finds the version it registered before instead of adding a
duplicate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

EXPERIMENT = "genrec"
TOKENIZER_MODEL = "genrec-tokenizer"
CHAMPION, CHALLENGER = "champion", "challenger"
SERVING = Path(__file__).resolve().parent.parent / "serving"
CODE = {"tokenizer": SERVING / "tokenizer_model.py", "recommender": SERVING / "recommender_model.py"}


def recommender_model(kind: str) -> str:
    """Each recommender kind is its own registered model: genrec-recommender-sid-item, -sasrec, ..."""
    return "genrec-recommender-" + kind.replace("_", "-")


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
                    tags: dict, run_name: str, code: str, extra_artifacts: Optional[dict] = None,
                    curves: Optional[list[dict]] = None, signature=None) -> tuple[str, str]:
    """Logs `folder` as the artifact of a pyfunc built from CODE[code] and registers it as a new
    version of `name`. `curves` are logged as step-indexed metrics. Returns (model version, run id)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({mlflow_key(k): float(v) for k, v in metrics.items()})
        for point in curves or ():
            mlflow.log_metrics({mlflow_key(k): float(v) for k, v in point.items() if k != "step"
                                and v == v}, step=int(point["step"]))
        mlflow.set_tags({**tags, "fingerprint": fingerprint})
        for local in (extra_artifacts or {}).values():
            mlflow.log_artifact(str(local))
        info = mlflow.pyfunc.log_model(name="model", python_model=str(CODE[code]),
                                       artifacts={"files": str(folder)}, pip_requirements=["genrec"],
                                       signature=signature)
    try:
        c.create_registered_model(name)
    except MlflowException:
        pass  # already registered
    mv = c.create_model_version(name, source=info.model_uri, run_id=run.info.run_id,
                                tags={**tags, "fingerprint": fingerprint})
    return str(mv.version), run.info.run_id


def tokenizer_signature(dim: int, levels: int):
    """float32 vectors [n, dim] in, int64 codes [n, levels] out."""
    import numpy as np
    from mlflow.models import infer_signature

    return infer_signature(np.zeros((2, dim), np.float32), np.zeros((2, levels), np.int64))


def recommender_signature():
    """A DataFrame with a `history` column of item-id lists in; top-k item-id lists out; params k and
    exclude_history."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    return ModelSignature(inputs=Schema([ColSpec(Array(DataType.string), "history")]),
                          outputs=Schema([ColSpec(Array(DataType.string), "items")]),
                          params=ParamSchema([ParamSpec("k", DataType.long, 10),
                                              ParamSpec("exclude_history", DataType.boolean, False)]))


def alias_version(c, name: str, alias: str):
    """The version of `name` holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def crown(c, name: str, version: str) -> None:
    """`version` becomes the champion of `name`; a challenger alias on that same version goes, so a
    version never carries both (a tokenizer is the challenger until its recommender wins)."""
    c.set_registered_model_alias(name, CHAMPION, str(version))
    challenger = alias_version(c, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        c.delete_registered_model_alias(name, CHALLENGER)


def promote(c, name: str, version: str, metric: str, value: float, margin: float) -> tuple[str, str]:
    """Gives `version` the alias champion when its validation `metric` beats the champion's by more
    than `margin` (or there is no champion), else challenger. Returns (alias, reason)."""
    current = alias_version(c, name, CHAMPION)
    if current is not None and str(current.version) == str(version):
        return CHAMPION, f"version {version} is already the champion"
    if current is None:
        alias, reason = CHAMPION, "there was no champion"
    else:
        best = run_metrics(c, current.run_id).get("valid_" + metric)
        if best is None or value > best + margin:
            alias = CHAMPION
            reason = (f"valid {metric} {value:.4f} beats champion v{current.version}'s "
                      f"{'(none)' if best is None else f'{best:.4f}'} by more than {margin}")
        else:
            alias = CHALLENGER
            reason = (f"valid {metric} {value:.4f} does not beat champion v{current.version}'s {best:.4f} "
                      f"by more than {margin}; champion kept")
    if alias == CHAMPION:
        crown(c, name, version)
    else:
        c.set_registered_model_alias(name, alias, str(version))
    return alias, reason


def mlflow_key(name: str) -> str:
    # MLflow metric names cannot hold '@'; "recall@10" is logged as "recall_at_10".
    return name.replace("@", "_at_")


def run_metrics(c, run_id: Optional[str]) -> dict:
    metrics = dict(c.get_run(run_id).data.metrics) if run_id else {}
    return {k.replace("_at_", "@"): v for k, v in metrics.items()}



def download_version(c, name: str, version: str, dst: Path) -> Path:
    """The files folder of registered version `version` of `name`, copied into dst once (a later call
    reuses it)."""
    import shutil

    import mlflow

    dst = Path(dst)
    if not dst.is_dir():
        tmp = dst.with_name(dst.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=c.get_model_version(name, str(version)).source,
                                                         dst_path=str(tmp)))
        local.rename(dst)  # the artifact folder itself, whole, or nothing
        shutil.rmtree(tmp, ignore_errors=True)
    return files_folder(dst)


def files_folder(model_dir: Path) -> Path:
    """The folder `register_folder` logged, inside a downloaded pyfunc model (MLmodel names its path)."""
    from mlflow.models import Model

    mlmodel = Path(model_dir) / "MLmodel"
    if not mlmodel.is_file():
        return Path(model_dir)  # a plain artifact folder
    artifacts = Model.load(str(mlmodel)).flavors["python_function"].get("artifacts", {})
    return Path(model_dir) / artifacts["files"]["path"]


def list_versions(c) -> list[dict]:
    """Every version of every genrec model, newest first per model, with aliases and key metrics."""
    from datetime import datetime, timezone

    rows = []
    for model in sorted(c.search_registered_models(), key=lambda m: m.name):
        if not model.name.startswith("genrec-"):
            continue
        for found in sorted(c.search_model_versions(f"name='{model.name}'"), key=lambda v: -int(v.version)):
            v = c.get_model_version(model.name, found.version)  # a search result carries no aliases
            metrics = run_metrics(c, v.run_id)
            rows.append({"model": model.name, "version": str(v.version), "aliases": ",".join(sorted(v.aliases)),
                         "recall@10": metrics.get("recall@10"), "ndcg@10": metrics.get("ndcg@10"),
                         "valid_recall@10": metrics.get("valid_recall@10"),
                         "map_version": v.tags.get("map_version"), "data_version": v.tags.get("data_version"),
                         "created": datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc)
                         .strftime("%Y-%m-%d %H:%M")})
    return rows
