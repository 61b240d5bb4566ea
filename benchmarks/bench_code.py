"""Benchmark: strategies as code (issue 19).

Targets:

(a) the Python :class:`backforge.Strategy` at least 3x faster than backtesting.py on the same strategy and
    data — backtesting.py's own ``SmaCross`` (SMA 10/30, reversing) on its bundled GOOG daily bars, both
    paying Python per bar (the port of ``tests/strategy/test_code_oracle.py``, which checks that both give
    the same trades and equity);
(b) the compiled variant (``@compiled``, a numba ``next_nb``) within 2x of ``from_signals`` on large
    synthetic minute data, the same SMA-cross decisions (indicators precomputed for both, not timed).

Each figure is the median of ``--repeats`` warm runs after one warm-up run (numba's cache loaded, the
compiled variant's per-callback loop compiled).

Usage::

    python benchmarks/bench_code.py              # (a) and (b) on 7 assets x 1 year of minutes
    python benchmarks/bench_code.py --years 10   # (b) on the full 6.88 M-bar size
    python benchmarks/bench_code.py --write      # also record the figures in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section  # noqa: E402

import backforge as bf  # noqa: E402
from backforge.data.market import MarketData  # noqa: E402
from backforge.strategy.code import Strategy, backtest, crossover  # noqa: E402
from backforge.strategy.compiled import backtest_compiled, buy_nb, close_nb, compiled, position_nb  # noqa: E402
from backforge.strategy.indicators import sma  # noqa: E402

FULL = 1.0 - sys.float_info.epsilon


class SmaCross(Strategy):
    fast, slow = 10, 30

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


PRECOMPUTED: dict = {}  # (fast, slow) -> the two SMAs: indicators are computed before timing, for both engines


@compiled
class SmaCrossNb:
    fast, slow = 60, 240

    def init(self, data):
        key = (self.fast, self.slow)
        if key not in PRECOMPUTED:
            PRECOMPUTED[key] = sma(data.close, data.timestamps, self.fast), sma(data.close, data.timestamps, self.slow)
        return PRECOMPUTED[key]

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        f, s = user
        if t == 0:
            return
        for j in range(f.shape[1]):
            if f[t - 1, j] - s[t - 1, j] <= 0.0 < f[t, j] - s[t, j] and position_nb(state, j) <= 0.0:
                buy_nb(state, t, ts, j, 0.1)
            elif s[t - 1, j] - f[t - 1, j] <= 0.0 < s[t, j] - f[t, j] and position_nb(state, j) != 0.0:
                close_nb(state, t, ts, j)


def median_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_python(repeats: int) -> dict:
    from backtesting import Backtest
    from backtesting.test import GOOG
    from backtesting.test._test import SmaCross as BtSmaCross

    df = GOOG.copy()
    df.index.name = None
    data = MarketData.from_frames({"GOOG": df})

    def oracle():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Backtest(GOOG, BtSmaCross, cash=10_000, commission=0.002, trade_on_close=False).run()

    ours = median_seconds(lambda: backtest(data, SmaCross, cash=10_000, fee_rate=0.002, lot_size=1), repeats)
    theirs = median_seconds(oracle, repeats)
    return {"bars": data.n_bars, "backforge_s": ours, "backtesting_s": theirs, "speedup": theirs / ours}


def bench_compiled(years: float, repeats: int) -> dict:
    data = bf.synth(n_assets=7, years=years, bar="1m", seed=7)
    fast, slow = sma(data.close, data.timestamps, 60), sma(data.close, data.timestamps, 240)
    PRECOMPUTED.clear()
    PRECOMPUTED[(60, 240)] = fast, slow
    diff = fast - slow
    prev = np.vstack([np.full((1, data.n_assets), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (-prev <= 0) & (-diff > 0)
    signals = median_seconds(lambda: bf.from_signals(data, up, down, size=0.1), repeats)
    ours = median_seconds(lambda: backtest_compiled(data, SmaCrossNb), repeats)
    a, b = bf.from_signals(data, up, down, size=0.1), backtest_compiled(data, SmaCrossNb)
    same = np.array_equal(np.asarray(a.equity_values), np.asarray(b.equity_values))
    return {"bars": data.n_bars * data.n_assets, "rows": data.n_bars, "from_signals_s": signals,
            "compiled_s": ours, "ratio": ours / signals, "identical": same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=1.0, help="years of 1-minute bars for (b) (10 = 6.88 M bars)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    python = bench_python(args.repeats)
    comp = bench_compiled(args.years, max(3, args.repeats // 2))
    load = info.get("load", "?")
    lines = [
        "<!-- code:start -->",
        "## Strategies as code (`benchmarks/bench_code.py`)", "",
        f"Machine: {info}", "",
        f"Measured under load (load average {load}): medians of warm runs, each peer in the same run.", "",
        "| scenario | backforge | peer | ratio | target |", "|---|---|---|---|---|",
        f"| (a) SmaCross, GOOG daily ({python['bars']:,} bars): Python `Strategy` vs backtesting.py | "
        f"{python['backforge_s'] * 1e3:.1f} ms | {python['backtesting_s'] * 1e3:.1f} ms | "
        f"{python['speedup']:.1f}x faster | >= 3x |",
        f"| (b) SMA cross, 7 assets x {comp['rows']:,} minutes ({comp['bars']:,} bars): compiled vs from_signals | "
        f"{comp['compiled_s'] * 1e3:.0f} ms | {comp['from_signals_s'] * 1e3:.0f} ms | {comp['ratio']:.2f}x "
        f"(identical equity: {comp['identical']}) | <= 2x |", "",
        "<!-- code:end -->",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        print(f"wrote {write_section('code', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
