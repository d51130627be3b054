"""The SID quality report of a published map: report.json, report.md and PNG figures, also logged to
MLflow (experiment "genrec-reports").

The map is `item_sid` as of its publish (the latest version for the current map, else the Delta version
the manifest `sid_map_versions` recorded); `items` and `item_embeddings` are read at the input versions
the map was built from. Where time travel fails (vacuumed history) the latest version is read and the
report says so. The previous map is the last other map in item_sid's Delta history before this one;
churn is measured against it.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from jobs.lake import delta_io, mlflow_models
from jobs.lake.files import write_bytes
from jobs.lake.tokenizer_files import (
    has_tokenizer,
    read_tokenizer,
    registered_tokenizer,
)
from jobs.stages.context import RunContext
from schemas import tables as S

EXPERIMENT = "genrec-reports"


class NoPublishedMap(RuntimeError):
    """There is no published SID map (or not the one asked for)."""


# ---------------------------------------------------------------------------------------------------
# Which map, and which one came before it


def manifest_rows(ctx: RunContext) -> list[dict]:
    """Every published map, oldest first (by the item_sid version each publish produced)."""
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.SID_MAP_VERSIONS):
        return []
    rows = [r.asDict() for r in delta_io.read(ctx.spark, ctx.settings, S.SID_MAP_VERSIONS).collect()]
    return sorted(rows, key=lambda r: (r["item_sid_version"], r["map_version"]))


def current_map_version(ctx: RunContext) -> Optional[str]:
    if not delta_io.table_exists(ctx.spark, ctx.settings, S.ITEM_SID):
        return None
    found = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID).select("map_version").distinct().limit(2).collect()
    return found[0][0] if len(found) == 1 else None


def choose_map(rows: list[dict], map_version: Optional[str], current: Optional[str]) -> dict:
    """The manifest row of the map to report: `map_version`, or the map now in item_sid."""
    wanted = map_version or current
    if not rows or wanted is None:
        raise NoPublishedMap("no published SID map: run the pipeline through the publish stage first")
    for row in rows:
        if row["map_version"] == wanted:
            return row
    known = ", ".join(r["map_version"] for r in rows)
    raise NoPublishedMap(f"map version {wanted!r} was never published; published versions: {known}")


def map_table_version(ctx: RunContext, row: dict, current: Optional[str]) -> int:
    """The item_sid version to read: the latest for the current map (a map published again after another
    one keeps its first manifest entry), else the version its publish produced."""
    if row["map_version"] == current:
        return delta_io.latest_version(ctx.spark, ctx.settings, S.ITEM_SID)
    return int(row["item_sid_version"])


def previous_map(ctx: RunContext, before: int, map_version: str, notes: list[str],
                 max_steps: int = 100) -> Optional[tuple[int, str]]:
    """(item_sid version, map version) of the last map in item_sid's history before `before` that is
    not `map_version`. Walks back one Delta version at a time; each publish changes the map version, so
    this usually stops after one step."""
    for version in range(before - 1, max(-1, before - 1 - max_steps), -1):
        try:
            found = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID, version).select("map_version").distinct()
            names = [r[0] for r in found.limit(2).collect()]
        except Exception as err:  # noqa: BLE001 - vacuumed history ends the walk; the report says so
            notes.append(f"item_sid history unreadable at version {version} ({type(err).__name__}); no churn")
            return None
        if names and names != [map_version]:
            return version, names[0]
    return None


# ---------------------------------------------------------------------------------------------------
# Reading the map and its inputs as of the publish


def _read_at(ctx: RunContext, spec, version: Optional[int], notes: list[str]):
    """The table at `version`, or the latest one (with a note) when that version cannot be read."""
    if version is not None:
        try:
            df = delta_io.read(ctx.spark, ctx.settings, spec, int(version))
            df.limit(1).collect()  # time travel fails here when the version's log is gone
            return df
        except Exception as err:  # noqa: BLE001 - any read failure falls back, and is reported
            notes.append(f"{spec.name} version {version} unreadable ({type(err).__name__}); read the latest")
    return delta_io.read(ctx.spark, ctx.settings, spec)


def map_rows(ctx: RunContext, version: int, map_version: str):
    """Spark (item_id, codes) of item_sid's active items at `version`, restricted to `map_version`."""
    from pyspark.sql import functions as F

    df = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID, version)
    if "status" in df.columns:
        df = df.where(F.col("status") == "active")
    return df.where(F.col("map_version") == map_version).select("item_id", "codes")


def load_inputs(ctx: RunContext, map_row: dict, sid_version: int, encoder: str, notes: list[str]):
    """pandas (item_id, codes, vector, category) for the map's items: the vector from the encoder the map
    was built with (null when missing) and the top-level category ('(none)' when missing)."""
    from pyspark.sql import functions as F

    from jobs.transforms import driver_rows
    from jobs.transforms.sid_map_stats import top_category

    inputs = json.loads(map_row["input_versions"])
    sid = map_rows(ctx, sid_version, map_row["map_version"])
    bound = ctx.settings.driver_rows
    n_items = sid.count()
    if n_items > bound:
        # The figures are per-item statistics; a seeded sample of the bound estimates them.
        sid = sid.orderBy(F.xxhash64("item_id", F.lit(ctx.config.seed)), "item_id").limit(bound)
        notes.append(f"the map has {n_items:,} items, over GENREC_DRIVER_ROWS={bound:,}: the report is computed "
                     f"on a seeded sample of {bound:,} items")
    emb = _read_at(ctx, S.ITEM_EMBEDDINGS, inputs.get("item_embeddings"), notes)
    emb = emb.where(F.col("encoder") == encoder).select("item_id", "vector")
    items = _read_at(ctx, S.ITEMS, inputs.get("items"), notes)
    items = items.select("item_id", top_category().alias("category"))
    joined = sid.join(emb, "item_id", "left").join(items, "item_id", "left")
    pdf = driver_rows.collect(joined.orderBy("item_id"), "the map report's items", bound, "")
    pdf["category"] = pdf["category"].fillna("(none)")
    return pdf


def load_tokenizer(ctx: RunContext, map_version: str, tokenizer_version: str, notes: list[str]):
    """The map's tokenizer: its staging folder if still there, else the MLflow version the manifest
    names (an `assign` map shares its parent's)."""
    folder = ctx.settings.staging / "tokenizer" / map_version
    if has_tokenizer(folder):
        return read_tokenizer(folder)
    from mlflow.exceptions import MlflowException

    try:
        return registered_tokenizer(ctx.settings, tokenizer_version)
    except MlflowException:
        notes.append(f"tokenizer version {tokenizer_version} not found (staging folder or MLflow); "
                     "reconstruction not computed")
        return None


def semantic_codes(codes: np.ndarray, levels: int, collisions: str, tok, x, notes: list[str]) -> np.ndarray:
    """Codes before collision resolution. dedup_digit keeps them as the first `levels` codes; the other
    strategies move items to other codes, so their pre-resolution codes are re-encoded from x."""
    if collisions == "dedup_digit":
        return codes[:, :levels]
    if tok is not None and x is not None:
        return np.asarray(tok.encode(x), dtype=np.int64)
    notes.append(f"collisions={collisions}: no tokenizer or vectors to re-encode; pre-resolution figures "
                 "use the published codes")
    return codes[:, :levels]


# ---------------------------------------------------------------------------------------------------
# The map's history


HISTORY_COLUMNS = ("map_version", "item_sid_version", "mode", "n_items", "collision_rate", "churn_full",
                   "churn_first", "n_new", "n_retired", "n_returned", "n_moved")


def history(rows: list[dict]) -> list[dict]:
    """One entry per published map, oldest first: its quality and what it changed."""
    out = []
    for r in rows:
        metrics = json.loads(r["metrics"])
        out.append({"map_version": r["map_version"], "item_sid_version": int(r["item_sid_version"]),
                    "mode": r.get("mode"), "n_items": int(r["n_items"]),
                    "collision_rate": float(metrics.get("collision_rate", float("nan"))),
                    **{k: r.get(k) for k in HISTORY_COLUMNS[5:]}})
    return out


def history_markdown(entries: list[dict]) -> str:
    head = "| " + " | ".join(HISTORY_COLUMNS) + " |\n|" + "---|" * len(HISTORY_COLUMNS) + "\n"
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    return "\n## Map history\n\n" + head + "".join(
        "| " + " | ".join(cell(e[c]) for c in HISTORY_COLUMNS) + " |\n" for e in entries)


def history_figure(entries: list[dict]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.arange(len(entries))
    labels = [f"v{e['item_sid_version']}\n{e['mode'] or ''}" for e in entries]
    fig = Figure(figsize=(max(6, 1.2 * len(entries)), 6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, [e["collision_rate"] for e in entries], "o-", label="collision rate")
    top.plot(x, [e["churn_full"] or 0 for e in entries], "s-", label="churn (full SID)")
    top.plot(x, [e["churn_first"] or 0 for e in entries], "^-", label="churn (first code)")
    top.set_ylabel("share")
    top.legend()
    width = 0.25
    for i, (key, name) in enumerate((("n_new", "new"), ("n_retired", "retired"), ("n_moved", "moved"))):
        bottom.bar(x + (i - 1) * width, [e[key] or 0 for e in entries], width, label=name)
    bottom.set_ylabel("items")
    bottom.set_xticks(x, labels)
    bottom.legend()
    fig.suptitle("SID map history (item_sid Delta version, mode)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Output


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_outputs(out_dir: Path, document: dict, markdown: str, figures: dict) -> list[Path]:
    """report.json, report.md and plots/<name>.png, each written atomically; other files are left alone."""
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    files = {out_dir / "report.json": json.dumps(document, indent=2, sort_keys=True).encode(),
             out_dir / "report.md": markdown.encode()}
    files.update({out_dir / "plots" / f"{name}.png": _png(fig) for name, fig in figures.items()})
    for path, data in files.items():
        write_bytes(path, data)
    return sorted(files)


def report_experiment(c, settings) -> str:
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    # Same artifact root as the main experiment; without it MLflow would write ./mlruns in the cwd.
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    return c.create_experiment(EXPERIMENT, artifact_location=settings.mlflow_artifacts.as_uri())


def log_to_mlflow(ctx: RunContext, files: list[Path], out_dir: Path, document: dict, metrics: dict) -> str:
    """One run per distinct report: a rerun whose report.json is identical finds the earlier run."""
    import mlflow

    c = mlflow_models.client(ctx.settings)
    exp_id = report_experiment(c, ctx.settings)
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    found = c.search_runs([exp_id], filter_string=f"tags.fingerprint = '{digest}'", max_results=1)
    if found:
        return found[0].info.run_id
    meta = document["meta"]
    with mlflow.start_run(experiment_id=exp_id, run_name=f"sid-report-{meta['map_version']}") as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"map_version": meta["map_version"], "fingerprint": digest,
                         "previous_map_version": meta["previous_map_version"] or ""})
        for path in files:
            folder = path.parent.relative_to(out_dir).as_posix()
            mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)
    return run.info.run_id


# ---------------------------------------------------------------------------------------------------
# The stage


def _codes(series) -> np.ndarray:
    return np.stack(series.to_numpy()).astype(np.int64)


def compute(ctx: RunContext, row: dict, sid_version: int, previous: Optional[tuple[int, str]],
            notes: list[str]):
    """(SIDReport, semantic codes, semantic level sizes) of the map in `row`, read at `sid_version`."""
    from genrec_core.quantize.metrics import sid_report

    tok_cfg, metrics = json.loads(row["config"]), json.loads(row["metrics"])
    levels = int(tok_cfg.get("levels") or len(metrics["levels"]))
    level_sizes = tuple(tok_cfg.get("level_sizes") or [lv["codebook_size"] for lv in metrics["levels"]])
    pdf = load_inputs(ctx, row, sid_version, tok_cfg["encoder"], notes)
    codes, x = _codes(pdf.codes), None
    if pdf.vector.notna().all():
        x = np.stack(pdf.vector.to_numpy()).astype(np.float32)
    else:
        notes.append(f"{int(pdf.vector.isna().sum())} items have no '{tok_cfg['encoder']}' vector; "
                     "kNN and reconstruction not computed")
    tok = load_tokenizer(ctx, row["map_version"], row["tokenizer_version"], notes) if x is not None else None
    semantic = semantic_codes(codes, levels, tok_cfg.get("collisions", "dedup_digit"), tok, x, notes)
    prev = None
    if previous is not None:
        from jobs.transforms import driver_rows

        prev_df = map_rows(ctx, *previous)
        if prev_df.count() > ctx.settings.driver_rows:  # too big to collect: compare the sampled items only
            ids = ctx.spark.createDataFrame([(i,) for i in pdf.item_id.tolist()], "item_id string")
            prev_df = prev_df.join(ids, "item_id", "left_semi")
        prev_pdf = driver_rows.collect(prev_df.orderBy("item_id"), "the previous map's items", ctx.settings.driver_rows, "")
        prev = (prev_pdf.item_id.to_numpy(dtype=str), _codes(prev_pdf.codes))
    report = sid_report(semantic, level_sizes, x, x_hat=tok.decode(semantic) if tok is not None else None,
                        categories=pdf.category.to_numpy(dtype=str), previous=prev, seed=ctx.config.seed,
                        final_codes=codes, item_ids=pdf.item_id.to_numpy(dtype=str))
    return report, semantic, level_sizes


def main(ctx: RunContext, map_version: Optional[str] = None, out_dir: Optional[Path] = None) -> dict:
    """Reports on `map_version` (default: the map now in item_sid). Writes to out_dir (default
    <GENREC_HOME>/reports/<map_version>/) and logs the files to MLflow."""
    from genrec_core.quantize.report import flat_metrics, plot_figures, to_markdown

    current = current_map_version(ctx)
    rows = manifest_rows(ctx)
    row = choose_map(rows, map_version, current)
    notes: list[str] = []
    sid_version = map_table_version(ctx, row, current)
    previous = previous_map(ctx, sid_version, row["map_version"], notes)
    report, semantic, level_sizes = compute(ctx, row, sid_version, previous, notes)
    tok_cfg = json.loads(row["config"])
    meta: dict[str, Any] = {
        "map_version": row["map_version"], "tokenizer_version": row["tokenizer_version"],
        "item_sid_version": sid_version, "published_at": str(row["published_at"]),
        "previous_map_version": previous[1] if previous else None,
        "previous_item_sid_version": previous[0] if previous else None,
        "encoder": tok_cfg.get("encoder"), "quantizer": tok_cfg.get("kind"),
        "collisions": tok_cfg.get("collisions", "dedup_digit"), "notes": "; ".join(notes) or None}
    # The current map's history is every publish so far; an older map's ends with it.
    past = history(rows if row["map_version"] == current else
                   [r for r in rows if r["item_sid_version"] <= row["item_sid_version"]])
    document = {"meta": meta, "report": report.to_dict(), "history": past}
    markdown = to_markdown(report, f"SID quality report: map {row['map_version']}", meta) + history_markdown(past)
    out_dir = Path(out_dir) if out_dir else ctx.settings.home / "reports" / row["map_version"]
    figures = {**plot_figures(report, semantic, level_sizes), "map_history": history_figure(past)}
    files = write_outputs(out_dir, document, markdown, figures)
    run_id = log_to_mlflow(ctx, files, out_dir, document, flat_metrics(report))
    return {"map_version": row["map_version"], "previous_map_version": meta["previous_map_version"],
            "out_dir": str(out_dir), "files": [str(f) for f in files], "mlflow_run_id": run_id,
            "markdown": markdown, "report": report.to_dict(), "notes": notes}
