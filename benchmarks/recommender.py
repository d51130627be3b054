"""Recommenders on real data: popularity, SASRec and the generative SID model in one harness.

For each dataset (Amazon Beauty, Yelp, Amazon Scientific under ../shared/data), one home publishes the
`cpu` profile's SID map once; then every model trains on that map and the P5 leave-one-out split
through `genrec run --stages train --model M` and is scored on all test users with full ranking, in
both settings (history kept; history ranked out: ".excl"). Reported per model: Recall@5/10,
NDCG@5/10 both ways, train seconds, epochs, eval users/s, and the validation curve (R@10 against
minutes). The baseline measured in the same run is SASRec: each model's R@10 is also given as a
ratio to it.

Targets (Beauty, cpu profile, 2 cores): generative R@10 >= 0.0648 and N@10 >= 0.0384 with history
kept (TIGER's published figures), SASRec R@10 >= 0.0790 and N@10 >= 0.0387 with history ranked out
(RecBole 1.2.1 on this machine), SASRec in at most 30 minutes, every model in at most 60.

Usage: python benchmarks/recommender.py [--datasets beauty,yelp,scientific] [--models popularity,sasrec,sid_item]
       [--minutes sasrec=30,sid_item=58] [--set sid_item:train.members=1] [--key sid_item=sid_item_x1]
       [--out benchmarks/results/recommender.json]

sid_item trains as an ensemble of two (train.members=2, DEFAULT_SETS). --set passes a further config
override to one model's training (repeatable; later ones win; the row records them all), and --key
files a model's row under another name, so a variant is measured beside the row of record instead of
replacing it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
DATASETS = {"beauty": ("p5", DATA / "amazon2014_p5" / "beauty"), "yelp": ("p5", DATA / "yelp_p5"),
            "scientific": ("lcrec", DATA / "amazon2018_scientific")}
# The default generative model is reported under "generative", as the JSON layout names it;
# the other SID models under their own names.
KEYS = {"sid_item": "generative", "sid_gpt": "sid_gpt", "tiger": "tiger_t5", "sasrec": "sasrec",
        "popularity": "popularity"}
# The bench's generative model is sid_item as two independently initialised copies decoded together
# (train.members=2): under the 60-minute budget it led the single net on Beauty (see the README).
DEFAULT_SETS = {"sid_item": ["train.members=2"]}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
TARGETS = {"generative": {"recall@10": 0.0648, "ndcg@10": 0.0384},
           "sasrec": {"recall@10.excl": 0.0790, "ndcg@10.excl": 0.0387}}


def genrec(home: Path, *args: str) -> str:
    env = {**os.environ, "GENREC_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"genrec {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def model_result(home: Path, model: str) -> dict:
    """Metrics and curve of the newest registered version of `model` in `home`."""
    import mlflow
    from mlflow import MlflowClient

    from jobs.lake.mlflow_models import recommender_model, run_metrics

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    c = MlflowClient()
    version = max(c.search_model_versions(f"name='{recommender_model(model)}'"), key=lambda v: int(v.version))
    metrics = run_metrics(c, version.run_id)
    curve = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="model/artifacts/recommender/curve.json")).read_text())
    keep = [m for m in METRICS] + [m + ".excl" for m in METRICS]
    return {**{k: round(metrics[k], 4) for k in keep},
            "train_seconds": round(metrics["train_seconds"], 1), "epochs": round(metrics["train_epochs"], 2),
            "steps": int(metrics["train_steps"]), "best_step": int(metrics["best_step"]),
            "eval_users": int(metrics["eval_users"]), "eval_users_per_s": round(metrics["eval_users_per_s"], 1),
            "invalid_beam_share": round(metrics.get("invalid_beam_share", 0.0), 4),
            "valid_curve": [{"minutes": round(p["minutes"], 2), "step": int(p["step"]),
                             "valid_recall@10": round(p.get("valid_recall@10", float("nan")), 4)} for p in curve]}


def main() -> None:
    from benchmarks.machine import describe
    from jobs.sources.datasets import DATASETS as LAYOUTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="beauty,yelp,scientific")
    ap.add_argument("--models", default="popularity,sasrec,sid_item")
    # sid_item's 58 leaves its final test scoring and start-up inside the 60 minutes a model may take
    ap.add_argument("--minutes", default="sasrec=30,sid_item=58,sid_gpt=60,tiger=60",
                    help="training budget per model (train.max_minutes)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="a config override for one model's training, e.g. sid_item:train.members=2")
    ap.add_argument("--key", dest="keys", action="append", default=[], metavar="MODEL=ROW",
                    help="file MODEL's row under ROW instead of its usual name")
    ap.add_argument("--homes", type=Path, default=REPO / ".cache" / "bench" / "recommender")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recommender.json")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]
    budgets = dict(kv.split("=") for kv in args.minutes.split(",") if kv)
    extra: dict[str, list[str]] = {m: list(v) for m, v in DEFAULT_SETS.items()}
    for item in args.sets:
        model, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            ap.error(f"--set {item!r}: expected MODEL:KEY=VALUE")
        extra.setdefault(model, []).append(setting)
    keys = dict(KEYS)
    for item in args.keys:
        model, sep, row_name = item.partition("=")
        if not sep or model not in KEYS:
            ap.error(f"--key {item!r}: expected MODEL=ROW with MODEL one of {', '.join(KEYS)}")
        keys[model] = row_name
    results: dict = {}
    for name in args.datasets.split(","):
        layout, path = DATASETS[name]
        if not path.is_dir():
            print(f"[bench-rec] {name}: {path} is absent, skipped")
            continue
        if layout not in LAYOUTS:
            print(f"[bench-rec] {name}: genrec has no adapter for its layout ({layout}) yet, skipped")
            results[name] = {"skipped": f"no adapter for the {layout} layout"}
            continue
        home = args.homes / name
        home.mkdir(parents=True, exist_ok=True)
        spec = f"{layout}:{path}"
        start = time.monotonic()
        genrec(home, "run", "--dataset", spec, "--profile", "cpu", "--stages",
               "ingest,sequences,embed,tokenize,gate,publish")
        results[name] = {"map_seconds": round(time.monotonic() - start, 1)}
        for model in args.models.split(","):
            # cold starts only: a champion left in the home by an earlier run must not be fine-tuned
            sets = ["--set", "train.warm_start=never"]
            sets += ["--set", f"train.max_minutes={budgets[model]}"] if model in budgets else []
            for setting in extra.get(model, []):
                sets += ["--set", setting]
            start = time.monotonic()
            genrec(home, "run", "--dataset", spec, "--profile", "cpu", "--stages", "train", "--model", model, *sets)
            row = model_result(home, model)
            row["stage_seconds"] = round(time.monotonic() - start, 1)
            row["budget_minutes"] = float(budgets.get(model, 0))
            if extra.get(model):
                row["sets"] = extra[model]
            results[name][keys[model]] = row
            print(f"[bench-rec] {name} {model}: " + ", ".join(f"{k} {row[k]}" for k in METRICS + ("recall@10.excl",))
                  + f", train {row['train_seconds']} s")
        base = results[name].get("sasrec", {}).get("recall@10.excl")
        for key, row in results[name].items():
            if isinstance(row, dict) and "recall@10.excl" in row and base:
                row["recall@10.excl_vs_sasrec"] = round(row["recall@10.excl"] / base, 3)
    checks = {}
    for key, targets in TARGETS.items():
        row = results.get("beauty", {}).get(key)
        for metric, target in targets.items():
            if row:
                checks[f"beauty {key} {metric} >= {target}"] = row[metric] >= target
    machine = describe(load_at_start)
    for name, row in results.items():  # each dataset keeps the machine and budgets it was measured with
        row.update({"machine": machine, "budgets_minutes": budgets})
        for model_row in row.values():  # and each model row its own, since later runs may re-measure a subset
            if isinstance(model_row, dict) and "recall@10" in model_row:
                model_row["machine"] = machine
    # Datasets not run this time keep their earlier figures, so one dataset can be re-measured alone.
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    doc = {k: v for k, v in doc.items() if k not in ("machine", "budgets_minutes")}
    doc["profile"] = "cpu"
    for name, row in results.items():  # models not run this time keep their earlier rows
        doc[name] = {**doc.get(name, {}), **row}
    doc["targets"] = {**doc.get("targets", {}), **{k: bool(v) for k, v in checks.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    shown = METRICS + ("recall@10.excl", "ndcg@10.excl")
    print(f"\n{'dataset':<11}{'model':<12}" + "".join(f"{m:>15}" for m in shown)
          + f"{'train s':>9}{'epochs':>8}{'users/s':>9}")
    for name in results:
        for key, row in results[name].items():
            if not isinstance(row, dict) or "recall@10" not in row:
                continue
            if isinstance(row, dict):
                print(f"{name:<11}{key:<12}" + "".join(f"{row[m]:>15.4f}" for m in shown)
                      + f"{row['train_seconds']:>9.0f}{row['epochs']:>8.1f}{row['eval_users_per_s']:>9.0f}")
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
