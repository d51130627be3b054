"""Dataset specs (`--dataset LAYOUT:PATH`): which event and catalogue adapters read which files under PATH.

One table, `DATASETS`, lists every layout `genrec run` and `genrec ingest` accept, with what each
expects in PATH; the CLI's --help and its error messages are written from it. `resolve` turns a
spec into the adapters' inputs and fails before Spark starts when PATH lacks the files.
"""
from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


class DatasetError(ValueError):
    """The dataset spec names no known layout, or PATH does not hold what the layout reads."""


@dataclass(frozen=True)
class DatasetLayout:
    name: str
    events_layout: str  # a layout of jobs.sources.adapters.EVENT_LAYOUTS
    events: tuple[str, ...]  # globs under PATH (or PATH itself when it is a file), first match wins
    items_layout: str  # a layout of jobs.sources.adapters.ITEM_LAYOUTS
    items: tuple[str, ...]
    expects: str  # what PATH must hold, for --help
    single_file: bool = False  # PATH may be one file that holds both sides
    events_exclude: str = ""  # a glob of files under PATH that are never events


_GENERIC = "the files named by data.source.events / data.source.items under PATH, with the column mapping in data.source"

DATASETS: dict[str, DatasetLayout] = {d.name: d for d in (
    DatasetLayout("p5", "p5", ("sequential_data.txt",), "p5_items", ("items.jsonl",),
                  "a P5 folder: sequential_data.txt (user item item ...) and items.jsonl"),
    DatasetLayout("lcrec", "lcrec", ("*.inter.json",), "lcrec_items", ("*.item.json",),
                  "an LC-Rec folder: NAME.inter.json ({user: [item, ...]}, oldest first) and NAME.item.json "
                  "({item: {title, description, brand, categories}})"),
    DatasetLayout("taobao", "taobao", ("UserBehavior*.csv", "*.csv"), "taobao", ("UserBehavior*.csv", "*.csv"),
                  "UserBehavior.csv (user,item,category,behavior,timestamp), or a folder of such CSV files; "
                  "the catalogue is derived from the same file", single_file=True),
    DatasetLayout("amazon", "amazon_reviews", ("reviews_*.json*", "*.json*"), "amazon_meta", ("meta_*.json*",),
                  "an Amazon reviews folder: the review JSON lines (reviews_*.json, or Category_5.json) and "
                  "meta_*.json (2014 Python-literal lines are read as they are)", events_exclude="meta_*"),
    DatasetLayout("movielens", "movielens", ("ratings.dat",), "movielens_movies", ("movies.dat",),
                  "a MovieLens 1M/10M folder: ratings.dat and movies.dat ('::'-separated)"),
    DatasetLayout("movielens_100k", "movielens_100k", ("u.data",), "movielens_100k_items", ("u.item",),
                  "a MovieLens 100k folder: u.data (tab-separated) and u.item ('|'-separated)"),
    DatasetLayout("recbole", "recbole", ("*.inter",), "recbole_items", ("*.item",),
                  "a RecBole atomic folder: NAME.inter and NAME.item (tab-separated, typed header)"),
    DatasetLayout("parquet", "parquet", (), "parquet", (), _GENERIC),
    DatasetLayout("jsonl", "jsonl", (), "jsonl", (), _GENERIC),
    DatasetLayout("csv", "csv", (), "csv", (), _GENERIC + " (with a header; data.source.sep)"),
)}
BUILT_IN = {"synthetic": "the built-in deterministic synthetic dataset (data.synthetic)",
            "landed": "landed:PATH, a folder with events/ and items/ already in the raw contract "
                      "(the --out of `genrec generate`)"}


@dataclass(frozen=True)
class ResolvedDataset:
    layout: DatasetLayout
    root: Path
    events: list[str]
    items: list[str]


def help_text() -> str:
    """One line per accepted spec, for the CLI's --help."""
    lines = [f"'synthetic': {BUILT_IN['synthetic']}", f"'landed:PATH': {BUILT_IN['landed'].split(', ', 1)[1]}"]
    lines += [f"'{d.name}:PATH': {d.expects}" for d in DATASETS.values()]
    return "; ".join(lines) + "."


def split_spec(spec: str) -> tuple[str, Optional[str]]:
    """'p5:/data/beauty' -> ('p5', '/data/beauty'); 'synthetic' -> ('synthetic', None)."""
    if spec == "synthetic":
        return spec, None
    layout, sep, path = spec.partition(":")
    known = ["synthetic", "landed", *DATASETS]
    if not sep or layout not in known[1:]:
        raise DatasetError(f"data.dataset {spec!r}: expected 'synthetic' or LAYOUT:PATH with LAYOUT one of "
                           f"{', '.join(known[1:])}")
    if not path:
        raise DatasetError(f"data.dataset {spec!r}: the path after '{layout}:' is empty")
    return layout, path


def check(spec: str, source=None) -> None:
    """Fails with a DatasetError unless the spec's files are there (before any Spark work)."""
    layout, path = split_spec(spec)
    if layout == "landed":
        for name in ("events", "items"):
            if not (Path(path).expanduser() / name).is_dir():
                raise DatasetError(f"dataset error: {Path(path) / name} not found (expected `genrec generate` output)")
    elif layout != "synthetic":
        resolve(spec, source)


def resolve(spec: str, source=None) -> ResolvedDataset:
    """The files the adapters read for a LAYOUT:PATH spec; `source` is the config's data.source
    (the generic layouts' file names)."""
    name, path = split_spec(spec)
    if name not in DATASETS:
        raise DatasetError(f"data.dataset {spec!r} is not read through the adapters")
    layout, root = DATASETS[name], Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset error: {root} does not exist (expected {layout.expects})")
    events_globs = layout.events or ((source.events,) if source else ())
    items_globs = layout.items or ((source.items,) if source else ())
    if root.is_file() and not layout.single_file:
        raise DatasetError(f"dataset error: {root} is a file; the '{name}' layout expects a folder with "
                           f"{layout.expects}")
    return ResolvedDataset(layout, root, _find(root, events_globs, "events", layout, layout.events_exclude),
                           _find(root, items_globs, "items", layout))


def _find(root: Path, patterns: tuple[str, ...], what: str, layout: DatasetLayout, exclude: str = "") -> list[str]:
    if root.is_file():
        return [str(root)]
    for pattern in patterns:
        found = sorted(p for p in glob.glob(str(root / pattern))
                       if not (exclude and fnmatch.fnmatch(Path(p).name, exclude)))
        if found:
            return found
    raise DatasetError(f"dataset error: no {what} file matching {' or '.join(patterns) or '(none given)'} "
                       f"in {root} (the '{layout.name}' layout expects {layout.expects})")
