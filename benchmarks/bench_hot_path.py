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
1-min (98,280 bars), 7 assets × 10 y × 1-min (6,879,600 bars; ``--quick``: 7 × 1 y). Each figure is
the median of ``--repeats`` warm runs. The machine may be shared: compare the ratios of one run.

Usage::

    python benchmarks/bench_hot_path.py            # all scenarios
    python benchmarks/bench_hot_path.py --quick    # 7 × 1 y instead of 7 × 10 y
    python benchmarks/bench_hot_path.py --no-vectorbt
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


def median_seconds(function: Callable[[], Any], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def scenario(name: str, data, repeats: int, peers: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": name, "bars": data.n_bars * data.n_assets}
    equity, trades = backforge_run(data)
    row["trades"] = trades
    row["backforge"] = median_seconds(lambda: backforge_run(data), repeats)
    bare_equity, bare_trades = bare_loop_nb(np.ascontiguousarray(data.open), np.ascontiguousarray(data.close),
                                            FAST, SLOW, CASH)
    assert bare_trades == trades, (bare_trades, trades)
    assert abs(bare_equity - equity) <= 1e-9 * abs(equity), (bare_equity, equity)
    row["bare loop"] = median_seconds(lambda: bare_loop_nb(data.open, data.close, FAST, SLOW, CASH), repeats)
    if peers:
        import pandas as pd

        index = pd.to_datetime(data.timestamps)
        frames = tuple(pd.DataFrame(x, index=index, columns=list(data.assets)) for x in (data.close, data.open))
        vbt_equity, vbt_trades = vectorbt_run(data, frames)
        assert vbt_trades == trades, (vbt_trades, trades)
        assert abs(vbt_equity - equity) <= 1e-6 * abs(equity), (vbt_equity, equity)
        row["vectorbt"] = median_seconds(lambda: vectorbt_run(data, frames), repeats)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 assets × 1 y instead of × 10 y")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-vectorbt", action="store_true")
    args = parser.parse_args(argv)
    import backforge as bf

    rows = []
    folder = Path(os.environ.get("BACKFORGE_SHARED_DATA", REPO / ".." / "shared" / "data"))
    if (folder / "GOOG.csv").is_file():
        rows.append(scenario("GOOG daily", bf.data.read_csv(folder / "GOOG.csv"), args.repeats * 4,
                             not args.no_vectorbt))
    rows.append(scenario("1 × 1 y × 1-min", bf.synth(n_assets=1, years=1, bar="1min", seed=7), args.repeats,
                         not args.no_vectorbt))
    years = 1 if args.quick else 10
    rows.append(scenario(f"7 × {years} y × 1-min", bf.synth(n_assets=7, years=years, bar="1min", seed=7),
                         max(1, args.repeats // 2), not args.no_vectorbt))
    print(f"{'scenario':<22}{'bars':>12}{'trades':>9}{'backforge':>12}{'vectorbt':>12}{'bare loop':>12}")
    for row in rows:
        vbt = f"{row['vectorbt'] * 1e3:10.2f}ms" if "vectorbt" in row else f"{'-':>12}"
        print(f"{row['scenario']:<22}{row['bars']:>12,}{row['trades']:>9,}{row['backforge'] * 1e3:10.2f}ms{vbt}"
              f"{row['bare loop'] * 1e3:10.2f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
