"""New items placed under taken SIDs, refit labels aligned to the published map, and churn."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.sid_lifecycle import align_labels, churn, next_free_digit, place_new_items
from vectors import clustered

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
