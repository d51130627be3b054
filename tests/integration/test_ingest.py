"""Stage a on real Spark + Delta: exact accounting, quarantine reasons, and a pandas reference."""
from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingested(ctx):
    from jobs import ingest

    return ingest.main(ctx)


def test_accounting_balances(ingested, ctx):
    from genrec_core.data.synthetic import generate

    catalogue, events = generate(ctx.config.data.synthetic, ctx.config.seed)
    by_source = {a["source"]: a for a in ingested["audit"]}
    ev = by_source["events"]
    assert ev["raw_rows"] == events.num_rows
    assert ev["raw_rows"] == ev["clean_rows"] + ev["quarantined_rows"] + ev["duplicate_rows"]
    assert ev["duplicate_rows"] > 0 and ev["quarantined_rows"] > 0
    assert by_source["items"]["raw_rows"] == catalogue.num_rows


def test_quarantine_keeps_raw_rows_with_reasons(ingested, ctx):
    from schemas.tables import REASONS

    q = ctx.spark.sql("SELECT reason, raw FROM genrec.interactions_quarantine").toPandas()
    assert set(q.reason) <= set(REASONS)
    assert {"null_user_id", "bad_event_time", "unknown_event_type", "unknown_item"} <= set(q.reason)
    for raw in q.raw:
        assert set(json.loads(raw)) == {"user_id", "item_id", "event_type", "event_time", "rating"}


def _reference_clean(events: pd.DataFrame, item_ids: set, event_types) -> set:
    """Plain pandas version of the event rules; returns the surviving raw rows as tuples."""
    kept = set()
    for row in events.drop_duplicates().itertuples(index=False):
        ts = pd.to_datetime(row.event_time, errors="coerce", format="ISO8601")
        rating_ok = row.rating is None or (pd.to_numeric(row.rating, errors="coerce") == pd.to_numeric(
            row.rating, errors="coerce") and 0 <= float(row.rating) <= 5)
        if (row.user_id and row.user_id.strip() and row.item_id and row.item_id.strip() and not pd.isna(ts)
                and pd.Timestamp("2000-01-01") <= ts < pd.Timestamp("2030-01-01")
                and (row.event_type or "").strip().lower() in event_types and rating_ok
                and row.item_id.strip() in item_ids):
            kept.add((row.user_id.strip(), row.item_id.strip(), ts.to_pydatetime()))
    return kept


def test_clean_matches_pandas_reference(ingested, ctx):
    from genrec_core.data.synthetic import generate

    catalogue, events = generate(ctx.config.data.synthetic, ctx.config.seed)
    expected = _reference_clean(events.to_pandas(), set(catalogue.column("item_id").to_pylist()),
                                ctx.config.clean.event_types)
    got = ctx.spark.sql("SELECT user_id, item_id, event_time FROM genrec.interactions_clean").collect()
    assert {(r.user_id, r.item_id, r.event_time) for r in got} == expected
    assert len(got) == len(expected)


def test_rerun_keeps_counts_and_items_version(ingested, ctx):
    from jobs import delta_io, ingest
    from schemas import tables as S

    before = delta_io.latest_version(ctx.spark, ctx.settings, S.ITEMS)
    again = ingest.main(ctx)
    assert again["audit"] == ingested["audit"]
    assert delta_io.latest_version(ctx.spark, ctx.settings, S.ITEMS) == before
    assert ctx.spark.sql("SELECT count(*) FROM genrec.ingest_audit").first()[0] == 2
