"""The three strategies-as-code examples (``examples/code/``), checked by hand.

Each example runs on the data its class names (``universe`` / ``data_spec``), as ``backforge run`` does.
Its indicators are recomputed independently (pandas rolling windows, TA-Lib's ATR, numpy least
squares), its rules replayed in plain Python over those arrays, and the decision bars the replay finds
must be exactly the bars whose decisions filled (a market order decided on bar t's close fills at bar
t + 1's open). On top of the replay, the facts each docstring promises are asserted directly from the
fills: the pyramid never holds more than ``1 + max_adds`` units and adds only after a 2-ATR move; the
pairs trade opens and closes both legs on the same bar, sized by the hedge ratio, refitted every 20 bars;
every chandelier exit is at a close below the highest close since entry minus 3 ATR, or after 60 bars.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

import backforge as bf

from backforge.strategy.code import backtest, load_strategy_class
from backforge.strategy.compiler import load_data
from backforge.strategy.schema import load_portfolio

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "examples" / "code"


def _market(cls, path: Path):
    spec = {"name": cls.__name__, "universe": list(cls.universe), "data": dict(cls.data_spec),
            "strategies": [{"name": "data", "action": {"kind": "alert"}}]}
    return load_data(load_portfolio(spec), base=path.parent)


@lru_cache(maxsize=None)
def _run(name: str, record_refits: bool = False):
    path = CODE / f"{name}.py"
    cls = load_strategy_class(path)
    refits: list[tuple[int, float]] = []
    if record_refits:  # the same class, with its refit observed from outside
        def _refit(self, x, y, _original=cls._refit):
            _original(self, x, y)
            refits.append((self.bar, self.beta))

        cls = type(cls.__name__, (cls,), {"_refit": _refit})
    data = _market(cls, path)
    return cls, data, backtest(data, cls), refits


def _fills(result, asset: str | None = None):
    fills = result.fills if asset is None else result.fills.filter(result.fills["asset"] == asset)
    return fills.to_dict(as_series=False)


def _decision_bars(result, asset: str | None = None) -> list[tuple[int, float, float]]:
    """(decision bar, signed qty, position after) of every fill: the decision is the bar before the fill."""
    f = _fills(result, asset)
    return [(b - 1, q, p) for b, q, p in zip(f["bar"], f["qty"], f["position_after"])]


def _fills_at_next_open(result, data, column: int = 0, asset: str | None = None) -> None:
    f = _fills(result, asset)
    assert np.array_equal(np.array(f["price"]), data.open[np.array(f["bar"]), column])  # no slippage configured


def test_pyramid_trend_by_hand():
    cls, data, result, _ = _run("pyramid_trend")
    high, low, close = data.high[:, 0], data.low[:, 0], data.close[:, 0]
    high_n = pd.Series(high).rolling(cls.entry_window).max().to_numpy()
    low_n = pd.Series(low).rolling(cls.exit_window).min().to_numpy()
    atr = talib.ATR(high, low, close, 20)
    # the replay: a breakout above the previous 50-bar high enters, a close under the previous 20-bar low
    # exits, a close 2 ATR above the last add's close adds (at most 3 times)
    expected, holding, adds, last_add = [], False, 0, np.nan
    for t in range(1, data.n_bars - 1):  # a decision on the last bar has no bar to fill on
        if np.isnan(high_n[t - 1]) or np.isnan(atr[t]):
            continue
        if not holding:
            if close[t] > high_n[t - 1]:
                expected.append((t, "entry"))
                holding, adds, last_add = True, 0, close[t]
        elif close[t] < low_n[t - 1]:
            expected.append((t, "exit"))
            holding = False
        elif adds < cls.max_adds and close[t] >= last_add + cls.add_every_atr * atr[t]:
            expected.append((t, "add"))
            adds, last_add = adds + 1, close[t]
    got = _decision_bars(result)
    kinds, before = [], 0.0
    for _bar, qty, after in got:
        kinds.append("exit" if after == 0 else "entry" if before == 0 else "add")
        before = after
    assert [(b, k) for (b, _, _), k in zip(got, kinds)] == expected
    assert kinds.count("exit") >= 10 and kinds.count("add") >= 5
    # never more than 1 + max_adds units; each add after a move of at least 2 ATR since the last one
    units, last = 0, np.nan
    for (bar, qty, after), kind in zip(got, kinds):
        if kind == "exit":
            assert after == 0 and qty < 0
            assert close[bar] < low_n[bar - 1]  # the 20-bar low
            units = 0
            continue
        units += 1
        assert units <= 1 + cls.max_adds and qty > 0
        if kind == "add":
            assert close[bar] - last >= 2 * atr[bar]
        last = close[bar]
    _fills_at_next_open(result, data)


def test_pairs_hedge_by_hand():
    cls, data, result, refits = _run("pairs_hedge", record_refits=True)
    x_all, y_all = data.close[:, 0], data.close[:, 1]  # AAPL, MSFT
    lookback = cls.lookback
    # refitted every 20 bars from the first full window on, by least squares over the last 120 bars
    refit_bars = [b for b, _ in refits]
    assert refit_bars == list(range(lookback - 1, data.n_bars, cls.refit_every))
    for bar, beta in refits:
        slope = np.polyfit(x_all[bar - lookback + 1: bar + 1], y_all[bar - lookback + 1: bar + 1], 1)[0]
        assert np.isclose(beta, slope, rtol=1e-9)
    beta_at = np.full(data.n_bars, np.nan)
    for bar, beta in refits:
        beta_at[bar:] = beta
    # the replay of the z-score rule with those betas
    expected, side = [], 0
    for t in range(lookback - 1, data.n_bars - 1):
        beta = beta_at[t]
        if not np.isfinite(beta) or beta <= 0:
            continue
        window = slice(t - lookback + 1, t + 1)
        spread = y_all[window] - beta * x_all[window]
        z = (spread[-1] - spread.mean()) / spread.std()
        if side == 0 and abs(z) > cls.entry_z:
            side = -1 if z > 0 else 1
            expected.append((t, side, beta))
        elif side != 0 and z * side >= 0:
            expected.append((t, 0, beta))
            side = 0
    aapl, msft = _decision_bars(result, "AAPL"), _decision_bars(result, "MSFT")
    # both legs open and close together, on opposite sides
    assert [b for b, _, _ in aapl] == [b for b, _, _ in msft] == [b for b, _, _ in expected]
    assert len(expected) >= 10
    for (bar, side, beta), (_, qa, pa), (_, qm, pm) in zip(expected, aapl, msft):
        assert np.sign(qa) == -np.sign(qm)
        if side == 0:
            assert pa == pm == 0
            continue
        assert np.sign(pm) == side and np.sign(pa) == -side
        # the AAPL leg is beta-weighted: its value at the decision close ~ beta x MSFT leg's units x AAPL price
        ratio = abs(qa) / abs(qm)
        hedge_units = beta * (data.open[bar + 1, 1] / y_all[bar]) / (data.open[bar + 1, 0] / x_all[bar])
        assert abs(ratio - hedge_units) <= 0.02 * hedge_units + 2 / abs(qm)  # whole units at both ends
    _fills_at_next_open(result, data, 0, "AAPL")
    _fills_at_next_open(result, data, 1, "MSFT")


def test_chandelier_exit_by_hand():
    cls, data, result, _ = _run("chandelier_exit")
    high, low, close = data.high[:, 0], data.low[:, 0], data.close[:, 0]
    average = pd.Series(close).rolling(cls.trend).mean().to_numpy()
    atr = talib.ATR(high, low, close, 22)
    m = cls.momentum
    expected, holding, highest, entry = [], False, np.nan, -1
    for t in range(m + 1, data.n_bars - 1):
        if np.isnan(average[t]) or np.isnan(atr[t]):
            continue
        if not holding:
            if close[t] > average[t] and close[t] > close[t - m] >= close[t - m - 1]:
                expected.append((t, "entry"))
                holding, highest, entry = True, close[t], t
            continue
        highest = max(highest, close[t])
        if close[t] < highest - cls.atr_multiple * atr[t] or t - entry >= cls.max_bars:
            expected.append((t, "exit"))
            holding = False
    got = _decision_bars(result)
    assert [(b, "exit" if after == 0 else "entry") for b, _, after in got] == expected
    exits = [(b, e) for (b, _), (e, _) in zip(expected[1::2], expected[0::2])]
    assert len(exits) >= 10
    by_stop = by_time = 0
    for bar, entry_bar in exits:  # every exit: under highest-since-entry - 3 ATR, or after 60 bars
        stop = close[entry_bar: bar + 1].max() - 3 * atr[bar]
        hit = close[bar] < stop
        assert hit or bar - entry_bar >= 60
        by_stop, by_time = by_stop + hit, by_time + (not hit)
        for t in range(entry_bar + 1, bar):  # and not one bar earlier
            assert close[t] >= close[entry_bar: t + 1].max() - 3 * atr[t] and t - entry_bar < 60
    assert by_stop and by_time  # both exits happen on this data
    _fills_at_next_open(result, data)


@pytest.mark.slow
def test_backforge_run_a_code_example_in_a_fresh_interpreter(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "backforge.cli", "run", str(CODE / "chandelier_exit.py"),
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "ChandelierExit" in done.stdout and "saved run" in done.stdout
    (folder,) = list(tmp_path.iterdir())
    _, _, result, _ = _run("chandelier_exit")  # the saved run is the in-process run
    saved = bf.load_result(folder)
    assert saved.summary()["trades"] == result.summary()["trades"]
    assert saved.fills.select("bar", "qty", "price").equals(result.fills.select("bar", "qty", "price"))
