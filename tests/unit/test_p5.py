"""P5 reader: order, ids, title/category mapping and clear errors, on tiny hand-written folders."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from genrec_core.data.p5 import ITEMS_FILE, SEQUENCES_FILE, parse_items, parse_sequences
from schemas.arrow import CATALOGUE_SCHEMA, RAW_EVENTS_SCHEMA

SEQUENCES = "1 3 1 2\n2 2 4 1 3\n3 4 3\n"
BEAUTY_ITEMS = [
    {"item_id": 1, "asin": "B001", "pseudo_title": "rose night cream", "attribute_ids": [1, 2],
     "brand": "Lumora", "categories": ["Skin Care", "Face", "Creams"]},
    {"item_id": 2, "asin": "B002", "pseudo_title": "matte lipstick", "attribute_ids": [3],
     "brand": None, "categories": [["Makeup", "Lips", "Lipstick"], ["Gifts"]]},
    {"item_id": 3, "asin": "B003", "pseudo_title": "", "attribute_ids": [],
     "brand": "OPI", "categories": ["Makeup", "Nails"], "price": "$12.50", "description": "Glossy."},
    {"item_id": 4, "asin": "B004", "pseudo_title": "argan hair oil", "attribute_ids": [4],
     "brand": "", "categories": [], "price": 7},
]
YELP_ITEMS = [
    {"item_id": 1, "business_id": "aa", "name": "The Great Greek", "categories": ["Greek", "Restaurants"]},
    {"item_id": 2, "business_id": "bb", "name": "Sal's Pizza", "categories": "Pizza, Restaurants"},
    {"item_id": 3, "business_id": "cc", "name": "Cigar Outlet", "categories": None},
    {"item_id": 4, "business_id": "dd", "name": "Deli", "categories": ["Delis"]},
]
BEAUTY = Path(__file__).resolve().parents[2].parent / "shared/data/amazon2014_p5/beauty"


def _folder(root: Path, items: list[dict], sequences: str = SEQUENCES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sequential_data.txt").write_text(sequences, encoding="utf-8")
    (root / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return root


def read_p5(folder: Path):
    """What the P5 adapter does around the core: open the two files and hand their lines over."""
    with open(folder / ITEMS_FILE, encoding="utf-8") as items, open(folder / SEQUENCES_FILE, encoding="utf-8") as seq:
        return parse_items(items), parse_sequences(seq)


def test_events_keep_order_and_ids(tmp_path: Path) -> None:
    _, events = read_p5(_folder(tmp_path, BEAUTY_ITEMS))
    assert events.schema.equals(RAW_EVENTS_SCHEMA)
    rows = events.to_pylist()
    assert [(r["user_id"], r["item_id"]) for r in rows] == [
        ("1", "3"), ("1", "1"), ("1", "2"), ("2", "2"), ("2", "4"), ("2", "1"), ("2", "3"),
        ("3", "4"), ("3", "3")]
    assert [r["event_time"] for r in rows[3:7]] == [
        "2000-01-01T00:00:00", "2000-01-01T00:00:01", "2000-01-01T00:00:02", "2000-01-01T00:00:03"]
    assert {r["event_type"] for r in rows} == {"buy"}
    assert events.column("rating").null_count == events.num_rows


def test_beauty_like_items(tmp_path: Path) -> None:
    catalogue, _ = read_p5(_folder(tmp_path, BEAUTY_ITEMS))
    assert catalogue.schema.equals(CATALOGUE_SCHEMA)
    rows = {r["item_id"]: r for r in catalogue.to_pylist()}
    assert list(rows) == ["1", "2", "3", "4"]
    assert rows["1"] == {"item_id": "1", "title": "rose night cream", "brand": "Lumora",
                         "categories": "Skin Care > Face > Creams", "price": None, "description": None}
    assert rows["2"]["categories"] == "Makeup > Lips > Lipstick" and rows["2"]["brand"] is None
    assert rows["3"]["title"] is None  # empty titles exist in the real Beauty file
    assert rows["3"]["price"] == 12.5 and rows["3"]["description"] == "Glossy."
    assert rows["4"]["brand"] is None and rows["4"]["categories"] is None and rows["4"]["price"] == 7.0


def test_yelp_like_items(tmp_path: Path) -> None:
    catalogue, events = read_p5(_folder(tmp_path, YELP_ITEMS))
    rows = {r["item_id"]: r for r in catalogue.to_pylist()}
    assert rows["1"]["title"] == "The Great Greek" and rows["1"]["categories"] == "Greek > Restaurants"
    assert rows["2"]["categories"] == "Pizza, Restaurants"  # a comma string is kept as it is
    assert rows["3"]["categories"] is None
    assert all(r["brand"] is None and r["price"] is None for r in rows.values())
    assert set(events.column("item_id").to_pylist()) <= set(rows)


def test_bad_sequence_line_names_its_number(tmp_path: Path) -> None:
    folder = _folder(tmp_path, BEAUTY_ITEMS, sequences="1 3 1\n2 2 x4\n")
    with pytest.raises(ValueError, match=r"sequential_data\.txt:2: .*'x4'"):
        read_p5(folder)


def test_repeated_user_is_rejected(tmp_path: Path) -> None:
    folder = _folder(tmp_path, BEAUTY_ITEMS, sequences="1 3 1\n\n1 2\n")
    with pytest.raises(ValueError, match=r":3: user 1 already appeared on line 1"):
        read_p5(folder)


def test_bad_items_line_names_its_number(tmp_path: Path) -> None:
    folder = _folder(tmp_path, BEAUTY_ITEMS)
    with (folder / "items.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"item_id": 5, "pseudo_title": "broken"\n')
    with pytest.raises(ValueError, match=r"items\.jsonl:5: invalid JSON"):
        read_p5(folder)
    (folder / "items.jsonl").write_text('{"item_id": 1}\n{"name": "no id"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\.jsonl:2: item_id"):
        read_p5(folder)
    (folder / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\.jsonl:2: duplicate item_id 1"):
        read_p5(folder)


@pytest.mark.realdata
def test_real_amazon_beauty() -> None:
    if not BEAUTY.is_dir():
        pytest.skip(f"Amazon Beauty P5 data not found at {BEAUTY}")
    catalogue, events = read_p5(BEAUTY)
    assert catalogue.num_rows == 12_101
    assert events.num_rows == 198_502
    assert len(pc.unique(events.column("user_id"))) == 22_363
    assert catalogue.schema.equals(CATALOGUE_SCHEMA) and events.schema.equals(RAW_EVENTS_SCHEMA)
    assert set(pc.unique(events.column("item_id")).to_pylist()) <= set(
        catalogue.column("item_id").to_pylist())
