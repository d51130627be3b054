"""Prefix trie over the catalogue's SID token sequences, for constrained beam search.

Every prefix of length 0..L is a key of one flat dict mapping it to the tuple of allowed next tokens,
so a decoding step costs one hash lookup per beam; beam search calls this (batch * beams) times a step.
`tables()` gives the same trie as dense per-level arrays, for beam search that stays in tensors.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from genrec_core.model.sid_vocab import EOS, PAD

# Beams that are already dead (invalid prefix) or finished (after EOS) must still be offered at least
# one token: transformers raises if a prefix function returns an empty list. PAD keeps their -inf score.
_DEAD = (PAD,)


@dataclass(frozen=True)
class TrieTables:
    """The trie as arrays. Level d's tokens lie in lo[d] .. lo[d] + width[d] - 1; the nodes of depth d are
    numbered 0.. (depth 0 is the root alone), and child[d][node, token - lo[d]] is the depth-(d+1) node that
    token leads to, -1 where the trie has no such child. item[node] is the item of a depth-L node."""

    lo: tuple[int, ...]
    width: tuple[int, ...]
    child: tuple[np.ndarray, ...]
    item: np.ndarray


class SidTrie:
    """Trie over `tokens`: int[n_items, L], one row of SID tokens per item, rows unique."""

    def __init__(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must have shape [n_items, L>=1], got {tokens.shape}")
        if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
        self.num_levels = int(tokens.shape[1])
        self.n_items = int(tokens.shape[0])
        self._items: dict[tuple[int, ...], int] = {}
        for idx, row in enumerate(tokens.tolist()):
            key = tuple(row)
            if key in self._items:
                raise ValueError(f"duplicate SID {key}: items {self._items[key]} and {idx}")
            self._items[key] = idx
        self._next = self._build_next(self._items, self.num_levels)
        self._tables: TrieTables | None = None

    @staticmethod
    def _build_next(items: dict[tuple[int, ...], int], num_levels: int) -> dict[tuple[int, ...], tuple[int, ...]]:
        """Maps every prefix of length 0..L to its sorted allowed next tokens ((EOS,) after a full SID)."""
        children: dict[tuple[int, ...], set[int]] = {}
        for sid in items:
            for depth in range(num_levels):
                children.setdefault(sid[:depth], set()).add(sid[depth])
        out = {prefix: tuple(sorted(nxt)) for prefix, nxt in children.items()}
        out.update({sid: (EOS,) for sid in items})
        return out

    def allowed_next(self, prefix: Sequence[int]) -> list[int]:
        """Valid next tokens after `prefix` (SID tokens only, no decoder start); [] if it is no SID prefix."""
        return list(self._next.get(tuple(int(t) for t in prefix), ()))

    def item_of(self, tokens: Sequence[int]) -> int | None:
        """Item index of the full SID `tokens` (length L), or None if it is no catalogue item."""
        return self._items.get(tuple(int(t) for t in tokens))

    def _decoder_allowed(self, seq: tuple[int, ...]) -> tuple[int, ...]:
        """Allowed next tokens for a decoder sequence with its start token already stripped."""
        return self._next.get(seq, _DEAD)

    def prefix_allowed_tokens_fn(self) -> Callable[[int, torch.Tensor], list[int]]:
        """Function for `generate(prefix_allowed_tokens_fn=...)`.

        `input_ids`: LongTensor[t], the decoder sequence so far starting with the decoder start token.
        Never returns an empty list: finished or invalid beams may only continue with PAD.
        """
        def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            del batch_id  # the catalogue constraint is the same for every user
            return list(self._decoder_allowed(tuple(input_ids.tolist()[1:])))

        return fn

    def allowed_pairs(self, decoder_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorisable form of `prefix_allowed_tokens_fn` for a whole step.

        decoder_ids: int[R, t] decoder sequences (start token first), one row per beam.
        Returns (rows int64[M], tokens int64[M]): the allowed (row, token) entries of the [R, V] mask.
        """
        allowed = [self._decoder_allowed(tuple(row[1:])) for row in np.asarray(decoder_ids).tolist()]
        counts = np.fromiter((len(a) for a in allowed), dtype=np.int64, count=len(allowed))
        rows = np.repeat(np.arange(len(allowed), dtype=np.int64), counts)
        tokens = np.fromiter(chain.from_iterable(allowed), dtype=np.int64, count=int(counts.sum()))
        return rows, tokens

    def tables(self) -> TrieTables:
        """The trie as dense per-level arrays (see TrieTables); built once and kept."""
        if self._tables is None:
            self._tables = _build_tables(np.array(list(self._items), dtype=np.int64).reshape(-1, self.num_levels),
                                         np.fromiter(self._items.values(), dtype=np.int64, count=self.n_items))
        return self._tables


def _build_tables(tokens: np.ndarray, items: np.ndarray) -> TrieTables:
    n, num_levels = tokens.shape
    lo = tokens.min(axis=0) if n else np.zeros(num_levels, dtype=np.int64)
    width = (tokens.max(axis=0) - lo + 1) if n else np.ones(num_levels, dtype=np.int64)
    node = np.zeros(n, dtype=np.int64)  # each item's node at the current depth
    child = []
    for d in range(num_levels):
        # a depth-(d+1) node is a distinct (parent node, token) pair
        pairs = node * int(width[d]) + (tokens[:, d] - lo[d])
        uniq, nxt = np.unique(pairs, return_inverse=True)
        table = np.full((int(node.max(initial=0)) + 1, int(width[d])), -1, dtype=np.int64)
        table.reshape(-1)[uniq] = np.arange(len(uniq))
        child.append(table)
        node = nxt.reshape(-1)
    item = np.full(len(np.unique(node)) if n else 0, -1, dtype=np.int64)
    item[node] = items
    return TrieTables(tuple(int(v) for v in lo), tuple(int(v) for v in width), tuple(child), item)
