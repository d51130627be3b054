"""One interface for every quantizer: fit(vectors, config, seed) -> Tokenizer.

A Tokenizer maps float vectors [n, dim] to int64 codes [n, L] level by level. Every quantizer here is a
residual tree: the candidates at level l depend on the codes chosen above it. `level_distances`
exposes that tree (squared distance of each item to every code of level l, given its prefix), which
is what the collision strategies search when the greedy code tuple is already taken.

State is numpy arrays plus a JSON header, turned into the bytes of codebooks.npz + tokenizer.json by
`to_files` (no pickle anywhere, and byte-identical for identical fits); the caller decides where they go.
"""
from __future__ import annotations

import abc
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from genrec_core.quantize import registry

ARRAYS_FILE = "codebooks.npz"
HEADER_FILE = "tokenizer.json"


class Tokenizer(abc.ABC):
    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def level_sizes(self) -> tuple[int, ...]:
        """Number of codes at each level."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension of the input vectors."""

    @property
    def levels(self) -> int:
        return len(self.level_sizes)

    def latent(self, x: np.ndarray) -> np.ndarray:
        """The space the codes quantize (an encoder's output for RQ-VAE; the input itself otherwise)."""
        return np.ascontiguousarray(x, dtype=np.float32)

    @abc.abstractmethod
    def level_distances(self, z: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
        """Squared distances [n, K_level] from latents z [n, d] to each code of `level`, given the codes
        `prefix` [n, level] chosen above it. Codes not valid under a prefix are +inf. Plain numpy."""

    @abc.abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray:
        """Fast path (FAISS or torch): int64 [n, L]."""

    def encode_reference(self, x: np.ndarray) -> np.ndarray:
        """Slow, obviously-correct greedy descent over `level_distances`; tests hold `encode` to it."""
        return self.greedy_descent(x, self.level_distances)

    def greedy_descent(self, x: np.ndarray, distances) -> np.ndarray:
        """Level by level, the argmin of `distances(z, prefix, level)` given the codes chosen above."""
        z = np.asarray(self.latent(x), dtype=np.float32)
        codes = np.zeros((z.shape[0], self.levels), dtype=np.int64)
        for level in range(self.levels):
            for start in range(0, z.shape[0], 1024):
                part = slice(start, start + 1024)
                codes[part, level] = distances(z[part], codes[part, :level], level).argmin(1)
        return codes

    @abc.abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes [n, L] back to input-space vectors float32 [n, dim]."""

    @abc.abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, header): everything `from_state` needs. The header must be JSON-serialisable and
        carries "kind"."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> "Tokenizer":
        ...


# name -> Tokenizer class (for load) and name -> fit function (for fit)
_CLASSES: dict[str, type[Tokenizer]] = {}
_FITTERS: dict[str, Callable[..., Tokenizer]] = {}


def register(kind: str, fitter: Callable[..., Tokenizer]):
    """Class decorator: `@register("rq_kmeans", fit_rq_kmeans_config)`; fitter(x, cfg, seed, progress=None)."""
    if kind not in registry.QUANTIZERS:
        raise ValueError(f"quantizer {kind!r} is not listed in genrec_core.quantize.registry.QUANTIZERS")

    def wrap(cls: type[Tokenizer]) -> type[Tokenizer]:
        cls.kind = kind
        _CLASSES[kind] = cls
        _FITTERS[kind] = fitter
        return cls
    return wrap




def _ensure_registered() -> None:
    # Importing the modules runs their @register decorators.
    import importlib

    for quantizer in registry.QUANTIZERS.values():
        importlib.import_module(f"genrec_core.quantize.{quantizer.module}")


def quantizer_names() -> tuple[str, ...]:
    _ensure_registered()
    return tuple(sorted(_FITTERS))


# progress(done, total, figures): called by fitters that train in steps (rqvae); others never call it.
Progress = Callable[[int, int, dict], None]


def fit(name: str, x: np.ndarray, cfg, seed: int, progress: Progress | None = None,
        warm_start: Tokenizer | None = None) -> Tokenizer:
    """Fits quantizer `name` on x float32 [n, dim] with a TokenizeConfig. warm_start: a tokenizer of
    the same kind to start from, used by quantizers that support it (registry) and ignored otherwise."""
    _ensure_registered()
    if name not in _FITTERS:
        raise ValueError(f"unknown quantizer {name!r}; choose one of {sorted(_FITTERS)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a non-empty [n, dim] matrix to fit {name!r}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{int((~np.isfinite(x)).any(1).sum())} input vectors have NaN or inf values")
    if warm_start is not None and registry.QUANTIZERS[name].warm_start and warm_start.kind == name:
        return _FITTERS[name](x, cfg, seed, progress=progress, warm_start=warm_start)
    return _FITTERS[name](x, cfg, seed, progress=progress)


def from_state(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> Tokenizer:
    _ensure_registered()
    kind = header.get("kind")
    if kind not in _CLASSES:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known kinds are {sorted(_CLASSES)}")
    return _CLASSES[kind].from_state(arrays, header)


def digest(tok: Tokenizer) -> str:
    """sha256 over the tokenizer's header and arrays: equal digests, equal tokenizers."""
    import hashlib

    arrays, header = tok.state()
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


# A fixed member date: zipfile stamps the wall clock otherwise, and two identical fits would differ.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz that np.load reads, with members in sorted order and no timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), member.getvalue())
    return buffer.getvalue()


def to_files(tok: Tokenizer, meta: dict[str, Any] | None = None) -> dict[str, bytes]:
    """{file name: bytes}: codebooks.npz and tokenizer.json (header plus caller metadata)."""
    arrays, header = tok.state()
    text = json.dumps({**(meta or {}), **header}, indent=2, sort_keys=True)
    return {ARRAYS_FILE: npz_bytes(arrays), HEADER_FILE: text.encode("utf-8")}


def from_files(files: dict[str, bytes]) -> Tokenizer:
    """The inverse of `to_files`."""
    missing = sorted({ARRAYS_FILE, HEADER_FILE} - set(files))
    if missing:
        raise ValueError(f"a tokenizer needs {ARRAYS_FILE} and {HEADER_FILE}; missing {missing}")
    header = json.loads(files[HEADER_FILE].decode("utf-8"))
    with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return from_state(arrays, header)
