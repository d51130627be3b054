"""Landing: the dataset named by data.dataset, written once as parquet in the raw contract under
lakehouse/_landing/<layout>-<digest>/ (events/ partitioned by ingest_date, items/).

The ingest stage always reads the landed copy, whatever the source, so cleaning sees one layout.
A marker file records what was landed, keyed by the input's content (a sha256 of every file read):
the same input on the same logical date is not landed again, and a changed file always is. A file's
hash is reused while its size and modification time are those the marker recorded.
Real datasets land with the run's logical date as their ingest_date.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jobs.lake import files
from jobs.sources import datasets
from schemas import tables as S

MARKER = "_landed.json"


def landing_folder(settings, spec: str) -> Path:
    """lakehouse/_landing/synthetic, or <layout>-<8 hex of the spec> for the adapters' layouts."""
    if spec == "synthetic":
        return settings.landing / "synthetic"
    layout, _ = datasets.split_spec(spec)
    return settings.landing / f"{layout}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def land(ctx) -> dict[str, Path]:
    """Paths of the landed events and items for the run's dataset, landing them first if needed."""
    from genrec_core.fingerprint import fingerprint

    spec, cfg = ctx.config.data.dataset, ctx.config.data
    layout, path = datasets.split_spec(spec)
    if layout == "landed":  # already in the raw contract, e.g. written by `genrec generate`
        datasets.check(spec)
        root = Path(path).expanduser()
        return {"events": root / "events", "items": root / "items"}
    folder = landing_folder(ctx.settings, spec)
    paths = {"events": folder / "events", "items": folder / "items"}
    synthetic = layout == "synthetic"
    marker = folder / MARKER
    landed = json.loads(marker.read_text()) if marker.is_file() else {}
    found = None if synthetic else datasets.resolve(spec, cfg.source)
    hashes = {} if synthetic else content_hashes(found.events + found.items, landed.get("files", {}))
    key = fingerprint(spec, cfg.synthetic if synthetic else None, ctx.config.seed,
                      None if synthetic else ctx.logical_time.date(), None if synthetic else cfg.source,
                      sorted((path, h[2]) for path, h in hashes.items()))
    if landed.get("key") == key:
        return paths
    if synthetic:
        from jobs.sources.generator import generate

        generate(ctx.spark, cfg.synthetic, ctx.config.seed, folder)
    else:
        _land_files(ctx.spark, found, cfg.source, ctx.logical_time.date().isoformat(), folder)
    files.write_text(marker, json.dumps({"key": key, "dataset": spec, "layout": layout, "files": hashes},
                                        sort_keys=True))
    return paths


def content_hashes(paths: list[str], known: dict) -> dict[str, list]:
    """path -> [size, mtime_ns, sha256] of every file under `paths` (files or folders). A hash in
    `known` is reused while the file's size and mtime match it."""
    out = {}
    for top in paths:
        top_path = Path(top)
        for f in sorted([top_path] if top_path.is_file() else (p for p in top_path.rglob("*") if p.is_file())):
            stat = f.stat()
            seen = known.get(str(f))
            if seen and seen[0] == stat.st_size and seen[1] == stat.st_mtime_ns:
                out[str(f)] = seen
                continue
            digest = hashlib.sha256()
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[str(f)] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
    return out


def _land_files(spark, found: datasets.ResolvedDataset, source, day: str, folder: Path) -> None:
    from jobs.sources import adapters

    generic = found.layout.events_layout in adapters.GENERIC_LAYOUTS
    mapping = ({"mapping": source.event_columns, "constants": source.event_constants, "sep": source.sep}
               if generic else {})
    events = adapters.read_events(spark, found.layout.events_layout, found.events, day, **mapping)
    mapping = ({"mapping": source.item_columns, "constants": source.item_constants, "sep": source.sep}
               if generic else {})
    items = adapters.read_items(spark, found.layout.items_layout, found.items, **mapping)
    events.write.mode("overwrite").partitionBy("ingest_date").parquet(str(folder / "events"))
    items.write.mode("overwrite").parquet(str(folder / "items"))


def read_landed(spark, paths: dict[str, Path]):
    """(raw events, raw items) frames of a landed folder, in the raw contract's column order."""
    from pyspark.sql import functions as F

    events = spark.read.option("basePath", str(paths["events"])).parquet(str(paths["events"]))
    # Partition discovery types ingest_date as a date; the contract keeps it a string.
    events = events.withColumn("ingest_date", F.col("ingest_date").cast("string"))
    return events.select(*S.RAW_EVENTS.column_names), spark.read.parquet(str(paths["items"]))
