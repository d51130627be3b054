"""Where and when a benchmark ran, and whether the machine was busy with other work meanwhile."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(load_at_start: float) -> dict:
    """The machine's record; `busy` when the 1-minute load at the start exceeds half the cores, or the
    15-minute load at the end exceeds 1.25 times the cores (a benchmark that uses every core makes a
    load of about the core count by itself; more means other jobs competed, so the figures run slow)."""
    import psutil

    cores = os.cpu_count() or 1
    load_end = os.getloadavg()
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu": _cpu_model(), "cores": cores,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(),
            "load_at_start": round(load_at_start, 2), "load_15min_at_end": round(load_end[2], 2),
            "busy": load_at_start > cores / 2 or load_end[2] > cores * 1.25}
