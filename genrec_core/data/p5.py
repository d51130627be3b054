"""Reader for datasets in the P5 layout (Amazon 2014 Beauty, Yelp, ...).

A P5 folder holds `sequential_data.txt` (one line per user: `user_id item_id item_id ...`, oldest
first) and `items.jsonl` (one JSON object per item). `parse_items` and `parse_sequences` map their lines
onto the raw contracts (`schemas.arrow.CATALOGUE_SCHEMA` / `RAW_EVENTS_SCHEMA`); the caller opens the
files, so the core touches no paths.

P5 has no timestamps, so the k-th item of a user (k = 0, 1, ...) gets event_time
2000-01-01T00:00:00 + k seconds: the order survives exactly and every timestamp is valid. Every
event is a "buy" without a rating.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from schemas.arrow import CATALOGUE_SCHEMA, RAW_EVENTS_SCHEMA

SEQUENCES_FILE = "sequential_data.txt"
ITEMS_FILE = "items.jsonl"
EPOCH = "2000-01-01T00:00:00"
EVENT_TYPE = "buy"
TITLE_KEYS = ("title", "pseudo_title", "name")
CATEGORY_SEP = " > "


# ---------------------------------------------------------------- items.jsonl


def parse_items(lines: Iterable[str], path: str = ITEMS_FILE) -> pa.Table:
    """Lines of items.jsonl -> catalogue table, in file order. `path` only names the source in errors."""
    rows: list[tuple[Any, ...]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _item_row(_json_object(line, path, lineno), path, lineno)
        if row[0] in seen:
            raise ValueError(f"{path}:{lineno}: duplicate item_id {row[0]}")
        seen.add(row[0])
        rows.append(row)
    columns = list(zip(*rows)) if rows else [[] for _ in CATALOGUE_SCHEMA]
    return pa.table({field.name: pa.array(col, field.type) for field, col
                     in zip(CATALOGUE_SCHEMA, columns)}, schema=CATALOGUE_SCHEMA)


def _json_object(line: str, path: Any, lineno: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _item_row(obj: dict[str, Any], path: Any, lineno: int) -> tuple[Any, ...]:
    """One catalogue row: (item_id, title, brand, categories, price, description)."""
    raw_id = obj.get("item_id")
    # bool is an int subclass; `true` is never a valid id.
    if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) or not str(raw_id).strip().isdigit():
        raise ValueError(f"{path}:{lineno}: item_id must be a non-negative integer, got {raw_id!r}")
    # Real files have items with an empty title (Beauty item 10205); null it and let cleaning decide.
    title = next((t for t in (_text(obj.get(k)) for k in TITLE_KEYS) if t), None)
    return (str(int(raw_id)), title, _text(obj.get("brand")),
            _category_path(obj.get("categories")), _price(obj.get("price")),
            _text(obj.get("description")))


def _text(value: Any) -> Optional[str]:
    if isinstance(value, list):  # Amazon descriptions sometimes come as a list of paragraphs
        value = " ".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _category_path(value: Any) -> Optional[str]:
    """A list becomes "A > B > C"; for a list of paths the first non-empty one wins; a string
    (e.g. Yelp's comma list) is kept as it is; nothing usable gives null."""
    if isinstance(value, str):
        return value.strip() or None
    if not isinstance(value, list):
        return None
    if any(isinstance(v, list) for v in value):
        paths = (_category_path(v) for v in value if isinstance(v, list))
        return next((p for p in paths if p), None)
    parts = [str(v).strip() for v in value if v is not None and str(v).strip()]
    return CATEGORY_SEP.join(parts) or None


def _price(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip().lstrip("$").replace(",", ""))
        except ValueError:
            return None  # "$10 - $20" style ranges carry no single price
        return parsed if np.isfinite(parsed) else None
    return None


# ---------------------------------------------------------------- sequential_data.txt


def parse_sequences(lines: Iterable[str], path: str = SEQUENCES_FILE) -> pa.Table:
    """Lines of sequential_data.txt -> raw events; the k-th item of a user gets EPOCH + k seconds."""
    users: list[str] = []
    lengths: list[int] = []
    items: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            ids = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not t.lstrip("+-").isdigit())
            raise ValueError(f"{path}:{lineno}: expected integer ids, got {bad!r}") from None
        if min(ids) < 0:
            raise ValueError(f"{path}:{lineno}: ids must be non-negative")
        user = str(ids[0])
        if user in seen:
            raise ValueError(f"{path}:{lineno}: user {user} already appeared on line {seen[user]}")
        seen[user] = lineno
        users.append(user)
        lengths.append(len(ids) - 1)
        items.extend(ids[1:])
    return _events_table(users, np.array(lengths, np.int64), np.array(items, np.int64))


def _events_table(users: list[str], lengths: np.ndarray, items: np.ndarray) -> pa.Table:
    n = int(lengths.sum())
    user_idx = np.repeat(np.arange(len(users)), lengths)
    k = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    times = (np.datetime64(EPOCH, "s") + k).astype("U19")  # numpy renders ISO "YYYY-MM-DDTHH:MM:SS"
    return pa.table({
        "user_id": pa.array(users, pa.string()).take(pa.array(user_idx)),
        "item_id": pa.array(items).cast(pa.string()),
        "event_type": pa.array([EVENT_TYPE], pa.string()).take(pa.array(np.zeros(n, np.int64))),
        "event_time": pa.array(times, pa.string()),
        "rating": pa.nulls(n, pa.string()),
    }, schema=RAW_EVENTS_SCHEMA)
