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
    "null_user_id": "user_id is null or empty",
    "null_item_id": "item_id is null or empty",
    "bad_event_time": "event_time does not parse as a timestamp",
    "event_time_out_of_window": "event_time lies outside [clean.min_event_time, clean.max_event_time)",
    "unknown_event_type": "event_type is not one of the configured event types",
    "bad_rating": "rating does not parse as a number in [0, 5]",
    "unknown_item": "item_id is not in the item catalogue",
    "null_item_key": "catalogue row without an item_id",
    "duplicate_item_key": "catalogue row repeating an item_id already seen (first by content order wins)",
}

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
        Column("content_hash", "string", False, "sha256 of the embedded fields (title, brand, categories); drives incremental embedding."),
    ),
    unique=(("item_id",),),
)

INTERACTIONS_CLEAN = TableSpec(
    name="interactions_clean",
    doc="Typed, de-duplicated interaction events whose item is in the catalogue.",
    columns=(
        Column("event_id", "string", False, "sha256 of the raw row; the event's unique key."),
        Column("user_id", "string", False),
        Column("item_id", "string", False),
        Column("event_type", "string", False),
        Column("event_time", "timestamp", False, "UTC."),
        Column("rating", "double", True),
        Column("event_date", "date", False, "UTC date of event_time; the partition column."),
    ),
    partition_by=("event_date",),
    unique=(("event_id",),),
    allowed_values={"event_type": EVENT_TYPES},
)

INTERACTIONS_QUARANTINE = TableSpec(
    name="interactions_quarantine",
    doc="Rows that failed cleaning, kept whole (as JSON) with the reason code of the first rule they broke.",
    columns=(
        Column("source", "string", False, "'events' or 'items'."),
        Column("reason", "string", False, "One of schemas.tables.REASONS."),
        Column("raw", "string", False, "The raw row as JSON, exactly as read."),
        Column("dataset", "string", False),
    ),
    allowed_values={"reason": tuple(REASONS), "source": ("events", "items")},
)

INGEST_AUDIT = TableSpec(
    name="ingest_audit",
    doc="Row accounting per ingest run: raw = clean + quarantined + duplicates.",
    columns=(
        Column("run_id", "string", False),
        Column("dataset", "string", False),
        Column("source", "string", False),
        Column("raw_rows", "bigint", False),
        Column("clean_rows", "bigint", False),
        Column("quarantined_rows", "bigint", False),
        Column("duplicate_rows", "bigint", False),
        Column("by_reason", "string", False, "JSON object: quarantine reason -> rows."),
    ),
)

USER_SEQUENCES = TableSpec(
    name="user_sequences",
    doc=("Time-ordered item sequences with a leave-one-out split: per user one 'train' row (all but the "
         "last two items), one 'valid' row (history, second-last item) and one 'test' row (history, last item)."),
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

SID_COLUMNS = (
    Column("item_id", "string", False),
    Column("sid", "string", False, "Codes joined by '-', e.g. '17-203-5-0'."),
    Column("codes", "array<int>", False, "Semantic codes per level, then the dedup code."),
    Column("map_version", "string", False, "Content fingerprint of the whole map."),
)

ITEM_SID_STAGED = TableSpec(
    name="item_sid_staged",
    doc="The SID map produced by the last tokenize run, waiting for the gate.",
    columns=SID_COLUMNS,
    unique=(("item_id",), ("sid",)),
)

ITEM_SID = TableSpec(
    name="item_sid",
    doc="The published item -> Semantic ID map; each publish is a Delta version.",
    columns=SID_COLUMNS + (Column("tokenizer_version", "string", False, "MLflow version of genrec-tokenizer."),),
    unique=(("item_id",), ("sid",)),
)

SID_MAP_VERSIONS = TableSpec(
    name="sid_map_versions",
    doc="Manifest of every published SID map: tokenizer, metrics and the input table versions.",
    columns=(
        Column("map_version", "string", False),
        Column("tokenizer_version", "string", False),
        Column("item_sid_version", "bigint", False, "Delta version of item_sid after the publish."),
        Column("n_items", "bigint", False),
        Column("metrics", "string", False, "JSON: SID quality metrics."),
        Column("input_versions", "string", False, "JSON: Delta versions of the tables the map was built from."),
        Column("config", "string", False, "JSON: the resolved tokenizer config."),
        Column("published_at", "timestamp", False),
    ),
    unique=(("map_version",),),
)

ALL_TABLES = (ITEMS, INTERACTIONS_CLEAN, INTERACTIONS_QUARANTINE, INGEST_AUDIT, USER_SEQUENCES,
              ITEM_EMBEDDINGS, ITEM_SID_STAGED, ITEM_SID, SID_MAP_VERSIONS)
BY_NAME = {t.name: t for t in ALL_TABLES}
