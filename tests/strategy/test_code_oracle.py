"""Oracle: backtesting.py's own ``SmaCross`` (``backtesting.test._test.SmaCross``) and a stateful strategy,
each ported line for line to :class:`backforge.Strategy`, give the same trades and the same equity as
backtesting.py on its bundled GOOG daily bars.

Both engines are configured alike: 10,000 of cash, a 0.2 % commission on every fill, market orders filled
at the next bar's open (``trade_on_close=False``), whole shares (``lot_size=1``), shorting allowed.
Conventions that differ, and how the options line them up:

- Sizing. backtesting.py's ``buy()`` (``size=1 - eps``) takes all available margin *at the fill*, i.e. the
  next open, and floors ``margin * size / (price * (1 + commission))``; backforge's
  ``size_type="equity_fraction"`` does the same division at the fill price, so the port passes
  ``FULL = 1 - sys.float_info.epsilon`` (backforge's default is 1.0, which can exceed cash by the fee).
- ``position.close(); buy()`` on one bar: backtesting.py fills the close, then sizes the buy from the cash
  left after the closing commission. backforge's ``close()`` and ``buy()`` are two orders on the same bar,
  filled in submission order at the next open, the second sized after the first — the same shares.
- ``crossover``: backtesting.py's is ``a[-2] < b[-2] and a[-1] > b[-1]``, backforge's ``a[-2] <= b[-2]``;
  no two SMAs are equal on this data (checked below), so the bars are the same.
- backtesting.py computes its statistics on trades closed by the end; the last open trade is compared as
  an open position.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import backforge as bf
from backforge.data.market import MarketData
from backforge.strategy.code import Strategy, backtest, crossover
from backforge.strategy.indicators import sma

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest  # noqa: E402
from backtesting import Strategy as BtStrategy  # noqa: E402
from backtesting.lib import crossover as bt_crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402
from backtesting.test._test import SmaCross as BtSmaCross  # noqa: E402

CASH, COMMISSION = 10_000.0, 0.002
FULL = 1.0 - sys.float_info.epsilon
OPTIONS = {"cash": CASH, "fee_rate": COMMISSION, "lot_size": 1}


def _oracle(cls):
    with warnings.catch_warnings():  # backtesting.py's own warnings (open trades at the end, pandas deprecations)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return Backtest(GOOG, cls, cash=CASH, commission=COMMISSION, trade_on_close=False).run()


@pytest.fixture(scope="module")
def goog() -> MarketData:
    df = GOOG.copy()
    df.index.name = None
    return MarketData.from_frames({"GOOG": df})


def _same_as_backtesting(stats, result: bf.Result) -> None:
    oracle = stats["_trades"]
    ours = result.trades.filter(~pl.col("is_open")).to_pandas()
    signed = np.where(ours["direction"] == "long", 1.0, -1.0) * ours["qty"]
    assert len(ours) == len(oracle) > 10
    np.testing.assert_array_equal(signed, oracle["Size"].astype(float))
    np.testing.assert_array_equal(ours["entry_bar"], oracle["EntryBar"])
    np.testing.assert_array_equal(ours["exit_bar"], oracle["ExitBar"])
    np.testing.assert_allclose(ours["entry_price"], oracle["EntryPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["exit_price"], oracle["ExitPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["pnl"], oracle["PnL"], rtol=1e-9, atol=1e-7)
    still_open = stats["_strategy"].trades
    mine = result.trades.filter(pl.col("is_open")).to_pandas()
    assert [(1 if d == "long" else -1) * q for d, q in zip(mine["direction"], mine["qty"])] == \
        [t.size for t in still_open]
    np.testing.assert_allclose(result.equity_values, stats["_equity_curve"]["Equity"].to_numpy(), rtol=1e-9)
    assert result.summary()["final_equity"] == pytest.approx(stats["Equity Final [$]"], rel=1e-9)


class SmaCross(Strategy):
    """backtesting.py's SmaCross, line for line."""

    fast = 10
    slow = 30

    def init(self):
        self.sma1 = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.sma2 = self.I(sma, self.data.close, self.data.timestamps, self.slow)

    def next(self):
        if crossover(self.sma1, self.sma2):
            self.close()
            self.buy(FULL)
        elif crossover(self.sma2, self.sma1):
            self.close()
            self.sell(FULL)


def test_backtesting_own_sma_cross(goog):
    stats = _oracle(BtSmaCross)
    result = backtest(goog, SmaCross, **OPTIONS)
    fast = sma(goog.close, goog.timestamps, 10)[:, 0]
    slow = sma(goog.close, goog.timestamps, 30)[:, 0]
    np.testing.assert_allclose(fast, SMA(GOOG.Close, 10), rtol=1e-12, equal_nan=True)
    assert not np.any(fast == slow)  # the two crossover conventions agree here
    _same_as_backtesting(stats, result)
    assert (result.trades["direction"] == "short").any()


class BtTrailing(BtStrategy):
    """A stateful strategy: long on an SMA(10/30) cross up; it keeps the highest close since entry and the
    entry bar, and leaves when the close falls 8 % below that high or 40 bars have passed."""

    fast, slow, drop, max_bars = 10, 30, 0.08, 40

    def init(self):
        self.sma1 = self.I(SMA, self.data.Close, self.fast)
        self.sma2 = self.I(SMA, self.data.Close, self.slow)
        self.highest = float("nan")
        self.entry_bar = -1

    def next(self):
        bar, close = len(self.data) - 1, self.data.Close[-1]
        if not self.position:
            if bt_crossover(self.sma1, self.sma2):
                self.buy()
                self.highest, self.entry_bar = close, bar
            return
        self.highest = max(self.highest, close)
        if close < self.highest * (1 - self.drop) or bar - self.entry_bar >= self.max_bars:
            self.position.close()


class Trailing(Strategy):
    """BtTrailing, line for line."""

    fast, slow, drop, max_bars = 10, 30, 0.08, 40

    def init(self):
        self.sma1 = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.sma2 = self.I(sma, self.data.close, self.data.timestamps, self.slow)
        self.highest = float("nan")
        self.entry_bar = -1

    def next(self):
        bar, close = self.bar, self.data.close[-1]
        if not self.position:
            if crossover(self.sma1, self.sma2):
                self.buy(FULL)
                self.highest, self.entry_bar = close, bar
            return
        self.highest = max(self.highest, close)
        if close < self.highest * (1 - self.drop) or bar - self.entry_bar >= self.max_bars:
            self.close()


def test_a_stateful_strategy_ported_line_for_line(goog):
    stats = _oracle(BtTrailing)
    result = backtest(goog, Trailing, **OPTIONS)
    _same_as_backtesting(stats, result)
    closed = result.trades.filter(~pl.col("is_open"))
    held = (closed["exit_bar"] - closed["entry_bar"]).to_numpy()
    assert (held <= 40).all() and (held == 40).any() and (held < 40).any()  # both exits happen
