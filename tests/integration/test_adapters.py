"""Source adapters onto the raw contract: every layout on small files, and the bad-input corpus.

The corpus lives in tests/integration/bad_input/ (tiny checked-in files whose bytes are the point:
invalid UTF-8, a cut-off last line, a ';' file). The cases that would be big or binary (a 1 MB title,
parquet with drifted columns) are written here into tmp_path. Each case checks which rows are
malformed and the exact accounting: non-blank lines read = parsed rows + malformed rows.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.sources import adapters as A
from schemas import tables as S

pytestmark = pytest.mark.integration

BAD = Path(__file__).parent / "bad_input"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DATE = "2026-03-01"
FFFD = "\ufffd"


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _lines(path: Path, header: bool = False) -> list[str]:
    """The reference line count: non-blank lines (bytes.splitlines splits on \\n, \\r and \\r\\n,
    like Hadoop's line reader), decoded the way Java does (bad bytes -> U+FFFD)."""
    lines = [b.decode("utf-8", errors="replace") for b in path.read_bytes().splitlines() if b.strip()]
    return lines[1:] if header else lines


def _rows(df) -> list[dict]:
    return [r.asDict() for r in df.collect()]


def _account(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """-> (parsed rows, malformed lines); a malformed row carries nothing but its line."""
    parsed = [r for r in rows if r["malformed"] is None]
    bad = [r for r in rows if r["malformed"] is not None]
    for r in bad:
        assert all(r[f] is None for f in A.EVENT_FIELDS), r
    return parsed, [r["malformed"] for r in bad]


def _events(spark, layout, path, **kw):
    df = A.read_events(spark, layout, path, DATE, **kw)
    assert df.columns == S.RAW_EVENTS.column_names
    assert {t for _, t in df.dtypes} == {"string"}
    return _rows(df)


def _item_malformed(row: dict):
    """The raw line of a catalogue row that did not parse (RAW_ITEMS.malformed, or the fallback
    {"_malformed": line} in attributes while RAW_ITEMS has no such column)."""
    if "malformed" in row:
        return row["malformed"]
    if row["item_id"] is None and row["attributes"]:
        return json.loads(row["attributes"]).get("_malformed")
    return None


# ---------------------------------------------------------------- one small file per layout


def test_taobao_maps_behaviours_and_stamps_source(spark, tmp_path):
    path = _write(tmp_path, "UserBehavior.csv", "1,10,100,pv,1511544070\n1,11,100,cart,1511544071\n"
                                                "2,10,100,fav,1511544072\n2,12,101,buy,1511544073\n"
                                                "3,13,101,scroll,1511544074\n")
    rows = _events(spark, "taobao", path)
    assert [(r["user_id"], r["item_id"], r["event_type"], r["event_time"]) for r in rows] == [
        ("1", "10", "view", "1511544070"), ("1", "11", "cart", "1511544071"), ("2", "10", "fav", "1511544072"),
        ("2", "12", "buy", "1511544073"), ("3", "13", "scroll", "1511544074")]  # unknown passes through
    assert {(r["source"], r["ingest_date"], r["malformed"], r["rating"]) for r in rows} == {
        ("taobao:UserBehavior.csv", DATE, None, None)}


def test_amazon_reviews_are_rate_events(spark, tmp_path):
    path = _write(tmp_path, "reviews_Beauty_5.json",
                  '{"reviewerID": "A1", "asin": "B01", "overall": 4.5, "unixReviewTime": 1393545600, '
                  '"reviewText": "ok", "helpful": [0, 0]}\n'
                  '{"reviewerID": "A2", "asin": "B02", "overall": 2.0, "unixReviewTime": 1393545601}\n')
    rows = _events(spark, "amazon_reviews", path)
    assert [(r["user_id"], r["item_id"], r["event_type"], r["event_time"], r["rating"]) for r in rows] == [
        ("A1", "B01", "rate", "1393545600", "4.5"), ("A2", "B02", "rate", "1393545601", "2")]
    assert rows[0]["source"] == "amazon_reviews:reviews_Beauty_5.json"


def test_movielens_ratings_dat_and_100k_u_data(spark, tmp_path):
    dat = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    udata = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    for layout, path in (("movielens", dat), ("movielens_100k", udata)):
        rows = _events(spark, layout, path)
        expected = [line.replace("::", "\t").split("\t") for line in path.read_text().splitlines()]
        assert [[r["user_id"], r["item_id"], r["rating"], r["event_time"]] for r in rows] == expected
        assert {r["event_type"] for r in rows} == {"rate"}
        assert rows[0]["source"] == f"{layout}:{path.name}"


def test_recbole_inter_with_and_without_rating(spark, tmp_path):
    rated = _write(tmp_path, "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                         "196\t242\t3\t881250949\n")
    clicks = _write(tmp_path, "clicks.inter", "user_id:token\titem_id:token\ttimestamp:float\n"
                                              "u1\ti1\t881250949\n")
    (r1,) = _events(spark, "recbole", rated)
    (r2,) = _events(spark, "recbole", clicks)
    assert (r1["user_id"], r1["item_id"], r1["event_type"], r1["rating"], r1["event_time"]) == (
        "196", "242", "rate", "3", "881250949")
    assert (r2["user_id"], r2["item_id"], r2["event_type"], r2["rating"], r2["event_time"]) == (
        "u1", "i1", "view", None, "881250949")


def test_p5_sequences_match_the_core_reader(spark, tmp_path):
    from genrec_core.data.p5 import parse_sequences

    path = _write(tmp_path, "sequential_data.txt", "1 5 6 7\n2 6\n3 7 5 6 8 9\n")
    rows = _events(spark, "p5", path)
    got = sorted((r["user_id"], r["item_id"], r["event_type"], r["event_time"]) for r in rows)
    ref = parse_sequences(path.read_text().splitlines()).to_pylist()
    assert got == sorted((r["user_id"], r["item_id"], r["event_type"], r["event_time"]) for r in ref)
    assert {r["source"] for r in rows} == {"p5:sequential_data.txt"}


def test_lcrec_sequences_are_timed_like_p5(spark, tmp_path):
    """LC-Rec's one-object file reads as the same events as the P5 line that lists the same items."""
    path = _write(tmp_path, "Toy.inter.json", json.dumps({"0": [5, 6, 7], "1": [6], "2": [7, 5, 6, 8, 9]}))
    p5 = _write(tmp_path, "sequential_data.txt", "0 5 6 7\n1 6\n2 7 5 6 8 9\n")
    cols = ("user_id", "item_id", "event_type", "event_time", "malformed")
    got = sorted(tuple(r[c] for c in cols) for r in _events(spark, "lcrec", path))
    assert got == sorted(tuple(r[c] for c in cols) for r in _events(spark, "p5", p5))
    assert len(got) == 9


def test_bad_lcrec_entries_are_malformed_one_by_one(spark, tmp_path):
    """A user with no list, an empty list or a null item is one malformed row; the others still read.
    A file that is no JSON object is one malformed row with its text."""
    path = _write(tmp_path, "Bad.inter.json", '{"0": [1, 2], "1": 3, "2": [], "3": [4, null]}')
    parsed, bad = _account(_events(spark, "lcrec", path))
    assert sorted((r["user_id"], r["item_id"]) for r in parsed) == [("0", "1"), ("0", "2")]
    assert sorted(json.loads(b)["key"] for b in bad) == ["1", "2", "3"]
    broken = _write(tmp_path, "Cut.inter.json", '{"0": [1, 2], "1": [3')
    parsed, bad = _account(_events(spark, "lcrec", broken))
    assert parsed == [] and bad == ['{"0": [1, 2], "1": [3']


def test_generic_layouts_with_mapping_and_constants(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": [1, 2], "sku": ["a", "b"], "ts": ["2024-01-01T00:00:00", "2024-01-02T00:00:00"]}),
                   tmp_path / "part-0.parquet")
    jsonl = _write(tmp_path, "ev.jsonl", '{"uid": 1, "sku": "a", "ts": "2024-01-01T00:00:00"}\n'
                                         '{"uid": 2, "sku": "b", "ts": "2024-01-02T00:00:00"}\n')
    csv = _write(tmp_path, "ev.csv", "uid,sku,ts\n1,a,2024-01-01T00:00:00\n2,b,2024-01-02T00:00:00\n")
    mapping = {"user_id": "uid", "item_id": "sku", "event_time": "ts"}
    expected = [("1", "a", "buy", "2024-01-01T00:00:00", "web"), ("2", "b", "buy", "2024-01-02T00:00:00", "web")]
    for layout, path in (("parquet", tmp_path / "part-0.parquet"), ("jsonl", jsonl), ("csv", csv)):
        rows = _events(spark, layout, path, mapping=mapping, constants={"event_type": "buy", "session_id": "web"})
        assert sorted((r["user_id"], r["item_id"], r["event_type"], r["event_time"], r["session_id"])
                      for r in rows) == expected, layout
        assert {r["source"] for r in rows} == {f"{layout}:{path.name}"}


# ---------------------------------------------------------------- catalogue layouts


def test_amazon_meta_items(spark, tmp_path):
    path = _write(tmp_path, "meta_Beauty.json",
                  '{"asin": "B01", "title": "Lipstick", "brand": "X", "price": 12.5, '
                  '"categories": [["Beauty", "Makeup", "Lips"], ["Gifts"]], "description": "Red.", '
                  '"salesRank": {"Beauty": 7}, "imUrl": "http://x/y.jpg"}\n'
                  "{'asin': 'B02', 'title': 'Soap', 'categories': [[]], 'description': ['One.', 'Two.']}\n")
    rows = _rows(A.read_items(spark, "amazon_meta", path))
    assert [(r["item_id"], r["title"], r["brand"], r["categories"], r["price"], r["description"]) for r in rows] == [
        ("B01", "Lipstick", "X", "Beauty > Makeup > Lips", "12.5", "Red."),
        ("B02", "Soap", None, None, None, "One. Two.")]
    assert json.loads(rows[0]["attributes"]) == {"salesRank": {"Beauty": 7}, "imUrl": "http://x/y.jpg"}
    assert rows[1]["attributes"] is None


def test_p5_items_match_the_core_reader(spark, tmp_path):
    from genrec_core.data.p5 import parse_items

    path = _write(tmp_path, "items.jsonl",
                  '{"item_id": 1, "asin": "B1", "pseudo_title": "nail lacquer", "brand": "OPI", '
                  '"categories": ["Makeup", "Nails"], "attribute_ids": [1, 2]}\n'
                  '{"item_id": 2, "business_id": "b2", "name": "Cafe", "categories": "Food, Coffee"}\n'
                  '{"item_id": 3, "title": "", "pseudo_title": "fallback title", "categories": [["A", "B"]]}\n')
    rows = _rows(A.read_items(spark, "p5_items", path))
    ref = parse_items(path.read_text().splitlines()).to_pylist()
    cols = ("item_id", "title", "brand", "categories")
    assert [tuple(r[c] for c in cols) for r in rows] == [tuple(r[c] for c in cols) for r in ref]
    assert json.loads(rows[0]["attributes"]) == {"asin": "B1", "attribute_ids": [1, 2]}


def test_lcrec_items_and_a_bad_entry(spark, tmp_path):
    path = _write(tmp_path, "Toy.item.json", json.dumps({
        "0": {"title": " Relay kit ", "description": "Hard start.", "brand": "Supco", "categories": "A,B",
              "asin": "B0"},
        "1": {"title": "Staples"},
        "2": "not an object"}))
    rows = sorted(_rows(A.read_items(spark, "lcrec_items", path)), key=lambda r: str(r["item_id"]))
    cols = ("item_id", "title", "brand", "categories", "description")
    good = [r for r in rows if _item_malformed(r) is None]
    assert [tuple(r[c] for c in cols) for r in good] == [("0", "Relay kit", "Supco", "A,B", "Hard start."),
                                                        ("1", "Staples", None, None, None)]
    assert json.loads(good[0]["attributes"]) == {"asin": "B0"}
    assert [json.loads(_item_malformed(r))["key"] for r in rows if _item_malformed(r) is not None] == ["2"]


def test_movielens_recbole_taobao_and_generic_items(spark, tmp_path):
    movies = _write(tmp_path, "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n")
    recbole = _write(tmp_path, "ml.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                          "1\tToy Story\t1995\tAnimation Comedy\n")
    taobao = _write(tmp_path, "UserBehavior.csv", "1,10,200,pv,1\n2,10,100,buy,2\n1,11,300,pv,3\n")
    generic = _write(tmp_path, "cat.csv", "sku,name,cost\na,Alpha,1.5\n")
    (m,) = _rows(A.read_items(spark, "movielens_movies", movies))
    assert (m["item_id"], m["title"], m["categories"]) == ("1", "Toy Story (1995)", "Animation|Children's|Comedy")
    (r,) = _rows(A.read_items(spark, "recbole_items", recbole))
    assert (r["item_id"], r["title"], r["categories"]) == ("1", "Toy Story", "Animation Comedy")
    assert json.loads(r["attributes"]) == {"release_year": "1995"}
    tb = sorted((x["item_id"], x["categories"]) for x in _rows(A.read_items(spark, "taobao", taobao)))
    assert tb == [("10", "100"), ("11", "300")]
    (g,) = _rows(A.read_items(spark, "csv", generic, mapping={"item_id": "sku", "title": "name", "price": "cost"}))
    assert (g["item_id"], g["title"], g["price"], g["brand"]) == ("a", "Alpha", "1.5", None)


# ---------------------------------------------------------------- argument errors


def test_argument_errors_are_clear(spark, tmp_path):
    path = _write(tmp_path, "x.csv", "1,2,3,pv,4\n")
    with pytest.raises(A.AdapterError, match="unknown event layout 'tsv'; layouts are taobao"):
        A.read_events(spark, "tsv", path, DATE)
    with pytest.raises(A.AdapterError, match="YYYY-MM-DD"):
        A.read_events(spark, "taobao", path, "2026-13-01")
    with pytest.raises(A.AdapterError, match="fixed mapping"):
        A.read_events(spark, "taobao", path, DATE, mapping={"user_id": "u"})
    with pytest.raises(A.AdapterError, match=r"must cover .*missing \['event_type'\]"):
        A.read_events(spark, "csv", path, DATE, mapping={"user_id": "a", "item_id": "b", "event_time": "c"})
    with pytest.raises(A.AdapterError, match=r"unknown contract column\(s\) \['colour'\]"):
        A.read_items(spark, "jsonl", path, mapping={"item_id": "a", "colour": "c"})
    with pytest.raises(A.AdapterError, match="cannot read"):
        A.read_events(spark, "taobao", tmp_path / "missing.csv", DATE)
    assert set(A.LAYOUTS) == {"events", "items"} and "p5" in A.LAYOUTS["events"]


# ---------------------------------------------------------------- the bad-input corpus


def test_bad_wrong_types_nulls_and_odd_timestamps_pass_through(spark):
    path = BAD / "taobao_wrong_types.csv"
    parsed, bad = _account(_events(spark, "taobao", path))
    assert (len(parsed), bad) == (len(_lines(path)), [])
    got = [(r["user_id"], r["item_id"], r["event_type"], r["event_time"]) for r in parsed]
    assert got == [("1", "10", "view", "1511544070"), ("2", "11", "buy", "abc"), ("3", "12", "cart", "-5"),
                   ("4", "13", "fav", "99999999999"), ("5", None, "view", "1511544070"),
                   (None, "14", "view", "1511544070"), ("6", "15", "click", "1511544070"),
                   ("7", "16", "view", "2017-11-25T10:00:00")]


def test_bad_json_nulls_wrong_types_broken_and_truncated_lines(spark):
    path = BAD / "amazon_reviews_broken.jsonl"
    lines = _lines(path)
    parsed, bad = _account(_events(spark, "amazon_reviews", path))
    assert len(parsed) + len(bad) == len(lines) == 8
    assert bad == lines[4:]  # broken object, a JSON array, plain text, the cut-off last line
    assert [(r["user_id"], r["item_id"], r["rating"], r["event_time"]) for r in parsed] == [
        ("A1", "B1", "5", "1393545600"), (None, "B2", "4", "1393545601"),
        (None, "B3", "five", "yesterday"), ("A4", "B4", "3", "-86400")]


def test_bad_wrong_column_count_is_malformed(spark):
    path = BAD / "taobao_column_count.csv"
    lines = _lines(path)
    parsed, bad = _account(_events(spark, "taobao", path))
    assert bad == [lines[1], lines[2], lines[3]]
    assert [r["user_id"] for r in parsed] == ["1", "5"]
    assert len(parsed) + len(bad) == len(lines)


def test_bad_unicode_junk_decodes_to_replacement_characters(spark):
    path = BAD / "taobao_unicode.csv"
    parsed, bad = _account(_events(spark, "taobao", path))
    assert (len(parsed), bad) == (4, [])
    fields = [(r["user_id"], r["item_id"], r["event_type"]) for r in parsed]
    # Stray bytes, an overlong encoding and an encoded surrogate decode to U+FFFD byte by byte, as
    # Python's errors="replace" does; valid multi-byte text is untouched.
    assert fields == [("1" + FFFD * 2, "10", "view"), ("2", "café ☃", "view"),
                      ("3", "12", FFFD * 2 + "buy"), ("4", FFFD * 3 + "x", "view")]
    assert [f[:2] for f in fields] == [tuple(line.split(",")[:2]) for line in _lines(path)]


def test_bad_wrong_delimiter_makes_every_line_malformed(spark):
    path = BAD / "taobao_semicolon.csv"
    parsed, bad = _account(_events(spark, "taobao", path))
    assert parsed == [] and bad == _lines(path) and len(bad) == 3


def test_bad_truncated_file_only_the_last_line_is_malformed(spark):
    path = BAD / "taobao_truncated.csv"
    parsed, bad = _account(_events(spark, "taobao", path))
    assert [r["user_id"] for r in parsed] == ["1", "2"] and bad == ["3,12,10"]


def test_bad_empty_file_gives_zero_rows(spark):
    assert _events(spark, "taobao", BAD / "taobao_empty.csv") == []
    assert _events(spark, "csv", BAD / "generic_header_only.csv",
                   mapping={"user_id": "uid", "item_id": "iid", "event_time": "ts"},
                   constants={"event_type": "buy"}) == []


def test_bad_blank_lines_and_crlf_are_not_rows(spark):
    path = BAD / "taobao_blank_lines.csv"
    parsed, bad = _account(_events(spark, "taobao", path))
    assert bad == [] and [(r["user_id"], r["event_time"]) for r in parsed] == [
        ("1", "1511544070"), ("2", "1511544071"), ("3", "1511544072")]


def test_bad_repeated_header_is_malformed_in_recbole(spark):
    path = BAD / "recbole_duplicate_header.inter"
    lines = _lines(path, header=True)
    parsed, bad = _account(_events(spark, "recbole", path))
    assert bad == [lines[2]] and [r["user_id"] for r in parsed] == ["196", "186", "22"]


def test_bad_repeated_header_quoting_and_column_count_in_generic_csv(spark):
    path = BAD / "generic_duplicate_header.csv"
    lines = _lines(path, header=True)
    parsed, bad = _account(_events(spark, "csv", path, mapping={"user_id": "uid", "item_id": "iid",
                                                               "event_time": "ts"}, constants={"event_type": "buy"}))
    assert [r["user_id"] for r in parsed] == ["u1", "u,2"]  # a quoted separator is data
    assert bad == [lines[2], lines[3], lines[4]]  # repeated header, too few columns, unterminated quote
    assert len(parsed) + len(bad) == len(lines)


def test_bad_p5_line_without_items_is_malformed(spark):
    path = BAD / "p5_short_line.txt"
    parsed, bad = _account(_events(spark, "p5", path))
    assert bad == ["7"]
    assert sorted((r["user_id"], r["item_id"]) for r in parsed) == [("5", "1"), ("5", "2"), ("5", "3"),
                                                                    ("9", "4"), ("9", "5")]


def test_bad_catalogue_lines_are_kept_with_their_text(spark):
    path = BAD / "amazon_meta_broken.jsonl"
    rows = _rows(A.read_items(spark, "amazon_meta", path))
    assert len(rows) == len(_lines(path)) == 4
    assert [_item_malformed(r) for r in rows] == [None, None, None, _lines(path)[3]]
    assert [r["item_id"] for r in rows] == ["B1", "B2", "B3", None]
    assert rows[1]["title"] == "Single quoted 'python' literal"
    assert rows[2]["title"].startswith(FFFD)


def test_bad_one_megabyte_title(spark, tmp_path):
    title = "t" * 1_000_000
    meta = _write(tmp_path, "meta.json", json.dumps({"asin": "B1", "title": title}) + "\n")
    csv = _write(tmp_path, "items.csv", f"sku,name\nB2,{title}\n")
    (m,) = _rows(A.read_items(spark, "amazon_meta", meta))
    (c,) = _rows(A.read_items(spark, "csv", csv, mapping={"item_id": "sku", "title": "name"}))
    assert (m["item_id"], len(m["title"]), c["item_id"], len(c["title"])) == ("B1", 1_000_000, "B2", 1_000_000)


def test_bad_line_with_thousands_of_separators_is_malformed(spark, tmp_path):
    junk = "," * 30_000  # more fields than the CSV tokenizer can hold (it would throw)
    plain = _write(tmp_path, "junk.csv", f"1,10,100,pv,1511544070\n{junk}\n")
    quoted = _write(tmp_path, "junk_h.csv", f"uid,iid,ts\nu1,i1,1\n{junk}\n")
    parsed, bad = _account(_events(spark, "taobao", plain))
    assert len(parsed) == 1 and bad == [junk]
    parsed, bad = _account(_events(spark, "csv", quoted, mapping={"user_id": "uid", "item_id": "iid", "event_time": "ts"},
                                   constants={"event_type": "buy"}))
    assert len(parsed) == 1 and bad == [junk]


def test_bad_parquet_with_an_extra_column_is_read(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": ["u1"], "sku": ["a"], "ts": ["2024-01-01"], "new_col": [1.5]}),
                   tmp_path / "drift.parquet")
    (row,) = _events(spark, "parquet", tmp_path / "drift.parquet",
                     mapping={"user_id": "uid", "item_id": "sku", "event_time": "ts"}, constants={"event_type": "view"})
    assert (row["user_id"], row["item_id"], row["event_time"], row["malformed"]) == ("u1", "a", "2024-01-01", None)


def test_bad_parquet_with_a_renamed_column_is_schema_drift(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "landing"
    folder.mkdir()
    pq.write_table(pa.table({"user": ["u1"], "sku": ["a"], "ts": ["2024-01-01"]}), folder / "part-0.parquet")
    with pytest.raises(A.SchemaDriftError) as err:
        A.read_events(spark, "parquet", folder, DATE, mapping={"user_id": "uid", "item_id": "sku", "event_time": "ts"},
                      constants={"event_type": "view"})
    assert err.value.expected == ["sku", "ts", "uid"] and err.value.found == ["sku", "ts", "user"]
    assert "missing ['uid']" in str(err.value)


def test_bad_parquet_files_disagreeing_on_a_type_are_schema_drift(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": ["u1"], "sku": ["a"], "ts": ["2024-01-01"]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"uid": [2], "sku": ["b"], "ts": ["2024-01-02"]}), tmp_path / "part-1.parquet")
    with pytest.raises(A.SchemaDriftError, match="the files disagree on a column.s type"):
        A.read_events(spark, "parquet", tmp_path, DATE, mapping={"user_id": "uid", "item_id": "sku", "event_time": "ts"},
                      constants={"event_type": "view"})


def test_bad_csv_with_a_renamed_header_is_schema_drift(spark, tmp_path):
    path = _write(tmp_path, "ev.csv", "user,sku,ts\n1,a,2024\n")
    with pytest.raises(A.SchemaDriftError, match=r"missing \['uid'\]"):
        A.read_events(spark, "csv", path, DATE, mapping={"user_id": "uid", "item_id": "sku", "event_time": "ts"},
                      constants={"event_type": "view"})


# ---------------------------------------------------------------- real data, when present


@pytest.mark.realdata
@pytest.mark.parametrize("layout, rel, header", [("movielens", "ml-1m/ratings.dat", False),
                                                 ("recbole", "ml-100k/ml-100k.inter", True)])
def test_real_movielens_ratings_every_line_is_one_event(spark, layout, rel, header):
    from pyspark.sql import functions as F

    path = SHARED_DATA / rel
    if not path.is_file():
        pytest.skip(f"real dataset not present at {path}")
    df = A.read_events(spark, layout, path, DATE)
    counts = df.agg(F.count("*").alias("n"), F.count("malformed").alias("bad")).first()
    lines = sum(1 for _ in path.open("rb")) - int(header)
    assert (counts["n"], counts["bad"]) == (lines, 0)


@pytest.mark.realdata
def test_real_p5_beauty_matches_the_core_reader(spark, beauty_dir):
    from genrec_core.data.p5 import parse_sequences

    ref = parse_sequences((beauty_dir / "sequential_data.txt").read_text().splitlines())
    got = A.read_events(spark, "p5", beauty_dir / "sequential_data.txt", DATE)
    rows = {(r["user_id"], r["item_id"], r["event_time"]) for r in got.select("user_id", "item_id", "event_time").collect()}
    assert len(rows) == ref.num_rows == got.count()
    assert rows == set(zip(*(ref.column(c).to_pylist() for c in ("user_id", "item_id", "event_time"))))


@pytest.mark.realdata
def test_real_lcrec_scientific_every_user_and_item_is_read(spark):
    """Amazon Scientific (LC-Rec's files): every listed interaction is one event, every item one row."""
    folder = SHARED_DATA / "amazon2018_scientific"
    if not folder.is_dir():
        pytest.skip(f"real dataset not present at {folder}")
    inter = json.loads((folder / "Scientific.inter.json").read_text())
    items = json.loads((folder / "Scientific.item.json").read_text())
    events = A.read_events(spark, "lcrec", folder / "Scientific.inter.json", DATE)
    got = {(r["user_id"], r["item_id"]) for r in events.where("malformed IS NULL").collect()}
    assert events.count() == sum(len(v) for v in inter.values())
    assert got == {(u, str(i)) for u, seq in inter.items() for i in seq}
    catalogue = A.read_items(spark, "lcrec_items", folder / "Scientific.item.json")
    titles = {r["item_id"]: r["title"] for r in catalogue.collect()}
    assert titles == {k: v["title"].strip() or None for k, v in items.items()}


@pytest.mark.realdata
def test_real_p5_beauty_items_match_the_core_reader(spark, beauty_dir):
    from genrec_core.data.p5 import parse_items

    cols = ("item_id", "title", "brand", "categories", "description")
    ref = parse_items((beauty_dir / "items.jsonl").read_text().splitlines()).select(list(cols)).to_pylist()
    got = A.read_items(spark, "p5_items", beauty_dir / "items.jsonl").select(*cols).collect()
    got, ref = sorted(tuple(r) for r in got), sorted(tuple(r[c] for c in cols) for r in ref)
    assert [g for g, r in zip(got, ref) if g != r][:5] == [] and len(got) == len(ref)
