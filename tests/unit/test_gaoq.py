"""GAOQ: anchors, Hungarian matching, alignment across prefixes, encode against the reference, save/load."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import clustered

from genrec_core.config import TokenizeConfig
from genrec_core.quantize import base
from genrec_core.quantize.base import Tokenizer
from genrec_core.quantize.gaoq import (
    GAOQTokenizer,
    child_count,
    fit_gaoq,
    make_anchors,
    match_to_anchors,
    prefix_keys,
)


def sq_error(tok, x, codes):
    return float(((x.astype(np.float64) - tok.decode(codes)) ** 2).sum())


@pytest.fixture(scope="module")
def fitted():
    x = clustered(600, 16, 0)
    return x, fit_gaoq(x, levels=3, codebook_size=16, niter=10, seed=1)


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(2, 24), k=st.integers(1, 40), seed=st.integers(0, 100))
def test_anchors_are_unit_and_orthogonal_within_each_block(dim, k, seed):
    a = make_anchors(dim, k, np.random.default_rng(seed)).astype(np.float64)
    assert a.shape == (k, dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    for start in range(0, k, dim):
        block = a[start:start + dim]
        np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 4), extra=st.integers(0, 2), dim=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_matching_is_the_best_injective_labelling(c, extra, dim, seed):
    rng = np.random.default_rng(seed)
    k = c + extra
    vectors, anchors = rng.normal(size=(c, dim)), make_anchors(dim, k, rng)
    codes = match_to_anchors(vectors, anchors)
    assert len(set(codes.tolist())) == c and codes.min() >= 0 and codes.max() < k
    cos = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ anchors.T.astype(np.float64)
    best = max(cos[np.arange(c), list(p)].sum() for p in itertools.permutations(range(k), c))
    assert cos[np.arange(c), codes].sum() >= best - 1e-9


def test_code_means_the_same_direction_under_every_prefix():
    # 4 far-apart groups x the same 4 small offsets: level 2 must label an offset alike everywhere.
    rng = np.random.default_rng(0)
    big, small = 10 * rng.normal(size=(4, 16)), rng.normal(size=(4, 16))
    group, offset = np.divmod(np.arange(400), 100)
    offset = offset % 4
    x = (big[group] + small[offset] + 0.01 * rng.normal(size=(400, 16))).astype(np.float32)
    tok = fit_gaoq(x, levels=2, codebook_size=4, niter=10, seed=3)
    assert len(np.unique(tok.fit_codes[:, 0])) == 4
    for b in range(4):
        assert len(np.unique(tok.fit_codes[offset == b, 1])) == 1
    assert len(np.unique(tok.fit_codes[:, 1])) == 4


@settings(max_examples=8, deadline=None)
@given(n=st.integers(2, 300), k=st.sampled_from([4, 8]), levels=st.integers(1, 3), seed=st.integers(0, 5))
def test_fit_codes_unique_and_exact_when_capacity_allows(n, k, levels, seed):
    x = clustered(n, 8, seed)
    tok = fit_gaoq(x, levels, k, niter=5, seed=seed, min_points_per_code=1)
    codes = tok.fit_codes
    assert codes.min() >= 0 and (codes < tok.level_sizes[0]).all()
    if n <= tok.level_sizes[0] ** levels:
        assert len(np.unique(codes, axis=0)) == n
        # Every item ended up as its own child somewhere, so the tree reproduces it.
        np.testing.assert_allclose(tok.decode(codes), x, atol=1e-5)


def test_decode_of_a_fit_prefix_is_the_mean_of_its_items(fitted):
    x, tok = fitted
    for level in range(tok.levels + 1):
        _, group = np.unique(tok.fit_codes[:, :level], axis=0, return_inverse=True)
        group = group.reshape(-1)
        means = np.stack([x[group == g].astype(np.float64).mean(0) for g in range(group.max() + 1)])
        np.testing.assert_allclose(tok.decode(tok.fit_codes[:, :level]), means[group], atol=1e-5)


def test_level_distances_are_finite_exactly_on_the_parents_children(fitted):
    x, tok = fitted
    codes = tok.encode(x[:50])
    for level in range(tok.levels):
        finite = np.isfinite(tok.level_distances(x[:50], codes[:, :level], level))
        parent = prefix_keys(codes, level, tok.k)
        children = (tok.keys[level][None, :] // tok.k == parent[:, None]).sum(1)
        assert finite[np.arange(50), codes[:, level]].all()
        if level < tok.levels - 1:
            np.testing.assert_array_equal(finite.sum(1), children)
        else:
            # Level-3 parents hold a few items each, so most codes are fillers, and all K are valid.
            assert (children < tok.k).all() and finite.all()


def test_last_level_fillers_are_scaled_anchors(fitted):
    x, tok = fitted
    last = tok.levels - 1
    # A parent with several items, so its children have a nonzero RMS norm to scale by.
    _, first, counts = np.unique(prefix_keys(tok.fit_codes, last, tok.k), return_index=True, return_counts=True)
    parent = tok.fit_codes[first[counts > 1][:1], :last]
    key = int(prefix_keys(parent, last, tok.k)[0])
    mine = tok.keys[last] // tok.k == key
    free = next(c for c in range(tok.k) if c not in set((tok.keys[last][mine] % tok.k).tolist()))
    scale = np.sqrt((tok.words[last][mine].astype(np.float64) ** 2).sum(1).mean())
    offset = tok.decode(np.array([[*parent[0], free]])) - tok.decode(parent)
    np.testing.assert_allclose(np.linalg.norm(offset), scale, rtol=1e-4)
    cos = offset[0] @ tok.anchors[last][free] / np.linalg.norm(offset)
    assert cos == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("m,levels_left,expected", [(47, 2, 7), (49, 2, 7), (50, 2, 8), (8, 3, 2),
                                                     (9, 3, 3), (1, 2, 1), (300, 1, 16), (5, 1, 5)])
def test_child_count_shares_the_split_between_the_levels_left(m, levels_left, expected):
    assert child_count(m, 16, levels_left, root=False) == expected
    assert child_count(m, 16, levels_left, root=True) == min(16, m)


def test_rrs_places_every_item_when_leaves_are_scarce():
    # Demo-like density: about 1.2 items per leaf of a fit tree, encoded by nearest centroid.
    from genrec_core.quantize.collisions import resolve

    x = clustered(1200, 16, 4)
    tok = fit_gaoq(x, levels=3, codebook_size=16, niter=10, seed=0, min_points_per_code=1)
    cfg = TokenizeConfig(quantizer="gaoq", collisions="rrs", codebook_size=16, candidates_per_level=8)
    result = resolve("rrs", tok, tok.latent(x), tok.encode(x),
                     np.array([f"I{i:05d}" for i in range(len(x))]), cfg)
    assert len(result.unplaced) == 0
    assert len(np.unique(result.codes, axis=0)) == len(x)


def test_level_distances_of_an_unknown_prefix_are_all_inf():
    x = clustered(40, 8, 5)
    tok = fit_gaoq(x, levels=3, codebook_size=8, niter=5, seed=0, min_points_per_code=1)
    # 8 level-1 parents of 5 items split into 3 children each: 24 of the 64 (c1, c2) prefixes.
    existing = set(tok.keys[1].tolist())
    missing = next(key for key in range(tok.k ** 2) if key not in existing)
    ghost = np.array([divmod(missing, tok.k)])
    assert np.isinf(tok.level_distances(x[:1], ghost, 2)).all()


def test_fast_path_matches_reference_on_fit_and_new_items(fitted):
    x, tok = fitted
    new = clustered(300, 16, 0, noise_seed=1)
    for data in (x, new):
        fast = tok.encode(data)
        np.testing.assert_array_equal(fast, tok.encode_reference(data))
        # The base class's greedy descent over the fast level_distances agrees too.
        np.testing.assert_array_equal(fast, Tokenizer.encode_reference(tok, data))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.integers(0, 2), seed=st.integers(0, 1000))
def test_level_distances_match_the_gathered_reference(fitted, level, seed):
    x, tok = fitted
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), 64, replace=False)
    prefix = tok.encode(x[rows])[:, :level]
    # Half the rows get random prefixes, most of which the tree never made.
    prefix[::2] = rng.integers(0, tok.k, size=prefix[::2].shape)
    fast = tok.level_distances(x[rows], prefix, level)
    slow = tok._gathered_distances(x[rows], prefix, level)
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
    np.testing.assert_allclose(fast[np.isfinite(fast)], slow[np.isfinite(slow)], rtol=1e-9, atol=1e-12)


def test_encode_mostly_follows_the_fit_assignment(fitted):
    x, tok = fitted
    # They differ only where balancing pushed an item off its nearest centroid.
    assert (tok.encode(x) == tok.fit_codes).all(1).mean() >= 0.8


def test_same_seed_same_state():
    x = clustered(400, 8, 3)
    a, b = fit_gaoq(x, 3, 8, 10, seed=5), fit_gaoq(x, 3, 8, 10, seed=5)
    (arrays_a, header_a), (arrays_b, header_b) = a.state(), b.state()
    assert header_a == header_b and arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name])
    np.testing.assert_array_equal(a.fit_codes, b.fit_codes)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 97), seed=st.integers(0, 10))
def test_codes_in_range_and_batch_and_order_invariant(fitted, batch, seed):
    x, tok = fitted
    x = x[:300]  # encode has per-call overhead per parent; batch=1 over 600 rows is slow
    full = tok.encode(x)
    assert full.min() >= 0 and (full < np.array(tok.level_sizes)).all()
    chunks = np.concatenate([tok.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
    np.testing.assert_array_equal(chunks, full)
    perm = np.random.default_rng(seed).permutation(len(x))
    np.testing.assert_array_equal(tok.encode(x[perm]), full[perm])


def test_more_levels_reconstruct_better():
    x, new = clustered(500, 16, 7), clustered(300, 16, 7, noise_seed=2)
    errors, new_errors = [], []
    for levels in (1, 2, 3):
        tok = fit_gaoq(x, levels, 16, 10, seed=0)
        errors.append(sq_error(tok, x, tok.encode(x)))
        new_errors.append(sq_error(tok, new, tok.encode(new)))
    assert all(b <= a * (1 + 1e-6) for a, b in zip(errors, errors[1:])), errors
    # New items may lose a little at the leaves (a leaf codeword is another item's residual), but
    # the deeper tree must still beat its first level.
    assert new_errors[-1] <= new_errors[0], new_errors


def test_files_round_trip(fitted):
    x, tok = fitted
    again = base.from_files(base.to_files(tok))
    assert isinstance(again, GAOQTokenizer) and again.fit_codes is None
    np.testing.assert_array_equal(again.encode(x), tok.encode(x))
    np.testing.assert_array_equal(again.decode(tok.fit_codes), tok.decode(tok.fit_codes))
    arrays, header = tok.state()
    with pytest.raises(ValueError):
        GAOQTokenizer.from_state(arrays, {**header, "kind": "other"})


def test_decode_rejects_codes_the_tree_never_made(fitted):
    _, tok = fitted
    parent = int(tok.keys[1][0]) // tok.k
    existing = set(tok.keys[1].tolist())
    missing = next(c for c in range(tok.k) if parent * tok.k + c not in existing)
    with pytest.raises(ValueError):
        tok.decode(np.array([[parent, missing, 0]]))
    with pytest.raises(ValueError):
        tok.decode(np.array([[0, tok.k, 0]]))


def test_tiny_catalogue_through_the_registry():
    x = clustered(100, 8, 11)
    tok = base.fit("gaoq", x, TokenizeConfig(quantizer="gaoq", codebook_size=256, niter=5), 0)
    k = tok.level_sizes[0]
    assert tok.level_sizes == (k,) * 3 and k <= 100 // 8
    assert len(np.unique(tok.fit_codes, axis=0)) == 100
    np.testing.assert_array_equal(tok.encode(x), tok.encode_reference(x))
