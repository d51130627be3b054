"""The item side's cost from 10^5 to 10^7 items, on local[2] unless GENREC_SPARK_MASTER says otherwise.

1. Embed stage against the bare encoder: the stage's items/s (Spark tasks, shards, Delta appends)
   over `TextEncoder.encode` items/s in this process, on the same synthetic catalogue texts.
2. Item path without embedding, per size: synthetic 384-d vectors written straight into
   `item_embeddings`, then the tokenize (fit on a 2*10^5 sample), gate and publish stages, timed;
   Spark assignment items/s per core against raw FAISS single-process items/s per core on the same
   codebooks and vectors (`assign_ratio_to_faiss`: one process with as many OpenMP threads as Spark
   has cores), against FAISS on one thread (which assumes perfect scaling over the cores), and
   against one thread that also reads the vectors from the table's files (no Spark);
   the peak RSS of the driver (Python) and of the local JVM.
3. A fitted scaling exponent and an extrapolation to 2.5*10^8 items.

Every size runs in its own process, so each peak RSS is that size's. Inputs are generated once per
size under .cache/bench/items/ and kept; the published tables are removed before each run.

    python benchmarks/items_scale.py [--sizes 1e5 1e6 1e7] [--embed-items 100000] [--fit-sample 200000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".cache" / "bench" / "items"
DIM, CENTERS = 384, 512
TARGET_ITEMS = 2.5e8


# ---- peak memory of this process and of the JVM it starts -------------------------------------

class PeakRss:
    """Samples the RSS of this process and of its children (the local Spark JVM) every 0.2 s."""

    def __init__(self):
        import psutil

        self.me, self.peak_self, self.peak_children, self._stop = psutil.Process(), 0, 0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import psutil

        while not self._stop:
            try:
                self.peak_self = max(self.peak_self, self.me.memory_info().rss)
                kids = sum(c.memory_info().rss for c in self.me.children(recursive=True))
                self.peak_children = max(self.peak_children, kids)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> tuple[float, float]:
        self._stop = True
        self.thread.join()
        return self.peak_self / 2**30, self.peak_children / 2**30


# ---- inputs -------------------------------------------------------------------------------------

def _vectors_udf(seed: int):
    """Clustered unit vectors, a pure function of the item number: a centre by hash, plus noise."""
    import pyarrow as pa

    centers = np.random.default_rng(seed).normal(size=(CENTERS, DIM)).astype(np.float32)

    def make(batches):
        for batch in batches:
            ids = batch.column("id").to_numpy()
            x = np.empty((len(ids), DIM), dtype=np.float32)
            for start in range(0, len(ids), 65536):
                part = ids[start:start + 65536]
                rng = np.random.default_rng([seed, int(part[0])])
                x[start:start + len(part)] = centers[(part * 2654435761) % CENTERS] + 0.6 * rng.normal(
                    size=(len(part), DIM)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            offsets = pa.array(np.arange(0, (len(ids) + 1) * DIM, DIM, dtype=np.int32))
            yield pa.RecordBatch.from_arrays([pa.array(ids), pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))],
                                             names=["id", "vector"])

    return make


def write_inputs(ctx, n: int, encoder: str, seed: int = 0) -> float:
    """items, item_embeddings and an empty interactions_clean for n items; returns seconds."""
    from pyspark.sql import functions as F

    from jobs.lake import delta_io
    from schemas import tables as S
    from schemas.spark import struct_type

    spark, t = ctx.spark, time.perf_counter()
    parts = max(2, n // 250_000)
    ids = spark.range(0, n, 1, parts)
    item_id = F.format_string("I%010d", "id")
    top = F.concat(F.lit("Top"), (F.col("id") % 12).cast("string"))
    items = ids.select(item_id.alias("item_id"), F.concat(F.lit("Item "), F.col("id").cast("string")).alias("title"),
                       F.concat(F.lit("Brand"), (F.col("id") % 997).cast("string")).alias("brand"),
                       F.concat(top, F.lit(" > Leaf"), (F.col("id") % 89).cast("string")).alias("categories"),
                       F.lit(9.99).alias("price"), F.lit(None).cast("string").alias("description"),
                       F.lit(None).cast("string").alias("attributes"),
                       F.sha2(item_id, 256).alias("content_hash"))
    delta_io.overwrite(spark, ctx.settings, S.ITEMS, items)
    vectors = ids.mapInArrow(_vectors_udf(seed), "id long, vector array<float>")
    emb = vectors.select(item_id.alias("item_id"), F.lit(encoder).alias("encoder"),
                         F.sha2(item_id, 256).alias("content_hash"), F.lit(DIM).alias("dim"), "vector")
    delta_io.overwrite(spark, ctx.settings, S.ITEM_EMBEDDINGS, emb)
    delta_io.overwrite(spark, ctx.settings, S.INTERACTIONS_CLEAN,
                       spark.createDataFrame([], struct_type(S.INTERACTIONS_CLEAN)))
    return time.perf_counter() - t


# ---- one size, in its own process ---------------------------------------------------------------

def raw_faiss_items_per_s(x: np.ndarray, codebooks, threads: int = 1) -> float:
    """Items/s of bare FAISS residual search in this process on `threads` OpenMP threads (best of 3)."""
    import faiss

    from benchmarks.rq_encode import best_of, raw_faiss_encode

    faiss.omp_set_num_threads(threads)
    try:
        return len(x) / best_of(lambda: raw_faiss_encode(x, codebooks))
    finally:
        faiss.omp_set_num_threads(1)


def read_and_faiss_per_core(files, encoder: str, codebooks, dim: int, limit: int = 200_000) -> float:
    """Items/s of one thread that reads the table's parquet files as the tasks do (pyarrow, in slices)
    and encodes with bare FAISS: assignment with no Spark in it, so the ratio to it is Spark's share."""
    import faiss

    from benchmarks.rq_encode import raw_faiss_encode
    from jobs.transforms.sid_assign import encoder_vectors, open_parquet

    faiss.omp_set_num_threads(1)
    done, t = 0, time.perf_counter()
    for uri in files:
        for _, x in encoder_vectors(open_parquet(uri), encoder, dim):
            raw_faiss_encode(x, codebooks)
            done += len(x)
            if done >= limit:
                return done / (time.perf_counter() - t)
    return done / (time.perf_counter() - t)


def one_size(n: int, fit_sample: int) -> dict:
    rss = PeakRss()
    home = CACHE / f"n{n}"
    os.environ["GENREC_HOME"] = str(home)
    os.environ.setdefault("GENREC_SPARK_MASTER", "local[2]")
    from genrec_core.config import load_config
    from genrec_core.quantize import base
    from jobs.lake import delta_io
    from jobs.lake.settings import load_settings
    from jobs.stages import pipeline
    from jobs.stages.context import RunContext
    from jobs.stages.embed import encoder_for
    from jobs.stages.tokenize import catalogue_vectors
    from jobs.stages.tokenize import fit_sample as draw_sample
    from jobs.transforms import sid_assign
    from schemas import tables as S

    # The vectors measure cost, not quality: their collision rate is not what the gate is for.
    config = load_config("demo", overrides=(f"tokenize.fit_sample={fit_sample}", "tokenize.mode=refit",
                                            "gate.max_collision_rate=1.0"))
    settings = load_settings()
    for name in ("item_sid", "item_sid_staged", "sid_map_versions", "_staging"):
        shutil.rmtree(settings.lakehouse / name, ignore_errors=True)
    shutil.rmtree(home / "mlruns", ignore_errors=True)
    from datetime import datetime, timezone

    ctx = RunContext(settings=settings, config=config, logical_time=datetime(2026, 12, 1, tzinfo=timezone.utc))
    spark, encoder = ctx.spark, encoder_for(config)
    done = (home / "inputs.json")
    if done.is_file() and json.loads(done.read_text()).get("n") == n:
        setup_s = json.loads(done.read_text())["seconds"]
    else:
        setup_s = write_inputs(ctx, n, encoder)
        done.write_text(json.dumps({"n": n, "seconds": setup_s}))
    assert delta_io.read(spark, settings, S.ITEMS).count() == n

    stages = {}
    for stage in ("tokenize", "gate", "publish"):
        stages[stage] = pipeline.run_stage(ctx, stage)["seconds"]

    # Assignment alone, side by side: the same codebooks over the same vectors.
    vectors = catalogue_vectors(ctx, encoder)
    assert vectors.df.count() == n and vectors.files, "the bench's table must allow direct file reads"
    ids, sample = draw_sample(vectors.df, fit_sample, config.seed, settings.driver_rows)
    tok = base.fit(config.tokenize.quantizer, sample, config.tokenize, config.seed)
    bc = sid_assign.broadcast_tokenizer(spark, tok, False)
    cores = spark.sparkContext.defaultParallelism
    threads = sid_assign.task_cpus(spark)

    def timed(frame) -> float:
        t = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t

    spark_s = timed(sid_assign.codes_of(spark, vectors, bc, tok.dim, threads))  # the path tokenize takes
    spark_decoded_s = timed(sid_assign.greedy_codes(vectors.df, bc, tok.dim, threads))  # the reference path
    raw = raw_faiss_items_per_s(sample, tok.codebooks)
    # One process on all the cores Spark has: what the cores give FAISS when it has them to itself.
    raw_all = raw_faiss_items_per_s(sample, tok.codebooks, cores)
    read_raw = read_and_faiss_per_core(vectors.files, vectors.encoder, tok.codebooks, tok.dim)
    spark.stop()
    py_gb, jvm_gb = rss.stop()
    item_path = sum(stages.values())
    return {"items": n, "setup_seconds": round(setup_s, 1),
            "stage_seconds": {k: round(v, 1) for k, v in stages.items()}, "item_path_seconds": round(item_path, 1),
            "spark_assign_items_per_s": round(n / spark_s), "spark_cores": cores,
            "spark_assign_items_per_s_per_core": round(n / spark_s / cores),
            "raw_faiss_items_per_s_one_thread": round(raw), "raw_faiss_vectors": int(len(sample)),
            "raw_faiss_items_per_s_all_cores": round(raw_all),
            "raw_faiss_items_per_s_per_core": round(raw_all / cores),
            "assign_ratio_to_faiss": round(n / spark_s / raw_all, 3),
            "assign_ratio_to_faiss_one_thread": round(n / spark_s / cores / raw, 3),
            "read_and_faiss_items_per_s_one_thread": round(read_raw),
            "assign_ratio_to_read_and_faiss": round(n / spark_s / cores / read_raw, 3),
            "spark_decoded_assign_items_per_s_per_core": round(n / spark_decoded_s / cores),
            "spark_decoded_assign_ratio_to_faiss": round(n / spark_decoded_s / cores / raw, 3),
            "driver_rss_gb": round(py_gb, 2), "jvm_rss_gb": round(jvm_gb, 2)}


def embed_ratio(n: int) -> dict:
    """The embed stage against the bare encoder on the generator's catalogue texts (n items)."""
    rss = PeakRss()
    home = CACHE / f"embed{n}"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["GENREC_HOME"] = str(home)
    os.environ.setdefault("GENREC_SPARK_MASTER", "local[2]")
    from datetime import datetime, timezone

    from pyspark.sql import functions as F

    from genrec_core.config import load_config
    from genrec_core.data import synthetic as syn
    from genrec_core.embed.text import TextEncoder, default_model_path, item_text
    from jobs.lake import delta_io
    from jobs.lake.settings import load_settings
    from jobs.sources.generator import items_frame
    from jobs.stages import embed
    from jobs.stages.context import RunContext
    from schemas import tables as S

    config = load_config("demo")
    ctx = RunContext(settings=load_settings(), config=config, logical_time=datetime(2026, 12, 1, tzinfo=timezone.utc))
    spark = ctx.spark
    plan = syn.plan(syn.resize(config.data.synthetic, n_items=n), config.seed)
    items = items_frame(spark, plan).select("item_id", "title", "brand", "categories")
    items = items.select("*", F.lit(None).cast("double").alias("price"), F.lit(None).cast("string").alias("description"),
                         F.lit(None).cast("string").alias("attributes"),
                         F.sha2(F.concat_ws("|", "title", "brand", "categories"), 256).alias("content_hash"))
    delta_io.overwrite(spark, ctx.settings, S.ITEMS, items)
    pdf = delta_io.read(spark, ctx.settings, S.ITEMS).toPandas()  # the bench's own copy of the texts
    texts = [item_text(t, b, c) for t, b, c in zip(pdf.title, pdf.brand, pdf.categories)]
    model = TextEncoder(default_model_path(), device="cpu", max_length=config.embed.max_length)
    model.encode(texts[:256], batch_size=config.embed.batch_size)  # warm
    t = time.perf_counter()
    model.encode(texts, batch_size=config.embed.batch_size)
    bare_s = time.perf_counter() - t
    del model
    t = time.perf_counter()
    result = embed.main(ctx)
    stage_s = time.perf_counter() - t
    assert result["embedded"] == len(texts)
    spark.stop()
    py_gb, _ = rss.stop()
    return {"items": len(texts), "bare_encoder_items_per_s": round(len(texts) / bare_s, 1),
            "stage_items_per_s": round(len(texts) / stage_s, 1), "stage_seconds": round(stage_s, 1),
            "shards": result["shards"], "embed_ratio_to_encoder": round(bare_s / stage_s, 3),
            "driver_rss_gb": round(py_gb, 2)}


# ---- the whole benchmark ------------------------------------------------------------------------

def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def extrapolate(rows: list[dict], embed: dict | None) -> dict:
    big = rows[-1]
    assign_core_h = TARGET_ITEMS / big["spark_assign_items_per_s_per_core"] / 3600
    # MiniLM-L6: ~22.7M parameters, 2 FLOPs per parameter per token; catalogue texts ~32 tokens.
    flops_per_item = 2 * 22.7e6 * 32
    h200_bf16_dense = 989e12
    out = {"items": TARGET_ITEMS, "assign_core_hours": round(assign_core_h, 1),
           "embed_gpu_hours_estimate": round(TARGET_ITEMS * flops_per_item / (h200_bf16_dense * 0.3) / 3600, 2),
           "embed_gpu_basis": "estimate, not measured (no device lent): MiniLM-L6 44 MFLOP/token x 32 tokens "
                              "per item, H200 989 TFLOP/s bf16 dense at 30% utilisation"}
    if embed:
        out["embed_cpu_core_hours"] = round(TARGET_ITEMS / (embed["stage_items_per_s"] / 2) / 3600)
    return out


def main() -> None:
    from benchmarks import machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["1e5", "1e6", "1e7"])
    ap.add_argument("--embed-items", type=int, default=100_000, help="0 skips the embed comparison")
    ap.add_argument("--fit-sample", type=int, default=200_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "items_scale.json"))
    ap.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-embed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_size:
        print(json.dumps(one_size(args.one_size, args.fit_sample)))
        return
    if args.one_embed:
        print(json.dumps(embed_ratio(args.one_embed)))
        return

    load = os.getloadavg()[0]
    embed = _child(["--one-embed", str(args.embed_items)]) if args.embed_items else None
    if embed:
        print(f"embed: stage {embed['stage_items_per_s']} items/s, bare encoder {embed['bare_encoder_items_per_s']} "
              f"items/s, ratio {embed['embed_ratio_to_encoder']} (target >= 0.8)", flush=True)
    rows = []
    for size in sorted(int(float(s)) for s in args.sizes):
        rows.append(_child(["--one-size", str(size), "--fit-sample", str(args.fit_sample)]))
        r = rows[-1]
        print(f"{r['items']:>10,} items: item path {r['item_path_seconds']:>7.1f}s {r['stage_seconds']}  "
              f"assign {r['spark_assign_items_per_s_per_core']:,}/s/core vs FAISS {r['raw_faiss_items_per_s_per_core']:,}/s/core "
              f"= {r['assign_ratio_to_faiss']} (vs FAISS on one thread {r['raw_faiss_items_per_s_one_thread']:,}/s "
              f"= {r['assign_ratio_to_faiss_one_thread']}; vs read+FAISS {r['read_and_faiss_items_per_s_one_thread']:,}/s "
              f"= {r['assign_ratio_to_read_and_faiss']})  driver RSS {r['driver_rss_gb']} GB, JVM {r['jvm_rss_gb']} GB", flush=True)
    exponent = None
    if len(rows) > 1:
        exponent = float(np.polyfit(np.log([r["items"] for r in rows]),
                                    np.log([r["item_path_seconds"] for r in rows]), 1)[0])
    result = {"machine": machine.describe(load), "embed": embed,
              "embed_ratio_to_encoder": embed["embed_ratio_to_encoder"] if embed else None,
              "assign_ratio_to_faiss": rows[-1]["assign_ratio_to_faiss"],
              "scaling_exponent": round(exponent, 3) if exponent is not None else None,
              "driver_rss_gb": {str(r["items"]): r["driver_rss_gb"] for r in rows},
              "rows": rows, "extrapolation": extrapolate(rows, embed),
              "targets": {"embed_ratio_to_encoder": 0.8, "assign_ratio_to_faiss": 0.8, "scaling_exponent": 1.1}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"scaling exponent {result['scaling_exponent']} (target <= 1.1); extrapolation {result['extrapolation']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
