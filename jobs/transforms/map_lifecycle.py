"""The SID map across runs, on Spark: which catalogue items keep, regain, need or lose a SID, the SIDs
they may not take, and the next map's rows.

The pure rules (placing under taken SIDs, alignment, churn, the mode decision) are in
genrec_core.quantize.sid_lifecycle; this module only gathers their inputs from tables and writes
back their outputs. What reaches the driver is bounded by the items to place, never the whole map.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

# What happens to an item in this run, from the published map and the catalogue:
KEEP = "keep"          # active before, still in the catalogue: keeps its SID
CHANGED = "changed"    # as KEEP, but its content changed and tokenize.on_content_change = reassign
NEW = "new"            # never had a SID
RETURN = "return"      # retired, back in the catalogue within its reservation: gets its SID back
RETURN_LAPSED = "return_lapsed"  # retired, back after its reservation lapsed: placed like a new item
RETIRE = "retire"      # active before, gone from the catalogue now
GONE = "gone"          # retired before, still gone
TO_PLACE = (NEW, CHANGED, RETURN_LAPSED)
HOLDS_OLD_SID = (KEEP, RETURN)


@dataclass(frozen=True)
class Counts:
    active: int
    new: int
    reassigned: int
    retired: int
    returned: int
    kept: int


def reserve_cutoff(logical_time: datetime, reserve_days: int) -> datetime:
    return logical_time - timedelta(days=reserve_days)


def classify(catalogue_df, published_df, logical_time: datetime, reserve_days: int, on_content_change: str):
    """catalogue_df(item_id, content_hash) full outer published item_sid -> one row per item with
    `kind`, the catalogue's `content_hash`, and the published row as old_* columns."""
    from pyspark.sql import functions as F

    old = published_df.select("item_id", F.col("codes").alias("old_codes"), F.col("sid").alias("old_sid"),
                              F.col("content_hash").alias("old_hash"), F.col("status").alias("old_status"),
                              F.col("retired_at").alias("old_retired_at"), F.col("origin").alias("old_origin"))
    joined = catalogue_df.select("item_id", "content_hash").join(old, "item_id", "full_outer")
    in_cat = F.col("content_hash").isNotNull()
    was_active = F.col("old_status") == "active"
    reserved = F.col("old_retired_at") > F.lit(reserve_cutoff(logical_time, reserve_days))
    changed = ~F.col("content_hash").eqNullSafe(F.col("old_hash")) & F.lit(on_content_change == "reassign")
    kind = (F.when(in_cat & F.col("old_status").isNull(), NEW)
            .when(in_cat & was_active & changed, CHANGED)
            .when(in_cat & was_active, KEEP)
            .when(in_cat & reserved, RETURN)
            .when(in_cat, RETURN_LAPSED)
            .when(was_active, RETIRE)
            .otherwise(GONE))
    return joined.withColumn("kind", kind)


def counts(classified_df) -> Counts:
    from pyspark.sql import functions as F

    by = {r["kind"]: int(r["n"]) for r in classified_df.groupBy("kind").agg(F.count("*").alias("n")).collect()}
    active = sum(by.get(k, 0) for k in (KEEP, CHANGED, NEW, RETURN, RETURN_LAPSED))
    return Counts(active=active, new=by.get(NEW, 0), reassigned=by.get(CHANGED, 0), retired=by.get(RETIRE, 0),
                  returned=by.get(RETURN, 0) + by.get(RETURN_LAPSED, 0), kept=by.get(KEEP, 0))


def taken_codes(classified_df, logical_time: datetime, reserve_days: int, keep_df=None):
    """Spark (codes) of the SIDs no item may be given now: those kept (keep_df(item_id, codes), by default
    every KEEP and RETURN row's old SID) and those of retired items still in their reservation."""
    from pyspark.sql import functions as F

    if keep_df is None:
        keep_df = classified_df.where(F.col("kind").isin(*HOLDS_OLD_SID)).select("item_id", F.col("old_codes").alias("codes"))
    cutoff = F.lit(reserve_cutoff(logical_time, reserve_days))
    retiring_now = F.col("kind") == RETIRE
    reserved = (F.col("kind") == GONE) & (F.col("old_retired_at") > cutoff)
    held = classified_df.where((retiring_now & F.lit(reserve_days > 0)) | reserved).select(F.col("old_codes").alias("codes"))
    return keep_df.select("codes").unionByName(held)


def collect_to_place(classified_df, vectors_df, kinds=TO_PLACE, bound: int = 1_000_000):
    """(item ids sorted, vectors float32 [m, dim]) of the items that need a SID: bounded by the new items."""
    from pyspark.sql import functions as F

    from jobs.transforms import driver_rows

    pdf = driver_rows.collect(
        classified_df.where(F.col("kind").isin(*kinds)).select("item_id").join(vectors_df, "item_id").orderBy("item_id"),
        "new and changed items to place under the published tokenizer", bound,
        "Run tokenize.mode=refit for a change this large.")
    dim = len(pdf.vector.iloc[0]) if len(pdf) else 0
    x = np.stack(pdf.vector.to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, dim), dtype=np.float32)
    return pdf.item_id.to_numpy(dtype=str), x


def taken_near(spark, taken_df, semantic: np.ndarray, strategy: str, tok, x: np.ndarray, candidates: int) -> np.ndarray:
    """The taken SIDs that can conflict with placing `semantic` codes: under the same semantic code
    (dedup_digit), or under a first code the search may reach (the others). int64 [t, width]."""
    from pyspark.sql import functions as F

    levels = semantic.shape[1]
    if len(semantic) == 0:
        return np.zeros((0, levels + (strategy == "dedup_digit")), dtype=np.int64)
    if strategy == "dedup_digit":
        keys = spark.createDataFrame([(list(map(int, r)),) for r in {tuple(r) for r in semantic.tolist()}],
                                     "semantic array<int>")
        near = taken_df.join(F.broadcast(keys), F.slice("codes", 1, levels) == F.col("semantic"), "left_semi")
    else:
        from genrec_core.quantize.collisions import reachable_first_codes

        near = taken_df.where(F.col("codes")[0].isin(reachable_first_codes(tok, tok.latent(x), semantic, candidates)))
    rows = [r["codes"] for r in near.collect()]
    width = levels + (strategy == "dedup_digit")
    return np.asarray(rows, dtype=np.int64).reshape(-1, width)


def semantic_counts(published_df, levels: int) -> np.ndarray:
    """Items per semantic code over the published map's active items (an aggregate, not the map)."""
    from pyspark.sql import functions as F

    rows = (published_df.where(F.col("status") == "active").groupBy(F.slice("codes", 1, levels)).count()
            .groupBy("count").agg(F.count("*").alias("codes")).collect())
    out = []
    for r in rows:
        out.extend([int(r["count"])] * int(r["codes"]))
    return np.asarray(out, dtype=np.int64)


def codes_frame(spark, item_ids: np.ndarray, codes: np.ndarray):
    return spark.createDataFrame([(i, [int(c) for c in row]) for i, row in zip(item_ids.tolist(), codes.tolist())],
                                 "item_id string, codes array<int>")


def next_map(classified_df, kept_df, placed_df, logical_time: datetime, placed_origin: str):
    """The next map's rows: kept_df(item_id, codes, origin) keep their codes, placed_df(item_id, codes)
    get the `placed_origin`, retiring items are marked, long-gone ones stay as they were."""
    from pyspark.sql import functions as F

    c = classified_df.alias("c")
    active = (kept_df.unionByName(placed_df.withColumn("origin", F.lit(placed_origin)))
              .join(c.select("item_id", "content_hash"), "item_id")
              .select("item_id", "codes", "content_hash", F.lit("active").alias("status"),
                      F.lit(None).cast("timestamp").alias("retired_at"), "origin"))
    retired = (c.where(F.col("kind").isin(RETIRE, GONE))
               .select("item_id", F.col("old_codes").alias("codes"), F.col("old_hash").alias("content_hash"),
                       F.lit("retired").alias("status"),
                       F.when(F.col("kind") == RETIRE, F.lit(logical_time)).otherwise(F.col("old_retired_at"))
                       .cast("timestamp").alias("retired_at"),
                       F.col("old_origin").alias("origin")))
    return active.unionByName(retired).withColumn("sid", F.concat_ws("-", "codes"))


def churn_of(next_df, classified_df, levels: int) -> dict:
    """Churn of the old items that stayed, unchanged in content: full SID, semantic prefix, first code
    (shares), plus `moved` (how many changed SID). Aggregated on executors."""
    from pyspark.sql import functions as F

    old = classified_df.where(F.col("kind") == KEEP).select("item_id", "old_codes")
    j = old.join(next_df.select("item_id", "codes"), "item_id")
    row = j.agg(F.count("*").alias("n"),
                F.sum((F.col("codes") != F.col("old_codes")).cast("int")).alias("full"),
                F.sum((F.slice("codes", 1, levels) != F.slice("old_codes", 1, levels)).cast("int")).alias("prefix"),
                F.sum((F.col("codes")[0] != F.col("old_codes")[0]).cast("int")).alias("first")).first()
    n = int(row["n"] or 0)
    share = (lambda k: float(row[k] or 0) / n) if n else (lambda k: 0.0)
    return {"churn_full": share("full"), "churn_prefix": share("prefix"), "churn_first": share("first"),
            "compared": n, "moved": int(row["full"] or 0)}
