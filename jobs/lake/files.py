"""Atomic writes of files and folders: a reader sees the old content or the new, never a half-written one."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A fresh hidden name next to `path` for writing before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def clear_leftovers(path: Path) -> None:
    """Removes what a killed write of `path` left beside it (temp copies, a swapped-out old copy)."""
    path = Path(path)
    for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*"):
        for stale in path.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` beside `path` and renames it into place (os.replace is atomic on one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_folder(tmp: Path, out: Path) -> None:
    """Swaps the finished folder `tmp` in for `out` with two renames; a crash between them leaves
    `out` missing (and the old copy beside it), never a mix of old and new files."""
    tmp, out = Path(tmp), Path(out)
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_folder(out: Path, files: Mapping[str, bytes]) -> None:
    """Writes {name: bytes} into a fresh folder beside `out`, then swaps it in whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(out)
    tmp = temp_beside(out)
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_folder(folder: Path, names) -> dict[str, bytes]:
    """{name: bytes} of the named files in `folder`; a missing one is a FileNotFoundError naming it."""
    folder = Path(folder)
    return {name: (folder / name).read_bytes() for name in names}
