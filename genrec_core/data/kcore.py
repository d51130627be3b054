"""Reference k-core and sequence splits: slow, obviously correct numpy/Python, no Spark.

`jobs.transforms.kcore_filter` and `jobs.transforms.sequence_split` are the distributed versions;
the integration tests assert they agree with these on random data.

k-core. The interactions form a bipartite multigraph: one edge per row (an event, already
de-duplicated by the clean stage), so a user who viewed the same item 5 times has degree 5. The
k-core is the largest set of rows in which every user and every item has at least k rows. It is
unique (the union of two sets with that property has it too), so any removal order reaches it.
Both implementations peel *simultaneously*: one iteration counts degrees on the current rows and
drops every row whose user or item is below k. `iterations` counts the iterations that dropped
something, so an input that already is a k-core takes 0, and `max_iterations` bounds them.

Splits. Each user's events are ordered by (event_time, event_id) and every event gets exactly one
label, so a split is complete and disjoint by construction and the row accounting can count labels:

- train / valid / test: the event is in the train history, or is the valid or test target;
- one of the removal rules below (names from `schemas.tables.REMOVAL_RULES`).

leave_one_out: the sequence is the most recent `max_len` events; with m >= 3 of them, the last is
test, the second-last valid, the rest train. With m < 3 all are train (no evaluation rows).

temporal (global cut-off c): events before c are the history H; the first event at or after c is the
test target f; events after f are removed (`after_test_target`). The sequence H + [f] keeps its
most recent `max_len` events. The last kept event of H is the valid target if at least 2 of H are
kept, the others are train; with 1 kept event of H it is train (test row only). A user with no
event before c has nothing to predict from: f is removed (`no_history`), as are later ones.

In both, the rows built from the labels nest: valid history = train history, and test history =
train history + valid target (when there is one).
"""
from __future__ import annotations

import numpy as np

from genrec_core.config import SPLIT_KINDS

TRAIN, VALID, TEST = "train", "valid", "test"
KCORE, TRUNCATED, AFTER_TEST, NO_HISTORY = "kcore", "truncated", "after_test_target", "no_history"
KEPT_LABELS = (TRAIN, VALID, TEST)
# Rules the sequence stage removes events by, in the order it applies them.
SEQUENCE_RULES = (KCORE, AFTER_TEST, NO_HISTORY, TRUNCATED)


def kcore_reference(users: np.ndarray, items: np.ndarray, k: int,
                    max_iterations: int) -> tuple[np.ndarray, int, bool]:
    """users, items: [n] ids of any hashable dtype, one entry per interaction row.

    Returns (keep: bool [n], iterations, converged). When not converged, `keep` is the state after
    `max_iterations` iterations and some kept rows still violate the condition."""
    _, u = np.unique(np.asarray(users), return_inverse=True)
    _, i = np.unique(np.asarray(items), return_inverse=True)
    u, i = u.ravel(), i.ravel()
    keep = np.ones(len(u), dtype=bool)
    for it in range(max_iterations + 1):
        u_deg = np.bincount(u, weights=keep, minlength=u.max(initial=-1) + 1)
        i_deg = np.bincount(i, weights=keep, minlength=i.max(initial=-1) + 1)
        violating = keep & ((u_deg[u] < k) | (i_deg[i] < k))
        if not violating.any():
            return keep, it, True
        if it == max_iterations:
            return keep, it, False
        keep = keep & ~violating
    raise AssertionError("unreachable")


def split_labels(users: np.ndarray, times: np.ndarray, tiebreak: np.ndarray, *, split: str,
                 max_len: int, cutoff=None) -> np.ndarray:
    """users, times, tiebreak: [n] per event (times comparable with `cutoff`; tiebreak orders events
    with equal times). Returns object [n]: one of KEPT_LABELS or a removal rule per event."""
    if split not in SPLIT_KINDS:
        raise ValueError(f"split {split!r}: choose one of {SPLIT_KINDS}")
    if split == "temporal" and cutoff is None:
        raise ValueError("the temporal split needs a cutoff")
    users, times = np.asarray(users), np.asarray(times)
    labels = np.empty(len(users), dtype=object)
    order = _time_order(users, times, tiebreak)
    bounds = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]  # this user's events, oldest first
        if split == "leave_one_out":
            labels[idx] = _loo(len(idx), max_len)
        else:
            labels[idx] = _temporal(times[idx] >= cutoff, max_len)
    return labels


def _time_order(users, times, tiebreak) -> np.ndarray:
    """Event indices sorted by (user, time, tiebreak); keys are ranked first so any sortable dtype works."""
    rank = lambda a: np.unique(np.asarray(a), return_inverse=True)[1].ravel()  # noqa: E731
    return np.lexsort((rank(tiebreak), rank(times), rank(users)))


def _loo(n: int, max_len: int) -> list[str]:
    m = min(n, max_len)
    kept = [TRAIN] * m if m < 3 else [TRAIN] * (m - 2) + [VALID, TEST]
    return [TRUNCATED] * (n - m) + kept


def _temporal(post: np.ndarray, max_len: int) -> list[str]:
    n_pre = int((~post).sum())  # post is sorted False..., True... since events are time-ordered
    has_test = int(len(post) > n_pre)
    n_after = len(post) - n_pre - has_test
    seq_len = n_pre + has_test
    m = min(seq_len, max_len)
    h = m - has_test  # history events kept
    if has_test and h == 0:
        kept = [NO_HISTORY]
    else:
        hist = [TRAIN] * h if h < 2 else [TRAIN] * (h - 1) + [VALID]
        kept = hist + [TEST] * has_test
    return [TRUNCATED] * (seq_len - m) + kept + [AFTER_TEST] * n_after


def sequence_rows(users, items, times, tiebreak, labels) -> set[tuple]:
    """The user_sequences rows the labels imply, as {(user, split, tuple(item_ids), target)}."""
    users, items = np.asarray(users), np.asarray(items)
    order = _time_order(users, times, tiebreak)
    per_user: dict = {}
    for j in order:
        per_user.setdefault(users[j], []).append((labels[j], items[j]))
    rows = set()
    for user, events in per_user.items():
        train = tuple(i for lab, i in events if lab == TRAIN)
        valid = [i for lab, i in events if lab == VALID]
        test = [i for lab, i in events if lab == TEST]
        if not train:
            continue  # every event of this user was removed
        rows.add((user, TRAIN, train, None))
        if valid:
            rows.add((user, VALID, train, valid[0]))
        if test:
            rows.add((user, TEST, train + tuple(valid), test[0]))
    return rows
