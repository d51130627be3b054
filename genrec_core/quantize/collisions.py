"""Making Semantic IDs unique.

`dedup_digit` (TIGER) appends one code that numbers the items sharing a semantic prefix. The order
within a group is by a caller-given key (the item id), so reruns hand out the same digits.
"""
from __future__ import annotations

import numpy as np


def dedup_digit(codes: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """codes: int [n, L], order_key: [n] sortable (unique) -> int64 [n, L+1] with unique rows."""
    n = codes.shape[0]
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    # lexsort sorts by the last key first: group by the codes, then by order_key inside a group.
    order = np.lexsort((order_key,) + tuple(codes[:, l] for l in reversed(range(codes.shape[1]))))
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    digit = np.empty(n, dtype=np.int64)
    digit[order] = np.arange(n) - group_start
    return np.concatenate([codes.astype(np.int64), digit[:, None]], axis=1)


def dedup_digit_reference(codes: np.ndarray, order_key) -> np.ndarray:
    seen: dict[tuple, list] = {}
    for i in sorted(range(len(order_key)), key=lambda i: order_key[i]):
        seen.setdefault(tuple(int(c) for c in codes[i]), []).append(i)
    digit = np.zeros(len(order_key), dtype=np.int64)
    for members in seen.values():
        for rank, i in enumerate(members):
            digit[i] = rank
    return np.concatenate([np.asarray(codes, dtype=np.int64), digit[:, None]], axis=1)


def sid_strings(codes: np.ndarray) -> list[str]:
    return ["-".join(str(int(c)) for c in row) for row in codes]
