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
are broadcast and their rows salted over SALT buckets before the one shuffle, so no window
partition holds a hot user's whole day.

Near-duplicates and bot days are judged within one event date: each date's partition is a function
of that date's rows only, which is what lets a run rewrite a date on its own. A pair of repeats
straddling midnight is therefore kept twice.
"""
from __future__ import annotations

from schemas.tables import RAW_EVENTS

# Fields whose content identifies an event; where and when it landed is not part of it, so a row
# re-sent in a later batch is an exact duplicate.
IDENTITY = ("user_id", "item_id", "event_type", "event_time", "session_id", "rating")
# Catalogue rows under this count are broadcast to every task (10^6 ids is about 50 MB).
BROADCAST_ITEMS = 2_000_000
# Buckets a bot user-day's rows are spread over before the windows.
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
    from pyspark.sql import Window, functions as F

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
    """(_u, _date, _hot) for user-days with more than bot_max_events_per_day attributable rows.

    A row is attributable to a user-day when it is not malformed and has a user and an event time
    inside the window (in daily mode, one that landed within max_late_days of its date, as the run
    reads it). Whatever else is wrong with such a row, it is still traffic from that user on that
    day, and this definition needs only four raw columns: the scan is column-pruned and a partial
    aggregation, so a hot user costs one counter per task."""
    from pyspark.sql import functions as F

    ts, day = _event_ts(), F.to_date(_event_ts())
    late = F.datediff(F.to_date("ingest_date"), day)
    ok = (F.col("malformed").isNull() & (F.trim("user_id") != "") & ts.isNotNull()
          & (ts >= F.lit(cfg.min_event_time).cast("timestamp")) & (ts < F.lit(cfg.max_event_time).cast("timestamp")))
    if daily:
        ok = ok & (late >= 0) & (late <= cfg.max_late_days)
    return (raw.where(ok).groupBy(F.trim("user_id").alias("_u"), day.alias("_date")).count()
            .where(F.col("count") > cfg.bot_max_events_per_day).select("_u", "_date", F.lit(True).alias("_hot")))


def removals(valid, hot, cfg):
    """rule = bot_user_day | exact_duplicate | near_duplicate | null for valid rows (reason null).

    A hot user-day (hot_user_days) is a bot's outright. Its rows are spread over SALT buckets, so a
    hot user fills many tasks instead of one; every other day is bucket 0, so (_date, _u, _salt) is
    just the day. One shuffle by that key serves every window, and both windows sort by time, then
    the full identity, then arrival:
    - an exact duplicate is a row whose identity equals the previous row's (the earliest arrival of
      a set sorts first and is kept);
    - a day is too fast when the median gap between its live rows is under bot_min_median_gap_seconds;
      a duplicate shares its original's time, so the previous row's time is that of the previous
      live row and duplicates need not be skipped;
    - a near-duplicate follows a row of the same item and type within near_duplicate_seconds.
    The day comes first in the sort, so the rows leave already ordered by event_date and the Delta
    writer needs no sort of its own."""
    from pyspark.sql import Window, functions as F

    # Only what the rules and clean_columns read crosses the shuffle.
    keep = (*IDENTITY, "ingest_date", "source", "_ts", "_date", "_type", "_rating", "_arrival", "reason")
    df = (valid.select(*keep).withColumn("_u", F.trim("user_id")).withColumn("_i", F.trim("item_id"))
          .join(F.broadcast(hot), on=["_u", "_date"], how="left"))
    is_hot = F.coalesce(F.col("_hot"), F.lit(False))
    salt = F.when(is_hot, F.pmod(F.xxhash64(*IDENTITY, "ingest_date", "source"), F.lit(SALT))).otherwise(0)
    df = df.withColumn("_salt", salt).repartition("_date", "_u", "_salt")

    order = ("_ts", *IDENTITY, "ingest_date", "source")
    day = Window.partitionBy("_date", "_u", "_salt")
    by_time = day.orderBy(*order)
    identity, seconds = F.struct(*IDENTITY), F.col("_ts").cast("double")
    # Window expressions over one spec in one select share a Window operator; with days of one or
    # two events each, the per-group cost of every extra operator outweighs the sorting.
    df = df.select("*", F.lag(identity).over(by_time).alias("_prev"), F.lag(seconds).over(by_time).alias("_prev_ts"))
    df = df.withColumn("rule", F.when(is_hot, F.lit("bot_user_day"))
                       .when(F.col("_prev").eqNullSafe(identity), F.lit("exact_duplicate")))
    live = F.col("rule").isNull()
    df = df.withColumn("_gap", F.when(live, seconds - F.col("_prev_ts")))
    df = df.select("*", F.expr("percentile(_gap, 0.5)").over(day).alias("_median_gap"),
                   F.sum(live.cast("int")).over(day).alias("_n"))
    fast = (F.col("_n") >= cfg.bot_min_events_for_gap) & (F.col("_median_gap") < cfg.bot_min_median_gap_seconds)
    df = df.withColumn("rule", F.when(live & fast, F.lit("bot_user_day")).otherwise(F.col("rule")))
    # Rows of a fast day are all bots by now, so within a live day the previous row of the same item
    # and type is live or a duplicate sharing a live row's time.
    same = Window.partitionBy("_date", "_u", "_salt", "_i", "_type").orderBy(*order)
    since = F.col("_ts").cast("long") - F.lag(F.col("_ts").cast("long")).over(same)
    df = df.withColumn("rule", F.when(F.col("rule").isNull() & (since <= cfg.near_duplicate_seconds),
                                      F.lit("near_duplicate")).otherwise(F.col("rule")))
    # A valid row is owned by its event date (parse_events), which need not cross the shuffle twice.
    return (df.drop("_prev", "_prev_ts", "_gap", "_median_gap", "_n", "_hot", "_salt", "_u", "_i")
            .withColumn("scope_date", F.col("_date")))


def mark_removals(df, cfg, daily: bool = False):
    """removals() on the valid rows of a parsed frame, with the quarantined rows alongside (rule null)."""
    from pyspark.sql import functions as F

    valid = df.where(F.col("reason").isNull())
    rest = df.where(F.col("reason").isNotNull()).withColumn("rule", F.lit(None).cast("string"))
    return removals(valid, hot_user_days(df, cfg, daily), cfg).unionByName(rest, allowMissingColumns=True)


def event_id_expr():
    """md5 (32 hex characters) of the identity fields, each null as U+0000 and joined by U+001F.

    The encoding is injective on valid rows: ids with control characters are quarantined as
    undecodable, and a parsed time or rating holds none. 128 bits make a collision among 10^10
    events about 10^-19 likely. A sha256 of the row as JSON was twice as long and as slow: written
    64 random hex characters per row were 80% of the clean table's bytes."""
    from pyspark.sql import functions as F

    return F.md5(F.concat_ws("\u001f", *[F.coalesce(F.col(c), F.lit("\u0000")) for c in IDENTITY]))


def clean_columns(df):
    """The clean rows, typed, in the interactions_clean layout."""
    from pyspark.sql import functions as F

    return df.where(F.col("reason").isNull() & F.col("rule").isNull()).select(
        event_id_expr().alias("event_id"),
        F.trim("user_id").alias("user_id"), F.trim("item_id").alias("item_id"),
        F.col("_type").alias("event_type"), F.col("_ts").alias("event_time"), "session_id",
        F.col("_rating").alias("rating"), F.col("_arrival").alias("ingest_date"),
        F.col("_date").alias("event_date"))


def quarantine_columns(df, dataset: str):
    """The quarantined rows, each kept whole as JSON of its raw fields."""
    from pyspark.sql import functions as F

    return df.where(F.col("reason").isNotNull()).select(
        F.lit("events").alias("source"), "reason", raw_json(df, RAW_EVENTS.column_names).alias("raw"),
        F.lit(dataset).alias("dataset"), "scope_date")
