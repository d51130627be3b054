"""GPU paths agree with the CPU ones. Skipped, with the reason, where no CUDA GPU is visible."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")]


def test_text_embeddings_match_cpu_within_fp16_tolerance():
    from genrec_core.embed.text import TextEncoder, default_model_path

    texts = ["nail lacquer simmer and shimmer. Brand: OPI", "wireless earbuds with charging case", "x"]
    cpu = TextEncoder(default_model_path(), device="cpu").encode(texts)
    gpu = TextEncoder(default_model_path(), device="cuda").encode(texts)
    assert np.abs(cpu - gpu).max() < 5e-3
    assert (np.einsum("ij,ij->i", cpu, gpu) > 0.999).all()


@pytest.mark.parametrize("kind", ["sid_item", "sid_gpt", "tiger", "sasrec"])
def test_recommender_trains_and_decodes_on_cuda(kind):
    import dataclasses

    from genrec_core.config import load_config
    from genrec_core.model import recommenders as R
    from genrec_core.model.sid_vocab import SidVocab
    from genrec_core.model.training import LoopConfig, fit

    cfg = dataclasses.replace(load_config("tiny").train, model=kind)
    vocab = SidVocab((4, 4, 2))
    tokens = vocab.codes_to_tokens(np.array([[a, b, 0] for a in range(4) for b in range(4)]))
    seqs = [np.array([(i + j) % 16 for j in range(6)]) for i in range(16)]
    rec = R.build(R.make_spec(cfg, vocab.level_sizes, 16, "m"), tokens, 0)
    loop = LoopConfig(batch_size=8, learning_rate=3e-3, weight_decay=0.0, warmup_steps=5, max_steps=30,
                      max_minutes=5.0, eval_every=30, patience=1)
    state, _ = fit(rec.module, rec.loss, rec.examples(seqs), loop, seed=0, device="cuda")
    assert state.step == 30
    ranked = rec.rank([s[:-1] for s in seqs], 5, num_beams=8, batch_size=8, device="cuda").kept
    assert ranked.shape == (16, 5) and ((ranked >= 0) & (ranked < 16)).all()


def _clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, dim))[rng.integers(0, 32, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_faiss_gpu_residual_codes_match_cpu():
    from genrec_core.quantize.rq_kmeans import (
        allow_faiss_gpu,
        faiss_gpus,
        fit_rq_kmeans,
    )

    if faiss_gpus() == 0:
        pytest.skip("faiss has no GPU support here (faiss-cpu); install the [gpu] extra for faiss-gpu")
    x = _clustered(20_000, 64, 0)
    tok = fit_rq_kmeans(x, levels=3, codebook_size=64, niter=10, seed=0)
    gpu = tok.encode(x)
    allow_faiss_gpu(False)
    try:
        cpu = tok.encode(x)
    finally:
        allow_faiss_gpu(True)
    # GPU distances come from a float32 GEMM: codes may differ on near-ties only.
    assert (gpu == cpu).all(axis=1).mean() >= 0.999


def test_rqvae_encodes_on_cuda_like_cpu():
    import dataclasses

    from genrec_core.config import load_config
    from genrec_core.quantize import base

    cfg = load_config("tiny").tokenize
    cfg = dataclasses.replace(cfg, quantizer="rqvae", codebook_size=16,
                              rqvae=dataclasses.replace(cfg.rqvae, steps=200, device="cuda"))
    x = _clustered(4_000, 32, 1)
    tok = base.fit("rqvae", x, cfg, seed=0)
    assert (tok.encode(x) == tok.encode_reference(x)).all(axis=1).mean() >= 0.999
