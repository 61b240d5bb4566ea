"""Benchmark: strategies as code (issue 19).

Targets:

(a) the Python :class:`backforge.Strategy` at least 3x faster than backtesting.py on the same strategy and
    data — backtesting.py's own ``SmaCross`` (SMA 10/30, reversing) on its bundled GOOG daily bars, both
    paying Python per bar (the port of ``tests/strategy/test_code_oracle.py``, which checks that both give
    the same trades and equity);
(b) the compiled variant (``@compiled``, a numba ``next_nb``) within 2x of ``from_signals`` on large
    synthetic minute data, the same SMA-cross decisions (indicators precomputed for both, not timed);
(c) (no target in the issue; the brief asks for constant work per bar) a paper session's step of a class
    with four indicators (SMA 10/30, ATR 14, RSI 14) after a long warm-up: microseconds per bar with the
    indicators streamed (``backforge.strategy.streaming``, when installed) and recomputed on the bars so far,
    at two history lengths, best of three passes — a streamed step does not grow with the history, a
    recomputed one does.

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
from backforge.strategy.indicators import atr, rsi, sma  # noqa: E402

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


class PaperCross(Strategy):
    fast, slow = 10, 30

    def init(self):
        d = self.data
        self.f = self.I(sma, d.close, d.timestamps, self.fast)
        self.s = self.I(sma, d.close, d.timestamps, self.slow)
        self.atr = self.I(atr, d.high, d.low, d.close, d.timestamps, 14)
        self.rsi = self.I(rsi, d.close, d.timestamps, 14)

    def next(self):
        if crossover(self.f, self.s) and not self.position:
            self.buy(0.5, stop_loss=0.05)
        elif crossover(self.s, self.f) and self.position:
            self.close()


def bench_paper(histories: tuple[int, ...], bars: int) -> dict:
    """Microseconds per CodeStep.step over ``bars`` bars after ``history`` warm-up bars."""
    import importlib.util

    from backforge.live import code_step
    from backforge.live.broker import BarEvent

    streaming = importlib.util.find_spec("backforge.strategy.streaming") is not None
    build = code_step._IndicatorStream.build
    out = {"streaming": streaming, "bars": bars, "rows": []}
    for history in histories:
        data = bf.synth(n_assets=1, years=(history + bars) / 1400, bar="1h", seed=3)
        assert data.n_bars >= history + bars, (data.n_bars, history + bars)
        events = [BarEvent(int(data.timestamps[i]), data.open[i], data.high[i], data.low[i], data.close[i],
                           data.volume[i]) for i in range(history, history + bars)]
        row = {"history": history}
        for mode in (("streamed", "recomputed") if streaming else ("recomputed",)):
            code_step._IndicatorStream.build = build if mode == "streamed" else (lambda *a, **k: None)
            try:
                times = []
                for _ in range(4):  # the first pass compiles / loads the kernels; best of the other three
                    portfolio = code_step.CodePortfolio(PaperCross, tuple(data.assets))
                    step = code_step.CodeStep(portfolio, data.rows(0, history))
                    t0 = time.perf_counter()
                    for event in events:
                        step.step(event)
                    times.append((time.perf_counter() - t0) / bars * 1e6)
                row[mode] = min(times[1:])
                row[mode + "_streams"] = sum(step.streamed)
            finally:
                code_step._IndicatorStream.build = build
        out["rows"].append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=1.0, help="years of 1-minute bars for (b) (10 = 6.88 M bars)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    python = bench_python(args.repeats)
    comp = bench_compiled(args.years, max(3, args.repeats // 2))
    paper = bench_paper((2_000, 20_000), 1_000)
    load = info.get("load", "?")
    paper_rows = []
    for row in paper["rows"]:
        streamed = f"{row['streamed']:.0f} µs/bar ({row['streamed_streams']} of 4 streamed)" if "streamed" in row \
            else "– (backforge.strategy.streaming not installed)"
        paper_rows.append(f"| (c) paper step of a 4-indicator class after {row['history']:,} warm-up bars "
                          f"({paper['bars']} bars stepped): streamed vs recomputed | {streamed} | "
                          f"{row['recomputed']:.0f} µs/bar | – | flat in history |")
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
        f"(identical equity: {comp['identical']}) | <= 2x |", *paper_rows, "",
        "<!-- code:end -->",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        print(f"wrote {write_section('code', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
