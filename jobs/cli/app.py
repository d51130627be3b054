"""The `genrec` command line (typer): run, ingest, sql, catalog, config, report and generate."""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import List, Optional

import typer

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import registry

app = typer.Typer(help="genrec: Semantic IDs and a generative recommender, as a batch pipeline on "
                       "Spark + Delta Lake + MLflow. Outputs go to ./lakehouse (Delta tables, catalog "
                       "database 'genrec') and ./mlruns (MLflow sqlite store) under --home.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

HOME_HELP = "Folder holding lakehouse/ and mlruns/ (default: current folder; env GENREC_HOME)."
PROFILE_HELP = "Config profile: demo (default), tiny (tests), cpu (real data, small budget), gpu."
MODEL_HELP = ("Recommender to train: sid_item (decoder-only, one position per item, generates SIDs level by "
              "level; default), sid_gpt (decoder-only over flattened SID tokens), tiger (T5 encoder-decoder), "
              "sasrec (item-id baseline) or popularity; each is its own MLflow model.")
SET_HELP = "Override one config key, e.g. --set train.max_steps=200 (repeatable)."
CONFIG_HELP = "A TOML or JSON file with config sections (unknown keys are errors)."
TOKENIZER_HELP = "Quantizer: " + registry.describe(registry.quantizer_summaries(), TokenizeConfig.quantizer) + "."
EMBEDDER_HELP = ("Item vectors: text (default; local HF encoder), als (Spark ALS item factors), fused "
                 "(text + ALS), famae (ReSID field-aware masked auto-encoder over histories).")
COLLISIONS_HELP = ("How items sharing a SID are told apart: "
                   + registry.describe(registry.COLLISIONS, TokenizeConfig.collisions) + ".")

MODE_HELP = ("How the SID map evolves: auto (default; assign, unless there is no published map, the "
             "tokenizer settings changed, or a drift trigger fires: then refit), assign (place only new and "
             "changed items under the published tokenizer; no existing item moves), refit (fit a new "
             "tokenizer, aligned to the published codes unless tokenize.align=false).")
ACCEPT_CHURN_HELP = ("Publish even if more than gate.max_churn of the unchanged old items change SID (a "
                     "deliberate refit); recorded as churn_accepted in sid_map_versions.")
LOGICAL_DATE_HELP = ("The night this run stands for, YYYY-MM-DD (default: now). It stamps landing, "
                     "retirements and the publish, so a night can be rerun or simulated.")


def _dataset_help() -> str:
    from jobs.sources.datasets import help_text

    return "Dataset spec: " + help_text()


DATASET_HELP = _dataset_help()


def _config(profile: str, config_file: Optional[Path], dataset: Optional[str], sets: List[str],
            choices: tuple[str, ...] = ()):
    from genrec_core.config import ConfigError, load_config

    file_data = None
    if config_file:
        text = config_file.read_text()
        file_data = tomllib.loads(text) if config_file.suffix == ".toml" else json.loads(text)
    overrides = tuple(sets) + ((f"data.dataset={dataset}",) if dataset else ()) + choices
    try:
        return load_config(profile, file_data, overrides)
    except ConfigError as err:
        _fail(f"config error: {err}", 2)


def _fail(message: str, code: int):
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(code)


def _home(home: Optional[Path]) -> None:
    if home:
        from jobs.lake.settings import use_home

        use_home(home)


def _logical_time(text: Optional[str]):
    """--logical-date YYYY-MM-DD as midnight UTC; None keeps the run's start time."""
    if text is None:
        return None
    from datetime import date, datetime, time, timezone

    try:
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=timezone.utc)
    except ValueError:
        _fail(f"--logical-date must be YYYY-MM-DD, got {text!r}", 2)


def _check_dataset(cfg) -> None:
    from jobs.sources.datasets import DatasetError, check

    try:
        check(cfg.data.dataset, cfg.data.source)
    except DatasetError as err:
        _fail(str(err), 2)


@app.command()
def run(dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
        profile: str = typer.Option("demo", help=PROFILE_HELP),
        config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, exists=True),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        stages: Optional[str] = typer.Option(None, help="Comma-separated subset of stages to run, in order."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help=TOKENIZER_HELP),
        embedder: Optional[str] = typer.Option(None, "--embedder", help=EMBEDDER_HELP),
        collisions: Optional[str] = typer.Option(None, "--collisions", help=COLLISIONS_HELP),
        mode: Optional[str] = typer.Option(None, "--mode", help=MODE_HELP),
        model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
        accept_churn: bool = typer.Option(False, "--accept-churn", help=ACCEPT_CHURN_HELP),
        logical_date: Optional[str] = typer.Option(None, "--logical-date", help=LOGICAL_DATE_HELP),
        home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """Run the pipeline's stages in order: ingest, sequences, embed, tokenize, gate, publish, train (+ evaluate).

    --tokenizer, --embedder and --collisions pick the algorithms (stored in MLflow and sid_map_versions).
    --mode says how the SID map evolves from the published one (auto by default: new items are
    placed under the published tokenizer, and no existing item moves, unless a refit is due).

    Reruns are idempotent: the same input leaves every table's rows and every item's SID unchanged.
    """
    from jobs.cli import summary
    from jobs.stages import pipeline

    _home(home)
    choices = tuple(f"{key}={value}" for key, value in (("tokenize.quantizer", tokenizer),
                                                         ("embed.embedder", embedder),
                                                         ("tokenize.collisions", collisions),
                                                         ("tokenize.mode", mode),
                                                         ("train.model", model)) if value)
    choices += ("gate.accept_churn=true",) if accept_churn else ()
    cfg = _config(profile, config, dataset, set_, choices)
    _check_dataset(cfg)
    chosen = tuple(s.strip() for s in stages.split(",")) if stages else pipeline.STAGES
    unknown = [s for s in chosen if s not in pipeline.STAGES]
    if unknown:
        _fail(f"unknown stage(s) {unknown}; stages are {', '.join(pipeline.STAGES)}", 2)
    ctx = pipeline.make_context(cfg, _logical_time(logical_date))
    _run_stages(ctx, chosen)
    summary.render(ctx)


def _run_stages(ctx, stages) -> None:
    """Runs the stages; a stage's expected failure (bad input, a failed check) is a red message and exit 3."""
    from jobs.stages import pipeline

    try:
        pipeline.run(ctx, stages, echo=lambda m: typer.secho(m, fg="cyan"))
    except pipeline.expected_failures() as err:
        _fail(f"{type(err).__name__}: {err}", 3)


@app.command()
def ingest(date_: Optional[str] = typer.Option(None, "--date", help=(
               "Logical date YYYY-MM-DD: rewrite only the event_date partitions this date owns (itself and "
               "the dates of late events that landed on it). Without it, every landed row is cleaned.")),
           dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
           profile: str = typer.Option("demo", help=PROFILE_HELP),
           config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, exists=True),
           set_: List[str] = typer.Option([], "--set", help=SET_HELP),
           sequences: bool = typer.Option(True, help="Also run the sequences stage (k-core and splits)."),
           home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """The ingest stage alone: land the dataset, quarantine bad rows with a reason, remove duplicates,
    bots and near-duplicates, write interactions_clean and the exact ingest_audit, then run the
    checkpoint (and, unless --no-sequences, the sequences stage).

    A rerun for the same --date converges to the same table; the run fails (exit 3) without writing its
    audit if the accounting does not balance or the great-expectations checkpoint fails.
    """
    from datetime import date as _date

    from jobs.stages import pipeline

    _home(home)
    cfg = _config(profile, config, dataset, set_)
    _check_dataset(cfg)
    ctx = pipeline.make_context(cfg)
    if date_:
        try:
            ctx.partition_date = _date.fromisoformat(date_)
        except ValueError:
            _fail(f"--date must be YYYY-MM-DD, got {date_!r}", 2)
    stages = ("ingest", "sequences") if sequences else ("ingest",)
    _run_stages(ctx, stages)
    for stage in stages:
        for row in ctx.results[stage].get("audit", []):
            typer.echo(f"{row['stage']:>9} {row['source']:<6} in {row['input_rows']:>12,} = out {row['output_rows']:>12,}"
                       f" + quarantined {row['quarantined_rows']:>10,} + removed {row['removed_rows']:>10,}"
                       f"  reasons {row['by_reason']} rules {row['by_rule']}")


@app.command()
def recommend(model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
              logical_date: Optional[str] = typer.Option(None, "--logical-date", help=LOGICAL_DATE_HELP),
              profile: str = typer.Option("demo", help=PROFILE_HELP),
              config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, exists=True),
              set_: List[str] = typer.Option([], "--set", help=SET_HELP),
              home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """The recommend stage alone: the champion of the chosen recommender scores every user with a test
    split on Spark executors and writes train.recommend_k active items each to genrec.recommendations,
    in the partition of the logical date (today by default). A rerun for a date replaces only that date.

    Example: genrec sql "SELECT * FROM genrec.recommendations WHERE user_id = '1' ORDER BY rank"
    """
    from jobs.stages import pipeline

    _home(home)
    cfg = _config(profile, config, None, set_, (f"train.model={model}",) if model else ())
    ctx = pipeline.make_context(cfg, _logical_time(logical_date))
    _run_stages(ctx, ("recommend",))
    r = ctx.results["recommend"]
    typer.echo(f"recommendations for {r['as_of_date']}: {r['users']:,} users x {cfg.train.recommend_k} items = "
               f"{r['rows']:,} rows from {r['model']} v{r['model_version']} on map {r['map_version']} "
               f"({r['users_with_test_split']:,} users have a test split; {r['seconds']:.1f} s)")


@app.command()
def sql(query: str = typer.Argument(..., help="Spark SQL, e.g. \"SELECT * FROM genrec.item_sid LIMIT 5\"."),
        limit: int = typer.Option(50, help="Rows to print."),
        output: str = typer.Option("table", help="table (for people) or csv (for scripts)."),
        home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """Run Spark SQL against the persistent genrec catalogue (Delta time travel works:
    SELECT * FROM genrec.item_sid VERSION AS OF 0)."""
    from jobs.lake.settings import load_settings
    from jobs.lake.spark_session import get_spark

    if output not in ("table", "csv"):
        typer.secho("--output must be 'table' or 'csv'", fg="red", err=True)
        raise typer.Exit(2)
    _home(home)
    spark = get_spark(load_settings(), app_name="genrec-sql")
    df = spark.sql(query)
    rows = df.limit(limit + 1).collect()
    cells = [["" if v is None else str(v) for v in r] for r in rows[:limit]]
    if output == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(df.columns)
        writer.writerows(cells)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*df.columns)
        for row in cells:
            table.add_row(*row)
        Console(width=200).print(table)
    if len(rows) > limit:
        typer.echo(f"(showing the first {limit} rows; use --limit for more)", err=True)


@app.command()
def models(home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """List the registered tokenizer and recommender versions: aliases (champion, challenger), test and
    validation Recall@10 / NDCG@10, the map version and the data version each was trained on.

    Load one with MLflow alone, e.g. mlflow.pyfunc.load_model("models:/genrec-tokenizer@champion").
    """
    from rich.console import Console
    from rich.table import Table

    from jobs.lake import mlflow_models
    from jobs.lake.settings import load_settings

    _home(home)
    rows = mlflow_models.list_versions(mlflow_models.client(load_settings()))
    if not rows:
        typer.echo("no registered models yet: run `genrec run` first")
        return
    table = Table(title="Registered models")
    numeric = ("version", "recall@10", "ndcg@10", "valid recall@10")
    for col in ("model", "version", "aliases", "recall@10", "ndcg@10", "valid recall@10", "map version",
                "data version", "created"):
        table.add_column(col, justify="right" if col in numeric else "left")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        table.add_row(r["model"], r["version"], r["aliases"] or "-", fmt(r["recall@10"]), fmt(r["ndcg@10"]),
                      fmt(r["valid_recall@10"]), r["map_version"] or "-", r["data_version"] or "-", r["created"])
    Console(width=200).print(table)


@app.command("config")
def show_config(profile: str = typer.Option("demo", help=PROFILE_HELP),
                config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, exists=True),
                dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
                set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """Print the resolved config as JSON (defaults < profile < --config file < --set)."""
    typer.echo(json.dumps(_config(profile, config, dataset, set_).to_dict(), indent=2, sort_keys=True))


@app.command()
def report(map_version: Optional[str] = typer.Option(
               None, "--map-version", help="Published map version to report on (default: the map now in "
                                           "genrec.item_sid). `genrec sql \"SELECT map_version, published_at "
                                           "FROM genrec.sid_map_versions\"` lists them."),
           out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.json, report.md and "
                                                                   "plots/*.png (default: HOME/reports/MAP_VERSION)."),
           home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """SID quality report of a published map (JSON, markdown, plots; logged to MLflow).

    Covers collisions and their Gini, code usage, entropy and H(c_l | c_<l) per level, reconstruction
    error, kNN neighbourhood preservation against a random baseline, category purity, churn against the
    previous map version, and figures after collision resolution. MLflow experiment: genrec-reports.
    """
    from rich.console import Console
    from rich.markdown import Markdown

    from jobs.stages import map_report, pipeline

    _home(home)
    ctx = pipeline.make_context(_config("demo", None, None, []))
    try:
        result = map_report.main(ctx, map_version=map_version, out_dir=out)
    except map_report.NoPublishedMap as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2)
    Console(width=120).print(Markdown(result["markdown"]))
    typer.secho(f"report written to {result['out_dir']} (MLflow run {result['mlflow_run_id']})", fg="green")


def _count(value: Optional[str], name: str) -> Optional[int]:
    """'100000000', '1e8' or '10_000_000' -> int."""
    if value is None:
        return None
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        number = -1.0
    if number < 0 or number != int(number):
        typer.secho(f"{name} must be a whole number such as 1000000 or 1e6, got {value!r}", fg="red", err=True)
        raise typer.Exit(2)
    return int(number)


@app.command("generate")
def generate_cmd(out: Path = typer.Option(..., "--out", help=(
                     "Folder to write: events/ (parquet partitioned by ingest_date), items/ and "
                     "_manifest.json. A rerun replaces it whole (written aside, then renamed).")),
                 events: Optional[str] = typer.Option(None, "--events", help=(
                     "Clean human events, exactly (e.g. 1e7). Without --users/--items those scale with it, "
                     "keeping the preset's events per user and per item.")),
                 users: Optional[str] = typer.Option(None, "--users", help="Users, bots included."),
                 items: Optional[str] = typer.Option(None, "--items", help="Catalogue size."),
                 seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: config's seed)."),
                 profile: str = typer.Option("demo", help=PROFILE_HELP),
                 config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, exists=True),
                 set_: List[str] = typer.Option([], "--set", help=(
                     "Override a config key, e.g. --set data.synthetic.bot_user_rate=0.02 (repeatable).")),
                 home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """Generate a synthetic raw dataset with Spark: N users, M items and E events.

    Items form a Top > Sub > Leaf category tree with Zipf popularity inside each sub-category and
    realistic titles, brands, prices and attributes. Humans browse in sessions, mostly in 1-2
    favourite sub-categories, and their taste drifts over time. The log is messy on purpose:
    bot users (bursts of sub-second events), exact and near-duplicates, malformed rows (null ids, bad
    or out-of-window times, unknown event types, bad ratings), unknown items and late arrivals.

    The same config and seed give identical rows on any machine and partitioning. _manifest.json
    holds the config, the seed and the exact row count of every kind, which cleaning must recover.
    The small default (--profile demo, no sizes) is the dataset the demo pipeline trains on;
    10^8 events take about 2 GB of disk.
    """
    import time

    from genrec_core.data.synthetic import resize
    from jobs.lake.settings import load_settings
    from jobs.lake.spark_session import get_spark
    from jobs.sources.generator import generate

    _home(home)
    cfg = _config(profile, config, None, set_)
    syn = cfg.data.synthetic
    syn = resize(syn, _count(events, "--events"), _count(users, "--users"), _count(items, "--items"))
    started = time.perf_counter()
    spark = get_spark(load_settings(), app_name="genrec-generate", catalogue=False)
    try:
        result = generate(spark, syn, cfg.seed if seed is None else seed, out,
                          log=lambda message: typer.secho(message, fg="cyan"))
    except ValueError as err:
        typer.secho(f"config error: {err}", fg="red", err=True)
        raise typer.Exit(2)
    files = list(out.rglob("*.parquet"))
    size = sum(p.stat().st_size for p in files)
    from rich.console import Console
    from rich.table import Table

    table = Table("rows", "count")
    for key, value in result.manifest["counts"].items():
        table.add_row(key, f"{value:,}")
    Console(width=120).print(table)
    typer.secho(f"wrote {out}: {len(files)} parquet files, {size / 2**20:,.1f} MiB, in "
                f"{time.perf_counter() - started:.1f} s (Spark start-up included)", fg="green")


CATALOG_ACTIONS = ("start", "stop", "status")


@app.command()
def catalog(action: str = typer.Argument(..., help="start, stop or status."),
            port: Optional[int] = typer.Option(None, help="Port on 127.0.0.1 for `start` (default: a free one)."),
            home: Optional[Path] = typer.Option(None, help=HOME_HELP)):
    """The catalogue server: many processes share the lakehouse's catalogue while it runs.

    Without it the Hive metastore (Derby, in lakehouse/_metastore) is opened embedded, by one process
    at a time: `genrec sql` then waits for a running `genrec run` to end. `genrec catalog start`
    serves the same files from a Derby network server on 127.0.0.1 and records its pid and port in
    lakehouse/_catalog_server.json; every genrec process of the lakehouse connects to it from then on,
    until `genrec catalog stop`. Start it while no genrec process is running on the lakehouse.
    `infra/airflow.sh start` starts it for the Airflow tasks' lakehouse.
    """
    from jobs.lake import catalog_server
    from jobs.lake.settings import load_settings

    if action not in CATALOG_ACTIONS:
        _fail(f"unknown action {action!r}; use one of {', '.join(CATALOG_ACTIONS)}", 2)
    _home(home)
    settings = load_settings()
    try:
        if action == "start":
            r = catalog_server.start(settings, port=port)
            state = "already running" if r["already_running"] else "started"
            typer.echo(f"catalogue server {state}: {r['host']}:{r['port']} (pid {r['pid']}) serving "
                       f"{r['metastore']}; log {r['log']}")
        elif action == "stop":
            r = catalog_server.stop(settings)
            typer.echo("catalogue server stopped (pid {})".format(r["pid"]) if r else
                       "no catalogue server was running; processes open the catalogue embedded")
        else:
            r = catalog_server.address(settings)
            if r is None:
                typer.echo(f"no catalogue server for {settings.lakehouse}: processes open the catalogue "
                           f"embedded, one at a time")
                raise typer.Exit(3)
            typer.echo(f"catalogue server running: {r['host']}:{r['port']} (pid {r['pid']}) serving {r['metastore']}")
    except catalog_server.CatalogServerError as err:
        _fail(str(err), 1)


def main() -> None:  # pragma: no cover
    from jobs.lake.catalog_server import CatalogServerError

    try:
        app(prog_name="genrec")
    except CatalogServerError as err:  # the catalogue is busy or its server unreachable: no traceback
        typer.secho(str(err), fg="red", err=True)
        sys.exit(4)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
