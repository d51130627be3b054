"""The same ingest + sequences code on local[2] and on a real Spark standalone cluster (a master and
two workers on 127.0.0.1, started by infra/spark_cluster.sh) gives identical Delta tables.

Each run is its own driver process (a SparkSession cannot switch masters in-process) with its own
GENREC_HOME, so the two lakehouses are independent; the tables are then read here and compared row
for row, order-insensitively.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import tables as S

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "spark_cluster.sh"
TABLES = (S.ITEMS, S.INTERACTIONS_CLEAN, S.INTERACTIONS_QUARANTINE, S.USER_SEQUENCES)
RUN_SECONDS = 1200  # per driver; a tiny run takes ~1 min alone, several on a loaded 2-core machine

# Runs stages ingest and sequences for one fixed logical date, then reports what it ran on.
DRIVER = """
import json
from datetime import datetime, timezone

from genrec_core.config import load_config
from jobs.stages import ingest
from jobs.stages import sequences
from jobs.stages.context import RunContext
from jobs.lake.settings import load_settings

ctx = RunContext(settings=load_settings(), config=load_config("tiny"),
                 logical_time=datetime(2026, 3, 1, tzinfo=timezone.utc))
ingest.main(ctx)
sequences.main(ctx)
sc = ctx.spark.sparkContext
print(json.dumps({"master": sc.master, "executors": sc._jsc.sc().getExecutorMemoryStatus().size() - 1}))
ctx.spark.stop()
"""


def _master_port() -> int:
    """7077 when it is free; otherwise (another cluster on this shared machine) a free port."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 7077)) != 0:
            return 7077
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """-> (master URL, run folder). The cluster is stopped in teardown, whatever happened."""
    run_dir = tmp_path_factory.mktemp("spark-cluster")
    port = _master_port()
    env = {**os.environ, "SPARK_CLUSTER_DIR": str(run_dir), "SPARK_MASTER_PORT": str(port),
           "GENREC_PYTHON": sys.executable}
    try:
        started = subprocess.run([str(SCRIPT), "start", "--workers", "2"], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert started.returncode == 0, f"cluster did not start:\n{started.stdout}\n{started.stderr}"
        yield f"spark://127.0.0.1:{port}", run_dir
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def _run(master: str, home: Path) -> dict:
    env = {**os.environ, "GENREC_HOME": str(home), "GENREC_SPARK_MASTER": master}
    for key in ("GENREC_LAKEHOUSE", "GENREC_MLFLOW_URI", "GENREC_MLFLOW_ARTIFACTS"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_SECONDS)
    assert proc.returncode == 0, f"run on {master} failed:\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """-> {"local": (report, lakehouse), "cluster": (report, lakehouse)}; local first, then the cluster
    (one at a time: the machine has 2 cores)."""
    master, _ = cluster
    out = {}
    for name, url in (("local", "local[2]"), ("cluster", master)):
        home = tmp_path_factory.mktemp(f"home-{name}")
        out[name] = (_run(url, home), home / "lakehouse")
    return out


def test_cluster_run_used_the_standalone_master_and_both_workers(runs, cluster):
    master, run_dir = cluster
    assert runs["local"][0] == {"master": "local[2]", "executors": 0}
    assert runs["cluster"][0] == {"master": master, "executors": 2}
    # Each worker launched an executor for the application (its scratch folder holds app-*/N/).
    for i in (1, 2):
        assert list((run_dir / f"work-{i}").glob("app-*/*/stderr")), f"worker {i} ran no executor"


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.name)
def test_tables_are_identical_on_local_and_cluster(runs, spark, spec):
    local, remote = (spark.read.format("delta").load(str(runs[k][1] / spec.name)) for k in ("local", "cluster"))
    assert remote.schema == local.schema
    n_local, n_remote = local.count(), remote.count()
    assert n_local > 0
    # Multiset equality of whole rows, both ways; on failure show a few rows from each side.
    only_local, only_remote = local.exceptAll(remote), remote.exceptAll(local)
    diff = (only_local.limit(5).collect(), only_remote.limit(5).collect())
    assert (n_remote, diff) == (n_local, ([], [])), f"{spec.name}: local has {n_local} rows, cluster {n_remote}"
