"""The DAGs parse and wire the stages in order; genrec_nightly runs for a logical date with dag.test()
on the tiny profile (rewriting that date's partitions only), and genrec_retrain trains on its map."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

pytestmark = pytest.mark.dag
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "genrec_dags.py"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
TINY = {"profile": "tiny", "dataset": "synthetic", "overrides": []}


@pytest.fixture(scope="module")
def airflow_db(session_home):
    from jobs.stages.orchestration import SPARK_POOL

    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, timeout=300)
    subprocess.run([AIRFLOW, "pools", "set", SPARK_POOL, "1", "genrec Spark tasks"], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag


def test_nightly_structure(dags):
    dag = dags.get_dag("genrec_nightly")
    assert {t.task_id for t in dag.tasks} == {"ingest", "sequences", "embed", "tokenize", "gate", "publish",
                                              "announce_map", "recommend", "take_map_lease", "give_back_map_lease"}
    assert dag.get_task("gate").upstream_task_ids == {"tokenize"}
    assert dag.get_task("announce_map").upstream_task_ids == {"publish"}
    assert dag.get_task("recommend").upstream_task_ids == {"publish", "sequences"}
    assert [o.name for o in dag.get_task("announce_map").outlets] == ["genrec_sid_map"]
    assert dag.max_active_runs > 1 and dag.doc_md and dag.params["profile"] == "demo"
    # Runs overlap: ingests one at a time, and everything after ingest inside the map lease, whose
    # teardown gives it back even when a task failed; waiting for it holds no slot of the Spark pool.
    assert dag.get_task("ingest").max_active_tis_per_dag == 1
    lease, give_back = dag.get_task("take_map_lease"), dag.get_task("give_back_map_lease")
    assert lease.is_setup and lease.mode == "reschedule" and lease.upstream_task_ids == {"ingest"}
    assert give_back.is_teardown and give_back.upstream_task_ids == {"take_map_lease", "recommend", "announce_map"}
    assert lease.downstream_task_ids == {"sequences", "embed", "give_back_map_lease"}
    # Transient failures retry with backoff; the gate's verdict is final.
    assert all(t.pool == "genrec_spark" for t in dag.tasks if t not in (lease, give_back))
    assert lease.pool == give_back.pool == "default_pool"
    assert dag.get_task("publish").retries == 2 and dag.get_task("publish").retry_exponential_backoff
    assert dag.get_task("gate").retries == 0


def test_retrain_runs_on_the_map_asset_and_refit_has_typed_params(dags):
    retrain, refit = dags.get_dag("genrec_retrain"), dags.get_dag("genrec_refit")
    assert {t.task_id for t in retrain.tasks} == {"train", "recommend_champion"}
    assert [a.name for a in retrain.timetable.asset_condition.objects] == ["genrec_sid_map"]
    assert {t.task_id for t in refit.tasks} == {"embed", "tokenize", "gate", "publish", "announce_map",
                                                "take_map_lease", "give_back_map_lease"}
    assert refit.get_task("embed").upstream_task_ids == {"take_map_lease"}
    assert type(refit.timetable).__name__ == "NullTimetable"  # manual only
    for name in ("tokenizer", "embedder", "collisions", "levels", "codebook_size", "accept_churn"):
        assert name in refit.params, name


def test_refit_params_become_overrides():
    from jobs.stages.orchestration import overrides_of

    params = TINY | {"tokenizer": "faiss_rq", "levels": 2, "codebook_size": None, "accept_churn": True,
                     "embedder": None, "collisions": ""}
    assert overrides_of(params) == ("data.dataset=synthetic", "tokenize.quantizer=faiss_rq", "tokenize.levels=2",
                                    "gate.accept_churn=true")


def test_scheduled_runs_take_the_deployment_profile_and_dataset(monkeypatch):
    from jobs.stages.orchestration import scheduled_params

    assert scheduled_params() == {"profile": "demo", "dataset": "synthetic"}
    monkeypatch.setenv("GENREC_DAG_PROFILE", "cpu")
    monkeypatch.setenv("GENREC_DAG_DATASET", "p5:/data/beauty")
    assert scheduled_params() == {"profile": "cpu", "dataset": "p5:/data/beauty"}


def _audit_scopes(spark) -> list[str]:
    rows = spark.sql("SELECT scope FROM genrec.ingest_audit WHERE stage = 'ingest' AND source = 'events'").collect()
    return [r.scope for r in rows]


def _rows_per_date(spark) -> dict:
    rows = spark.sql("SELECT event_date, count(*) AS n FROM genrec.interactions_clean GROUP BY event_date").collect()
    return {r.event_date: r.n for r in rows}


def test_nightly_rewrites_its_logical_date_only_then_retrain_trains(dags, spark):
    from airflow.utils.state import DagRunState

    from jobs.stages.orchestration import run

    # A full clean first (what `genrec run` does), so the map and the model have every user's events.
    run("ingest", TINY, datetime(2026, 3, 5, tzinfo=timezone.utc))
    before = _rows_per_date(spark)
    spark.sql("DELETE FROM genrec.interactions_clean WHERE event_date = DATE'2026-01-20'")
    run_ = dags.get_dag("genrec_nightly").test(logical_date=datetime(2026, 1, 20, tzinfo=timezone.utc), run_conf=TINY)
    assert run_.state == DagRunState.SUCCESS
    n_items = spark.sql("SELECT count(*) FROM genrec.items").first()[0]
    assert spark.sql("SELECT count(DISTINCT sid) FROM genrec.item_sid").first()[0] == n_items
    # The run owned D and the dates of late events that landed on D, and rewrote those partitions only.
    scope = [date.fromisoformat(d) for d in json.loads(_audit_scopes(spark)[-1])]
    assert date(2026, 1, 20) in scope and all(date(2026, 1, 16) <= d <= date(2026, 1, 20) for d in scope)
    assert _rows_per_date(spark) == before  # the deleted date is back, the others untouched
    # No champion yet: recommend skips (it does not fail the night); the new map's event retrains.
    states = {ti.task_id: ti.state for ti in run_.get_task_instances()}
    assert states["recommend"] == "skipped" and states["announce_map"] == "success", states
    # The run took the map lease and gave it back.
    from jobs.lake.locks import lease_holder
    from jobs.lake.settings import load_settings
    from jobs.stages.orchestration import MAP_LEASE

    assert states["take_map_lease"] == states["give_back_map_lease"] == "success", states
    assert lease_holder(load_settings(), MAP_LEASE) is None

    trained = dags.get_dag("genrec_retrain").test(run_conf=TINY)
    assert trained.state == DagRunState.SUCCESS
    assert spark.sql("SELECT count(*) FROM genrec.recommendations").first()[0] > 0
