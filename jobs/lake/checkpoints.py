"""Training checkpoints on disk: GENREC_HOME/checkpoints/<fingerprint>/, one per training run.

A checkpoint is written after every validation, whole or not at all (a folder renamed into place),
and removed once its model version is registered. Weights are safetensors; the optimiser and RNG
state are tensors and plain numbers loaded with `weights_only=True`, so loading runs no pickled code.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from genrec_core.model.recommenders import check_compatible
from genrec_core.model.training import Snapshot, TrainState


AVERAGED = "averaged.safetensors"  # the weight average's state, with train.ema_decay


def folder(settings, fingerprint: str) -> Path:
    return settings.home / "checkpoints" / fingerprint


def save(path: Path, snapshot: Snapshot, spec: dict) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(snapshot.weights, str(tmp / "weights.safetensors"))
    save_file(snapshot.best_weights, str(tmp / "best.safetensors"))
    if snapshot.averaged is not None:
        save_file(snapshot.averaged, str(tmp / AVERAGED))
    torch.save({"optimizer": snapshot.optimizer, "scheduler": snapshot.scheduler, "torch_rng": snapshot.torch_rng},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"spec": spec, "state": snapshot.state.to_json()}, indent=1))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load(path: Path, spec: dict) -> Optional[Snapshot]:
    """The snapshot at `path`, or None if there is none; SpecMismatch if it was written for another
    map version or model shape."""
    import torch
    from safetensors.torch import load_file

    if not (path / "state.json").exists():
        old = path.with_name(path.name + ".old")  # a crash between the two renames of `save`
        if not (old / "state.json").exists():
            return None
        path = old
    saved = json.loads((path / "state.json").read_text())
    check_compatible(saved["spec"], spec)
    extra = torch.load(path / "optimizer.pt", weights_only=True)
    return Snapshot(TrainState.from_json(saved["state"]), load_file(str(path / "weights.safetensors")),
                    load_file(str(path / "best.safetensors")), extra["optimizer"], extra["scheduler"],
                    extra["torch_rng"], load_file(str(path / AVERAGED)) if (path / AVERAGED).exists() else None)


def remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".old"), path.with_name(path.name + ".part")):
        shutil.rmtree(p, ignore_errors=True)
