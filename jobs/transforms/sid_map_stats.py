"""Aggregates of a SID map computed on executors: its content fingerprint, collision counts, and the top category column."""
from __future__ import annotations


def map_fingerprint(assigned_df) -> tuple:
    """Order-independent digest of the (item_id, sid) pairs, computed on executors."""
    from pyspark.sql import functions as F

    pair = F.concat_ws("\x1f", "item_id", "sid")
    row = assigned_df.agg(F.count("*"), F.sum(F.crc32(pair)),
                          F.sum(F.xxhash64(pair) % F.lit(1 << 40))).first()
    return tuple(int(v or 0) for v in row)


def collision_counts(assigned_df) -> dict:
    """Over all assigned items: semantic collisions before resolution and SID uniqueness after."""
    from pyspark.sql import functions as F

    before = assigned_df.groupBy("semantic").count().agg(F.count("*"), F.sum("count"), F.max("count")).first()
    after = assigned_df.groupBy("sid").count().agg(F.count("*"), F.max("count")).first()
    moved = assigned_df.where(F.slice("codes", 1, F.size("semantic")) != F.col("semantic")).count()
    n = int(before[1] or 0)
    return {"n_items_assigned": n, "collision_rate_all": (n - int(before[0] or 0)) / n if n else 0.0,
            "max_items_per_sid_all": int(before[2] or 0), "unique_sids_after": int(after[0] or 0),
            "max_items_per_sid_after": int(after[1] or 0), "moved": int(moved)}


def top_category():
    """Spark column: the first level of `categories` ('(none)' when missing); purity is measured on it."""
    from pyspark.sql import functions as F

    top = F.trim(F.split(F.col("categories"), ">").getItem(0))
    return F.when(F.length(top) > 0, top).otherwise(F.lit("(none)"))
