"""The cold-item rule of the collaborative embedder: deterministic category means, never zero."""
from __future__ import annotations

import numpy as np
import pytest

from genrec_core.embed.collab import als_blocks, category_prefixes, fill_cold, normalize_rows


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_prefixes_run_deepest_first():
    assert category_prefixes("A > B > C") == ["A > B > C", "A > B", "A"]
    assert category_prefixes(" A>B ") == ["A > B", "A"]
    assert category_prefixes(None) == [] and category_prefixes("") == []


def test_cold_items_take_the_deepest_shared_category_mean():
    vectors = np.array([[2, 0, 0], [0, 3, 0], [0, 0, 5], [9, 9, 9], [9, 9, 9], [9, 9, 9], [0, 0, 0]])
    cats = ["A > B > C", "A > B > D", "E", "A > B > C", "A > X", "Q", "A > B > D"]
    warm = np.array([True, True, True, False, False, False, True])  # the last warm row is all zero
    out = fill_cold(vectors, warm, cats)
    np.testing.assert_allclose(out[:3], np.eye(3), atol=1e-7)
    np.testing.assert_allclose(out[3], [1, 0, 0], atol=1e-7)  # leaf A > B > C
    np.testing.assert_allclose(out[4], _unit([1, 1, 0]), atol=1e-7)  # falls back to top level A
    np.testing.assert_allclose(out[5], _unit([1, 1, 1]), atol=1e-7)  # unknown category: all warm items
    np.testing.assert_allclose(out[6], [0, 1, 0], atol=1e-7)  # a zero warm row counts as cold
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_rule_ignores_cold_rows_input_and_is_repeatable():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 4))
    cats = [f"T{i % 3} > S{i % 5}" for i in range(30)]
    warm = rng.random(30) > 0.3
    noisy = vectors.copy()
    noisy[~warm] = rng.normal(size=((~warm).sum(), 4))
    assert np.array_equal(fill_cold(vectors, warm, cats), fill_cold(noisy, warm, cats))


def test_no_warm_item_is_an_error():
    with pytest.raises(ValueError):
        fill_cold(np.ones((2, 3)), np.zeros(2, dtype=bool), ["A", "B"])


def test_normalize_rows_keeps_zero_rows_zero():
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_als_blocks_grow_with_the_data_and_are_bounded():
    assert [als_blocks(n) for n in (0, 1, 1_000_000, 1_000_001, 10**12)] == [1, 1, 1, 2, 100]
