"""Crash safety: the pipeline killed at every stage boundary and twice inside publish, each time
followed by a rerun, ends with the same tables as a run that was never interrupted, and no Delta
version of item_sid or sid_map_versions ever shows a half-published map.

`make test` runs the crash between item_sid and the manifest (the one a reader could see); the
chain over every point takes ~9 minutes on 2 cores and runs with --crash-chain (`make test-crash`).

The crash is GENREC_CRASH_AT (jobs/lake/faults.py): os._exit(137), what SIGKILL leaves. One home is
crashed link by link: each process resumes at the stage the previous one died after (as an Airflow
retry of the next task does) and dies at the next point; the last is the full `genrec run` again.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from jobs.lake.faults import CRASH_EXIT_CODE
from jobs.stages.pipeline import STAGES
from tests.conftest import REPO, genrec_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DATE = ["--profile", "tiny", "--logical-date", "2026-01-22"]
TABLES = ("items", "interactions_clean", "interactions_quarantine", "ingest_audit", "user_sequences",
          "item_embeddings", "item_sid_staged", "item_sid", "sid_map_versions", "recommendations")


def _stages_from(stage: str) -> str:
    return ",".join(STAGES[STAGES.index(stage):])


# (crash point, first stage of the process that dies there)
LINKS = ([("after:ingest", "ingest")]
         + [(f"after:{s}", s) for s in ("sequences", "embed", "tokenize", "gate")]
         + [("publish:registered", "publish"), ("publish:item_sid", "publish"), ("after:publish", "publish"),
            ("after:train", "train")])


def genrec(home: Path, *args: str, crash_at: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_HOME": str(home), "COLUMNS": "200"}
    for key in ("GENREC_LAKEHOUSE", "GENREC_MLFLOW_URI", "GENREC_MLFLOW_ARTIFACTS", "GENREC_CRASH_AT"):
        env.pop(key, None)
    if crash_at:
        env["GENREC_CRASH_AT"] = crash_at
    return subprocess.run(genrec_cli() + list(args), env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


@pytest.fixture(scope="module")
def homes(tmp_path_factory, pytestconfig):
    """-> (uninterrupted home, crashed-and-rerun home, the crash points that fired)"""
    if not pytestconfig.getoption("crash_chain"):
        pytest.skip("the crash chain over every boundary takes ~9 min on 2 cores: `make test-crash` "
                    "(--crash-chain) runs it; make test runs the crash inside publish")
    clean = tmp_path_factory.mktemp("uninterrupted")
    proc = genrec(clean, "run", *DATE)
    assert proc.returncode == 0, proc.stderr[-4000:]

    crashed = tmp_path_factory.mktemp("crashed")
    fired = []
    for point, first in LINKS:
        proc = genrec(crashed, "run", *DATE, "--stages", _stages_from(first), crash_at=point)
        assert proc.returncode == CRASH_EXIT_CODE, f"{point}: rc {proc.returncode}\n{proc.stderr[-4000:]}"
        assert f"GENREC_CRASH_AT={point}: exiting hard" in proc.stderr
        fired.append(point)
    proc = genrec(crashed, "run", *DATE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return clean, crashed, fired


def _fingerprint(spark, path: Path) -> tuple[int, str]:
    df = spark.read.format("delta").load(str(path))
    rows = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str) for r in df.collect())
    return len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()


def test_every_boundary_was_crashed(homes):
    *_, fired = homes
    assert fired == [p for p, _ in LINKS]
    assert {f"after:{s}" for s in STAGES[:-1]} <= set(fired)  # every boundary between two stages


def test_the_rerun_converges_to_the_uninterrupted_tables(homes, spark):
    clean, crashed, _ = homes
    differ = {}
    for table in TABLES:
        a = _fingerprint(spark, clean / "lakehouse" / table)
        b = _fingerprint(spark, crashed / "lakehouse" / table)
        if a != b:
            differ[table] = (a, b)
    assert not differ, f"tables differ from the uninterrupted run: {differ}"


def test_no_delta_version_shows_a_half_published_map(homes, spark):
    """Every item_sid version holds one whole map; every manifest version names an item_sid version
    that holds exactly the map its newest row describes."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    _, crashed, _ = homes
    item_sid, manifest = (str(crashed / "lakehouse" / t) for t in ("item_sid", "sid_map_versions"))
    for home in homes[:2]:
        sid_path = str(home / "lakehouse" / "item_sid")
        history = DeltaTable.forPath(spark, sid_path).history().select("version").collect()
        for (v,) in history:
            snap = spark.read.format("delta").option("versionAsOf", v).load(sid_path)
            assert snap.select("map_version").distinct().count() == 1, f"item_sid v{v} holds two maps"
    versions = [r[0] for r in DeltaTable.forPath(spark, manifest).history().select("version").collect()]
    for v in versions:
        rows = spark.read.format("delta").option("versionAsOf", v).load(manifest)
        newest = rows.orderBy(F.col("item_sid_version").desc()).first()
        snap = spark.read.format("delta").option("versionAsOf", newest["item_sid_version"]).load(item_sid)
        maps = [r[0] for r in snap.select("map_version").distinct().collect()]
        active = snap.where(F.col("status") == "active").count()
        assert maps == [newest["map_version"]] and active == newest["n_items"], (v, maps, active, newest)


def test_mlflow_holds_no_duplicate_version(homes):
    import mlflow

    counts = []
    for home in homes[:2]:
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        tok = client.search_model_versions("name = 'genrec-tokenizer'")
        maps = [v.tags.get("map_version") for v in tok]
        assert len(maps) == len(set(maps)), maps
        assert client.get_model_version_by_alias("genrec-tokenizer", "champion").tags["map_version"] in maps
        counts.append(len(tok))
    assert counts[0] == counts[1]


def test_a_crash_between_item_sid_and_the_manifest_is_finished_by_the_rerun(tmp_path, spark):
    """Killed after item_sid took the map and before the manifest row: the rerun of publish writes
    the row naming that item_sid version, commits nothing else, and registers no second tokenizer."""
    import mlflow

    home = tmp_path / "home"
    proc = genrec(home, "run", *DATE, "--stages", "ingest,sequences,embed,tokenize,gate,publish",
                  crash_at="publish:item_sid")
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr[-4000:]
    lake = home / "lakehouse"
    sid_commits = sorted((lake / "item_sid" / "_delta_log").glob("*.json"))
    assert len(sid_commits) >= 1 and not (lake / "sid_map_versions").exists()

    rerun = genrec(home, "run", *DATE, "--stages", "publish")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert " published: item_sid v" in rerun.stdout
    assert sorted((lake / "item_sid" / "_delta_log").glob("*.json")) == sid_commits  # the map was whole

    row, = spark.read.format("delta").load(str(lake / "sid_map_versions")).collect()
    snap = spark.read.format("delta").option("versionAsOf", row["item_sid_version"]).load(str(lake / "item_sid"))
    assert row["item_sid_version"] == len(sid_commits) - 1
    assert [r[0] for r in snap.select("map_version").distinct().collect()] == [row["map_version"]]
    assert snap.where("status = 'active'").count() == row["n_items"]
    staged = spark.read.format("delta").load(str(lake / "item_sid_staged"))
    assert snap.count() == staged.count()  # rows lost: 0

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'genrec-tokenizer'")
    assert [v.tags.get("map_version") for v in versions] == [row["map_version"]]
    assert client.get_model_version_by_alias("genrec-tokenizer", "champion").version == versions[0].version
