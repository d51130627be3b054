"""The tokenize stage: the next SID map. With no published map, or when a refit is due, it fits the
configured quantizer on item embeddings, assigns every item on Spark, resolves collisions with the
configured strategy and measures SID quality. Otherwise it assigns only the items that need a SID
under the published tokenizer, so no existing item moves (tokenize.mode, docs/sid_lifecycle.md).

The fit runs on the driver over `tokenize.fit_sample` items (all by default). Assignment and
collision resolution run on executors (jobs/transforms/sid_assign.py). Writes the staged map (`item_sid_staged`)
and the tokenizer folder (codebooks.npz, tokenizer.json, metrics.json) named by the map version; the
publish stage registers them.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from genrec_core.config import LIFECYCLE_KEYS
from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io
from jobs.lake.tokenizer_files import (
    read_header,
    read_lifecycle,
    read_metrics,
    registered_tokenizer,
    write_tokenizer,
)
from jobs.stages.context import RunContext
from jobs.transforms import map_lifecycle as lifecycle
from jobs.transforms.sid_map_stats import (
    collision_counts,
    map_fingerprint,
    top_category,
)
from schemas import tables as S


class UnplacedItems(RuntimeError):
    """A unique-SID strategy could not give every item its own SID; nothing was staged."""


class StagedMapReplaced(RuntimeError):
    """The staged map is not the one this run tokenized: another run on the lakehouse staged its own."""


def check_staged(staged: str, expected: Optional[str]) -> None:
    if expected and staged != expected:
        raise StagedMapReplaced(
            f"the staged SID map is {staged}, not {expected} which this run tokenized: another run on this "
            f"lakehouse staged its own map since. Nothing was published; rerun from tokenize.")


def staged_map_version(ctx: RunContext) -> Optional[str]:
    """The map version in item_sid_staged now (None when nothing is staged)."""
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_SID_STAGED):
        return None
    row = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID_STAGED).select("map_version").first()
    return row[0] if row else None


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
    """A `sid_assign.Vectors` of every catalogue item's vector; fails clearly if any item lacks one."""
    from pyspark.sql import functions as F

    from jobs.transforms.sid_assign import Vectors

    spark, settings = ctx.spark, ctx.settings
    keys = ["item_id", "content_hash"]
    emb = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
    items = delta_io.read(spark, settings, S.ITEMS).select(*keys)
    missing = items.join(emb, keys, "left_anti").count()
    if missing:
        raise RuntimeError(f"{missing} catalogue items have no '{encoder}' embedding of their current content; "
                           "run the embed stage first")
    # Every item has a vector; with no more vectors than items, the sets are equal (one row per item
    # and encoder): the join, which would shuffle every vector, can be skipped, and the table's own
    # files hold exactly these rows, which assignment may then read without Spark decoding them.
    if emb.count() == items.count():
        snapshot = delta_io.snapshot_files(spark, settings, S.ITEM_EMBEDDINGS)
        return Vectors(emb.select("item_id", "vector"), snapshot[1] if snapshot else None, encoder)
    return Vectors(emb.join(items, keys).select("item_id", "vector"))


def fit_sample(vectors_df, size: int, seed: int, bound: int):
    """Deterministic sample (by a seeded hash of item_id) collected to the driver, ordered by item_id.
    size 0 means every item, which the driver bound refuses above GENREC_DRIVER_ROWS items."""
    from pyspark.sql import functions as F

    from jobs.transforms import driver_rows

    df = vectors_df
    if size:
        df = df.orderBy(F.xxhash64("item_id", F.lit(seed)), "item_id").limit(size)
    pdf = driver_rows.collect(df.orderBy("item_id"), f"the tokenizer's fit sample (tokenize.fit_sample={size})",
                              bound, "Set tokenize.fit_sample to a sample size (e.g. 200000).")
    return pdf.item_id.to_numpy(dtype=str), np.stack(pdf.vector.to_numpy()).astype(np.float32)


def top_categories(ctx: RunContext, item_ids: np.ndarray) -> np.ndarray:
    """Top-level category of each item in `item_ids` ('(none)' when missing), for purity. Only the
    given items' categories are collected: they are joined to the catalogue on Spark."""
    from jobs.transforms import driver_rows

    ids = ctx.spark.createDataFrame([(i,) for i in item_ids.tolist()], "item_id string")
    found = ids.join(delta_io.read(ctx.spark, ctx.settings, S.ITEMS).select("item_id", top_category().alias("c")),
                     "item_id")
    pdf = driver_rows.collect(found, "categories of the fit sample", ctx.settings.driver_rows,
                              "Lower tokenize.fit_sample.")
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


@dataclass
class Published:
    """The map now in item_sid: its manifest row, tokenizer and rows (a Spark frame)."""

    map_version: str
    tokenizer_version: str
    header: dict
    metrics: dict
    rows: object
    tokenizer: object


@dataclass
class NextMap:
    rows: object  # Spark (item_id, codes, sid, content_hash, status, retired_at, origin)
    tokenizer: object
    metrics: dict
    code_level_sizes: list[int]


def published_map(ctx: RunContext) -> Optional[Published]:
    """The published map with its tokenizer (downloaded once from MLflow), or None before the first publish."""
    spark, settings = ctx.spark, ctx.settings
    if not delta_io.table_exists(spark, settings, S.ITEM_SID):
        return None
    rows = delta_io.read(spark, settings, S.ITEM_SID)
    missing = sorted(set(S.ITEM_SID.column_names) - set(rows.columns))
    if missing:
        raise RuntimeError(f"item_sid at {settings.table_path(S.ITEM_SID.name)} predates the SID lifecycle (no "
                           f"{', '.join(missing)}); publish into a fresh home, or remove lakehouse/item_sid and "
                           "lakehouse/sid_map_versions to start the map again")
    first = rows.select("map_version").first()
    if first is None:
        return None
    manifest = delta_io.read(spark, settings, S.SID_MAP_VERSIONS)
    row = manifest.where(manifest.map_version == first[0]).first()
    if row is None:
        raise RuntimeError(f"item_sid holds map {first[0]}, which sid_map_versions does not list; republish it")
    return Published(first[0], str(row["tokenizer_version"]), json.loads(row["config"]), json.loads(row["metrics"]),
                     rows, registered_tokenizer(settings, row["tokenizer_version"]))


def incompatibility(header: dict, config, encoder: str) -> Optional[str]:
    """Why a map made under `header` cannot be extended under this config (None when it can)."""
    if header.get("encoder") != encoder:
        return f"encoder {header.get('encoder')!r} -> {encoder!r}"
    if header.get("seed") not in (None, config.seed):
        return f"seed {header.get('seed')} -> {config.seed}"
    if header.get("embed_config") not in (None, config.to_dict()["embed"]):
        return "the embed section changed"
    old, new = header.get("config") or {}, config.to_dict()["tokenize"]
    changed = sorted(k for k in set(old) & set(new) if k not in LIFECYCLE_KEYS and old[k] != new[k])
    return f"tokenize.{', tokenize.'.join(changed)} changed" if changed else None


def cold_fit(ctx: RunContext, vectors, sample_ids, x, catalogue) -> NextMap:
    """The first map (or a refit with nothing to keep): fit, assign every item on Spark, resolve collisions."""
    from pyspark.sql import functions as F

    from genrec_core.quantize import base
    from genrec_core.quantize.sid_lifecycle import dedup_codebook_size
    from jobs.transforms import sid_assign

    spark, cfg, seed = ctx.spark, ctx.config.tokenize, ctx.config.seed
    tok = base.fit(cfg.quantizer, x, cfg, seed, progress=fit_progress(cfg.quantizer))
    assigned, unplaced = sid_assign.assign(spark, vectors, tok, cfg.collisions, cfg, ctx.settings.faiss_gpu)
    _refuse_unplaced(unplaced, cfg.collisions)
    assigned = assigned.withColumn("sid", F.concat_ws("-", "codes")).cache()
    metrics = _fit_metrics(ctx, tok, sample_ids, x, assigned)
    level_sizes = list(tok.level_sizes)
    if cfg.collisions == "dedup_digit":
        metrics["dedup_codebook_size"] = dedup_codebook_size(metrics["max_items_per_sid_all"], cfg.dedup_headroom)
        level_sizes.append(metrics["dedup_codebook_size"])
    rows = (assigned.join(catalogue, "item_id")
            .select("item_id", "codes", "sid", "content_hash", F.lit("active").alias("status"),
                    F.lit(None).cast("timestamp").alias("retired_at"), F.lit("fit").alias("origin")))
    return NextMap(rows, tok, metrics, level_sizes)


def _refuse_unplaced(unplaced, strategy: str) -> None:
    if len(unplaced):
        raise UnplacedItems(
            f"collision strategy {strategy!r} could not give {len(unplaced)} item(s) a unique SID "
            f"(first: {list(unplaced)[:10]}); raise tokenize.candidates_per_level or tokenize.levels. "
            "Nothing was staged.")


def _fit_metrics(ctx: RunContext, tok, sample_ids, x, assigned) -> dict:
    cfg = ctx.config.tokenize
    return {**quality(tok, sample_ids, x, top_categories(ctx, sample_ids), ctx.config.seed),
            **collision_counts(assigned), "quantizer": cfg.quantizer, "collisions": cfg.collisions,
            "fit_items": int(len(sample_ids))}


@dataclass
class AssignAttempt:
    evidence: object
    build: Callable[[], NextMap]


def attempt_assign(ctx: RunContext, pub: Published, classified, vectors, active: int) -> AssignAttempt:
    """Places the items that need a SID under the published tokenizer, against the SIDs taken; nothing
    is written. The figures feed the auto decision."""
    from pyspark.sql import functions as F

    from genrec_core.quantize.metrics import reconstruction_error
    from genrec_core.quantize.sid_lifecycle import (
        Evidence,
        expected_collision_rate,
        new_item_collision_rate,
        place_new_items,
    )

    spark, cfg, tok = ctx.spark, ctx.config.tokenize, pub.tokenizer
    ids, x = lifecycle.collect_to_place(classified, vectors.df, bound=ctx.settings.driver_rows)
    semantic = tok.encode(x) if len(x) else np.zeros((0, tok.levels), dtype=np.int64)
    taken_df = lifecycle.taken_codes(classified, ctx.logical_time, cfg.sid_reserve_days)
    taken = lifecycle.taken_near(spark, taken_df, semantic, cfg.collisions, tok, x, cfg.candidates_per_level)
    sizes = list(pub.header["code_level_sizes"])
    placement = place_new_items(cfg.collisions, tok, x, ids, taken, cfg, dedup_size=sizes[-1], semantic=semantic)
    kept_assign = classified.where(F.col("kind").isin(*lifecycle.HOLDS_OLD_SID) & (F.col("old_origin") == "assign")).count()
    evidence = Evidence(
        has_map=True, overflow=int(len(placement.overflow)), n_new=int(len(ids)),
        assigned_share=(kept_assign + len(ids)) / active if active else 0.0,
        new_collision_rate=new_item_collision_rate(semantic, ids, taken),
        expected_collision_rate=expected_collision_rate(lifecycle.semantic_counts(pub.rows, tok.levels)),
        new_recon_error=reconstruction_error(x, tok.decode(semantic)) if len(x) else 0.0,
        fit_recon_error=float(pub.metrics.get("reconstruction_rel_error", 0.0)))

    def build() -> NextMap:
        kept = classified.where(F.col("kind").isin(*lifecycle.HOLDS_OLD_SID)).select(
            "item_id", F.col("old_codes").alias("codes"), F.col("old_origin").alias("origin"))
        placed = lifecycle.codes_frame(spark, ids, placement.codes)
        rows = lifecycle.next_map(classified, kept, placed, ctx.logical_time, "assign")
        metrics = {**pub.metrics, "n_items": active,
                   "assign": {"placed": int(len(ids)), "new_collision_rate": evidence.new_collision_rate,
                              "expected_collision_rate": evidence.expected_collision_rate,
                              "new_reconstruction_rel_error": evidence.new_recon_error}}
        return NextMap(rows, tok, metrics, sizes)

    return AssignAttempt(evidence, build)


def refit(ctx: RunContext, pub: Published, classified, vectors, sample_ids, x) -> NextMap:
    """A new tokenizer, warm-started from and aligned to the published one (unless configured off).
    Old items whose semantic code is unchanged keep their whole SID; the rest are placed against it."""
    from pyspark.sql import functions as F

    from genrec_core.quantize import base
    from genrec_core.quantize.sid_lifecycle import (
        align_tokenizer,
        dedup_codebook_size,
        place_new_items,
    )
    from jobs.transforms import driver_rows
    from jobs.transforms import sid_assign

    spark, cfg, seed = ctx.spark, ctx.config.tokenize, ctx.config.seed
    warm = pub.tokenizer if cfg.warm_start else None
    tok = base.fit(cfg.quantizer, x, cfg, seed, progress=fit_progress(cfg.quantizer), warm_start=warm)
    if cfg.align:
        old = (classified.where(F.col("kind").isin(*lifecycle.HOLDS_OLD_SID)).select("item_id", "old_codes")
               .join(spark.createDataFrame([(i,) for i in sample_ids.tolist()], "item_id string"), "item_id")
               .toPandas())  # bounded: old items inside the fit sample
        if len(old):
            index = {item: row for row, item in enumerate(sample_ids.tolist())}
            rows = np.asarray([index[i] for i in old.item_id], dtype=np.int64)
            tok, _ = align_tokenizer(tok, x[rows], np.stack(old.old_codes.to_numpy()).astype(np.int64))
    levels = tok.levels
    bc = sid_assign.broadcast_tokenizer(spark, tok, ctx.settings.faiss_gpu)
    coded = sid_assign.codes_of(spark, vectors, bc, tok.dim, sid_assign.task_cpus(spark)).cache()
    old = classified.where(F.col("kind").isin(*lifecycle.HOLDS_OLD_SID)).select("item_id", "old_codes")
    kept = (coded.join(old, "item_id").where(F.slice("old_codes", 1, levels) == F.col("semantic"))
            .select("item_id", F.col("old_codes").alias("codes"), F.lit("fit").alias("origin")))
    left = driver_rows.collect(
        coded.join(kept, "item_id", "left_anti").join(vectors.df, "item_id").orderBy("item_id"),
        "items whose semantic code moved in the refit",
        ctx.settings.driver_rows, "Keep tokenize.align=true, which keeps most items' codes, or raise "
        "GENREC_DRIVER_ROWS on a driver with the memory for them.")
    ids = left.item_id.to_numpy(dtype=str)
    vec = (np.stack(left.vector.to_numpy()).astype(np.float32) if len(left)
           else np.zeros((0, tok.dim), dtype=np.float32))
    semantic = (np.stack(left.semantic.to_numpy()).astype(np.int64) if len(left)
                else np.zeros((0, levels), dtype=np.int64))
    taken_df = lifecycle.taken_codes(classified, ctx.logical_time, cfg.sid_reserve_days, keep_df=kept)
    taken = lifecycle.taken_near(spark, taken_df, semantic, cfg.collisions, tok, vec, cfg.candidates_per_level)
    placement = place_new_items(cfg.collisions, tok, vec, ids, taken, cfg, semantic=semantic)
    if cfg.collisions != "dedup_digit":  # a digit cannot overflow here: the refit sizes its codebook after
        _refuse_unplaced(ids[placement.overflow], cfg.collisions)
    placed = lifecycle.codes_frame(spark, ids, placement.codes)
    rows = lifecycle.next_map(classified, kept, placed, ctx.logical_time, "fit")
    assigned = (rows.where(F.col("status") == "active").select("item_id", "codes", "sid")
                .join(coded.select("item_id", "semantic"), "item_id")).cache()
    metrics = _fit_metrics(ctx, tok, sample_ids, x, assigned)
    sizes = list(tok.level_sizes)
    if cfg.collisions == "dedup_digit":
        top_digit = rows.agg(F.max(F.col("codes")[levels])).first()[0]
        metrics["dedup_codebook_size"] = max(dedup_codebook_size(metrics["max_items_per_sid_all"], cfg.dedup_headroom),
                                             int(top_digit or 0) + 1)
        sizes.append(metrics["dedup_codebook_size"])
    return NextMap(rows, tok, metrics, sizes)


def main(ctx: RunContext, encoder: str) -> dict:
    from pyspark.sql import functions as F

    from genrec_core.quantize import base
    from genrec_core.quantize.rq_kmeans import allow_faiss_gpu
    from genrec_core.quantize.sid_lifecycle import Evidence, decide_mode

    spark, settings, cfg, seed = ctx.spark, ctx.settings, ctx.config.tokenize, ctx.config.seed
    allow_faiss_gpu(settings.faiss_gpu)
    vectors = catalogue_vectors(ctx, encoder)
    catalogue = delta_io.read(spark, settings, S.ITEMS).select("item_id", "content_hash")
    pub = published_map(ctx)
    sample_ids = x = None
    if pub is None:
        mode, reason = decide_mode(cfg.mode, Evidence(has_map=False), cfg.refit_new_share, cfg.drift_factor)
        life = {"parent_map_version": None, "parent_tokenizer_version": None, "n_reassigned": 0,
                "n_retired": 0, "n_returned": 0, "n_moved": 0, "churn_full": 0.0, "churn_prefix": 0.0,
                "churn_first": 0.0, "compared": 0}
        _announce(mode, reason)
        sample_ids, x = fit_sample(vectors.df, cfg.fit_sample, seed, settings.driver_rows)
        built = cold_fit(ctx, vectors, sample_ids, x, catalogue)
    else:
        classified = lifecycle.classify(catalogue, pub.rows, ctx.logical_time, cfg.sid_reserve_days,
                                        cfg.on_content_change).cache()
        counts = lifecycle.counts(classified)
        incompatible = incompatibility(pub.header, ctx.config, encoder)
        attempt = None
        if cfg.mode != "refit" and not incompatible:
            attempt = attempt_assign(ctx, pub, classified, vectors, counts.active)
        evidence = attempt.evidence if attempt else Evidence(has_map=True, incompatible=incompatible)
        mode, reason = decide_mode(cfg.mode, evidence, cfg.refit_new_share, cfg.drift_factor)
        _announce(mode, reason)
        if mode == "assign":
            built = attempt.build()
        else:
            sample_ids, x = fit_sample(vectors.df, cfg.fit_sample, seed, settings.driver_rows)
            built = refit(ctx, pub, classified, vectors, sample_ids, x)
        built.rows = built.rows.cache()
        churn = lifecycle.churn_of(built.rows, classified, built.tokenizer.levels)
        life = {"parent_map_version": pub.map_version, "parent_tokenizer_version": pub.tokenizer_version,
                "n_new": counts.new, "n_reassigned": counts.reassigned, "n_retired": counts.retired,
                "n_returned": counts.returned, "n_moved": churn.pop("moved"), **churn}
    rows = built.rows
    life.update({"mode": mode, "reason": reason, "n_active": int(rows.where(F.col("status") == "active").count())})
    life.setdefault("n_new", life["n_active"])  # the first map: every item is new
    tok_cfg = {k: v for k, v in ctx.config.to_dict()["tokenize"].items() if k not in LIFECYCLE_KEYS}
    content = rows.select("item_id", F.concat_ws("|", "sid", "status").alias("sid"))
    map_version = fingerprint(map_fingerprint(content), base.digest(built.tokenizer), tok_cfg, encoder, seed)
    meta = {"map_version": map_version, "encoder": encoder, "config": ctx.config.to_dict()["tokenize"],
            "embed_config": ctx.config.to_dict()["embed"], "seed": seed, "code_level_sizes": built.code_level_sizes,
            "quantizer": cfg.quantizer, "collisions": cfg.collisions}
    folder = settings.staging / "tokenizer" / map_version
    write_tokenizer(folder, built.tokenizer, meta, built.metrics, life)
    staged = rows.withColumn("map_version", F.lit(map_version))
    version = delta_io.overwrite(spark, settings, S.ITEM_SID_STAGED, staged)
    rows.unpersist()
    return {"map_version": map_version, "tokenizer_dir": str(folder), "metrics": built.metrics,
            "lifecycle": life, "code_level_sizes": built.code_level_sizes,
            "versions": {"item_sid_staged": version}}


def _announce(mode: str, reason: str) -> None:
    print(f"[genrec] tokenize mode: {mode} ({reason})", flush=True)


def staged_result(ctx: RunContext) -> dict:
    """Rebuilds the tokenize stage's result from the staged table and folder (for gate and publish
    running in another process, e.g. as separate Airflow tasks)."""
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_SID_STAGED):
        raise RuntimeError("no staged SID map: run the tokenize stage first")
    map_version = staged_map_version(ctx)
    if map_version is None:
        raise RuntimeError("the staged SID map is empty: the catalogue has no items")
    folder = ctx.settings.staging / "tokenizer" / map_version
    return {"map_version": map_version, "tokenizer_dir": str(folder), "metrics": read_metrics(folder),
            "lifecycle": read_lifecycle(folder), "code_level_sizes": read_header(folder)["code_level_sizes"]}
