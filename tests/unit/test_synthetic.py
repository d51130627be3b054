"""Synthetic generator: determinism, the raw contract, row accounting, realism."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec_core.config import SyntheticConfig
from genrec_core.data.synthetic import RAW_EVENTS_SCHEMA, CATALOGUE_SCHEMA, generate

SMALL = SyntheticConfig(n_users=300, n_items=200, mean_events_per_user=10.0)
MESSY = dataclasses.replace(SMALL, duplicate_rate=0.05, malformed_rate=0.03, unknown_item_rate=0.02)


@pytest.fixture(scope="module")
def default_tables() -> tuple[pa.Table, pa.Table]:
    return generate(SyntheticConfig(), seed=7)


def _split(events: pa.Table) -> dict[str, pd.DataFrame]:
    """Classifies raw rows the way the cleaning step will: malformed, unknown item, clean, duplicate."""
    df = events.to_pandas()
    malformed = (df.user_id.isna() | (df.item_id == "") | (df.event_time == "not-a-time")
                 | (df.event_type == "teleport") | (df.rating == "-3"))
    unknown = df.item_id.str.startswith("X999") & ~malformed
    valid = df[~malformed & ~unknown]
    clean = valid.drop_duplicates()
    return {"all": df, "malformed": df[malformed], "unknown": df[unknown], "valid": valid, "clean": clean}


def test_same_seed_identical_and_other_seed_different() -> None:
    cat1, ev1 = generate(SMALL, seed=3)
    cat2, ev2 = generate(SMALL, seed=3)
    cat3, ev3 = generate(SMALL, seed=4)
    assert cat1.equals(cat2) and ev1.equals(ev2)
    assert not cat1.equals(cat3) and not ev1.equals(ev3)


def test_schema_is_the_raw_contract(default_tables) -> None:
    cat, ev = default_tables
    assert cat.schema.equals(CATALOGUE_SCHEMA) and ev.schema.equals(RAW_EVENTS_SCHEMA)
    assert cat.schema.names == ["item_id", "title", "brand", "categories", "price", "description"]
    types = [cat.schema.field(c).type for c in cat.schema.names]
    assert types == [pa.string()] * 4 + [pa.float64(), pa.string()]
    assert ev.schema.names == ["user_id", "item_id", "event_type", "event_time", "rating"]
    assert all(f.type == pa.string() for f in ev.schema)


def test_catalogue_is_realistic(default_tables) -> None:
    cat = default_tables[0].to_pandas()
    assert cat.item_id.is_unique and cat.item_id.str.fullmatch(r"I\d{6}").all()
    assert cat.title.notna().all() and cat.categories.notna().all()
    assert (cat.categories.str.count(" > ") == 2).all()  # Top > Sub > Leaf
    assert cat.categories.str.split(" > ").str[0].nunique() == 6
    assert cat.categories.str.rsplit(" > ", n=1).str[0].nunique() == 24
    assert 0 < cat.brand.isna().mean() < 0.1 and cat.brand.nunique() <= 60
    prices = cat.price.dropna()
    assert (prices > 0).all() and prices.median() < prices.mean()  # log-normal skew


def test_clean_rows_reference_the_catalogue(default_tables) -> None:
    cat, ev = default_tables
    parts = _split(ev)
    assert set(parts["valid"].item_id) <= set(cat.column("item_id").to_pylist())
    assert parts["clean"].user_id.str.fullmatch(r"U\d{6}").all()
    assert set(parts["clean"].event_type) == {"view", "click", "cart", "fav", "buy", "rate"}
    rated = parts["clean"].event_type == "rate"
    assert parts["clean"].rating[~rated].isna().all()
    assert parts["clean"].rating[rated].astype(float).between(1.0, 5.0).all()


@pytest.mark.parametrize("cfg", [SyntheticConfig(), MESSY], ids=["default", "messy"])
def test_row_accounting_honours_the_rates(cfg: SyntheticConfig) -> None:
    _, ev = generate(cfg, seed=11)
    parts = _split(ev)
    n_clean = len(parts["clean"])
    assert len(parts["valid"]) - n_clean == round(cfg.duplicate_rate * n_clean)
    assert len(parts["malformed"]) == round(cfg.malformed_rate * n_clean)
    assert len(parts["unknown"]) == round(cfg.unknown_item_rate * n_clean)
    mal = parts["malformed"]
    kinds = [mal.user_id.isna(), mal.item_id == "", mal.event_time == "not-a-time",
             mal.event_type == "teleport", mal.rating == "-3"]
    assert all(k.any() for k in kinds) and (sum(k.astype(int) for k in kinds) == 1).all()


def test_clean_count_does_not_depend_on_messiness() -> None:
    tidy = dataclasses.replace(SMALL, duplicate_rate=0.0, malformed_rate=0.0, unknown_item_rate=0.0)
    _, ev_tidy = generate(tidy, seed=5)
    _, ev_messy = generate(MESSY, seed=5)
    assert ev_tidy.num_rows == len(_split(ev_tidy)["clean"]) == len(_split(ev_messy)["clean"])


def test_rows_arrive_unordered(default_tables) -> None:
    times = default_tables[1].column("event_time").to_pylist()
    assert times != sorted(times, key=str)


def test_user_sequences_are_time_coherent(default_tables) -> None:
    cfg = SyntheticConfig()
    parts = _split(default_tables[1])
    rows = parts["all"].drop_duplicates()
    rows = rows[rows.user_id.notna() & (rows.event_time != "not-a-time")]
    # No two distinct rows of one user share a second, messy rows included.
    assert not rows.duplicated(["user_id", "event_time"]).any()
    times = pd.to_datetime(parts["clean"].event_time, format="%Y-%m-%dT%H:%M:%S")
    start = pd.Timestamp(cfg.start_date)
    assert times.min() >= start and times.max() < start + pd.Timedelta(days=cfg.days)
    counts = parts["clean"].groupby("user_id").size()
    assert len(counts) == cfg.n_users and counts.min() >= cfg.min_events_per_user
    assert abs(counts.mean() - cfg.mean_events_per_user) < 2.5


def test_users_have_coherent_tastes_and_items_zipf_popularity(default_tables) -> None:
    cat, ev = default_tables
    clean = _split(ev)["clean"].merge(cat.to_pandas()[["item_id", "categories"]], on="item_id")
    clean["sub"] = clean.categories.str.rsplit(" > ", n=1).str[0]
    per_sub = clean.groupby(["user_id", "sub"]).size()
    top_share = per_sub.groupby(level="user_id").max() / per_sub.groupby(level="user_id").sum()
    uniform = 1 / (SyntheticConfig().n_top_categories * SyntheticConfig().n_sub_categories)
    assert top_share.mean() > 10 * uniform
    popularity = clean.item_id.value_counts()
    assert popularity.iloc[: len(popularity) // 10].sum() > 0.35 * len(clean)


def test_dates_and_sizes_come_from_config() -> None:
    cfg = dataclasses.replace(SMALL, start_date="2024-02-28", days=3, n_top_categories=12,
                              n_sub_categories=8, n_brands=0)
    cat, ev = generate(cfg, seed=1)
    times = _split(ev)["clean"].event_time
    assert times.min() >= "2024-02-28T00:00:00" and times.max() < "2024-03-02T00:00:00"
    assert cat.column("brand").null_count == cat.num_rows
    paths = pd.Series(cat.column("categories").to_pylist()).str.rsplit(" > ", n=1).str[0]
    assert paths.nunique() == min(96, cfg.n_items)  # names past the vocabulary get suffixes


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_items"):
        generate(dataclasses.replace(SMALL, n_items=0), seed=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_users=st.integers(1, 30), n_items=st.integers(5, 50), n_top=st.integers(1, 12),
       n_sub=st.integers(1, 8), n_brands=st.integers(0, 20), mean=st.floats(0.0, 20.0),
       min_events=st.integers(0, 6), days=st.integers(1, 5),
       rates=st.tuples(*[st.floats(0.0, 0.3)] * 3), seed=st.integers(0, 2**32 - 1))
def test_generator_never_crashes_and_rows_add_up(n_users, n_items, n_top, n_sub, n_brands, mean,
                                                 min_events, days, rates, seed) -> None:
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, n_top_categories=n_top,
                          n_sub_categories=n_sub, n_brands=n_brands, mean_events_per_user=mean,
                          min_events_per_user=min_events, days=days, duplicate_rate=rates[0],
                          malformed_rate=rates[1], unknown_item_rate=rates[2])
    cat, ev = generate(cfg, seed)
    assert cat.num_rows == n_items and cat.schema.equals(CATALOGUE_SCHEMA)
    assert ev.schema.equals(RAW_EVENTS_SCHEMA)
    parts = _split(ev)
    n_clean = len(parts["clean"])
    n_dup = len(parts["valid"]) - n_clean
    assert ev.num_rows == n_clean + n_dup + len(parts["malformed"]) + len(parts["unknown"])
    assert n_dup == round(rates[0] * n_clean)
    assert len(parts["malformed"]) == round(rates[1] * n_clean)
    assert len(parts["unknown"]) == round(rates[2] * n_clean)
    assert n_clean >= n_users * min_events
