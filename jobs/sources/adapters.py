"""Source adapters: read each real dataset layout onto the raw contract (`schemas.tables.RAW_EVENTS`,
`RAW_ITEMS`) with Spark, lazily, so they scale to billions of rows (no pandas, no driver-side loops).

Every value lands as a string. Typing is the clean stage's job: a timestamp "abc", a negative or
far-future epoch, a null id or a U+FFFD all pass through here and are quarantined there with a
reason code. What the adapters themselves decide:

- **Lines, not parsers, are the unit.** Text layouts are read line by line and parsed per line
  (`from_csv` / `from_json`), so a line that does not parse (wrong column count, broken JSON or
  quoting, a truncated last line, a file in the wrong delimiter) becomes one row with `malformed` =
  the raw line and every other field null. Nothing crashes the read and nothing vanishes:
  rows read = parsed rows + malformed rows. (Spark's own CSV corrupt-record detection is not used
  because it silently depends on which columns a later query selects.)
- **Blank lines are not rows** (whitespace-only lines are skipped, as Spark's CSV reader does).
- **Text decoding**: bytes that are not valid UTF-8 decode to U+FFFD and pass through (the clean
  stage quarantines them as `undecodable_text`). Headerless files get one U+FFFD per bad byte, as
  Python's errors="replace"; headered ones go through Java's decoder, which may give one U+FFFD for
  a longer bad sequence.
- **Quoted CSV lines with 20,000 or more separators** are malformed without being parsed (the CSV
  tokenizer would throw on them).
- **Headers**: in a headered layout (RecBole `.inter`, generic csv) the first line of *every file*
  is its header, and must be; a line later in a file that repeats the header is malformed.
- **An empty file** (or a headered file with only its header) gives zero rows, not an error.
- **Schema drift**: a parquet or headered csv source whose mapped columns are missing raises
  `SchemaDriftError` naming expected and found columns, when the reader is built (before anything is
  written). Extra columns are ignored. JSON has no schema to check: a missing key is a null value.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Optional, Union

from schemas import tables as S
from schemas.spark import conform

PathLike = Union[str, Path, Sequence[Union[str, Path]]]

EVENT_LAYOUTS = {
    "taobao": "Taobao UserBehavior CSV, no header: user,item,category,behavior,timestamp",
    "amazon_reviews": "Amazon review JSON lines: reviewerID, asin, overall, unixReviewTime",
    "movielens": "MovieLens ratings.dat: UserID::MovieID::Rating::Timestamp",
    "movielens_100k": "MovieLens 100k u.data, tab-separated: user item rating timestamp",
    "recbole": "RecBole atomic .inter, tab-separated, typed header (user_id:token ...)",
    "p5": "P5 sequential_data.txt: user item item ... (oldest first, no timestamps)",
    "lcrec": "LC-Rec NAME.inter.json: one JSON object {user: [item, ...]} (oldest first, no timestamps)",
    "parquet": "generic parquet with a column mapping",
    "jsonl": "generic JSON lines with a column mapping",
    "csv": "generic CSV with a header and a column mapping",
}
ITEM_LAYOUTS = {
    "amazon_meta": "Amazon metadata JSON lines: asin, title, brand, categories, price, description",
    "p5_items": "P5 items.jsonl: item_id, title | pseudo_title | name, brand, categories",
    "lcrec_items": "LC-Rec NAME.item.json: one JSON object {item: {title, description, brand, categories}}",
    "movielens_movies": "MovieLens movies.dat: MovieID::Title (Year)::Genre|Genre",
    "movielens_100k_items": "MovieLens 100k u.item, '|'-separated: id|title|release|video release|url|19 genre flags",
    "recbole_items": "RecBole atomic .item, tab-separated, typed header",
    "taobao": "Taobao UserBehavior CSV: one row per item with its category id",
    "parquet": "generic parquet with a column mapping",
    "jsonl": "generic JSON lines with a column mapping",
    "csv": "generic CSV with a header and a column mapping",
}
LAYOUTS = {"events": EVENT_LAYOUTS, "items": ITEM_LAYOUTS}
GENERIC_LAYOUTS = ("parquet", "jsonl", "csv")  # read through a column mapping from the config

TAOBAO_BEHAVIOURS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
P5_EPOCH = "2000-01-01 00:00:00"  # the k-th item of a P5 user gets P5_EPOCH + k seconds (genrec_core.data.p5)
CATEGORY_SEP = " > "
# Fields of the contracts a caller may map; source, malformed and ingest_date are the adapter's own.
EVENT_FIELDS = ("user_id", "item_id", "event_type", "event_time", "session_id", "rating")
ITEM_FIELDS = ("item_id", "title", "brand", "categories", "price", "description", "attributes")
_REQUIRED_EVENT_FIELDS = ("user_id", "item_id", "event_type", "event_time")
_CORRUPT = "_corrupt"
_FILE = "_file"
_LINE_SEP = "\uffff"  # a field separator for reading whole lines (see _read_lines)
_MAX_SEPARATORS = 20_000  # below univocity's default maxColumns (20480)


class AdapterError(ValueError):
    """The source cannot be read in the requested layout (unknown layout, bad mapping, no input)."""


class SchemaDriftError(AdapterError):
    """The source's columns are not the ones the layout or mapping expects."""

    def __init__(self, source: str, expected: Iterable[str], found: Iterable[str], reason: str = ""):
        self.expected, self.found = sorted(expected), sorted(found)
        missing = sorted(set(self.expected) - set(self.found))
        super().__init__(f"schema drift in {source}: {reason}" if reason else
                         f"schema drift in {source}: expected column(s) {self.expected}, found "
                         f"{self.found}; missing {missing}")


# ---------------------------------------------------------------- entry points


def read_events(spark, layout: str, path: PathLike, ingest_date: str, mapping: Optional[Mapping[str, str]] = None,
                *, constants: Optional[Mapping[str, str]] = None, sep: str = ","):
    """A lazy DataFrame with exactly RAW_EVENTS' columns (all strings) read from `path`.

    path: a file, folder or glob (or a list of them). ingest_date: the run's logical date, YYYY-MM-DD.
    mapping {contract_column: source_column} and constants {contract_column: value} apply to the
    generic layouts (parquet, jsonl, csv); sep is the generic csv's delimiter.
    """
    _check_date(ingest_date)
    _check_layout(layout, EVENT_LAYOUTS, "event")
    paths = _paths(path)
    if layout in GENERIC_LAYOUTS:
        fields = _check_mapping(mapping, constants, EVENT_FIELDS, _REQUIRED_EVENT_FIELDS)
        df = _generic(spark, layout, paths, fields, sep)
    else:
        _no_mapping(layout, mapping, constants)
        df = _EVENT_READERS[layout](spark, paths)
    return _events_contract(spark, df, layout, ingest_date)


def read_items(spark, layout: str, path: PathLike, mapping: Optional[Mapping[str, str]] = None,
               *, constants: Optional[Mapping[str, str]] = None, sep: str = ","):
    """A lazy DataFrame with exactly RAW_ITEMS' columns (all strings) read from `path`."""
    _check_layout(layout, ITEM_LAYOUTS, "item")
    paths = _paths(path)
    if layout in GENERIC_LAYOUTS:
        fields = _check_mapping(mapping, constants, ITEM_FIELDS, ("item_id",))
        df = _generic(spark, layout, paths, fields, sep)
    else:
        _no_mapping(layout, mapping, constants)
        df = _ITEM_READERS[layout](spark, paths)
    return _items_contract(spark, df)


# ---------------------------------------------------------------- argument checks


def _check_date(ingest_date: str) -> None:
    try:
        ok = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", ingest_date)) and datetime.strptime(ingest_date, "%Y-%m-%d")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AdapterError(f"ingest_date must be a date YYYY-MM-DD, got {ingest_date!r}")


def _check_layout(layout: str, known: Mapping[str, str], kind: str) -> None:
    if layout not in known:
        raise AdapterError(f"unknown {kind} layout {layout!r}; layouts are {', '.join(known)}")


def _no_mapping(layout, mapping, constants) -> None:
    if mapping or constants:
        raise AdapterError(f"layout {layout!r} has a fixed mapping; mapping and constants apply only to "
                           f"the generic layouts parquet, jsonl and csv")


def _check_mapping(mapping, constants, fields: Sequence[str], required: Sequence[str]) -> dict:
    """-> {contract_field: ("col", source_column) | ("lit", value)} for every mapped field."""
    mapping, constants = dict(mapping or {}), dict(constants or {})
    unknown = sorted((set(mapping) | set(constants)) - set(fields))
    if unknown:
        raise AdapterError(f"mapping names unknown contract column(s) {unknown}; columns are {list(fields)}")
    both = sorted(set(mapping) & set(constants))
    if both:
        raise AdapterError(f"column(s) {both} are given both a source column and a constant")
    missing = [f for f in required if f not in mapping and f not in constants]
    if missing:
        raise AdapterError(f"mapping must cover {list(required)} (by source column or constant); "
                           f"missing {missing}")
    out = {f: ("col", str(c)) for f, c in mapping.items()}
    out.update({f: ("lit", None if v is None else str(v)) for f, v in constants.items()})
    return out


def _paths(path: PathLike) -> list[str]:
    items = [path] if isinstance(path, (str, Path)) else list(path)
    if not items:
        raise AdapterError("no input path given")
    return [str(p) for p in items]


@contextmanager
def _analysis_guard(paths, what: str):
    """Turns Spark's analysis errors (a missing path above all) into an AdapterError naming the input."""
    from pyspark.errors import AnalysisException

    try:
        yield
    except AnalysisException as err:
        raise AdapterError(f"cannot read {what} from {paths}: {err}") from err


# ---------------------------------------------------------------- lines and per-line parsing


def _read_lines(spark, paths: list[str], header: bool = False):
    """-> DataFrame(line, _file): one row per non-blank line, with bytes that are not valid UTF-8
    replaced by U+FFFD.

    Without a header, Spark's text reader does it: it never tokenizes, so no line can fail it.
    With a header, the first line of every file must go, even when several files share a
    partition, which only the CSV reader knows how to do: it is used as a line reader with a
    separator that real text does not hold (U+FFFF, a Unicode noncharacter). A line that does hold
    it comes back whole in the corrupt-record column.
    """
    from pyspark.sql import functions as F

    with _analysis_guard(paths, "text lines"):
        if not header:
            df = spark.read.text(paths).select(F.expr("make_valid_utf8(value)").alias("line"),
                                               F.col("_metadata.file_name").alias(_FILE))
            # Blank means only characters up to U+0020, as Java's String.trim (and the CSV reader) has it.
            return df.where(~F.col("line").rlike(r"^[\x00-\x20]*$"))
        df = (spark.read.schema(f"line string, {_CORRUPT} string")
              .option("sep", _LINE_SEP).option("quote", "").option("header", True)
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", _CORRUPT)
              .csv(paths))
        return df.select(F.coalesce(_CORRUPT, "line").alias("line"), F.col("_metadata.file_name").alias(_FILE))


def _split_line(lines, names: Sequence[str], sep: str, quote: str = ""):
    """Parses each line into the named string columns; a line with another column count, or broken
    quoting, gets `malformed` = the line and null fields. Empty fields are null.

    Unquoted layouts are a plain split (about twice as fast as the CSV tokenizer); quoted CSV goes
    through `from_csv`, which throws (it does not report a bad record) on a line with more than
    20,480 fields, so a line with _MAX_SEPARATORS separators or more is malformed unparsed.
    """
    from pyspark.sql import functions as F

    if quote:
        ddl = ", ".join(f"c{i} string" for i in range(len(names))) + f", {_CORRUPT} string"
        opts = {"sep": sep, "quote": quote, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
        seps = (F.length("line") - F.length(F.replace(F.col("line"), F.lit(sep), F.lit("")))) / len(sep)
        parsed = lines.withColumn("_p", F.when(seps < _MAX_SEPARATORS, F.from_csv(F.col("line"), ddl, opts)))
        bad = F.col("_p").isNull() | F.col(f"_p.{_CORRUPT}").isNotNull()
        fields = [F.col(f"_p.c{i}") for i in range(len(names))]
    else:
        parsed = lines.withColumn("_p", F.split(F.col("line"), re.escape(sep), -1))
        bad = F.size("_p") != len(names)
        fields = [F.nullif(F.col("_p").getItem(i), F.lit("")) for i in range(len(names))]
    cols = [F.when(~bad, f).alias(n) for f, n in zip(fields, names)]
    return parsed.select(*cols, F.when(bad, F.col("line")).alias("malformed"), _FILE)


def _json_lines(spark, paths: list[str]):
    """-> DataFrame(_obj map<string,variant>, malformed, _file). A line that is not a JSON object
    (broken, truncated, an array, a bare value) is malformed. Single-quoted keys and strings are
    accepted, so the Python-literal Amazon 2014 metadata files read as they are."""
    from pyspark.sql import functions as F

    lines = _read_lines(spark, paths)
    obj = F.from_json("line", "map<string,variant>", {"mode": "PERMISSIVE", "allowSingleQuotes": "true"})
    df = lines.withColumn("_obj", obj)
    return df.select("_obj", F.when(F.col("_obj").isNull(), F.col("line")).alias("malformed"), _FILE)


def _field(key: str):
    from pyspark.sql import functions as F

    return F.col("_obj").getItem(key)


def _jstr(key: str):
    """The JSON field as a string: strings unquoted, numbers and booleans as text, lists and
    objects as JSON; JSON null, a missing key and "" as null (as an empty CSV field)."""
    from pyspark.sql import functions as F

    return F.nullif(_field(key).cast("string"), F.lit(""))


def _header(spark, paths: list[str], sep: str, quote: str) -> list[str]:
    """The column names in the first line of the (first) file; [] for an empty input."""
    with _analysis_guard(paths, "a header"):
        return spark.read.option("header", True).option("sep", sep).option("quote", quote).csv(paths).columns


def _headered(spark, paths: list[str], sep: str, quote: str, strip_types: bool = False):
    """-> (DataFrame of the header's columns + malformed + _file, column names) for a headered
    text file. A later line repeating the header is malformed, not an event."""
    from pyspark.sql import functions as F

    names = _header(spark, paths, sep, quote)
    if not names:
        return None, []
    raw_names = list(names)
    if strip_types:  # RecBole: "user_id:token" -> "user_id"
        names = [n.split(":", 1)[0] for n in names]
    df = _split_line(_read_lines(spark, paths, header=True), names, sep, quote)
    repeat = F.lit(True)
    for name, raw in zip(names, raw_names):
        repeat = repeat & (F.col(name) == F.lit(raw))
    repeat = F.coalesce(repeat, F.lit(False))
    fields = [F.when(~repeat, F.col(n)).alias(n) for n in names]
    line = F.concat_ws(sep, *[F.lit(r) for r in raw_names])
    return df.select(*fields, F.when(repeat, line).otherwise(F.col("malformed")).alias("malformed"), _FILE), names


# ---------------------------------------------------------------- event layouts


def _taobao_events(spark, paths):
    from pyspark.sql import functions as F

    df = _split_line(_read_lines(spark, paths), ("user_id", "item_id", "category", "behavior", "event_time"), ",")
    table = F.create_map(*[F.lit(x) for pair in TAOBAO_BEHAVIOURS.items() for x in pair])
    # An unknown behaviour passes through unchanged; the clean stage quarantines it (unknown_event_type).
    mapped = F.coalesce(table[F.col("behavior")], F.col("behavior"))
    return df.withColumn("event_type", mapped)


def _amazon_reviews(spark, paths):
    from pyspark.sql import functions as F

    df = _json_lines(spark, paths)
    ok = F.col("malformed").isNull()
    return df.select(_jstr("reviewerID").alias("user_id"), _jstr("asin").alias("item_id"),
                     F.when(ok, F.lit("rate")).alias("event_type"), _jstr("unixReviewTime").alias("event_time"),
                     _jstr("overall").alias("rating"), "malformed", _FILE)


def _ratings(sep: str):
    def read(spark, paths):
        from pyspark.sql import functions as F

        df = _split_line(_read_lines(spark, paths), ("user_id", "item_id", "rating", "event_time"), sep)
        return df.withColumn("event_type", F.when(F.col("malformed").isNull(), F.lit("rate")))

    return read


def _recbole_events(spark, paths):
    from pyspark.sql import functions as F

    df, names = _headered(spark, paths, "\t", "", strip_types=True)
    if df is None:
        return None
    expected = {"user_id", "item_id"}
    if not expected <= set(names):
        raise SchemaDriftError(f"RecBole file(s) {paths}", sorted(expected), names)
    event = "rate" if "rating" in names else "view"
    rating = F.col("rating") if "rating" in names else F.lit(None).cast("string")
    when_ok = F.when(F.col("malformed").isNull(), F.lit(event))
    time = F.col("timestamp") if "timestamp" in names else F.lit(None).cast("string")
    return df.select("user_id", "item_id", when_ok.alias("event_type"), time.alias("event_time"),
                     rating.alias("rating"), "malformed", _FILE)


def _p5_time(k: str):
    """The time of a user's k-th item (k counts from 0) in a layout without timestamps: P5_EPOCH + k s."""
    from pyspark.sql import functions as F

    return F.expr(f"date_format(timestampadd(SECOND, {k}, TIMESTAMP_NTZ'{P5_EPOCH}'), \"yyyy-MM-dd'T'HH:mm:ss\")")


def _p5_events(spark, paths):
    """One "buy" per item; the k-th item (k = 0, 1, ...) of a user happens at P5_EPOCH + k seconds,
    as in genrec_core.data.p5. A line with a user and no item is malformed."""
    from pyspark.sql import functions as F

    lines = _read_lines(spark, paths)
    tokens = F.split(F.regexp_replace("line", r"^\s+|\s+$", ""), r"\s+")
    df = lines.withColumn("_t", tokens).withColumn("_n", F.size("_t"))
    items = F.when(F.col("_n") >= 2, F.slice("_t", 2, F.col("_n") - 1))
    df = df.select("line", _FILE, F.col("_t")[0].alias("_user"), F.col("_n"),
                   F.posexplode_outer(items).alias("_k", "_item"))
    ok = F.col("_n") >= 2
    time = _p5_time("_k")
    return df.select(F.when(ok, F.col("_user")).alias("user_id"), F.col("_item").alias("item_id"),
                     F.when(ok, F.lit("buy")).alias("event_type"), F.when(ok, time).alias("event_time"),
                     F.when(~ok, F.col("line")).alias("malformed"), _FILE)


def _whole_json(spark, paths):
    """-> DataFrame(_key, _value variant, malformed, _file): one row per top-level key of each file,
    where a file is one JSON object (LC-Rec's layout). A file that is no JSON object at all is one
    malformed row holding its first 1,000 characters."""
    from pyspark.sql import functions as F

    with _analysis_guard(paths, "whole JSON files"):
        # text()'s own wholetext argument (default False) overrides an .option("wholetext", ...)
        docs = spark.read.text(paths, wholetext=True).select(
            F.expr("make_valid_utf8(value)").alias("doc"), F.col("_metadata.file_name").alias(_FILE))
    parsed = docs.withColumn("_m", F.from_json("doc", "map<string,variant>", {"mode": "PERMISSIVE"}))
    # The malformed text is cut before the explode: the document must not travel with the exploded
    # rows, or it is copied once per key (a 400 KB file of 8,000 users ran a 4 GB heap out).
    flagged = parsed.select("_m", F.when(F.col("_m").isNull(), F.substring("doc", 1, 1000)).alias("malformed"), _FILE)
    return flagged.select(F.explode_outer("_m").alias("_key", "_value"), "malformed", _FILE)


def _entry_text():
    """A bad entry of _whole_json's output as its quarantine text: {"key": ..., "value": ...}."""
    from pyspark.sql import functions as F

    return F.to_json(F.struct(F.col("_key").alias("key"), F.col("_value").cast("string").alias("value")))


def _lcrec_events(spark, paths):
    """LC-Rec's {user: [item, ...]}: one "buy" per item, timed as P5's (the k-th item at P5_EPOCH + k
    seconds). A user whose value is no non-empty list is malformed, with its key and value."""
    from pyspark.sql import functions as F

    df = _whole_json(spark, paths)
    items = F.try_variant_get("_value", "$", "array<string>")
    bad = F.col("malformed").isNotNull() | items.isNull() | (F.size(items) == 0) | F.exists(items, lambda i: i.isNull())
    line = _entry_text()
    df = df.select(F.when(~bad, F.col("_key")).alias("_user"), _FILE,
                   F.when(bad, F.coalesce("malformed", line)).alias("malformed"),
                   F.posexplode_outer(F.when(~bad, items)).alias("_k", "_item"))
    time = _p5_time("_k")
    ok = F.col("malformed").isNull()
    return df.select(F.col("_user").alias("user_id"), F.col("_item").alias("item_id"),
                     F.when(ok, F.lit("buy")).alias("event_type"), F.when(ok, time).alias("event_time"),
                     "malformed", _FILE)


_EVENT_READERS = {
    "taobao": _taobao_events,
    "amazon_reviews": _amazon_reviews,
    "movielens": _ratings("::"),
    "movielens_100k": _ratings("\t"),
    "recbole": _recbole_events,
    "p5": _p5_events,
    "lcrec": _lcrec_events,
}


# ---------------------------------------------------------------- item layouts


def _category_path(key: str):
    """A JSON category field -> "A > B > C": a list of paths gives its first non-empty path, a flat
    list is one path, a string is kept as it is."""
    from pyspark.sql import functions as F

    v = _field(key)
    kind = F.schema_of_variant(v)
    paths = F.filter(F.try_variant_get(v, "$", "array<array<string>>"), lambda p: F.size(p) > 0)
    flat = F.try_variant_get(v, "$", "array<string>")
    path = (F.when(kind.startswith("ARRAY<ARRAY"), F.array_join(F.get(paths, 0), CATEGORY_SEP))
            .when(kind.startswith("ARRAY"), F.array_join(flat, CATEGORY_SEP))
            .otherwise(_jstr(key)))
    return F.when(v.isNotNull(), F.nullif(path, F.lit("")))


def _text(key: str):
    """A text field; a list of paragraphs (Amazon descriptions) is joined with spaces."""
    from pyspark.sql import functions as F

    v = _field(key)
    joined = F.nullif(F.array_join(F.try_variant_get(v, "$", "array<string>"), " "), F.lit(""))
    return F.when(F.schema_of_variant(v).startswith("ARRAY"), joined).otherwise(_jstr(key))


def _attributes(known: Iterable[str]):
    """Every other JSON field, as a JSON object (null when there is none)."""
    from pyspark.sql import functions as F

    rest = F.map_filter("_obj", lambda k, _v: ~k.isin(list(known)))
    return F.when(F.size(rest) > 0, F.to_json(rest))


def _item_columns(item_id, id_key: str, title_keys: Sequence[str]) -> list:
    """The RAW_ITEMS fields of a JSON item object held in the column _obj (map<string,variant>)."""
    from pyspark.sql import functions as F

    known = {id_key, *title_keys, "brand", "categories", "price", "description"}
    title = F.coalesce(*[F.nullif(F.trim(_text(k)), F.lit("")) for k in title_keys])
    return [item_id.alias("item_id"), title.alias("title"), _jstr("brand").alias("brand"),
            _category_path("categories").alias("categories"), _jstr("price").alias("price"),
            _text("description").alias("description"), _attributes(known).alias("attributes")]


def _json_items(id_key: str, title_keys: Sequence[str]):
    def read(spark, paths):
        return _json_lines(spark, paths).select(*_item_columns(_jstr(id_key), id_key, title_keys), "malformed", _FILE)

    return read


def _lcrec_items(spark, paths):
    """LC-Rec's {item: {title, description, brand, categories}}; an item whose value is no JSON object
    is malformed, with its key and value."""
    from pyspark.sql import functions as F

    df = _whole_json(spark, paths).withColumn("_obj", F.try_variant_get("_value", "$", "map<string,variant>"))
    bad = F.col("malformed").isNotNull() | F.col("_obj").isNull()
    line = _entry_text()
    return df.select(*_item_columns(F.col("_key"), "", ("title",)),
                     F.when(bad, F.coalesce("malformed", line)).alias("malformed"), _FILE)


def _movielens_movies(spark, paths):
    df = _split_line(_read_lines(spark, paths), ("item_id", "title", "categories"), "::")
    return df  # genres stay as MovieLens writes them: "Animation|Children's|Comedy"


# The 19 genre flags of MovieLens 100k's u.item, in file order (its u.genre).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")


def _movielens_100k_items(spark, paths):
    """Genres from the flags, joined with '|' as movies.dat writes them; release date and URL go to
    attributes. (GroupLens ships u.item in Latin-1: its accented titles decode to U+FFFD here.)"""
    from pyspark.sql import functions as F

    flags = tuple(f"g{i}" for i in range(len(ML100K_GENRES)))
    df = _split_line(_read_lines(spark, paths), ("item_id", "title", "release", "video", "url", *flags), "|")
    genres = F.concat_ws("|", *[F.when(F.col(f) == "1", F.lit(g)) for f, g in zip(flags, ML100K_GENRES)])
    attrs = F.to_json(F.struct(F.col("release").alias("release_date"), F.col("url").alias("imdb_url")))
    return df.select("item_id", "title", F.nullif(genres, F.lit("")).alias("categories"),
                     F.when(F.col("malformed").isNull(), attrs).alias("attributes"), "malformed", _FILE)


def _recbole_items(spark, paths):
    from pyspark.sql import functions as F

    df, names = _headered(spark, paths, "\t", "", strip_types=True)
    if df is None:
        return None
    if "item_id" not in names:
        raise SchemaDriftError(f"RecBole file(s) {paths}", ["item_id"], names)
    pick = lambda *options: next((F.col(o) for o in options if o in names), F.lit(None).cast("string"))  # noqa: E731
    used = {"item_id", "title", "movie_title", "name", "brand", "categories", "class", "genre", "price",
            "description"}
    rest = [n for n in names if n not in used]
    attrs = F.to_json(F.map_from_arrays(F.array(*[F.lit(n) for n in rest]), F.array(*[F.col(n) for n in rest])))
    return df.select(F.col("item_id"), pick("title", "movie_title", "name").alias("title"),
                     pick("brand").alias("brand"), pick("categories", "class", "genre").alias("categories"),
                     pick("price").alias("price"), pick("description").alias("description"),
                     (attrs if rest else F.lit(None).cast("string")).alias("attributes"), "malformed", _FILE)


def _taobao_items(spark, paths):
    """Taobao ships no catalogue: one row per item, with the smallest category id it was logged
    under (an item logged under several is rare; min keeps it deterministic). Malformed lines are
    events' business; the events adapter reports them."""
    from pyspark.sql import functions as F

    df = _taobao_events(spark, paths).where(F.col("malformed").isNull() & F.col("item_id").isNotNull())
    return (df.groupBy("item_id").agg(F.min("category").alias("categories"), F.min(_FILE).alias(_FILE))
            .withColumn("malformed", F.lit(None).cast("string")))


_ITEM_READERS = {
    "amazon_meta": _json_items("asin", ("title",)),
    "p5_items": _json_items("item_id", ("title", "pseudo_title", "name")),
    "lcrec_items": _lcrec_items,
    "movielens_movies": _movielens_movies,
    "movielens_100k_items": _movielens_100k_items,
    "recbole_items": _recbole_items,
    "taobao": _taobao_items,
}


# ---------------------------------------------------------------- generic layouts


def _generic(spark, layout: str, paths: list[str], fields: dict, sep: str):
    """Generic parquet / jsonl / csv: each contract field from a source column or a constant."""
    from pyspark.sql import functions as F

    wanted = sorted({c for kind, c in fields.values() if kind == "col"})
    if layout == "parquet":
        df = _parquet(spark, paths, wanted)
        get = lambda c: F.col(f"`{c}`").cast("string")  # noqa: E731
    elif layout == "jsonl":
        df = _json_lines(spark, paths)
        get = _jstr
    else:
        df, names = _headered(spark, paths, sep, '"')
        if df is None:
            return None
        if not set(wanted) <= set(names):
            raise SchemaDriftError(f"csv file(s) {paths}", wanted, names)
        get = lambda c: F.col(f"`{c}`")  # noqa: E731
    ok = F.col("malformed").isNull()
    cols = [F.when(ok, get(c) if kind == "col" else F.lit(c)).alias(f) for f, (kind, c) in fields.items()]
    return df.select(*cols, "malformed", _FILE)


def _parquet(spark, paths: list[str], wanted: list[str]):
    """Parquet with every file's schema merged; a mapped column found in no file is drift. (A
    column missing from only some files reads as null there and is quarantined downstream.)"""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        df = spark.read.option("mergeSchema", "true").parquet(*paths)
    except (AnalysisException, Py4JJavaError) as err:
        text = str(err)
        if "CANNOT_MERGE" in text:  # Spark raises it as a bare SparkException, hence Py4JJavaError
            why = next((ln.strip() for ln in text.splitlines() if "CANNOT_MERGE_INCOMPATIBLE" in ln), "")
            raise SchemaDriftError(f"parquet {paths}", wanted, [],
                                   f"the files disagree on a column's type ({why[:300]})") from None
        if isinstance(err, AnalysisException):
            raise AdapterError(f"cannot read parquet from {paths}: {err}") from err
        raise
    found = df.columns
    if not set(wanted) <= set(found):
        raise SchemaDriftError(f"parquet {paths}", wanted, found)
    return df.select(*[F.col(f"`{c}`") for c in wanted], F.lit(None).cast("string").alias("malformed"),
                     F.col("_metadata.file_name").alias(_FILE))


# ---------------------------------------------------------------- onto the contracts


def _empty(spark, spec):
    from schemas.spark import struct_type

    return spark.createDataFrame([], struct_type(spec))


def _events_contract(spark, df, layout: str, ingest_date: str):
    """Fills missing fields with null, nulls every field of a malformed row, stamps source and
    ingest_date, and selects exactly RAW_EVENTS' columns."""
    from pyspark.sql import functions as F

    if df is None:
        return _empty(spark, S.RAW_EVENTS)
    ok = F.col("malformed").isNull()
    cols = [F.when(ok, F.col(f) if f in df.columns else F.lit(None)).cast("string").alias(f) for f in EVENT_FIELDS]
    out = df.select(*cols, F.concat(F.lit(f"{layout}:"), F.col(_FILE)).alias("source"), "malformed",
                    F.lit(ingest_date).alias("ingest_date"))
    return conform(out, S.RAW_EVENTS)


def _items_contract(spark, df):
    """Exactly RAW_ITEMS' columns. Until RAW_ITEMS has a `malformed` column, a line that does not
    parse keeps a null item_id and its raw text in attributes as {"_malformed": line}, so the clean
    stage quarantines it (null_item_key) with the line, instead of losing it."""
    from pyspark.sql import functions as F

    if df is None:
        return _empty(spark, S.RAW_ITEMS)
    ok = F.col("malformed").isNull()
    cols = [F.when(ok, F.col(f) if f in df.columns else F.lit(None)).cast("string").alias(f) for f in ITEM_FIELDS]
    out = df.select(*cols, "malformed")
    if "malformed" not in S.RAW_ITEMS.column_names:
        folded = F.to_json(F.struct(F.col("malformed").alias("_malformed")))
        out = out.withColumn("attributes", F.when(ok, F.col("attributes")).otherwise(folded))
    return conform(out, S.RAW_ITEMS)
