"""Ranking metrics against a plain-loop reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.eval.ranking import _reference_metrics, ndcg_at_k, ranking_report, recall_at_k


@st.composite
def rankings(draw):
    n = draw(st.integers(1, 40))
    m = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ranked = np.stack([_row(rng, n_items, m) for _ in range(n)])
    targets = rng.integers(0, n_items, size=n)
    return ranked, targets


def _row(rng, n_items, m):
    """Distinct items best first, padded with -1 when the catalogue is smaller than m."""
    items = rng.permutation(n_items)[:m]
    return np.concatenate([items, np.full(m - len(items), -1)])


@settings(max_examples=80, deadline=None)
@given(rankings())
def test_equals_reference_and_is_bounded(case):
    ranked, targets = case
    ks = range(1, ranked.shape[1] + 1)
    got = ranking_report(ranked, targets, ks)
    want = _reference_metrics(ranked, targets, ks)
    assert got.keys() == want.keys()
    for key, value in got.items():
        assert value == pytest.approx(want[key], abs=1e-12)
        assert 0.0 <= value <= 1.0


@settings(max_examples=80, deadline=None)
@given(rankings())
def test_recall_is_monotone_in_k_and_bounds_ndcg(case):
    ranked, targets = case
    recalls = [recall_at_k(ranked, targets, k) for k in range(1, ranked.shape[1] + 1)]
    assert all(a <= b for a, b in zip(recalls, recalls[1:]))
    for k in range(1, ranked.shape[1] + 1):
        assert ndcg_at_k(ranked, targets, k) <= recall_at_k(ranked, targets, k) + 1e-12


def test_hand_computed_values():
    ranked = np.array([[3, 1, 2], [0, 5, -1], [7, 8, 9], [4, 0, 1]])
    targets = np.array([1, 0, 2, 1])
    # hits: rank 1, rank 0, miss, rank 2
    assert recall_at_k(ranked, targets, 1) == pytest.approx(1 / 4)
    assert recall_at_k(ranked, targets, 2) == pytest.approx(2 / 4)
    assert recall_at_k(ranked, targets, 3) == pytest.approx(3 / 4)
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((1 / math.log2(3) + 1 + 0.5) / 4)
    assert ranking_report(ranked, targets, (1, 3)) == {
        "recall@1": pytest.approx(0.25), "ndcg@1": pytest.approx(0.25),
        "recall@3": pytest.approx(0.75), "ndcg@3": pytest.approx((1 / math.log2(3) + 1.5) / 4)}


def test_padding_never_hits_and_bad_inputs_raise():
    assert recall_at_k(np.array([[-1, -1]]), np.array([0]), 2) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1, 2]]), np.array([1]), 3)
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1, 2]]), np.array([-1]), 1)
    with pytest.raises(ValueError):
        ndcg_at_k(np.array([[1, 2]]), np.array([1, 2]), 1)
