"""The cleaning rules, as Spark transformations over frames in the raw contract.

Every raw row gets exactly one fate: a quarantine `reason` (the first rule it breaks,
schemas.tables.REASONS), a removal `rule` (schemas.tables.REMOVAL_RULES), or neither, which makes it
clean. `parse_events` and `mark_unknown_items` set the reason; `removals` sets the rule on the valid
rows. The ingest stage reads the parsed frame twice, once for the quarantine (no shuffle) and once
for the clean rows (one shuffle), and counts every fate as it writes, so no row can go unaccounted.

Rule order: quarantine rules first (malformed line, undecodable text, null ids, bad or out-of-window
time, late arrival, unknown event type, bad rating, unknown item), then among valid rows bot
user-days by volume, exact duplicates (the earliest arrival wins), bot user-days by speed,
near-duplicates.

Skew: the two heavy keys are hot items and hot users. The catalogue join is broadcast when the
catalogue is small and otherwise a sort-merge join that AQE's skew-join splits. Bot volume is a
partial aggregation over four raw columns, which a hot user cannot overload; its few hot user-days
are broadcast and their rows salted over SALT buckets before the one shuffle, so no task
holds a hot user's whole day.

Near-duplicates and bot days are judged within one event date: each date's partition is a function
of that date's rows only, which is what lets a run rewrite a date on its own. A pair of repeats
straddling midnight is therefore kept twice.
"""
from __future__ import annotations

from schemas import tables as S

# Fields whose content identifies an event; where and when it landed is not part of it, so a row
# re-sent in a later batch is an exact duplicate.
IDENTITY = ("user_id", "item_id", "event_type", "event_time", "session_id", "rating")
# Catalogue rows under this count are broadcast to every task (10^6 ids is about 50 MB).
BROADCAST_ITEMS = 2_000_000
# Buckets a bot user-day's rows are spread over before the shuffle.
SALT = 64


def raw_json(df, columns):
    from pyspark.sql import functions as F

    # ignoreNullFields=false keeps explicit nulls, so the quarantined JSON shows every raw field.
    return F.to_json(F.struct(*[F.col(c) for c in columns]), {"ignoreNullFields": "false"})


def _undecodable(*cols):
    from pyspark.sql import functions as F

    # U+FFFD is what a reader leaves for bytes that are not UTF-8; C0 controls never belong in ids.
    # The pattern matches one character, so joining the fields cannot create a match across them
    # (and concat_ws skips nulls).
    return F.concat_ws("", *cols).rlike(r"[\x{FFFD}\x00-\x08\x0B\x0C\x0E-\x1F]")


def _event_ts():
    from pyspark.sql import functions as F

    return F.coalesce(F.expr("try_to_timestamp(event_time)"),
                      F.expr("timestamp_seconds(try_cast(event_time AS bigint))"))


def content_hash_expr():
    """sha256 over the fields that are embedded; a change in any of them re-embeds the item."""
    from pyspark.sql import functions as F

    fields = F.to_json(F.struct("title", "brand", "categories"), {"ignoreNullFields": "false"})
    return F.sha2(fields, 256)


def clean_items(raw, cfg):
    """-> (items, quarantine). The first row per item_id by raw content wins; repeats are quarantined."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = raw.withColumn("raw", raw_json(raw, raw.columns))
    null_key = F.col("item_id").isNull() | (F.trim("item_id") == "")
    text = ("title", "brand", "categories", "description", "attributes")
    too_long = F.greatest(*[F.coalesce(F.length(c), F.lit(0)) for c in text]) > cfg.max_text_chars
    malformed = F.col("malformed").isNotNull() if "malformed" in raw.columns else F.lit(False)
    valid = F.when(malformed, F.lit("malformed_row")).when(null_key, F.lit("null_item_key")).when(_undecodable("item_id", "title", "brand", "categories"),
                                                           F.lit("undecodable_text"))
    df = df.withColumn("reason", valid.when(too_long, F.lit("oversized_field")))
    rank = F.row_number().over(Window.partitionBy(F.trim("item_id")).orderBy("raw"))
    df = df.withColumn("reason", F.when(F.col("reason").isNull() & (rank > 1), F.lit("duplicate_item_key"))
                       .otherwise(F.col("reason")))
    items = (df.where(F.col("reason").isNull())
             .withColumn("item_id", F.trim("item_id"))
             .withColumn("price", F.expr("try_cast(price AS double)"))
             .withColumn("content_hash", content_hash_expr()))
    quarantine = df.where(F.col("reason").isNotNull()).select(
        F.lit("items").alias("source"), "reason", "raw", F.lit(None).cast("date").alias("scope_date"))
    return items, quarantine


def parse_events(raw, cfg, daily: bool):
    """Adds the typed columns, scope_date and the quarantine `reason` (null when valid).

    daily: the run rewrites single dates, so an event landing more than max_late_days after its date,
    or before its date, is quarantined (its date's partition would not read that batch again).
    Neither the raw JSON nor the event_id is built here: only quarantined rows need the one
    (quarantine_columns) and only clean rows the other (clean_columns)."""
    from pyspark.sql import functions as F

    df = (raw.withColumn("_ts", _event_ts())
          .withColumn("_rating", F.expr("try_cast(rating AS double)"))
          .withColumn("_type", F.lower(F.trim("event_type")))
          .withColumn("_arrival", F.to_date("ingest_date"))
          .withColumn("_date", F.to_date("_ts")))
    lo, hi = F.lit(cfg.min_event_time).cast("timestamp"), F.lit(cfg.max_event_time).cast("timestamp")
    blank = lambda c: F.col(c).isNull() | (F.trim(c) == "")  # noqa: E731
    late = F.datediff("_arrival", "_date")
    reason = (
        F.when(F.col("malformed").isNotNull(), "malformed_row")
        .when(_undecodable("user_id", "item_id", "event_type", "session_id"), "undecodable_text")
        .when(blank("user_id"), "null_user_id")
        .when(blank("item_id"), "null_item_id")
        .when(F.col("_ts").isNull(), "bad_event_time")
        .when((F.col("_ts") < lo) | (F.col("_ts") >= hi), "event_time_out_of_window")
    )
    if daily:
        reason = (reason.when(late < 0, "event_time_out_of_window")
                  .when(late > cfg.max_late_days, "late_beyond_window"))
    reason = (
        reason.when(F.col("_type").isNull() | ~F.col("_type").isin(list(cfg.event_types)), "unknown_event_type")
        .when(F.col("rating").isNotNull() & (F.col("_rating").isNull() | (F.col("_rating") < 0)
                                             | (F.col("_rating") > 5)), "bad_rating")
    )
    df = df.withColumn("reason", reason)
    # The date whose run owns the row: its event date when that is usable, else the day it landed.
    owned_by_event = F.col("reason").isNull() | F.col("reason").isin("unknown_event_type", "bad_rating")
    return df.withColumn("scope_date", F.when(owned_by_event, F.col("_date")).otherwise(F.col("_arrival")))


def mark_unknown_items(df, items, n_items: int):
    """reason = unknown_item for valid rows whose item is not in the catalogue."""
    from pyspark.sql import functions as F

    known = items.select(F.col("item_id").alias("_item"), F.lit(True).alias("_known"))
    if n_items <= BROADCAST_ITEMS:
        known = F.broadcast(known)
    df = df.join(known, F.trim(df["item_id"]) == known["_item"], "left").drop("_item")
    return df.withColumn("reason", F.when(F.col("reason").isNull() & F.col("_known").isNull(),
                                          F.lit("unknown_item")).otherwise(F.col("reason"))).drop("_known")


def hot_user_days(raw, cfg, daily: bool):
    """(user_id, event_date, _hot) for user-days with more than bot_max_events_per_day attributable rows.

    A row is attributable to a user-day when it is not malformed and has a user and an event time
    inside the window (in daily mode, one that landed within max_late_days of its date, as the run
    reads it). Whatever else is wrong with such a row, it is still traffic from that user on that
    day, and this definition needs only four raw columns: the scan is column-pruned and a partial
    aggregation, so a hot user costs one counter per task."""
    from pyspark.sql import functions as F

    ts = _event_ts()
    day = F.to_date(ts)
    late = F.datediff(F.to_date("ingest_date"), day)
    ok = (F.col("malformed").isNull() & (F.trim("user_id") != "") & ts.isNotNull()
          & (ts >= F.lit(cfg.min_event_time).cast("timestamp")) & (ts < F.lit(cfg.max_event_time).cast("timestamp")))
    if daily:
        ok = ok & (late >= 0) & (late <= cfg.max_late_days)
    return (raw.where(ok).groupBy(F.trim("user_id").alias("user_id"), day.alias("event_date")).count()
            .where(F.col("count") > cfg.bot_max_events_per_day)
            .select("user_id", "event_date", F.lit(True).alias("_hot")))


def removals(valid, hot, cfg):
    """The valid rows (reason null) in the interactions_clean layout, plus `rule`: bot_user_day,
    exact_duplicate, near_duplicate or null (clean).

    A hot user-day (hot_user_days) is a bot's outright. Its rows are spread over SALT buckets, so a
    hot user fills many tasks instead of one; every other day is bucket 0, so (event_date, user,
    _salt) is just the day. One shuffle by that key, one sort within each partition by the key and
    then (event_time, event_id, ingest_date, source), and the rules of genrec_core.data.removals run
    over the sorted rows in Arrow batches (mapInArrow). Sorting by the event_id puts the copies of an
    event side by side, the earliest arrival first. The day leads the sort, so the rows leave ordered
    by event_date and the Delta writer needs no sort of its own.

    Three Spark window operators (one a percentile) did the same in an earlier version. With user-days
    of one or two events, their cost per group dominated: 112 s against 77 s for parse, join, shuffle
    and rules at 1.1e7 rows."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ByteType, StructField, StructType

    from genrec_core.data.removals import GROUP_KEYS, RULE_NAMES, Thresholds

    # Only what the rules and the clean layout need crosses the shuffle.
    df = (valid.select(event_id_expr().alias("event_id"), *typed_columns(), "source")
          .join(F.broadcast(hot), on=["user_id", "event_date"], how="left")
          .withColumn("_hot", F.coalesce(F.col("_hot"), F.lit(False))))
    salt = F.when(F.col("_hot"), F.pmod(F.xxhash64("event_id", "ingest_date", "source"), F.lit(SALT))).otherwise(0)
    df = (df.withColumn("_salt", salt.cast("int")).repartition(*GROUP_KEYS)
          .sortWithinPartitions(*GROUP_KEYS, "event_time", "event_id", "ingest_date", "source").drop("source"))
    out = StructType([*df.schema.fields, StructField("_rule", ByteType(), False)])
    df = df.mapInArrow(_rules_over_partition(Thresholds.of(cfg)), out)
    rule = F.create_map(*[F.lit(x) for code, name in RULE_NAMES.items() for x in (code, name)])[F.col("_rule")]
    return df.withColumn("rule", rule).drop("_rule", "_hot", "_salt")


def _rules_over_partition(thresholds):
    """The mapInArrow function: whole groups in, the same rows out with their rule code."""
    def run(batches):
        import pyarrow as pa

        from genrec_core.data.removals import complete_groups, table_codes

        for table in complete_groups(batches):
            codes = table_codes(table, thresholds)
            yield from table.append_column("_rule", pa.array(codes, type=pa.int8())).to_batches()
    return run


def typed_columns():
    """The parsed frame's typed fields in the interactions_clean layout, event_id aside."""
    from pyspark.sql import functions as F

    return [F.trim("user_id").alias("user_id"), F.trim("item_id").alias("item_id"),
            F.col("_type").alias("event_type"), F.col("_ts").alias("event_time"), "session_id",
            F.col("_rating").alias("rating"), F.col("_arrival").alias("ingest_date"),
            F.col("_date").alias("event_date")]


def mark_removals(df, cfg, daily: bool = False):
    """removals() on the valid rows of a parsed frame, with the quarantined rows alongside in the same
    layout (event_id and rule null): every row of `df` once, with its reason or rule."""
    from pyspark.sql import functions as F

    valid = (removals(df.where(F.col("reason").isNull()), hot_user_days(df, cfg, daily), cfg)
             .withColumn("scope_date", F.col("event_date")))  # a valid row's date is its event date
    rest = df.where(F.col("reason").isNotNull()).select(
        F.lit(None).cast("string").alias("event_id"), *typed_columns(), "reason",
        F.lit(None).cast("string").alias("rule"), "scope_date")
    return valid.withColumn("reason", F.lit(None).cast("string")).unionByName(rest)


def event_id_expr():
    """md5 (32 hex characters) of the identity fields, each null as U+0000 and joined by U+001F.

    The encoding is injective on valid rows: ids with control characters are quarantined as
    undecodable, and a parsed time or rating holds none. 128 bits make a collision among 10^10
    events about 10^-19 likely. A sha256 of the row as JSON was twice as long and as slow: written
    64 random hex characters per row were 80% of the clean table's bytes."""
    from pyspark.sql import functions as F

    return F.md5(F.concat_ws("\u001f", *[F.coalesce(F.col(c), F.lit("\u0000")) for c in IDENTITY]))


def clean_columns(df):
    """The rows of removals() that no rule removed, as interactions_clean."""
    from pyspark.sql import functions as F

    return df.where(F.col("rule").isNull()).select(*S.INTERACTIONS_CLEAN.column_names)


def quarantine_columns(df, dataset: str):
    """The quarantined rows, each kept whole as JSON of its raw fields."""
    from pyspark.sql import functions as F

    return df.where(F.col("reason").isNotNull()).select(
        F.lit("events").alias("source"), "reason", raw_json(df, S.RAW_EVENTS.column_names).alias("raw"),
        F.lit(dataset).alias("dataset"), "scope_date")
