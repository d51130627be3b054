"""Distributed SID assignment (Spark executors) against the single-process path: identical codes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.25 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors(spark):
    x = clustered(700, 16, 3)
    ids = np.asarray([f"item-{i:05d}" for i in np.random.default_rng(1).permutation(len(x))])
    # Several partitions, so groups really are spread over tasks.
    df = spark.createDataFrame([(i, v.tolist()) for i, v in zip(ids.tolist(), x)],
                               "item_id string, vector array<float>").repartition(4)
    return ids, x, df


def local_codes(tok, x, ids, strategy, cfg):
    from genrec_core.quantize.collisions import resolve

    res = resolve(strategy, tok, tok.latent(x), tok.encode(x), ids, cfg)
    return dict(zip(ids.tolist(), map(tuple, res.codes.tolist()))), sorted(ids[res.unplaced].tolist())


@pytest.mark.parametrize("quantizer", ["rq_kmeans", "gaoq"])
@pytest.mark.parametrize("strategy", ["dedup_digit", "cap_reassign", "rrs", "ecm"])
def test_spark_assignment_equals_single_process(spark, vectors, tiny_config, quantizer, strategy):
    from genrec_core.quantize import base
    from jobs.transforms import sid_assign

    ids, x, df = vectors
    # 3 levels of 8 codes over 700 items: many collisions, so every strategy has work to do.
    cfg = dataclasses.replace(tiny_config.tokenize, codebook_size=8, quantizer=quantizer, collisions=strategy,
                              candidates_per_level=3)
    tok = base.fit(quantizer, x, cfg, seed=7)
    assigned, unplaced = sid_assign.assign(spark, df, tok, strategy, cfg)
    got = {r.item_id: tuple(r.codes) for r in assigned.collect()}
    want, want_unplaced = local_codes(tok, x, ids, strategy, cfg)
    assert sorted(unplaced) == want_unplaced
    assert got == want
    if strategy != "dedup_digit":
        placed = [c for i, c in got.items() if i not in set(unplaced)]
        assert len(set(placed)) == len(placed)


@pytest.fixture()
def embeddings_table(spark, tmp_path, vectors):
    """An item_embeddings table in its own lakehouse: two encoders' rows mixed in several files."""
    from jobs.lake import delta_io
    from jobs.lake.settings import load_settings
    from schemas import tables as S

    ids, x, _ = vectors
    settings = dataclasses.replace(load_settings(), lakehouse=tmp_path / "lakehouse")
    rows = [(i, enc, "h", 16, (v if enc == "mine" else -v).tolist())
            for i, v in zip(ids.tolist(), x, strict=True) for enc in ("mine", "other")]
    df = spark.createDataFrame(rows, "item_id string, encoder string, content_hash string, dim int, "
                                     "vector array<float>").repartition(3)
    delta_io.overwrite(spark, settings, S.ITEM_EMBEDDINGS, df)
    return settings


def test_codes_read_from_the_table_files_equal_spark_decoded_codes(spark, vectors, embeddings_table, tiny_config):
    from pyspark.sql import functions as F

    from genrec_core.quantize import base
    from jobs.lake import delta_io
    from jobs.transforms import sid_assign
    from schemas import tables as S

    ids, x, _ = vectors
    cfg = dataclasses.replace(tiny_config.tokenize, codebook_size=8)
    tok = base.fit("rq_kmeans", x, cfg, seed=7)
    bc = sid_assign.broadcast_tokenizer(spark, tok)
    version, files = delta_io.snapshot_files(spark, embeddings_table, S.ITEM_EMBEDDINGS)
    assert len(files) == 3
    from_files = sid_assign.greedy_codes_from_files(spark, files, "mine", bc, tok.dim)
    table = delta_io.read(spark, embeddings_table, S.ITEM_EMBEDDINGS).where(F.col("encoder") == "mine")
    decoded = sid_assign.greedy_codes(table, bc, tok.dim)
    got = {r.item_id: tuple(r.semantic) for r in from_files.collect()}
    assert got == {r.item_id: tuple(r.semantic) for r in decoded.collect()}
    assert got == dict(zip(ids.tolist(), map(tuple, tok.encode(x).tolist()), strict=True))


def test_a_table_with_deletion_vectors_is_not_read_from_its_files(spark, embeddings_table):
    from jobs.lake import delta_io
    from schemas import tables as S

    path = str(embeddings_table.table_path(S.ITEM_EMBEDDINGS.name))
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE item_id = 'item-00001'")
    # The files still hold the deleted row; only Spark's reader knows to hide it.
    assert delta_io.snapshot_files(spark, embeddings_table, S.ITEM_EMBEDDINGS) is None


def test_rows_of_encoder_keeps_a_one_encoder_batch_whole_and_filters_a_mixed_one():
    import pyarrow as pa

    from jobs.transforms.sid_assign import rows_of_encoder

    def batch(encoders, dictionary=None):
        column = pa.array(encoders).dictionary_encode()
        if dictionary is not None:  # a row group's dictionary may hold values this slice does not use
            column = pa.DictionaryArray.from_arrays(
                pa.array([dictionary.index(e) if e is not None else None for e in encoders], pa.int32()),
                pa.array(dictionary))
        return pa.RecordBatch.from_arrays([pa.array([f"i{k}" for k in range(len(encoders))]), column],
                                          names=["item_id", "encoder"])

    whole = batch(["mine"] * 4, dictionary=["other", "mine"])
    assert rows_of_encoder(whole, "mine") is whole
    mixed = rows_of_encoder(batch(["mine", "other", None, "mine"], dictionary=["other", "mine"]), "mine")
    assert mixed.column("item_id").to_pylist() == ["i0", "i3"]
    plain = pa.RecordBatch.from_arrays([pa.array(["a", "b"]), pa.array(["other", "mine"])], names=["item_id", "encoder"])
    assert rows_of_encoder(plain, "mine").column("item_id").to_pylist() == ["b"]
    assert rows_of_encoder(batch(["other"] * 3), "mine").num_rows == 0


def test_pack_units_keeps_every_row_group_once_in_order_and_balances_the_cores():
    from jobs.transforms.sid_assign import pack_units

    small = [(f"f{i}", 0, 1_000) for i in range(300)]  # many small shards, as the embed stage appends
    big = [(f"g{i}", g, 80_000) for i in range(40) for g in range(3)]  # 9.6M rows in 120 row groups
    for units in (small, big, big[:1], small[:1]):
        packs = pack_units(units, parallelism=2)
        assert [u for pack in packs for u in pack] == [(uri, g) for uri, g, _ in units]
        assert all(packs)
    assert len(pack_units(small, 2)) == 6  # 50k-row floor: 300k rows in 6 tasks, not 300
    assert len(pack_units(big, 2)) == 8  # 4 tasks a core: 1.2M rows each, not 120 tasks
