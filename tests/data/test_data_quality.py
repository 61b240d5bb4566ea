"""Quality checks and the error/drop/repair policies (oracle: naive Python loops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backforge.data.importers import read_file
from backforge.data.market import MarketData
from backforge.data.quality import ISSUE_CODES, apply_policy, check
from backforge.errors import DataError

MIN = 60_000_000_000


def bars(**columns) -> pl.DataFrame:
    n = len(columns["close"])
    base = {"timestamp": [i * MIN for i in range(1, n + 1)], "open": columns["close"], "high": None, "low": None, "volume": [1.0] * n}
    base.update(columns)
    if base["high"] is None:
        base["high"] = [max(o, c) for o, c in zip(base["open"], base["close"])]
    if base["low"] is None:
        base["low"] = [min(o, c) for o, c in zip(base["open"], base["close"])]
    return pl.DataFrame(base).select("timestamp", "open", "high", "low", "close", "volume")


def codes(report) -> dict[str, int]:
    return {i.code: i.rows for i in report.issues}


def test_clean_real_files_have_no_errors(shared: Path) -> None:
    for name in ("GOOG.csv", "EURUSD.csv", "orcl-1995-2014.txt", "truefx-usdjpy-ticks.csv", "binance-btcusdt-trades.parquet"):
        assert check(read_file(shared / name)).ok, name


def test_fxcm_bid_ask_has_crossed_quotes_that_drop_removes(shared: Path) -> None:
    from backforge.data.importers import read_bid_ask

    fd = read_bid_ask(shared / "fxcm-usdjpy-m1-bid-2013.csv", shared / "fxcm-usdjpy-m1-ask-2013.csv")
    bid = pl.read_csv(shared / "fxcm-usdjpy-m1-bid-2013.csv")["close"]
    ask = pl.read_csv(shared / "fxcm-usdjpy-m1-ask-2013.csv")["close"]
    crossed = int((bid > ask).sum())
    assert codes(check(fd))["crossed_quote"] == crossed == 683
    frame, report = apply_policy(fd, policy="drop")
    assert frame.height == 28761 - crossed
    assert [str(a) for a in report.actions] == [f"crossed_quote: dropped {crossed} rows"]


@pytest.mark.parametrize(
    ("frame", "code", "rows", "field"),
    [
        (bars(close=[1.0, 1.1, 1.2], timestamp=[MIN, 3 * MIN, 2 * MIN]), "out_of_order", 1, "timestamp"),
        (bars(close=[1.0, 1.1, 1.2], timestamp=[MIN, MIN, 2 * MIN]), "duplicate_timestamp", 1, "timestamp"),
        (bars(close=[1.0, float("nan"), 1.2], open=[1.0, 1.1, 1.2], high=[1.0, 1.1, 1.2], low=[1.0, 1.1, 1.2]), "nan_price", 1, "close"),
        (bars(close=[1.0, 1.1, 1.2], open=[1.0, float("inf"), 1.2]), "nan_price", 1, "open"),
        (bars(close=[1.0, 0.0, -1.0]), "nonpositive_price", 2, "open"),
        (bars(close=[1.0, 1.1, 1.2], high=[1.0, 1.0, 1.2], low=[1.0, 1.2, 1.2]), "high_below_low", 1, "high"),
        (bars(close=[1.0, 1.1, 1.2], open=[1.0, 1.0, 1.2], high=[1.0, 1.05, 1.2], low=[1.0, 1.0, 1.2]), "ohlc_outside_range", 1, "close"),
        (bars(close=[1.0, 1.1, 1.2], volume=[1.0, -5.0, 1.0]), "negative_volume", 1, "volume"),
    ],
)
def test_each_error_is_found_and_refused(frame: pl.DataFrame, code: str, rows: int, field: str) -> None:
    report = check(frame, kind="bars")
    assert codes(report)[code] == rows
    issue = next(i for i in report.issues if i.code == code)
    assert issue.severity == ISSUE_CODES[code][0] == "error"
    assert issue.field == field
    with pytest.raises(DataError) as info:
        apply_policy(frame, kind="bars", symbol="X")
    assert info.value.asset == "X" and info.value.row == issue.first_row


def test_quote_checks() -> None:
    frame = pl.DataFrame({"timestamp": [1, 2, 3, 4], "bid": [1.0, 1.3, float("nan"), 1.0], "ask": [1.1, 1.2, 1.1, 1.1],
                          "volume": [1.0] * 4})
    assert codes(check(frame, kind="quotes")) == {"crossed_quote": 1, "one_sided_quote": 1}
    clean, report = apply_policy(frame, kind="quotes", policy="repair")
    assert clean["timestamp"].to_list() == [1, 4]
    assert {a.code: a.action for a in report.actions} == {"crossed_quote": "dropped", "one_sided_quote": "dropped"}


def test_repair_makes_valid_market_data() -> None:
    frame = bars(close=[1.0, 1.1, 1.2, 1.3, 1.4], timestamp=[MIN, 3 * MIN, 2 * MIN, 4 * MIN, 4 * MIN],
                 high=[1.0, 1.0, 1.2, 1.3, 1.4], low=[1.0, 1.2, 1.2, 1.3, 1.4], volume=[1.0, 1.0, -1.0, 1.0, 1.0])
    clean, report = apply_policy(frame, kind="bars", policy="repair")
    assert clean["timestamp"].to_list() == [MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    assert [(a.code, a.action, a.rows) for a in report.actions] == [
        ("out_of_order", "sorted", 1), ("duplicate_timestamp", "dropped", 1),
        ("high_below_low", "repaired", 1), ("negative_volume", "repaired", 1)]
    row = clean.row(2, named=True)  # the bar whose high and low were swapped
    assert (row["low"], row["high"]) == (1.0, 1.2)
    assert np.isnan(clean.row(1, named=True)["volume"])
    MarketData.from_frames({"X": clean})  # validates


def test_drop_removes_rows() -> None:
    frame = bars(close=[1.0, 1.1, 1.2, 1.3], timestamp=[MIN, 3 * MIN, 2 * MIN, 4 * MIN], high=[1.0, 1.0, 1.2, 1.3])
    clean, report = apply_policy(frame, kind="bars", policy="drop")
    assert clean["timestamp"].to_list() == [MIN, 4 * MIN]
    assert report.rows == 4 and report.rows_out == 2
    assert "policy 'drop'" in report.summary() and "4 rows in, 2 rows kept" in report.summary()


def test_warnings_do_not_change_data() -> None:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, 500)))
    close[250] *= 1.2  # a bad print that reverts on the next bar
    stamps = [i * MIN for i in range(500)]
    stamps[400:] = [s + 60 * MIN for s in stamps[400:]]  # a one-hour hole
    frame = bars(close=close.tolist(), timestamp=stamps)
    frame = frame.with_columns(pl.max_horizontal("open", "close").alias("high"), pl.min_horizontal("open", "close").alias("low"))
    report = check(frame, kind="bars")
    assert report.ok
    found = {i.code: i for i in report.issues}
    assert found["price_spike"].rows == 1 and found["price_spike"].first_row == 250
    assert found["gap"].rows == 1 and found["gap"].first_row == 400
    clean, _ = apply_policy(frame, kind="bars", policy="repair")
    assert clean.equals(frame.with_columns(pl.col("timestamp").set_sorted()))


def test_trades_duplicate_ids() -> None:
    frame = pl.DataFrame({"timestamp": [1, 1, 2], "price": [1.0, 1.0, 1.1], "size": [1.0, 1.0, 2.0], "side": [1, 1, -1],
                          "trade_id": [7, 7, 8]})
    assert codes(check(frame, kind="trades")) == {"duplicate_trade": 1}
    clean, _ = apply_policy(frame, kind="trades", policy="drop")
    assert clean["trade_id"].to_list() == [7, 8]


def test_error_names_file_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n\n2020-01-03,1,2,0.5,-1.5\n")
    with pytest.raises(DataError) as info:
        apply_policy(read_file(path), symbol="X")
    assert (info.value.path, info.value.row, info.value.field) == (str(path), 4, "close")


def test_unknown_policy_and_kind() -> None:
    with pytest.raises(DataError, match="unknown policy 'fix'"):
        apply_policy(bars(close=[1.0]), kind="bars", policy="fix")
    with pytest.raises(DataError, match="unknown kind"):
        check(bars(close=[1.0]), kind="candles")


def _naive_counts(stamps: list[int]) -> tuple[int, int]:
    """Oracle: out-of-order = below the running max; duplicate = equal to any earlier timestamp."""
    ooo = dup = 0
    seen: set[int] = set()
    high = None
    for t in stamps:
        if high is not None and t < high:
            ooo += 1
        if t in seen:
            dup += 1
        seen.add(t)
        high = t if high is None else max(high, t)
    return ooo, dup


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=40))
def test_order_and_duplicate_counts_match_oracle(stamps: list[int]) -> None:
    frame = bars(close=[1.0] * len(stamps), timestamp=[t * MIN for t in stamps])
    found = codes(check(frame, kind="bars"))
    ooo, dup = _naive_counts(stamps)
    assert found.get("out_of_order", 0) == ooo
    assert found.get("duplicate_timestamp", 0) == dup
    clean, _ = apply_policy(frame, kind="bars", policy="repair")
    assert clean["timestamp"].to_list() == sorted(set(t * MIN for t in stamps))
    dropped, _ = apply_policy(frame, kind="bars", policy="drop")
    assert dropped["timestamp"].is_sorted() and dropped["timestamp"].n_unique() == dropped.height


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-2, 5), st.floats(-2, 5), st.floats(-2, 5), st.floats(-2, 5), st.floats(-1, 5)),
                min_size=1, max_size=20), st.sampled_from(["drop", "repair"]))
def test_any_policy_output_is_valid_market_data(rows, policy: str) -> None:
    o, h, l, c, v = (list(x) for x in zip(*rows))
    frame = bars(open=o, high=h, low=l, close=c, volume=v)
    try:
        clean, report = apply_policy(frame, kind="bars", policy=policy)
    except DataError as exc:
        assert "no rows left" in exc.message
        return
    assert report.rows_out == clean.height
    MarketData.from_frames({"X": clean})  # raises if any invariant is broken
