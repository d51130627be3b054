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
