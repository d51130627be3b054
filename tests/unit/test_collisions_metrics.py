from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from genrec_core.quantize.collisions import dedup_digit, dedup_digit_reference, sid_strings
from genrec_core.quantize.metrics import collision_rate, level_usage, reconstruction_error, sid_quality

codes_st = st.integers(1, 60).flatmap(
    lambda n: arrays(np.int64, (n, 3), elements=st.integers(0, 3)))


@given(codes_st, st.randoms(use_true_random=False))
def test_dedup_unique_matches_reference_and_is_order_free(codes, rnd):
    keys = np.array([f"item{i:04d}" for i in range(len(codes))])
    out = dedup_digit(codes, keys)
    assert len({tuple(r) for r in out}) == len(codes)
    np.testing.assert_array_equal(out[:, :3], codes)
    np.testing.assert_array_equal(out, dedup_digit_reference(codes, keys))
    perm = list(range(len(codes)))
    rnd.shuffle(perm)
    np.testing.assert_array_equal(dedup_digit(codes[perm], keys[perm]), out[perm])
    assert out[:, 3].max() + 1 == max(np.unique(codes, axis=0, return_counts=True)[1])


def test_metrics_on_known_values():
    codes = np.array([[0, 1], [0, 1], [1, 0], [1, 1]])
    assert collision_rate(codes) == 0.25
    usage = level_usage(codes, (2, 4))
    assert usage[0]["entropy_bits"] == 1.0 and usage[0]["dead_codes"] == 0
    assert usage[1]["used"] == 2 and usage[1]["dead_codes"] == 2
    x = np.ones((4, 2))
    assert reconstruction_error(x, x) == 0.0
    assert reconstruction_error(x, np.zeros_like(x)) == 1.0
    q = sid_quality(codes, (2, 4), x, x)
    assert q["max_items_per_sid"] == 2 and q["n_items"] == 4
    assert sid_strings(np.array([[17, 3, 0]])) == ["17-3-0"]
