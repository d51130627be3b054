"""The train stage: train the TIGER-style recommender on SID tokens, evaluate it, register it in MLflow.

The model is trained against one Delta version of `item_sid` and registered with that version as a
tag, so serving can use the same map. A rerun on the same map, sequences and config finds the version
it registered before and reports its metrics instead of training again.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io, mlflow_models
from jobs.stages.context import RunContext
from schemas import tables as S


def load_map(ctx: RunContext):
    """(item_sid version, map_version, item ids sorted, codes [n, L], level sizes) of the published map's
    active items: retired items are neither trained towards nor decoded (the trie holds active SIDs only)."""
    spark, settings = ctx.spark, ctx.settings
    version = delta_io.latest_version(spark, settings, S.ITEM_SID)
    pdf = (delta_io.read(spark, settings, S.ITEM_SID, version).where("status = 'active'")
           .orderBy("item_id").toPandas())
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
    """train sequences and (history, target) test pairs as item indices, plus a content checksum."""
    from pyspark.sql import functions as F

    df = delta_io.read(ctx.spark, ctx.settings, S.USER_SEQUENCES)
    checksum = df.select(F.sum(F.xxhash64("user_id", "split", "item_ids", "target")
                               .cast("decimal(38,0)")).alias("s")).first()["s"]
    pdf = df.where(F.col("split").isin("train", "test")).orderBy("user_id", "split").toPandas()
    unknown = {i for seq in pdf.item_ids for i in seq if i not in index} | \
        {t for t in pdf.target.dropna() if t not in index}
    if unknown:
        raise RuntimeError(f"{len(unknown)} items in user_sequences have no SID in item_sid "
                           f"(e.g. {sorted(unknown)[:3]}); rerun tokenize and publish")
    to_idx = lambda seq: np.array([index[i] for i in seq], dtype=np.int64)  # noqa: E731
    train = [to_idx(s) for s in pdf[pdf.split == "train"].item_ids if len(s) >= 2]
    test = pdf[pdf.split == "test"]
    histories = [to_idx(s) for s in test.item_ids]
    targets = np.array([index[t] for t in test.target], dtype=np.int64)
    return train, histories, targets, str(checksum)


def evaluation_subset(n: int, max_users, seed: int) -> np.ndarray:
    if max_users is None or max_users >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False))


def main(ctx: RunContext) -> dict:
    import torch
    from tqdm.auto import tqdm

    from genrec_core.device import resolve_device
    from genrec_core.eval.ranking import ranking_report
    from genrec_core.model.sid_vocab import SidVocab
    from genrec_core.model.tiger import (
        build_model,
        make_training_pairs,
        recommend,
        train,
    )
    from genrec_core.model.trie import SidTrie

    cfg, seed = ctx.config, ctx.config.seed
    sid_version, map_version, item_ids, codes, level_sizes = load_map(ctx)
    index = {item: i for i, item in enumerate(item_ids)}
    train_seqs, histories, targets, checksum = load_sequences(ctx, index)
    fp = fingerprint(map_version, sid_version, checksum, cfg.train, cfg.eval, seed)
    c = mlflow_models.client(ctx.settings)
    existing = mlflow_models.find_version(c, mlflow_models.RECOMMENDER_MODEL, fp)
    if existing is not None:
        return {"trained": False, "model_version": str(existing.version), "item_sid_version": sid_version,
                "metrics": mlflow_models.run_metrics(c, existing.run_id)}

    torch.manual_seed(seed)
    vocab = SidVocab(level_sizes)
    item_tokens = vocab.codes_to_tokens(codes)
    device = resolve_device(cfg.train.device)
    model = build_model(vocab, cfg.train, seed)
    pairs = make_training_pairs(train_seqs, cfg.train.max_history)
    with tqdm(total=cfg.train.max_steps, desc=f"train ({device})", unit="step") as bar:
        def progress(step, loss):
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
        result = train(model, pairs, item_tokens, cfg.train, seed, device, progress=progress)

    subset = evaluation_subset(len(histories), cfg.eval.max_users, seed)
    trie = SidTrie(item_tokens)
    with tqdm(total=len(subset), desc="evaluate (constrained beam search)", unit="user") as bar:
        ranked = recommend(model, [histories[i] for i in subset], item_tokens, trie, k=max(cfg.eval.ks),
                           num_beams=cfg.eval.num_beams, batch_size=cfg.eval.batch_size,
                           max_history=cfg.train.max_history, device=device,
                           progress=lambda done, _total: bar.update(done - bar.n))
    metrics = ranking_report(ranked, targets[subset], cfg.eval.ks)
    metrics.update({"train_steps": result.steps, "train_epochs": result.epochs,
                    "train_final_loss": result.final_loss, "train_seconds": result.seconds,
                    "eval_users": int(len(subset))})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder)  # config.json + model.safetensors
        (folder / "sid_vocab.json").write_text(json.dumps({"level_sizes": list(level_sizes),
                                                           "map_version": map_version}))
        (folder / "genrec_config.json").write_text(ctx.config.to_json())
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        version, _ = mlflow_models.register_folder(
            c, mlflow_models.RECOMMENDER_MODEL, folder, fp,
            params={**{f"train.{k}": v for k, v in cfg.to_dict()["train"].items()},
                    **{f"eval.{k}": v for k, v in cfg.to_dict()["eval"].items()}, "device": device,
                    "train_pairs": len(pairs)},
            metrics=metrics,
            tags={"item_sid_version": str(sid_version), "map_version": map_version,
                  "stopped_by": result.stopped_by},
            run_name=f"recommender-{fp}")
    return {"trained": True, "model_version": version, "item_sid_version": sid_version, "metrics": metrics}
