"""The embed stage: item embeddings into `item_embeddings`, by the embedder named in embed.embedder.

Every embedder writes rows keyed (item_id, encoder), so the vectors of different embedders live side
by side and the tokenize stage picks its encoder by name (`encoder_for(config)`).

- text: a local sentence encoder over title, brand and categories, run inside Spark tasks
  (jobs/transforms/text_embedding.py); nothing catalogue-sized reaches the driver. Incremental by
  content_hash: only items whose (item_id, content_hash) has no row for this encoder are embedded.
  Resumable: the to-do list is planned once into shards of embed.shard_size consecutive item_ids
  (staging/embed_plan), and each shard is committed by its own Delta append, so a killed run loses
  at most the shard in flight and the rerun goes on with the same plan. After the last shard, rows
  superseded by new content are deleted in one commit.
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

import shutil
from collections.abc import Callable
from dataclasses import dataclass
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
    """Embeds the to-do list on the executors, a shard per Spark job and Delta append."""
    from tqdm.auto import tqdm

    from genrec_core.embed.text import default_model_path

    cfg = ctx.config.embed
    if cfg.shard_size < 1:
        raise ValueError(f"embed.shard_size must be >= 1, got {cfg.shard_size}")
    model_path = cfg.model_path or default_model_path()
    encoder = encoder_name(model_path)
    plan = shard_plan(ctx, encoder, _text_todo(ctx, encoder), cfg.shard_size)
    version = _latest_version(ctx)
    if plan.sizes:
        with tqdm(total=plan.items, desc=f"embed ({encoder}, on executors)", unit="item") as bar:
            for k, shard in enumerate(sorted(plan.sizes)):
                version = _embed_shard(ctx, model_path, encoder, plan.rows(ctx.spark, shard))
                bar.update(plan.sizes[shard])
                if after_shard:
                    after_shard(k, version)
    plan.discard()
    return {"encoder": encoder, "embedded": plan.items, "shards": len(plan.sizes),
            "model_path": model_path, "versions": {"item_embeddings": version}}


def _text_todo(ctx: RunContext, encoder: str):
    """Items without a row for (item_id, content_hash, encoder), as a Spark frame."""
    todo = _items(ctx)
    done = _done(ctx, encoder)
    return todo if done is None else todo.join(done, on=["item_id", "content_hash"], how="left_anti")


def _done(ctx: RunContext, encoder: str):
    from pyspark.sql import functions as F

    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS):
        return None
    return (delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS)
            .where(F.col("encoder") == encoder).select("item_id", "content_hash"))


@dataclass
class ShardPlan:
    """The to-do list, written once to staging in shards of consecutive item_ids.

    A killed run leaves the plan behind; the rerun keeps it when the plan's unfinished items are still
    exactly the to-do list, so it embeds the same batches, and writes the same bits, as a run that
    was never killed. Finished shards are not read again."""

    folder: Path
    sizes: dict  # unfinished shard -> items

    @property
    def items(self) -> int:
        return int(sum(self.sizes.values()))

    def rows(self, spark, shard: int):
        from pyspark.sql import functions as F

        return spark.read.parquet(str(self.folder)).where(F.col("shard") == shard).drop("shard")

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def shard_plan(ctx: RunContext, encoder: str, todo, shard_size: int) -> ShardPlan:
    from pyspark.sql import functions as F

    spark = ctx.spark
    folder = ctx.settings.staging / "embed_plan" / encoder
    keys = ["item_id", "content_hash"]
    if (folder / "_SUCCESS").is_file():
        left = spark.read.parquet(str(folder))
        done = _done(ctx, encoder)
        if done is not None:
            left = left.join(done, keys, "left_anti")
        same = (todo.select(keys).exceptAll(left.select(keys)).limit(1).count() == 0
                and left.select(keys).exceptAll(todo.select(keys)).limit(1).count() == 0)
        if same:
            return ShardPlan(folder, _shard_sizes(left))
        print("[genrec] embed: the to-do list changed since the unfinished run; planning again", flush=True)
    n = todo.count()
    if n == 0:
        return ShardPlan(folder, {})
    # A global rank by item_id without a single-partition sort: range partitions are ordered, so a
    # row's rank is the rows of the partitions before it plus its place inside its own.
    parts = max(1, min(n, max(spark.sparkContext.defaultParallelism, -(-n // 1_000_000))))
    ranged = (todo.repartitionByRange(parts, "item_id").sortWithinPartitions("item_id")
              .withColumn("_p", F.spark_partition_id())
              .withColumn("_i", F.monotonically_increasing_id().bitwiseAND((1 << 33) - 1)))
    raw = ctx.settings.staging / "embed_plan" / f"{encoder}.ranked"
    ranged.write.mode("overwrite").parquet(str(raw))
    ranked = spark.read.parquet(str(raw))
    counts = sorted((r["_p"], r["n"]) for r in ranked.groupBy("_p").agg(F.count("*").alias("n")).collect())
    offsets, total = [], 0
    for p, c in counts:
        offsets.append((p, total))
        total += c
    offset = spark.createDataFrame(offsets, "_p int, _off long")
    planned = (ranked.join(F.broadcast(offset), "_p")
               .withColumn("shard", ((F.col("_off") + F.col("_i")) / shard_size).cast("int"))
               .drop("_p", "_i", "_off"))
    planned.write.mode("overwrite").partitionBy("shard").parquet(str(folder))
    shutil.rmtree(raw, ignore_errors=True)
    return ShardPlan(folder, _shard_sizes(spark.read.parquet(str(folder))))


def _shard_sizes(plan_df) -> dict:
    from pyspark.sql import functions as F

    return {int(r["shard"]): int(r["n"]) for r in plan_df.groupBy("shard").agg(F.count("*").alias("n")).collect()}


def _embed_shard(ctx: RunContext, model_path: str, encoder: str, rows) -> int:
    """Embeds one shard over the executors' cores and commits it with one Delta append."""
    from pyspark.sql import functions as F

    from jobs.transforms.text_embedding import embed_items

    spark, cfg = ctx.spark, ctx.config.embed
    tasks = spark.sparkContext.defaultParallelism
    # Hash partitions and a sort make each task's rows, and so its batches, a function of the shard.
    rows = rows.repartition(tasks, "item_id").sortWithinPartitions("item_id")
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    vectors = embed_items(rows, model_path, cfg.device, cfg.max_length, cfg.batch_size, threads)
    out = vectors.select("item_id", F.lit(encoder).alias("encoder"), "content_hash",
                         F.size("vector").cast("int").alias("dim"), "vector")
    return delta_io.append(spark, ctx.settings, S.ITEM_EMBEDDINGS, out)


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
    from jobs.transforms import driver_rows

    # ALS, fused and FAMAE vectors are matrices on the driver: their catalogue is bounded like a fit sample.
    return driver_rows.collect(_items(ctx).select("item_id", "brand", "categories", "content_hash").orderBy("item_id"),
                               f"the catalogue for the {ctx.config.embed.embedder} embedder", ctx.settings.driver_rows,
                               "Use embed.embedder=text, which embeds on the executors.")


def _read_vectors(ctx: RunContext, encoder: str, catalogue):
    """float32 [n_items, dim] of `encoder`, rows in catalogue order; every item must have one."""
    import numpy as np
    from pyspark.sql import functions as F

    emb = (delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
           .select("item_id", "content_hash", "vector").toPandas())
    aligned = catalogue[["item_id", "content_hash"]].merge(emb, on=["item_id", "content_hash"], how="left")
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
    """Deletes the vectors (of every encoder) of items that left the catalogue or whose content
    changed since they were embedded, so every row matches `items`. Text shards are appended, so a
    changed item holds its old row until this runs. Returns the new version, or None when nothing
    was stale."""
    from delta.tables import DeltaTable

    spark, settings = ctx.spark, ctx.settings
    if not delta_io.table_exists(spark, settings, S.ITEM_EMBEDDINGS):
        return None
    current = _items(ctx).select("item_id", "content_hash")
    stale = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).join(current, ["item_id", "content_hash"], "left_anti")
    if not stale.limit(1).count():
        return None
    DeltaTable.forPath(spark, str(settings.table_path(S.ITEM_EMBEDDINGS.name))).alias("t").merge(
        stale.select("item_id", "encoder", "content_hash").alias("s"),
        "t.item_id = s.item_id AND t.encoder = s.encoder AND t.content_hash = s.content_hash",
    ).whenMatchedDelete().execute()
    return delta_io.latest_version(spark, settings, S.ITEM_EMBEDDINGS)
