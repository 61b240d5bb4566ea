"""Paper runner latency: from a bar arriving to the orders handed to the broker (the runner's whole per-bar path:
drop/duplicate check, paper venue clock, broker drain, the strategy step, reconciliation, store-before-send of
each order with synchronous=FULL, submit), p50/p99 over N bars, for the SMA-cross example and a 100-asset
monthly rebalance; and the resident memory over a long replay.

    python benchmarks/bench_live.py [--bars 10000] [--memory-bars 1000000] [--write]

The strategy step re-evaluates data-only indicators over the bars received so far (exact, O(bars) per bar; see
backforge.live.step.STREAMING_KINDS), so latency grows with the length of the session.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backforge.data.synth import gbm
from backforge.live import PaperBroker, PaperRunner, ReplayFeed
from backforge.live.runner import LiveConfig
from backforge.strategy.compiler import sim_config_of
from backforge.strategy.schema import load_portfolio

REPO = Path(__file__).resolve().parents[1]


def sma_cross():
    spec = load_portfolio(REPO / "examples" / "sma_cross.yaml").model_dump(mode="json")
    spec["data"] = None
    return load_portfolio({k: v for k, v in spec.items() if v is not None})


def rebalance_100():
    assets = [f"S{i:03d}" for i in range(100)]
    return load_portfolio({"name": "rebalance-100", "universe": assets, "cash": 1_000_000,
                           "costs": {"fee_rate": 0.0005},
                           "strategies": [{"name": "monthly", "schedule": "month_start",
                                           "action": {"rebalance": {"weights": "equal"}}}]})


def measure(portfolio, n_bars: int, warmup: int = 60) -> dict:
    assets = tuple(portfolio.universe)
    data = gbm(len(assets), (n_bars + warmup) / 252 + 0.1, seed=3, assets=assets)
    data = data.rows(0, n_bars + warmup)
    feed = ReplayFeed(data, start=warmup)
    broker = PaperBroker(assets, config=sim_config_of(portfolio))
    latencies = np.zeros(n_bars)
    with tempfile.TemporaryDirectory() as folder:
        runner = PaperRunner(portfolio, feed, broker, folder, reference=data,
                             config=LiveConfig(log_bars=False, status_every_s=10.0))
        i = 0
        started = time.perf_counter()
        while (bar := feed.next_bar()) is not None:
            runner.on_bar(bar)
            latencies[i] = runner.last_latency_ns / 1e3
            i += 1
        wall = time.perf_counter() - started
        orders = len(runner.store.orders())
        runner.close()
    return {"bars": i, "p50_us": float(np.percentile(latencies[:i], 50)), "p99_us": float(np.percentile(latencies[:i], 99)),
            "max_us": float(latencies[:i].max()), "orders": orders, "wall_s": wall,
            "first_1000_p50_us": float(np.percentile(latencies[: min(i, 1000)], 50)),
            "last_1000_p50_us": float(np.percentile(latencies[max(0, i - 1000): i], 50))}


def memory(n_bars: int) -> dict:
    """Resident memory (max RSS) before and after a long alert-only replay (no indicators)."""
    portfolio = load_portfolio({"name": "mem", "universe": ["AAA"], "strategies": [
        {"name": "a", "schedule": {"every_n_bars": 1000}, "action": {"kind": "alert"}}]})
    data = gbm(1, n_bars / (252 * 390) + 0.01, bar="1min", seed=1, assets=("AAA",)).rows(0, n_bars + 10)
    feed = ReplayFeed(data, start=10)
    rss = []
    with tempfile.TemporaryDirectory() as folder:
        runner = PaperRunner(portfolio, feed, PaperBroker(("AAA",)), folder, reference=data,
                             config=LiveConfig(log_bars=False, status_every_s=60.0, snapshot_every=10_000))
        step = max(n_bars // 10, 1)
        i = 0
        while (bar := feed.next_bar()) is not None:
            runner.on_bar(bar)
            i += 1
            if i % step == 0:
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        runner.close()
    return {"bars": i, "max_rss_mb_by_tenth": [round(x, 1) for x in rss]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--memory-bars", type=int, default=1_000_000)
    args = parser.parse_args()
    for name, make in (("sma_cross", sma_cross), ("rebalance_100", rebalance_100)):
        r = measure(make(), args.bars)
        print(f"{name}: {r['bars']} bars, p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, max {r['max_us']:.0f} us, "
              f"{r['orders']} orders, {r['wall_s']:.1f} s; p50 first 1000 bars {r['first_1000_p50_us']:.0f} us, "
              f"last 1000 {r['last_1000_p50_us']:.0f} us", flush=True)
    if args.memory_bars:
        m = memory(args.memory_bars)
        print(f"memory: {m['bars']} bars, max RSS by tenth (MB): {m['max_rss_mb_by_tenth']}", flush=True)


if __name__ == "__main__":
    main()
