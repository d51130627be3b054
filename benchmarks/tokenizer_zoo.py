"""Tokenizer zoo benchmark: SID quality on real catalogues, and speed against raw FAISS.

Tables printed (and written to benchmarks/results/tokenize.json):
1. Quality on Amazon Beauty (text embeddings): every quantizer x collision strategy.
2. Quality on Amazon Scientific: our quantizers next to the peers' ready-made SIDs
   (RQ-VAE, residual k-means, LETTER) for the same items, all measured on our text embeddings.
3. Fit cost at equal codebook shape on Beauty: rq_kmeans and gaoq against rqvae.
4. Speed on synthetic 384-d vectors (10^6 by default): fit time, encode items/s, and the ratio to raw
   FAISS with the same codebooks in the same run (target: rq_kmeans >= 0.8).

    python benchmarks/tokenizer_zoo.py [--n 1000000] [--skip-real] [--skip-speed]

Embeddings of the real catalogues are cached under $GENREC_CACHE/bench/ (first run: a few minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

# The ceiling for flat residual search (bare IndexFlatL2 per level) is the one rq_encode.py measures.
from rq_encode import raw_faiss_encode

from genrec_core.quantize import registry

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
QUANTIZERS = tuple(registry.QUANTIZERS)
STRATEGIES = tuple(registry.COLLISIONS)
PEERS = ("rqvae_native", "rkmeans_native", "letter_native")


def cache_dir() -> Path:
    from jobs.lake.settings import load_settings

    folder = load_settings().cache / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def embed_texts(name: str, texts: list[str]) -> np.ndarray:
    """Text vectors with the packaged MiniLM, cached by catalogue name and text digest."""
    import hashlib

    from genrec_core.embed.text import TextEncoder, default_model_path

    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-minilm-{digest}.npy"
    if path.exists():
        return np.load(path)
    from tqdm.auto import tqdm

    enc = TextEncoder(default_model_path(), max_length=64)
    with tqdm(total=len(texts), desc=f"embed {name}", unit="item") as bar:
        x = enc.encode(texts, batch_size=64, progress=bar.update).astype(np.float32)
    np.save(path, x)
    return x


def beauty():
    """(item ids, vectors, top-level categories) for Amazon Beauty, items in id order."""
    from genrec_core.data.p5 import parse_items
    from genrec_core.embed.text import item_text

    items = parse_items((DATA / "amazon2014_p5" / "beauty" / "items.jsonl").read_text().splitlines()).to_pydict()
    texts = [item_text(t, b, c) for t, b, c in zip(items["title"], items["brand"], items["categories"])]
    cats = [_second_level(c) for c in items["categories"]]
    return np.asarray(items["item_id"], dtype=str), embed_texts("beauty", texts), np.asarray(cats)


def _second_level(path, sep=" > "):
    # Beauty's first category level is "Beauty" for every item; the second one discriminates.
    parts = [p for p in (path or "").split(sep) if p]
    return parts[1] if len(parts) > 1 else (parts[0] if parts else "(none)")


def scientific():
    """(0-based item indices as str, vectors, second-level categories) for Amazon Scientific."""
    from genrec_core.embed.text import item_text

    raw = json.loads((DATA / "amazon2018_scientific" / "Scientific.item.json").read_text())
    keys = sorted(raw, key=int)
    texts = []
    for k in keys:
        item = raw[k]
        text = item_text(item.get("title"), item.get("brand"), item.get("categories"))
        desc = (item.get("description") or "").strip()
        texts.append(f"{text}. {desc}" if desc else text)
    cats = [_second_level(raw[k].get("categories"), sep=",") for k in keys]
    return np.asarray(keys, dtype=str), embed_texts("scientific", texts), np.asarray(cats)


def peer_codes(name: str, keys: np.ndarray) -> np.ndarray:
    """A peer's SIDs ("<a_70>", "<b_138>", ...) as int codes [n, levels], aligned to `keys`."""
    index = json.loads((DATA / "amazon2018_scientific" / "indexes" / f"{name}.index.json").read_text())
    return np.asarray([[int(tok.split("_")[1].rstrip(">")) for tok in index[k]] for k in keys], dtype=np.int64)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def catalogue_quality(name, ids, x, cats, cfg, seed, strategies, quantizers):
    """Every quantizer x strategy on one catalogue -> {"q/c": metrics}, {q: fit seconds}."""
    from genrec_core.quantize import base
    from genrec_core.quantize.collisions import resolve
    from genrec_core.quantize.metrics import sid_report

    out, fit_s = {}, {}
    for q in quantizers:
        tok, fit_s[q] = timed(lambda: base.fit(q, x, cfg, seed))
        codes = tok.encode(x)
        z = tok.latent(x)
        x_hat = tok.decode(codes)
        for c in strategies:
            res, resolve_s = timed(lambda: resolve(c, tok, z, codes, ids, dataclasses.replace(cfg, collisions=c)))
            rep = sid_report(codes, tok.level_sizes, x, x_hat, categories=cats, final_codes=res.codes, seed=seed,
                         item_ids=ids)
            out[f"{q}/{c}"] = {**rep.to_dict(), "fit_seconds": fit_s[q], "resolve_seconds": resolve_s,
                               "moved": int(res.moved), "unplaced": int(len(res.unplaced))}
            print(f"  [{name}] {q}/{c}: fit {fit_s[q]:.1f}s, resolve {resolve_s:.1f}s", flush=True)
    return out, fit_s


def peers_quality(keys, x, cats, seed):
    from genrec_core.quantize.metrics import sid_report

    out = {}
    for peer in PEERS:
        codes = peer_codes(peer, keys)
        semantic = codes[:, :3]
        sizes = tuple(int(max(256, semantic[:, i].max() + 1)) for i in range(3))
        rep = sid_report(semantic, sizes, x, None, categories=cats, final_codes=codes, seed=seed)
        out[f"peer:{peer}"] = rep.to_dict()
    return out


COLUMNS = (("collision", "collision_rate", "{:.3f}"), ("max/SID", "max_items_per_sid", "{:.0f}"),
           ("gini", "gini_items_per_sid", "{:.3f}"), ("H1 bits", "level1_entropy_bits", "{:.2f}"),
           ("H(c2|c1)", "level2_conditional_entropy_bits", "{:.2f}"),
           ("H(c3|c<3)", "level3_conditional_entropy_bits", "{:.2f}"),
           ("recon", "reconstruction_rel_error", "{:.3f}"), ("kNN pres", "knn_preservation", "{:.3f}"),
           ("kNN rand", "knn_baseline", "{:.3f}"), ("purity", "category_purity", "{:.3f}"),
           ("unique", "resolved_unique_share", "{:.4f}"), ("moved", "moved", "{:.0f}"),
           ("unplaced", "unplaced", "{:.0f}"), ("fit s", "fit_seconds", "{:.1f}"))


def flat(metrics: dict) -> dict:
    """The printed figures: the report's headline numbers plus the run's own counters."""
    from genrec_core.quantize.metrics import SIDReport
    from genrec_core.quantize.report import flat_metrics

    own = {k: metrics[k] for k in ("moved", "unplaced", "fit_seconds") if k in metrics}
    report = SIDReport.from_dict({k: v for k, v in metrics.items() if k not in own and k != "resolve_seconds"})
    return {**flat_metrics(report), **own}


def print_quality(title: str, rows: dict) -> None:
    print(f"\n{title}")
    header = f"{'quantizer/collisions':<34}" + "".join(f"{c[0]:>10}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for name, metrics in rows.items():
        values = flat(metrics)
        cells = []
        for _, key, fmt in COLUMNS:
            v = values.get(key)
            cells.append(f"{'-':>10}" if v is None else f"{fmt.format(v):>10}")
        print(f"{name:<34}" + "".join(cells))


def raw_faiss_rq_encode(x: np.ndarray, codebooks, beam: int) -> np.ndarray:
    """The ceiling for faiss_rq: a bare faiss.ResidualQuantizer with the same codebooks and beam."""
    import faiss

    k = codebooks[0].shape[0]
    rq = faiss.ResidualQuantizer(x.shape[1], len(codebooks), int(np.log2(k)))
    rq.max_beam_size = beam
    faiss.copy_array_to_vector(np.concatenate(codebooks).ravel().astype(np.float32), rq.codebooks)
    rq.is_trained = True
    return rq.compute_codes(x)


def synthetic_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered, unit-norm vectors: 2,000 topic centres with Zipf-sized clusters plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, 2001) ** 0.8
    which = rng.choice(2000, size=n, p=weights / weights.sum())
    x = centres[which] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def speed(cfg, n: int, fit_n: int, seed: int, quantizers) -> dict:
    from genrec_core.quantize import base

    x = synthetic_vectors(n, 384, seed)
    fit_x = x[np.random.default_rng(seed).permutation(n)[:fit_n]]
    out = {}
    for q in quantizers:
        tok, fit_s = timed(lambda: base.fit(q, fit_x, cfg, seed))
        _, enc_s = timed(lambda: tok.encode(x))
        books = getattr(tok, "codebooks", None)
        if books is not None and books[0].shape[1] != x.shape[1]:
            books = None  # RQ-VAE's codebooks live in its latent space, not the input's
        if q == "faiss_rq":
            _, raw_s = timed(lambda: raw_faiss_rq_encode(x, books, cfg.beam_size))
            baseline = f"faiss.ResidualQuantizer beam {cfg.beam_size}, same codebooks"
        elif books is not None:
            _, raw_s = timed(lambda: raw_faiss_encode(x, books))
            baseline = "IndexFlatL2 per level, same codebooks"
        else:
            # rqvae and gaoq have no flat codebook list; their baseline is raw FAISS residual search
            # at the same shape (levels x K over the same vectors), i.e. what rq_kmeans would cost.
            shape_books = [np.ascontiguousarray(x[:k], dtype=np.float32) for k in tok.level_sizes]
            _, raw_s = timed(lambda: raw_faiss_encode(x, shape_books))
            baseline = "IndexFlatL2 per level at the same shape"
        out[q] = {"fit_seconds": fit_s, "fit_items": fit_n, "encode_items_per_s": n / enc_s,
                  "raw_faiss_items_per_s": n / raw_s, "ratio_to_faiss": raw_s / enc_s, "baseline": baseline}
        print(f"  [speed] {q}: fit {fit_s:.1f}s on {fit_n:,}, encode {n / enc_s:,.0f}/s, "
              f"raw {n / raw_s:,.0f}/s", flush=True)
    return out


def print_speed(rows: dict, n: int) -> None:
    print(f"\nSpeed on {n:,} synthetic 384-d vectors (ratio = ours / raw FAISS in the same run)")
    print(f"{'quantizer':<22}{'fit s':>10}{'items/s':>14}{'raw items/s':>14}{'ratio':>8}  baseline")
    for q, r in rows.items():
        print(f"{q:<22}{r['fit_seconds']:>10.1f}{r['encode_items_per_s']:>14,.0f}"
              f"{r['raw_faiss_items_per_s']:>14,.0f}{r['ratio_to_faiss']:>8.2f}  {r['baseline']}")


def main() -> None:
    from genrec_core.config import TokenizeConfig, load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors for the speed table")
    ap.add_argument("--fit-n", type=int, default=100_000, help="sample the speed-table quantizers fit on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-real", action="store_true", help="skip the Beauty and Scientific tables")
    ap.add_argument("--skip-speed", action="store_true", help="skip the synthetic speed table")
    ap.add_argument("--quantizers", default=",".join(QUANTIZERS))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads for RQ-VAE; on a shared 2-core host two threads spin against "
                         "each other (measured ~9x slower per step than one)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tokenize.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    quantizers = tuple(q for q in args.quantizers.split(",") if q)
    strategies = tuple(s for s in args.strategies.split(",") if s)
    cfg: TokenizeConfig = load_config("demo").tokenize  # 3 x 256, TIGER's shape
    result = {"config": dataclasses.asdict(cfg), "seed": args.seed}
    load_at_start = os.getloadavg()[0]
    if not args.skip_real:
        if not DATA.is_dir():
            raise SystemExit(f"real datasets not found at {DATA}; run with --skip-real")
        ids, x, cats = beauty()
        quality, fit_s = catalogue_quality("beauty", ids, x, cats, cfg, args.seed, strategies, quantizers)
        result["quality"] = quality
        result["fit_cost_beauty"] = fit_cost(fit_s)
        keys, sx, scats = scientific()
        ours, _ = catalogue_quality("scientific", keys, sx, scats, cfg, args.seed, ("dedup_digit", "rrs"),
                                    quantizers)
        result["scientific"] = {**peers_quality(keys, sx, scats, args.seed), **ours}
        print_quality(f"SID quality on Amazon Beauty ({len(ids):,} items, MiniLM text, 3x256)", quality)
        print_quality(f"SID quality on Amazon Scientific ({len(keys):,} items): peers' SIDs and ours",
                      result["scientific"])
        print_fit_cost(result["fit_cost_beauty"])
    if not args.skip_speed:
        rows = speed(cfg, args.n, min(args.fit_n, args.n), args.seed, quantizers)
        result["speed"] = rows
        result["encode_ratio_to_faiss"] = {q: r["ratio_to_faiss"] for q, r in rows.items()}
        print_speed(rows, args.n)
    from machine import describe  # run as a script: benchmarks/ is on the path

    result["machine"] = describe(load_at_start)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True, default=float))
    print(f"\nwrote {args.out}")


def fit_cost(fit_s: dict) -> dict:
    out = {f"{q}_seconds": s for q, s in fit_s.items()}
    if "rqvae" in fit_s:
        for q in ("rq_kmeans", "gaoq"):
            if q in fit_s:
                out[f"rqvae_over_{q}"] = fit_s["rqvae"] / fit_s[q]
    return out


def print_fit_cost(cost: dict) -> None:
    print("\nFit cost on Beauty at 3x256 (ReSID reports k-means-family quantization 4-8x cheaper than RQ-VAE)")
    for k, v in cost.items():
        print(f"  {k:<24}{v:>10.2f}")


if __name__ == "__main__":
    main()
