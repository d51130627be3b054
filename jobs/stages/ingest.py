"""The ingest stage: land the raw catalogue and events, clean them on Spark, quarantine what fails.

Two modes:
- full (no date): every landed row is cleaned and interactions_clean is replaced whole;
- daily (`date=D`): the run owns the event dates A = {D} plus the dates of valid events that landed
  on D (late arrivals, at most clean.max_late_days back). It reads the batches that landed in
  [min(A), max(A) + max_late_days], classifies the rows owned by A, and rewrites exactly those
  event_date partitions with Delta replaceWhere. A partition is thus a function of the landed rows
  for its date only, so reruns and backfills in any order converge to the same table. An event
  landing later than max_late_days, or before its own date, is quarantined: no run would revisit it.

Accounting is exact and checked before the audit is written: rows in scope = clean rows committed
+ quarantined rows committed + rows removed by rule. The clean rows then pass a great-expectations
checkpoint; if it fails, the table is restored to its previous version and the run stops.
"""
from __future__ import annotations

import json
from datetime import date, timedelta

from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io
from jobs.lake.audit import AccountingError, audit_row, write_audit
from jobs.lake.clock import StepTimer
from jobs.sources import landing
from jobs.stages.context import RunContext
from jobs.transforms import cleaning as C
from schemas import tables as S

STAGE = "ingest"


class CheckpointFailed(RuntimeError):
    """interactions_clean failed its great-expectations checkpoint; the write was rolled back."""


# ---------------------------------------------------------------- scope


def scope_dates(raw, cfg, day: date) -> list[date]:
    """{day} plus the event dates of valid rows that landed on `day`, within max_late_days."""
    from pyspark.sql import functions as F

    landed = C.parse_events(raw.where(F.col("ingest_date") == day.isoformat()), cfg, daily=True)
    late = landed.where(F.col("reason").isNull()).select("_date").distinct().collect()  # <= max_late_days + 1 rows
    return sorted({day, *(r[0] for r in late)})


def _in_dates(column: str, dates: list[date]) -> str:
    return f"{column} IN ({', '.join(repr(d.isoformat()) for d in dates)})"


# ---------------------------------------------------------------- checkpoint


def checkpoint(spark, settings, cfg, dates: list[date] | None, result_format: str = "BOOLEAN_ONLY"):
    """great-expectations suite of interactions_clean (from schemas) on the rewritten partitions.

    BOOLEAN_ONLY computes each expectation's verdict only; the default format also fetches sample
    failing rows, one more Spark job per expectation (19 s against 3 s at 10^6 rows)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from pyspark.sql import functions as F

    from schemas.expectations import suite_for

    df = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN)
    if dates is not None:
        df = df.where(F.col("event_date").isin(dates))
    window = [gxe.ExpectColumnValuesToBeBetween(column="event_time", min_value=cfg.min_event_time,
                                                max_value=cfg.max_event_time, strict_max=True)]
    context = gx.get_context(mode="ephemeral")
    # The configured event types, not the schema's defaults: the checkpoint checks what cleaning kept.
    suite = context.suites.add(suite_for(S.INTERACTIONS_CLEAN, window, suffix="_checkpoint",
                                         allowed={"event_type": cfg.event_types}))
    # persist=False: GX would otherwise cache the frame, and a later read of the table in this session
    # (after a RESTORE, say) would be answered from that cache instead of the table.
    batch = (context.data_sources.add_spark("interactions", persist=False).add_dataframe_asset("interactions_clean")
             .add_batch_definition_whole_dataframe("scope"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="interactions_clean_checkpoint", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="interactions_clean", validation_definitions=[definition],
                                                       result_format={"result_format": result_format}))
    return checkpoint.run(batch_parameters={"dataframe": df})


def _failures(result) -> list[str]:
    from jobs.stages.gate import failures

    return [f for run in result.run_results.values() for f in failures(run)]


def checkpoint_or_restore(ctx: RunContext, dates: list[date] | None, previous: int | None) -> None:
    """Runs the checkpoint; on failure restores interactions_clean to `previous` and raises."""
    spark, settings = ctx.spark, ctx.settings
    result = checkpoint(spark, settings, ctx.config.clean, dates)
    if result.success:
        return
    # Validate again with the observed values and samples of failing rows, for the message.
    result = checkpoint(spark, settings, ctx.config.clean, dates, result_format="SUMMARY")
    current = delta_io.latest_version(spark, settings, S.INTERACTIONS_CLEAN)
    if previous is not None and previous != current:
        spark.sql(f"RESTORE TABLE delta.`{settings.table_path(S.INTERACTIONS_CLEAN.name)}` "
                  f"TO VERSION AS OF {previous}").collect()  # collect: the command runs when its result is read
    raise CheckpointFailed(f"interactions_clean failed its checkpoint and was restored to version {previous}; "
                           "downstream stages did not run.\n  - " + "\n  - ".join(_failures(result)))


# ---------------------------------------------------------------- main


def _fate_counts(codes, column: str):
    """Aggregates for Observation: every row, and the rows per code of `column`."""
    from pyspark.sql import functions as F

    return [F.count(F.lit(1)).alias("_rows")] + [F.count(F.when(F.col(column) == c, 1)).alias(c) for c in codes]


def main(ctx: RunContext, day: date | None = None) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    spark, settings, cfg = ctx.spark, ctx.settings, ctx.config.clean
    dataset = ctx.config.data.dataset
    step = StepTimer(STAGE, spark=spark)
    with step("land"):
        raw_events, raw_items = landing.read_landed(spark, landing.land(ctx))
    with step("catalogue"):
        items, q_items = C.clean_items(raw_items, cfg)
        items = items.persist(StorageLevel.MEMORY_AND_DISK)
        n_items = items.count()

    dates = None
    if day is not None:
        dates = scope_dates(raw_events, cfg, day)
        lo, hi = min(dates), max(dates) + timedelta(days=cfg.max_late_days)
        raw_events = raw_events.where(F.col("ingest_date").between(lo.isoformat(), hi.isoformat()))
    parsed = C.parse_events(raw_events, cfg, daily=day is not None)
    if dates is not None:
        parsed = parsed.where(F.col("scope_date").isin(dates))
    parsed = C.mark_unknown_items(parsed, items, n_items)

    where = None if dates is None else _in_dates("event_date", dates)
    previous = (delta_io.latest_version(spark, settings, S.INTERACTIONS_CLEAN)
                if delta_io.table_exists(spark, settings, S.INTERACTIONS_CLEAN) else None)
    with step("items table"):
        versions = {"items": delta_io.merge_upsert(spark, settings, S.ITEMS, items, ("item_id",),
                                                   delete_missing=True)}

    # Two reads of the parsed rows, each counting the fates it sees as it writes (Observation): the
    # quarantine pass counts every row in scope by reason, the clean pass every valid row by rule.
    # Reading twice costs less than caching every row to disk between them.
    seen = Observation("rows_in_scope")
    quarantine = C.quarantine_columns(parsed.observe(seen, *_fate_counts(S.REASONS, "reason")), dataset)
    q_items = q_items.withColumn("dataset", F.lit(dataset))
    with step("quarantine"):
        if dates is None:
            versions["interactions_quarantine"] = delta_io.overwrite(
                spark, settings, S.INTERACTIONS_QUARANTINE, quarantine.unionByName(q_items), layout="rebalance")
        else:
            delta_io.overwrite(spark, settings, S.INTERACTIONS_QUARANTINE, q_items, "source = 'items'",
                               layout="rebalance")
            versions["interactions_quarantine"] = delta_io.overwrite(
                spark, settings, S.INTERACTIONS_QUARANTINE, quarantine,
                f"source = 'events' AND {_in_dates('scope_date', dates)}", layout="rebalance")
    valid = Observation("valid_rows")
    classified = C.removals(parsed.where(F.col("reason").isNull()),
                            C.hot_user_days(raw_events, cfg, daily=day is not None), cfg)
    classified = classified.observe(valid, *_fate_counts(S.REMOVAL_RULES, "rule"))
    with step("clean rows"):
        # The rules leave the rows sorted by event_date: the writer needs no shuffle of its own.
        versions["interactions_clean"] = delta_io.overwrite(spark, settings, S.INTERACTIONS_CLEAN,
                                                            C.clean_columns(classified), where, layout="as_is")
    in_scope, by_rule = seen.get["_rows"], {r: n for r, n in valid.get.items() if r != "_rows" and n}
    quarantined = sum(n for r, n in seen.get.items() if r != "_rows")
    if valid.get["_rows"] != in_scope - quarantined:  # the two reads must agree on the rows in scope
        raise AccountingError(f"clean/events: the quarantine pass saw {in_scope} rows, {quarantined} of them "
                              f"quarantined, but the clean pass saw {valid.get['_rows']} valid rows")

    with step("accounting"):
        run_id = fingerprint(dataset, ctx.config.data.synthetic, cfg, ctx.config.seed, day, in_scope)
        scope = "all" if dates is None else json.dumps([d.isoformat() for d in dates])
        audit = _audit_rows(ctx, run_id, scope, dates, in_scope, by_rule, raw_items.count())
        items.unpersist()

    with step("checkpoint"):
        checkpoint_or_restore(ctx, dates, previous)
    with step("audit table"):
        versions["ingest_audit"] = write_audit(spark, settings, audit)
    return {"run_id": run_id, "scope": scope, "audit": audit, "versions": versions, "seconds": step.seconds}


def _audit_rows(ctx: RunContext, run_id: str, scope: str, dates: list[date] | None, in_scope: int,
                by_rule: dict, raw_items: int) -> list[dict]:
    """The events and items audit rows, from the committed tables (not the frames), balance-checked."""
    from pyspark.sql import functions as F

    spark, settings = ctx.spark, ctx.settings
    written = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN)
    written_q = delta_io.read(spark, settings, S.INTERACTIONS_QUARANTINE)
    if dates is not None:
        written = written.where(F.col("event_date").isin(dates))
        written_q = written_q.where((F.col("source") == "items") | F.col("scope_date").isin(dates))
    q_counts = {(r["source"], r["reason"]): int(r["count"])
                for r in written_q.groupBy("source", "reason").count().collect()}
    common = {"run_id": run_id, "dataset": ctx.config.data.dataset, "stage": STAGE, "audited_at": ctx.logical_time}
    return [
        audit_row(**common, source="events", scope=scope, input_rows=in_scope, output_rows=written.count(),
                  by_reason={k[1]: v for k, v in q_counts.items() if k[0] == "events"}, by_rule=by_rule),
        audit_row(**common, source="items", scope="all", input_rows=raw_items,
                  output_rows=delta_io.read(spark, settings, S.ITEMS).count(),
                  by_reason={k[1]: v for k, v in q_counts.items() if k[0] == "items"}, by_rule={}),
    ]
