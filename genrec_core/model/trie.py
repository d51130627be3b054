"""Prefix trie over the catalogue's SID token sequences, for constrained beam search.

Every prefix of length 0..L is a key of one flat dict mapping it to the tuple of allowed next tokens,
so a decoding step costs one hash lookup per beam; beam search calls this (batch * beams) times a step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain

import numpy as np
import torch

from genrec_core.model.sid_vocab import EOS, PAD

# Beams that are already dead (invalid prefix) or finished (after EOS) must still be offered at least
# one token: transformers raises if a prefix function returns an empty list. PAD keeps their -inf score.
_DEAD = (PAD,)


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
