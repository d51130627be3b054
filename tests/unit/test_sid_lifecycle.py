"""New items placed under taken SIDs, refit labels aligned to the published map, and churn."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectors import clustered

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.sid_lifecycle import (
    AlignmentUnsupported,
    Evidence,
    ModeError,
    align_labels,
    align_tokenizer,
    churn,
    decide_mode,
    dedup_codebook_size,
    expected_collision_rate,
    new_item_collision_rate,
    next_free_digit,
    place_new_items,
    relabel_level,
)

FAST = settings(max_examples=40, deadline=None)


def _unique_rows(codes: np.ndarray) -> bool:
    return len({tuple(r) for r in codes.tolist()}) == len(codes)


@FAST
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(0, 40))
def test_free_digits_never_reuse_a_taken_sid(seed, n_new, n_taken):
    rng = np.random.default_rng(seed)
    prefixes = rng.integers(0, 3, (n_taken, 2))
    taken = np.concatenate([prefixes, np.zeros((n_taken, 1), np.int64)], axis=1)
    taken[:, 2] = [sum((prefixes[:i] == p).all(1)) for i, p in enumerate(prefixes)]  # a valid old map
    semantic = rng.integers(0, 3, (n_new, 2))
    placed = next_free_digit(semantic, rng.permutation(n_new), taken, dedup_size=1 << 30)
    assert (placed.codes[:, :2] == semantic).all()  # the semantic code is the tokenizer's, untouched
    assert _unique_rows(np.concatenate([taken, placed.codes]))
    assert len(placed.overflow) == 0


def test_free_digit_fills_holes_first_and_reports_overflow():
    taken = np.array([[1, 1, 0], [1, 1, 2]])
    placed = next_free_digit(np.array([[1, 1], [1, 1], [2, 0]]), np.array([0, 1, 2]), taken, dedup_size=3)
    assert placed.codes.tolist() == [[1, 1, 1], [1, 1, 3], [2, 0, 0]]
    assert placed.overflow.tolist() == [1]  # digit 3 does not fit a dedup codebook of 3


@pytest.mark.parametrize("strategy", ["rrs", "ecm", "cap_reassign"])
def test_unique_strategies_place_new_items_on_free_sids_only(strategy):
    cfg = dataclasses.replace(TokenizeConfig(), quantizer="rq_kmeans", codebook_size=4, levels=2, niter=5,
                              collisions=strategy, cap=1)
    x = clustered(60, 8, 0)
    tok = base.fit("rq_kmeans", x, cfg, seed=1)
    old = tok.encode(x[:40])
    taken = np.unique(old, axis=0)  # the published map's SIDs
    new = x[40:]
    placed = place_new_items(strategy, tok, new, np.arange(len(new)), taken, cfg)
    ok = np.setdiff1d(np.arange(len(new)), placed.overflow)
    codes = placed.codes[ok]
    assert _unique_rows(np.concatenate([taken, codes]))


@FAST
@given(st.integers(0, 10_000), st.integers(2, 12), st.integers(1, 200))
def test_alignment_never_loses_agreement(seed, size, n):
    rng = np.random.default_rng(seed)
    old = rng.integers(0, size, n)
    # A refit that mostly finds the same clusters under other labels, plus noise.
    hidden = rng.permutation(size)
    new = np.where(rng.random(n) < 0.8, hidden[old], rng.integers(0, size, n))
    relabel = align_labels(old, new, size)
    assert sorted(relabel.tolist()) == list(range(size))  # a permutation: codes stay distinct
    assert (relabel[new] == old).sum() >= (new == old).sum()


def test_alignment_recovers_a_pure_relabelling():
    old = np.array([0, 0, 1, 2, 2, 2, 3])
    perm = np.array([2, 3, 0, 1])
    assert (align_labels(old, perm[old], 4)[perm[old]] == old).all()


def test_churn_shares():
    old = np.array([[1, 2, 0], [1, 3, 0], [4, 4, 0], [5, 5, 1]])
    new = np.array([[1, 2, 0], [1, 3, 1], [4, 5, 0], [6, 5, 1]])
    assert churn(old, new, semantic_levels=2) == {"churn_full": 0.75, "churn_prefix": 0.5, "churn_first": 0.25,
                                                  "compared": 4}
    assert churn(old[:0], new[:0], 2)["churn_full"] == 0.0


def _small_cfg(**kw):
    return dataclasses.replace(TokenizeConfig(), **{"codebook_size": 8, "levels": 3, "niter": 8, **kw})


@pytest.mark.parametrize("quantizer", ["rq_kmeans", "faiss_rq", "rq_kmeans_balanced"])
def test_relabelling_a_level_renames_its_codes_and_nothing_else(quantizer):
    x = clustered(300, 16, 3)
    tok = base.fit(quantizer, x, _small_cfg(), seed=2)
    relabel = np.random.default_rng(0).permutation(tok.level_sizes[1])
    moved = relabel_level(tok, 1, relabel)
    before, after = tok.encode(x), moved.encode(x)
    assert (after[:, 1] == relabel[before[:, 1]]).all()
    assert (after[:, [0, 2]] == before[:, [0, 2]]).all()
    np.testing.assert_allclose(moved.decode(after), tok.decode(before), rtol=1e-6, atol=1e-6)


def test_gaoq_cannot_be_aligned_and_says_how_to_go_on():
    tok = base.fit("gaoq", clustered(200, 16, 1), _small_cfg(levels=2), seed=1)
    with pytest.raises(AlignmentUnsupported, match="tokenize.align=false"):
        relabel_level(tok, 0, np.arange(8))


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 1_000))
def test_an_aligned_refit_never_churns_more_than_the_plain_one(seed):
    cfg = _small_cfg()
    x_old = clustered(400, 16, 5)
    x_new = np.concatenate([x_old, clustered(40, 16, 5, noise_seed=seed)])
    old = base.fit("rq_kmeans", x_old, cfg, seed=1).encode(x_old)
    plain = base.fit("rq_kmeans", x_new, cfg, seed=seed + 2)
    aligned, levels = align_tokenizer(plain, x_old, old)
    assert levels == [0, 1, 2]
    before, after = plain.encode(x_old), aligned.encode(x_old)
    for level in range(3):
        assert (after[:, level] == old[:, level]).sum() >= (before[:, level] == old[:, level]).sum()
    assert churn(old, after, 3)["churn_first"] <= churn(old, before, 3)["churn_first"]


def test_a_warm_start_keeps_the_codes_of_an_unchanged_catalogue():
    cfg = _small_cfg(niter=30)  # converged: a warm start has nowhere to go
    x = clustered(400, 16, 5)
    first = base.fit("rq_kmeans", x, cfg, seed=1)
    again = base.fit("rq_kmeans", x, cfg, seed=9, warm_start=first)
    cold = base.fit("rq_kmeans", x, cfg, seed=9)
    assert churn(first.encode(x), again.encode(x), 3)["churn_full"] == 0.0
    assert churn(first.encode(x), cold.encode(x), 3)["churn_first"] > 0.5  # labels fall where they may


def test_dedup_codebook_leaves_headroom():
    assert dedup_codebook_size(8, 0.25) == 10
    assert dedup_codebook_size(1, 0.0) == 1
    assert dedup_codebook_size(0, 0.5) == 1


def test_collision_rates_seen_by_new_items():
    assert expected_collision_rate(np.array([1, 1, 2, 4])) == 1 - 2 / 8
    assert expected_collision_rate(np.array([], dtype=np.int64)) == 0.0
    taken = np.array([[0, 0, 0], [1, 1, 0]])
    # [0,0] is held; [2,2] is free for the first of two new items, held for the second.
    assert new_item_collision_rate(np.array([[0, 0], [2, 2], [2, 2]]), np.array([0, 1, 2]), taken) == 2 / 3


FIT = {"fit_recon": 0.2, "exp": 0.2}


def _evidence(**kw):
    return Evidence(**{"has_map": True, "expected_collision_rate": FIT["exp"], "fit_recon_error": FIT["fit_recon"],
                       "new_recon_error": 0.2, "new_collision_rate": 0.2, "assigned_share": 0.05, "n_new": 10, **kw})


@pytest.mark.parametrize("evidence, mode, reason", [
    (Evidence(has_map=False), "refit", "no published map"),
    (_evidence(incompatible="tokenize.levels changed"), "refit", "does not match the config (tokenize.levels changed)"),
    (_evidence(overflow=3), "refit", "3 new item(s) would need a dedup digit"),
    (_evidence(assigned_share=0.3), "refit", "tokenize.refit_new_share"),
    (_evidence(new_collision_rate=0.5), "refit", "new items collide at 0.500"),
    (_evidence(new_recon_error=0.5), "refit", "rel. error 0.500"),
    (_evidence(), "assign", "no drift trigger fired"),
    (_evidence(n_new=0, new_collision_rate=0.0, new_recon_error=0.0), "assign", "no drift trigger fired: 0 item(s)"),
])
def test_auto_chooses_each_mode_for_its_reason(evidence, mode, reason):
    chosen, why = decide_mode("auto", evidence, refit_new_share=0.2, drift_factor=1.5)
    assert chosen == mode and reason in why


def test_explicit_modes():
    assert decide_mode("refit", _evidence(), 0.2, 1.5) == ("refit", "tokenize.mode = refit")
    assert decide_mode("assign", _evidence(assigned_share=0.9), 0.2, 1.5)[0] == "assign"  # triggers do not apply
    for evidence in (Evidence(has_map=False), _evidence(overflow=1), _evidence(incompatible="x")):
        with pytest.raises(ModeError, match="--mode refit or auto"):
            decide_mode("assign", evidence, 0.2, 1.5)


def test_vocabulary_is_kept_through_assigns_and_aligned_refits_only():
    from genrec_core.quantize.sid_lifecycle import vocabulary_kept

    sizes = [8, 8, 4]
    manifest = {"a": {"parent_map_version": None, "mode": "refit", "align": True, "level_sizes": sizes},
                "b": {"parent_map_version": "a", "mode": "assign", "align": True, "level_sizes": sizes},
                "c": {"parent_map_version": "b", "mode": "refit", "align": True, "level_sizes": sizes},
                "d": {"parent_map_version": "c", "mode": "refit", "align": False, "level_sizes": sizes},
                "e": {"parent_map_version": "c", "mode": "refit", "align": True, "level_sizes": [8, 8, 5]},
                "x": {"parent_map_version": None, "mode": "refit", "align": True, "level_sizes": sizes}}
    assert vocabulary_kept(manifest, "a", "a") == (True, "same map")
    assert vocabulary_kept(manifest, "a", "c")[0]
    assert vocabulary_kept(manifest, "a", "d") == (False, "map d is a refit without alignment")
    assert vocabulary_kept(manifest, "b", "e") == (False, "map e changed the SID level sizes")
    assert vocabulary_kept(manifest, "x", "c") == (False, "map x is not an ancestor of map c")
