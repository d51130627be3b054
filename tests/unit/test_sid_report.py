"""The SID quality report: hand-computed cases, slow references and properties."""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from genrec_core.quantize.collisions import dedup_digit
from genrec_core.quantize.metrics import (SIDReport, _drop_self, churn, gini, majority_share, prefix_ids,
                                          random_share, sid_quality, sid_report)
from genrec_core.quantize.report import SECTIONS, flat_metrics, plot_figures, to_markdown

# Few examples each: these run on shared 2-core machines, and the references are quadratic.
FEW = settings(max_examples=30, deadline=None)
SIZES = (4, 3, 5)
codes_st = st.integers(1, 80).flatmap(
    lambda n: st.tuples(*(arrays(np.int64, n, elements=st.integers(0, k - 1)) for k in SIZES))
).map(lambda cols: np.stack(cols, axis=1))


# --- slow, obviously correct references ------------------------------------------------------------

def gini_reference(sizes) -> float:
    """Mean absolute difference over all ordered pairs, over twice the mean."""
    s = [float(v) for v in sizes]
    g, mean = len(s), sum(s) / len(s)
    return sum(abs(a - b) for a in s for b in s) / (2 * g * g * mean)


def conditional_entropy_reference(codes, level) -> float:
    by_prefix = defaultdict(Counter)
    for row in codes.tolist():
        by_prefix[tuple(row[:level])][row[level]] += 1
    n, total = len(codes), 0.0
    for counter in by_prefix.values():
        m = sum(counter.values())
        total += m / n * -sum(c / m * np.log2(c / m) for c in counter.values())
    return total


def random_share_reference(group) -> float:
    """Share of ordered pairs of distinct items that fall in the same group."""
    n = len(group)
    same = sum(group[i] == group[j] for i in range(n) for j in range(n) if i != j)
    return same / (n * (n - 1))


# --- Gini -------------------------------------------------------------------------------------------

@FEW
@given(st.integers(1, 50), st.integers(1, 1000))
def test_gini_is_zero_for_equal_groups(groups, size):
    assert gini(np.full(groups, size)) == pytest.approx(0.0, abs=1e-12)


def test_gini_tends_to_one_for_one_giant_group():
    singles, giant = 1000, 10**6
    g = gini(np.array([1] * singles + [giant]))
    assert g == pytest.approx(singles * (giant - 1) / ((singles + 1) * (singles + giant)))
    assert g > 0.99


@FEW
@given(arrays(np.int64, st.integers(1, 30), elements=st.integers(1, 50)), st.integers(1, 9))
def test_gini_matches_reference_and_is_scale_free(sizes, scale):
    g = gini(sizes)
    assert g == pytest.approx(gini_reference(sizes), abs=1e-9)
    assert 0.0 <= g <= (len(sizes) - 1) / len(sizes) + 1e-12
    assert gini(sizes * scale) == pytest.approx(g, abs=1e-12)


# --- entropy ----------------------------------------------------------------------------------------

def test_entropy_and_conditional_entropy_by_hand():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    r = sid_report(codes, (2, 2), None)
    first, second = r.levels
    assert first.entropy_bits == pytest.approx(1.0) and first.conditional_entropy_bits == pytest.approx(1.0)
    # c2 is 0 three times in four; given c1=0 it is a fair coin (1 bit), given c1=1 it is fixed (0 bits).
    assert second.entropy_bits == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))
    assert second.conditional_entropy_bits == pytest.approx(0.5)
    assert (r.n_sids, r.collision_rate, r.max_items_per_sid) == (3, 0.25, 2)


@FEW
@given(codes_st)
def test_report_invariants(codes):
    r = sid_report(codes, SIZES, None)
    n = len(codes)
    assert r.n_sids * r.mean_items_per_sid == pytest.approx(n)
    assert r.collision_rate == pytest.approx(1 - r.n_sids / n)
    for level, lv in enumerate(r.levels):
        assert lv.used + lv.dead_codes == lv.codebook_size
        assert -1e-9 <= lv.conditional_entropy_bits <= lv.entropy_bits + 1e-9
        assert lv.conditional_entropy_bits == pytest.approx(conditional_entropy_reference(codes, level), abs=1e-9)
    # The chain rule: conditional entropies add up to the entropy of the full SID.
    sizes = np.unique(codes, axis=0, return_counts=True)[1] / n
    assert sum(lv.conditional_entropy_bits for lv in r.levels) == pytest.approx(-(sizes * np.log2(sizes)).sum())


@FEW
@given(codes_st)
def test_report_agrees_with_sid_quality(codes):
    x = np.random.default_rng(0).standard_normal((len(codes), 4))
    old = sid_quality(codes, SIZES, x, x * 0.5)
    new = sid_report(codes, SIZES, None, x_hat=None).to_dict()
    for key in ("n_items", "collision_rate", "max_items_per_sid", "mean_items_per_sid"):
        assert new[key] == pytest.approx(old[key])
    for a, b in zip(new["levels"], old["levels"]):
        assert {k: a[k] for k in b} == pytest.approx(b)


@FEW
@given(codes_st, st.randoms(use_true_random=False))
def test_prefix_ids_identify_prefixes_whatever_the_order(codes, rnd):
    perm = list(range(len(codes)))
    rnd.shuffle(perm)
    for depth, ids in enumerate(prefix_ids(codes), start=1):
        same_id = ids[:, None] == ids[None, :]
        same_prefix = (codes[:, None, :depth] == codes[None, :, :depth]).all(-1)
        np.testing.assert_array_equal(same_id, same_prefix)
        np.testing.assert_array_equal(np.sort(np.bincount(prefix_ids(codes[perm])[depth - 1])),
                                      np.sort(np.bincount(ids)))


# --- kNN preservation -------------------------------------------------------------------------------

def clustered(n_clusters=8, per_cluster=30, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim)) * 10
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    return centers[labels] + 0.01 * rng.standard_normal((len(labels), dim)), labels


def test_knn_is_one_when_codes_are_well_separated_clusters():
    x, labels = clustered()
    codes = np.stack([labels, np.arange(len(labels)) % 3], axis=1)
    r = sid_report(codes, (8, 3), x)
    assert r.knn.preservation == 1.0 and r.knn.k == 10 and r.knn.knn_sample == len(x)
    assert r.knn.baseline == pytest.approx(29 / 239)


def test_knn_is_near_the_baseline_for_random_codes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 8))
    codes = rng.integers(0, 4, size=(3000, 1))
    r = sid_report(codes, (4,), x)
    assert r.knn.baseline == pytest.approx(random_share(codes[:, 0]))
    assert abs(r.knn.preservation - r.knn.baseline) < 0.03


@FEW
@given(arrays(np.int64, st.integers(2, 25), elements=st.integers(0, 3)))
def test_random_baseline_matches_pair_count(group):
    assert random_share(group) == pytest.approx(random_share_reference(group.tolist()))


def test_knn_sample_is_capped_and_deterministic():
    x, labels = clustered(per_cluster=40)
    codes = labels[:, None]
    a = sid_report(codes, (8,), x, knn_max_queries=50, seed=3)
    assert a.knn.knn_sample == 50
    assert a == sid_report(codes, (8,), x, knn_max_queries=50, seed=3)


def test_drop_self_keeps_k_neighbours_even_with_duplicates():
    found = np.array([[5, 1, 2], [7, 8, 9], [4, 3, 6]])   # query 8 is not first; query 0 is absent
    np.testing.assert_array_equal(_drop_self(found, np.array([5, 8, 0]), 2), [[1, 2], [7, 9], [4, 3]])
    x = np.ones((12, 3))                                     # every item is every other's duplicate
    r = sid_report(np.zeros((12, 1), dtype=np.int64), (1,), x)
    assert r.knn.k == 10 and r.knn.preservation == 1.0


# --- purity, churn, resolution ----------------------------------------------------------------------

def test_purity_by_hand_and_for_pure_codes():
    codes = np.array([[0], [0], [0], [1]])
    r = sid_report(codes, (2,), None, categories=["a", "a", "b", "b"])
    assert r.purity.purity == pytest.approx(0.75) and r.purity.baseline == 0.5 and r.purity.n_categories == 2
    cats = np.array(["x", "y", "z"])[np.arange(30) % 3]
    pure = sid_report(np.stack([np.arange(30) % 3, np.arange(30) % 5], 1), (3, 5), None, categories=cats)
    assert pure.purity.prefix_purity == (1.0, 1.0)


@FEW
@given(arrays(np.int64, st.integers(1, 40), elements=st.integers(0, 5)),
       arrays(np.int64, 40, elements=st.integers(0, 2)))
def test_majority_share_matches_counting(group, labels):
    labels = labels[:len(group)]
    expected = sum(Counter(labels[group == g].tolist()).most_common(1)[0][1] for g in set(group.tolist()))
    assert majority_share(group, labels) == pytest.approx(expected / len(group))


@FEW
@given(codes_st, st.randoms(use_true_random=False))
def test_churn_is_zero_for_the_same_map_in_any_order(codes, rnd):
    ids = np.array([f"item{i:03d}" for i in range(len(codes))])
    perm = list(range(len(codes)))
    rnd.shuffle(perm)
    c = churn(ids, codes, ids[perm], codes[perm])
    assert (c.sid_changed, c.first_code_changed, c.n_added, c.n_removed) == (0.0, 0.0, 0, 0)
    assert c.n_common == len(codes) and set(c.prefix_changed) <= {0.0}


def test_churn_on_a_hand_built_change():
    previous = (np.array(["a", "b", "c", "d"]), np.array([[0, 0, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0]]))
    ids = np.array(["e", "d", "c", "b"])                      # a removed, e added
    codes = np.array([[0, 0, 0], [0, 3, 0], [2, 2, 1], [1, 1, 0]])  # d: first code moved; c: last digit
    r = sid_report(codes[:, :2], (4, 4), None, previous=previous, item_ids=ids, final_codes=codes)
    c = r.churn
    assert (c.n_previous, c.n_common, c.n_added, c.n_removed) == (4, 3, 1, 1)
    assert c.sid_changed == pytest.approx(2 / 3) and c.first_code_changed == pytest.approx(1 / 3)
    assert c.prefix_changed == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    with pytest.raises(ValueError, match="item_ids"):
        sid_report(codes[:, :2], (4, 4), None, previous=previous)


@FEW
@given(codes_st)
def test_resolution_figures_for_dedup_digit(codes):
    final = dedup_digit(codes, np.array([f"i{i:03d}" for i in range(len(codes))]))
    r = sid_report(codes, SIZES, None, final_codes=final)
    assert (r.resolved.collision_rate, r.resolved.unique_share, r.resolved.max_items_per_sid) == (0.0, 1.0, 1)
    assert r.resolved.n_levels == 4


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="levels"):
        sid_report(np.zeros((3, 2), dtype=np.int64), (4,), None)
    with pytest.raises(ValueError, match="outside"):
        sid_report(np.array([[4]]), (4,), None)
    with pytest.raises(ValueError, match="rows"):
        sid_report(np.zeros((3, 1), dtype=np.int64), (4,), np.zeros((2, 3)))


# --- the typed result and its rendering -------------------------------------------------------------

@pytest.fixture(scope="module")
def full_report():
    x, labels = clustered()
    rng = np.random.default_rng(2)
    codes = np.stack([labels, rng.integers(0, 4, len(labels))], axis=1)
    ids = np.array([f"i{i:03d}" for i in range(len(labels))])
    previous = (ids[::-1][5:], np.flip(codes, 0)[5:])
    cats = np.array(["beauty", "tools"])[labels % 2]
    final = dedup_digit(codes, ids)
    r = sid_report(codes, (8, 4), x, x_hat=x * 0.9, categories=cats, previous=previous, item_ids=ids,
                   final_codes=final)
    return r, codes


def test_round_trip_through_json(full_report):
    r, _ = full_report
    assert all(part is not None for part in (r.knn, r.purity, r.churn, r.resolved, r.reconstruction_rel_error))
    text = json.dumps(r.to_dict())
    assert SIDReport.from_dict(json.loads(text)) == r
    with pytest.raises(ValueError, match="unknown"):
        SIDReport.from_dict({**r.to_dict(), "surprise": 1})
    assert r.reconstruction_rel_error == pytest.approx(0.01)


def test_markdown_has_every_section(full_report):
    r, _ = full_report
    full = to_markdown(r, "SID report", {"map_version": "abc"})
    bare = to_markdown(sid_report(np.array([[0], [1]]), (2,), None), "bare")
    for section in SECTIONS:
        assert f"## {section}" in full and f"## {section}" in bare
    assert "Not computed" not in full and bare.count("Not computed") == 5
    assert "abc" in full and "| 2 | 4 | 4 |" in full           # level 2: K=4, all 4 codes used


def test_plots_build(full_report):
    r, codes = full_report
    figures = plot_figures(r, codes, (8, 4))
    assert sorted(figures) == ["items_per_sid", "level_1_usage", "level_2_usage"]
    for fig in figures.values():
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:4] == b"\x89PNG"
    metrics = flat_metrics(r)
    assert metrics["knn_preservation"] == 1.0 and all(isinstance(v, float) for v in metrics.values())
