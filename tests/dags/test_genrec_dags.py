"""The DAG parses, wires the stages in order, and runs end to end with dag.test() on the tiny profile."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dag
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "genrec_nightly.py"


@pytest.fixture(scope="module")
def airflow_db(session_home):
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.get_dag("genrec_nightly")


def test_structure(dag):
    assert {t.task_id for t in dag.tasks} == {"ingest", "sequences", "embed", "tokenize", "gate", "publish", "train",
                                              "recommend"}
    assert dag.get_task("recommend").upstream_task_ids == {"train"}
    assert dag.get_task("gate").upstream_task_ids == {"tokenize"}
    assert dag.get_task("train").upstream_task_ids == {"publish", "sequences"}
    assert dag.doc_md and dag.params["profile"] == "demo"


def test_dag_runs_on_tiny_profile(dag, spark):
    from airflow.utils.state import DagRunState

    run = dag.test(run_conf={"profile": "tiny", "dataset": "synthetic", "overrides": []})
    assert run.state == DagRunState.SUCCESS
    n_items = spark.sql("SELECT count(*) FROM genrec.items").first()[0]
    assert spark.sql("SELECT count(DISTINCT sid) FROM genrec.item_sid").first()[0] == n_items
