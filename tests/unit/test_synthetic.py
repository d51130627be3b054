"""Pure parts of the synthetic generator: the random-draw references, the plan and its invariants.

The Spark twins of these formulas are checked against them in tests/integration/test_generate.py.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.config import CleanConfig, SyntheticConfig
from genrec_core.data import synthetic as syn

SMALL = SyntheticConfig(n_users=300, n_items=200, mean_events_per_user=10.0)


def test_xxhash64_matches_values_spark_returned() -> None:
    # SELECT xxhash64(1L, 2L, 3L), xxhash64(-5L, 4611686018427387904L) in Spark 4.2.
    assert syn.xxhash64(1, 2, 3) == 4904562767517797033
    assert syn.xxhash64(1, 2, 0) == 5002502036123448364
    assert syn.xxhash64(-5, 2**62) == -5953468967923915855


def test_murmur3_matches_values_spark_returned() -> None:
    # SELECT hash(0), hash(1) in Spark 4.2 (int arguments).
    assert syn._murmur3_int(0) == 933211791
    assert syn._murmur3_int(1) == -559580957


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), key=st.integers(-2**63, 2**63 - 1))
def test_hash_uniform_is_a_deterministic_unit_draw(seed, key) -> None:
    u = syn.hash_uniform(seed, "stream", key)
    assert 0.0 <= u < 1.0 and u == syn.hash_uniform(seed, "stream", key)


def test_streams_and_seeds_are_independent() -> None:
    a = [syn.hash_uniform(1, "a", k) for k in range(2000)]
    b = [syn.hash_uniform(1, "b", k) for k in range(2000)]
    c = [syn.hash_uniform(2, "a", k) for k in range(2000)]
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1 and abs(np.corrcoef(a, c)[0, 1]) < 0.1
    assert abs(np.mean(a) - 0.5) < 0.03  # roughly uniform


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 10**7), exponent=st.floats(0.0, 3.0),
       u=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=50))
def test_zipf_rank_lies_in_range_and_grows_with_u(n, exponent, u) -> None:
    u = np.sort(np.array(u))
    rank = syn.zipf_rank(u, n, exponent, syn.zipf_constant(n, exponent))
    assert rank.min() >= 0 and rank.max() <= n - 1
    assert (np.diff(rank) >= 0).all()


@pytest.mark.parametrize("exponent", [0.7, 1.0, 1.1, 1.6])
def test_zipf_rank_frequencies_follow_the_power_law(exponent) -> None:
    n, draws = 50, 200_000
    u = (np.arange(draws) + 0.5) / draws  # a perfectly even sweep of [0, 1)
    counts = np.bincount(syn.zipf_rank(u, n, exponent, syn.zipf_constant(n, exponent)), minlength=n)
    assert (np.diff(counts) <= 0).all()  # rank 0 is the most popular
    # Rank k - 1 owns [k, k + 1) of the power law x^-s on [1, n + 1): its exact share is a difference
    # of the CDF, which the even sweep reproduces up to its resolution.
    cdf = (lambda x: math.log(x)) if exponent == 1.0 else (lambda x: x ** (1 - exponent) / (1 - exponent))
    total = cdf(n + 1) - cdf(1)
    for k in (1, 2, 5, 10, 40):
        assert counts[k - 1] / draws == pytest.approx((cdf(k + 1) - cdf(k)) / total, rel=0.01)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=40))
def test_alias_table_reproduces_the_weights_exactly(weights) -> None:
    prob, alias = syn.alias_table(weights)
    n = len(weights)
    implied = np.array(prob) / n
    np.add.at(implied, np.array(alias), (1.0 - np.array(prob)) / n)
    np.testing.assert_allclose(implied, np.array(weights) / sum(weights), atol=1e-9)


def test_alias_draw_samples_in_proportion() -> None:
    weights = [5.0, 1.0, 0.0001, 3.0]
    prob, alias = syn.alias_table(weights)
    grid = (np.arange(400) + 0.5) / 400
    u1, u2 = np.meshgrid(grid, grid)
    counts = np.bincount(syn.alias_draw(u1.ravel(), u2.ravel(), prob, alias), minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), np.array(weights) / sum(weights), atol=0.003)
    with pytest.raises(ValueError):
        syn.alias_table([1.0, 0.0])


@settings(max_examples=80, deadline=None)
@given(n_humans=st.integers(1, 5000), mean=st.floats(0.0, 40.0), min_events=st.integers(0, 8))
def test_activity_counts_are_exact_heavy_tailed_and_at_least_the_minimum(n_humans, mean, min_events) -> None:
    n_events = min_events * n_humans + int(round(max(mean - min_events, 0.0) * n_humans))
    counts = syn.activity_counts(n_humans, n_events, min_events)
    assert counts.sum() == n_events and counts.min() >= min_events
    assert (np.diff(counts) <= 1).all()  # ranked by activity, up to flooring
    cfg = dataclasses.replace(SMALL, min_events_per_user=min_events)
    assert counts[0] == syn._heaviest(n_humans, n_events, cfg)  # what check() bounds


def test_activity_is_heavy_tailed_at_the_demo_size() -> None:
    counts = syn.activity_counts(1980, 27720, 5)
    assert counts.max() > 10 * np.median(counts) and np.median(counts) < counts.mean()


@settings(max_examples=200, deadline=None)
@given(n_sessions=st.integers(1, 400), span=st.integers(1, 90), data=st.data())
def test_session_days_fill_the_span_and_share_a_day_only_up_to_its_slots(n_sessions, span, data) -> None:
    phase = data.draw(st.integers(0, span - 1))
    days = syn.session_day(np.arange(n_sessions), n_sessions, span, phase)
    assert days.min() >= 0 and days.max() < span and (np.diff(days) >= 0).all()
    slots = math.ceil(n_sessions / span)
    per_day = np.bincount(days)
    assert per_day.max() <= slots
    # Sessions of one day are consecutive, so j mod slots gives them distinct slots.
    for d in np.flatnonzero(per_day):
        js = np.flatnonzero(days == d)
        assert len(set(js % slots)) == len(js)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32))
def test_scrambler_is_a_bijection(n, seed) -> None:
    mult, add = syn.scrambler(n, seed, "ids")
    assert sorted((mult * x + add) % n for x in range(n)) == list(range(n))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400))
def test_partition_keys_land_in_their_partition(partitions) -> None:
    keys = syn.partition_keys(partitions)
    assert [syn.hash_partition(k, partitions) for k in keys] == list(range(partitions))


def test_human_timing_leaves_the_clean_rules_exact() -> None:
    """The generator's spacing against the default clean rules: injected near-duplicates (1-10 s
    after the original) are the only repeats within the window, whether a repeat is compared with the
    previous kept row or the previous row; humans never look like bots; bot days always do."""
    clean = CleanConfig()
    window = clean.near_duplicate_seconds
    assert syn.NEAR_DUPLICATE_MAX_OFFSET <= window < syn.MIN_GAP_SECONDS - syn.NEAR_DUPLICATE_MAX_OFFSET
    assert syn.MIN_GAP_SECONDS > clean.bot_min_median_gap_seconds
    most_per_day = syn.MAX_HUMAN_EVENTS_PER_DAY + 2 * syn.SESSION_LENGTH[1]
    assert most_per_day < clean.bot_max_events_per_day
    assert syn.BOT_EVENTS[0] >= clean.bot_min_events_for_gap and syn.BOT_EVENTS[1] < clean.bot_max_events_per_day


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, syn.MAX_HUMAN_EVENTS_PER_DAY * 365), days=st.integers(1, 365),
       sess_len=st.integers(*syn.SESSION_LENGTH))
def test_a_busy_human_day_still_fits_its_session_slots(n, days, sess_len) -> None:
    """The slot geometry of jobs/sources/generator.py: a day's sessions get distinct slots, and the spacing
    that fits a session plus the near-duplicate margin in a slot stays above MIN_GAP_SECONDS."""
    span = max(math.ceil(n / syn.MAX_HUMAN_EVENTS_PER_DAY), 1)
    if span > days:
        return  # rejected by synthetic.check
    n_sessions = math.ceil(n / sess_len)
    slots = math.ceil(n_sessions / span)
    width = syn.SECONDS_PER_DAY // slots
    step = (width - syn.SLOT_MARGIN) // sess_len
    assert step >= syn.MIN_GAP_SECONDS + 1


def test_plan_sizes_cells_and_brands() -> None:
    plan = syn.plan(SyntheticConfig(), seed=7)
    assert sum(plan.cell_size) == 1200 and min(plan.cell_size) >= 1 and len(plan.cells) == 24
    assert plan.cell_start == tuple(int(v) for v in np.cumsum(plan.cell_size) - plan.cell_size)
    assert plan.n_humans + plan.n_bots == 2000 and plan.n_bots == 20 and plan.n_events == 1980 * 14
    assert len(plan.dates) == 60 + 3 and plan.dates[0] == "2026-01-01" and plan.dates[59] == "2026-03-01"
    assert len(set(plan.brands)) == 60 and all(plan.top_brands)
    assert len(plan.partition_keys) == plan.partitions >= 2
    assert plan == syn.plan(SyntheticConfig(), seed=7) and plan != syn.plan(SyntheticConfig(), seed=8)


def test_tiny_catalogues_leave_cells_empty_but_never_draw_them() -> None:
    plan = syn.plan(dataclasses.replace(SMALL, n_items=5, n_top_categories=3, n_sub_categories=4,
                                        bot_user_rate=0.0), seed=1)
    assert sum(plan.cell_size) == 5 and len(plan.live_cells) == 5
    assert all(plan.cell_size[c] > 0 for c in plan.live_cells)


def test_category_tree_names_past_the_vocabulary_get_suffixes() -> None:
    cells = syn.category_tree(12, 8)
    paths = [c.path for c in cells]
    assert len(set(paths)) == 96 and "Beauty 2 > Skin Care" in paths and "Beauty > Skin Care 2" in paths
    assert cells[0].leaves[0] == "Night Cream" and all(c.attributes for c in cells)


def test_resize_keeps_events_per_user_and_per_item() -> None:
    big = syn.resize(SyntheticConfig(), n_events=10**7)
    assert big.n_events == 10**7 and big.n_users == 721_501 and big.n_items == 432_900
    assert syn.n_clean_events(big) / (big.n_users - syn.n_bots(big)) == pytest.approx(14.0, rel=0.01)
    assert syn.resize(SyntheticConfig(), n_users=10).n_users == 10
    syn.check(syn.resize(SyntheticConfig(), n_events=10**8))  # the benchmark's largest size is valid


@pytest.mark.parametrize("change, message", [
    ({"n_items": 0}, "n_items"),
    ({"duplicate_rate": 1.5}, "duplicate_rate"),
    ({"n_events": 100}, "cannot give"),
    ({"n_users": 20, "n_events": 10**6}, "most active user"),
    ({"n_items": 10}, "bots need"),
    ({"late_rate": 0.1, "max_late_days": 0}, "max_late_days"),
])
def test_invalid_settings_fail_with_a_clear_message(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        syn.check(dataclasses.replace(SMALL, **change))


def test_every_extra_kind_is_a_reason_or_removal_rule() -> None:
    from schemas.tables import REASONS, REMOVAL_RULES

    assert set(syn.MALFORMED_KINDS) | {"unknown_item"} <= set(REASONS)
    assert {"exact_duplicate", "near_duplicate"} <= set(REMOVAL_RULES)
    assert Counter(syn.EXTRA_KINDS).most_common(1)[0][1] == 1
