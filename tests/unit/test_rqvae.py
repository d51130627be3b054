"""RQ-VAE: torch fast path against the numpy reference, determinism, ranges, save/load, dead-code
restarts and training progress, on tiny configs (dim 16, hidden (32, 16), latent 8, K 8)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from vectors import clustered

from genrec_core.config import RQVAEConfig, TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.rq_kmeans import effective_codebook_size
from genrec_core.quantize.rqvae import RQVAETokenizer, nearest_codes, restart_dead_codes

TINY = RQVAEConfig(hidden_dims=(32, 16), latent_dim=8, steps=150, batch_size=64, dead_code_steps=20,
                   device="cpu")


def tiny_config(**rqvae) -> TokenizeConfig:
    return dataclasses.replace(TokenizeConfig(quantizer="rqvae", codebook_size=8, niter=10),
                               rqvae=dataclasses.replace(TINY, **rqvae))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These models are tiny: intra-op threads only add OpenMP hand-offs, which crawl on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fitted(one_thread):
    x = clustered(600, 16, 0)
    return x, base.fit("rqvae", x, tiny_config(), seed=1)


def test_registered_and_shapes(fitted):
    x, tok = fitted
    assert "rqvae" in base.quantizer_names()
    assert tok.level_sizes == (8, 8, 8) and tok.dim == 16 and tok.hidden_dims == (32, 16)
    assert tok.latent(x).shape == (600, 8) and tok.latent(x).dtype == np.float32
    assert tok.decode(tok.encode(x)).shape == x.shape


def test_fast_path_matches_reference(fitted):
    x, tok = fitted
    # Both paths compute in float64 from the same float32-rounded latent, so no tolerance is needed.
    np.testing.assert_array_equal(tok.encode(x), tok.encode_reference(x))
    unseen = np.random.default_rng(9).normal(size=(500, 16)).astype(np.float32) * 3
    np.testing.assert_array_equal(tok.encode(unseen), tok.encode_reference(unseen))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 97), seed=st.integers(0, 10))
def test_codes_in_range_and_batch_and_order_invariant(fitted, batch, seed):
    x, tok = fitted
    full = tok.encode(x)
    assert full.dtype == np.int64 and full.shape == (600, 3)
    assert full.min() >= 0 and (full < np.array(tok.level_sizes)).all()
    chunks = np.concatenate([tok.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
    np.testing.assert_array_equal(chunks, full)
    perm = np.random.default_rng(seed).permutation(len(x))
    np.testing.assert_array_equal(tok.encode(x[perm]), full[perm])


def test_same_seed_same_model_and_codes():
    x = clustered(300, 16, 3)
    cfg = tiny_config(steps=40)
    a, b = base.fit("rqvae", x, cfg, seed=5), base.fit("rqvae", x, cfg, seed=5)
    for wa, wb in zip(a.encoder + a.decoder + list(a.codebooks), b.encoder + b.decoder + list(b.codebooks)):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    other = base.fit("rqvae", x, cfg, seed=6)
    assert not np.array_equal(other.codebooks[0], a.codebooks[0])


def test_fit_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    base.fit("rqvae", clustered(100, 16, 4), tiny_config(steps=5), seed=0)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_files_round_trip(fitted):
    x, tok = fitted
    again = base.from_files(base.to_files(tok, {"note": "test"}))
    assert isinstance(again, RQVAETokenizer) and again.train == tok.train
    np.testing.assert_array_equal(again.encode(x), tok.encode(x))
    np.testing.assert_array_equal(again.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    arrays, header = tok.state()
    with pytest.raises(ValueError, match="not a rqvae"):
        RQVAETokenizer.from_state(arrays, {**header, "kind": "rq_kmeans"})
    with pytest.raises(ValueError, match="do not match"):
        RQVAETokenizer.from_state(arrays, {**header, "latent_dim": 4})


@settings(max_examples=20, deadline=None)
@given(k=st.integers(2, 16), n_far=st.integers(0, 16), d=st.integers(1, 8), seed=st.integers(0, 1000))
@example(k=8, n_far=0, d=1, seed=1)
def test_restart_moves_only_dead_codes_onto_batch_residuals(k, n_far, d, seed):
    n_far = min(n_far, k - 1)
    gen = torch.Generator().manual_seed(seed)
    residual = torch.randn(50, d, generator=gen)
    # Live codes sit on residual rows set 10 apart, so each is its own row's nearest code. Two random
    # rows can lie closer than the expanded distance's rounding (d=1, k=8, seed=1 did), and the tie
    # then goes to the first code. Codes placed far from every residual are never nearest, so they die.
    residual[:k] += 10.0 * torch.arange(k, dtype=residual.dtype)[:, None]
    book = residual[:k].clone()
    book[k - n_far:] += 1e3
    last_used = torch.zeros(k, dtype=torch.long)
    dead_after = 5
    for step in range(dead_after):
        last_used[nearest_codes(residual, book)] = step
        assert restart_dead_codes(book, residual, last_used, step, dead_after, gen) == 0
    live = book[:k - n_far].clone()
    step = dead_after + 1
    last_used[nearest_codes(residual, book)] = step
    assert restart_dead_codes(book, residual, last_used, step, dead_after, gen) == n_far
    torch.testing.assert_close(book[:k - n_far], live, rtol=0, atol=0)
    for code in book[k - n_far:]:
        assert (residual == code).all(1).any(), "a restarted code must sit on a residual of the batch"
    assert (last_used[k - n_far:] == step).all()


def test_restart_fires_during_training():
    # 4 distinct points with K=8: k-means init duplicates centroids, and the duplicates (never the
    # first-index argmin) stay unused until restarted.
    x = np.repeat(clustered(4, 16, 2), 64, axis=0)
    tok = base.fit("rqvae", x, tiny_config(steps=30, dead_code_steps=10), seed=0)
    assert tok.train["restarts"] > 0


def test_training_reduces_reconstruction_error(fitted):
    x, tok = fitted
    history = tok.train["recon_loss_history"]
    assert 10 <= len(history) <= 20 and history[-1] < 0.8 * history[0]
    untrained = base.fit("rqvae", x, tiny_config(steps=1), seed=1)
    trained_err = ((tok.decode(tok.encode(x)) - x) ** 2).mean()
    untrained_err = ((untrained.decode(untrained.encode(x)) - x) ** 2).mean()
    assert trained_err < 0.8 * untrained_err


@given(n=st.integers(1, 40))
@settings(max_examples=5, deadline=None)
def test_tiny_inputs_shrink_the_codebook(n):
    x = clustered(n, 16, n)
    tok = base.fit("rqvae", x, tiny_config(steps=3), seed=0)
    k = effective_codebook_size(n, 8, 8)
    assert tok.level_sizes == (k, k, k)
    np.testing.assert_array_equal(tok.encode(x), tok.encode_reference(x))


def test_bad_config_and_input_fail_fast(fitted):
    x, tok = fitted
    with pytest.raises(ValueError, match="steps"):
        base.fit("rqvae", x, tiny_config(steps=0), seed=0)
    with pytest.raises(ValueError, match=r"\[n, 16\]"):
        tok.encode(x[:, :8])
