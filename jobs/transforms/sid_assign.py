"""Assigning SIDs on Spark executors, identical to the single-process path by construction.

1. Greedy codes: `mapInArrow` with the tokenizer's arrays broadcast once; the vectors come from
   pyarrow reads of the table's files inside the tasks where the table allows it, else from Spark.
2. Collisions: `dedup_digit` is a window (row_number over the semantic code, ordered by item_id). The
   other strategies run phase 1 per first-level code with `applyInPandas` (groups own disjoint SID
   spaces, so their order does not matter), then phase 2 on the driver for the few items phase 1
   could not place, against the SIDs already taken under the first codes they may move to.
`genrec_core.quantize.collisions.resolve` runs the same two phases in one process; a test holds the
two to equal codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

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
    values = vectors.flatten()  # a view when the list array is unsliced, as parquet reads and Spark hand it over
    if values.null_count:
        raise ValueError("vector components may not be null")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


@dataclass(frozen=True)
class Vectors:
    """The catalogue's vectors: `df` (item_id, vector) always works. `files`, when set, are parquet
    files whose rows with encoder == `encoder` are exactly df's rows, so tasks may read them directly."""
    df: Any
    files: Optional[tuple[str, ...]] = None
    encoder: Optional[str] = None


def _semantic_batch(item_ids, codes: np.ndarray, levels: int):
    import pyarrow as pa

    width = codes.shape[1] if codes.ndim == 2 else levels
    offsets = pa.array(np.arange(0, (len(codes) + 1) * width, width, dtype=np.int32))
    semantic = pa.ListArray.from_arrays(offsets, pa.array(codes.reshape(-1).astype(np.int32), type=pa.int32()))
    return pa.RecordBatch.from_arrays([item_ids, semantic], names=["item_id", "semantic"])


CODES_SCHEMA = "item_id string, semantic array<int>"


def greedy_codes(vectors_df, bc, dim: int, threads: int = 1):
    """vectors_df(item_id, vector) -> (item_id, semantic array<int>): the reference path, where Spark
    decodes the vectors and hands them over as Arrow batches (`mapInArrow`). FAISS gets `threads`
    OpenMP threads per task (the executor's spark.task.cpus), so tasks do not oversubscribe the cores."""

    def encode(batches):
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
        tok = _tokenizer(bc)
        for batch in batches:
            codes = tok.encode(arrow_matrix(batch.column("vector"), dim))
            yield _semantic_batch(batch.column("item_id"), np.asarray(codes), tok.levels)

    return vectors_df.select("item_id", "vector").mapInArrow(encode, CODES_SCHEMA)


# Rows a task decodes and encodes at a time. A row group is ~80k vectors (128 MB); decoding it in
# slices of this size keeps the buffers in cache and reused, which measured (500k rows of 384 floats,
# one core): parquet decode 247k -> 450k rows/s, FAISS 96k -> 105k rows/s.
FILE_BATCH_ROWS = 16_384


def open_parquet(uri: str):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = pafs.FileSystem.from_uri(uri)
    # The encoder column stays dictionary-encoded, as stored: one comparison per distinct value.
    return pq.ParquetFile(fs.open_input_file(path), read_dictionary=["encoder"])


def rows_of_encoder(batch, encoder: str):
    """The rows of `batch` whose `encoder` is `encoder`. The whole batch, uncopied, when all match (a
    table of one encoder, the common case); comparing strings per row and filtering copied every vector
    and cost half as much as FAISS's encoding."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column("encoder")
    if not isinstance(column, pa.DictionaryArray):
        column = column.dictionary_encode()
    matches = pc.equal(column.dictionary, encoder).fill_null(False)
    if column.null_count == 0 and pc.all(matches.take(pc.unique(column.indices))).as_py():
        return batch
    return batch.filter(matches.take(column.indices).fill_null(False))


def encoder_vectors(parquet, encoder: str, dim: int, row_groups=None):
    """(item_id Arrow array, float32 [n, dim]) per slice of FILE_BATCH_ROWS rows of `parquet` (an
    `open_parquet` file; all row groups, or `row_groups`), only rows of `encoder`; empty slices skipped."""
    slices = parquet.iter_batches(batch_size=FILE_BATCH_ROWS, row_groups=row_groups,
                                  columns=["item_id", "encoder", "vector"], use_threads=False)
    for part in slices:
        part = rows_of_encoder(part, encoder)
        if part.num_rows:
            yield part.column("item_id"), arrow_matrix(part.column("vector"), dim)


def pack_units(units, parallelism: int, min_rows: int = 50_000, max_rows: int = 2_000_000):
    """(file, row group, rows) units -> tasks, each a run of consecutive (file, row group) pairs of about
    total / (4 * parallelism) rows (within [min_rows, max_rows]): enough tasks to balance the cores,
    few enough that a task's fixed cost (~0.1 s in PySpark) stays small against its rows, whatever
    the table's file sizes (the embed stage appends many small shards)."""
    total = sum(rows for _, _, rows in units)
    target = min(max_rows, max(min_rows, total // max(1, 4 * parallelism)))
    packs: list[list[tuple[str, int]]] = []
    rows_in_pack = target
    for uri, group, rows in units:
        if rows_in_pack >= target:
            packs.append([])
            rows_in_pack = 0
        packs[-1].append((uri, group))
        rows_in_pack += rows
    return packs


def greedy_codes_from_files(spark, files, encoder: str, bc, dim: int, threads: int = 1):
    """The same codes as `greedy_codes`, for the rows of `files` whose encoder is `encoder`: a task takes
    a run of parquet row groups (`pack_units`) and reads them with pyarrow in slices of FILE_BATCH_ROWS. Spark's own
    hand-off of an array<float> row to Python costs about what FAISS's encoding of it does (measured:
    90k rows/s a core for 384 floats, against FAISS's 100k); pyarrow's sliced read, about a quarter."""
    sc = spark.sparkContext
    if not files:
        return spark.createDataFrame([], CODES_SCHEMA)

    def row_groups(uri):
        meta = open_parquet(uri).metadata
        return [(uri, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]

    # A row group is the unit a parquet reader decodes whole; tasks take a run of them (pack_units).
    units = sc.parallelize(list(files), len(files)).flatMap(row_groups).collect()
    if not units:
        return spark.createDataFrame([], CODES_SCHEMA)
    packs = pack_units(units, sc.defaultParallelism)

    def encode(batches):
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
        tok = _tokenizer(bc)
        opened, parquet = None, None
        for batch in batches:
            for uri, group in zip(batch.column("path").to_pylist(), batch.column("row_group").to_pylist(), strict=True):
                if uri != opened:
                    opened, parquet = uri, open_parquet(uri)
                for item_ids, x in encoder_vectors(parquet, encoder, dim, [group]):
                    yield _semantic_batch(item_ids, np.asarray(tok.encode(x)), tok.levels)

    # One pack a partition: parallelize slices a list of packs one per slice, and flatMap keeps that.
    work = spark.createDataFrame(sc.parallelize(packs, len(packs)).flatMap(lambda pack: pack),
                                 "path string, row_group int")
    return work.mapInArrow(encode, CODES_SCHEMA)


def codes_of(spark, vectors: Vectors, bc, dim: int, threads: int = 1):
    """(item_id, semantic) for every item of `vectors`, from its files when it has them."""
    if vectors.files is not None:
        return greedy_codes_from_files(spark, vectors.files, vectors.encoder, bc, dim, threads)
    return greedy_codes(vectors.df, bc, dim, threads)


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


def assign(spark, vectors, tok, strategy: str, cfg, faiss_gpu: bool = True):
    """All items -> (DataFrame(item_id, semantic, codes), unplaced item ids). vectors: a `Vectors`, or
    a (item_id, vector) frame."""
    if not isinstance(vectors, Vectors):
        vectors = Vectors(vectors)
    bc = broadcast_tokenizer(spark, tok, faiss_gpu)
    coded = codes_of(spark, vectors, bc, tok.dim, task_cpus(spark)).cache()
    if strategy == "dedup_digit":  # needs no vectors after the codes
        final, unplaced = dedup_digit(coded), []
    else:
        with_vectors = coded.join(vectors.df.select("item_id", "vector"), "item_id").cache()
        grouped = resolve_groups(with_vectors, bc, strategy, cfg, tok.dim).cache()
        final, unplaced = resolve_overflow(spark, grouped, with_vectors, tok, strategy, cfg, tok.dim)
    return coded.join(final, "item_id"), unplaced
