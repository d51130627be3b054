"""Residual k-means encode throughput against raw FAISS, measured side by side in one run.

Baseline: the same codebooks searched level by level with bare `faiss.IndexFlatL2` calls and numpy
residual updates, which is the practical ceiling for this encoder. Also times the numpy reference
encoder on a slice, to show what the fast path buys. Prints a table and writes JSON.

    python benchmarks/rq_encode.py [--n 200000] [--dim 384] [--levels 3] [--k 256]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def raw_faiss_encode(x: np.ndarray, codebooks) -> np.ndarray:
    import faiss

    residual = x.copy()
    codes = np.empty((x.shape[0], len(codebooks)), dtype=np.int64)
    for level, book in enumerate(codebooks):
        index = faiss.IndexFlatL2(book.shape[1])
        index.add(book)
        codes[:, level] = index.search(residual, 1)[1][:, 0]
        residual -= book[codes[:, level]]
    return codes


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    from genrec_core.quantize.rq_kmeans import fit_rq_kmeans

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rq_encode.json"))
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    tok = fit_rq_kmeans(x, args.levels, args.k, niter=20, seed=0)
    fit_s = time.perf_counter() - t
    ours_s = best_of(lambda: tok.encode(x))
    raw_s = best_of(lambda: raw_faiss_encode(x, tok.codebooks))
    ref_n = min(2000, args.n)
    ref_s = best_of(lambda: tok.encode_reference(x[:ref_n]), repeats=1) * (args.n / ref_n)
    assert (tok.encode(x[:ref_n]) == tok.encode_reference(x[:ref_n])).all()
    result = {"n": args.n, "dim": args.dim, "levels": args.levels, "k": tok.level_sizes[0],
              "fit_seconds": fit_s, "encode_items_per_s": args.n / ours_s,
              "raw_faiss_items_per_s": args.n / raw_s, "reference_items_per_s": args.n / ref_s,
              "ratio_to_raw_faiss": raw_s / ours_s, "speedup_over_reference": ref_s / ours_s}
    from machine import describe  # run as a script: benchmarks/ is on the path

    result["machine"] = describe(load_at_start)
    print(f"{'encoder':<22}{'items/s':>14}{'ratio':>10}")
    print(f"{'raw FAISS (baseline)':<22}{result['raw_faiss_items_per_s']:>14,.0f}{1.0:>10.2f}")
    print(f"{'genrec rq_kmeans':<22}{result['encode_items_per_s']:>14,.0f}{result['ratio_to_raw_faiss']:>10.2f}")
    print(f"{'numpy reference':<22}{result['reference_items_per_s']:>14,.0f}"
          f"{result['reference_items_per_s'] / result['raw_faiss_items_per_s']:>10.3f}")
    print(f"fit: {fit_s:.1f}s for {args.n:,} x {args.dim} at {args.levels} x {tok.level_sizes[0]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
