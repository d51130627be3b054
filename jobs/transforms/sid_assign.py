"""Assigning SIDs on Spark executors, identical to the single-process path by construction.

1. Greedy codes: `mapInPandas` over the vectors, with the tokenizer's arrays broadcast once.
2. Collisions: `dedup_digit` is a window (row_number over the semantic code, ordered by item_id). The
   other strategies run phase 1 per first-level code with `applyInPandas` (groups own disjoint SID
   spaces, so their order does not matter), then phase 2 on the driver for the few items phase 1
   could not place, against the SIDs already taken under the first codes they may move to.
`genrec_core.quantize.collisions.resolve` runs the same two phases in one process; a test holds the
two to equal codes.
"""
from __future__ import annotations

import numpy as np

_CACHE: dict = {}


def _tokenizer(bc):
    """One tokenizer per executor process and broadcast, not one per batch. Keyed by a digest shipped
    inside the broadcast: worker-side Broadcast objects have no id, and id() of one is reused."""
    from genrec_core.quantize import base
    from genrec_core.quantize.rq_kmeans import allow_faiss_gpu

    arrays, header, digest, faiss_gpu = bc.value
    allow_faiss_gpu(faiss_gpu)
    if digest not in _CACHE:
        _CACHE.clear()
        _CACHE[digest] = base.from_state(arrays, header)
    return _CACHE[digest]


def _matrix(vectors, dim: int) -> np.ndarray:
    if len(vectors) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack(vectors.to_numpy()).astype(np.float32)


def task_cpus(spark) -> int:
    return int(spark.conf.get("spark.task.cpus", "1"))


def broadcast_tokenizer(spark, tok, faiss_gpu: bool = True):
    from genrec_core.quantize import base

    arrays, header = tok.state()
    return spark.sparkContext.broadcast((arrays, header, base.digest(tok), faiss_gpu))


def arrow_matrix(vectors, dim: int) -> np.ndarray:
    """float32 [n, dim] from an Arrow list<float> column, without a Python object per row."""
    import pyarrow.compute as pc

    if len(vectors) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    lengths = pc.list_value_length(vectors)
    if vectors.null_count or pc.min(lengths).as_py() != dim or pc.max(lengths).as_py() != dim:
        raise ValueError(f"every vector must have {dim} components and none may be null; found lengths "
                         f"{pc.min(lengths).as_py()}..{pc.max(lengths).as_py()} and {vectors.null_count} nulls")
    return vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def greedy_codes(vectors_df, bc, dim: int, threads: int = 1):
    """vectors_df(item_id, vector) -> (item_id, vector, semantic array<int>).

    Arrow batches in and out (`mapInArrow`): vectors become one matrix per batch, codes one flat
    array, and the vector column passes through untouched. FAISS gets `threads` OpenMP threads per
    task (the executor's spark.task.cpus), so concurrent tasks do not oversubscribe the cores."""
    import pyarrow as pa

    def encode(batches):
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
        tok = _tokenizer(bc)
        for batch in batches:
            vectors = batch.column("vector")
            codes = tok.encode(arrow_matrix(vectors, dim)).astype(np.int32)
            width = codes.shape[1] if codes.ndim == 2 else tok.levels
            offsets = pa.array(np.arange(0, (len(codes) + 1) * width, width, dtype=np.int32))
            semantic = pa.ListArray.from_arrays(offsets, pa.array(codes.reshape(-1), type=pa.int32()))
            yield pa.RecordBatch.from_arrays([batch.column("item_id"), vectors, semantic],
                                             names=["item_id", "vector", "semantic"])

    return vectors_df.select("item_id", "vector").mapInArrow(
        encode, "item_id string, vector array<float>, semantic array<int>")


def dedup_digit(coded_df):
    """(item_id, semantic) -> (item_id, codes): the TIGER digit numbers items within a semantic code."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.row_number().over(Window.partitionBy("semantic").orderBy("item_id")) - 1
    return coded_df.select("item_id", F.concat("semantic", F.array(rank.cast("int"))).alias("codes"))


def resolve_groups(coded_df, bc, strategy: str, cfg, dim: int):
    """Phase 1 per first-level code -> (item_id, codes, placed)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from genrec_core.quantize.collisions import resolve_group

    def per_group(pdf):
        from threadpoolctl import threadpool_limits

        tok = _tokenizer(bc)
        pdf = pdf.sort_values("item_id", kind="stable").reset_index(drop=True)
        x = _matrix(pdf.vector, dim)
        codes = np.stack(pdf.semantic.to_numpy()).astype(np.int64)
        # Many small matrix products per group: BLAS threads only contend with the other tasks.
        with threadpool_limits(1):
            res = resolve_group(strategy, tok, tok.latent(x), codes, pdf.item_id.to_numpy(dtype=str), cfg)
        placed = np.ones(len(pdf), dtype=bool)
        placed[res.unplaced] = False
        return pd.DataFrame({"item_id": pdf.item_id, "codes": list(res.codes.astype(np.int32)),
                             "placed": placed})

    return (coded_df.withColumn("_g", F.col("semantic")[0])
            .groupBy("_g").applyInPandas(per_group, "item_id string, codes array<int>, placed boolean"))


def resolve_overflow(spark, grouped_df, coded_df, tok, strategy: str, cfg, dim: int):
    """Phase 2 on the driver. Returns (final codes df, unplaced item ids)."""
    from pyspark.sql import functions as F

    from genrec_core.quantize.collisions import reachable_first_codes
    from genrec_core.quantize.collisions import resolve_overflow as overflow

    left = (grouped_df.where(~F.col("placed")).join(coded_df.select("item_id", "vector", "semantic"), "item_id")
            .orderBy("item_id").toPandas())
    placed = grouped_df.where(F.col("placed")).select("item_id", "codes")
    if left.empty:
        return placed, []
    x = _matrix(left.vector, dim)
    z = tok.latent(x)
    semantic = np.stack(left.semantic.to_numpy()).astype(np.int64)
    reachable = reachable_first_codes(tok, z, semantic, cfg.candidates_per_level)
    taken_pdf = placed.where(F.col("codes")[0].isin(reachable)).select("codes").toPandas()
    taken = (np.stack(taken_pdf.codes.to_numpy()).astype(np.int64) if len(taken_pdf)
             else np.zeros((0, tok.levels), dtype=np.int64))
    res = overflow(strategy, tok, z, semantic, left.item_id.to_numpy(dtype=str), taken, cfg)
    moved = spark.createDataFrame(
        [(i, [int(c) for c in row]) for i, row in zip(left.item_id.tolist(), res.codes)],
        schema="item_id string, codes array<int>")
    unplaced = [left.item_id.iloc[i] for i in res.unplaced.tolist()]
    return placed.unionByName(moved), unplaced


def assign(spark, vectors_df, tok, strategy: str, cfg, faiss_gpu: bool = True):
    """All items -> (DataFrame(item_id, semantic, codes), unplaced item ids)."""
    bc = broadcast_tokenizer(spark, tok, faiss_gpu)
    coded = greedy_codes(vectors_df, bc, tok.dim, task_cpus(spark))
    if strategy == "dedup_digit":  # needs no vectors after the codes: keep them out of the cache
        coded = coded.select("item_id", "semantic").cache()
        final, unplaced = dedup_digit(coded), []
    else:
        coded = coded.cache()
        grouped = resolve_groups(coded, bc, strategy, cfg, tok.dim).cache()
        final, unplaced = resolve_overflow(spark, grouped, coded, tok, strategy, cfg, tok.dim)
    return coded.select("item_id", "semantic").join(final, "item_id"), unplaced
