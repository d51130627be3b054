"""The tokenize stage: fit the configured quantizer on item embeddings, assign every item on Spark, resolve
collisions with the configured strategy, and measure SID quality.

The fit runs on the driver over `tokenize.fit_sample` items (all by default). Assignment and
collision resolution run on executors (jobs/transforms/sid_assign.py). Writes the staged map (`item_sid_staged`)
and the tokenizer folder (codebooks.npz, tokenizer.json, metrics.json) named by the map version; the
publish stage registers them.
"""
from __future__ import annotations

import numpy as np

from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io
from jobs.lake.tokenizer_files import read_header, read_metrics, write_tokenizer
from jobs.stages.context import RunContext
from jobs.transforms.sid_map_stats import (
    collision_counts,
    map_fingerprint,
    top_category,
)
from schemas import tables as S


class UnplacedItems(RuntimeError):
    """A unique-SID strategy could not give every item its own SID; nothing was staged."""


def fit_progress(quantizer: str):
    """A tqdm bar for fitters that train in steps; it opens on the first report and closes at the last."""
    state: dict = {}

    def report(done: int, total: int, figures: dict) -> None:
        from tqdm.auto import tqdm

        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=f"fit {quantizer}", disable=None, leave=False)
        bar = state["bar"]
        bar.update(done - bar.n)
        bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in figures.items()})
        if done >= total:
            bar.close()

    return report


def catalogue_vectors(ctx: RunContext, encoder: str):
    """(item_id, vector) for every catalogue item; fails clearly if any item lacks a vector."""
    from pyspark.sql import functions as F

    spark, settings = ctx.spark, ctx.settings
    emb = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
    items = delta_io.read(spark, settings, S.ITEMS).select("item_id")
    missing = items.join(emb, "item_id", "left_anti").count()
    if missing:
        raise RuntimeError(f"{missing} catalogue items have no '{encoder}' embedding; run the embed stage first")
    return emb.join(items, "item_id").select("item_id", "vector")


def fit_sample(vectors_df, size: int, seed: int):
    """Deterministic sample (by a seeded hash of item_id) collected to the driver, ordered by item_id."""
    from pyspark.sql import functions as F

    df = vectors_df
    if size:
        df = df.orderBy(F.xxhash64("item_id", F.lit(seed)), "item_id").limit(size)
    pdf = df.orderBy("item_id").toPandas()
    return pdf.item_id.to_numpy(dtype=str), np.stack(pdf.vector.to_numpy()).astype(np.float32)


def top_categories(ctx: RunContext, item_ids: np.ndarray) -> np.ndarray:
    """Top-level category of each item in `item_ids` ('(none)' when missing), for purity."""
    pdf = delta_io.read(ctx.spark, ctx.settings, S.ITEMS).select("item_id", top_category().alias("c")).toPandas()
    lookup = dict(zip(pdf.item_id, pdf.c))
    return np.asarray([lookup.get(i, "(none)") for i in item_ids.tolist()])


def quality(tok, item_ids: np.ndarray, x: np.ndarray, categories: np.ndarray, seed: int) -> dict:
    """SID quality of the semantic codes on the fit sample (the whole catalogue by default): the gate's
    figures at the top level, the full report under "report"."""
    from genrec_core.quantize.metrics import sid_quality, sid_report

    semantic = tok.encode(x)
    x_hat = tok.decode(semantic)
    report = sid_report(semantic, tok.level_sizes, x, x_hat, categories=categories, seed=seed, item_ids=item_ids)
    return {**sid_quality(semantic, tok.level_sizes, x, x_hat), "report": report.to_dict()}


def main(ctx: RunContext, encoder: str) -> dict:
    from pyspark.sql import functions as F

    from genrec_core.quantize import base
    from genrec_core.quantize.rq_kmeans import allow_faiss_gpu
    from jobs.transforms import sid_assign

    spark, settings, cfg, seed = ctx.spark, ctx.settings, ctx.config.tokenize, ctx.config.seed
    vectors = catalogue_vectors(ctx, encoder)
    sample_ids, x = fit_sample(vectors, cfg.fit_sample, seed)
    allow_faiss_gpu(settings.faiss_gpu)
    tok = base.fit(cfg.quantizer, x, cfg, seed, progress=fit_progress(cfg.quantizer))
    assigned, unplaced = sid_assign.assign(spark, vectors, tok, cfg.collisions, cfg, settings.faiss_gpu)
    if unplaced:
        raise UnplacedItems(
            f"collision strategy {cfg.collisions!r} could not give {len(unplaced)} item(s) a unique SID "
            f"(first: {unplaced[:10]}); raise tokenize.candidates_per_level or tokenize.levels. "
            "Nothing was staged.")
    assigned = assigned.withColumn("sid", F.concat_ws("-", "codes")).cache()
    metrics = {**quality(tok, sample_ids, x, top_categories(ctx, sample_ids), seed), **collision_counts(assigned),
               "quantizer": cfg.quantizer, "collisions": cfg.collisions, "fit_items": int(len(sample_ids))}
    level_sizes = list(tok.level_sizes)
    if cfg.collisions == "dedup_digit":
        dedup_size = int(metrics["max_items_per_sid_all"])
        metrics["dedup_codebook_size"] = dedup_size
        level_sizes.append(dedup_size)
    map_version = fingerprint(map_fingerprint(assigned), ctx.config.to_dict()["tokenize"], encoder, seed)
    meta = {"map_version": map_version, "encoder": encoder, "config": ctx.config.to_dict()["tokenize"],
            "embed_config": ctx.config.to_dict()["embed"], "seed": seed, "code_level_sizes": level_sizes,
            "quantizer": cfg.quantizer, "collisions": cfg.collisions}
    folder = settings.staging / "tokenizer" / map_version
    write_tokenizer(folder, tok, meta, metrics)
    staged = assigned.select("item_id", "sid", "codes", F.lit(map_version).alias("map_version"))
    version = delta_io.overwrite(spark, settings, S.ITEM_SID_STAGED, staged)
    assigned.unpersist()
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
    return {"map_version": row[0], "tokenizer_dir": str(folder), "metrics": read_metrics(folder),
            "code_level_sizes": read_header(folder)["code_level_sizes"]}
