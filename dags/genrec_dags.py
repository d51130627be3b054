"""genrec's three DAGs: genrec_nightly (per date), genrec_retrain (on each new map), genrec_refit (manual).

Each task calls one `jobs` stage through jobs.stages.orchestration; tasks exchange only small JSON
(table versions, map version, metrics) through XCom, never data. Heavy imports stay inside the tasks
so the file parses fast.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, Param, PokeReturnValue, task

# Light imports only (no Spark, torch or numpy): the names below are the project's single lists.
from genrec_core.config import EMBEDDERS
from genrec_core.quantize.registry import COLLISIONS, QUANTIZERS
from jobs.stages.orchestration import SID_MAP_ASSET, SPARK_POOL, scheduled_params

SID_MAP = Asset(name=SID_MAP_ASSET)

DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "pool": SPARK_POOL,
}

# A scheduled run has no trigger conf: it processes the deployment's profile and dataset, which the
# trigger form also shows.
_SCHEDULED = scheduled_params()

COMMON_PARAMS = {
    "profile": Param(_SCHEDULED["profile"], type="string", enum=["demo", "tiny", "cpu", "gpu"],
                     description="Config profile."),
    "dataset": Param(_SCHEDULED["dataset"], type="string",
                     description="'synthetic', 'landed:PATH' or LAYOUT:PATH (`genrec run --help` lists the layouts)."),
    "overrides": Param([], type="array", description="section.key=value config overrides."),
}


def _stage(stage: str, params: dict, context: dict, partition_date=None, extra=(), when=None,
           expect_map_version=None) -> dict:
    """One stage for this task; an expected failure (bad input, failed gate) fails without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.stages import orchestration as O

    if when is None:
        when = O.run_date(context)
    try:
        return O.run(stage, params, when, partition_date, extra, expect_map_version)
    except O.ExpectedFailure as e:
        raise AirflowFailException(str(e)) from e


def _announce(published: dict, params: dict, context: dict, when) -> None:
    """Emits the SID_MAP event for a map this run published; a run that changed nothing emits none."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not published.get("published"):
        raise AirflowSkipException(f"map {published.get('map_version')} was already published; nothing to retrain")
    context["outlet_events"][SID_MAP].extra = {
        "map_version": published["map_version"], "item_sid_version": published.get("item_sid_version"),
        "profile": params["profile"], "dataset": params["dataset"], "overrides": list(params.get("overrides") or ()),
        "as_of": when.isoformat() if when else None}


# The map lease (jobs.stages.orchestration.MAP_LEASE): a run's lakehouse-wide tasks run between a
# setup that takes it and a teardown that gives it back, even when a task of the run failed. Waiting
# is a sensor in reschedule mode, so a run in line holds neither a worker nor a slot of the pool.
@task.sensor(poke_interval=15, timeout=12 * 3600, mode="reschedule", pool="default_pool", retries=0)
def take_map_lease(_upstream=None, **context) -> PokeReturnValue:
    from jobs.stages.orchestration import take_map_lease as take

    holder = take(context)
    if holder is not None:
        print(f"[genrec] waiting for the map lease, held by {holder}", flush=True)
    return PokeReturnValue(is_done=holder is None)


@task(pool="default_pool")
def give_back_map_lease(**context) -> bool:
    from jobs.stages.orchestration import give_back_map_lease as give_back

    return give_back(context)


def _leased(lease, first_tasks: list, last_tasks: list) -> None:
    """Wraps the tasks from first_tasks to last_tasks in the map lease's setup and teardown."""
    lease >> first_tasks
    last_tasks >> give_back_map_lease().as_teardown(setups=lease)


def _map_chain(params_extra: tuple[str, ...] = ()):
    """embed -> tokenize -> gate -> publish -> announce; wire(upstream) -> (embed, publish, announce)."""

    @task
    def embed(_upstream=None, params=None, **context) -> dict:
        return _stage("embed", params, context, extra=params_extra)

    @task
    def tokenize(_embedded: dict, params=None, **context) -> dict:
        return _stage("tokenize", params, context, extra=params_extra)

    @task(retries=0)
    def gate(tokenized: dict, params=None, **context) -> dict:
        return _stage("gate", params, context, extra=params_extra,
                      expect_map_version=tokenized["map_version"]) | {"map_version": tokenized["map_version"]}

    @task
    def publish(gated: dict, params=None, **context) -> dict:
        return _stage("publish", params, context, extra=params_extra, expect_map_version=gated["map_version"])

    @task(outlets=[SID_MAP], retries=0)
    def announce_map(published: dict, params=None, **context) -> None:
        from jobs.stages.orchestration import run_date

        _announce(published, params, context, run_date(context))

    def wire(upstream=None):
        embedded = embed(upstream)
        published = publish(gate(tokenize(embedded)))
        return embedded, published, announce_map(published)

    return wire


NIGHTLY_DOC = """
### genrec_nightly
For logical date D: cleans D's event partitions (and those of late events that landed on D), rebuilds
user sequences, embeds new or changed items, retokenizes in `auto` mode (assign under the published
tokenizer; refit only on drift), gates and publishes the item -> Semantic ID map, and writes D's batch
recommendations with the current champion. A newly published map emits the `genrec_sid_map` Asset,
which schedules genrec_retrain. Every task is idempotent for its date: a backfill over A..B rewrites
exactly those dates' partitions, and repeating it converges to identical tables.

Runs may overlap (up to `max_active_runs`, or a backfill's own "max active runs"): ingests go one at a
time, each rewriting its own dates, and everything after ingest runs under the map lease
(`take_map_lease` ... `give_back_map_lease`), so each run makes its map from what the previous run
published. A run waiting for the lease shows `take_map_lease` as up for reschedule.

Trigger parameters: `profile` (demo, tiny, cpu, gpu), `dataset` (`synthetic`, `landed:PATH` or
`LAYOUT:PATH`, the layouts of `genrec run --help`), and `overrides` (a list of `section.key=value`).
"""

with DAG(
    dag_id="genrec_nightly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    # Runs overlap in their ingests (one at a time, each its own dates) and take turns at the map
    # lease for the rest; a backfill sets its own limit in the same way.
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    doc_md=NIGHTLY_DOC,
    tags=["genrec"],
    params=COMMON_PARAMS,
) as nightly:

    # One ingest at a time: a date's run may also rewrite the partitions of late events' dates, and
    # every ingest refreshes the items table.
    @task(max_active_tis_per_dag=1)
    def ingest(params=None, **context) -> dict:
        from jobs.stages.orchestration import run_date

        when = run_date(context)
        return _stage("ingest", params, context, partition_date=when.date() if when else None)

    @task
    def sequences(_cleaned: dict, params=None, **context) -> dict:
        return _stage("sequences", params, context)

    @task(trigger_rule="none_failed")
    def recommend(_published: dict, _sequences: dict, params=None, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from jobs.stages.orchestration import run_date, ExpectedFailure, run
        from jobs.stages.recommend import NoChampion

        try:
            return run("recommend", params, run_date(context))
        except ExpectedFailure as e:
            if isinstance(e.__cause__, NoChampion):
                raise AirflowSkipException(f"{e}; genrec_retrain trains one on the published map") from e
            raise

    cleaned = ingest()
    seqs = sequences(cleaned)
    embedded, published, announced = _map_chain()(cleaned)
    recommended = recommend(published, seqs)
    _leased(take_map_lease(cleaned), [seqs, embedded], [recommended, announced])


RETRAIN_DOC = """
### genrec_retrain
Runs on every `genrec_sid_map` event (a newly published map), with the params the map was made with
(the event's extra). Trains the configured recommender on that map, evaluates it, promotes it to
champion if it beats the current one, and rewrites the map's date's batch recommendations.
Triggered by hand, it uses the params of the form.
"""


def _event_params(params: dict, context: dict) -> tuple[dict, datetime | None]:
    """The newest triggering SID_MAP event's params and date, else the form's params and no date."""
    events = [e for evs in (context.get("triggering_asset_events") or {}).values() for e in evs]
    if not events:
        return params, None
    extra = events[-1].extra or {}
    merged = dict(params) | {k: extra[k] for k in ("profile", "dataset", "overrides") if k in extra}
    as_of = extra.get("as_of")
    return merged, datetime.fromisoformat(as_of) if as_of else None


with DAG(
    dag_id="genrec_retrain",
    schedule=[SID_MAP],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=RETRAIN_DOC,
    tags=["genrec"],
    params=COMMON_PARAMS,
) as retrain:

    @task
    def train(params=None, **context) -> dict:
        from jobs.stages.orchestration import run_date

        merged, when = _event_params(params, context)
        return _stage("train", merged, context, when=when or run_date(context)) | {
            "as_of": when.isoformat() if when else None}

    @task
    def recommend_champion(trained: dict, params=None, **context) -> dict:
        from jobs.stages.orchestration import run_date

        merged, when = _event_params(params, context)
        return _stage("recommend", merged, context, when=when or run_date(context))

    recommend_champion(train())


REFIT_DOC = """
### genrec_refit
A deliberate refit of the tokenizer, by hand (set `schedule` to `@weekly` for a weekly one): embeds
what changed, fits a new tokenizer with the form's settings (`tokenize.mode=refit`), gates and
publishes. The gate refuses a map whose churn of old items' SIDs exceeds `gate.max_churn` unless
`accept_churn` is ticked. A published map schedules genrec_retrain.
"""

with DAG(
    dag_id="genrec_refit",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=REFIT_DOC,
    tags=["genrec"],
    params=COMMON_PARAMS | {
        # Empty fields keep the profile's value.
        "tokenizer": Param(None, type=["null", "string"], enum=[None, *QUANTIZERS],
                           description="Quantizer (tokenize.quantizer)."),
        "embedder": Param(None, type=["null", "string"], enum=[None, *EMBEDDERS],
                          description="Item embedder (embed.embedder)."),
        "collisions": Param(None, type=["null", "string"], enum=[None, *COLLISIONS],
                            description="Collision strategy (tokenize.collisions)."),
        "levels": Param(None, type=["null", "integer"], minimum=1, maximum=8,
                        description="Code levels (tokenize.levels)."),
        "codebook_size": Param(None, type=["null", "integer"], minimum=2, maximum=4096,
                               description="Codes per level, K (tokenize.codebook_size)."),
        "accept_churn": Param(False, type="boolean",
                              description="Publish even if old items' SIDs change beyond gate.max_churn."),
    },
) as refit:
    embedded, published, announced = _map_chain(("tokenize.mode=refit",))()
    _leased(take_map_lease(), [embedded], [announced])
