"""Token layout of Semantic IDs for the seq2seq model.

Token 0 is PAD (and the T5 decoder start token), token 1 is EOS, and each SID level owns a contiguous
block of tokens. Giving every level its own block (rather than sharing codes across levels) lets the
model learn a different embedding for "code 3 at level 0" and "code 3 at level 2", as in TIGER.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = 0
EOS = 1
N_SPECIAL = 2


@dataclass(frozen=True)
class SidVocab:
    """Vocabulary for SIDs with `len(level_sizes)` levels; level l has codes 0..level_sizes[l]-1."""

    level_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.level_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"level_sizes must be a non-empty tuple of positive ints, got {self.level_sizes!r}")
        object.__setattr__(self, "level_sizes", sizes)

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + sum(self.level_sizes)

    def offset(self, level: int) -> int:
        """First token id of `level`'s block."""
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} out of range 0..{self.num_levels - 1}")
        return N_SPECIAL + sum(self.level_sizes[:level])

    def _offsets(self) -> np.ndarray:
        """int64[L] first token of each level."""
        return N_SPECIAL + np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]).astype(np.int64)

    def codes_to_tokens(self, codes: np.ndarray) -> np.ndarray:
        """codes int[n, L] (level l in 0..level_sizes[l]-1) -> tokens int64[n, L]."""
        codes = self._check_shape(codes, "codes")
        sizes = np.asarray(self.level_sizes, dtype=np.int64)
        if codes.size and ((codes < 0).any() or (codes >= sizes[None, :]).any()):
            raise ValueError("a code is out of range for its level")
        return codes + self._offsets()[None, :]

    def tokens_to_codes(self, tokens: np.ndarray) -> np.ndarray:
        """tokens int[n, L] -> codes int64[n, L]; ValueError if a token is not in its level's block."""
        tokens = self._check_shape(tokens, "tokens")
        codes = tokens - self._offsets()[None, :]
        sizes = np.asarray(self.level_sizes, dtype=np.int64)
        if codes.size and ((codes < 0).any() or (codes >= sizes[None, :]).any()):
            bad = np.argwhere((codes < 0) | (codes >= sizes[None, :]))[0]
            raise ValueError(f"token {int(tokens[bad[0], bad[1]])} at row {bad[0]} is not a level-{bad[1]} token")
        return codes

    def _check_shape(self, arr: np.ndarray, name: str) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[1] != self.num_levels:
            raise ValueError(f"{name} must have shape [n, {self.num_levels}], got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)
