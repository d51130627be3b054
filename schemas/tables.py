"""Every table's columns, types, partitioning and constraints, as data.

Spark schemas (`schemas.spark`), great-expectations suites (`schemas.expectations`) and the table
reference in the docs (`schemas.docs`) are all derived from the specs below, so a column is declared
exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Spark SQL type: string, int, bigint, double, boolean, date, timestamp, array<...>
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    doc: str
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    allowed_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Delta table properties set when the table is created, e.g. Change Data Feed.
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def not_null(self) -> list[str]:
        return [c.name for c in self.columns if not c.nullable]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


EVENT_TYPES = ("view", "click", "cart", "fav", "buy", "rate")
SPLITS = ("train", "valid", "test")

# Quarantine reason codes. A quarantined row keeps its raw form next to one of these.
REASONS = {
    "malformed_row": "the line did not parse in the source layout (wrong column count, broken JSON or quoting)",
    "undecodable_text": "a field holds bytes that are not valid UTF-8 (U+FFFD) or control characters",
    "null_user_id": "user_id is null or empty",
    "null_item_id": "item_id is null or empty",
    "bad_event_time": "event_time does not parse as a timestamp",
    "event_time_out_of_window": "event_time lies outside [clean.min_event_time, clean.max_event_time), or (daily runs) after the day it landed",
    "late_beyond_window": "the event arrived more than clean.max_late_days after its event date",
    "unknown_event_type": "event_type is not one of the configured event types",
    "bad_rating": "rating does not parse as a number in [0, 5]",
    "unknown_item": "item_id is not in the item catalogue",
    "null_item_key": "catalogue row without an item_id",
    "duplicate_item_key": "catalogue row repeating an item_id already seen (first by content order wins)",
    "oversized_field": "a catalogue text field is longer than clean.max_text_chars",
}

# Rules that remove valid rows on purpose. They are counted per rule in ingest_audit, not quarantined.
REMOVAL_RULES = {
    "exact_duplicate": "the same event (user, item, type, time, session, rating) again; the earliest arrival wins",
    "near_duplicate": "same user, item and event type within clean.near_duplicate_seconds of the previous such event that day",
    "bot_user_day": "the user's events on that day exceed clean.bot_max_events_per_day or come faster than a human",
    "kcore": "dropped by the iterative k-core filter (user or item with fewer than clean.kcore events)",
    "truncated": "older than the sequence's most recent sequences.max_len items",
    "after_test_target": "temporal split: later than the user's first event at or after the cut-off",
    "no_history": "temporal split: the user has no event before the cut-off, so the test target has no history",
}

# The layout every adapter maps its source onto. All strings, as landed: typing is the clean
# stage's job, so a bad value becomes a quarantine row instead of a read failure.
RAW_EVENTS = TableSpec(
    name="raw_events",
    doc="Landed interaction events in the raw contract (parquet under the landing folder, not Delta).",
    columns=(
        Column("user_id", "string", True),
        Column("item_id", "string", True),
        Column("event_type", "string", True, "view, click, cart, fav, buy or rate, before validation."),
        Column("event_time", "string", True, "ISO-8601 or epoch seconds."),
        Column("session_id", "string", True),
        Column("rating", "string", True),
        Column("source", "string", True, "Adapter and file the row came from."),
        Column("malformed", "string", True, "The raw line when the adapter could not parse it; null otherwise."),
        Column("ingest_date", "string", False, "Arrival date (YYYY-MM-DD) of the batch; the landing partition."),
    ),
    partition_by=("ingest_date",),
)

RAW_ITEMS = TableSpec(
    name="raw_items",
    doc="Landed catalogue rows in the raw contract (parquet under the landing folder, not Delta).",
    columns=(
        Column("item_id", "string", True),
        Column("title", "string", True),
        Column("brand", "string", True),
        Column("categories", "string", True, "Category path, 'Top > Sub > Leaf'."),
        Column("price", "string", True),
        Column("description", "string", True),
        Column("attributes", "string", True, "Free-form attributes as a JSON object."),
        Column("malformed", "string", True, "The raw line when the adapter could not parse it; null otherwise."),
    ),
)

ITEMS = TableSpec(
    name="items",
    doc="The item catalogue, one row per item, with a hash of the text that is embedded.",
    columns=(
        Column("item_id", "string", False, "Catalogue key."),
        Column("title", "string", True),
        Column("brand", "string", True),
        Column("categories", "string", True, "Category path, 'Top > Sub > Leaf'."),
        Column("price", "double", True),
        Column("description", "string", True),
        Column("attributes", "string", True, "Free-form attributes as a JSON object."),
        Column("content_hash", "string", False, "sha256 of the embedded fields (title, brand, categories); drives incremental embedding."),
    ),
    unique=(("item_id",),),
)

INTERACTIONS_CLEAN = TableSpec(
    name="interactions_clean",
    doc=("Typed, de-duplicated interaction events whose item is in the catalogue. Each event_date "
         "partition is rewritten whole (replaceWhere) from every landed batch holding its events."),
    columns=(
        Column("event_id", "string", False, "md5 of the identity fields (user, item, type, time, session, rating as landed); the event's unique key."),
        Column("user_id", "string", False),
        Column("item_id", "string", False),
        Column("event_type", "string", False),
        Column("event_time", "timestamp", False, "UTC."),
        Column("session_id", "string", True),
        Column("rating", "double", True),
        Column("ingest_date", "date", False, "Arrival date of the batch the event came in."),
        Column("event_date", "date", False, "UTC date of event_time; the partition column."),
    ),
    partition_by=("event_date",),
    unique=(("event_id",),),
    allowed_values={"event_type": EVENT_TYPES},
)

INTERACTIONS_QUARANTINE = TableSpec(
    name="interactions_quarantine",
    doc=("Rows that failed cleaning, kept whole (as JSON) with the reason code of the first rule they "
         "broke. Partitioned like the clean table by the date whose run owns the row: the event date "
         "when it parses, else the arrival date."),
    columns=(
        Column("source", "string", False, "'events' or 'items'."),
        Column("reason", "string", False, "One of schemas.tables.REASONS."),
        Column("raw", "string", False, "The raw row as JSON, exactly as read."),
        Column("dataset", "string", False),
        Column("scope_date", "date", True, "Owning date for events; null for catalogue rows."),
    ),
    partition_by=("scope_date",),
    allowed_values={"reason": tuple(REASONS), "source": ("events", "items")},
)

INGEST_AUDIT = TableSpec(
    name="ingest_audit",
    doc=("Row accounting per run and stage: input rows = output rows + quarantined (by reason) + "
         "removed (by rule). The run fails before writing it if a stage does not balance."),
    columns=(
        Column("run_id", "string", False),
        Column("dataset", "string", False),
        Column("stage", "string", False, "The pipeline stage that wrote the row: 'ingest' or 'sequences'."),
        Column("source", "string", False, "'events' or 'items'."),
        Column("scope", "string", False, "JSON list of the event dates the run rewrote, or 'all'."),
        Column("input_rows", "bigint", False),
        Column("output_rows", "bigint", False),
        Column("quarantined_rows", "bigint", False),
        Column("removed_rows", "bigint", False),
        Column("by_reason", "string", False, "JSON object: quarantine reason -> rows."),
        Column("by_rule", "string", False, "JSON object: removal rule -> rows."),
        Column("audited_at", "timestamp", False, "The run's logical time."),
    ),
    unique=(("run_id", "stage", "source"),),
)

USER_SEQUENCES = TableSpec(
    name="user_sequences",
    doc=("Time-ordered item sequences (after the k-core filter), per user one 'train' row and, when the "
         "split gives them, one 'valid' and one 'test' row. leave_one_out: test target the last item, valid "
         "target the second-last, train all before (users with under 3 events get a train row only). "
         "temporal: history before sequences.temporal_cutoff, test target the first item at or after it, "
         "valid target the last item before it."),
    columns=(
        Column("user_id", "string", False),
        Column("split", "string", False),
        Column("item_ids", "array<string>", False, "History in time order, oldest first."),
        Column("target", "string", True, "The held-out item; null on 'train' rows."),
    ),
    unique=(("user_id", "split"),),
    allowed_values={"split": SPLITS},
)

ITEM_EMBEDDINGS = TableSpec(
    name="item_embeddings",
    doc="One L2-normalised text embedding per item and encoder.",
    columns=(
        Column("item_id", "string", False),
        Column("encoder", "string", False, "Encoder name (folder name of the model)."),
        Column("content_hash", "string", False, "items.content_hash that was embedded."),
        Column("dim", "int", False),
        Column("vector", "array<float>", False),
    ),
    unique=(("item_id", "encoder"),),
)

SID_STATUSES = ("active", "retired")
# How an item got its SID: a fit assigned the whole map, or `assign` placed it under a published tokenizer.
SID_ORIGINS = ("fit", "assign")
# Why the tokenize stage took its mode; the decision is printed and recorded in sid_map_versions.
MAP_MODES = ("assign", "refit")

SID_COLUMNS = (
    Column("item_id", "string", False),
    Column("sid", "string", False, "Codes joined by '-', e.g. '17-203-5-0'."),
    Column("codes", "array<int>", False, "Semantic codes per level, then the dedup code."),
    Column("map_version", "string", False, "Content fingerprint of the whole map; every row carries the current one."),
    Column("content_hash", "string", False, "items.content_hash the SID was given for."),
    Column("status", "string", False, "'active' (in the catalogue) or 'retired' (left it; the row and SID are kept)."),
    Column("retired_at", "timestamp", True, "Logical time of the run that found the item gone; null while active."),
    Column("origin", "string", False, "'fit' (assigned by a fit of the whole map) or 'assign' (placed later under the published tokenizer)."),
)

# A retired item's SID stays reserved for tokenize.sid_reserve_days; only active and reserved SIDs
# must be unique, so a SID may appear again once its old holder's reservation has lapsed.
ITEM_SID_STAGED = TableSpec(
    name="item_sid_staged",
    doc="The next SID map produced by the last tokenize run (active and retired rows), waiting for the gate.",
    columns=SID_COLUMNS,
    unique=(("item_id",),),
    allowed_values={"status": SID_STATUSES, "origin": SID_ORIGINS},
)

ITEM_SID = TableSpec(
    name="item_sid",
    doc=("The published item -> Semantic ID map, active and retired items; each publish is a Delta "
         "version, and the Change Data Feed records every SID and status change."),
    columns=SID_COLUMNS + (Column("tokenizer_version", "string", False, "MLflow version of genrec-tokenizer."),),
    unique=(("item_id",),),
    allowed_values={"status": SID_STATUSES, "origin": SID_ORIGINS},
    properties={"delta.enableChangeDataFeed": "true"},
)

SID_MAP_VERSIONS = TableSpec(
    name="sid_map_versions",
    doc="Manifest of every published SID map: how it was made, what changed, tokenizer, metrics and input versions.",
    columns=(
        Column("map_version", "string", False),
        Column("tokenizer_version", "string", False),
        Column("item_sid_version", "bigint", False, "Delta version of item_sid after the publish; read the map with VERSION AS OF it."),
        Column("n_items", "bigint", False, "Active items."),
        Column("mode", "string", False, "'assign' (published tokenizer, new items placed) or 'refit' (new tokenizer)."),
        Column("reason", "string", False, "Why the tokenize stage took this mode."),
        Column("parent_map_version", "string", True, "The map published before this one; null for the first."),
        Column("n_new", "bigint", False, "Items that got a SID for the first time."),
        Column("n_reassigned", "bigint", False, "Items given a new SID because their content changed (tokenize.on_content_change = reassign)."),
        Column("n_retired", "bigint", False, "Items that left the catalogue in this publish."),
        Column("n_returned", "bigint", False, "Retired items back in the catalogue."),
        Column("n_moved", "bigint", False, "Items of the parent map, unchanged in content, whose SID changed (a refit)."),
        Column("churn_full", "double", False, "Share of unchanged old items whose full SID changed."),
        Column("churn_prefix", "double", False, "Share of unchanged old items whose semantic codes changed."),
        Column("churn_first", "double", False, "Share of unchanged old items whose first code changed."),
        Column("churn_accepted", "boolean", False, "True when --accept-churn let a churn above gate.max_churn through."),
        Column("metrics", "string", False, "JSON: SID quality metrics."),
        Column("input_versions", "string", False, "JSON: Delta versions of the tables the map was built from."),
        Column("config", "string", False, "JSON: the resolved tokenizer config."),
        Column("published_at", "timestamp", False),
    ),
    unique=(("map_version",),),
    allowed_values={"mode": MAP_MODES},
)

RECOMMENDATIONS = TableSpec(
    name="recommendations",
    doc=("Batch recommendations of the champion recommender: for every user with a test split, the top "
         "train.recommend_k active catalogue items to show next, scored on their whole known history. "
         "One partition per as_of_date; a rerun for a date replaces that date's partition only."),
    columns=(
        Column("user_id", "string", False),
        Column("rank", "int", False, "1 = best."),
        Column("item_id", "string", False, "An active item of item_sid."),
        Column("sid", "string", False, "The item's SID in the map the recommendations were made with."),
        Column("score", "double", False, "The model's score, higher is better (a logit, a beam's log-probability per SID token, or a count)."),
        Column("model", "string", False, "The registered model, e.g. genrec-recommender-sid-item."),
        Column("model_version", "string", False, "Its MLflow version (the champion's at the time)."),
        Column("map_version", "string", False, "The published map the item ids and SIDs come from."),
        Column("as_of_date", "date", False, "The logical date of the run."),
    ),
    partition_by=("as_of_date",),
    unique=(("as_of_date", "user_id", "rank"), ("as_of_date", "user_id", "item_id")),
)

# Contracts of landed files (not Delta tables); the adapters and the generator write them.
RAW_CONTRACTS = (RAW_EVENTS, RAW_ITEMS)

ALL_TABLES = (ITEMS, INTERACTIONS_CLEAN, INTERACTIONS_QUARANTINE, INGEST_AUDIT, USER_SEQUENCES,
              ITEM_EMBEDDINGS, ITEM_SID_STAGED, ITEM_SID, SID_MAP_VERSIONS, RECOMMENDATIONS)
BY_NAME = {t.name: t for t in ALL_TABLES}
