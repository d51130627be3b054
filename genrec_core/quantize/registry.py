"""The one list of quantizer and collision-strategy names, with a line on each.

Config validation, `genrec run --help` and the benchmarks read these tables; the quantizer modules
register under exactly these names. Kept free of numpy/FAISS/torch imports so config can load it cheaply.
"""
from __future__ import annotations

from typing import NamedTuple


class Quantizer(NamedTuple):
    module: str  # genrec_core.quantize.<module> registers it
    summary: str
    # Its fitter takes warm_start=<published tokenizer> and starts from those codebooks.
    warm_start: bool = False


QUANTIZERS: dict[str, Quantizer] = {
    "rq_kmeans": Quantizer("rq_kmeans", "FAISS k-means per residual level", warm_start=True),
    "faiss_rq": Quantizer("faiss_rq", "FAISS ResidualQuantizer, beam search"),
    "rq_kmeans_balanced": Quantizer("rq_balanced", "equal-size clusters, OneRec"),
    "rqvae": Quantizer("rqvae", "TIGER's RQ-VAE in torch"),
    "gaoq": Quantizer("gaoq", "ReSID's globally aligned orthogonal quantization"),
}

COLLISIONS: dict[str, str] = {
    "dedup_digit": "TIGER's extra digit",
    "cap_reassign": "FORGE; cap items per SID, overflow to the nearest free code",
    "rrs": "recursive residual search, unique SIDs with no extra token",
    "ecm": "exhaustive candidate matching; small catalogues",
}


def describe(summaries: dict[str, str], default: str) -> str:
    """'a (default; ...), b (...)': one phrase per name, for --help."""
    parts = [f"{name} ({'default; ' if name == default else ''}{summary})" for name, summary in summaries.items()]
    return ", ".join(parts)


def quantizer_summaries() -> dict[str, str]:
    return {name: q.summary for name, q in QUANTIZERS.items()}
