"""The removal rules over valid events, vectorised per sorted stretch of rows, with a plain reference.

The clean stage (jobs.transforms.cleaning.removals) shuffles the valid events by (event_date, user, salt), sorts
each partition by that key and then (event_time, event_id, ingest_date, source), and hands the
partition to `removal_codes` in Arrow batches. A *group* is one (event_date, user, salt): one
user-day, or one of the SALT buckets of a bot's hot day. `complete_groups` re-cuts the batches so a
group never straddles two calls. In a group, in that order:

1. hot: the user-day was over the volume cap (decided before the shuffle) -> bot_user_day;
2. a row whose event_id equals the previous row's is an exact duplicate (the earliest arrival of
   a set sorts first and is kept);
3. the group is too fast when it has at least `min_events` live rows (neither of the above) and the
   median gap between consecutive times, taken at each live row that has a previous row, is under
   `min_median_gap` seconds: its live rows become bot_user_day;
4. a still-live row is a near-duplicate when the previous row of the group with the same item and
   event type (whatever its fate) is at most `near_seconds` whole seconds earlier.

The median of an even count is the mean of the two middle gaps. Whole seconds are floor(time), as
Spark casts a timestamp to a long. Codes, not names, come back, so the Arrow batches stay numeric.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

KEEP, BOT_USER_DAY, EXACT_DUPLICATE, NEAR_DUPLICATE = 0, 1, 2, 3
RULE_NAMES = {BOT_USER_DAY: "bot_user_day", EXACT_DUPLICATE: "exact_duplicate", NEAR_DUPLICATE: "near_duplicate"}
MICROS = 1_000_000


@dataclass(frozen=True)
class Thresholds:
    near_seconds: int
    min_events: int
    min_median_gap: float

    @classmethod
    def of(cls, clean_cfg) -> "Thresholds":
        return cls(clean_cfg.near_duplicate_seconds, clean_cfg.bot_min_events_for_gap,
                   clean_cfg.bot_min_median_gap_seconds)


def removal_codes(group_start: np.ndarray, same_event: np.ndarray, hot: np.ndarray, micros: np.ndarray,
                  item: np.ndarray, etype: np.ndarray, t: Thresholds) -> np.ndarray:
    """int8 rule code per row of sorted rows. group_start: the row opens a group (row 0 always does);
    same_event: its event_id equals the previous row's; item, etype: any integer codes of equality."""
    n = len(micros)
    codes = np.zeros(n, dtype=np.int8)
    if n == 0:
        return codes
    group_start = np.asarray(group_start, dtype=bool).copy()
    group_start[0] = True
    gid = np.cumsum(group_start) - 1
    groups = int(gid[-1]) + 1
    codes[hot] = BOT_USER_DAY
    codes[same_event & ~group_start & ~hot] = EXACT_DUPLICATE
    live = codes == KEEP

    seconds = micros / MICROS
    at = np.flatnonzero(live & ~group_start)
    gaps, gap_gid = seconds[at] - seconds[at - 1], gid[at]
    order = np.lexsort((gaps, gap_gid))
    gaps = gaps[order]
    count = np.bincount(gap_gid, minlength=groups)
    first = np.cumsum(count) - count
    median = np.full(groups, np.inf)
    has = count > 0
    lo, hi = first[has] + (count[has] - 1) // 2, first[has] + count[has] // 2
    median[has] = 0.5 * (gaps[lo] + gaps[hi])
    n_live = np.bincount(gid, weights=live, minlength=groups)
    fast = (n_live >= t.min_events) & (median < t.min_median_gap)
    codes[live & fast[gid]] = BOT_USER_DAY

    order = np.lexsort((etype, item, gid))  # stable: time order survives inside each (group, item, type)
    whole = np.floor_divide(micros, MICROS)[order]
    g, i, e = gid[order], item[order], etype[order]
    near = np.zeros(n, dtype=bool)
    near[1:] = (g[1:] == g[:-1]) & (i[1:] == i[:-1]) & (e[1:] == e[:-1]) & (whole[1:] - whole[:-1] <= t.near_seconds)
    unsorted = np.empty(n, dtype=bool)
    unsorted[order] = near
    codes[(codes == KEEP) & unsorted] = NEAR_DUPLICATE
    return codes


GROUP_KEYS = ("event_date", "user_id", "_salt")


def table_codes(table, t: Thresholds):
    """removal_codes on an Arrow table sorted as above, with columns GROUP_KEYS, event_id, _hot,
    event_time (timestamp[us]), item_id and event_type."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int8)

    def changed(name):
        col = table.column(name).combine_chunks()
        out = np.ones(n, dtype=bool)
        out[1:] = pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        return out

    group_start = np.logical_or.reduce([changed(k) for k in GROUP_KEYS])
    same_event = ~changed("event_id")
    hot = table.column("_hot").combine_chunks().to_numpy(zero_copy_only=False).astype(bool)
    micros = table.column("event_time").combine_chunks().cast("int64").to_numpy()
    item = pc.dictionary_encode(table.column("item_id").combine_chunks()).indices.to_numpy()
    etype = pc.dictionary_encode(table.column("event_type").combine_chunks()).indices.to_numpy()
    return removal_codes(group_start, same_event, hot, micros, item, etype, t)


def complete_groups(batches: Iterable, keys: tuple[str, ...] = GROUP_KEYS) -> Iterator:
    """Re-cuts Arrow record batches of rows sorted by `keys` into tables holding whole groups only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    carry = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        n = table.num_rows
        if n == 0:
            continue
        last = table.slice(n - 1, 1)
        same = np.logical_and.reduce([
            pc.equal(table.column(k), last.column(k)[0]).to_numpy(zero_copy_only=False) for k in keys])
        # Rows are sorted by the keys, so the last group is a suffix: it starts after the last mismatch.
        mismatch = np.flatnonzero(~same)
        start = int(mismatch[-1]) + 1 if len(mismatch) else 0
        if start:
            yield table.slice(0, start)
        carry = table.slice(start)
    if carry is not None and carry.num_rows:
        yield carry


# ---------------------------------------------------------------- reference


def reference_codes(rows: list[dict], t: Thresholds) -> list[int]:
    """The rules row by row, for rows given as dicts with keys group, event_id, hot, micros, item, etype,
    already in the sorted order. Slow and literal: the test oracle for removal_codes."""
    codes = [KEEP] * len(rows)
    by_group: dict = {}
    for k, r in enumerate(rows):
        by_group.setdefault(r["group"], []).append(k)
    for members in by_group.values():
        for j, k in enumerate(members):
            if rows[k]["hot"]:
                codes[k] = BOT_USER_DAY
            elif j > 0 and rows[members[j - 1]]["event_id"] == rows[k]["event_id"]:
                codes[k] = EXACT_DUPLICATE
        live = [k for k in members if codes[k] == KEEP]
        gaps = sorted(rows[k]["micros"] / MICROS - rows[members[j - 1]]["micros"] / MICROS
                      for j, k in enumerate(members) if j > 0 and codes[k] == KEEP)
        if gaps and len(live) >= t.min_events:
            m = len(gaps)
            median = 0.5 * (gaps[(m - 1) // 2] + gaps[m // 2])
            if median < t.min_median_gap:
                for k in live:
                    codes[k] = BOT_USER_DAY
        previous: dict = {}
        for k in members:
            key = (rows[k]["item"], rows[k]["etype"])
            if key in previous and codes[k] == KEEP:
                if rows[k]["micros"] // MICROS - rows[previous[key]]["micros"] // MICROS <= t.near_seconds:
                    codes[k] = NEAR_DUPLICATE
            previous[key] = k
    return codes
