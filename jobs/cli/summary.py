"""The end-of-run summary: rows per table, SID metrics, recommender metrics, stage times."""
from __future__ import annotations

from jobs.lake import delta_io
from jobs.stages.context import RunContext
from schemas import tables as S


def table_rows(ctx: RunContext) -> list[tuple[str, int, int]]:
    out = []
    for spec in S.ALL_TABLES:
        if delta_io.table_exists(ctx.spark, ctx.settings, spec):
            out.append((spec.name, delta_io.read(ctx.spark, ctx.settings, spec).count(),
                        delta_io.latest_version(ctx.spark, ctx.settings, spec)))
    return out


def render(ctx: RunContext) -> None:
    from rich.console import Console
    from rich.table import Table

    console, results = Console(), ctx.results
    tables = Table(title="Delta tables (catalog database genrec)")
    for col in ("table", "rows", "version"):
        tables.add_column(col, justify="right" if col != "table" else "left")
    for name, rows, version in table_rows(ctx):
        tables.add_row(name, f"{rows:,}", str(version))
    console.print(tables)

    if "tokenize" in results:
        m = results["tokenize"]["metrics"]
        sid = Table(title=f"SID quality (map {results['tokenize']['map_version']})")
        sid.add_column("metric")
        sid.add_column("value", justify="right")
        life = results["tokenize"].get("lifecycle") or {}
        if life:
            sid.add_row("mode (reason)", f"{life['mode']} ({life['reason']})")
            sid.add_row("new / reassigned / retired / returned / moved",
                        " / ".join(str(life.get(k, 0)) for k in ("n_new", "n_reassigned", "n_retired",
                                                                 "n_returned", "n_moved")))
            if life.get("parent_map_version"):
                sid.add_row(f"churn vs {life['parent_map_version']}: full, prefix, first code",
                            f"{life['churn_full']:.4f}, {life['churn_prefix']:.4f}, {life['churn_first']:.4f}")
        sid.add_row("quantizer / collisions", f"{m['quantizer']} / {m['collisions']}")
        sid.add_row("items", f"{m['n_items']:,}")
        sid.add_row("collision rate before resolution", f"{m['collision_rate']:.4f}")
        sid.add_row("max items per SID before resolution", str(m["max_items_per_sid"]))
        sid.add_row("unique SIDs after resolution", f"{m['unique_sids_after']:,}")
        if m["collisions"] != "dedup_digit":
            sid.add_row("items moved to a free SID", f"{m['moved']:,}")
        sid.add_row("reconstruction rel. error", f"{m['reconstruction_rel_error']:.4f}")
        report = m.get("report") or {}
        if report.get("knn"):
            sid.add_row("kNN preservation (random)",
                        f"{report['knn']['preservation']:.3f} ({report['knn']['baseline']:.3f})")
        for i, lv in enumerate(m["levels"]):
            sid.add_row(f"level {i}: used / K, entropy bits",
                        f"{lv['used']}/{lv['codebook_size']}, {lv['entropy_bits']:.2f}")
        console.print(sid)

    if "train" in results:
        r = results["train"]
        rec = Table(title=f"Recommender {r['registered_model']} v{r['model_version']} [{r.get('alias', '-')}] "
                          f"(item_sid v{r['item_sid_version']}{', reused' if not r['trained'] else ''}); "
                          f"'.excl': the user's history ranked out")
        rec.add_column("metric")
        rec.add_column("value", justify="right")
        for k, v in sorted(r["metrics"].items()):
            rec.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        console.print(rec)

    if "recommend" in results:
        r = results["recommend"]
        console.print(f"Recommendations for {r['as_of_date']}: {r['users']:,} users, {r['rows']:,} rows from "
                      f"{r['model']} v{r['model_version']} (map {r['map_version']})")

    times = Table(title="Stage wall time")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for name, r in results.items():
        times.add_row(name, f"{r['seconds']:.1f}")
    times.add_row("total", f"{sum(r['seconds'] for r in results.values()):.1f}")
    console.print(times)
    console.print('Query the result:  [bold]genrec sql "SELECT * FROM genrec.item_sid LIMIT 5"[/bold]')
