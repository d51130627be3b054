"""`genrec run --dataset LAYOUT:PATH` for every dataset layout, in-process on the shared Spark session.

Each case lays out a small folder the way the layout expects (bad-input corpus files where one
fits, a few hand-written lines otherwise), runs `--stages ingest,sequences`, and checks the exact
event accounting in ingest_audit: rows in, malformed rows quarantined, clean rows out. The real
MovieLens 100k (RecBole atomic files) and a 500-user slice of Amazon Beauty (P5, through publish)
run where ../shared/data is present.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BAD = Path(__file__).resolve().parents[1] / "integration" / "bad_input"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ML100K_ITEM = "|{title}|01-Jan-1997||http://example.org|" + "|".join(["0"] * 5 + ["1"] + ["0"] * 13)


def _copy(folder: Path, name: str, source: str) -> None:
    shutil.copy(BAD / source, folder / name)


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def _taobao(folder: Path) -> list[str]:
    _copy(folder, "UserBehavior.csv", "taobao_column_count.csv")  # 3 of 5 lines malformed
    return []


def _amazon(folder: Path) -> list[str]:
    _copy(folder, "reviews_Beauty.json", "amazon_reviews_broken.jsonl")  # 4 of 8 malformed; 1 clean
    _copy(folder, "meta_Beauty.json", "amazon_meta_broken.jsonl")
    return []


def _movielens(folder: Path) -> list[str]:
    _write(folder, "ratings.dat", "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n1::2\n")
    _write(folder, "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                 "2::Jumanji (1995)::Adventure|Children's|Fantasy\n")
    return []


def _movielens_100k(folder: Path) -> list[str]:
    _write(folder, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t242\t1\t878887116\n")
    _write(folder, "u.item", "".join(f"{i}{ML100K_ITEM.format(title=t)}\n"
                                     for i, t in ((242, "Kolya (1996)"), (302, "L.A. Confidential (1997)"))))
    return []


def _recbole(folder: Path) -> list[str]:
    _copy(folder, "tiny.inter", "recbole_duplicate_header.inter")  # the repeated header is malformed
    _write(folder, "tiny.item", "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                "242\tKolya\tComedy\n302\tL.A. Confidential\tCrime\n377\tHeavyweights\tChildren\n")
    return []


def _p5(folder: Path) -> list[str]:
    _copy(folder, "sequential_data.txt", "p5_short_line.txt")  # user 7 has no items: malformed
    _write(folder, "items.jsonl", "".join(json.dumps({"item_id": i, "pseudo_title": f"item {i}"}) + "\n"
                                          for i in range(1, 6)))
    return []


def _lcrec(folder: Path) -> list[str]:
    _write(folder, "Toy.inter.json", json.dumps({"0": [0, 1, 2], "1": [2, 3], "2": []}))  # user 2: malformed
    _write(folder, "Toy.item.json", json.dumps({str(i): {"title": f"item {i}", "categories": "A,B"} for i in range(4)}))
    return []


def _csv(folder: Path) -> list[str]:
    _copy(folder, "events.csv", "generic_duplicate_header.csv")  # 3 of 5 malformed
    _write(folder, "items.csv", "id,name\ni1,One\ni2,Two\n")
    return _generic_mapping("uid", "iid", "ts")


def _jsonl(folder: Path) -> list[str]:
    _write(folder, "events.jsonl", '{"uid": "u1", "iid": "i1", "ts": "2024-01-01T00:00:00"}\n'
                                   '{"uid": "u2", "iid": "i2", "ts": 1704153600}\n{"uid": "u3", "iid"\n')
    _write(folder, "items.jsonl", '{"id": "i1", "name": "One"}\n{"id": "i2", "name": "Two"}\n')
    return _generic_mapping("uid", "iid", "ts")


def _parquet(folder: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"uid": ["u1", "u2", None], "iid": ["i1", "i2", "i1"],
                             "ts": ["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"]}),
                   folder / "events.parquet")
    pq.write_table(pa.table({"id": ["i1", "i2"], "name": ["One", "Two"]}), folder / "items.parquet")
    return _generic_mapping("uid", "iid", "ts")


def _generic_mapping(user: str, item: str, time: str) -> list[str]:
    events = {"user_id": user, "item_id": item, "event_time": time}
    return ["--set", f"data.source.event_columns={json.dumps(events)}",
            "--set", 'data.source.event_constants={"event_type": "buy"}',
            "--set", 'data.source.item_columns={"item_id": "id", "title": "name"}']


# layout -> (writer, events in, malformed rows quarantined, clean events)
CASES = {
    "taobao": (_taobao, 5, 3, 2),
    "amazon": (_amazon, 8, 4, 1),
    "movielens": (_movielens, 4, 1, 3),
    "movielens_100k": (_movielens_100k, 3, 0, 3),
    "recbole": (_recbole, 4, 1, 3),
    "p5": (_p5, 6, 1, 5),
    "lcrec": (_lcrec, 6, 1, 5),
    "csv": (_csv, 5, 3, 2),
    "jsonl": (_jsonl, 3, 1, 2),
    "parquet": (_parquet, 3, 0, 2),
}
# The event adapter behind a dataset layout, where the names differ (raw rows carry it in `source`).
CASES_EVENTS_LAYOUT = {"amazon": "amazon_reviews"}


def run_cli(spark, monkeypatch, home: Path, *args: str):
    """`genrec ARGS` in this process (the shared Spark session) with its home at `home`."""
    from typer.testing import CliRunner

    from jobs.cli.app import app

    monkeypatch.setenv("GENREC_HOME", str(home))  # restored after the test; --home sets it too
    result = CliRunner().invoke(app, [*args, "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def events_audit(spark, home: Path) -> dict:
    rows = spark.read.format("delta").load(str(home / "lakehouse" / "ingest_audit")).collect()
    (row,) = [r.asDict() for r in rows if r["stage"] == "ingest" and r["source"] == "events"]
    return row


@pytest.mark.parametrize("layout", list(CASES))
def test_every_layout_runs_ingest_and_sequences(spark, monkeypatch, tmp_path, layout):
    write, n_in, n_malformed, n_clean = CASES[layout]
    data = tmp_path / "data"
    data.mkdir()
    extra = write(data)
    spec = f"{layout}:{data}"
    run_cli(spark, monkeypatch, tmp_path / "home", "run", "--dataset", spec, "--profile", "tiny",
            "--stages", "ingest,sequences", "--set", "clean.kcore=0", *extra)
    audit = events_audit(spark, tmp_path / "home")
    assert audit["dataset"] == spec
    assert (audit["input_rows"], json.loads(audit["by_reason"]).get("malformed_row", 0), audit["output_rows"]) == (
        n_in, n_malformed, n_clean)
    landed = [p.name for p in (tmp_path / "home" / "lakehouse" / "_landing").iterdir()]
    assert len(landed) == 1 and landed[0].startswith(f"{layout}-")
    sources = {r[0].split(":")[0] for r in spark.read.parquet(str(tmp_path / "home" / "lakehouse" / "_landing" /
                                                                   landed[0] / "events")).select("source").collect()}
    assert sources == {CASES_EVENTS_LAYOUT.get(layout, layout)}


def test_a_missing_file_is_a_clear_error_before_spark_work(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli.app import app

    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n")
    result = CliRunner().invoke(app, ["run", "--dataset", f"movielens:{tmp_path}", "--stages", "ingest"])
    assert result.exit_code == 2
    assert "no items file matching movies.dat" in result.output
    result = CliRunner().invoke(app, ["run", "--dataset", "tsv:/x"])
    assert result.exit_code == 2 and "LAYOUT one of landed, p5, lcrec, taobao" in result.output


def test_help_lists_every_layout():
    from typer.testing import CliRunner

    from jobs.cli.app import app
    from jobs.sources.datasets import DATASETS

    for command in ("run", "ingest"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"], terminal_width=400).output.split())
        for name in DATASETS:
            assert f"'{name}:PATH'" in text, (command, name)


@pytest.mark.realdata
def test_real_movielens_100k_recbole_files(spark, monkeypatch, tmp_path):
    path = SHARED_DATA / "ml-100k"
    if not (path / "ml-100k.inter").is_file():
        pytest.skip(f"real dataset not present at {path} (research data lives in ../shared/data)")
    run_cli(spark, monkeypatch, tmp_path / "home", "run", "--dataset", f"recbole:{path}", "--profile", "tiny",
            "--stages", "ingest,sequences")
    audit = events_audit(spark, tmp_path / "home")
    assert audit["input_rows"] == 100_000
    assert audit["quarantined_rows"] == 0 and audit["output_rows"] == 100_000 - audit["removed_rows"]


@pytest.mark.realdata
def test_movielens_1m_slice_as_the_readme_runs_it(spark, monkeypatch, tmp_path):
    """The README's MovieLens command on the first 20,000 ratings of ml-1m (whole users: the file is
    sorted by user) and the full movies.dat."""
    source = SHARED_DATA / "ml-1m"
    if not (source / "ratings.dat").is_file():
        pytest.skip(f"real dataset not present at {source} (research data lives in ../shared/data)")
    data = tmp_path / "ml-1m"
    data.mkdir()
    with (source / "ratings.dat").open("rb") as src:
        (data / "ratings.dat").write_bytes(b"".join(next(src) for _ in range(20_000)))
    (data / "movies.dat").write_bytes((source / "movies.dat").read_bytes())
    run_cli(spark, monkeypatch, tmp_path / "home", "run", "--dataset", f"movielens:{data}",
            "--stages", "ingest,sequences")
    audit = events_audit(spark, tmp_path / "home")
    assert audit["input_rows"] == 20_000 and audit["quarantined_rows"] == 0
    assert audit["output_rows"] + audit["removed_rows"] == 20_000


@pytest.mark.realdata
def test_p5_beauty_slice_through_publish(spark, monkeypatch, tmp_path, beauty_dir):
    """The README's real-data command on the first 500 users of Amazon Beauty: every stage up to
    publish, with k-core off (a slice of a 5-core set is not 5-core)."""
    data = tmp_path / "beauty500"
    data.mkdir()
    lines = (beauty_dir / "sequential_data.txt").read_text().splitlines()[:500]
    (data / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    wanted = {t for line in lines for t in line.split()[1:]}
    with (beauty_dir / "items.jsonl").open() as src, (data / "items.jsonl").open("w") as out:
        out.writelines(line for line in src if str(json.loads(line)["item_id"]) in wanted)
    home = tmp_path / "home"
    run_cli(spark, monkeypatch, home, "run", "--dataset", f"p5:{data}", "--profile", "tiny", "--set",
            "clean.kcore=0", "--stages", "ingest,sequences,embed,tokenize,gate,publish")
    sid = spark.read.format("delta").load(str(home / "lakehouse" / "item_sid"))
    assert sid.count() == len(wanted)
    assert sid.select("sid").distinct().count() == len(wanted)
    audit = events_audit(spark, home)
    assert audit["input_rows"] == sum(len(line.split()) - 1 for line in lines) == audit["output_rows"]


def test_an_event_type_override_reaches_the_checkpoint(spark, monkeypatch, tmp_path):
    """clean.event_types is what cleaning keeps and what the checkpoint accepts: a widened list keeps
    Taobao's unmapped 'scroll' events clean (the checkpoint read the schema's list before), and the
    default list quarantines them."""
    data = tmp_path / "UserBehavior.csv"
    data.write_text("1,10,100,pv,1511544070\n1,11,100,scroll,1511544071\n2,10,100,scroll,1511544072\n")
    types = '["view", "click", "cart", "fav", "buy", "rate", "scroll"]'
    for home, extra, clean, quarantined in ((tmp_path / "wide", ["--set", f"clean.event_types={types}"], 3, 0),
                                            (tmp_path / "default", [], 1, 2)):
        run_cli(spark, monkeypatch, home, "run", "--dataset", f"taobao:{data}", "--profile", "tiny",
                "--stages", "ingest", *extra)
        audit = events_audit(spark, home)
        assert (audit["output_rows"], audit["quarantined_rows"]) == (clean, quarantined)
        if quarantined:
            assert json.loads(audit["by_reason"]) == {"unknown_event_type": quarantined}
