"""Fused vectors: unit rows whose text and collaborative blocks weigh exactly what the weights say."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genrec_core.embed.fused import fuse

weights = st.tuples(st.floats(0, 10), st.floats(0, 10)).filter(lambda w: w[0] + w[1] > 1e-3)


def _rows(dim: int):
    # Values bounded away from an all-zero row, which has no direction to normalise.
    return hnp.arrays(np.float32, (5, dim), elements=st.floats(-100, 100, width=32)).filter(
        lambda a: (np.linalg.norm(a, axis=1) > 1e-2).all())


@settings(max_examples=60, deadline=None)
@given(text=_rows(7), collab=_rows(3), w=weights)
def test_rows_are_unit_and_blocks_follow_the_weights(text, collab, w):
    out = fuse(text, collab, w)
    assert out.shape == (5, 10) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    total = np.hypot(*w)
    np.testing.assert_allclose(np.linalg.norm(out[:, :7], axis=1), w[0] / total, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[:, 7:], axis=1), w[1] / total, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(text=_rows(4), collab=_rows(4), w=weights,
       scale=hnp.arrays(np.float32, (5, 1), elements=st.floats(0.0625, 64, width=32)))
def test_input_norms_do_not_matter(text, collab, w, scale):
    np.testing.assert_allclose(fuse(text * scale, collab, w), fuse(text, collab, w), atol=1e-5)
    np.testing.assert_allclose(fuse(text, collab / scale, w), fuse(text, collab, w), atol=1e-5)


def test_equal_weights_scale_both_parts_alike():
    out = fuse(np.array([[3.0, 4.0]]), np.array([[0.0, 2.0]]), (2.0, 2.0))
    np.testing.assert_allclose(out, [[0.6 / np.sqrt(2), 0.8 / np.sqrt(2), 0.0, 1 / np.sqrt(2)]], atol=1e-6)


def test_a_zero_weight_drops_that_part():
    out = fuse(np.ones((2, 3)), np.ones((2, 2)), (0.0, 1.0))
    assert np.all(out[:, :3] == 0)


@pytest.mark.parametrize("bad", [(0.0, 0.0), (-1.0, 1.0)])
def test_bad_weights_are_refused(bad):
    with pytest.raises(ValueError):
        fuse(np.ones((1, 2)), np.ones((1, 2)), bad)


def test_row_counts_must_match():
    with pytest.raises(ValueError):
        fuse(np.ones((2, 2)), np.ones((3, 2)), (1.0, 1.0))
