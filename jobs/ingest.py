"""Stage a: land the raw catalogue and events, clean them on Spark, quarantine what fails.

Accounting is exact: raw rows = clean + quarantined + exact duplicates, per source, checked here and
written to `ingest_audit`. Nothing is dropped without a count.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from jobs.context import RunContext, fingerprint
from jobs import delta_io
from schemas import tables as S


class AccountingError(RuntimeError):
    """Raw rows did not equal clean + quarantined + duplicates."""


def load_raw(ctx: RunContext):
    """(catalogue, events) as pyarrow tables, from the synthetic generator or a P5 folder."""
    ds = ctx.config.data.dataset
    if ds == "synthetic":
        from genrec_core.data.synthetic import generate

        return generate(ctx.config.data.synthetic, ctx.config.seed)
    from genrec_core.data.p5 import read_p5

    return read_p5(Path(ds[len("p5:"):]).expanduser())


def land(ctx: RunContext, catalogue, events) -> dict[str, Path]:
    """Writes the raw tables as parquet under the landing folder, atomically (tmp file, then rename)."""
    import pyarrow.parquet as pq

    folder = ctx.settings.landing / ctx.dataset_key
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, table in (("items", catalogue), ("events", events)):
        path = folder / f"{name}.parquet"
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        out[name] = path
    return out


def _raw_json(df):
    from pyspark.sql import functions as F

    # ignoreNullFields=false keeps explicit nulls, so the quarantined JSON shows every raw field.
    return F.to_json(F.struct(*[F.col(c) for c in df.columns]), {"ignoreNullFields": "false"})


def content_hash_expr():
    """sha256 over the fields that are embedded; a change in any of them re-embeds the item."""
    from pyspark.sql import functions as F

    fields = F.to_json(F.struct("title", "brand", "categories"), {"ignoreNullFields": "false"})
    return F.sha2(fields, 256)


def clean_items(raw):
    """-> (items, quarantine). The first row per item_id by raw content wins; repeats are quarantined."""
    from pyspark.sql import Window, functions as F

    df = raw.withColumn("raw", _raw_json(raw))
    null_key = F.col("item_id").isNull() | (F.trim("item_id") == "")
    rank = F.row_number().over(Window.partitionBy("item_id").orderBy("raw"))
    df = df.withColumn("reason", F.when(null_key, F.lit("null_item_key"))
                       .when(rank > 1, F.lit("duplicate_item_key")))
    items = (df.where(F.col("reason").isNull())
             .withColumn("price", F.expr("try_cast(price AS double)"))
             .withColumn("content_hash", content_hash_expr()))
    quarantine = df.where(F.col("reason").isNotNull()).select(
        F.lit("items").alias("source"), "reason", "raw")
    return items, quarantine


def clean_events(raw, items, cfg):
    """-> (clean, quarantine, duplicates). The first rule a row breaks is its reason code."""
    from pyspark.sql import functions as F

    df = raw.withColumn("raw", _raw_json(raw))
    df = df.withColumn("event_id", F.sha2(F.col("raw"), 256)).dropDuplicates(["event_id"])
    known = items.select("item_id", F.lit(True).alias("_known"))
    df = df.join(F.broadcast(known), on="item_id", how="left")
    ts = F.coalesce(F.expr("try_to_timestamp(event_time)"),
                    F.expr("timestamp_seconds(try_cast(event_time AS bigint))"))
    rating = F.expr("try_cast(rating AS double)")
    df = df.withColumn("_ts", ts).withColumn("_rating", rating)
    lo, hi = F.lit(cfg.min_event_time).cast("timestamp"), F.lit(cfg.max_event_time).cast("timestamp")
    blank = lambda c: F.col(c).isNull() | (F.trim(c) == "")  # noqa: E731
    reason = (
        F.when(blank("user_id"), "null_user_id")
        .when(blank("item_id"), "null_item_id")
        .when(F.col("_ts").isNull(), "bad_event_time")
        .when((F.col("_ts") < lo) | (F.col("_ts") >= hi), "event_time_out_of_window")
        .when(~F.lower(F.trim("event_type")).isin(list(cfg.event_types))
              | F.col("event_type").isNull(), "unknown_event_type")
        .when(F.col("rating").isNotNull() & (F.col("_rating").isNull() | (F.col("_rating") < 0)
                                             | (F.col("_rating") > 5)), "bad_rating")
        .when(F.col("_known").isNull(), "unknown_item")
    )
    df = df.withColumn("reason", reason)
    clean = df.where(F.col("reason").isNull()).select(
        "event_id", F.trim("user_id").alias("user_id"), F.trim("item_id").alias("item_id"),
        F.lower(F.trim("event_type")).alias("event_type"), F.col("_ts").alias("event_time"),
        F.col("_rating").alias("rating"), F.to_date("_ts").alias("event_date"))
    quarantine = df.where(F.col("reason").isNotNull()).select(
        F.lit("events").alias("source"), "reason", "raw")
    return clean, quarantine


def _counts_by_reason(quarantine, source: str) -> dict[str, int]:
    rows = quarantine.where(quarantine.source == source).groupBy("reason").count().collect()
    return {r["reason"]: int(r["count"]) for r in sorted(rows, key=lambda r: r["reason"])}


def audit_row(run_id, dataset, source, raw_rows, clean_rows, by_reason) -> dict:
    quarantined = sum(by_reason.values())
    duplicates = raw_rows - clean_rows - quarantined
    if source == "items" and duplicates != 0:
        raise AccountingError(f"items: {raw_rows} raw != {clean_rows} clean + {quarantined} quarantined")
    if duplicates < 0:
        raise AccountingError(f"{source}: {raw_rows} raw rows but {clean_rows} clean + "
                              f"{quarantined} quarantined; rows were counted twice")
    return {"run_id": run_id, "dataset": dataset, "source": source, "raw_rows": raw_rows,
            "clean_rows": clean_rows, "quarantined_rows": quarantined, "duplicate_rows": duplicates,
            "by_reason": json.dumps(by_reason, sort_keys=True)}


def main(ctx: RunContext) -> dict:
    from pyspark.sql import functions as F

    spark, settings = ctx.spark, ctx.settings
    catalogue, events = load_raw(ctx)
    paths = land(ctx, catalogue, events)
    raw_items = spark.read.parquet(str(paths["items"]))
    raw_events = spark.read.parquet(str(paths["events"]))

    items, q_items = clean_items(raw_items)
    items = items.cache()
    clean, q_events = clean_events(raw_events, items, ctx.config.clean)
    quarantine = q_items.unionByName(q_events).withColumn("dataset", F.lit(ctx.config.data.dataset))

    versions = {
        "items": delta_io.merge_upsert(spark, settings, S.ITEMS, items, ("item_id",), delete_missing=True),
        "interactions_clean": delta_io.overwrite(spark, settings, S.INTERACTIONS_CLEAN, clean),
        "interactions_quarantine": delta_io.overwrite(spark, settings, S.INTERACTIONS_QUARANTINE, quarantine),
    }
    # Counts come from the committed tables, so the audit describes what was written.
    written_q = delta_io.read(spark, settings, S.INTERACTIONS_QUARANTINE).cache()
    run_id = fingerprint(ctx.config.data, ctx.config.clean, ctx.config.seed, catalogue.num_rows, events.num_rows)
    audit = [
        audit_row(run_id, ctx.config.data.dataset, "items", catalogue.num_rows,
                  delta_io.read(spark, settings, S.ITEMS).count(), _counts_by_reason(written_q, "items")),
        audit_row(run_id, ctx.config.data.dataset, "events", events.num_rows,
                  delta_io.read(spark, settings, S.INTERACTIONS_CLEAN).count(),
                  _counts_by_reason(written_q, "events")),
    ]
    written_q.unpersist()
    items.unpersist()
    audit_df = spark.createDataFrame(audit)
    versions["ingest_audit"] = delta_io.merge_upsert(spark, settings, S.INGEST_AUDIT, audit_df,
                                                     ("run_id", "source"), delete_missing=False)
    return {"run_id": run_id, "audit": audit, "versions": versions}
