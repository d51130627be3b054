"""Many processes on one lakehouse, through the catalogue server (`genrec catalog start`):
`genrec sql` answers while `genrec run` writes, and of two runs publishing at once one commits and the
other finds nothing to do; a task handed another map than the staged one publishes nothing."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, genrec_cli

pytestmark = pytest.mark.e2e
# A new map to publish: another tokenizer setting, which `auto` answers with a refit (churn accepted).
NEW_MAP = ["--profile", "tiny", "--set", "tokenize.niter=11", "--accept-churn"]


def _env(home: Path) -> dict:
    env = {**os.environ, "GENREC_HOME": str(home), "COLUMNS": "200"}
    for key in ("GENREC_LAKEHOUSE", "GENREC_MLFLOW_URI", "GENREC_MLFLOW_ARTIFACTS", "GENREC_CRASH_AT"):
        env.pop(key, None)
    return env


def genrec(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(genrec_cli() + list(args), env=_env(home), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def sql_rows(home: Path, query: str) -> list[list[str]]:
    proc = genrec(home, "sql", query, "--output", "csv", "--limit", "100000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(csv.reader(io.StringIO(proc.stdout)))[1:]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home whose catalogue server runs for the module; stopped by its pid in teardown."""
    home = tmp_path_factory.mktemp("served")
    started = genrec(home, "catalog", "start", timeout=120)
    assert started.returncode == 0, started.stderr
    record = json.loads((home / "lakehouse" / "_catalog_server.json").read_text())
    try:
        yield home
    finally:
        stopped = genrec(home, "catalog", "stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert not Path(f"/proc/{record['pid']}").exists() or "Z" in Path(f"/proc/{record['pid']}/stat").read_text().split(") ")[1][:1]
        assert genrec(home, "catalog", "status").returncode == 3


def commits(home: Path, table: str) -> list[str]:
    """The Delta commit files of a table: a process that wrote nothing to it added none."""
    return sorted(p.name for p in (home / "lakehouse" / table / "_delta_log").glob("*.json"))


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, f"process ended before printing {text!r}:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s:.0f} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def first_run(home, tmp_path_factory):
    """`genrec run` on the tiny profile; while it runs (after ingest), `genrec sql` queries the catalogue.
    -> (sql's result, whether the run was still going when sql returned)"""
    log = tmp_path_factory.mktemp("logs") / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(genrec_cli() + ["run", "--profile", "tiny", "--set", "train.max_steps=300"],
                               env=_env(home), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_for(log, "stage sequences ...", run, 900)
        query = genrec(home, "sql", "SELECT count(*) AS n FROM genrec.interactions_clean", "--output", "csv")
        still_running = run.poll() is None
        assert run.wait(timeout=900) == 0, log.read_text()[-5000:]
    finally:
        if run.poll() is None:
            run.kill()
    return query, still_running, log.read_text()


def test_sql_answers_while_a_run_writes(first_run):
    query, still_running, run_log = first_run
    assert query.returncode == 0, query.stderr[-3000:]
    assert int(query.stdout.splitlines()[1]) > 0
    assert still_running, "the run ended before `genrec sql` returned: nothing was shown"
    assert "stage recommend done" in run_log


def test_two_publishers_at_once_publish_one_version(first_run, home, tmp_path):
    from jobs.lake import locks
    from jobs.lake.settings import load_settings

    staged = genrec(home, "run", *NEW_MAP, "--stages", "tokenize,gate")
    assert staged.returncode == 0, staged.stderr[-3000:]
    before = {t: commits(home, t) for t in ("item_sid", "sid_map_versions")}
    settings = dataclasses.replace(load_settings(), home=home, lakehouse=home / "lakehouse")
    logs = [tmp_path / f"publisher{i}.log" for i in range(2)]
    # The test holds the publish lock until both publishers wait on it, so they truly contend.
    with locks.exclusive(settings, "publish"):
        procs = []
        for log in logs:
            with open(log, "w") as out:
                procs.append(subprocess.Popen(genrec_cli() + ["run", *NEW_MAP, "--stages", "publish"],
                                              env=_env(home), stdout=out, stderr=subprocess.STDOUT, cwd=REPO))
        for proc, log in zip(procs, logs):
            _wait_for(log, "waiting for the publish lock", proc, 600)
    codes = [p.wait(timeout=600) for p in procs]
    outs = [log.read_text() for log in logs]
    assert codes == [0, 0], outs
    published = [o for o in outs if "[publish] map " in o and " published: item_sid v" in o]
    idle = [o for o in outs if "is already published: nothing to do" in o]
    assert len(published) == 1 and len(idle) == 1, outs
    new_map = published[0].split("[publish] map ")[1].split()[0]

    # One commit each to item_sid and the manifest: the idle publisher wrote nothing.
    for table, names in before.items():
        assert len(commits(home, table)) == len(names) + 1, table
    m, i = "genrec.sid_map_versions", "genrec.item_sid"
    (rows, distinct_maps, new_rows, n_items, n, distinct_items, active, maps, staged_n), = sql_rows(home, (
        f"SELECT (SELECT count(*) FROM {m}), (SELECT count(DISTINCT map_version) FROM {m}), "
        f"(SELECT count(*) FROM {m} WHERE map_version = '{new_map}'), "
        f"(SELECT max(n_items) FROM {m} WHERE map_version = '{new_map}'), "
        f"(SELECT count(*) FROM {i}), (SELECT count(DISTINCT item_id) FROM {i}), "
        f"(SELECT sum(CAST(status = 'active' AS INT)) FROM {i}), (SELECT count(DISTINCT map_version) FROM {i}), "
        f"(SELECT count(*) FROM genrec.item_sid_staged)"))
    assert rows == distinct_maps and new_rows == "1"  # no map version twice
    assert n == distinct_items == staged_n and maps == "1" and active == n_items  # rows lost: 0

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'genrec-tokenizer'")
    tagged = [v.version for v in versions if v.tags.get("map_version") == new_map]
    assert len(tagged) == 1, tagged
    assert len({v.version for v in versions}) == len(versions)


PUBLISH_WITH_XCOM = """
import sys
from jobs.stages import orchestration as O
try:
    O.run("publish", {"profile": "tiny", "dataset": "synthetic", "overrides": []}, None,
          expect_map_version=sys.argv[1])
except O.ExpectedFailure as e:
    print("EXPECTED", e, flush=True)
    sys.exit(3)
"""


def test_a_task_never_publishes_another_runs_staged_map(first_run, home):
    """genrec_nightly's publish task gets its map version from the tokenize task (XCom); if another run
    staged a map since, it fails without retries and writes nothing."""
    before = {t: commits(home, t) for t in ("item_sid", "sid_map_versions")}
    proc = subprocess.run([sys.executable, "-c", PUBLISH_WITH_XCOM, "map-of-another-run"], env=_env(home),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "EXPECTED publish: the staged SID map is" in proc.stdout and "not map-of-another-run" in proc.stdout
    assert {t: commits(home, t) for t in before} == before
