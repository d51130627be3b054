"""pyarrow schemas derived from schemas.tables, for the core's in-memory tables (synthetic data, P5 parsing)."""
from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from schemas.tables import ITEMS, RAW_EVENTS, TableSpec

_SIMPLE = {
    "string": pa.string(), "int": pa.int32(), "bigint": pa.int64(), "double": pa.float64(),
    "float": pa.float32(), "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
}


def arrow_type(type_name: str) -> pa.DataType:
    if type_name in _SIMPLE:
        return _SIMPLE[type_name]
    if type_name.startswith("array<") and type_name.endswith(">"):
        return pa.list_(arrow_type(type_name[len("array<"):-1]))
    raise ValueError(f"unsupported column type {type_name!r}")


def arrow_schema(spec: TableSpec, columns: Sequence[str] | None = None) -> pa.Schema:
    """The spec's columns (or the named subset, in the spec's order), nullable as the core builds them."""
    names = spec.column_names if columns is None else list(columns)
    unknown = [n for n in names if n not in spec.column_names]
    if unknown:
        raise KeyError(f"{spec.name} has no column(s) {unknown}")
    return pa.schema([(c.name, arrow_type(c.type)) for c in spec.columns if c.name in names])


# What the core's readers produce: the raw event fields a source carries (no landing bookkeeping) and
# the typed catalogue fields before cleaning adds attributes and content_hash.
RAW_EVENTS_SCHEMA = arrow_schema(RAW_EVENTS, ("user_id", "item_id", "event_type", "event_time", "rating"))
CATALOGUE_SCHEMA = arrow_schema(ITEMS, ("item_id", "title", "brand", "categories", "price", "description"))
