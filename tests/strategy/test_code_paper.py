"""A Strategy class in a paper session (live/code_step.py): replaying a data set bar by bar through the paper
runner gives bit-identical orders, fills and equity to ``backtest(data, MyStrategy, start=s)``; a session
killed and restarted continues with the strategy's own state; ``backforge paper file.py`` runs one. The same
for a compiled class, against ``backtest_compiled(data, cls, start=s)``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numba
import numpy as np
import pytest

import backforge as bf
from backforge.engine import kernels as k
from backforge.live import session_tables
from backforge.live.code_step import run_paper_class
from backforge.strategy.code import Strategy, backtest, crossover, load_strategy_class
from backforge.strategy.compiled import (EQUITY_FRACTION, MARKET, backtest_compiled, close_nb, compiled, order_nb,
                                        position_nb)
from backforge.strategy import indicators as ind
from backforge.strategy.indicators import sma

ROOT = Path(__file__).resolve().parents[2]


class Trailing(Strategy):
    """Stateful: long on an SMA cross up with a stop-loss bracket; keeps the highest close since entry and
    leaves 6 % below it; counts its entries (state a restart must keep)."""

    fast, slow, drop = 5, 20, 0.06

    def init(self):
        self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)
        self.highest = float("nan")
        self.entries = 0
        self.fills = []

    def next(self):
        close = float(self.data.close[-1])
        if not self.position:
            if crossover(self.f, self.s):
                self.buy(0.5, stop_loss=0.04)
                self.highest, self.entries = close, self.entries + 1
            return
        self.highest = max(self.highest, close)
        if close < self.highest * (1 - self.drop):
            self.close()

    def on_fill(self, fill):
        self.fills.append(fill.bar)


@compiled
class TrailingNb:
    """Trailing as a compiled class: its state (highest close since entry, entries) in a scratch array of
    ``user`` that next_nb writes, and the SMA gap of each bar written into a per-bar array."""

    fast, slow, drop = 5, 20, 0.06

    def init(self, data):
        f, s = sma(data.close, data.timestamps, self.fast), sma(data.close, data.timestamps, self.slow)
        return f, s, np.full(data.n_bars, np.nan), np.array([np.nan, 0.0]), self.drop

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        f, s, gap, mine, drop = user
        gap[t] = f[t, 0] - s[t, 0]
        if t == 0:
            return
        close = state.mark[0]  # the bar's close
        if position_nb(state, 0) == 0.0:
            if gap[t - 1] <= 0.0 < gap[t]:
                order_nb(state, t, ts, 0, 1, MARKET, EQUITY_FRACTION, 0.5, np.nan, np.nan, 0.04, np.nan, np.nan)
                mine[0], mine[1] = close, mine[1] + 1.0
            return
        mine[0] = max(mine[0], close)
        if close < mine[0] * (1.0 - drop):
            close_nb(state, t, ts, 0)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.int64)


def _same_records(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    for name in a.dtype.names:
        if a[name].dtype.kind == "f":
            assert np.array_equal(_bits(a[name]), _bits(b[name])), name
        else:
            assert np.array_equal(a[name], b[name]), name


def _assert_parity(result, runner, folder) -> None:
    bt, model = result.state, runner.step.state
    n_orders, n_fills = int(bt.counters[k.C_ORDERS]), int(bt.counters[k.C_FILLS])
    assert int(model.counters[k.C_ORDERS]) == n_orders and int(model.counters[k.C_FILLS]) == n_fills
    _same_records(model.orders[:n_orders], bt.orders[:n_orders])
    _same_records(model.fills[:n_fills], bt.fills[:n_fills])
    broker = runner.broker
    assert int(broker.state.counters[k.C_FILLS]) == n_fills
    _same_records(broker.state.fills[:n_fills], bt.fills[:n_fills])  # the paper venue filled the same way
    tables = session_tables(folder)
    fills = tables["fills"]
    assert fills.height == n_fills
    signed = fills["qty"].to_numpy() * np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0)
    assert np.array_equal(signed, bt.fills[:n_fills]["qty"])
    assert np.array_equal(_bits(fills["price"].to_numpy()), _bits(bt.fills[:n_fills]["price"]))
    bars = tables["bars"]
    assert bars.height == result.data.n_bars
    assert np.array_equal(_bits(bars["equity"].to_numpy()), _bits(bt.equity[: bars.height]))
    assert not [e for e in tables["events"] if e.get("kind") == "reconciliation"]


@pytest.fixture(scope="module")
def market():
    return bf.synth(n_assets=1, years=1.5, seed=21)


def test_paper_replay_of_a_class_equals_its_backtest(market, tmp_path):
    start = 120
    result = backtest(market, Trailing, start=start, fee_rate=0.001)
    runner = run_paper_class(Trailing, market, state=tmp_path / "s", start=start, fee_rate=0.001)
    assert result.summary()["trades"] >= 4 and (result.orders["role"] == "stop_loss").any()
    _assert_parity(result, runner, tmp_path / "s")
    assert runner.step.driver.instance.entries >= 4


class Many(Strategy):
    """Indicators of every streaming kind (two assets, duration windows, an indicator of an indicator) and
    one plain function, which a session recomputes."""

    def init(self):
        d = self.data
        self.a = self.I(ind.sma, d.close, d.timestamps, 5)
        self.b = self.I(ind.ema, d.close, d.timestamps, "20d")
        self.c = self.I(ind.atr, d.high, d.low, d.close, d.timestamps, 14)
        self.d = self.I(ind.rsi, d.close, d.timestamps)
        self.e = self.I(ind.stddev, self.a, d.timestamps, "30d")
        self.f = self.I(ind.rolling_max, d.high, d.timestamps, 20)
        self.g = self.I(ind.pct_change, d.close)
        self.h = self.I(ind.vwap, d.high, d.low, d.close, d.volume, d.timestamps, 10)
        self.i = self.I(ind.zscore, d.close, d.timestamps, 15)
        self.j = self.I(np.multiply, d.close, 2.0)

    def next(self):
        a, b = np.asarray(self.a), np.asarray(self.b)
        for j, asset in enumerate(self.data.assets):
            if crossover(a[:, j], b[:, j]) and not self.position_of(asset):
                self.buy(0.3, asset=asset)
            elif crossover(b[:, j], a[:, j]) and self.position_of(asset):
                self.close(asset=asset)


def test_session_indicators_stream_and_equal_the_batch_values(tmp_path):
    """Every declared indicator, extended bar by bar in the session, equals the batch kernel over all the
    bars; the kernels with a streaming form stream (constant work per bar) when the streaming module exists."""
    data = bf.synth(n_assets=2, years=1.5, seed=4)
    start = 150
    runner = run_paper_class(Many, data, state=tmp_path / "s", start=start, fee_rate=0.001)
    run = runner.step.driver.run
    assert runner.step.n == data.n_bars
    for series, function, args, kwargs in run.declared:
        assert np.array_equal(series._full, run._evaluate(function, args, kwargs), equal_nan=True), function
    streams = importlib.util.find_spec("backforge.strategy.streaming") is not None
    assert runner.step.streamed == [streams] * 9 + [False]
    result = backtest(data, Many, start=start, fee_rate=0.001)
    assert result.summary()["trades"] >= 2
    _assert_parity(result, runner, tmp_path / "s")


def test_a_restarted_session_keeps_the_strategy_state(market, tmp_path):
    from backforge.live.paper import PaperBroker

    start, folder = 120, tmp_path / "s"
    venue = lambda: PaperBroker(market.assets, config=bf.SimConfig(fee_rate=0.001),  # noqa: E731 - durable venue
                                state_path=tmp_path / "venue.npz")
    first = run_paper_class(Trailing, market, state=folder, start=start, fee_rate=0.001, max_bars=150, broker=venue())
    assert first.step.t == 149 and first.step.driver.instance.entries >= 1
    # a new process: the session resumes from its snapshot, the venue from its own state
    runner = run_paper_class(Trailing, market, state=folder, start=start, fee_rate=0.001, broker=venue())
    result = backtest(market, Trailing, start=start, fee_rate=0.001)
    _assert_parity(result, runner, folder)
    whole = run_paper_class(Trailing, market, state=tmp_path / "whole", start=start, fee_rate=0.001)
    mine, theirs = runner.step.driver.instance, whole.step.driver.instance
    assert (mine.entries, mine.highest, mine.fills) == (theirs.entries, theirs.highest, theirs.fills)
    assert mine.f is runner.step.driver.run.declared[0][0]  # views re-attached, not stale copies


@pytest.mark.slow
def test_a_compiled_class_in_a_session_equals_its_backtest_and_survives_a_restart(market, tmp_path):
    """A compiled class replayed through a paper session: the orders, fills and equity of
    backtest_compiled(start=s), bit for bit, and the same Python Trailing decisions; killed after 150 bars
    and restarted, it continues with the state next_nb keeps in user (restored from the snapshot)."""
    from backforge.live.paper import PaperBroker

    start = 120
    result = backtest_compiled(market, TrailingNb, start=start, fee_rate=0.001)
    assert result.summary()["trades"] >= 4 and (result.orders["role"] == "stop_loss").any()
    whole = run_paper_class(TrailingNb, market, state=tmp_path / "whole", start=start, fee_rate=0.001)
    _assert_parity(result, whole, tmp_path / "whole")
    gap, mine = whole.step._user[2], whole.step._user[3]
    assert gap.shape == (market.n_bars - start,) and not np.isnan(gap).any()  # every bar's write carried over
    assert mine[1] == result.orders.filter(result.orders["role"] == "entry").height
    python = backtest(market, Trailing, start=start, fee_rate=0.001)  # the same decisions as the Python class
    assert np.array_equal(_bits(result.equity_values), _bits(python.equity_values))

    folder = tmp_path / "s"
    venue = lambda: PaperBroker(market.assets, config=bf.SimConfig(fee_rate=0.001),  # noqa: E731 - durable venue
                                state_path=tmp_path / "venue.npz")
    first = run_paper_class(TrailingNb, market, state=folder, start=start, fee_rate=0.001, max_bars=150, broker=venue())
    assert first.step.t == 149 and first.step._user[3][1] >= 1
    runner = run_paper_class(TrailingNb, market, state=folder, start=start, fee_rate=0.001, broker=venue())
    _assert_parity(result, runner, folder)
    assert np.array_equal(runner.step._user[3], mine) and np.array_equal(runner.step._user[2], gap)


def test_a_changed_class_needs_force(market, tmp_path):
    run_paper_class(Trailing, market, state=tmp_path / "s", start=120, max_bars=5)
    with pytest.raises(bf.BackforgeError):
        run_paper_class(Trailing, market, state=tmp_path / "s", start=120, drop=0.1, max_bars=5)


def test_backforge_paper_runs_a_python_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from backforge.cli import app
    from backforge.live.code_step import open_code_replay

    monkeypatch.chdir(tmp_path)
    source = ROOT / "examples" / "code" / "pyramid_trend.py"
    folder = tmp_path / "session"
    _, feed = open_code_replay(source)
    first = np.datetime_as_string(np.datetime64(int(feed.data.timestamps[300]), "ns"))  # bar 300's time
    done = CliRunner().invoke(app, ["paper", str(source), "--state", str(folder), "--start", first, "--max-bars", "200"])
    assert done.exit_code == 0, done.output
    result = backtest(feed.data.rows(0, 500), load_strategy_class(source), start=300)
    bars = session_tables(folder)["bars"]
    assert bars.height == 200 and result.summary()["trades"] >= 1
    assert np.array_equal(_bits(bars["equity"].to_numpy()), _bits(result.state.equity[:200]))
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    bad = CliRunner().invoke(app, ["paper", str(none), "--state", str(tmp_path / "n")])
    assert bad.exit_code == 2 and "defines no Strategy subclass" in bad.output and "Traceback" not in bad.output
    boom = tmp_path / "boom.py"  # no --start: no warm-up, init() on the first bar; next() raises at bar 30
    boom.write_text("import backforge as bf\n\n\nclass Boom(bf.Strategy):\n    data_spec = {'source': 'synthetic', "
                    "'years': 1}\n\n    def next(self):\n        if self.bar == 30:\n            raise ValueError('bad')\n")
    bad = CliRunner().invoke(app, ["paper", str(boom), "--state", str(tmp_path / "b")])
    lines = bad.output.strip().splitlines()
    assert bad.exit_code == 2 and len(lines) == 1 and "Traceback" not in bad.output, bad.output
    assert "Boom.next() raised ValueError at bar 30" in lines[0] and "boom.py:9" in lines[0]
