"""Point-in-time fundamentals: nothing published after t is visible at t (oracle: a naive scan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backforge.data.catalog import Catalog
from backforge.data.fundamentals import Fundamentals, read_fundamentals
from backforge.data.synth import gbm, synthetic_fundamentals
from backforge.errors import DataError

DAY = 86_400 * 10**9


def table(rows: list[tuple]) -> Fundamentals:
    columns = ["symbol", "field", "published_at", "value", "period_end"][: len(rows[0])]
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    return Fundamentals.from_frame(frame.with_columns(pl.col("published_at").cast(pl.Datetime("ns", "UTC"))))


def test_value_published_after_t_is_invisible_at_t() -> None:
    t = 100 * DAY
    f = table([("A", "eps", t + 1, 2.0), ("A", "eps", t - DAY, 1.0)])
    at = np.array([t - DAY - 1, t - DAY, t, t + 1], dtype=np.int64)
    values = f.as_of(at, ["A"], "eps")[:, 0]
    assert np.isnan(values[0])           # before anything was published
    assert values[1] == 1.0 and values[2] == 1.0  # published at t - 1 day: visible from that instant on
    assert values[3] == 2.0              # published 1 ns after t: invisible at t, visible right after


def test_restatement_takes_effect_when_published() -> None:
    q_end = 10 * DAY
    f = Fundamentals.from_frame(pl.DataFrame({
        "symbol": ["A", "A"], "field": ["eps", "eps"], "published_at": [40 * DAY, 70 * DAY], "value": [1.0, 0.8],
        "period_end": [q_end, q_end]}).with_columns(pl.col("published_at", "period_end").cast(pl.Datetime("ns"))))
    values = f.as_of(np.array([50 * DAY, 80 * DAY], dtype=np.int64), ["A"], "eps")[:, 0]
    assert values.tolist() == [1.0, 0.8]


def test_same_instant_publications_prefer_the_later_period() -> None:
    f = Fundamentals.from_frame(pl.DataFrame({
        "symbol": ["A", "A"], "field": ["eps", "eps"], "published_at": [40 * DAY, 40 * DAY], "value": [2.0, 1.0],
        "period_end": [30 * DAY, 10 * DAY]}).with_columns(pl.col("published_at", "period_end").cast(pl.Datetime("ns"))))
    assert f.as_of(np.array([40 * DAY], dtype=np.int64), ["A"], "eps")[0, 0] == 2.0


def test_conflicting_duplicates_are_an_error_and_identical_ones_collapse() -> None:
    with pytest.raises(DataError, match="two different values of eps for A"):
        table([("A", "eps", DAY, 1.0), ("A", "eps", DAY, 2.0)])
    assert len(table([("A", "eps", DAY, 1.0), ("A", "eps", DAY, 1.0)])) == 1


def test_unknown_field_and_missing_symbol() -> None:
    f = table([("A", "eps", DAY, 1.0)])
    with pytest.raises(DataError, match="did you mean 'eps'"):
        f.as_of(np.array([DAY], dtype=np.int64), ["A"], "epss")
    assert np.isnan(f.as_of(np.array([DAY], dtype=np.int64), ["B"], "eps")).all()


def test_synthetic_fundamentals_align_with_market_data() -> None:
    md = gbm(3, 2, seed=4)
    f = Fundamentals.from_frame(synthetic_fundamentals(md.assets, 2, seed=4))
    eps = f.align(md, "eps")
    assert eps.shape == (md.n_bars, 3)
    frame = f.frame.filter(pl.col("field") == "eps")
    for j, symbol in enumerate(md.assets):
        pubs = frame.filter(pl.col("symbol") == symbol)
        first = int(pubs["published_at"].dt.epoch("ns").min())
        assert np.isnan(eps[md.timestamps < first, j]).all() and not np.isnan(eps[md.timestamps >= first, j]).any()
    # published at 21:30 UTC: the daily bar stamped 21:00 that day must not see it
    pub = int(frame["published_at"].dt.epoch("ns")[0])
    same_day_bar = int(np.searchsorted(md.timestamps, pub)) - 1
    assert md.timestamps[same_day_bar] < pub and np.isnan(eps[same_day_bar, 0])


def test_catalog_round_trip_and_append(catalog: Catalog) -> None:
    data = synthetic_fundamentals(2, 1, seed=1)
    assert catalog.write_fundamentals(data) == data.height
    restated = data.head(1).with_columns(pl.col("value") * 2)
    assert catalog.write_fundamentals(restated) == data.height  # same key: replaced, not added
    stored = catalog.fundamentals()
    assert stored.frame.height == data.height
    assert catalog.fundamentals(symbols=["AAPL"], fields=["eps"]).fields == ("eps",)
    with pytest.raises(DataError, match="no fundamentals"):
        Catalog(catalog.root.parent / "other").fundamentals()


def test_read_fundamentals_file_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "f.csv"
    good.write_text("Ticker,Metric,published_at,Value\nA,eps,2020-02-01,1.5\nA,eps,2020-05-01T21:30:00Z,1.6\n")
    f = read_fundamentals(good)
    assert f.frame["value"].to_list() == [1.5, 1.6] and f.frame["published_at"].dtype == pl.Datetime("ns", "UTC")
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,field,published_at,value\nA,eps,2020-02-01,1.5\nA,eps,2020-05-01,n/a\n")
    with pytest.raises(DataError) as info:
        read_fundamentals(bad)
    assert (info.value.row, info.value.field) == (3, "value")
    missing = tmp_path / "missing.csv"
    missing.write_text("symbol,published_at,value\nA,2020-02-01,1.5\n")
    with pytest.raises(DataError, match="missing field"):
        read_fundamentals(missing)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 50), st.floats(-5, 5)), min_size=1, max_size=25,
                unique_by=lambda r: (r[0], r[1])),
       st.lists(st.integers(-5, 60), min_size=1, max_size=20))
def test_as_of_matches_naive_scan(rows, times) -> None:
    f = table([(s, "x", d * DAY, v) for s, d, v in rows])
    at = np.array(sorted(times), dtype=np.int64) * DAY
    got = f.as_of(at, ["A", "B", "C"], "x")
    for i, t in enumerate(at):
        for j, symbol in enumerate(["A", "B", "C"]):
            visible = [(d * DAY, v) for s, d, v in rows if s == symbol and d * DAY <= t]
            expected = max(visible)[1] if visible else np.nan
            assert (np.isnan(expected) and np.isnan(got[i, j])) or got[i, j] == expected
