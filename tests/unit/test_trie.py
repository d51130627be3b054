"""SidTrie against brute force over the item table."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.model.sid_vocab import EOS, PAD, SidVocab
from genrec_core.model.trie import SidTrie


@st.composite
def catalogues(draw):
    """(vocab, tokens int[n, L]) with unique rows."""
    sizes = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    codes = draw(st.lists(st.tuples(*[st.integers(0, s - 1) for s in sizes]), min_size=1, max_size=40, unique=True))
    vocab = SidVocab(sizes)
    return vocab, vocab.codes_to_tokens(np.array(codes, dtype=np.int64))


def _brute_allowed(tokens: np.ndarray, prefix: tuple[int, ...]) -> list[int]:
    rows = [tuple(r) for r in tokens.tolist()]
    depth = len(prefix)
    if depth == tokens.shape[1]:
        return [EOS] if prefix in rows else []
    if depth > tokens.shape[1]:
        return []
    return sorted({r[depth] for r in rows if r[:depth] == prefix})


@settings(max_examples=60, deadline=None)
@given(catalogues())
def test_every_sid_is_reachable_token_by_token(case):
    _, tokens = case
    trie = SidTrie(tokens)
    for idx, row in enumerate(tokens.tolist()):
        for depth, tok in enumerate(row):
            assert tok in trie.allowed_next(row[:depth])
        assert trie.allowed_next(row) == [EOS]
        assert trie.item_of(row) == idx


@settings(max_examples=60, deadline=None)
@given(catalogues(), st.data())
def test_allowed_sets_equal_brute_force(case, data):
    vocab, tokens = case
    trie = SidTrie(tokens)
    # every true prefix, plus arbitrary token sequences (mostly not SID prefixes)
    prefixes = {tuple(r[:d]) for r in tokens.tolist() for d in range(tokens.shape[1] + 1)}
    any_token = st.integers(0, vocab.vocab_size - 1)
    prefixes |= set(data.draw(st.lists(st.lists(any_token, max_size=vocab.num_levels + 1).map(tuple), max_size=30)))
    for prefix in prefixes:
        assert trie.allowed_next(prefix) == _brute_allowed(tokens, prefix)


@settings(max_examples=60, deadline=None)
@given(catalogues(), st.data())
def test_non_sid_prefixes_are_rejected(case, data):
    vocab, tokens = case
    trie = SidTrie(tokens)
    true_prefixes = {tuple(r[:d]) for r in tokens.tolist() for d in range(tokens.shape[1] + 1)}
    prefix = data.draw(st.lists(st.integers(0, vocab.vocab_size + 3), min_size=1, max_size=vocab.num_levels + 2)
                       .map(tuple).filter(lambda p: p not in true_prefixes))
    assert trie.allowed_next(prefix) == []
    assert trie.item_of(prefix) is None
    fn = trie.prefix_allowed_tokens_fn()
    assert fn(0, torch.tensor((PAD,) + prefix)) == [PAD]


@settings(max_examples=40, deadline=None)
@given(catalogues(), st.data())
def test_prefix_fn_and_allowed_pairs_agree(case, data):
    _, tokens = case
    trie = SidTrie(tokens)
    fn = trie.prefix_allowed_tokens_fn()
    row = tokens[data.draw(st.integers(0, len(tokens) - 1))].tolist()
    depth = data.draw(st.integers(0, len(row)))
    decoder = [PAD] + row[:depth]
    assert fn(3, torch.tensor(decoder)) == trie.allowed_next(row[:depth])
    assert fn(0, torch.tensor([PAD] + row + [EOS])) == [PAD]
    assert fn(0, torch.tensor([PAD] + row + [EOS, PAD])) == [PAD]
    # a whole step at once: same rows (equal length) through the vectorised form
    step = np.array([decoder, decoder])
    rows, toks = trie.allowed_pairs(step)
    for r in range(2):
        assert toks[rows == r].tolist() == fn(0, torch.tensor(step[r]))


def test_duplicates_and_bad_shapes_raise():
    with pytest.raises(ValueError):
        SidTrie(np.array([[2, 5], [3, 5], [2, 5]]))
    with pytest.raises(ValueError):
        SidTrie(np.array([2, 5, 6]))


def test_small_example():
    trie = SidTrie(np.array([[2, 5], [2, 6], [3, 5]]))
    assert trie.allowed_next([]) == [2, 3]
    assert trie.allowed_next([2]) == [5, 6]
    assert trie.allowed_next([3]) == [5]
    assert trie.allowed_next([3, 6]) == []
    assert trie.allowed_next([2, 6, EOS]) == []
    assert trie.item_of([3, 5]) == 2 and trie.item_of([3, 6]) is None and trie.item_of([2]) is None


@settings(max_examples=60, deadline=None)
@given(catalogues())
def test_dense_tables_walk_to_every_item_and_nowhere_else(case):
    """Walking child tables token by token reaches item idx for row idx; the children a node's table row
    lists are exactly the trie's allowed next tokens."""
    _, tokens = case
    trie = SidTrie(tokens)
    t = trie.tables()
    for idx, row in enumerate(tokens.tolist()):
        node = 0
        for d, tok in enumerate(row):
            listed = [t.lo[d] + c for c in np.flatnonzero(t.child[d][node] >= 0)]
            assert listed == trie.allowed_next(row[:d])
            node = int(t.child[d][node, tok - t.lo[d]])
        assert t.item[node] == idx
    assert len(t.item) == len(tokens)
