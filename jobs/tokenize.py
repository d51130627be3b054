"""Stage d: fit residual k-means on item embeddings, assign SIDs, separate collisions, measure quality.

Writes the staged map (`item_sid_staged`) and the tokenizer files (codebooks.npz, tokenizer.json,
metrics.json) into a staging folder named by the map version; the publish stage registers them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from jobs import delta_io
from jobs.context import RunContext, fingerprint
from schemas import tables as S


def load_vectors(ctx: RunContext, encoder: str):
    from pyspark.sql import functions as F

    spark, settings = ctx.spark, ctx.settings
    emb = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
    items = delta_io.read(spark, settings, S.ITEMS).select("item_id")
    missing = items.join(emb, "item_id", "left_anti").count()
    if missing:
        raise RuntimeError(f"{missing} catalogue items have no '{encoder}' embedding; run the embed stage first")
    pdf = emb.join(items, "item_id").select("item_id", "vector").orderBy("item_id").toPandas()
    return pdf.item_id.to_numpy(dtype=object), np.stack(pdf.vector.to_numpy()).astype(np.float32)


def write_tokenizer(folder: Path, tokenizer, meta: dict) -> None:
    """Atomic: files go to a temp folder that is renamed into place."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    arrays, header = tokenizer.state()
    np.savez(tmp / "codebooks.npz", **arrays)
    (tmp / "tokenizer.json").write_text(json.dumps({**meta, **header}, indent=2, sort_keys=True))
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)


def main(ctx: RunContext, encoder: str) -> dict:
    from genrec_core.quantize.collisions import dedup_digit, sid_strings
    from genrec_core.quantize.metrics import sid_quality
    from genrec_core.quantize.rq_kmeans import fit_rq_kmeans

    spark, settings, cfg = ctx.spark, ctx.settings, ctx.config.tokenize
    item_ids, x = load_vectors(ctx, encoder)
    tok = fit_rq_kmeans(x, cfg.levels, cfg.codebook_size, cfg.niter, ctx.config.seed, cfg.min_points_per_code)
    semantic = tok.encode(x)
    codes = dedup_digit(semantic, item_ids.astype(str))
    dedup_size = int(codes[:, -1].max()) + 1
    metrics = sid_quality(semantic, tok.level_sizes, x, tok.decode(semantic))
    metrics["dedup_codebook_size"] = dedup_size
    sids = sid_strings(codes)
    map_version = fingerprint(sorted(zip(item_ids.tolist(), sids)), cfg, encoder)
    level_sizes = list(tok.level_sizes) + [dedup_size]
    meta = {"map_version": map_version, "encoder": encoder, "config": ctx.config.to_dict()["tokenize"],
            "seed": ctx.config.seed, "code_level_sizes": level_sizes, "collisions": "dedup_digit"}
    folder = settings.staging / "tokenizer" / map_version
    write_tokenizer(folder, tok, meta)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))

    staged = spark.createDataFrame(
        [(i, s, [int(c) for c in row], map_version) for i, s, row in zip(item_ids.tolist(), sids, codes)],
        schema="item_id string, sid string, codes array<int>, map_version string")
    version = delta_io.overwrite(spark, settings, S.ITEM_SID_STAGED, staged)
    return {"map_version": map_version, "tokenizer_dir": str(folder), "metrics": metrics,
            "code_level_sizes": level_sizes, "versions": {"item_sid_staged": version}}


def staged_result(ctx: RunContext) -> dict:
    """Rebuilds the tokenize stage's result from the staged table and folder (for gate and publish
    running in another process, e.g. as separate Airflow tasks)."""
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_SID_STAGED):
        raise RuntimeError("no staged SID map: run the tokenize stage first")
    row = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID_STAGED).select("map_version").first()
    if row is None:
        raise RuntimeError("the staged SID map is empty: the catalogue has no items")
    folder = ctx.settings.staging / "tokenizer" / row[0]
    meta = json.loads((folder / "tokenizer.json").read_text())
    return {"map_version": row[0], "tokenizer_dir": str(folder),
            "metrics": json.loads((folder / "metrics.json").read_text()),
            "code_level_sizes": meta["code_level_sizes"]}
