"""The train stage: train the TIGER-style recommender on SID tokens, evaluate it, register it in MLflow.

The model is trained against one Delta version of `item_sid` and registered with that version as a
tag, so serving can use the same map. A rerun on the same map, sequences and config finds the version
it registered before and reports its metrics instead of training again.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io, mlflow_models
from jobs.stages.context import RunContext
from schemas import tables as S


def load_map(ctx: RunContext):
    """(item_sid version, map_version, item ids sorted, codes [n, L], level sizes) of the published map's
    active items: retired items are neither trained towards nor decoded (the trie holds active SIDs only)."""
    from jobs.transforms import driver_rows

    spark, settings = ctx.spark, ctx.settings
    version = delta_io.latest_version(spark, settings, S.ITEM_SID)
    active = (delta_io.read(spark, settings, S.ITEM_SID, version).where("status = 'active'")
              .select("item_id", "codes", "map_version").orderBy("item_id"))
    pdf = driver_rows.collect(active, "the published map's active items (the recommender's vocabulary)",
                              settings.driver_rows, driver_rows.RECOMMENDER_ON_ONE_HOST)
    map_versions = sorted(set(pdf.map_version))
    if len(map_versions) != 1:
        raise RuntimeError(f"item_sid v{version} mixes map versions {map_versions}; republish the map")
    manifest = delta_io.read(spark, settings, S.SID_MAP_VERSIONS)
    row = manifest.where(manifest.map_version == map_versions[0]).first()
    if row is None:
        raise RuntimeError(f"map version {map_versions[0]} is not in sid_map_versions")
    level_sizes = tuple(json.loads(row["config"])["code_level_sizes"])
    codes = np.stack(pdf.codes.to_numpy()).astype(np.int64)
    return version, map_versions[0], pdf.item_id.tolist(), codes, level_sizes


def load_sequences(ctx: RunContext, index: dict[str, int]):
    """The split as item indices: train sequences, then (histories, targets) of the valid and the test
    split, plus a content checksum of user_sequences."""
    from pyspark.sql import functions as F

    df = delta_io.read(ctx.spark, ctx.settings, S.USER_SEQUENCES)
    checksum = df.select(F.sum(F.xxhash64("user_id", "split", "item_ids", "target")
                               .cast("decimal(38,0)")).alias("s")).first()["s"]
    pdf = df.orderBy("user_id", "split").toPandas()
    unknown = {i for seq in pdf.item_ids for i in seq if i not in index} | \
        {t for t in pdf.target.dropna() if t not in index}
    if unknown:
        raise RuntimeError(f"{len(unknown)} items in user_sequences have no active SID in item_sid "
                           f"(e.g. {sorted(unknown)[:3]}); rerun tokenize and publish")
    to_idx = lambda seq: np.array([index[i] for i in seq], dtype=np.int64)  # noqa: E731
    train = [to_idx(s) for s in pdf[pdf.split == "train"].item_ids]

    def pairs(split: str):
        part = pdf[pdf.split == split]
        return [to_idx(s) for s in part.item_ids], np.array([index[t] for t in part.target], dtype=np.int64)

    return train, pairs("valid"), pairs("test"), str(checksum)


def evaluation_subset(n: int, max_users, seed: int) -> np.ndarray:
    if max_users is None or max_users <= 0 or max_users >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False))


def loop_config(t):
    from genrec_core.model.training import LoopConfig

    return LoopConfig(batch_size=t.batch_size, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
                      warmup_steps=t.warmup_steps, max_steps=t.max_steps, max_minutes=t.max_minutes,
                      eval_every=t.eval_every, patience=t.patience,
                      plateau_evals=t.sasrec.plateau_evals if t.model == "sasrec" else t.plateau_evals,
                      plateau_decay=t.plateau_decay, ema_decay=t.ema_decay)


def curve_png(curve: list[dict], metric: str, title: str) -> bytes:
    """Training loss and validation `metric` against minutes, as PNG bytes."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [p["minutes"] for p in curve]
    ax.plot(minutes, [p["train_loss"] for p in curve], color="tab:blue", marker=".")
    ax.set_xlabel("minutes")
    ax.set_ylabel("train loss", color="tab:blue")
    right = ax.twinx()
    right.plot(minutes, [p.get("valid_" + metric, float("nan")) for p in curve], color="tab:red", marker="o")
    right.set_ylabel(f"valid {metric}", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def main(ctx: RunContext) -> dict:
    import torch
    from tqdm.auto import tqdm

    from genrec_core.config import select_metric
    from genrec_core.device import resolve_device
    from genrec_core.eval.ranking import evaluate
    from genrec_core.model import recommenders as R
    from genrec_core.model.sid_vocab import SidVocab
    from genrec_core.model.training import fit
    from jobs.lake import checkpoints, recommender_files

    cfg, seed, t = ctx.config, ctx.config.seed, ctx.config.train
    metric = select_metric(cfg)
    sid_version, map_version, item_ids, codes, level_sizes = load_map(ctx)
    index = {item: i for i, item in enumerate(item_ids)}
    train_seqs, (valid_h, valid_t), (test_h, test_t), checksum = load_sequences(ctx, index)
    if not len(valid_t) or not len(test_t):
        raise RuntimeError(f"user_sequences has {len(valid_t)} valid and {len(test_t)} test rows; training needs "
                           "both (sequences.split gives them to users with at least 3 events)")
    fp = fingerprint(map_version, sid_version, checksum, cfg.train, cfg.eval, seed)
    name = mlflow_models.recommender_model(t.model)
    c = mlflow_models.client(ctx.settings)
    existing = mlflow_models.find_version(c, name, fp)
    if existing is not None:
        return {"trained": False, "model": t.model, "registered_model": name, "model_version": str(existing.version),
                "item_sid_version": sid_version, "metrics": mlflow_models.run_metrics(c, existing.run_id),
                "alias": _aliases(c, name, existing.version)}

    torch.manual_seed(seed)
    device = resolve_device(t.device)
    item_tokens = SidVocab(level_sizes).codes_to_tokens(codes)
    spec = R.make_spec(t, level_sizes, len(item_ids), map_version)
    rec = R.build(spec, item_tokens, seed)
    warm_from, warm_reason = warm_start_source(ctx, c, name, spec) if t.warm_start == "auto" else (None, "off")
    if warm_from is not None:
        version_from, weights = warm_from
        rec.load_weights(weights)
        print(f"[train] warm start from {name} v{version_from} (the champion): {warm_reason}")
    ks, e = cfg.eval.ks, cfg.eval
    pick = evaluation_subset(len(valid_t), t.valid_users, seed)
    vh, vt = [valid_h[i] for i in pick], valid_t[pick]

    def validate() -> dict:
        return evaluate(rec, vh, vt, ks, num_beams=e.num_beams, batch_size=e.batch_size, device=device)

    ckpt = checkpoints.folder(ctx.settings, fp)
    if rec.trainable:
        resume = checkpoints.load(ckpt, spec) if t.resume == "auto" else None
        if resume is not None:
            print(f"[train] resuming {t.model} from step {resume.state.step} ({ckpt})")
        with tqdm(total=t.max_steps, initial=resume.state.step if resume else 0, desc=f"train {t.model} ({device})",
                  unit="step") as bar:
            def progress(state, loss):
                bar.update(1)
                if state.step % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", best=f"{state.best_value:.4f}")
            examples = rec.examples(train_seqs)
            state, _ = fit(rec.module, rec.loss, examples, loop_config(t), seed, device,
                           validate=validate, select_metric=metric, resume=resume, progress=progress,
                           checkpoint=lambda snap: checkpoints.save(ckpt, snap, spec))
        train_metrics = {"train_steps": state.step, "train_epochs": state.seen / max(1, len(examples)),
                         "train_seconds": state.seconds, "best_step": state.best_step}
        stopped_by, curve = state.stopped_by, state.curve
    else:
        rec.fit_counts(train_seqs)
        start = time.monotonic()
        valid = validate()
        curve = [{"step": 0.0, "minutes": 0.0, "train_loss": float("nan"),
                  **{f"valid_{k}": v for k, v in valid.items()}}]
        train_metrics = {"train_steps": 0, "train_epochs": 1.0, "train_seconds": time.monotonic() - start,
                         "best_step": 0}
        stopped_by = "counted"
    best_valid = {k.removeprefix("valid_"): v for k, v in
                  max(curve, key=lambda p: p.get("valid_" + metric, -1.0)).items() if k.startswith("valid_")}

    subset = evaluation_subset(len(test_t), e.max_users, seed)
    start = time.monotonic()
    with tqdm(total=len(subset), desc=f"test {t.model}", unit="user") as bar:
        metrics = evaluate(rec, [test_h[i] for i in subset], test_t[subset], ks, num_beams=e.num_beams,
                           batch_size=e.batch_size, device=device, progress=lambda done, _n: bar.update(done - bar.n))
    eval_seconds = time.monotonic() - start
    metrics.update(train_metrics)
    metrics.update({f"valid_{k}": v for k, v in best_valid.items()})
    metrics.update({"eval_users": int(len(subset)), "eval_seconds": eval_seconds,
                    "eval_users_per_s": len(subset) / max(eval_seconds, 1e-9)})

    with tempfile.TemporaryDirectory() as tmp:
        folder, png = Path(tmp) / "recommender", Path(tmp) / "learning_curve.png"
        png.write_bytes(curve_png(curve, metric, f"{t.model} on map {map_version}"))
        recommender_files.write_recommender(folder, rec, item_ids, item_tokens, {
            "genrec_config.json": ctx.config.to_json().encode(),
            "metrics.json": json.dumps(metrics, indent=2, sort_keys=True).encode(),
            "curve.json": json.dumps(curve, indent=1).encode()})
        version, _ = mlflow_models.register_folder(
            c, name, folder, fp,
            params={**{f"train.{k}": v for k, v in cfg.to_dict()["train"].items()},
                    **{f"eval.{k}": v for k, v in cfg.to_dict()["eval"].items()}, "device": device},
            metrics=metrics, curves=curve, extra_artifacts={"curve": png},
            tags={"item_sid_version": str(sid_version), "map_version": map_version, "model": t.model,
                  "stopped_by": stopped_by, "data_version": checksum,
                  "warm_start_from": warm_from[0] if warm_from else "", "warm_start_reason": warm_reason},
            run_name=f"{t.model}-{fp}", code="recommender", signature=mlflow_models.recommender_signature())
    checkpoints.remove(ckpt)
    alias, reason = mlflow_models.promote(c, name, version, metric, metrics["valid_" + metric],
                                          t.promote_margin)
    print(f"[train] {name} v{version} is the {alias}: {reason}")
    _promote_tokenizer(ctx, c, alias)
    return {"trained": True, "model": t.model, "registered_model": name, "model_version": version,
            "item_sid_version": sid_version, "metrics": metrics, "alias": alias, "alias_reason": reason,
            "warm_start_from": warm_from[0] if warm_from else None}


def warm_start_source(ctx: RunContext, c, name: str, spec: dict):
    """((champion version, weights), reason) when the champion of `name` can be fine-tuned on this
    run's map: a SID model whose map is this one or an ancestor reached through assigns and aligned
    refits only, with the same shape; else (None, why not)."""
    from genrec_core.model import recommenders as R
    from genrec_core.quantize.sid_lifecycle import vocabulary_kept
    from jobs.lake import recommender_files

    if spec["kind"] not in R.GENERATIVE:
        return None, f"{spec['kind']} embeds item ids, which a new map renumbers"
    champion = mlflow_models.alias_version(c, name, mlflow_models.CHAMPION)
    if champion is None:
        return None, "no champion yet"
    manifest = {}
    for row in delta_io.read(ctx.spark, ctx.settings, S.SID_MAP_VERSIONS).select(
            "map_version", "parent_map_version", "mode", "config").collect():
        conf = json.loads(row["config"])
        manifest[row["map_version"]] = {"parent_map_version": row["parent_map_version"], "mode": row["mode"],
                                        "align": bool(conf.get("config", {}).get("align", False)),
                                        "level_sizes": conf.get("code_level_sizes")}
    kept, why = vocabulary_kept(manifest, champion.tags.get("map_version", ""), spec["map_version"])
    if not kept:
        return None, why
    folder = mlflow_models.download_version(c, name, champion.version,
                                            ctx.settings.staging / "recommenders" / name / str(champion.version))
    files = recommender_files.read_files(folder)
    saved = json.loads(files[R.SPEC_FILE])
    try:
        R.check_compatible(saved, spec, same_map=False)
    except R.SpecMismatch as err:
        return None, str(err)
    previous, _ = R.from_files(files)
    return (str(champion.version), previous.weights()), why


def _aliases(c, name: str, version) -> str:
    return ",".join(c.get_model_version(name, str(version)).aliases) or "-"


def _promote_tokenizer(ctx: RunContext, c, alias: str) -> None:
    """The tokenizer of the map a champion recommender was trained on becomes the tokenizer champion."""
    if alias != mlflow_models.CHAMPION:
        return
    row = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID).where("status = 'active'").select(
        "tokenizer_version").first()
    if row is not None:
        mlflow_models.crown(c, mlflow_models.TOKENIZER_MODEL, str(row[0]))
