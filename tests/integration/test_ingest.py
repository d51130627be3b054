"""Stage a on real Spark + Delta: exact accounting against the generator's manifest, reasons kept
with raw rows, idempotent reruns, and daily runs that rewrite only their own dates."""
from __future__ import annotations

import json
from datetime import date

import pytest

from jobs.sources.landing import landing_folder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingested(ctx):
    from jobs.stages import ingest

    return ingest.main(ctx)


def _manifest(ctx) -> dict:
    return json.loads((landing_folder(ctx.settings, ctx.config.data.dataset) / "_manifest.json").read_text())


def test_accounting_balances_and_recovers_the_manifest(ingested, ctx):
    by_source = {a["source"]: a for a in ingested["audit"]}
    ev, manifest = by_source["events"], _manifest(ctx)
    counts = manifest.get("counts", manifest)
    assert ev["input_rows"] == ev["output_rows"] + ev["quarantined_rows"] + ev["removed_rows"]
    raw = ctx.spark.read.parquet(str(landing_folder(ctx.settings, ctx.config.data.dataset) / "events")).count()
    assert ev["input_rows"] == raw
    reasons, rules = json.loads(ev["by_reason"]), json.loads(ev["by_rule"])
    for reason, n in reasons.items():
        assert counts.get(reason) == n, (reason, n, counts)
    assert rules.get("exact_duplicate", 0) == counts["exact_duplicates"]
    assert rules.get("near_duplicate", 0) == counts["near_duplicates"]
    assert rules.get("bot_user_day", 0) == counts["bot_events"]
    assert ev["output_rows"] == counts["clean_events"]
    items = by_source["items"]
    assert items["input_rows"] == items["output_rows"] + items["quarantined_rows"]


def test_quarantine_keeps_raw_rows_with_reasons(ingested, ctx):
    from schemas.tables import RAW_EVENTS, REASONS

    q = ctx.spark.sql("SELECT reason, raw FROM genrec.interactions_quarantine WHERE source = 'events'").collect()
    assert {r.reason for r in q} <= set(REASONS)
    assert {"null_user_id", "bad_event_time", "unknown_event_type", "unknown_item"} <= {r.reason for r in q}
    for r in q:
        assert set(json.loads(r.raw)) == set(RAW_EVENTS.column_names)


def test_rerun_is_a_no_op(ingested, ctx):
    from jobs.lake import delta_io
    from jobs.stages import ingest
    from schemas import tables as S

    # Other suites (the DAG tests) may have ingested into the same home first: count this rerun's rows.
    audit_rows = lambda: ctx.spark.sql(  # noqa: E731
        "SELECT count(*) FROM genrec.ingest_audit WHERE stage = 'ingest'").first()[0]
    before, audited = delta_io.latest_version(ctx.spark, ctx.settings, S.ITEMS), audit_rows()
    rows = sorted(map(tuple, delta_io.read(ctx.spark, ctx.settings, S.INTERACTIONS_CLEAN).collect()))
    again = ingest.main(ctx)
    assert again["audit"] == ingested["audit"]
    assert delta_io.latest_version(ctx.spark, ctx.settings, S.ITEMS) == before
    assert sorted(map(tuple, delta_io.read(ctx.spark, ctx.settings, S.INTERACTIONS_CLEAN).collect())) == rows
    assert audit_rows() == audited


def test_daily_runs_rewrite_their_dates_and_converge(ingested, ctx):
    from jobs.lake import delta_io
    from jobs.stages import ingest
    from schemas import tables as S

    spark, settings = ctx.spark, ctx.settings
    clean = lambda: sorted(map(tuple, delta_io.read(spark, settings, S.INTERACTIONS_CLEAN).collect()))  # noqa: E731
    per_date = lambda: {r[0]: r[1] for r in delta_io.read(spark, settings, S.INTERACTIONS_CLEAN)  # noqa: E731
                        .groupBy("event_date").count().collect()}
    start = date.fromisoformat(ctx.config.data.synthetic.start_date)
    day = date.fromordinal(start.toordinal() + 10)
    before = per_date()
    out = ingest.main(ctx, day)
    scope = [date.fromisoformat(d) for d in json.loads(out["scope"])]
    assert day in scope and all(0 <= (day - d).days <= ctx.config.clean.max_late_days for d in scope)
    after = per_date()
    # Dates outside the scope are untouched.
    assert {d: n for d, n in after.items() if d not in scope} == {d: n for d, n in before.items() if d not in scope}
    first = clean()
    ingest.main(ctx, day)  # a rerun converges to the same rows
    assert clean() == first
    hist = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN)
    assert hist.count() == hist.select("event_id").distinct().count()


def test_failed_checkpoint_restores_the_table(ingested, ctx):
    from pyspark.sql import functions as F

    from jobs.lake import delta_io
    from jobs.stages import ingest
    from schemas import tables as S

    spark, settings = ctx.spark, ctx.settings
    table = lambda: sorted(map(tuple, delta_io.read(spark, settings, S.INTERACTIONS_CLEAN).collect()))  # noqa: E731
    good, previous = table(), delta_io.latest_version(spark, settings, S.INTERACTIONS_CLEAN)
    day = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN).agg(F.min("event_date")).first()[0]
    bad = (delta_io.read(spark, settings, S.INTERACTIONS_CLEAN).where(F.col("event_date") == day)
           .withColumn("event_type", F.lit("teleport")))
    delta_io.overwrite(spark, settings, S.INTERACTIONS_CLEAN, bad, f"event_date = '{day.isoformat()}'")
    with pytest.raises(ingest.CheckpointFailed, match="event_type"):
        ingest.checkpoint_or_restore(ctx, [day], previous)
    assert table() == good
