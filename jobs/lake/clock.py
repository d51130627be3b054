"""The one step timer: wall time per named step, logged as each ends, with Spark task progress while it runs.

The wall clock is read here and in no algorithm: a step's seconds go to logs and stage results,
never into an artifact or a table's content."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Optional


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepTimer:
    """`with timer("write"):` times a step; `timer.seconds` maps each step to its wall time.

    With a Spark session, a watcher thread logs the active stages' finished/total tasks every
    `every` seconds, so a step that runs for many minutes shows that it is moving."""

    def __init__(self, prefix: str, log: Optional[Callable[[str], None]] = None, spark=None,
                 every: float = 5.0):
        self.prefix, self.log, self.spark, self.every = prefix, log or _stderr, spark, every
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        done = threading.Event()
        watcher = None
        if self.spark is not None:
            watcher = threading.Thread(target=self._watch, args=(name, t0, done), daemon=True)
            watcher.start()
        try:
            yield
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        self.log(f"[{self.prefix}] {name}: {self.seconds[name]} s")

    def _watch(self, name: str, t0: float, done: threading.Event) -> None:
        tracker, last = self.spark.sparkContext.statusTracker(), None
        while not done.wait(self.every):
            infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            total = sum(i.numTasks for i in infos if i)
            finished = sum(i.numCompletedTasks for i in infos if i)
            if total and (finished, total) != last:
                last = (finished, total)
                self.log(f"[{self.prefix}] {name}: {finished}/{total} tasks, {time.perf_counter() - t0:.0f} s")


def timed(fn: Callable[[], dict]) -> dict:
    """Runs fn and adds its wall time to the result dict as "seconds"."""
    t0 = time.perf_counter()
    result = fn()
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
