"""Resampling (oracles: pandas.resample, plain Python loops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backforge.data.importers import read_file
from backforge.data.resample import (
    Session, _threshold_bar_ids_py, align, dollar_bars, quotes_to_bars, resample_bars, session_bars, threshold_bar_ids_nb,
    tick_bars, trades_to_bars, volume_bars,
)
from backforge.errors import DataError


def to_pandas_index(frame: pl.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame["timestamp"].dt.epoch("ns").to_numpy()).tz_localize("UTC")


def stamps(frame: pl.DataFrame) -> np.ndarray:
    return frame["timestamp"].dt.epoch("ns").to_numpy()


@pytest.mark.parametrize("every", ["1s", "5s", "1min"])
def test_trades_to_bars_matches_pandas(shared: Path, every: str) -> None:
    trades = read_file(shared / "binance-btcusdt-trades.parquet").frame
    bars = trades_to_bars(trades, every)
    series = pd.Series(trades["price"].to_numpy(), index=to_pandas_index(trades))
    size = pd.Series(trades["size"].to_numpy(), index=series.index)
    rule = every.replace("min", "min")
    oracle = series.resample(rule, closed="left", label="right").ohlc()
    oracle["volume"] = size.resample(rule, closed="left", label="right").sum()
    oracle["trades"] = series.resample(rule, closed="left", label="right").count()
    oracle = oracle[oracle["trades"] > 0]
    np.testing.assert_array_equal(stamps(bars), oracle.index.as_unit("ns").asi8)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(bars[col].to_numpy(), oracle[col].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(bars["trades"].to_numpy(), oracle["trades"].to_numpy())
    vwap = (series * size).resample(rule, closed="left", label="right").sum()[oracle.index] / oracle["volume"]
    np.testing.assert_allclose(bars["vwap"].to_numpy(), vwap.to_numpy(), rtol=1e-12)


def test_bar_labels_never_look_ahead(shared: Path) -> None:
    trades = read_file(shared / "binance-btcusdt-trades.parquet").frame
    right = trades_to_bars(trades, "5s")
    left = trades_to_bars(trades, "5s", label="left")
    assert (stamps(right) - stamps(left) == 5 * 10**9).all()
    # every trade inside a right-labelled bar happened strictly before the bar's stamp
    joined = trades.join_asof(right.select(pl.col("timestamp").alias("bar"), pl.col("timestamp")), on="timestamp", strategy="forward",
                              allow_exact_matches=False)
    assert (joined["bar"] > joined["timestamp"]).all()


def test_quotes_to_bars_on_truefx(shared: Path) -> None:
    quotes = read_file(shared / "truefx-usdjpy-ticks.csv").frame
    bars = quotes_to_bars(quotes, "1min")
    frame = quotes.to_pandas().set_index("timestamp")
    for side in ("bid", "ask"):
        oracle = frame[side].resample("1min", closed="left", label="right").ohlc().dropna()
        for f in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(bars[f"{side}_{f}"].to_numpy(), oracle[f].to_numpy())
    assert bars["ticks"].sum() == 1000
    mid = quotes_to_bars(quotes, "1min", side="mid")
    oracle = ((frame["bid"] + frame["ask"]) / 2).resample("1min", closed="left", label="right").ohlc().dropna()
    np.testing.assert_allclose(mid["high"].to_numpy(), oracle["high"].to_numpy())
    ask = quotes_to_bars(quotes, "1min", side="ask")
    np.testing.assert_array_equal(ask["close"].to_numpy(), bars["ask_close"].to_numpy())


def test_resample_minute_bars_matches_pandas(shared: Path) -> None:
    minute = read_file(shared / "2006-01-02-volume-min-001.txt").frame
    five = resample_bars(minute, "5min")
    frame = minute.to_pandas().set_index("timestamp")
    oracle = frame.resample("5min", closed="right", label="right").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "open_interest": "last"}).dropna(subset=["open"])
    np.testing.assert_array_equal(stamps(five), oracle.index.as_unit("ns").asi8)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(five[col].to_numpy(), oracle[col].to_numpy())


def test_resample_quote_bars_keeps_both_sides(shared: Path) -> None:
    from backforge.data.importers import read_bid_ask

    fd = read_bid_ask(shared / "fxcm-usdjpy-m1-bid-2013.csv", shared / "fxcm-usdjpy-m1-ask-2013.csv")
    hourly = resample_bars(fd.frame, "1h")
    assert {"bid_open", "bid_high", "ask_low", "ask_close", "volume"} <= set(hourly.columns)
    first_hour = fd.frame.filter(pl.col("timestamp") <= hourly["timestamp"][0])
    assert hourly.row(0, named=True)["bid_high"] == first_hour["bid_high"].max()


def minute_bars(day: str, start: str, end: str) -> pl.DataFrame:
    ts = pl.datetime_range(pd.Timestamp(f"{day} {start}", tz="UTC"), pd.Timestamp(f"{day} {end}", tz="UTC"), "1m", eager=True, time_zone="UTC")
    n = len(ts)
    price = np.arange(1, n + 1, dtype=float)
    return pl.DataFrame({"timestamp": ts.dt.cast_time_unit("ns"), "open": price, "high": price + 0.5, "low": price - 0.5,
                         "close": price + 0.25, "volume": np.ones(n)})


def test_session_bars_follow_daylight_saving() -> None:
    winter = minute_bars("2024-01-09", "13:00", "22:00")
    summer = minute_bars("2024-07-09", "12:00", "21:00")
    daily = session_bars(pl.concat([winter, summer]), "us_equities")
    assert [str(t) for t in daily["timestamp"].to_list()] == ["2024-01-09 21:00:00+00:00", "2024-07-09 20:00:00+00:00"]
    # winter: bars closing 14:31 ... 21:00 UTC (09:31 ... 16:00 New York)
    minutes = pl.col("timestamp").dt.hour().cast(pl.Int32) * 60 + pl.col("timestamp").dt.minute().cast(pl.Int32)
    inside = winter.filter(minutes.is_between(14 * 60 + 31, 21 * 60))
    row = daily.row(0, named=True)
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (
        inside["open"][0], inside["high"].max(), inside["low"].min(), inside["close"][-1], 390.0)
    assert daily.row(1, named=True)["volume"] == 390.0


def test_overnight_session_is_labelled_by_its_closing_day() -> None:
    sunday_evening = minute_bars("2024-01-07", "22:01", "23:59")  # 17:01 New York on Sunday: Monday's FX day
    daily = session_bars(sunday_evening, "fx")
    assert [str(t) for t in daily["timestamp"].to_list()] == ["2024-01-08 22:00:00+00:00"]
    globex = session_bars(minute_bars("2024-01-08", "21:30", "23:30"), Session("America/Chicago", "17:00", "16:00"))
    # 21:30-22:00 UTC is the 15:30-16:00 end of Monday's session, 22:00-23:00 UTC the maintenance break
    assert [str(t) for t in globex["timestamp"].to_list()] == ["2024-01-08 22:00:00+00:00", "2024-01-09 22:00:00+00:00"]
    assert globex["volume"].to_list() == [31.0, 30.0]  # bars closing 21:30...22:00, then 23:01...23:30


def test_activity_bars() -> None:
    trades = pl.DataFrame({"timestamp": np.arange(1, 11), "price": np.arange(1.0, 11.0), "size": [3.0, 3, 3, 3, 3, 3, 3, 3, 3, 1]})
    ticks = tick_bars(trades, 4)
    assert ticks.select("open", "close", "ticks").rows() == [(1.0, 4.0, 4), (5.0, 8.0, 4)]
    assert tick_bars(trades, 4, keep_partial=True).height == 3
    vol = volume_bars(trades, 7)
    assert vol.select("volume", "ticks").rows() == [(9.0, 3), (9.0, 3), (9.0, 3)]
    assert stamps(vol).tolist() == [3, 6, 9]
    dollars = dollar_bars(trades, 30)
    amounts = (trades["price"] * trades["size"]).to_numpy()
    ids, complete = _threshold_bar_ids_py(amounts, 30.0)
    assert dollars.height == complete
    assert dollars["close"].to_list() == [trades["price"][int(np.flatnonzero(ids == b)[-1])] for b in range(complete)]
    with pytest.raises(DataError, match="ticks must be a whole number"):
        tick_bars(trades, 0)
    with pytest.raises(DataError, match="volume must be a number > 0"):
        volume_bars(trades, -1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 50), st.just(float("nan"))), max_size=60), st.floats(0.5, 100))
def test_threshold_kernel_matches_python_reference(amounts: list[float], threshold: float) -> None:
    array = np.array(amounts, dtype=np.float64)
    ids, complete = threshold_bar_ids_nb(array, threshold)
    ref_ids, ref_complete = _threshold_bar_ids_py(array, threshold)
    np.testing.assert_array_equal(ids, ref_ids)
    assert complete == ref_complete


def test_align_never_forward_fills(shared: Path) -> None:
    goog = read_file(shared / "GOOG.csv").frame
    btc = read_file(shared / "BTCUSD.csv").frame
    md = align({"GOOG": goog, "BTC": btc})
    union = np.union1d(stamps(goog), stamps(btc))
    np.testing.assert_array_equal(md.timestamps, union)
    present = np.isin(md.timestamps, stamps(btc))
    assert np.isnan(md.close[~present, 1]).all() and not np.isnan(md.close[present, 1]).any()


def test_unsorted_input_is_refused() -> None:
    with pytest.raises(DataError, match="not sorted"):
        trades_to_bars(pl.DataFrame({"timestamp": [2, 1], "price": [1.0, 1.0], "size": [1.0, 1.0]}), "1s")
    with pytest.raises(DataError, match="missing column 'price'"):
        trades_to_bars(pl.DataFrame({"timestamp": [1], "close": [1.0]}), "1s")
    with pytest.raises(DataError, match="unknown session"):
        session_bars(pl.DataFrame({"timestamp": [1], "close": [1.0]}), "nyse")
