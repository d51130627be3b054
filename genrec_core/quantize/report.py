"""Renders an SIDReport: markdown tables per section and matplotlib figures. Pure: returns strings and
Figure objects; the caller (jobs/stages/map_report.py) decides where they go.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas rather than pyplot, so no GUI
backend is touched and no global figure registry grows across calls.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np

from genrec_core.quantize.metrics import SIDReport, prefix_ids

SECTIONS = ("Collisions", "Code usage per level", "Reconstruction", "Neighbourhood preservation",
            "Category purity", "Churn against the previous map", "After collision resolution")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")  # a bare pipe would split the cell


def _skipped(reason: str) -> str:
    return f"_Not computed: {reason}._"


def _collisions(r: SIDReport) -> str:
    return _table(("metric", "value"), [
        ("items", r.n_items), ("code levels (semantic)", r.n_levels), ("distinct SIDs", r.n_sids),
        ("collision rate (before resolution)", r.collision_rate), ("max items per SID", r.max_items_per_sid),
        ("mean items per SID", r.mean_items_per_sid), ("Gini of items per SID", r.gini_items_per_sid)])


def _levels(r: SIDReport) -> str:
    rows = [(i + 1, lv.codebook_size, lv.used, lv.usage, lv.dead_codes, lv.entropy_bits, lv.perplexity,
             lv.conditional_entropy_bits) for i, lv in enumerate(r.levels)]
    return ("H(c_l | c_<l) is the entropy left in a level's code once its prefix is known (bits).\n\n"
            + _table(("level", "K", "used", "usage", "dead", "entropy bits", "perplexity", "H(c_l | c_<l)"),
                     rows))


def _reconstruction(r: SIDReport) -> str:
    if r.reconstruction_rel_error is None:
        return _skipped("no decoded vectors (x_hat) given")
    return _table(("metric", "value"), [("mean ||x - x_hat||^2 / ||x||^2", r.reconstruction_rel_error)])


def _neighbours(r: SIDReport) -> str:
    if r.knn is None:
        return _skipped("no embeddings given, or fewer than two items")
    k = r.knn
    rows = [(d + 1, share, base, share / base if base else "n/a")
            for d, (share, base) in enumerate(zip(k.prefix_share, k.prefix_baseline))]
    return (f"Share of each item's {k.k} nearest neighbours (cosine) that share its first codes, over "
            f"{k.knn_sample:,} query items (seed {k.seed}); the baseline is the expected share under "
            f"random codes with the same code sizes.\n\n"
            + _table(("prefix depth", "share", "random baseline", "lift"), rows))


def _purity(r: SIDReport) -> str:
    if r.purity is None:
        return _skipped("no categories given")
    p = r.purity
    rows = [(d + 1, v) for d, v in enumerate(p.prefix_purity)]
    return (f"Size-weighted share of the majority category within each prefix, over {p.n_categories:,} "
            f"categories; one code for all items would score {p.baseline:.4f}.\n\n"
            + _table(("prefix depth", "purity"), rows))


def _churn(r: SIDReport) -> str:
    if r.churn is None:
        return _skipped("no previous map")
    c = r.churn
    rows = [("items in the previous map", c.n_previous), ("items in both maps", c.n_common),
            ("items added", c.n_added), ("items removed", c.n_removed),
            ("share of common items whose SID changed", c.sid_changed),
            ("share of common items whose first code changed", c.first_code_changed)]
    rows += [(f"share of common items whose first {d} codes changed", v)
             for d, v in enumerate(c.prefix_changed[1:], start=2)]
    return _table(("metric", "value"), rows)


def _resolved(r: SIDReport) -> str:
    if r.resolved is None:
        return _skipped("no final (resolved) codes given")
    f = r.resolved
    return _table(("metric", "value"), [
        ("code levels (with resolution)", f.n_levels), ("collision rate after resolution", f.collision_rate),
        ("share of items with a unique SID", f.unique_share), ("max items per SID", f.max_items_per_sid)])


def to_markdown(report: SIDReport, title: str, meta: Optional[dict[str, Any]] = None) -> str:
    """A markdown document: the title, optional `meta` key/values, and one section per SECTIONS entry
    (a section that was not computed says why)."""
    bodies = (_collisions, _levels, _reconstruction, _neighbours, _purity, _churn, _resolved)
    parts = [f"# {title}"]
    if meta:
        parts.append(_table(("field", "value"), [(k, "" if v is None else v) for k, v in meta.items()]))
    parts += [f"## {name}\n\n{body(report)}" for name, body in zip(SECTIONS, bodies)]
    return "\n\n".join(parts) + "\n"


def flat_metrics(report: SIDReport) -> dict[str, float]:
    """The headline numbers as flat name -> float (MLflow metrics); sections not computed are absent."""
    r = report
    out = {"n_items": r.n_items, "collision_rate": r.collision_rate, "max_items_per_sid": r.max_items_per_sid,
           "mean_items_per_sid": r.mean_items_per_sid, "gini_items_per_sid": r.gini_items_per_sid}
    for i, lv in enumerate(r.levels, start=1):
        out.update({f"level{i}_usage": lv.usage, f"level{i}_dead_codes": lv.dead_codes,
                    f"level{i}_entropy_bits": lv.entropy_bits,
                    f"level{i}_conditional_entropy_bits": lv.conditional_entropy_bits})
    if r.reconstruction_rel_error is not None:
        out["reconstruction_rel_error"] = r.reconstruction_rel_error
    if r.knn is not None:
        out.update({"knn_preservation": r.knn.preservation, "knn_baseline": r.knn.baseline})
    if r.purity is not None:
        out.update({"category_purity": r.purity.purity, "category_purity_baseline": r.purity.baseline})
    if r.churn is not None:
        out.update({"churn_sid_changed": r.churn.sid_changed,
                    "churn_first_code_changed": r.churn.first_code_changed,
                    "churn_items_added": r.churn.n_added, "churn_items_removed": r.churn.n_removed})
    if r.resolved is not None:
        out.update({"resolved_collision_rate": r.resolved.collision_rate,
                    "resolved_unique_share": r.resolved.unique_share})
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------
# Figures


def _figure(width: float = 7.0, height: float = 3.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def level_usage_figure(counts: np.ndarray, level: int, report: SIDReport):
    """Items per code at one level, most used first, against the uniform share n / K."""
    fig, ax = _figure()
    ordered = np.sort(counts)[::-1]
    ax.bar(np.arange(ordered.size), ordered, width=1.0, color="tab:blue")
    ax.axhline(counts.sum() / counts.size, color="tab:red", linestyle="--", label="uniform (n / K)")
    lv = report.levels[level]
    ax.set_title(f"Level {level + 1}: {lv.used}/{lv.codebook_size} codes used, perplexity {lv.perplexity:.1f}")
    ax.set_xlabel("code rank (most used first)")
    ax.set_ylabel("items")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def items_per_sid_figure(sizes: np.ndarray, report: SIDReport):
    """How many SIDs hold 1, 2, 3, ... items (log scale: the tail is what collisions cost)."""
    fig, ax = _figure()
    how_many = np.bincount(sizes)
    occupied = np.nonzero(how_many)[0]
    ax.bar(occupied, how_many[occupied], width=0.8, color="tab:green")
    ax.set_yscale("log")
    ax.set_title(f"Items per SID: max {report.max_items_per_sid}, Gini {report.gini_items_per_sid:.3f}")
    ax.set_xlabel("items sharing one SID")
    ax.set_ylabel("SIDs")
    fig.tight_layout()
    return fig


def plot_figures(report: SIDReport, codes: np.ndarray, level_sizes: Sequence[int]) -> dict[str, Any]:
    """name -> matplotlib Figure: 'level_<l>_usage' per level (1-based) and 'items_per_sid', from the
    same semantic codes [n, L] the report was built on."""
    codes = np.asarray(codes, dtype=np.int64)
    figures = {}
    for level, k in enumerate(level_sizes):
        counts = np.bincount(codes[:, level], minlength=int(k))
        figures[f"level_{level + 1}_usage"] = level_usage_figure(counts, level, report)
    sizes = np.bincount(prefix_ids(codes)[-1])
    figures["items_per_sid"] = items_per_sid_figure(sizes, report)
    return figures
