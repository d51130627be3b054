"""Stage b: Spark sequences equal a plain-Python leave-one-out built from the same clean events."""
from __future__ import annotations

from datetime import datetime

import pytest

pytestmark = pytest.mark.integration


def _reference(rows, max_len):
    by_user: dict[str, list] = {}
    for r in rows:
        by_user.setdefault(r.user_id, []).append((r.event_time, r.event_id, r.item_id))
    out = set()
    for user, events in by_user.items():
        items = [i for _, _, i in sorted(events)][-max_len:]
        if len(items) >= 3:
            out |= {(user, "train", tuple(items[:-2]), None), (user, "valid", tuple(items[:-2]), items[-2]),
                    (user, "test", tuple(items[:-1]), items[-1])}
        else:
            out.add((user, "train", tuple(items), None))
    return out


@pytest.mark.parametrize("max_len", [4, 50])
def test_sequences_match_reference(spark, max_len):
    from jobs.sequences import build_sequences

    t = lambda s: datetime(2026, 1, 1, 0, 0, s)  # noqa: E731
    rows = [("e3", "u1", "a", t(3)), ("e1", "u1", "b", t(1)), ("e2", "u1", "c", t(2)), ("e0", "u1", "d", t(2)),
            ("e5", "u1", "a", t(9)), ("e9", "u2", "x", t(1)), ("e8", "u2", "y", t(5)), ("e7", "u3", "z", t(1)),
            ("e6", "u3", "z", t(2)), ("e4", "u3", "w", t(2))]
    df = spark.createDataFrame(rows, "event_id string, user_id string, item_id string, event_time timestamp")
    got = {(r.user_id, r.split, tuple(r.item_ids), r.target) for r in build_sequences(df, max_len).collect()}
    assert got == _reference(df.collect(), max_len)


def test_splits_are_disjoint_and_complete(ctx):
    from jobs import ingest, sequences

    ingest.main(ctx)
    sequences.main(ctx)
    rows = ctx.spark.sql("SELECT user_id, split, item_ids, target FROM genrec.user_sequences").collect()
    per_user: dict[str, dict] = {}
    for r in rows:
        per_user.setdefault(r.user_id, {})[r.split] = r
    n_users = ctx.spark.sql("SELECT count(DISTINCT user_id) FROM genrec.interactions_clean").first()[0]
    assert len(per_user) == n_users
    for user, splits in per_user.items():
        if "test" in splits:
            train, valid, test = splits["train"], splits["valid"], splits["test"]
            assert list(valid.item_ids) == list(train.item_ids)
            assert list(test.item_ids) == list(train.item_ids) + [valid.target]
