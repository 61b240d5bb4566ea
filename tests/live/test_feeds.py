"""Feeds: the bar builder equals the catalog's resampler; replay pacing, seeking and history."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backforge.data.resample import quotes_to_bars, trades_to_bars
from backforge.data.synth import gbm
from backforge.errors import DataError
from backforge.live.feeds import BarBuilder, ReplayFeed, TickFeed


def _builder_bars(frame: pl.DataFrame, every: str) -> pl.DataFrame:
    ts = frame["timestamp"].cast(pl.Datetime("ns", "UTC")).dt.epoch("ns").to_numpy()
    feed = TickFeed(zip(["X"] * frame.height, ts, frame["price"].to_numpy(), frame["size"].to_numpy()), ["X"], every)
    rows = []
    while (bar := feed.next_bar()) is not None:
        rows.append((bar.ts_ns, bar.open[0], bar.high[0], bar.low[0], bar.close[0], bar.volume[0]))
    return pl.DataFrame(rows, schema=["ts", "open", "high", "low", "close", "volume"], orient="row")


def _resampled(frame: pl.DataFrame, every: str) -> pl.DataFrame:
    bars = trades_to_bars(frame, every)
    return bars.select(pl.col("timestamp").dt.epoch("ns").alias("ts"), "open", "high", "low", "close", "volume")


@pytest.mark.parametrize("every", ["1s", "2s", "5s"])
def test_bar_builder_equals_resampler_on_real_trades(shared_data_dir, every):
    trades = pl.read_parquet(shared_data_dir / "binance-btcusdt-trades.parquet").select(
        "timestamp", "price", pl.col("quantity").alias("size"))
    built, expected = _builder_bars(trades, every), _resampled(trades, every)
    assert built.height == expected.height > 3
    for name in ("ts", "open", "high", "low", "close"):
        assert built[name].to_list() == expected[name].to_list(), name
    np.testing.assert_allclose(built["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(gaps=st.lists(st.integers(0, 90_000), min_size=1, max_size=60),
       prices=st.lists(st.integers(1, 1000), min_size=60, max_size=60), every=st.sampled_from(["1s", "7s", "1min"]))
def test_bar_builder_equals_resampler_property(gaps, prices, every):
    ts = np.cumsum(np.array(gaps, dtype=np.int64)) * 1_000_000  # ms steps, ties allowed, gaps without ticks
    frame = pl.DataFrame({"timestamp": ts, "price": [float(p) for p in prices[: len(ts)]],
                          "size": [1.0 + (i % 3) for i in range(len(ts))]})
    assert _builder_bars(frame, every).rows() == _resampled(frame, every).rows()


def test_quote_bars_equal_resampler():
    ts = (np.arange(50, dtype=np.int64) * 7_300_000_000)
    rng = np.random.default_rng(3)
    bid = 1.1 + np.cumsum(rng.normal(0, 1e-4, 50))
    frame = pl.DataFrame({"timestamp": ts, "bid": bid, "ask": bid + 2e-4, "volume": np.ones(50)})
    builder = BarBuilder(["EURUSD"], "1min", kind="quotes")
    events = [e for i in range(50) for e in builder.add_quote("EURUSD", int(ts[i]), bid[i], bid[i] + 2e-4, 1.0)]
    events += builder.flush()
    expected = quotes_to_bars(frame, "1min")
    assert [e.ts_ns for e in events] == expected["timestamp"].dt.epoch("ns").to_list()
    for side, q in (("bid", 0), ("ask", 1)):
        for j, f in enumerate(("open", "high", "low", "close")):
            got = [float((e.bid if side == "bid" else e.ask)[j][0]) for e in events]
            assert got == expected[f"{side}_{f}"].to_list()
    assert [float(e.close[0]) for e in events] == ((expected["bid_close"] + expected["ask_close"]) / 2).to_list()


def test_bar_builder_multi_symbol_and_errors():
    b = BarBuilder(["A", "B"], "1min")
    assert b.add_trade("A", 5 * 10**9, 10.0, 1.0) == []
    (bar,) = b.add_trade("B", 65 * 10**9, 20.0, 2.0)
    assert bar.ts_ns == 60 * 10**9 and bar.close[0] == 10.0 and np.isnan(bar.close[1])
    with pytest.raises(DataError, match="older than the bar being built"):
        b.add_trade("A", 1 * 10**9, 10.0)
    with pytest.raises(DataError, match="unknown symbol 'C'"):
        b.add_trade("C", 70 * 10**9, 10.0)
    assert b.flush(now_ns=100 * 10**9) == [] and len(b.flush(now_ns=120 * 10**9)) == 1


def test_replay_feed_history_seek_and_pacing():
    data = gbm(2, 0.2, bar="1min", seed=1)
    feed = ReplayFeed(data, start=10, speed=600.0)  # 1-minute bars at 600x: 0.1 s apart
    assert feed.history(100).n_bars == 10 and feed.peek_ts() == int(data.timestamps[10])
    started = time.monotonic()
    bars = [feed.next_bar() for _ in range(4)]
    elapsed = time.monotonic() - started
    assert [b.ts_ns for b in bars] == data.timestamps[10:14].tolist()
    assert 0.25 <= elapsed < 2.0  # three gaps of 0.1 s
    feed.seek(int(data.timestamps[20]))
    assert feed.next_bar().ts_ns == int(data.timestamps[21])
    assert feed.history(3, end_ns=int(data.timestamps[5])).timestamps.tolist() == data.timestamps[3:6].tolist()
    fast = ReplayFeed(data, start=data.n_bars - 2)
    assert fast.next_bar() is not None and fast.next_bar() is not None and fast.next_bar() is None and fast.finished
