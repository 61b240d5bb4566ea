"""Benchmark (issue 17): the engine as a user meets it — close prices to a result — on a strategy that trades
a lot, against vectorbt and a bare compiled loop of the same rules, in the same run, with identical trades
and final equity asserted.

The strategy: long-only SMA(10)/SMA(20) crossover on the close (``up[t] = fast[t] > slow[t] and
fast[t-1] <= slow[t-1]``, ``down`` symmetric), market orders at the next bar's open, whole shares with
all of the asset's cash, no costs; with several assets each asset is its own account with
``CASH / n_assets`` (backforge ``cash_sharing=False``, vectorbt ``cash_sharing=False`` with per-column
cash). Timed end to end: both SMAs, the crossovers, the backtest, reading final equity and the trade
count. Minute data is synthetic (``backforge.synth``, geometric Brownian motion).

Scenarios: GOOG daily (2,148 bars, from the shared data folder; skipped when absent), 1 asset × 1 y ×
1-min (98,280 bars), 7 assets × 10 y × 1-min (6,879,600 bars; ``--quick``: 7 × 1 y), and the
strategy-file path: ``run_compiled`` of ``bench_strategy.py``'s 3-indicator minute strategy on the same
7-asset data. Each figure is the median of ``--repeats`` warm runs (vectorbt: warm, after a first call
that compiles it); the three engines of a scenario are timed in turns, so load changes hit them alike.
The peak RSS of the 7-asset end-to-end run is measured in a fresh process (``--no-memory`` skips it):
the peak above the process's RSS after imports and warm-up, against the bytes of the price arrays.
The machine may be shared: compare the ratios of one run.

Usage::

    python benchmarks/bench_hot_path.py            # all scenarios, 7 × 10 y
    python benchmarks/bench_hot_path.py --quick    # 7 × 1 y, 3 repeats: a few minutes under load
    python benchmarks/bench_hot_path.py --no-vectorbt
    python benchmarks/bench_hot_path.py --write    # also record the table in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numba import njit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CASH = 10_000.0
FAST, SLOW = 10, 20


# ------------------------------------------------------------------------------------ bare loop

@njit(cache=True)
def sma_nb(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling mean over ``window`` bars along axis 0 (NaN before it is full)."""
    n_bars, n_assets = close.shape
    out = np.empty((n_bars, n_assets))
    for a in range(n_assets):
        total = 0.0
        for t in range(n_bars):
            total += close[t, a]
            if t >= window:
                total -= close[t - window, a]
            out[t, a] = total / window if t >= window - 1 else np.nan
    return out


@njit(cache=True)
def bare_loop_nb(open_: np.ndarray, close: np.ndarray, fast_window: int, slow_window: int, cash: float):
    """The strategy in one loop per asset: crossovers of two SMAs, next-open market orders, whole shares
    with all of the asset's cash (``floor(cash / open + 1e-9)``, the engine's lot rounding). Returns the
    final equity summed over assets and the number of closed trades."""
    fast = sma_nb(close, fast_window)
    slow = sma_nb(close, slow_window)
    n_bars, n_assets = close.shape
    total_equity = 0.0
    trades = 0
    for a in range(n_assets):
        money = cash
        position = 0.0
        pending = 0
        for t in range(n_bars):
            price = open_[t, a]
            if pending == 1:
                qty = np.floor(money / price + 1e-9)
                if qty > 0.0:
                    money -= qty * price + 0.0
                    position = qty
            elif pending == -1:
                money -= -position * price + 0.0
                position = 0.0
                trades += 1
            pending = 0
            if t > 0:
                up = fast[t, a] > slow[t, a] and fast[t - 1, a] < slow[t - 1, a]
                down = fast[t, a] < slow[t, a] and fast[t - 1, a] > slow[t - 1, a]
                if up and position == 0.0:
                    pending = 1
                elif down and position > 0.0:
                    pending = -1
        total_equity += money + position * close[n_bars - 1, a]
    return total_equity, trades


# ------------------------------------------------------------------------------------ engines

def crossovers(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    up = np.zeros(fast.shape, dtype=bool)
    down = np.zeros(fast.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        np.logical_and(fast[:-1] < slow[:-1], fast[1:] > slow[1:], out=up[1:])
        np.logical_and(fast[:-1] > slow[:-1], fast[1:] < slow[1:], out=down[1:])
    return up, down


def backforge_run(data):
    import backforge as bf
    from backforge.strategy.indicators import sma

    fast = sma(data.close, data.timestamps, FAST)
    slow = sma(data.close, data.timestamps, SLOW)
    up, down = crossovers(fast, slow)
    result = bf.from_signals(data, up, down, cash=CASH * data.n_assets, cash_sharing=data.n_assets == 1)
    return float(result.equity_values[-1]), int(result.trade_records.shape[0])


def vectorbt_run(data, frames):
    import vectorbt as vbt

    close, open_ = frames
    fast = close.rolling(FAST).mean()
    slow = close.rolling(SLOW).mean()
    up = (fast > slow) & (fast.shift(1) < slow.shift(1))
    down = (fast < slow) & (fast.shift(1) > slow.shift(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        portfolio = vbt.Portfolio.from_signals(
            close, up.shift(1, fill_value=False), down.shift(1, fill_value=False), price=open_, size=np.inf,
            size_granularity=1, init_cash=CASH, cash_sharing=False, freq="1min")
    return float(portfolio.final_value().sum()), int(portfolio.trades.closed.count().sum())


def interleaved_medians(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` rounds, the functions timed in turn in every
    round (each was called once before, warm)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def scenario(name: str, data, repeats: int, peers: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": name, "bars": data.n_bars * data.n_assets}
    equity, trades = backforge_run(data)
    row["trades"] = trades
    row["equity"] = equity
    open_, close = np.ascontiguousarray(data.open), np.ascontiguousarray(data.close)
    bare_equity, bare_trades = bare_loop_nb(open_, close, FAST, SLOW, CASH)
    assert bare_trades == trades, (bare_trades, trades)
    assert abs(bare_equity - equity) <= 1e-9 * abs(equity), (bare_equity, equity)
    functions: dict[str, Callable[[], Any]] = {
        "backforge": lambda: backforge_run(data), "bare loop": lambda: bare_loop_nb(open_, close, FAST, SLOW, CASH)}
    if peers:
        import pandas as pd

        index = pd.to_datetime(data.timestamps)
        frames = tuple(pd.DataFrame(x, index=index, columns=list(data.assets)) for x in (data.close, data.open))
        vbt_equity, vbt_trades = vectorbt_run(data, frames)  # the first call compiles vectorbt: not timed
        assert vbt_trades == trades, (vbt_trades, trades)
        assert abs(vbt_equity - equity) <= 1e-6 * abs(equity), (vbt_equity, equity)
        functions["vectorbt"] = lambda: vectorbt_run(data, frames)
    row.update(interleaved_medians(functions, repeats))
    return row


def strategy_file_row(name: str, data, repeats: int) -> dict[str, Any]:
    """``run_compiled`` (records, the Result and its signal events) of bench_strategy's 3-indicator
    minute strategy on ``data``; compiling is done once, outside the timing."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_strategy import MINUTE_STRATEGY

    from backforge.strategy.compiler import compile_portfolio, run_compiled
    from backforge.strategy.schema import load_portfolio

    compiled = compile_portfolio(load_portfolio(dict(MINUTE_STRATEGY, universe=list(data.assets))), data)
    result = run_compiled(compiled)
    seconds = interleaved_medians({"run": lambda: run_compiled(compiled)}, repeats)["run"]
    return {"scenario": name, "bars": data.n_bars * data.n_assets,
            "trades": int(result.trade_records.shape[0]), "run_compiled": seconds}


def fixed_cost_lines(data, repeats: int) -> list[str]:
    """``from_signals`` alone on ``data`` (signals computed beforehand), against the bare loop's whole run;
    and SMA/EMA over 1,000,000 bars against a copy of the same array (memory speed) and the bare SMA."""
    import backforge as bf
    from backforge.strategy.indicators import ema, sma

    fast = sma(data.close, data.timestamps, FAST)
    slow = sma(data.close, data.timestamps, SLOW)
    up, down = crossovers(fast, slow)
    bf.from_signals(data, up, down, cash=CASH)
    rng = np.random.default_rng(3)
    values = 100.0 + np.cumsum(rng.normal(size=(1_000_000, 1)), axis=0)
    timestamps = np.arange(values.shape[0], dtype=np.int64) * 60_000_000_000
    out = np.empty_like(values)
    sma(values, timestamps, 20), ema(values, timestamps, 20), sma_nb(values, 20)
    # alone, not in turns with the 1M-bar runs below (they would evict its working set from the caches)
    t = interleaved_medians({"from_signals": lambda: bf.from_signals(data, up, down, cash=CASH)}, repeats)
    t.update(interleaved_medians({
        "sma": lambda: sma(values, timestamps, 20), "ema": lambda: ema(values, timestamps, 20),
        "bare sma": lambda: sma_nb(values, 20), "copy": lambda: np.copyto(out, values)}, max(repeats // 4, 5)))
    return [f"`from_signals` alone on GOOG daily (signals ready, result tables lazy): {t['from_signals'] * 1e3:.4f} ms "
            f"(target < 0.15 ms: {'met' if t['from_signals'] < 0.15e-3 else '**not met**'}).",
            f"SMA(20) / EMA(20) over 1,000,000 bars: {t['sma'] * 1e3:.2f} / {t['ema'] * 1e3:.2f} ms; a bare compiled "
            f"SMA (plain running sum, not compensated) {t['bare sma'] * 1e3:.2f} ms; copying the 8 MB array "
            f"{t['copy'] * 1e3:.2f} ms (memory speed): SMA {t['sma'] / t['copy']:.1f}×, EMA {t['ema'] / t['copy']:.1f}× a copy."]


MEMORY_CHILD = """
import sys, numpy as np
sys.path.insert(0, {bench!r}); sys.path.insert(0, {src!r})
import backforge as bf
from bench_hot_path import backforge_run
backforge_run(bf.synth(n_assets=7, years=0.05, bar="1min", seed=7))  # loads every kernel
rss = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
baseline = rss("VmRSS:")
data = bf.synth(n_assets=7, years={years}, bar="1min", seed=7)
prices = sum(getattr(data, f).nbytes for f in ("open", "high", "low", "close", "volume"))
with open("/proc/self/clear_refs", "w") as f:  # reset the peak to the current RSS (Linux)
    f.write("5")
equity, trades = backforge_run(data)
print(baseline, rss("VmHWM:"), prices, trades)
"""


def peak_memory(years: float) -> dict[str, float] | None:
    """Peak RSS of one end-to-end 7-asset run in a fresh process (Linux), above the RSS after imports
    and warm-up; data generation is excluded (the peak is reset once the data exists)."""
    import subprocess

    if not Path("/proc/self/clear_refs").exists():
        return None
    code = MEMORY_CHILD.format(bench=str(REPO / "benchmarks"), src=str(REPO / "src"), years=years)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    baseline, peak, prices, trades = (int(x) for x in out[-4:])
    return {"baseline_mib": baseline / 2**20, "peak_mib": peak / 2**20, "prices_mib": prices / 2**20,
            "above_mib": (peak - baseline) / 2**20, "ratio": (peak - baseline) / prices, "trades": trades}


TARGETS_MS = {"GOOG daily": 0.3, "1 × 1 y × 1-min": 3.0, "7 × 10 y × 1-min": 150.0, "run_compiled, 7 × 10 y × 1-min": 300.0}


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| scenario | bars | trades | backforge | vectorbt warm | bare loop | vs vectorbt | vs bare loop | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ms = lambda x: f"{x * 1e3:.2f} ms" if x is not None else "–"  # noqa: E731
    for row in rows:
        ours = row.get("backforge", row.get("run_compiled"))
        vbt, bare = row.get("vectorbt"), row.get("bare loop")
        target = TARGETS_MS.get(row["scenario"])
        met = "" if target is None else (f"≤ {target:g} ms " + ("met" if ours * 1e3 <= target else "**not met**"))
        lines.append(f"| {row['scenario']} | {row['bars']:,} | {row['trades']:,} | {ms(ours)} | {ms(vbt)} | {ms(bare)} | "
                     f"{f'{vbt / ours:.1f}×' if vbt else '–'} | {f'{ours / bare:.1f}×' if bare else '–'} | {met} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 assets × 1 y instead of × 10 y, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="warm runs per figure (default 5; --quick 3)")
    parser.add_argument("--no-vectorbt", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS run")
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    started = time.perf_counter()
    import backforge as bf
    from _common import load_average, machine, write_section

    load_before = load_average()
    rows = []
    folder = Path(os.environ.get("BACKFORGE_SHARED_DATA", REPO / ".." / "shared" / "data"))
    extra: list[str] = []
    if (folder / "GOOG.csv").is_file():
        goog = bf.data.read_csv(folder / "GOOG.csv")
        rows.append(scenario("GOOG daily", goog, repeats * 20, not args.no_vectorbt))
        extra = fixed_cost_lines(goog, repeats * 20)
    rows.append(scenario("1 × 1 y × 1-min", bf.synth(n_assets=1, years=1, bar="1min", seed=7), repeats * 4,
                         not args.no_vectorbt))
    years = 1 if args.quick else 10
    minutes = bf.synth(n_assets=7, years=years, bar="1min", seed=7)
    rows.append(scenario(f"7 × {years} y × 1-min", minutes, min(repeats, 3), not args.no_vectorbt))
    rows.append(strategy_file_row(f"run_compiled, 7 × {years} y × 1-min", minutes, min(repeats, 3)))
    del minutes
    memory = None if args.no_memory else peak_memory(years)
    lines = table(rows) + [""] + extra
    if memory:
        lines += ["", f"Peak RSS of the 7 × {years} y end-to-end run (fresh process): {memory['peak_mib']:.0f} MiB, "
                  f"{memory['above_mib']:.0f} MiB above the {memory['baseline_mib']:.0f} MiB after imports and warm-up, "
                  f"for {memory['prices_mib']:.0f} MiB of price arrays: {memory['ratio']:.2f}× (target ≤ 1.5×: "
                  + ("met" if memory["ratio"] <= 1.5 else "**not met**") + ")."]
    load = f"load average {load_before} before, {load_average()} after"
    print("\n".join(lines))
    print(load, f"; the whole run took {time.perf_counter() - started:.0f} s")
    if args.write:
        info = machine()
        section = "\n".join([
            "<!-- hot:start -->", "## Engine hot path (issue 17): `benchmarks/bench_hot_path.py`", "",
            f"`python benchmarks/bench_hot_path.py{' --quick' if args.quick else ''}` — {info['cpu']}, {info['cores']}, "
            f"{info['date']}; measured under load ({load}). Long-only SMA(10)/SMA(20) cross, next-open fills, whole "
            "shares, each asset its own account, end to end from close prices (both SMAs, the crossovers, the "
            "backtest, final equity and trade count); identical trades and final equity asserted across engines. "
            f"Medians of warm runs, engines timed in turns.", "", *lines, "<!-- hot:end -->"])
        print(f"wrote {write_section('hot', section)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
