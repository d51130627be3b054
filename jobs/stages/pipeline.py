"""The stage list and runner: one `main(ctx)` per stage in jobs/stages/, named as the DAG's task ids."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Optional

from jobs.lake.clock import timed
from jobs.stages.context import RunContext

STAGES = ("ingest", "sequences", "embed", "tokenize", "gate", "publish", "train", "recommend")


def _encoder(ctx: RunContext) -> str:
    from jobs.stages.embed import encoder_for

    return encoder_for(ctx.config)


def _tokenize_result(ctx: RunContext) -> dict:
    """This run's tokenize result: in-process, or rebuilt from the staged map when gate and publish run
    as tasks of their own. A task that was handed its map version (ctx.expected_map_version, from the
    tokenize task's XCom) refuses a staged map that another run has put in its place."""
    from jobs.stages import tokenize

    result = ctx.results.get("tokenize") or tokenize.staged_result(ctx)
    tokenize.check_staged(result["map_version"], ctx.expected_map_version)
    return result


def run_stage(ctx: RunContext, name: str) -> dict:
    """Runs one stage. Only that stage's module is imported: an Airflow task runs one stage in a fresh
    process, and the recommender's modules alone (torch, transformers) take about 5 s to import."""
    import importlib

    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    stage = importlib.import_module(f"jobs.stages.{name}")
    # The stages' arguments beyond the context, worked out inside the stage's timing.
    arguments: dict[str, Callable[[], tuple]] = {
        "ingest": lambda: (ctx.partition_date,),
        "tokenize": lambda: (_encoder(ctx),),
        "gate": lambda: (_tokenize_result(ctx),),
        "publish": lambda: (_tokenize_result(ctx),),
    }
    result = timed(lambda: stage.main(ctx, *arguments.get(name, tuple)()))
    ctx.results[name] = result
    return result


def expected_failures() -> tuple[type[Exception], ...]:
    """The errors a stage raises for bad input or a failed check: reported as a message, not a traceback."""
    from genrec_core.model.recommenders import SpecMismatch
    from genrec_core.quantize.sid_lifecycle import AlignmentUnsupported, ModeError
    from jobs.lake.audit import AccountingError
    from jobs.sources.adapters import AdapterError
    from jobs.sources.datasets import DatasetError
    from jobs.stages.gate import GateFailed
    from jobs.stages.ingest import CheckpointFailed
    from jobs.stages.recommend import NoChampion
    from jobs.lake.locks import LockTimeout
    from jobs.stages.tokenize import StagedMapReplaced, UnplacedItems
    from jobs.transforms.driver_rows import DriverBoundExceeded
    from jobs.transforms.kcore_filter import KCoreNotConverged

    return (AccountingError, AdapterError, DatasetError, GateFailed, CheckpointFailed, UnplacedItems,
            KCoreNotConverged, ModeError, AlignmentUnsupported, NoChampion, SpecMismatch, DriverBoundExceeded,
            StagedMapReplaced, LockTimeout)


def make_context(config, logical_time: Optional[datetime] = None) -> RunContext:
    from jobs.lake import faults
    from jobs.lake.settings import load_settings, quiet_environment

    quiet_environment()
    settings = load_settings()
    faults.check(settings, STAGES)
    when = logical_time or datetime.now(timezone.utc).replace(microsecond=0)
    # Airflow hands in pendulum DateTimes, which Spark cannot infer; keep a plain UTC datetime.
    when = datetime.fromtimestamp(when.timestamp(), tz=timezone.utc)
    return RunContext(settings=settings, config=config, logical_time=when)


def run(ctx: RunContext, stages=STAGES, echo: Callable[[str], None] = print) -> dict:
    from jobs.lake.faults import crash_point

    for name in stages:
        echo(f"[genrec] stage {name} ...")
        result = run_stage(ctx, name)
        echo(f"[genrec] stage {name} done in {result['seconds']:.1f}s")
        crash_point(ctx.settings, f"after:{name}")
    return ctx.results
