"""faiss_rq: FAISS beam search against the numpy beam search, determinism, ranges, save/load."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import clustered

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.base import Tokenizer
from genrec_core.quantize.faiss_rq import FaissRQTokenizer, fit_faiss_rq, unpack_codes

# FAISS's float32 distances and the reference's float64 ones can order two candidates differently
# when they are equal to ~1e-7; on continuous random data that is rare, so allow 0.5% of rows.
MIN_AGREEMENT = 0.995


@pytest.fixture(scope="module")
def fitted():
    x = clustered(800, 16, 0)
    return x, fit_faiss_rq(x, levels=3, codebook_size=16, niter=10, seed=1, beam_size=8)


def sq_error(tok, x, codes):
    return ((x.astype(np.float64) - tok.decode(codes)) ** 2).sum(1)


def assert_beam_agrees(tok, x):
    fast, ref = tok.encode(x), tok.encode_reference(x)
    same = (fast == ref).all(1)
    assert same.mean() >= MIN_AGREEMENT, same.mean()
    # Where they differ it must be a near-tie: both tuples reconstruct equally well.
    np.testing.assert_allclose(sq_error(tok, x[~same], fast[~same]), sq_error(tok, x[~same], ref[~same]),
                               rtol=1e-4, atol=1e-6)


def test_fast_path_matches_reference(fitted):
    x, tok = fitted
    assert_beam_agrees(tok, x)


@settings(max_examples=30, deadline=None)
@given(nbits=st.integers(1, 4), levels=st.integers(1, 4), beam=st.integers(1, 10),
       dim=st.sampled_from([4, 8, 12]), seed=st.integers(0, 1000))
def test_reference_beam_search_matches_faiss_on_random_codebooks(nbits, levels, beam, dim, seed):
    rng = np.random.default_rng(seed)
    # Shrinking codebooks, as residual training produces, so later levels matter less.
    books = [(rng.normal(size=(2 ** nbits, dim)) * 0.5 ** l).astype(np.float32) for l in range(levels)]
    tok = FaissRQTokenizer(books, beam)
    assert_beam_agrees(tok, rng.normal(size=(200, dim)).astype(np.float32))


def test_beam_one_is_the_greedy_descent(fitted):
    x, tok = fitted
    greedy = FaissRQTokenizer(tok.codebooks, beam_size=1)
    np.testing.assert_array_equal(greedy.encode(x), Tokenizer.encode_reference(greedy, x))


def test_wider_beam_reconstructs_no_worse_on_average(fitted):
    x, tok = fitted
    greedy = FaissRQTokenizer(tok.codebooks, beam_size=1)
    assert sq_error(tok, x, tok.encode(x)).sum() <= sq_error(greedy, x, greedy.encode(x)).sum()


def test_unpack_codes_matches_faiss_decode(fitted):
    x, tok = fitted
    rq = tok._faiss()
    np.testing.assert_array_equal(tok.decode(tok.encode(x)), rq.decode(rq.compute_codes(x)))
    packed = np.array([[0b0100_0011, 0b1111_0000]], dtype=np.uint8)
    np.testing.assert_array_equal(unpack_codes(packed, 4, 4), [[3, 4, 0, 15]])


def test_same_seed_same_codebooks():
    x = clustered(400, 8, 3)
    a = fit_faiss_rq(x, 2, 16, 10, seed=5, beam_size=4)
    b = fit_faiss_rq(x, 2, 16, 10, seed=5, beam_size=4)
    for ca, cb in zip(a.codebooks, b.codebooks):
        np.testing.assert_array_equal(ca, cb)


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
    errors = []
    for levels in (1, 2, 3):
        tok = fit_faiss_rq(x, levels, 16, 10, seed=0, beam_size=4)
        errors.append(float(sq_error(tok, x, tok.encode(x)).sum()))
    assert all(b <= a for a, b in zip(errors, errors[1:])), errors


def test_files_round_trip(fitted):
    x, tok = fitted
    again = base.from_files(base.to_files(tok, {"note": "test"}))
    assert isinstance(again, FaissRQTokenizer) and again.beam_size == tok.beam_size
    np.testing.assert_array_equal(again.encode(x), tok.encode(x))
    arrays, header = tok.state()
    with pytest.raises(ValueError):
        FaissRQTokenizer.from_state(arrays, {**header, "kind": "other"})


def test_tiny_catalogue_through_the_registry():
    x = clustered(100, 8, 11)
    tok = base.fit("faiss_rq", x, TokenizeConfig(quantizer="faiss_rq", codebook_size=256, niter=5), 0)
    k = tok.level_sizes[0]
    assert tok.level_sizes == (k,) * 3 and k & (k - 1) == 0 and k <= 100 // 8
    assert tok.beam_size <= k ** 3
    assert_beam_agrees(tok, x)


def test_rejects_codebooks_that_are_not_a_power_of_two():
    with pytest.raises(ValueError):
        FaissRQTokenizer([np.zeros((6, 4), np.float32)], 2)
