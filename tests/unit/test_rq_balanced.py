"""Balanced residual k-means: capacity, the vectorised assignment against the greedy, encode, save/load."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.rq_balanced import (
    RQBalancedTokenizer,
    balanced_assign,
    balanced_assign_reference,
    capacity,
    fit_rq_balanced,
)


def clustered(n, dim, seed):
    # Unequal cluster sizes, so plain k-means would not be balanced by itself.
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    labels = rng.choice(8, n, p=np.array([8, 4, 2, 1, 1, 1, 1, 1]) / 19)
    x = centres[labels] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    # Two OpenMP threads spin against each other on a shared 2-core runner.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def fitted():
    x = clustered(600, 16, 0)
    return x, fit_rq_balanced(x, levels=3, codebook_size=16, niter=10, seed=1)


@st.composite
def distance_tables(draw):
    n, k = draw(st.integers(1, 40)), draw(st.integers(1, 8))
    # Small integers make ties common, which is where tie-breaking bugs hide.
    values = st.integers(0, 3) if draw(st.booleans()) else st.floats(0, 1)
    dist = draw(hnp.arrays(np.float64, (n, k), elements=values))
    return dist, capacity(n, k) + draw(st.integers(0, 2))


@settings(max_examples=200, deadline=None)
@given(table=distance_tables())
def test_balanced_assign_is_the_greedy_and_respects_capacity(table):
    dist, cap = table
    assign = balanced_assign(dist, cap)
    np.testing.assert_array_equal(assign, balanced_assign_reference(dist, cap))
    assert assign.min() >= 0 and np.bincount(assign).max() <= cap


def test_balanced_assign_rejects_too_little_capacity():
    with pytest.raises(ValueError):
        balanced_assign(np.zeros((5, 2)), 2)


def test_training_clusters_are_within_capacity(fitted):
    x, tok = fitted
    k, cap = tok.level_sizes[0], capacity(len(x), tok.level_sizes[0])
    for level in range(tok.levels):
        assert np.bincount(tok.fit_codes[:, level], minlength=k).max() <= cap


def test_fast_path_matches_reference(fitted):
    x, tok = fitted
    np.testing.assert_array_equal(tok.encode(x), tok.encode_reference(x))


def test_same_seed_same_codebooks_and_fit_codes():
    x = clustered(400, 8, 3)
    a, b = fit_rq_balanced(x, 2, 16, 10, seed=5), fit_rq_balanced(x, 2, 16, 10, seed=5)
    for ca, cb in zip(a.codebooks, b.codebooks):
        np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(a.fit_codes, b.fit_codes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 97), seed=st.integers(0, 10))
def test_codes_in_range_and_batch_and_order_invariant(fitted, batch, seed):
    x, tok = fitted
    full = tok.encode(x)
    assert full.min() >= 0 and (full < np.array(tok.level_sizes)).all()
    chunks = np.concatenate([tok.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
    np.testing.assert_array_equal(chunks, full)
    perm = np.random.default_rng(seed).permutation(len(x))
    np.testing.assert_array_equal(tok.encode(x[perm]), full[perm])


def test_more_levels_reconstruct_better():
    x = clustered(500, 16, 7)
    encoded, fitted_codes = [], []
    for levels in (1, 2, 3):
        tok = fit_rq_balanced(x, levels, 16, 10, seed=0)
        encoded.append(float(((x - tok.decode(tok.encode(x))) ** 2).sum()))
        fitted_codes.append(float(((x - tok.decode(tok.fit_codes)) ** 2).sum()))
    for errors in (encoded, fitted_codes):
        assert all(b <= a for a, b in zip(errors, errors[1:])), errors
    # With one level, nearest-centroid encoding can only beat the capacity-bound assignment.
    assert encoded[0] <= fitted_codes[0] * (1 + 1e-6)


def test_files_round_trip(fitted):
    x, tok = fitted
    again = base.from_files(base.to_files(tok))
    assert isinstance(again, RQBalancedTokenizer) and again.fit_codes is None
    np.testing.assert_array_equal(again.encode(x), tok.encode(x))


def test_tiny_catalogue_through_the_registry():
    x = clustered(100, 8, 11)
    cfg = TokenizeConfig(quantizer="rq_kmeans_balanced", codebook_size=256, niter=5)
    tok = base.fit("rq_kmeans_balanced", x, cfg, 0)
    k = tok.level_sizes[0]
    assert tok.level_sizes == (k,) * 3 and k <= 100 // 8
    assert np.bincount(tok.fit_codes[:, 0]).max() <= capacity(100, k)
    np.testing.assert_array_equal(tok.encode(x), tok.encode_reference(x))
