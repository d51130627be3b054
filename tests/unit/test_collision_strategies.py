"""Unique-SID strategies (cap_reassign, rrs, ecm): uniqueness or an exact report, order independence,
the two-phase structure Spark relies on, hand-checked answers, and fast paths against references."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.config import TokenizeConfig
from genrec_core.quantize.base import Tokenizer
from genrec_core.quantize.collisions import (STRATEGIES, dedup_digit, resolve, resolve_group,
                                             resolve_overflow, resolve_reference, rrs_reference)
from genrec_core.quantize.rq_kmeans import RQKMeansTokenizer

UNIQUE = ("cap_reassign", "rrs", "ecm")
FAST = settings(max_examples=30, deadline=None)


class MaskedTokenizer(RQKMeansTokenizer):
    """Residual codebooks where some codes are invalid (+inf) under some prefixes, as in tree
    quantizers; greedy codes come from the numpy reference, which respects the mask."""

    def level_distances(self, z, prefix, level):
        d = super().level_distances(z, prefix, level)
        if level:
            k = d.shape[1]
            d[(prefix.sum(1)[:, None] + np.arange(k)[None, :]) % 3 == 0] = np.inf
        return d

    def encode(self, x):
        return self.encode_reference(x)


@dataclass
class Problem:
    tok: Tokenizer
    z: np.ndarray
    codes: np.ndarray
    keys: np.ndarray

    def cfg(self, strategy, k, cap=1):
        return TokenizeConfig(collisions=strategy, candidates_per_level=k, cap=cap)


@st.composite
def problems(draw):
    """Small residual tokenizers with items crowded near a few SIDs, so collisions are common."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n, levels = draw(st.integers(1, 40)), draw(st.integers(1, 3))
    size, dim = draw(st.integers(2, 4)), draw(st.integers(1, 4))
    books = tuple((rng.normal(size=(size, dim)) * 0.6 ** level).astype(np.float32) for level in range(levels))
    cls = MaskedTokenizer if draw(st.booleans()) else RQKMeansTokenizer
    tok = cls(books)
    hubs = rng.normal(size=(draw(st.integers(1, 4)), dim))
    x = (hubs[rng.integers(0, len(hubs), n)] + 0.2 * rng.normal(size=(n, dim))).astype(np.float32)
    keys = np.array([f"item{v:03d}" for v in rng.permutation(n)])  # order key differs from row order
    return Problem(tok, tok.latent(x), tok.encode(x), keys)


def held(codes, rows) -> Counter:
    return Counter(tuple(int(c) for c in codes[i]) for i in rows)


def placed_rows(res, n):
    return np.setdiff1d(np.arange(n), res.unplaced)


def path_is_valid(tok, z1, sid) -> bool:
    return all(np.isfinite(tok.level_distances(z1[None], np.asarray(sid[:lv])[None], lv)[0, sid[lv]])
               for lv in range(tok.levels))


@FAST
@given(problems(), st.sampled_from(UNIQUE), st.integers(1, 3))
def test_unique_or_reported_in_range_and_never_moving_loners(p, strategy, k):
    res = resolve(strategy, p.tok, p.z, p.codes, p.keys, p.cfg(strategy, k))
    n = len(p.codes)
    placed = placed_rows(res, n)
    counts = held(res.codes, placed)
    assert max(counts.values(), default=0) <= 1
    assert res.codes.shape == p.codes.shape and res.codes.dtype == np.int64
    assert ((res.codes >= 0) & (res.codes < np.asarray(p.tok.level_sizes))).all()
    assert all(path_is_valid(p.tok, p.z[i], res.codes[i]) for i in placed)
    # An unplaced row keeps its greedy SID, which a placed row holds: reported, never a silent duplicate.
    np.testing.assert_array_equal(res.codes[res.unplaced], p.codes[res.unplaced])
    assert all(counts[tuple(p.codes[i])] == 1 for i in res.unplaced)
    greedy = held(p.codes, range(n))
    loners = [i for i in range(n) if greedy[tuple(p.codes[i])] == 1]
    np.testing.assert_array_equal(res.codes[loners], p.codes[loners])
    assert res.moved == int((res.codes != p.codes).any(1).sum())


@FAST
@given(problems(), st.integers(1, 3), st.integers(1, 3))
def test_cap_reassign_respects_cap_and_reports_only_when_full(p, k, cap):
    cfg = p.cfg("cap_reassign", k, cap)
    res = resolve("cap_reassign", p.tok, p.z, p.codes, p.keys, cfg)
    n = len(p.codes)
    counts = held(res.codes, placed_rows(res, n))
    assert max(counts.values(), default=0) <= cap
    greedy = held(p.codes, range(n))
    roomy = [i for i in range(n) if greedy[tuple(p.codes[i])] <= cap]
    np.testing.assert_array_equal(res.codes[roomy], p.codes[roomy])
    assert all(counts[tuple(p.codes[i])] == cap for i in res.unplaced)


@FAST
@given(problems(), st.sampled_from(("rrs", "cap_reassign")), st.integers(1, 3))
def test_unplaced_rows_had_every_candidate_full(p, strategy, k):
    """Nothing is widened, and nothing is reported that the search could have placed."""
    from genrec_core.quantize.collisions import _ref_options

    res = resolve(strategy, p.tok, p.z, p.codes, p.keys, p.cfg(strategy, k))
    counts = held(res.codes, placed_rows(res, len(p.codes)))
    for i in res.unplaced:
        greedy = tuple(int(c) for c in p.codes[i])
        options = _ref_options(p.tok, p.z[i], greedy, 0.0, (), k)
        assert all(counts[sid] >= 1 for sid, _ in options)


@FAST
@given(problems(), st.sampled_from(STRATEGIES), st.integers(1, 3), st.randoms(use_true_random=False))
def test_identical_when_rows_are_permuted(p, strategy, k, rnd):
    cfg = p.cfg(strategy, k, cap=2 if strategy == "cap_reassign" else 1)
    res = resolve(strategy, p.tok, p.z, p.codes, p.keys, cfg)
    perm = np.array(rnd.sample(range(len(p.codes)), len(p.codes)))
    again = resolve(strategy, p.tok, p.z[perm], p.codes[perm], p.keys[perm], cfg)
    np.testing.assert_array_equal(again.codes, res.codes[perm])
    np.testing.assert_array_equal(np.sort(perm[again.unplaced]), res.unplaced)
    assert again.moved == res.moved


@FAST
@given(problems(), st.sampled_from(UNIQUE), st.integers(1, 3), st.randoms(use_true_random=False))
def test_phases_in_any_group_order_equal_resolve(p, strategy, k, rnd):
    """What the Spark job does: phase 1 per first code (any order, rows in any order), then phase 2."""
    cfg = p.cfg(strategy, k)
    out, overflow = p.codes.copy(), []
    groups = [np.flatnonzero(p.codes[:, 0] == g) for g in np.unique(p.codes[:, 0])]
    rnd.shuffle(groups)
    for rows in groups:
        rows = np.array(rnd.sample(list(rows), len(rows)))
        part = resolve_group(strategy, p.tok, p.z[rows], p.codes[rows], p.keys[rows], cfg)
        out[rows] = part.codes
        overflow.extend(rows[part.unplaced].tolist())
    rnd.shuffle(overflow)
    left = np.array(overflow, dtype=np.int64)
    taken = np.array([out[i] for i in range(len(out)) if i not in set(overflow)]).reshape(-1, p.tok.levels)
    taken = taken[rnd.sample(range(len(taken)), len(taken))]
    rest = resolve_overflow(strategy, p.tok, p.z[left], p.codes[left], p.keys[left], taken, cfg)
    out[left] = rest.codes
    full = resolve(strategy, p.tok, p.z, p.codes, p.keys, cfg)
    np.testing.assert_array_equal(out, full.codes)
    np.testing.assert_array_equal(np.sort(left[rest.unplaced]), full.unplaced)


@FAST
@given(problems(), st.sampled_from(UNIQUE), st.integers(1, 3), st.integers(1, 2))
def test_fast_paths_match_references(p, strategy, k, cap):
    cfg = p.cfg(strategy, k, cap)
    fast = resolve(strategy, p.tok, p.z, p.codes, p.keys, cfg)
    ref = (rrs_reference if strategy == "rrs" else
           lambda *a: resolve_reference(strategy, *a))(p.tok, p.z, p.codes, p.keys, cfg)
    np.testing.assert_array_equal(fast.codes, ref.codes)
    np.testing.assert_array_equal(fast.unplaced, ref.unplaced)
    assert fast.moved == ref.moved


@settings(max_examples=15, deadline=None)
@given(problems())
def test_dedup_digit_through_resolve_and_groups(p):
    cfg = p.cfg("dedup_digit", 1)
    expected = dedup_digit(p.codes, p.keys)
    res = resolve(None, p.tok, p.z, p.codes, p.keys, cfg)  # None: the strategy named in cfg
    np.testing.assert_array_equal(res.codes, expected)
    assert res.moved == 0 and res.unplaced.size == 0
    for g in np.unique(p.codes[:, 0]):
        rows = np.flatnonzero(p.codes[:, 0] == g)
        part = resolve_group("dedup_digit", p.tok, p.z[rows], p.codes[rows], p.keys[rows], cfg)
        np.testing.assert_array_equal(part.codes, expected[rows])


# ----- a hand-built case where every strategy's answer is worked out on paper -----

class TableTokenizer(Tokenizer):
    """Two levels; z[:, 0] is an item index and distances are read from hand-written tables."""

    kind = "table"

    def __init__(self, level0, level1):
        self.level0, self.level1 = level0, level1

    level_sizes = property(lambda self: (3, 2))
    dim = property(lambda self: 1)

    def level_distances(self, z, prefix, level):
        items = z[:, 0].astype(int)
        if level == 0:
            return np.array([self.level0[i] for i in items], dtype=np.float64)
        return np.array([self.level1[i][c] for i, c in zip(items, prefix[:, 0])], dtype=np.float64)

    def encode(self, x):
        return self.encode_reference(x)

    def decode(self, codes):
        raise NotImplementedError

    def state(self):
        raise NotImplementedError

    @classmethod
    def from_state(cls, arrays, header):
        raise NotImplementedError


# Items A, B, C all want SID (0,0); under first code 0 only (0,1) is free.
#   A: (0,0)=1.0 (0,1)=1.2        -> nearest to (0,0), but its alternative is almost as good
#   B: (0,0)=1.1 (0,1)=9          -> a poor alternative
#   C: (0,0)=1.5 (0,1)=9.5; level 1 ranks first codes 0 < 1 < 2, but (2,0)=2 is cheaper than (1,0)=3
TABLE = TableTokenizer(
    level0=[[0.1, 5.0, 6.0], [0.1, 5.0, 6.0], [0.5, 0.6, 0.9]],
    level1=[[[1.0, 1.2], [8.0, 8.5], [8.6, 8.7]],
            [[1.1, 9.0], [8.0, 8.5], [8.6, 8.7]],
            [[1.5, 9.5], [3.0, 5.0], [2.0, 7.0]]])
A, B, C = 0, 1, 2


@pytest.mark.parametrize("strategy, expected, unplaced", [
    # rrs: A keeps (0,0); B takes (0,1); C overflows and takes the first free leaf depth-first: (1,0).
    ("rrs", [(0, 0), (0, 1), (1, 0)], []),
    # cap_reassign: the same in phase 1; in phase 2 C takes the cheapest free SID: (2,0).
    ("cap_reassign", [(0, 0), (0, 1), (2, 0)], []),
    # ecm: matching A->(0,1), B->(0,0) costs 2.3, less than keeping A (10.0); C overflows to (2,0).
    ("ecm", [(0, 1), (0, 0), (2, 0)], []),
])
def test_hand_built_case(strategy, expected, unplaced):
    z = np.array([[A], [B], [C]], dtype=np.float32)
    codes = TABLE.encode(z)
    np.testing.assert_array_equal(codes, [[0, 0]] * 3)
    cfg = TokenizeConfig(collisions=strategy, candidates_per_level=3)
    res = resolve(strategy, TABLE, z, codes, np.array(["a", "b", "c"]), cfg)
    np.testing.assert_array_equal(res.codes, expected)
    assert res.unplaced.tolist() == unplaced and res.moved == 2
    np.testing.assert_array_equal(resolve_reference(strategy, TABLE, z, codes, np.array(["a", "b", "c"]),
                                                    cfg).codes, expected)


@pytest.mark.parametrize("strategy", UNIQUE)
def test_hand_built_case_reports_instead_of_widening(strategy):
    """With one candidate per level nobody can move: B and C are reported and keep (0,0)."""
    z = np.array([[A], [B], [C]], dtype=np.float32)
    cfg = TokenizeConfig(collisions=strategy, candidates_per_level=1)
    res = resolve(strategy, TABLE, z, TABLE.encode(z), np.array(["a", "b", "c"]), cfg)
    np.testing.assert_array_equal(res.codes, [[0, 0]] * 3)
    # ecm too: the cheapest matching of three items to one SID gives it to A, the nearest.
    assert res.unplaced.tolist() == [B, C] and res.moved == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_input(strategy):
    res = resolve(strategy, TABLE, np.zeros((0, 1), np.float32), np.zeros((0, 2), np.int64),
                  np.array([], dtype=str), TokenizeConfig())
    assert res.codes.shape == (0, 3 if strategy == "dedup_digit" else 2) and res.unplaced.size == 0


def test_bad_inputs_fail_fast():
    z = np.array([[A], [B], [C]], dtype=np.float32)
    cfg = TokenizeConfig()
    codes = TABLE.encode(z)
    with pytest.raises(ValueError, match="unknown collision strategy"):
        resolve("random", TABLE, z, codes, np.array(["a", "b", "c"]), cfg)
    with pytest.raises(ValueError, match="unique"):
        resolve("rrs", TABLE, z, codes, np.array(["a", "a", "c"]), cfg)
    with pytest.raises(ValueError, match="share their first-level code"):
        resolve_group("rrs", TABLE, z, np.array([[0, 0], [1, 0], [0, 1]]), np.array(["a", "b", "c"]), cfg)
    with pytest.raises(ValueError, match="out of range"):
        resolve("ecm", TABLE, z, np.array([[0, 0], [0, 2], [0, 1]]), np.array(["a", "b", "c"]), cfg)
