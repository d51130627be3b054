"""Content fingerprints: 16 hex digits of sha256 over the parts' reprs, the key of runs, landings and artifacts."""
from __future__ import annotations

import hashlib
from typing import Any


def fingerprint(*parts: Any) -> str:
    """Equal parts (by repr) give equal keys; a NUL between parts keeps ("ab", "c") apart from ("a", "bc")."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
