"""Advisory locks between genrec processes of one lakehouse (lakehouse/_locks/NAME.lock).

Publishing is a critical section: it registers a tokenizer version in MLflow, MERGEs item_sid and
appends to sid_map_versions, and two runs doing so at once would duplicate a tokenizer version or
interleave two maps. The lock is a kernel file lock (flock), so a process that dies, even by SIGKILL,
releases it at once and leaves nothing to clean up. It serialises processes on one host, which is
how the CLI and Airflow's LocalExecutor run; across hosts Delta's optimistic concurrency still
rejects the second of two conflicting commits.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone


class LockTimeout(RuntimeError):
    """Another process held the lock for longer than this one would wait."""


@contextmanager
def exclusive(settings, name: str, wait_s: float = 1800.0,
              echo: Callable[[str], None] = lambda m: print(m, flush=True)) -> Iterator[None]:
    """Holds lakehouse/_locks/<name>.lock for the block; waits up to wait_s for another holder."""
    path = settings.lakehouse / "_locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                if time.monotonic() > deadline:
                    raise LockTimeout(f"the {name} lock ({path}) is still held by {holder} after "
                                      f"{wait_s:.0f} s; is that run stuck?") from None
                if not told:
                    echo(f"[genrec] waiting for the {name} lock, held by {holder}")
                    told = True
                time.sleep(0.5)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- leases
#
# A lock that must outlive a process: Airflow runs each task of a DAG run in a process of its own, and
# the stages from user sequences to the batch recommendations read and write tables that belong to
# the whole lakehouse (the staged map among them). A lease names the DAG run that holds them; the
# run's first such task takes it and a teardown task gives it back. A holder that can no longer give
# it back (its run ended while a task was killed) is told by `ended`, which the caller supplies.


def _lease_path(settings, name: str):
    return settings.lakehouse / "_locks" / f"{name}.lease"


def lease_holder(settings, name: str) -> dict | None:
    path = _lease_path(settings, name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def take_lease(settings, name: str, owner: dict, ended: Callable[[dict], bool]) -> dict | None:
    """Takes the lease for `owner` if it is free, already owner's, or its holder has ended.

    -> None once owner holds it, else the holder's record. The check and the write happen under
    the kernel lock of the same name, so two takers never both succeed."""
    from jobs.lake import files

    with exclusive(settings, f"{name}.lease", wait_s=120.0, echo=lambda m: None):
        holder = lease_holder(settings, name)
        if holder is not None and holder.get("owner") != owner and not ended(holder["owner"]):
            return holder
        record = {"owner": owner, "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if holder is not None and holder.get("owner") != owner:
            record["took_over_from"] = holder["owner"]
        files.write_text(_lease_path(settings, name), json.dumps(record, sort_keys=True))
        return None


def give_back_lease(settings, name: str, owner: dict) -> bool:
    """Frees the lease if `owner` holds it; -> whether it did (a lease taken over is left alone)."""
    with exclusive(settings, f"{name}.lease", wait_s=120.0, echo=lambda m: None):
        holder = lease_holder(settings, name)
        if holder is None or holder.get("owner") != owner:
            return False
        _lease_path(settings, name).unlink()
        return True
