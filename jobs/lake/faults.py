"""Crash injection for tests: GENREC_CRASH_AT=POINT makes the process exit hard when it reaches POINT.

Points are `after:<stage>` (a stage has committed and the next has not started; pipeline.run) and
the steps inside publish (`publish:registered`, `publish:item_sid`). The exit is os._exit(137), what
a SIGKILL leaves: no `finally`, no atexit, no flush of anything but the line saying so.
"""
from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 137
PUBLISH_POINTS = ("publish:registered", "publish:item_sid")


def crash_point(settings, point: str) -> None:
    if settings.crash_at == point:
        print(f"[genrec] GENREC_CRASH_AT={point}: exiting hard", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)


def check(settings, stages: tuple[str, ...]) -> None:
    """Fails fast on a GENREC_CRASH_AT that names no point: a typo would otherwise never crash."""
    points = tuple(f"after:{s}" for s in stages) + PUBLISH_POINTS
    if settings.crash_at and settings.crash_at not in points:
        raise ValueError(f"GENREC_CRASH_AT={settings.crash_at!r} names no crash point; points are {', '.join(points)}")
