"""Two nights of Amazon Beauty: how much of the SID map each retokenization mode changes, and at what quality.

Night 1 publishes items 1-11,495 (the sequences filtered to them) from a fresh home. Night 2 brings all
12,101 items (5% new) and runs, each from a copy of night 1's home:
- assign: the published tokenizer places the new items; no old item may move;
- refit_aligned: a new fit, warm-started from and aligned to the published codebooks;
- refit_unaligned: a new fit from scratch, codes as they fall (tokenize.align=false, warm_start=false);
- cold: the baseline, a first fit of all 12,101 items in a home with no map.
For each: churn of the old items (full SID, semantic prefix, first code), the whole map's SID quality
(collision rate of the semantic codes, reconstruction error, entropy per level), quality ratios
against the cold fit, and the tokenize stage's time. Profile `cpu`, as the issue measured it.

Targets: assign churn 0; aligned refit first-code churn <= 5%, full-SID churn <= 25%, collision rate
and reconstruction error within 10% of the cold fit.

Usage: python benchmarks/sid_churn.py [--data ../shared/data/amazon2014_p5/beauty] [--out benchmarks/results/churn.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NIGHT1_ITEMS = 11_495
STAGES = ("ingest", "embed", "tokenize")
VARIANTS = {
    "assign": ("tokenize.mode=assign",),
    "refit_aligned": ("tokenize.mode=refit",),
    "refit_unaligned": ("tokenize.mode=refit", "tokenize.align=false", "tokenize.warm_start=false"),
    "cold": ("tokenize.mode=refit",),
}


def write_night1(src: Path, out: Path) -> None:
    """Items 1..NIGHT1_ITEMS of the P5 folder, with every sequence filtered to them."""
    out.mkdir(parents=True)
    lines = []
    for line in (src / "sequential_data.txt").read_text().splitlines():
        user, *items = line.split()
        kept = [i for i in items if int(i) <= NIGHT1_ITEMS]
        if kept:
            lines.append(" ".join([user, *kept]))
    (out / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    with (src / "items.jsonl").open() as f, (out / "items.jsonl").open("w") as g:
        g.writelines(line for line in f if int(json.loads(line)["item_id"]) <= NIGHT1_ITEMS)


def settings_for(base, home: Path, name: str):
    return dataclasses.replace(base, home=home, lakehouse=home / "lakehouse", database=f"genrec_churn_{name}",
                               mlflow_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                               mlflow_artifacts=home / "mlruns" / "artifacts")


def copy_home(night1: Path, home: Path, with_map: bool) -> None:
    """night 1's tables and MLflow store (its artifacts stay where night 1 wrote them); the catalogue
    database is per variant, so the metastore is not copied."""
    skip = {"_metastore", "_warehouse"} | (set() if with_map else {"item_sid", "sid_map_versions", "_staging"})
    shutil.copytree(night1 / "lakehouse", home / "lakehouse", ignore=lambda d, names: [
        n for n in names if Path(d) == night1 / "lakehouse" and n in skip])
    shutil.copytree(night1 / "mlruns", home / "mlruns", ignore=shutil.ignore_patterns("artifacts"))


def run(spark, settings, dataset: str, when: datetime, overrides=(), stages=STAGES):
    from genrec_core.config import load_config
    from jobs.stages import pipeline
    from jobs.stages.context import RunContext

    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    cfg = load_config("cpu", overrides=(f"data.dataset={dataset}", *overrides))
    ctx = RunContext(settings=settings, config=cfg, logical_time=when, _spark=spark)
    for stage in stages:
        print(f"  [{settings.database}] {stage} ...", flush=True)
        pipeline.run_stage(ctx, stage)
    return ctx


def map_quality(ctx) -> dict:
    """SID quality of the staged map's active items, from their own codes and vectors."""
    from pyspark.sql import functions as F

    from genrec_core.quantize.metrics import sid_quality
    from jobs.lake import delta_io
    from jobs.lake.tokenizer_files import read_tokenizer
    from schemas import tables as S

    tok_result = ctx.results["tokenize"]
    tok = read_tokenizer(Path(tok_result["tokenizer_dir"]))
    staged = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID_STAGED).where(F.col("status") == "active")
    emb = delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS).select("item_id", "vector")
    pdf = staged.join(emb, "item_id").orderBy("item_id").toPandas()
    semantic = np.stack(pdf.codes.to_numpy()).astype(np.int64)[:, :tok.levels]
    x = np.stack(pdf.vector.to_numpy()).astype(np.float32)
    q = sid_quality(semantic, tok.level_sizes, x, tok.decode(semantic))
    return {"n_items": q["n_items"], "collision_rate": q["collision_rate"],
            "reconstruction_rel_error": q["reconstruction_rel_error"],
            "entropy_bits_per_level": [lv["entropy_bits"] for lv in q["levels"]],
            "unique_sids": int(len({tuple(r) for r in np.stack(pdf.codes.to_numpy()).tolist()}))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "amazon2014_p5" / "beauty"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "churn.json"))
    ap.add_argument("--work", default=None, help="Scratch folder (default: a temp folder, removed after).")
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "sequential_data.txt").is_file():
        sys.exit(f"Amazon Beauty (P5 layout) not found at {data}; pass --data")

    from benchmarks.machine import describe
    from jobs.lake.settings import load_settings, quiet_environment
    from jobs.lake.spark_session import get_spark

    load_at_start = os.getloadavg()[0]
    quiet_environment()
    work = Path(args.work or tempfile.mkdtemp(prefix="genrec-churn-"))
    night1_data = work / "beauty_night1"
    if not night1_data.exists():
        write_night1(data, night1_data)
    base = load_settings()
    spark = get_spark(dataclasses.replace(base, lakehouse=work / "catalogue"), app_name="genrec-bench-churn")
    day1, day2 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)

    print("night 1: items 1-11,495, fresh home", flush=True)
    night1 = work / "night1"
    ctx1 = run(spark, settings_for(base, night1, "night1"), f"p5:{night1_data}", day1,
               stages=("ingest", "embed", "tokenize", "gate", "publish"))
    rows = {}
    for name, overrides in VARIANTS.items():
        print(f"night 2: all items, {name}", flush=True)
        home = work / name
        shutil.rmtree(home, ignore_errors=True)
        copy_home(night1, home, with_map=name != "cold")
        ctx = run(spark, settings_for(base, home, name), f"p5:{data}", day2, overrides)
        life, tok = ctx.results["tokenize"]["lifecycle"], ctx.results["tokenize"]
        rows[name] = {"mode": life["mode"], "reason": life["reason"],
                      **{k: life.get(k) for k in ("churn_full", "churn_prefix", "churn_first", "compared",
                                                  "n_new", "n_moved")},
                      **map_quality(ctx), "tokenize_seconds": round(tok["seconds"], 2)}
    cold = rows["cold"]
    for name, row in rows.items():
        row["collision_rate_ratio_to_cold"] = row["collision_rate"] / cold["collision_rate"] if cold["collision_rate"] else None
        row["recon_error_ratio_to_cold"] = row["reconstruction_rel_error"] / cold["reconstruction_rel_error"]
    a, r = rows["assign"], rows["refit_aligned"]
    targets = {
        "assign_churn_zero": a["churn_full"] == 0.0,
        "aligned_first_code_churn_le_5pct": r["churn_first"] <= 0.05,
        "aligned_full_churn_le_25pct": r["churn_full"] <= 0.25,
        "aligned_collision_within_10pct_of_cold": abs(r["collision_rate_ratio_to_cold"] - 1) <= 0.10,
        "aligned_recon_within_10pct_of_cold": abs(r["recon_error_ratio_to_cold"] - 1) <= 0.10,
    }
    result = {"benchmark": "sid_churn", "dataset": str(data), "night1_items": NIGHT1_ITEMS,
              "night1_map": ctx1.results["publish"]["map_version"], "profile": "cpu",
              **{k: rows[k] for k in ("assign", "refit_aligned", "refit_unaligned")}, "cold": cold,
              "targets": targets, "machine": describe(load_at_start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table(title="SID churn, Beauty night 2 (5% new items) against night 1's map")
    for col in ("mode", "churn full", "prefix", "first", "collision", "x cold", "recon err", "x cold",
                "entropy bits/level", "tokenize s"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, row in rows.items():
        table.add_row(name, f"{row['churn_full']:.4f}", f"{row['churn_prefix']:.4f}", f"{row['churn_first']:.4f}",
                      f"{row['collision_rate']:.4f}", f"{row['collision_rate_ratio_to_cold'] or 0:.3f}",
                      f"{row['reconstruction_rel_error']:.4f}", f"{row['recon_error_ratio_to_cold']:.3f}",
                      ", ".join(f"{e:.2f}" for e in row["entropy_bits_per_level"]), f"{row['tokenize_seconds']:.1f}")
    Console(width=160).print(table)
    for key, ok in targets.items():
        print(f"{'PASS' if ok else 'MISS'} {key}")
    busy = " (machine busy: figures run slow)" if result["machine"]["busy"] else ""
    print(f"wrote {args.out}{busy}")
    spark.stop()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
