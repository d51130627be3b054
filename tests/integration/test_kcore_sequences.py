"""Stage b on Spark: k-core, labels and user_sequences equal the numpy references, and the audit balances."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from genrec_core.data import kcore as K

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
EVENTS_DDL = "event_id string, user_id string, item_id string, event_time timestamp"


def _random_events(seed: int, n: int, n_users: int, n_items: int, n_seconds: int = 10**6):
    """Skewed users and items (a few heavy, a long tail), times with many ties."""
    rng = np.random.default_rng(seed)
    users = np.minimum(rng.zipf(1.6, n), n_users) - 1
    items = np.minimum(rng.zipf(1.4, n), n_items) - 1
    seconds = rng.integers(0, n_seconds, n)
    return [(f"e{j:06d}", f"u{users[j]}", f"i{items[j]}", T0 + timedelta(seconds=int(seconds[j])))
            for j in range(n)]


def _columns(rows):
    """-> ids, users, items (object arrays) and event times as int seconds since T0."""
    ids, users, items = (np.array([r[c] for r in rows], dtype=object) for c in range(3))
    return ids, users, items, np.array([int((r[3] - T0).total_seconds()) for r in rows])


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 5)])
def test_spark_kcore_equals_reference(spark, seed, k):
    from jobs.transforms.kcore_filter import kcore

    rows = _random_events(seed, 3000, 600, 400)
    ids, users, items, _ = _columns(rows)
    keep, iterations, converged = K.kcore_reference(users, items, k, max_iterations=50)
    assert converged and 0 < keep.sum() < len(rows)  # the data is neither all in nor all out
    # broadcast_max_keys=50 sends the large first iterations through shuffle joins, the rest broadcast.
    kept, stats = kcore(spark.createDataFrame(rows, EVENTS_DDL), k, 50, broadcast_max_keys=50)
    assert {r.event_id for r in kept.select("event_id").collect()} == set(ids[keep])
    assert (stats.iterations, stats.removed_rows, stats.converged) == (iterations, int((~keep).sum()), True)


def test_spark_kcore_bound_raises(spark):
    from jobs.transforms.kcore_filter import KCoreNotConverged, kcore

    # A chain u0-i0-u1-i1-...: under k=2 the k-core is empty and each iteration peels only its ends.
    rows = [(f"e{j}", f"u{(j + 1) // 2}", f"i{j // 2}", T0) for j in range(6)]
    _, users, items, _ = _columns(rows)
    _, iterations, _ = K.kcore_reference(users, items, 2, max_iterations=50)
    df = spark.createDataFrame(rows, EVENTS_DDL)
    assert kcore(df, 2, iterations)[1].iterations == iterations
    with pytest.raises(KCoreNotConverged, match=rf"within {iterations - 1} iterations.*kcore_max_iterations"):
        kcore(df, 2, iterations - 1)


@pytest.mark.parametrize("split,max_len", [("leave_one_out", 3), ("temporal", 4)])
def test_labels_and_rows_equal_reference(spark, split, max_len):
    from jobs.transforms.sequence_split import label_events, sequence_rows

    rows = _random_events(7, 800, 60, 40, n_seconds=400)  # heavy ties in event_time
    ids, users, items, times = _columns(rows)
    labels = K.split_labels(users, times, ids, split=split, max_len=max_len, cutoff=300)
    cutoff = (T0 + timedelta(seconds=300)).isoformat()
    labeled = label_events(spark.createDataFrame(rows, EVENTS_DDL), split, max_len, cutoff)
    assert {r.event_id: r.label for r in labeled.select("event_id", "label").collect()} == dict(zip(ids, labels))
    got = {(r.user_id, r.split, tuple(r.item_ids), r.target) for r in sequence_rows(labeled).collect()}
    assert got == K.sequence_rows(users, items, times, ids, labels)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A private lakehouse and catalogue database, so these tables never shadow the shared ones."""
    from jobs.lake import delta_io
    from jobs.lake.settings import load_settings
    from schemas import tables as S

    settings = replace(load_settings(), lakehouse=tmp_path_factory.mktemp("kcore_lake"), database="genrec_kcore")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    rows = _random_events(11, 1500, 120, 80, n_seconds=30 * 86400)
    full = [(e, u, i, "view", t, None, None, t.date(), t.date()) for e, u, i, t in rows]
    df = spark.createDataFrame(full, "event_id string, user_id string, item_id string, event_type string, "
                                     "event_time timestamp, session_id string, rating double, "
                                     "ingest_date date, event_date date")
    delta_io.overwrite(spark, settings, S.INTERACTIONS_CLEAN, df)
    return settings, rows


@pytest.mark.parametrize("split", ["leave_one_out", "temporal"])
def test_stage_builds_reference_sequences_and_balances(spark, lake, split):
    from genrec_core.config import load_config
    from jobs.lake import delta_io
    from jobs.stages import sequences
    from jobs.stages.context import RunContext
    from schemas import tables as S

    settings, rows = lake
    cfg = load_config("tiny")
    cutoff = T0 + timedelta(days=20)
    cfg = replace(cfg, clean=replace(cfg.clean, kcore=3, kcore_max_iterations=20),
                  sequences=replace(cfg.sequences, split=split, max_len=6, temporal_cutoff=cutoff.isoformat()))
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    result = sequences.main(RunContext(settings=settings, config=cfg, logical_time=when, _spark=spark))

    ids, users, items, times = _columns(rows)
    keep, _, _ = K.kcore_reference(users, items, 3, max_iterations=20)
    t = times[keep]
    labels = K.split_labels(users[keep], t, ids[keep], split=split, max_len=6, cutoff=20 * 86400)
    written = delta_io.read(spark, settings, S.USER_SEQUENCES).collect()
    assert {(r.user_id, r.split, tuple(r.item_ids), r.target) for r in written} == \
        K.sequence_rows(users[keep], items[keep], t, ids[keep], labels)

    (row,) = result["audit"]
    by_rule = json.loads(row["by_rule"])
    expected_rules = {rule: int((labels == rule).sum()) for rule in K.SEQUENCE_RULES} | \
        {K.KCORE: int((~keep).sum())}
    assert by_rule == expected_rules and by_rule[K.TRUNCATED] > 0 and by_rule[K.KCORE] > 0
    assert (row["input_rows"], row["output_rows"]) == (len(rows), int(np.isin(labels, K.KEPT_LABELS).sum()))
    assert row["input_rows"] == row["output_rows"] + row["removed_rows"] and row["quarantined_rows"] == 0
    if split == "temporal":
        assert by_rule[K.AFTER_TEST] > 0
    audit = delta_io.read(spark, settings, S.INGEST_AUDIT).where(f"run_id = '{row['run_id']}'").collect()
    assert [(a.stage, a.input_rows, a.output_rows, a.by_rule) for a in audit] == \
        [("sequences", row["input_rows"], row["output_rows"], row["by_rule"])]
