"""SidVocab: token layout and code <-> token round trips."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.model.sid_vocab import EOS, PAD, SidVocab

level_sizes = st.lists(st.integers(1, 50), min_size=1, max_size=5).map(tuple)


@st.composite
def vocab_and_codes(draw):
    sizes = draw(level_sizes)
    n = draw(st.integers(0, 30))
    rows = [[draw(st.integers(0, s - 1)) for s in sizes] for _ in range(n)]
    return SidVocab(sizes), np.array(rows, dtype=np.int64).reshape(n, len(sizes))


@settings(max_examples=60, deadline=None)
@given(vocab_and_codes())
def test_round_trip(vc):
    vocab, codes = vc
    tokens = vocab.codes_to_tokens(codes)
    assert tokens.shape == codes.shape
    np.testing.assert_array_equal(vocab.tokens_to_codes(tokens), codes)


@settings(max_examples=60, deadline=None)
@given(level_sizes)
def test_level_blocks_are_contiguous_disjoint_and_after_specials(sizes):
    vocab = SidVocab(sizes)
    assert vocab.num_levels == len(sizes)
    assert vocab.vocab_size == 2 + sum(sizes)
    seen: set[int] = set()
    for level, size in enumerate(sizes):
        block = set(range(vocab.offset(level), vocab.offset(level) + size))
        assert not block & seen and min(block) >= 2
        seen |= block
    assert seen == set(range(2, vocab.vocab_size))
    assert PAD == 0 and EOS == 1


def test_known_layout():
    vocab = SidVocab((3, 2))
    np.testing.assert_array_equal(vocab.codes_to_tokens(np.array([[0, 0], [2, 1]])), [[2, 5], [4, 6]])
    assert vocab.vocab_size == 7


@pytest.mark.parametrize("tokens", [[[5, 5]], [[2, 2]], [[0, 5]], [[1, 5]], [[4, 7]]])
def test_tokens_of_wrong_level_are_rejected(tokens):
    with pytest.raises(ValueError):
        SidVocab((3, 2)).tokens_to_codes(np.array(tokens))


@pytest.mark.parametrize("codes", [[[3, 0]], [[0, 2]], [[-1, 0]]])
def test_out_of_range_codes_are_rejected(codes):
    with pytest.raises(ValueError):
        SidVocab((3, 2)).codes_to_tokens(np.array(codes))


def test_shape_and_size_checks():
    with pytest.raises(ValueError):
        SidVocab((3, 2)).codes_to_tokens(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        SidVocab(())
    with pytest.raises(ValueError):
        SidVocab((3, 0))
