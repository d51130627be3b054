"""A tokenizer on disk: the core's byte files (codebooks.npz, tokenizer.json) plus metrics.json, written as one folder."""
from __future__ import annotations

import json
from pathlib import Path

from genrec_core.quantize import base
from jobs.lake import files

METRICS_FILE = "metrics.json"
# How the staged map came about (mode, reason, parent, counts, churn); read by gate and publish.
LIFECYCLE_FILE = "lifecycle.json"


def write_tokenizer(folder: Path, tokenizer, meta: dict, metrics: dict, lifecycle: dict | None = None) -> None:
    """Atomic: the folder appears whole or not at all."""
    content = dict(base.to_files(tokenizer, meta))
    content[METRICS_FILE] = json.dumps(metrics, indent=2, sort_keys=True).encode("utf-8")
    if lifecycle is not None:
        content[LIFECYCLE_FILE] = json.dumps(lifecycle, indent=2, sort_keys=True).encode("utf-8")
    files.write_folder(folder, content)


def has_tokenizer(folder: Path) -> bool:
    return (Path(folder) / base.ARRAYS_FILE).is_file() and (Path(folder) / base.HEADER_FILE).is_file()


def read_tokenizer(folder: Path):
    return base.from_files(files.read_folder(folder, (base.ARRAYS_FILE, base.HEADER_FILE)))


def read_header(folder: Path) -> dict:
    return json.loads((Path(folder) / base.HEADER_FILE).read_text())


def read_metrics(folder: Path) -> dict:
    return json.loads((Path(folder) / METRICS_FILE).read_text())


def read_lifecycle(folder: Path) -> dict:
    path = Path(folder) / LIFECYCLE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def registered_tokenizer(settings, version: str):
    """Registered version `version` of genrec-tokenizer, downloaded once into the staging folder."""
    from jobs.lake import mlflow_models

    folder = mlflow_models.download_version(mlflow_models.client(settings), mlflow_models.TOKENIZER_MODEL,
                                            str(version), settings.staging / "published_tokenizer" / str(version))
    return read_tokenizer(folder)
