"""Stage b: time-ordered user sequences with a leave-one-out split, built on Spark.

Order is (event_time, event_id): event_id breaks ties between events in the same second, so the
order never depends on how Spark partitioned the data. Users with fewer than 3 events get a
'train' row only, since they cannot give both a validation and a test target.
"""
from __future__ import annotations

from jobs import delta_io
from jobs.context import RunContext
from schemas import tables as S


def build_sequences(clean, max_len: int):
    from pyspark.sql import functions as F

    ordered = (clean.groupBy("user_id")
               .agg(F.sort_array(F.collect_list(F.struct("event_time", "event_id", "item_id"))).alias("ev"))
               .select("user_id", F.col("ev.item_id").alias("items")))
    # Truncation keeps the most recent max_len items.
    ordered = ordered.withColumn(
        "items", F.when(F.size("items") > max_len, F.slice("items", -max_len, max_len)).otherwise(F.col("items")))
    n = F.size("items")
    head = lambda k: F.slice("items", 1, n - k)  # noqa: E731  all but the last k items
    evaluable = n >= 3
    train = ordered.select("user_id", F.lit("train").alias("split"),
                           F.when(evaluable, head(2)).otherwise(F.col("items")).alias("item_ids"),
                           F.lit(None).cast("string").alias("target"))
    valid = ordered.where(evaluable).select("user_id", F.lit("valid").alias("split"),
                                            head(2).alias("item_ids"), F.element_at("items", -2).alias("target"))
    test = ordered.where(evaluable).select("user_id", F.lit("test").alias("split"),
                                           head(1).alias("item_ids"), F.element_at("items", -1).alias("target"))
    return train.unionByName(valid).unionByName(test)


def main(ctx: RunContext) -> dict:
    spark, settings = ctx.spark, ctx.settings
    clean = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN)
    seqs = build_sequences(clean, ctx.config.sequences.max_len)
    version = delta_io.overwrite(spark, settings, S.USER_SEQUENCES, seqs)
    counts = {r["split"]: int(r["count"]) for r in
              delta_io.read(spark, settings, S.USER_SEQUENCES).groupBy("split").count().collect()}
    return {"versions": {"user_sequences": version}, "rows_by_split": counts}
