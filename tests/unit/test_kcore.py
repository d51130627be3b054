"""Properties of the reference k-core and sequence splits in genrec_core.data.kcore."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.data import kcore as K

# Bipartite multigraphs: a few users and items so that k-cores are neither always empty nor full.
edges = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=0, max_size=60)
ks = st.integers(1, 5)


def _arrays(rows):
    a = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def _satisfies(users, items, keep, k) -> bool:
    du, di = Counter(users[keep].tolist()), Counter(items[keep].tolist())
    return all(du[u] >= k and di[i] >= k for u, i in zip(users[keep], items[keep]))


def _peel_one_at_a_time(users, items, k):
    """Brute-force fixed point: remove one violating row at a time, in row order, until none is left."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        du, di = Counter(users[keep].tolist()), Counter(items[keep].tolist())
        bad = [j for j in np.flatnonzero(keep) if du[users[j]] < k or di[items[j]] < k]
        if not bad:
            return keep
        keep[bad[0]] = False


@settings(max_examples=200, deadline=None)
@given(edges, ks)
def test_kcore_condition_holds_and_is_the_unique_fixed_point(rows, k):
    users, items = _arrays(rows)
    keep, iterations, converged = K.kcore_reference(users, items, k, max_iterations=100)
    assert converged and keep.dtype == bool and keep.shape == users.shape
    assert _satisfies(users, items, keep, k)
    # Maximal: another removal order reaches the same set (the k-core is unique).
    assert np.array_equal(keep, _peel_one_at_a_time(users, items, k))
    # Idempotent: the k-core of the k-core is itself, in 0 iterations.
    again, it2, conv2 = K.kcore_reference(users[keep], items[keep], k, max_iterations=100)
    assert again.all() and it2 == 0 and conv2
    # kept + removed = all, and an iteration removes at least one row.
    assert int(keep.sum()) + int((~keep).sum()) == len(users)
    assert iterations <= len(users) - int(keep.sum())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=0, max_size=10), st.integers(1, 3))
def test_kcore_contains_every_subset_satisfying_the_condition(rows, k):
    users, items = _arrays(rows)
    keep, _, _ = K.kcore_reference(users, items, k, max_iterations=100)
    for bits in itertools.product([False, True], repeat=len(users)):
        mask = np.array(bits, dtype=bool)
        if _satisfies(users, items, mask, k):
            assert not (mask & ~keep).any()


def test_kcore_counts_rows_not_distinct_items():
    # One user viewing one item 3 times is a 3-core: degrees count interactions after dedup.
    keep, iterations, converged = K.kcore_reference(np.array(["u"] * 3), np.array(["i"] * 3), 3, 10)
    assert keep.all() and iterations == 0 and converged


def test_kcore_bound_reports_not_converged():
    # A chain peels one end per iteration: u0-i0, u1-i0, u1-i1, u2-i1, ... under k=2.
    users = np.array([0, 1, 1, 2, 2, 3, 3, 4])
    items = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    keep, iterations, converged = K.kcore_reference(users, items, 2, max_iterations=100)
    assert converged and not keep.any() and iterations >= 2
    keep_b, it_b, conv_b = K.kcore_reference(users, items, 2, max_iterations=iterations - 1)
    assert not conv_b and it_b == iterations - 1 and keep_b.sum() > 0
    assert not _satisfies(users, items, keep_b, 2)


# ---- splits ---------------------------------------------------------------------------------------

events = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 20)), min_size=1, max_size=50)
max_lens = st.integers(2, 8)


def _events(rows):
    users = np.array([u for u, _ in rows])
    times = np.array([t for _, t in rows])
    tiebreak = np.arange(len(rows))[::-1]  # deliberately not the input order
    return users, times, tiebreak


def _per_user(users, times, tiebreak, labels):
    out: dict = {}
    for j in np.lexsort((tiebreak, times, users)):
        out.setdefault(int(users[j]), []).append((int(times[j]), labels[j]))
    return out


@settings(max_examples=200, deadline=None)
@given(events, max_lens)
def test_leave_one_out_labels(rows, max_len):
    users, times, tiebreak = _events(rows)
    labels = K.split_labels(users, times, tiebreak, split="leave_one_out", max_len=max_len)
    # Complete and disjoint: one known label per event.
    assert set(labels) <= {K.TRAIN, K.VALID, K.TEST, K.TRUNCATED}
    for user, evs in _per_user(users, times, tiebreak, labels).items():
        labs = [lab for _, lab in evs]
        kept = [lab for lab in labs if lab != K.TRUNCATED]
        assert len(kept) == min(len(labs), max_len)
        assert labs[:len(labs) - len(kept)] == [K.TRUNCATED] * (len(labs) - len(kept))  # oldest go
        if len(kept) >= 3:
            assert kept[-1] == K.TEST and kept[-2] == K.VALID and set(kept[:-2]) == {K.TRAIN}
        else:
            assert set(kept) == {K.TRAIN}


@settings(max_examples=200, deadline=None)
@given(events, max_lens, st.integers(0, 21))
def test_temporal_labels(rows, max_len, cutoff):
    users, times, tiebreak = _events(rows)
    labels = K.split_labels(users, times, tiebreak, split="temporal", max_len=max_len, cutoff=cutoff)
    assert set(labels) <= {K.TRAIN, K.VALID, K.TEST, K.TRUNCATED, K.AFTER_TEST, K.NO_HISTORY}
    for user, evs in _per_user(users, times, tiebreak, labels).items():
        pre = [lab for t, lab in evs if t < cutoff]
        post = [lab for t, lab in evs if t >= cutoff]
        # Nothing at or after the cut-off is history; the first event there is the target.
        assert not {K.TRAIN, K.VALID} & set(post) and K.TEST not in pre
        if post:
            assert post[0] in (K.TEST, K.NO_HISTORY) and set(post[1:]) <= {K.AFTER_TEST}
            assert (post[0] == K.NO_HISTORY) == (not pre)
        kept_pre = [lab for lab in pre if lab != K.TRUNCATED]
        assert pre[:len(pre) - len(kept_pre)] == [K.TRUNCATED] * (len(pre) - len(kept_pre))
        if pre:
            assert len(kept_pre) == min(len(pre), max_len - (1 if post else 0))
        if len(kept_pre) >= 2:
            assert kept_pre[-1] == K.VALID and set(kept_pre[:-1]) == {K.TRAIN}
        else:
            assert set(kept_pre) <= {K.TRAIN}


@settings(max_examples=100, deadline=None)
@given(events, max_lens, st.sampled_from(["leave_one_out", "temporal"]), st.integers(0, 21))
def test_sequence_rows_nest_and_hold_every_kept_event_once(rows, max_len, split, cutoff):
    users, times, tiebreak = _events(rows)
    items = np.array([f"i{t % 7}" for t in times])
    labels = K.split_labels(users, times, tiebreak, split=split, max_len=max_len, cutoff=cutoff)
    seqs = K.sequence_rows(users, items, times, tiebreak, labels)
    by_user: dict = {}
    for user, split_name, hist, target in seqs:
        assert split_name not in by_user.setdefault(user, {})
        by_user[user][split_name] = (hist, target)
    for user, rows_ in by_user.items():
        train = rows_[K.TRAIN][0]
        assert len(train) >= 1 and rows_[K.TRAIN][1] is None
        if K.VALID in rows_:
            assert rows_[K.VALID][0] == train
        if K.TEST in rows_:
            valid = (rows_[K.VALID][1],) if K.VALID in rows_ else ()
            assert rows_[K.TEST][0] == train + valid
    held = sum(len(r[K.TRAIN][0]) + (K.VALID in r) + (K.TEST in r) for r in by_user.values())
    assert held == sum(lab in K.KEPT_LABELS for lab in labels)


def test_ties_in_time_break_on_the_tiebreak_key():
    labels = K.split_labels(np.array(["u"] * 3), np.array([5, 5, 5]), np.array(["c", "a", "b"]),
                            split="leave_one_out", max_len=10)
    assert list(labels) == [K.TEST, K.TRAIN, K.VALID]


def test_sequence_rules_are_declared_removal_rules():
    from schemas.tables import REMOVAL_RULES

    assert set(K.SEQUENCE_RULES) <= set(REMOVAL_RULES)


def test_check_balance():
    from jobs.lake.audit import AccountingError, check_balance

    row = {"run_id": "r", "stage": "sequences", "source": "events", "input_rows": 10, "output_rows": 6,
           "quarantined_rows": 1, "removed_rows": 3, "by_reason": '{"x": 1}', "by_rule": '{"kcore": 3}'}
    assert check_balance(row) is row
    for change in ({"output_rows": 5}, {"output_rows": 7}, {"by_rule": '{"kcore": 2}'},
                   {"by_reason": "{}"}):
        with pytest.raises(AccountingError, match="sequences/events"):
            check_balance({**row, **change})
