"""Training checkpoints on disk: whole or absent, refused for another map or shape, and the snapshot
that comes back resumes the loop exactly."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genrec_core.config import SasrecConfig, TrainConfig
from genrec_core.model import recommenders as R
from genrec_core.model.training import LoopConfig, fit
from jobs.lake import checkpoints

CFG = TrainConfig(model="sasrec", sasrec=SasrecConfig(d_model=16, d_ff=32, num_layers=1, num_heads=2, max_len=4))
LOOP = LoopConfig(batch_size=8, learning_rate=1e-2, weight_decay=0.0, warmup_steps=2, max_steps=12,
                  max_minutes=5.0, eval_every=4, patience=10)


def _run(rec, resume=None, max_steps=12, sink=None, ema_decay=0.0):
    seqs = [np.arange(i, i + 5) % 10 for i in range(20)]
    loop = dataclasses.replace(LOOP, max_steps=max_steps, ema_decay=ema_decay)
    return fit(rec.module, rec.loss, rec.examples(seqs), loop, seed=1,
               device="cpu", validate=lambda: {"recall@10": float(rec.module.items.weight.detach().sum())},
               checkpoint=sink, resume=resume)


@pytest.mark.parametrize("ema_decay", [0.0, 0.8])
def test_a_saved_checkpoint_resumes_exactly(tmp_path, ema_decay):
    spec = R.make_spec(CFG, (10,), 10, "m1")
    path = tmp_path / "ckpt"
    straight = R.build(spec, np.arange(10)[:, None], 0)
    _run(straight, ema_decay=ema_decay)
    first = R.build(spec, np.arange(10)[:, None], 0)
    _run(first, max_steps=8, ema_decay=ema_decay,
         sink=lambda snap: checkpoints.save(path, snap, spec) if snap.state.step == 8 and not snap.state.stopped_by
         else None)
    snap = checkpoints.load(path, spec)
    assert snap is not None and snap.state.step == 8 and (snap.averaged is not None) == bool(ema_decay)
    again = R.build(spec, np.arange(10)[:, None], 5)
    _run(again, resume=snap, ema_decay=ema_decay)
    for k, v in straight.module.state_dict().items():
        assert torch.equal(v, again.module.state_dict()[k]), k
    if ema_decay:
        with pytest.raises(ValueError, match="no weight average"):
            _run(R.build(spec, np.arange(10)[:, None], 5), resume=dataclasses.replace(snap, averaged=None),
                 ema_decay=ema_decay)


def test_a_checkpoint_for_another_map_or_shape_is_refused(tmp_path):
    spec = R.make_spec(CFG, (10,), 10, "m1")
    rec = R.build(spec, np.arange(10)[:, None], 0)
    _run(rec, max_steps=4, sink=lambda snap: checkpoints.save(tmp_path / "c", snap, spec))
    with pytest.raises(R.SpecMismatch, match="map_version: saved 'm1', this run 'm2'"):
        checkpoints.load(tmp_path / "c", {**spec, "map_version": "m2"})
    bigger = R.make_spec(dataclasses.replace(CFG, sasrec=dataclasses.replace(CFG.sasrec, d_model=32)), (10,), 10, "m1")
    with pytest.raises(R.SpecMismatch, match="sizes"):
        checkpoints.load(tmp_path / "c", bigger)


def test_no_checkpoint_and_a_half_written_one_read_as_none(tmp_path):
    spec = R.make_spec(CFG, (10,), 10, "m1")
    assert checkpoints.load(tmp_path / "none", spec) is None
    (tmp_path / "c.part").mkdir()
    (tmp_path / "c.part" / "weights.safetensors").write_bytes(b"half")
    assert checkpoints.load(tmp_path / "c", spec) is None
    checkpoints.remove(tmp_path / "c")
    assert not (tmp_path / "c.part").exists()
