"""The vectorised removal rules (genrec_core.data.removals) against their row-by-row reference, and
the re-cutting of Arrow batches into whole groups that the Spark job relies on."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings, strategies as st

from genrec_core.data import removals as R

T = R.Thresholds(near_seconds=3, min_events=3, min_median_gap=2.0)

# A few groups, events and items, and times a few seconds apart (with sub-second parts), so that
# duplicates, near-duplicates and fast days all happen.
row = st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 12_000_000), st.integers(0, 2),
                st.integers(0, 1))
thresholds = st.builds(R.Thresholds, st.integers(0, 5), st.integers(1, 5), st.floats(0.0, 4.0))


def sorted_rows(raw, hot_groups):
    rows = [{"group": g, "event_id": f"e{e}", "micros": m, "item": i, "etype": k, "hot": g in hot_groups}
            for g, e, m, i, k in raw]
    # The Spark job's order: the group, then time, then event_id (arrival and source break ties).
    return sorted(rows, key=lambda r: (r["group"], r["micros"], r["event_id"]))


def vectorised(rows, t):
    n = len(rows)
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    group, eid = col("group"), col("event_id")
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = group[1:] != group[:-1]
    same = np.zeros(n, dtype=bool)
    same[1:] = eid[1:] == eid[:-1]
    return R.removal_codes(group_start, same, col("hot").astype(bool), col("micros").astype(np.int64),
                           col("item"), col("etype"), t).tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=1, max_size=60), st.sets(st.integers(0, 3), max_size=2), thresholds)
def test_vectorised_rules_equal_the_reference(raw, hot_groups, t):
    rows = sorted_rows(raw, hot_groups)
    assert vectorised(rows, t) == R.reference_codes(rows, t)


def test_each_rule_on_a_hand_made_day():
    t = R.Thresholds(near_seconds=30, min_events=3, min_median_gap=1.0)
    s = R.MICROS
    day = [  # (group, event, seconds, item, type)
        (0, "a", 0, 1, 0), (0, "a", 0, 1, 0),       # an exact duplicate
        (0, "b", 10, 1, 0),                         # near the first: same item and type, 10 s later
        (0, "c", 50, 1, 0),                         # 40 s after b: kept
        (0, "d", 55, 2, 0), (0, "e", 56, 2, 1),     # another item, another type: kept
        (1, "f", 0, 1, 0), (1, "g", 0, 2, 0), (1, "h", 1, 3, 0), (1, "i", 1, 4, 0),  # too fast
    ]
    rows = [{"group": g, "event_id": e, "micros": sec * s, "item": i, "etype": k, "hot": False}
            for g, e, sec, i, k in day]
    rows.append({"group": 2, "event_id": "j", "micros": 0, "item": 1, "etype": 0, "hot": True})
    want = [R.KEEP, R.EXACT_DUPLICATE, R.NEAR_DUPLICATE, R.KEEP, R.KEEP, R.KEEP,
            R.BOT_USER_DAY, R.BOT_USER_DAY, R.BOT_USER_DAY, R.BOT_USER_DAY, R.BOT_USER_DAY]
    assert vectorised(rows, t) == want == R.reference_codes(rows, t)


def test_whole_seconds_are_floored_and_the_median_of_an_even_count_is_the_mean():
    t = R.Thresholds(near_seconds=1, min_events=3, min_median_gap=1.5)
    # Gaps 1.0 and 2.0: median 1.5, not under 1.5, so not a bot day. 1.9 s and 2.9 s floor to 1 and
    # 2, one whole second apart: a near-duplicate although 1.0 s apart in time.
    rows = [{"group": 0, "event_id": e, "micros": m, "item": 0, "etype": 0, "hot": False}
            for e, m in (("a", 900_000), ("b", 1_900_000), ("c", 3_900_000))]
    assert vectorised(rows, t) == R.reference_codes(rows, t) == [R.KEEP, R.NEAR_DUPLICATE, R.KEEP]


def arrow_table(rows):
    return pa.table({
        "event_date": pa.array([r["group"] // 2 for r in rows], pa.int32()),
        "user_id": [f"u{r['group'] % 2}" for r in rows],
        "_salt": pa.array([0] * len(rows), pa.int32()),
        "event_id": [r["event_id"] for r in rows],
        "_hot": [r["hot"] for r in rows],
        "event_time": pa.array([r["micros"] for r in rows], pa.timestamp("us")),
        "item_id": [f"i{r['item']}" for r in rows],
        "event_type": [("view", "click")[r["etype"]] for r in rows],
    })


@settings(max_examples=150, deadline=None)
@given(st.lists(row, min_size=1, max_size=60), st.sets(st.integers(0, 3), max_size=2), thresholds,
       st.lists(st.integers(1, 60), min_size=1, max_size=8))
def test_batches_are_recut_into_whole_groups(raw, hot_groups, t, cuts):
    rows = sorted_rows(raw, hot_groups)
    table = arrow_table(rows)
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    batches = [b for lo, hi in zip(bounds, bounds[1:]) for b in table.slice(lo, hi - lo).to_batches()]
    pieces = list(R.complete_groups(batches))
    assert pa.concat_tables(pieces).equals(table)
    keys = [set(zip(*(p.column(k).to_pylist() for k in R.GROUP_KEYS))) for p in pieces]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1:])
    codes = np.concatenate([R.table_codes(p, t) for p in pieces]).tolist()
    assert codes == R.table_codes(table, t).tolist() == R.reference_codes(rows, t)


def test_empty_input():
    assert list(R.complete_groups([])) == []
    assert R.removal_codes(*(np.zeros(0, dtype=d) for d in (bool, bool, bool, np.int64, int, int)), T).size == 0
