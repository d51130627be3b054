"""genrec_nightly: the Semantic-ID pipeline as Airflow tasks.

Each task calls one `jobs` stage; tasks exchange only small JSON (table versions, map version,
metrics) through XCom, never data. Heavy imports stay inside the tasks so the DAG file parses fast.
"""
from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, Param, task

DOC = """
### genrec_nightly
Cleans the interaction logs, rebuilds user sequences, embeds new or changed items, fits the
tokenizer, gates and publishes the item -> Semantic ID map, then trains and evaluates the
recommender, and writes the champion's batch recommendations for the logical date. Tables live in
the Delta lakehouse (`genrec` database); models in MLflow.

Trigger parameters: `profile` (demo, tiny, cpu, gpu), `dataset` (`synthetic`, `landed:PATH` or
`LAYOUT:PATH`, the layouts of `genrec run --help`),
and `overrides` (a list of `section.key=value` strings). Reruns are idempotent.
"""


def _context(params: dict, context: dict):
    """Builds the jobs RunContext from the trigger params; manual runs may have no logical date."""
    from genrec_core.config import load_config
    from jobs.stages.pipeline import make_context

    overrides = tuple(params.get("overrides") or ()) + (f"data.dataset={params['dataset']}",)
    cfg = load_config(params["profile"], None, overrides)
    when = context.get("logical_date") or context.get("run_after") or datetime.now(timezone.utc)
    return make_context(cfg, logical_time=when)


def _run(stage: str, params: dict, context: dict) -> dict:
    import json

    from jobs.stages.pipeline import run_stage

    result = run_stage(_context(params, context), stage)
    return json.loads(json.dumps(result, default=str))


with DAG(
    dag_id="genrec_nightly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # The default catalogue is an embedded Derby metastore, which one Spark process can open at a
    # time; with a shared metastore service this limit can be lifted.
    max_active_tasks=1,
    doc_md=DOC,
    tags=["genrec"],
    params={
        "profile": Param("demo", type="string", enum=["demo", "tiny", "cpu", "gpu"],
                         description="Config profile."),
        "dataset": Param("synthetic", type="string",
                         description="'synthetic', 'landed:PATH' or LAYOUT:PATH (`genrec run --help` lists the layouts)."),
        "overrides": Param([], type="array", description="section.key=value config overrides."),
    },
) as dag:

    @task
    def ingest(params=None, **context) -> dict:
        return _run("ingest", params, context)

    @task
    def sequences(_upstream: dict, params=None, **context) -> dict:
        return _run("sequences", params, context)

    @task
    def embed(_upstream: dict, params=None, **context) -> dict:
        return _run("embed", params, context)

    @task
    def tokenize(_upstream: dict, params=None, **context) -> dict:
        return _run("tokenize", params, context)

    @task
    def gate(tokenized: dict, params=None, **context) -> dict:
        return _run("gate", params, context) | {"map_version": tokenized["map_version"]}

    @task
    def publish(gated: dict, params=None, **context) -> dict:
        return _run("publish", params, context)

    @task
    def train(published: dict, _sequences: dict, params=None, **context) -> dict:
        return _run("train", params, context)

    @task
    def recommend(_trained: dict, params=None, **context) -> dict:
        return _run("recommend", params, context)

    cleaned = ingest()
    seqs = sequences(cleaned)
    tokens = tokenize(embed(cleaned))
    recommend(train(publish(gate(tokens)), seqs))
