"""The item path under a driver bound smaller than the catalogue: embed, tokenize, gate, publish and
report finish while no collect exceeds GENREC_DRIVER_ROWS, and a config that would collect the whole
catalogue (tokenize.fit_sample = 0) stops before anything is staged.

Own lakehouse, database and MLflow store, so the shared `genrec` tables and models are left alone.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.integration

BOUND = 50  # the tiny profile's catalogue has 120 items


@pytest.fixture(scope="module")
def bounded(spark, tiny_config, tmp_path_factory):
    from jobs.lake.settings import load_settings
    from jobs.stages import pipeline
    from jobs.stages.context import RunContext

    home = tmp_path_factory.mktemp("bounded-home")
    settings = dataclasses.replace(load_settings(), lakehouse=home / "lakehouse", database="genrec_bound_tests",
                                   mlflow_uri=f"sqlite:///{home / 'mlflow.db'}",
                                   mlflow_artifacts=home / "artifacts", driver_rows=BOUND)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    ctx = RunContext(settings=settings, config=tiny_config, logical_time=datetime(2026, 3, 1, tzinfo=timezone.utc),
                     _spark=spark)
    for stage in ("ingest", "embed"):
        pipeline.run_stage(ctx, stage)
    return ctx


def _with_fit_sample(ctx, size: int):
    config = dataclasses.replace(ctx.config, tokenize=dataclasses.replace(ctx.config.tokenize, fit_sample=size))
    return dataclasses.replace(ctx, config=config, results={})


def test_collect_refuses_more_rows_than_the_bound(spark):
    from jobs.transforms.driver_rows import DriverBoundExceeded, collect

    df = spark.range(10)
    assert len(collect(df, "ten rows", 10, "")) == 10
    with pytest.raises(DriverBoundExceeded, match=r"ten rows: more than 9 rows .* GENREC_DRIVER_ROWS=9\. Lower it"):
        collect(df, "ten rows", 9, "Lower it.")


def test_a_whole_catalogue_fit_is_refused_before_anything_is_staged(bounded):
    from jobs.lake import delta_io
    from jobs.transforms.driver_rows import DriverBoundExceeded
    from jobs.stages import pipeline
    from schemas import tables as S

    ctx = _with_fit_sample(bounded, 0)
    with pytest.raises(DriverBoundExceeded, match=r"fit sample \(tokenize.fit_sample=0\).*Set tokenize.fit_sample"):
        pipeline.run_stage(ctx, "tokenize")
    assert not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_SID_STAGED)


def test_the_item_path_runs_within_the_bound(bounded, tmp_path):
    from jobs.lake import delta_io
    from jobs.stages import map_report, pipeline
    from schemas import tables as S

    ctx = _with_fit_sample(bounded, 40)
    n_items = delta_io.read(ctx.spark, ctx.settings, S.ITEMS).count()
    assert n_items > BOUND
    for stage in ("tokenize", "gate", "publish"):
        pipeline.run_stage(ctx, stage)
    assert ctx.results["gate"]["rows"] == n_items
    assert ctx.results["tokenize"]["metrics"]["fit_items"] == 40
    published = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID)
    assert published.where("status = 'active'").count() == n_items
    report = map_report.main(ctx, out_dir=tmp_path)
    assert any(f"seeded sample of {BOUND}" in note for note in report["notes"])
    # The recommender needs every active item on one host: under a smaller bound it says so, and how.
    from jobs.stages import train
    from jobs.transforms.driver_rows import DriverBoundExceeded

    with pytest.raises(DriverBoundExceeded, match=r"recommender's vocabulary.*Raise GENREC_DRIVER_ROWS"):
        train.load_map(ctx)
