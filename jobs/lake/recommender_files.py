"""A recommender on disk: the core's files (spec.json, weights.safetensors, catalogue.npz) plus the
run's extras (config, metrics, curve), written as one folder."""
from __future__ import annotations

from pathlib import Path

from genrec_core.model import recommenders as R
from jobs.lake import files

FILES = (R.SPEC_FILE, R.WEIGHTS_FILE, R.CATALOGUE_FILE)


def write_recommender(folder: Path, recommender, item_ids, item_tokens, extra: dict[str, bytes]) -> None:
    """Atomic: the folder appears whole or not at all."""
    files.write_folder(folder, {**R.to_files(recommender, item_ids, item_tokens), **extra})


def read_files(folder: Path) -> dict[str, bytes]:
    return files.read_folder(folder, FILES)


def read_recommender(folder: Path):
    """(recommender, item ids) from a folder that `write_recommender` wrote."""
    return R.from_files(read_files(folder))
