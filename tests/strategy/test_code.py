"""Strategies as code (issue 19): the same decisions as a strategy file and as signals give bit-identical
orders, fills and equity; look-ahead is an error; the user's errors name the bar and the line; files load."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backforge as bf
from backforge.strategy.code import Strategy, StrategyError, backtest, crossover, load_strategy_class
from backforge.strategy.compiled import (EQUITY_FRACTION, LIMIT, MARKET, POSITION_FRACTION, STOP, STOP_LIMIT,
                                        backtest_compiled, buy_nb, close_nb, compiled, position_nb, submit_nb)
from backforge.strategy.compiler import load_data, run_portfolio
from backforge.strategy.indicators import sma
from backforge.strategy.schema import load_portfolio

ROOT = Path(__file__).resolve().parents[2]


class SmaCrossEverywhere(Strategy):
    """examples/sma_cross.yaml as code: buy 33 % of equity on a 20/50 cross up, close on the cross down."""

    fast = 20
    slow = 50
    fraction = 0.33

    def init(self):
        self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)

    def next(self):
        assets = self.data.assets
        f, s = np.asarray(self.f), np.asarray(self.s)
        if f.ndim == 1:  # one asset: the data's fields (and so the indicators) are [t + 1] columns
            f, s = f[:, None], s[:, None]
        for j, asset in enumerate(assets):  # the file's first strategy (enter) for every asset, then the second
            if crossover(f[:, j], s[:, j]) and self.position_of(asset).size <= 0:
                self.buy(self.fraction, asset=asset)
        for j, asset in enumerate(assets):
            if crossover(s[:, j], f[:, j]) and self.position_of(asset):
                self.close(asset=asset)


@compiled
class SmaCrossCompiled:
    """SmaCrossEverywhere as a compiled strategy: the same decisions in a numba callback."""

    fast = 20
    slow = 50
    fraction = 0.33

    def init(self, data):
        return (sma(data.close, data.timestamps, self.fast), sma(data.close, data.timestamps, self.slow),
                self.fraction)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        f, s, fraction = user
        if t == 0:
            return
        for j in range(f.shape[1]):
            if f[t - 1, j] - s[t - 1, j] <= 0.0 < f[t, j] - s[t, j] and position_nb(state, j) <= 0.0:
                buy_nb(state, t, ts, j, fraction)
        for j in range(f.shape[1]):
            if s[t - 1, j] - f[t - 1, j] <= 0.0 < s[t, j] - f[t, j] and position_nb(state, j) != 0.0:
                close_nb(state, t, ts, j)


def _same(a, b, *, submission_order: bool = True) -> None:
    """Bit-identical orders (all but who placed them: a signal or the strategy's code), fills, trades and
    equity. ``submission_order=False``: the orders of one bar may have been placed in another order (their
    ids differ; from_signals places each asset's exit before the next asset's entry, the class all entries
    first — the fills, at the next open, do not depend on it)."""
    orders_a, orders_b = a.orders.drop("reason"), b.orders.drop("reason")
    if not submission_order:
        key = ["created_bar", "asset", "side", "role"]
        orders_a, orders_b = (o.drop("order_id", "parent_id").sort(key) for o in (orders_a, orders_b))
    assert orders_a.equals(orders_b)
    cols = ["bar", "asset", "qty", "price", "fee", "role"]
    assert a.fills.select(cols).equals(b.fills.select(cols))
    assert a.trades.drop("exit_reason").equals(b.trades.drop("exit_reason"))
    assert np.array_equal(np.asarray(a.equity_values), np.asarray(b.equity_values))


@pytest.fixture(scope="module")
def sma_example():
    portfolio = load_portfolio(ROOT / "examples" / "sma_cross.yaml")
    data = load_data(portfolio, base=ROOT / "examples")
    return portfolio, data


@pytest.fixture(scope="module")
def goog_example():
    """examples/sma_cross.yaml's rules on real prices: backtesting.py's bundled GOOG daily bars (2004-2013)."""
    pytest.importorskip("backtesting")
    import yaml
    from backtesting.test import GOOG

    from backforge.data.market import MarketData

    frame = GOOG.copy()
    frame.index.name = None
    raw = yaml.safe_load((ROOT / "examples" / "sma_cross.yaml").read_text())
    raw["universe"] = ["GOOG"]
    return load_portfolio(raw), MarketData.from_frames({"GOOG": frame})


@pytest.mark.slow
@pytest.mark.parametrize("example", ["sma_example", "goog_example"])
def test_the_sma_cross_example_four_ways(example, request):
    """A YAML file, a Strategy class, a compiled strategy and from_signals: bit-identical (synthetic data for
    three stocks, and real GOOG prices)."""
    portfolio, data = request.getfixturevalue(example)
    from_file = run_portfolio(portfolio, data)
    as_code = backtest(data, SmaCrossEverywhere, fee_rate=0.0005, slippage_bps=1)
    fast = sma(data.close, data.timestamps, 20)
    slow = sma(data.close, data.timestamps, 50)
    diff = fast - slow
    prev = np.vstack([np.full((1, data.n_assets), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)
    as_signals = bf.from_signals(data, up, down, size=0.33, fee_rate=0.0005, slippage_bps=1)
    assert from_file.summary()["trades"] > (10 if data.n_assets > 1 else 5)
    _same(from_file, as_code)
    _same(as_signals, as_code, submission_order=False)
    as_compiled = backtest_compiled(data, SmaCrossCompiled, fee_rate=0.0005, slippage_bps=1)
    _same(as_compiled, as_code)
    assert as_compiled.mode == "compiled" and as_compiled.strategy["parameters"] == as_code.strategy["parameters"]
    assert as_code.mode == "code" and as_code.strategy["parameters"] == {"fast": 20, "fraction": 0.33, "slow": 50}


class Flip(Strategy):
    """Enter on a given set of bars, exit on another: a stand-in for any signal stream."""

    entries: tuple = ()
    exits: tuple = ()

    def next(self):
        if self.bar in self.entries and not self.position:
            self.buy(0.5)
        elif self.bar in self.exits and self.position:
            self.close()


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=60, max_size=60), st.lists(st.booleans(), min_size=60, max_size=60))
def test_random_signal_streams_match_from_signals(entries, exits):
    data = bf.synth(n_assets=1, years=0.3, seed=3)
    n = data.n_bars
    e = np.array((entries * 3)[:n]) & ~np.array((exits * 3)[:n])
    x = np.array((exits * 3)[:n]) & ~e
    cls = type("Stream", (Flip,), {"entries": frozenset(np.flatnonzero(e)), "exits": frozenset(np.flatnonzero(x))})
    # from_signals: an entry while flat, an exit while long (what Flip does)
    signals = bf.from_signals(data, e, x, size=0.5, fee_rate=0.001)
    _same(signals, backtest(data, cls, fee_rate=0.001))
    compiled_cls = type("StreamNb", (FlipCompiled,), {"entries": e, "exits": x})
    _same(signals, backtest_compiled(data, compiled_cls, fee_rate=0.001))


@compiled
class FlipCompiled:
    """Flip as a compiled strategy: the streams come in as parameters, the decisions in a numba callback."""

    entries = exits = np.zeros(0, dtype=np.bool_)

    def init(self, data):
        return np.asarray(self.entries, dtype=np.bool_), np.asarray(self.exits, dtype=np.bool_)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        entries, exits = user
        if entries[t] and position_nb(state, 0) == 0.0:
            buy_nb(state, t, ts, 0, 0.5)
        elif exits[t] and position_nb(state, 0) != 0.0:
            close_nb(state, t, ts, 0)


def test_next_cannot_read_the_next_bar():
    seen = []

    class Peek(Strategy):
        def next(self):
            seen.append(len(self.data.close))
            self.data.close[self.bar + 1]

    data = bf.synth(n_assets=1, years=0.2, seed=1)
    with pytest.raises(StrategyError, match=r"Peek.next\(\) raised IndexError at bar 0 \(.*test_code.py:\d+\)"):
        backtest(data, Peek)
    assert seen == [1]


def test_indicators_are_truncated_and_read_only():
    checked = []

    class Look(Strategy):
        def init(self):
            self.m = self.I(sma, self.data.close, self.data.timestamps, 3)
            assert len(self.m) == len(self.data.close)  # init sees the whole history

        def next(self):
            assert len(self.m) == self.bar + 1 == len(self.data.close)
            with pytest.raises(ValueError):
                self.data.close.values[0] = 1.0
            checked.append(self.bar)

    backtest(bf.synth(n_assets=1, years=0.1, seed=2), Look)
    assert checked and checked[-1] == len(checked) - 1


def test_hooks_see_fills_and_order_events():
    fills, events = [], []

    class Hooked(Strategy):
        def next(self):
            if self.bar == 1:
                self.buy(10, size_type="units", stop_loss=0.5)
            if self.bar == 5:
                self.close()

        def on_fill(self, fill):
            fills.append((fill.bar, fill.qty, fill.role))

        def on_order(self, order):
            events.append(order.event)

    result = backtest(bf.synth(n_assets=1, years=0.1, seed=2), Hooked)
    assert fills == [(2, 10.0, "entry"), (6, -10.0, "exit")]
    assert events[:2] == ["submitted", "filled"] and "cancelled" in events  # the stop went with the position
    assert result.fills.height == 2


class OrderMix(Strategy):
    """Every 9th bar, one of: a limit buy 1 % under the close good for 3 bars, a stop buy 1 % over it good
    for the day, a stop-limit buy, or a limit sell to close 2 % over the close; a market entry carries a
    stop-loss, a take-profit and a trailing stop."""

    def next(self):
        if self.bar % 9 or self.bar == 0:
            return
        close, kind = float(self.data.close[-1]), (self.bar // 9) % 5
        if kind == 0:
            self.buy(0.2, limit=close * 0.99, time_in_force="gtn", gtn_bars=3)
        elif kind == 1:
            self.buy(0.2, stop=close * 1.01, time_in_force="day")
        elif kind == 2:
            self.buy(0.2, stop=close * 1.005, limit=close * 1.015)
        elif kind == 3 and self.position:
            self.sell(1.0, size_type="position_fraction", limit=close * 1.02)
        elif kind == 4:
            self.buy(0.2, stop_loss=0.03, take_profit=0.05, trailing_stop=0.04)


@compiled
class OrderMixNb:
    """OrderMix as a compiled class (order type, size type and time-in-force codes of submit_nb)."""

    def init(self, data):
        return (data.close,)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        close = user[0][t, 0]
        if t % 9 != 0 or t == 0:
            return
        kind = (t // 9) % 5
        nan = np.nan
        if kind == 0:
            submit_nb(state, t, ts, 0, 1, LIMIT, EQUITY_FRACTION, 0.2, close * 0.99, nan, nan, nan, nan, 2, 3)
        elif kind == 1:
            submit_nb(state, t, ts, 0, 1, STOP, EQUITY_FRACTION, 0.2, nan, close * 1.01, nan, nan, nan, 1, 0)
        elif kind == 2:
            submit_nb(state, t, ts, 0, 1, STOP_LIMIT, EQUITY_FRACTION, 0.2, close * 1.015, close * 1.005, nan, nan,
                      nan, 0, 0)
        elif kind == 3 and position_nb(state, 0) != 0.0:
            submit_nb(state, t, ts, 0, -1, LIMIT, POSITION_FRACTION, 1.0, close * 1.02, nan, nan, nan, nan, 0, 0)
        elif kind == 4:
            submit_nb(state, t, ts, 0, 1, MARKET, EQUITY_FRACTION, 0.2, nan, nan, 0.03, 0.05, 0.04, 0, 0)


def test_limit_stop_brackets_and_time_in_force_from_a_class(sma_example):
    """OrderMix as a Python class, as a compiled class and through the Simulator driven by hand: the same
    orders (types, prices, time in force, status), fills and equity; and by hand: limit buys fill at or
    under their limit, stops at or over their trigger, a gtn order not filled within 3 bars expires."""
    data = bf.synth(n_assets=1, years=2, seed=11)
    as_code = backtest(data, OrderMix, fee_rate=0.0005)
    as_compiled = backtest_compiled(data, OrderMixNb, fee_rate=0.0005)
    sim = bf.Simulator(data.assets, fee_rate=0.0005)
    for t in range(data.n_bars):
        sim.on_bar(int(data.timestamps[t]), open=data.open[t], high=data.high[t], low=data.low[t], close=data.close[t])
        if t % 9 or t == 0:
            continue
        close, kind, a = float(data.close[t, 0]), (t // 9) % 5, data.assets[0]
        if kind == 0:
            sim.submit(a, "buy", 0.2, size_type="equity_fraction", order_type="limit", limit_price=close * 0.99,
                       time_in_force="gtn", gtn_bars=3)
        elif kind == 1:
            sim.submit(a, "buy", 0.2, size_type="equity_fraction", order_type="stop", stop_price=close * 1.01,
                       time_in_force="day")
        elif kind == 2:
            sim.submit(a, "buy", 0.2, size_type="equity_fraction", order_type="stop_limit",
                       stop_price=close * 1.005, limit_price=close * 1.015)
        elif kind == 3 and sim.position(a) != 0.0:
            sim.submit(a, "sell", 1.0, size_type="position_fraction", order_type="limit", limit_price=close * 1.02)
        elif kind == 4:
            sim.submit(a, "buy", 0.2, size_type="equity_fraction", stop_loss=0.03, take_profit=0.05,
                       trailing_stop=0.04)
    by_hand = sim.result()
    orders = as_code.orders
    for other in (as_compiled, by_hand):
        _same(other, as_code)
    roles = set(orders["role"].to_list())
    assert {"entry", "stop_loss", "take_profit", "trailing_stop"} <= roles, roles
    assert {"filled", "expired"} <= set(orders["status"].to_list())
    filled = orders.filter(pl.col("status") == "filled")
    limit_buys = filled.filter((pl.col("order_type") == "limit") & (pl.col("side") == "buy"))
    stops = filled.filter((pl.col("order_type") == "stop") & (pl.col("role") == "entry"))
    assert limit_buys.height and (limit_buys["fill_price"] <= limit_buys["limit_price"] + 1e-9).all()
    assert stops.height and (stops["fill_price"] >= stops["stop_price"] - 1e-9).all()
    gtn = orders.filter(pl.col("time_in_force") == "gtn")
    assert ((gtn["status"] != "filled") | (gtn["fill_bar"] - gtn["created_bar"] <= 3)).all()
    assert (gtn.filter(pl.col("status") == "expired").height > 0)


@compiled
class Burst:
    """Counts its calls in a state array; on bar 5 rests 400 limit buys far under the market (more records
    than the loop keeps free: the run is redone with more room)."""

    def init(self, data):
        return (np.zeros(1),)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        user[0][0] += 1.0
        if t == 5:
            for _ in range(400):
                submit_nb(state, t, ts, 0, 1, LIMIT, EQUITY_FRACTION, 0.001, 1e-6, np.nan, np.nan, np.nan, np.nan, 0, 0)


def test_a_run_redone_with_more_room_starts_from_a_fresh_init():
    data = bf.synth(n_assets=1, years=0.2, seed=1)
    calls = []
    original = Burst.init

    def init(self, data):
        user = original(self, data)
        calls.append(user)
        return user

    Burst.init = init
    try:
        result = backtest_compiled(data, Burst)
    finally:
        Burst.init = original
    assert len(calls) >= 2  # the first attempt overflowed
    assert calls[-1][0][0] == data.n_bars  # next_nb's state counts one run, not the overflowed one too
    assert result.orders.height == 400 and (result.orders["status"] == "pending").all()  # resting, far below


def test_impossible_orders_are_rejected_records():
    class Bad(Strategy):
        def next(self):
            if self.bar == 0:
                self.buy(1.0, limit=-5.0)

    result = backtest(bf.synth(n_assets=1, years=0.1, seed=2), Bad)
    assert result.orders["status"].to_list() == ["rejected"] and result.orders["reason"].to_list() == ["invalid_price"]


def test_parameters_and_options(sma_example):
    _, data = sma_example
    with pytest.raises(bf.ConfigError, match="unknown option 'fee_rat'"):
        backtest(data, SmaCrossEverywhere, fee_rat=0.1)
    with pytest.raises(bf.ConfigError, match="parameter 'fast'"):
        backtest(data, SmaCrossEverywhere, fast="ten")
    short = backtest(data, SmaCrossEverywhere, fast=5, slow=15)
    assert short.strategy["parameters"]["fast"] == 5 and short.summary()["trades"] > 0
    with pytest.raises(bf.ConfigError, match="expected a Strategy subclass"):
        backtest(data, object)


def test_strategy_files(tmp_path):
    good = tmp_path / "mine.py"
    good.write_text("import backforge as bf\nclass Mine(bf.Strategy):\n    window = 3\n")
    assert load_strategy_class(good).__name__ == "Mine"
    two = tmp_path / "two.py"
    two.write_text("from backforge import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n")
    with pytest.raises(bf.ConfigError, match="several strategies"):
        load_strategy_class(two)
    assert load_strategy_class(two, "B").__name__ == "B"
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    with pytest.raises(bf.ConfigError, match="defines no Strategy subclass"):
        load_strategy_class(none)
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(bf.ConfigError, match=r"does not import: RuntimeError \(broken.py:2\): boom"):
        load_strategy_class(broken)


def test_an_edit_within_the_same_second_is_loaded_and_nothing_is_cached_beside_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = tmp_path / "edited.py"
    path.write_text("import backforge as bf\nclass Mine(bf.Strategy):\n    window = 3\n")
    stamp = path.stat().st_mtime_ns
    assert load_strategy_class(path).window == 3
    path.write_text("import backforge as bf\nclass Mine(bf.Strategy):\n    window = 7\n")  # same size
    os.utime(path, ns=(stamp, stamp))  # and the same modification time: a bytecode cache would be trusted
    assert load_strategy_class(path).window == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.py"]


@pytest.mark.slow
def test_optimize_a_class_and_its_compiled_twin():
    from backforge.research.optimize import score_result
    from backforge.strategy.search import optimize_class

    data = bf.synth(n_assets=2, years=1, seed=8)
    ranges = {"fast": [5, 10, 20], "slow": range(20, 40, 10)}
    res = optimize_class(data, SmaCrossEverywhere, ranges, constraints=["fast < slow"], fee_rate=0.001)
    assert res.n_trials == 5 and {(t.params["fast"], t.params["slow"]) for t in res.trials} == \
        {(f, s) for f in (5, 10, 20) for s in (20, 30) if f < s}
    for trial in res.trials[:2]:  # each trial is the class's own backtest, scored by the search's scorer
        assert trial.metrics == score_result(backtest(data, SmaCrossEverywhere, fee_rate=0.001, **trial.params))
    assert all(t.error is None for t in res.trials)
    assert res.best.metrics["sharpe"] == max(t.metrics["sharpe"] for t in res.trials)
    assert res.overfitting["n_trials"] == 5 and "deflated_sharpe" in res.overfitting
    twin = optimize_class(data, SmaCrossCompiled, ranges, constraints=["fast < slow"], fee_rate=0.001)
    assert [t.metrics for t in twin.trials] == [t.metrics for t in res.trials]
    with pytest.raises(bf.BackforgeError, match="no parameter 'fsat'.*fast"):
        optimize_class(data, SmaCrossEverywhere, {"fsat": [1]})


def test_warm_up_bars_are_seen_but_not_traded(sma_example):
    """backtest(start=s): next() sees the bars before s (indicators warm) but trades from s on — the same
    as from_signals on rows s: with the full data's signals cut at s, bit for bit."""
    _, data = sma_example
    s = 300
    calls = []

    class Counting(SmaCrossEverywhere):
        def next(self):
            calls.append(self.bar)
            super().next()

    as_code = backtest(data, Counting, start=s, fee_rate=0.0005)
    assert calls[0] == s and calls[-1] == data.n_bars - 1 and len(calls) == data.n_bars - s
    fast, slow = sma(data.close, data.timestamps, 20), sma(data.close, data.timestamps, 50)
    diff = fast - slow
    prev = np.vstack([np.full((1, data.n_assets), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)
    as_signals = bf.from_signals(data.rows(s, data.n_bars), up[s:], down[s:], size=0.33, fee_rate=0.0005)
    assert as_code.data.n_bars == data.n_bars - s and as_signals.summary()["trades"] > 3
    _same(as_signals, as_code, submission_order=False)
    # a compiled class: init sees the warm-up bars, next_nb's bar 0 is bar s (it cannot see bar s - 1, so
    # the same decisions as long as no cross falls on bar s itself)
    assert not (up[s].any() or down[s].any())
    _same(backtest_compiled(data, SmaCrossCompiled, start=s, fee_rate=0.0005), as_code)
    with pytest.raises(bf.ConfigError, match="leave no bar to trade"):
        backtest(data, SmaCrossEverywhere, start=data.n_bars)


def test_walk_forward_of_a_class(sma_example):
    """Each window's winner is the best in-sample backtest of the grid; its out-of-sample returns are the
    backtest of those parameters on the window (warm-up before it), stitched in order."""
    from backforge.research.optimize import score_result
    from backforge.research.walkforward import windows
    from backforge.strategy.search import walk_forward_class

    _, data = sma_example
    ranges = {"fast": [10, 20], "slow": [50]}
    wf = walk_forward_class(data, SmaCrossEverywhere, ranges, in_sample=400, out_of_sample=200, fee_rate=0.001)
    spans = windows(data.timestamps, 400, 200)
    assert wf.windows.height == len(spans) >= 2 and wf.n_trials == 2 * len(spans)
    pieces = []
    for row, (is_start, oos_start, oos_end) in zip(wf.windows.iter_rows(named=True), spans):
        scores = {f: score_result(backtest(data, SmaCrossEverywhere, start=is_start, end=oos_start, fast=f,
                                           fee_rate=0.001))["sharpe"] for f in (10, 20)}
        assert row["param.fast"] == max(scores, key=lambda f: (scores[f], f == 10))
        assert row["is_sharpe"] == scores[row["param.fast"]]
        oos = backtest(data, SmaCrossEverywhere, start=oos_start, end=oos_end, fast=row["param.fast"], fee_rate=0.001)
        equity = np.concatenate([[oos.sim_config.cash], oos.equity_values])
        pieces.append(equity[1:] / equity[:-1] - 1.0)
    np.testing.assert_array_equal(wf.equity["equity"].to_numpy(), np.cumprod(1.0 + np.concatenate(pieces)))
    assert set(wf.stability) == {"fast", "slow"}
    # the compiled twin walks forward on the same windows with the same warm-up: the same winners and scores
    # wherever no cross falls on a window's first bar (next_nb's bar 0, which cannot see the bar before)
    twin = walk_forward_class(data, SmaCrossCompiled, ranges, in_sample=400, out_of_sample=200, fee_rate=0.001)
    diff = sma(data.close, data.timestamps, 10) - sma(data.close, data.timestamps, 50)
    diff20 = sma(data.close, data.timestamps, 20) - sma(data.close, data.timestamps, 50)
    crossed = lambda t: any(np.any((d[t - 1] <= 0) != (d[t] <= 0)) for d in (diff, diff20))  # noqa: E731
    same = 0
    for mine, theirs, (is_start, oos_start, _) in zip(twin.windows.iter_rows(named=True),
                                                      wf.windows.iter_rows(named=True), spans):
        if not crossed(oos_start) and not (is_start and crossed(is_start)):
            assert {**mine, "window": 0} == {**theirs, "window": 0}
            same += 1
    assert same >= len(spans) - 4


class RiskSized(SmaCrossEverywhere):
    """SmaCrossEverywhere whose entries carry a 5 % stop-loss: what risk sizing divides by."""

    def next(self):
        assets = self.data.assets
        f, s = np.asarray(self.f), np.asarray(self.s)
        for j, asset in enumerate(assets):
            if crossover(f[:, j], s[:, j]) and self.position_of(asset).size <= 0:
                self.buy(self.fraction, asset=asset, stop_loss=0.05)
        for j, asset in enumerate(assets):
            if crossover(s[:, j], f[:, j]) and self.position_of(asset):
                self.close(asset=asset)


def test_risk_rules_and_risk_sizing_as_in_from_signals(sma_example):
    """The risk issue's sizing (quantity = equity x 1 % / stop distance) and its rules (at most 2 positions,
    a drawdown halt) on a Strategy class give what from_signals gives for the same decisions."""
    _, data = sma_example
    risk = bf.RiskConfig(sizing={"mode": "risk", "value": 0.01}, max_positions=2, max_drawdown=0.15)
    as_code = backtest(data, RiskSized, risk=risk, fee_rate=0.0005)
    fast, slow = sma(data.close, data.timestamps, 20), sma(data.close, data.timestamps, 50)
    diff = fast - slow
    prev = np.vstack([np.full((1, data.n_assets), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)
    as_signals = bf.from_signals(data, up, down, size=0.33, stop_loss=0.05, risk=risk, fee_rate=0.0005)
    _same(as_signals, as_code, submission_order=False)
    assert as_code.risk_events.height > 0 and as_code.summary()["trades"] > 5
    unsized = backtest(data, RiskSized, fee_rate=0.0005)
    assert not as_code.fills["qty"].equals(unsized.fills["qty"])  # the sizing did change the quantities
    no_stop = backtest(data, SmaCrossEverywhere, risk=risk)  # entries without a stop cannot be risk-sized
    assert no_stop.fills.height == 0 and no_stop.risk_events.height > 0


_COMPILED_FILE = '''
import numba
from backforge.strategy.compiled import buy_nb, close_nb, compiled, position_nb
from backforge.strategy.indicators import sma

LEVEL = {level}


@numba.njit
def spread(fast, slow, t):
    return fast[t, 0] - slow[t, 0] - LEVEL


@compiled
class Cross:
    def init(self, data):
        return sma(data.close, data.timestamps, 5), sma(data.close, data.timestamps, 20)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        fast, slow = user
        if t > 0 and spread(fast, slow, t - 1) <= 0.0 < spread(fast, slow, t) and position_nb(state, 0) == 0.0:
            buy_nb(state, t, ts, 0, 1.0)
        elif t > 0 and spread(fast, slow, t) < 0.0 <= spread(fast, slow, t - 1) and position_nb(state, 0) != 0.0:
            close_nb(state, t, ts, 0)
'''


def _fingerprint_of(path: Path) -> str | None:
    from backforge.strategy.compiled import _fingerprint

    return _fingerprint(load_strategy_class(path, compiled=True).next_nb)


def test_the_compiled_loop_is_named_by_what_its_code_depends_on(tmp_path):
    """The fingerprint a compiled loop is cached under: the same for the same code loaded twice (a new
    function object each time), another one when the callback, a function it calls or a global it reads
    (numba freezes globals into the code) changes; none when a global is something it cannot describe."""
    path = tmp_path / "cross.py"
    path.write_text(_COMPILED_FILE.format(level=0.0))
    first = _fingerprint_of(path)
    assert first is not None and _fingerprint_of(path) == first
    path.write_text(_COMPILED_FILE.format(level=0.5))  # a global's value
    assert _fingerprint_of(path) not in (None, first)
    path.write_text(_COMPILED_FILE.format(level=0.0).replace("- LEVEL", "- LEVEL * 1.0"))  # a called function
    assert _fingerprint_of(path) not in (None, first)
    path.write_text(_COMPILED_FILE.format(level=0.0).replace("buy_nb(state, t, ts, 0, 1.0)",
                                                             "buy_nb(state, t, ts, 0, 0.5)"))  # the callback
    assert _fingerprint_of(path) not in (None, first)
    path.write_text(_COMPILED_FILE.format(level="object()"))  # numba cannot freeze it; nor can it be named
    assert _fingerprint_of(path) is None


@pytest.mark.slow
def test_a_compiled_strategy_loads_its_loop_from_the_disk_cache_in_a_new_process(tmp_path):
    """The loop specialised for a compiled class compiles in the first process only: a second process loads
    it from numba's disk cache, with the same result (a function passed as an argument would compile in
    every process and leave a never-read cache entry behind)."""
    import subprocess
    import sys

    path = tmp_path / "cross.py"
    path.write_text(_COMPILED_FILE.format(level=0.0))
    script = ("import sys, backforge as bf\n"
              "from backforge.strategy import compiled as c\n"
              "from backforge.strategy.code import load_strategy_class\n"
              "cls = load_strategy_class(sys.argv[1], compiled=True)\n"
              "r = c.backtest_compiled(bf.synth(n_assets=1, years=2, seed=4), cls)\n"
              "s = c.callback_loop(cls.next_nb).stats\n"
              "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()), r.summary()[\"final_equity\"])\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    hits, misses, equity = run()
    assert (hits, misses) == ("0", "1")
    assert run() == ["1", "0", equity]  # loaded, not compiled: the same result
    assert len(list((tmp_path / "cache" / "backforge" / "compiled").glob("loop_*.py"))) == 1


def test_old_loop_modules_are_removed_with_their_cache_files(tmp_path, monkeypatch):
    """The cache folder keeps the newest loop modules: writing one more removes the oldest, and numba's
    index and code files of that module with it; a module already written is left as it is."""
    from backforge.strategy import compiled as c

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(c, "_KEEP_LOOPS", 2)
    folder = tmp_path / "backforge" / "compiled"
    for n, key in enumerate(["a" * 32, "b" * 32, "c" * 32]):
        path = Path(c._write_loop(key, f"# {key}\n"))
        os.utime(path, ns=(n * 10**9, n * 10**9))
        (folder / "__pycache__").mkdir(exist_ok=True)
        for suffix in ("run_callback_nb-10.py311.nbi", "run_callback_nb-10.py311.1.nbc"):
            (folder / "__pycache__" / f"loop_{key}.{suffix}").write_bytes(b"x")
    c._write_loop("d" * 32, "# d\n")
    assert sorted(p.name[5:6] for p in folder.glob("loop_*.py")) == ["c", "d"]
    assert sorted({p.name[5:6] for p in (folder / "__pycache__").iterdir()}) == ["c"]
    stamp = (folder / f"loop_{'c' * 32}.py").stat().st_mtime_ns
    c._write_loop("c" * 32, "# changed\n")  # written once: numba's index keeps the stamp it recorded
    assert (folder / f"loop_{'c' * 32}.py").read_text() == f"# {'c' * 32}\n"
    assert (folder / f"loop_{'c' * 32}.py").stat().st_mtime_ns == stamp
