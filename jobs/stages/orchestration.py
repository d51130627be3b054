"""What an Airflow task of dags/ calls: one stage for a DAG run, with the run's date and params.

The DAG files stay wiring only. Here a run's trigger params become a typed config, its logical date
becomes the stage's partition date (the nightly ingest rewrites that date's partitions only), and a
stage's expected failure (bad input, a failed gate) is told apart from a transient one, so Airflow
retries only what a retry can mend.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any, Optional

# The published SID map as an Airflow Asset: genrec_nightly and genrec_refit emit it on publish, and
# genrec_retrain is scheduled on it. Its events carry the params the map was made with.
SID_MAP_ASSET = "genrec_sid_map"

# Every genrec task takes a slot of this Airflow pool: its size is how many Spark tasks may overlap.
# infra/airflow.sh starts the catalogue server, so tasks of different DAGs can share the catalogue,
# and sizes the pool from AIRFLOW_SPARK_SLOTS (2); on the embedded catalogue it must be 1.
SPARK_POOL = "genrec_spark"

# The lease (jobs/lake/locks.py) under which a DAG run does its lakehouse-wide work: user sequences,
# embed, tokenize, gate, publish and the batch recommendations. Runs of the nightly and refit DAGs take
# it in turn, so a backfill may run many dates at once (each date's ingest rewrites its own
# partitions) while their maps are made one run at a time, each from the tables the previous left.
MAP_LEASE = "map_chain"
ENDED_RUN_STATES = ("success", "failed")

# The refit DAG's trigger form: each field is one config key.
REFIT_KEYS = {
    "tokenizer": "tokenize.quantizer",
    "embedder": "embed.embedder",
    "collisions": "tokenize.collisions",
    "levels": "tokenize.levels",
    "codebook_size": "tokenize.codebook_size",
    "accept_churn": "gate.accept_churn",
}


class ExpectedFailure(RuntimeError):
    """A stage failed on its input or a check: rerunning the same task cannot succeed."""


def scheduled_params() -> dict[str, str]:
    """The profile and dataset of runs without a trigger conf (GENREC_DAG_PROFILE, GENREC_DAG_DATASET)."""
    from jobs.lake.settings import load_settings

    settings = load_settings()
    return {"profile": settings.dag_profile, "dataset": settings.dag_dataset}


def run_date(context: dict) -> Optional[datetime]:
    """The DAG run's logical date as a UTC datetime; None for runs that have none (asset-triggered)."""
    when = context.get("logical_date")
    if when is None:
        return None
    return datetime.fromtimestamp(when.timestamp(), tz=timezone.utc)


def overrides_of(params: dict) -> tuple[str, ...]:
    """The run's `section.key=value` overrides: the list param, the dataset, and any refit field."""
    out = list(params.get("overrides") or ())
    out.append(f"data.dataset={params['dataset']}")
    for name, key in REFIT_KEYS.items():
        value = params.get(name)
        if value not in (None, "", False):  # an empty field keeps the profile's value
            out.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return tuple(out)


def run(stage: str, params: dict, when: Optional[datetime], partition_date: Optional[date] = None,
        extra: tuple[str, ...] = (), expect_map_version: Optional[str] = None) -> dict[str, Any]:
    """Runs one stage for a task and returns its JSON-safe result (the task's XCom).

    expect_map_version: the map the run's tokenize task staged (gate and publish get it from XCom), so
    that they never gate or publish a map that another run staged in between."""
    from genrec_core.config import ConfigError, load_config
    from jobs.stages.pipeline import expected_failures, make_context, run_stage

    try:
        cfg = load_config(params["profile"], None, overrides_of(params) + extra)
    except ConfigError as e:
        raise ExpectedFailure(f"bad trigger params: {e}") from e
    ctx = make_context(cfg, logical_time=when)
    ctx.partition_date = partition_date
    ctx.expected_map_version = expect_map_version
    try:
        result = run_stage(ctx, stage)
    except expected_failures() as e:
        raise ExpectedFailure(f"{stage}: {e}") from e
    return json.loads(json.dumps(result, default=str))


def lease_owner(context: dict) -> dict[str, str]:
    return {"dag_id": context["dag_run"].dag_id, "run_id": context["dag_run"].run_id}


def _run_ended(owner: dict) -> bool:
    """Whether the holder's DAG run has ended (asked of Airflow; an unknown answer is 'no')."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        return RuntimeTaskInstance.get_dagrun_state(owner["dag_id"], owner["run_id"]) in ENDED_RUN_STATES
    except Exception as e:  # the run was deleted, or the API is unreachable: keep waiting, say why
        print(f"[genrec] could not ask Airflow for the state of {owner}: {e}", flush=True)
        return False


def take_map_lease(context: dict) -> Optional[str]:
    """Takes the map lease for this DAG run; -> None when held, else who holds it (to wait on)."""
    from jobs.lake.locks import take_lease
    from jobs.lake.settings import load_settings

    settings = load_settings()
    holder = take_lease(settings, MAP_LEASE, lease_owner(context), _run_ended)
    if holder is None:
        return None
    return (f"{holder['owner']['dag_id']} run {holder['owner']['run_id']} (since {holder['since']}); it is "
            f"taken over once that run has ended, or deleting {settings.lakehouse}/_locks/{MAP_LEASE}.lease "
            f"frees it")


def give_back_map_lease(context: dict) -> bool:
    from jobs.lake.locks import give_back_lease
    from jobs.lake.settings import load_settings

    return give_back_lease(load_settings(), MAP_LEASE, lease_owner(context))
