"""The report job on Spark + Delta + MLflow: a map published after another one, reported against it."""
from __future__ import annotations

import dataclasses
import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_maps(ctx):
    """Publishes a plain refit from another seed, then one from the tiny profile's own seed (plain:
    no warm start, no alignment, churn accepted, so the seeds really move items). Returns
    (other map version, current map version)."""
    from jobs.stages import pipeline

    def plain(seed):
        cfg = ctx.config
        return dataclasses.replace(cfg, seed=seed, gate=dataclasses.replace(cfg.gate, accept_churn=True),
                                   tokenize=dataclasses.replace(cfg.tokenize, mode="refit", align=False,
                                                                warm_start=False))

    other = dataclasses.replace(ctx, config=plain(ctx.config.seed + 1), results={})
    final = dataclasses.replace(ctx, config=plain(ctx.config.seed), results={})
    for stage in ("ingest", "embed"):
        pipeline.run_stage(ctx, stage)
    for run_ctx in (other, final):
        for stage in ("tokenize", "gate", "publish"):
            pipeline.run_stage(run_ctx, stage)
    ctx.results.update(final.results)
    return other.results["tokenize"]["map_version"], final.results["tokenize"]["map_version"]


def test_report_of_the_current_map(two_maps, ctx, tmp_path):
    from mlflow import MlflowClient

    from genrec_core.quantize.metrics import SIDReport
    from jobs.lake import mlflow_models
    from jobs.stages import map_report as report

    previous, current = two_maps
    result = report.main(ctx, out_dir=tmp_path)
    assert (result["map_version"], result["previous_map_version"]) == (current, previous)
    names = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"report.json", "report.md", "plots/items_per_sid.png", "plots/level_1_usage.png",
            "plots/map_history.png"} <= names

    document = json.loads((tmp_path / "report.json").read_text())
    r = SIDReport.from_dict(document["report"])
    assert r == SIDReport.from_dict(result["report"]) and document["meta"]["notes"] is None
    past = document["history"]
    assert {previous, current} <= {h["map_version"] for h in past} and "## Map history" in result["markdown"]
    assert [h["mode"] for h in past if h["map_version"] == previous] == ["refit"]
    staged = ctx.results["tokenize"]["metrics"]
    n_items = ctx.spark.sql("SELECT count(*) FROM genrec.items").first()[0]
    assert r.n_items == staged["n_items"] == n_items
    assert r.collision_rate == pytest.approx(staged["collision_rate"])
    assert r.reconstruction_rel_error == pytest.approx(staged["reconstruction_rel_error"], rel=1e-4)
    assert r.resolved.unique_share == 1.0 and r.knn.knn_sample == n_items and r.purity.n_categories > 1
    assert r.churn.n_common == n_items and r.churn.n_added == r.churn.n_removed == 0
    assert 0.0 < r.churn.sid_changed <= 1.0                 # another seed moves items

    mlflow_models.client(ctx.settings)
    run = MlflowClient().get_run(result["mlflow_run_id"])
    assert run.data.tags["map_version"] == current and run.data.metrics["collision_rate"] == r.collision_rate
    # The same report again is not logged twice.
    assert report.main(ctx, out_dir=tmp_path)["mlflow_run_id"] == result["mlflow_run_id"]
