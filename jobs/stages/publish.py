"""The publish stage: register the tokenizer in MLflow (a refit's; `assign` reuses the published one),
MERGE the staged map into `item_sid`, record the version and what changed, and refresh the views.

Idempotent: a map version that is already published is not registered, merged or recorded again, so
a rerun on the same input changes no SID and adds no version.

Serialised: the whole stage holds the lakehouse's publish lock (jobs/lake/locks.py), and checks under
it that the staged map is still the one this run tokenized. Of two runs publishing at once, the second
finds the map published and does nothing, or finds another run's map staged and fails with
StagedMapReplaced, having written nothing.

Crash-safe: each write is one Delta commit or one MLflow call, in an order a rerun can finish from.
The tokenizer version is registered first (found again by its map version on a rerun), then item_sid
is MERGEd (a whole map in one commit: no Delta version of item_sid holds two maps), and last the
manifest row names the item_sid version that holds the map. Readers who want the map a manifest row
describes read `item_sid VERSION AS OF item_sid_version`.
"""
from __future__ import annotations

import json
from pathlib import Path

from jobs.lake import delta_io, locks, mlflow_models, views
from jobs.lake.faults import crash_point
from jobs.lake.tokenizer_files import read_header, read_tokenizer
from jobs.stages.context import RunContext
from jobs.stages.gate import churn_check
from jobs.stages.tokenize import check_staged, staged_map_version
from schemas import tables as S
from schemas.spark import struct_type


def input_versions(ctx: RunContext) -> dict:
    return {name: delta_io.latest_version(ctx.spark, ctx.settings, S.BY_NAME[name])
            for name in ("items", "item_embeddings", "interactions_clean", "item_sid_staged")}


def already_published(ctx: RunContext, map_version: str) -> bool:
    from pyspark.sql import functions as F

    if not delta_io.table_exists(ctx.spark, ctx.settings, S.SID_MAP_VERSIONS):
        return False
    manifest = delta_io.read(ctx.spark, ctx.settings, S.SID_MAP_VERSIONS)
    if manifest.where(F.col("map_version") == map_version).limit(1).count() == 0:
        return False
    current = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID).select("map_version").distinct().collect()
    return [r[0] for r in current] == [map_version]


def main(ctx: RunContext, tokenize_result: dict) -> dict:
    with locks.exclusive(ctx.settings, "publish"):
        return _publish(ctx, tokenize_result)


def _publish(ctx: RunContext, tokenize_result: dict) -> dict:
    from pyspark.sql import functions as F

    spark, settings = ctx.spark, ctx.settings
    map_version = tokenize_result["map_version"]
    metrics = tokenize_result["metrics"]
    c = mlflow_models.client(settings)
    if already_published(ctx, map_version):
        print(f"[publish] map {map_version} is already published: nothing to do", flush=True)
        version = mlflow_models.find_version(c, mlflow_models.TOKENIZER_MODEL, map_version)
        views.refresh(spark, settings)
        return {"map_version": map_version, "published": False,
                "tokenizer_version": version.version if version else None,
                "versions": {"item_sid": delta_io.latest_version(spark, settings, S.ITEM_SID)}}

    check_staged(staged_map_version(ctx), map_version)
    life = tokenize_result.get("lifecycle") or {}
    existing = mlflow_models.find_version(c, mlflow_models.TOKENIZER_MODEL, map_version)
    if life.get("mode") == "assign":
        tok_version = str(life["parent_tokenizer_version"])
    elif existing is not None:
        tok_version = str(existing.version)
    else:
        from genrec_core.quantize.metrics import SIDReport
        from genrec_core.quantize.report import flat_metrics

        tok = read_tokenizer(Path(tokenize_result["tokenizer_dir"]))
        flat = {**flat_metrics(SIDReport.from_dict(metrics["report"])),
                **{k: metrics[k] for k in ("moved", "collision_rate_all", "unique_sids_after")}}
        tok_version, _ = mlflow_models.register_folder(
            c, mlflow_models.TOKENIZER_MODEL, Path(tokenize_result["tokenizer_dir"]), map_version,
            params={"tokenizer": ctx.config.tokenize.quantizer, "collisions": ctx.config.tokenize.collisions,
                    "embedder": ctx.config.embed.embedder,
                    **{f"tokenize.{k}": v for k, v in ctx.config.to_dict()["tokenize"].items()}},
            metrics=flat, tags={"map_version": map_version, "quantizer": ctx.config.tokenize.quantizer,
                                "collisions": ctx.config.tokenize.collisions},
            run_name=f"tokenizer-{map_version}", code="tokenizer",
            signature=mlflow_models.tokenizer_signature(tok.dim, tok.levels))
    if life.get("mode") != "assign":
        # The recommender trained on this map decides whether it becomes champion (train stage);
        # until then it is the challenger, or the champion when there is none. Set on a rerun too:
        # a crash right after registering left the version without its alias.
        champion = mlflow_models.alias_version(c, mlflow_models.TOKENIZER_MODEL, mlflow_models.CHAMPION)
        if champion is None:
            c.set_registered_model_alias(mlflow_models.TOKENIZER_MODEL, mlflow_models.CHAMPION, tok_version)
        elif str(champion.version) != tok_version:
            c.set_registered_model_alias(mlflow_models.TOKENIZER_MODEL, mlflow_models.CHALLENGER, tok_version)
    crash_point(settings, "publish:registered")

    staged = delta_io.read(spark, settings, S.ITEM_SID_STAGED).withColumn("tokenizer_version", F.lit(tok_version))
    sid_version = delta_io.merge_upsert(spark, settings, S.ITEM_SID, staged, ("item_id",), delete_missing=True)
    crash_point(settings, "publish:item_sid")
    tok_cfg = read_header(Path(tokenize_result["tokenizer_dir"]))
    _, accepted = churn_check(life, ctx.config.gate)
    row = {"map_version": map_version, "tokenizer_version": tok_version, "item_sid_version": sid_version,
           "n_items": int(life.get("n_active", metrics["n_items"])), "mode": life.get("mode", "refit"),
           "reason": life.get("reason", ""), "parent_map_version": life.get("parent_map_version"),
           **{k: int(life.get(k) or 0) for k in ("n_new", "n_reassigned", "n_retired", "n_returned", "n_moved")},
           **{k: float(life.get(k) or 0.0) for k in ("churn_full", "churn_prefix", "churn_first")},
           "churn_accepted": bool(accepted), "metrics": json.dumps(metrics, sort_keys=True),
           "input_versions": json.dumps(input_versions(ctx), sort_keys=True),
           "config": json.dumps(tok_cfg, sort_keys=True), "published_at": ctx.logical_time}
    manifest = spark.createDataFrame([row], schema=struct_type(S.SID_MAP_VERSIONS))
    manifest_version = delta_io.merge_upsert(spark, settings, S.SID_MAP_VERSIONS, manifest, ("map_version",),
                                             delete_missing=False, compare=("map_version",))
    views.refresh(spark, settings)
    print(f"[publish] map {map_version} published: item_sid v{sid_version}, tokenizer v{tok_version}", flush=True)
    return {"map_version": map_version, "published": True, "tokenizer_version": tok_version,
            "versions": {"item_sid": sid_version, "sid_map_versions": manifest_version}}
