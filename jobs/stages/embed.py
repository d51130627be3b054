"""The embed stage: item embeddings into `item_embeddings`, by the embedder named in embed.embedder.

Every embedder writes rows keyed (item_id, encoder), so the vectors of different embedders live side
by side and the tokenize stage picks its encoder by name (`encoder_for(config)`).

- text: a local sentence encoder over title, brand and categories. Incremental by content_hash:
  only items whose (item_id, content_hash) has no row for this encoder are embedded. Resumable: the
  to-do list, sorted by item_id, is embedded in shards of embed.shard_size, and each finished shard
  is committed by its own MERGE, so a killed run loses at most the shard in flight and the next run
  starts after the last committed one.
- als: item factors of implicit-feedback ALS on interactions_clean; cold items by the category-mean
  rule of genrec_core.embed.collab.
- fused: text and ALS vectors, each normalised, weighted by embed.fused_weights and concatenated.
- famae: ReSID's field-aware masked auto-encoder over the users' training histories.

Cost: als, fused and famae are recomputed from the current data on every run, because a new event
moves every factor. ALS costs about max_iter × (nnz × rank² + (users + items) × rank³) flops on the
executors; FAMAE costs famae.steps batches on the driver's device (at the defaults, d=128, batch 256,
history 20: about 3 s a step on 2 busy CPU cores, so 300 steps take ~15 min on CPU and seconds on a
GPU). Both write items.content_hash as the row's content_hash, although it does not drive them.
Both are deterministic in local mode, so an unchanged input rewrites bit-identical vectors and
merge_upsert's no-op check commits nothing (see `als_item_vectors` for the cluster caveat).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

from genrec_core.config import EmbedConfig, PipelineConfig
from jobs.lake import delta_io
from jobs.stages.context import RunContext
from schemas import tables as S
from schemas.spark import struct_type


def encoder_name(model_path: str) -> str:
    return Path(model_path).name if Path(model_path).name != "model" else Path(model_path).parent.name


def text_encoder_for(cfg: EmbedConfig) -> str:
    from genrec_core.embed.text import default_model_path

    return encoder_name(cfg.model_path or default_model_path())


def encoder_for(config: PipelineConfig) -> str:
    """The `encoder` value the embed stage writes for this config; computes nothing, reads nothing."""
    cfg = config.embed
    als = f"als-r{cfg.als.rank}"
    if cfg.embedder == "text":
        return text_encoder_for(cfg)
    if cfg.embedder == "als":
        return als
    if cfg.embedder == "fused":
        return f"fused-{text_encoder_for(cfg)}-{als}"
    if cfg.embedder == "famae":
        return "famae"
    raise ValueError(f"unknown embedder {cfg.embedder!r}; choose text, als, fused or famae")


def main(ctx: RunContext, after_shard: Optional[Callable[[int, int], None]] = None) -> dict:
    """Runs the configured embedder. `after_shard(shard_index, table_version)` is called after each
    committed text shard (a fault-injection point for tests)."""
    embedder = ctx.config.embed.embedder
    if embedder == "text":
        result = embed_text(ctx, after_shard)
    elif embedder == "fused":
        result = embed_fused(ctx, after_shard)
    else:
        catalogue = _catalogue(ctx)
        vectors = _als(ctx, catalogue) if embedder == "als" else _famae(ctx, catalogue)
        result = _write_all(ctx, encoder_for(ctx.config), catalogue, vectors)
    stale_version = _drop_stale(ctx)
    if stale_version is not None:
        result["versions"]["item_embeddings"] = stale_version
    return {"embedder": embedder, **result}


# ---- text: incremental by content_hash, resumable by shard -------------------------------------

def embed_text(ctx: RunContext, after_shard: Optional[Callable[[int, int], None]] = None) -> dict:
    from tqdm.auto import tqdm

    from genrec_core.embed.text import TextEncoder, default_model_path

    cfg = ctx.config.embed
    if cfg.shard_size < 1:
        raise ValueError(f"embed.shard_size must be >= 1, got {cfg.shard_size}")
    model_path = cfg.model_path or default_model_path()
    encoder = encoder_name(model_path)
    todo = _text_todo(ctx, encoder)
    version, starts = _latest_version(ctx), range(0, len(todo), cfg.shard_size)
    if len(todo):
        model = TextEncoder(model_path, device=cfg.device, max_length=cfg.max_length)
        with tqdm(total=len(todo), desc=f"embed ({encoder}, {model.device})", unit="item") as bar:
            for shard, start in enumerate(starts):
                version = _embed_shard(ctx, model, encoder, todo.iloc[start:start + cfg.shard_size],
                                       bar.update)
                if after_shard:
                    after_shard(shard, version)
    return {"encoder": encoder, "embedded": int(len(todo)), "shards": len(starts),
            "model_path": model_path, "versions": {"item_embeddings": version}}


def _text_todo(ctx: RunContext, encoder: str):
    """Items without a row for (item_id, content_hash, encoder), sorted by item_id.

    The sort makes shard boundaries a function of the to-do list alone: after a kill, the rerun's
    shards are exactly the unfinished shards of the killed run (unless the catalogue changed in
    between), so it embeds the same batches and writes the same vectors as an uninterrupted run."""
    from pyspark.sql import functions as F

    todo = _items(ctx)
    if delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS):
        done = (delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS)
                .where(F.col("encoder") == encoder).select("item_id", "content_hash"))
        todo = todo.join(done, on=["item_id", "content_hash"], how="left_anti")
    # Collected to the driver (ids and short texts); at 10⁸ items a per-shard reader would replace it.
    return todo.orderBy("item_id").toPandas()


def _embed_shard(ctx: RunContext, model, encoder: str, part, progress) -> int:
    """Embeds one shard (TextEncoder batches it by text length) and commits it with one MERGE."""
    from genrec_core.embed.text import item_text

    texts = [item_text(t, b, c) for t, b, c in zip(part.title, part.brand, part.categories)]
    vectors = model.encode(texts, batch_size=ctx.config.embed.batch_size, progress=progress)
    return _merge_vectors(ctx, encoder, part, vectors)


# ---- collaborative, fused and FAMAE: recomputed from current data -----------------------------

def als_item_vectors(interactions, catalogue, cfg, seed: int):
    """Unit ALS item factors, float32 [n_items, rank], rows in `catalogue` order (cold rows filled).

    interactions: Spark frame with user_id, item_id (one row per event; events per (user, item) are
    the implicit confidence); catalogue: pandas frame with item_id, categories.
    Only the item factors are collected. ALS is seeded; in local mode reruns are bit-identical. On a
    cluster, shuffle fetch order can change float sums in the normal equations, so a rerun may
    differ in the last bits and then rewrites the vectors instead of committing nothing.
    """
    import numpy as np
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from genrec_core.embed.collab import als_blocks, fill_cold

    spark = interactions.sparkSession
    item_index = spark.createDataFrame([(i, k) for k, i in enumerate(catalogue.item_id)],
                                       "item_id string, item int")
    counts = interactions.groupBy("user_id", "item_id").agg(F.count("*").cast("float").alias("confidence"))
    ratings = counts.join(_dense_ids(counts, "user_id", "user"), "user_id").join(item_index, "item_id")
    blocks = als_blocks(counts.count())
    als = ALS(rank=cfg.rank, maxIter=cfg.max_iter, regParam=cfg.reg_param, alpha=cfg.alpha,
              implicitPrefs=True, seed=seed, userCol="user", itemCol="item", ratingCol="confidence",
              numUserBlocks=blocks, numItemBlocks=blocks)
    vectors = np.zeros((len(catalogue), cfg.rank), dtype=np.float32)
    warm = np.zeros(len(catalogue), dtype=bool)
    for row in als.fit(ratings).itemFactors.collect():
        vectors[row.id], warm[row.id] = row.features, True
    return fill_cold(vectors, warm, list(catalogue.categories))


def _dense_ids(df, column: str, out: str):
    """(column, out int): distinct values numbered 0.. in sorted order, the same on every run.

    Unlike StringIndexer, which collects every label to the driver, this stays distributed."""
    ordered = df.select(column).distinct().orderBy(column)
    pairs = ordered.rdd.zipWithIndex().map(lambda r: (r[0][0], int(r[1])))
    return df.sparkSession.createDataFrame(pairs, f"{column} string, {out} int")


def _als(ctx: RunContext, catalogue):
    clean = delta_io.read(ctx.spark, ctx.settings, S.INTERACTIONS_CLEAN)
    return als_item_vectors(clean, catalogue, ctx.config.embed.als, ctx.config.seed)


def embed_fused(ctx: RunContext, after_shard=None) -> dict:
    """Brings the text vectors up to date (incrementally), then fuses them with fresh ALS vectors."""
    from genrec_core.embed.fused import fuse

    text = embed_text(ctx, after_shard)
    catalogue = _catalogue(ctx)
    fused = fuse(_read_vectors(ctx, text["encoder"], catalogue), _als(ctx, catalogue),
                 ctx.config.embed.fused_weights)
    result = _write_all(ctx, encoder_for(ctx.config), catalogue, fused)
    return {**result, "text_embedded": text["embedded"]}


def _famae(ctx: RunContext, catalogue):
    import numpy as np
    from tqdm.auto import tqdm

    from genrec_core.device import resolve_device
    from genrec_core.embed.famae import item_fields, item_vectors, train_famae

    cfg = ctx.config.embed.famae
    histories = _train_histories(ctx, catalogue)
    fields = item_fields(list(catalogue.brand), list(catalogue.categories))
    device = resolve_device(cfg.device)
    with tqdm(total=cfg.steps, desc=f"famae ({device})", unit="step") as bar:
        result = train_famae(fields, histories, cfg, ctx.config.seed, device, bar.update)
    warm = np.zeros(len(catalogue), dtype=bool)
    for h in histories:
        warm[h] = True
    return item_vectors(result.model, warm, list(catalogue.categories))


def _train_histories(ctx: RunContext, catalogue) -> list:
    """Item rows (catalogue order) of each user's 'train' sequence, users sorted by user_id.

    Collected to the driver: users × sequences.max_len ids, fine at this scale (10⁵–10⁶ users).
    Beyond that FAMAE would train on a sample of users or stream the table's parquet files."""
    import numpy as np
    from pyspark.sql import functions as F

    seqs = (delta_io.read(ctx.spark, ctx.settings, S.USER_SEQUENCES).where(F.col("split") == "train")
            .select("user_id", "item_ids").orderBy("user_id").toPandas())
    row = {item: k for k, item in enumerate(catalogue.item_id)}
    return [np.array([row[i] for i in items if i in row], dtype=np.int64) for items in seqs.item_ids]


# ---- table I/O ----------------------------------------------------------------------------------

def _items(ctx: RunContext):
    return delta_io.read(ctx.spark, ctx.settings, S.ITEMS).select(
        "item_id", "title", "brand", "categories", "content_hash")


def _catalogue(ctx: RunContext):
    """The catalogue on the driver, sorted by item_id: the row order of every vector matrix."""
    return _items(ctx).select("item_id", "brand", "categories", "content_hash").orderBy("item_id").toPandas()


def _read_vectors(ctx: RunContext, encoder: str, catalogue):
    """float32 [n_items, dim] of `encoder`, rows in catalogue order; every item must have one."""
    import numpy as np
    from pyspark.sql import functions as F

    emb = (delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
           .select("item_id", "vector").toPandas())
    aligned = catalogue[["item_id"]].merge(emb, on="item_id", how="left")
    if aligned.vector.isna().any():
        raise RuntimeError(f"{int(aligned.vector.isna().sum())} catalogue items have no '{encoder}' vector")
    return np.stack(aligned.vector.to_numpy()).astype(np.float32)


def _write_all(ctx: RunContext, encoder: str, catalogue, vectors) -> dict:
    version = _merge_vectors(ctx, encoder, catalogue, vectors)
    return {"encoder": encoder, "embedded": int(len(catalogue)), "versions": {"item_embeddings": version}}


def _merge_vectors(ctx: RunContext, encoder: str, items, vectors) -> int:
    """MERGE one row per item of `items` (item_id, content_hash) into item_embeddings."""
    import pandas as pd

    out = pd.DataFrame({"item_id": items.item_id.to_numpy(), "encoder": encoder,
                        "content_hash": items.content_hash.to_numpy(), "dim": int(vectors.shape[1]),
                        "vector": list(vectors.astype("float32"))})
    new = ctx.spark.createDataFrame(out, schema=struct_type(S.ITEM_EMBEDDINGS))
    return delta_io.merge_upsert(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS, new, ("item_id", "encoder"),
                                 delete_missing=False)


def _latest_version(ctx: RunContext) -> Optional[int]:
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS):
        return None
    return delta_io.latest_version(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS)


def _drop_stale(ctx: RunContext) -> Optional[int]:
    """Deletes the vectors (of every encoder) of items that left the catalogue, so the table mirrors
    `items`. Returns the new version, or None when nothing was stale."""
    from delta.tables import DeltaTable

    spark, settings = ctx.spark, ctx.settings
    if not delta_io.table_exists(spark, settings, S.ITEM_EMBEDDINGS):
        return None
    stale = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).join(_items(ctx).select("item_id"), "item_id",
                                                                     "left_anti")
    if not stale.limit(1).count():
        return None
    DeltaTable.forPath(spark, str(settings.table_path(S.ITEM_EMBEDDINGS.name))).alias("t").merge(
        stale.select("item_id", "encoder").alias("s"),
        "t.item_id = s.item_id AND t.encoder = s.encoder").whenMatchedDelete().execute()
    return delta_io.latest_version(spark, settings, S.ITEM_EMBEDDINGS)

