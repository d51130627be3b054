from __future__ import annotations

import pytest

from genrec_core.config import (
    PROFILES,
    ConfigError,
    PipelineConfig,
    from_dict,
    load_config,
    parse_override,
)


def test_defaults_round_trip():
    assert from_dict(PipelineConfig, PipelineConfig().to_dict()) == PipelineConfig()
    cfg = load_config("cpu")
    assert load_config("demo", file_data=cfg.to_dict()) == cfg


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_resolve(profile):
    assert isinstance(load_config(profile), PipelineConfig)


def test_unknown_key_fails_with_its_path():
    with pytest.raises(ConfigError, match=r"train\.: unknown key\(s\) \['lr'\]"):
        load_config(overrides=("train.lr=0.1",))


def test_wrong_type_fails():
    with pytest.raises(ConfigError, match="tokenize.levels: expected int"):
        load_config(file_data={"tokenize": {"levels": "three"}})


def test_overrides_and_frozen():
    cfg = load_config("tiny", overrides=("train.max_steps=7", "data.dataset=p5:/x", "eval.ks=[1,2]"))
    assert (cfg.train.max_steps, cfg.data.dataset, cfg.eval.ks) == (7, "p5:/x", (1, 2))
    with pytest.raises(Exception):
        cfg.train.max_steps = 3  # type: ignore[misc]


def test_validation():
    with pytest.raises(ConfigError, match="num_beams"):
        load_config(overrides=("eval.num_beams=3",))
    for bad in (("train.members=0",), ("train.members=2", "train.model=sasrec")):
        with pytest.raises(ConfigError, match=r"train\.members"):
            load_config(overrides=bad)
    assert load_config(overrides=("train.members=2",)).train.members == 2
    for bad in ("train.ema_decay=1", "train.ema_decay=-0.5"):
        with pytest.raises(ConfigError, match=r"train\.ema_decay"):
            load_config(overrides=(bad,))
    # data.dataset is checked against the layouts in jobs.sources.datasets (tests/e2e/test_dataset_layouts.py).
    assert parse_override("a.b=[1]") == {"a": {"b": [1]}}


def test_sequence_settings_are_validated():
    from dataclasses import replace

    from genrec_core.config import ConfigError, PipelineConfig, validate

    cfg = PipelineConfig()
    validate(cfg)
    seq = lambda **kw: replace(cfg, sequences=replace(cfg.sequences, **kw))  # noqa: E731
    validate(seq(split="temporal", temporal_cutoff="2026-01-01T00:00:00"))
    for bad in (seq(split="random"), seq(split="temporal"), seq(split="temporal", temporal_cutoff="soon"),
                seq(max_len=1), replace(cfg, clean=replace(cfg.clean, kcore=-1))):
        with pytest.raises(ConfigError):
            validate(bad)
