"""Paper runner latency: from a bar arriving to the orders handed to the broker (the runner's whole per-bar path up
to the last submit: drop/duplicate check, paper venue clock, broker drain, the strategy step with its streaming
indicators, reconciliation, the order intents committed to the session store before the send, submit; the stamp is
taken when the last send returns, and the bookkeeping of the answers follows it), p50/p99
over N bars, for the SMA-cross example and a 100-asset monthly rebalance — with the peers measured in the same run:
the strategy step alone (the compiled step, no store, no broker) and `backforge run` on the same bars (amortized per
bar); and the resident memory over a long replay (1,000,000 one-minute bars, sampled every tenth).

    python benchmarks/bench_live.py [--bars 10000] [--memory-bars 1000000] [--snapshot-every 100] [--write]

The runner stores an engine snapshot every ``--snapshot-every`` bars after the latency is stamped; a snapshot holds
the engine's order book, so its cost grows with the orders of the session (the reason the default here is not 1).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_average, machine, write_section

from backforge.data.synth import gbm
from backforge.live import PaperBroker, PaperRunner, ReplayFeed
from backforge.live.runner import LiveConfig
from backforge.live.step import StrategyStep, bar_event
from backforge.strategy.compiler import compile_portfolio, run_compiled
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


def _data(portfolio, n_bars: int, warmup: int):
    assets = tuple(portfolio.universe)
    return gbm(len(assets), (n_bars + warmup) / 252 + 0.1, seed=3, assets=assets).rows(0, n_bars + warmup)


def measure(portfolio, n_bars: int, snapshot_every: int, warmup: int = 60) -> dict:
    data = _data(portfolio, n_bars, warmup)
    feed = ReplayFeed(data, start=warmup)
    broker = PaperBroker.for_portfolio(portfolio, feed.symbols)
    latencies = np.zeros(n_bars)
    with tempfile.TemporaryDirectory() as folder:
        runner = PaperRunner(portfolio, feed, broker, folder, reference=data,
                             config=LiveConfig(log_bars=False, status_every_s=10.0, snapshot_every=snapshot_every))
        i = 0
        started = time.perf_counter()
        while (bar := feed.next_bar()) is not None:
            runner.on_bar(bar)
            latencies[i] = runner.last_latency_ns / 1e3
            i += 1
        wall = time.perf_counter() - started
        orders = len(runner.store.orders())
        runner.close()
    lat = latencies[:i]
    return {"bars": i, "p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99)),
            "max_us": float(lat.max()), "orders": orders, "wall_s": wall,
            "first_1000_p50_us": float(np.percentile(lat[: min(i, 1000)], 50)),
            "last_1000_p50_us": float(np.percentile(lat[max(0, i - 1000):], 50))}


def measure_step(portfolio, n_bars: int, warmup: int = 60) -> dict:
    """Peer: the strategy step alone (streaming indicators + the compiled step), per bar."""
    data = _data(portfolio, n_bars, warmup)
    step = StrategyStep(portfolio, data.rows(0, warmup), reference=data)
    bars = [bar_event(data, i) for i in range(warmup, data.n_bars)]
    stamps = [int(data.timestamps[i + 1]) if i + 1 < data.n_bars else None for i in range(warmup, data.n_bars)]
    lat = np.zeros(len(bars))
    for i, (bar, nxt) in enumerate(zip(bars, stamps)):
        t0 = time.perf_counter_ns()
        step.step(bar, next_ts=nxt)
        lat[i] = (time.perf_counter_ns() - t0) / 1e3
    return {"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99))}


def measure_batch(portfolio, n_bars: int, warmup: int = 60) -> dict:
    """Peer: `backforge run` (compile + the compiled loop) over the same bars, per bar (best of 3)."""
    data = _data(portfolio, n_bars, warmup)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run_compiled(compile_portfolio(portfolio, data, start_bar=warmup))
        best = min(best, time.perf_counter() - t0)
    return {"per_bar_us": best / n_bars * 1e6}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory(n_bars: int) -> dict:
    """Resident memory (current RSS) every tenth of a long replay of one-minute bars: indicators on bar and
    duration windows, a state condition, signal events (no orders: the order book grows with orders by design)."""
    portfolio = load_portfolio({"name": "mem", "universe": ["AAA", "BBB"], "strategies": [
        {"name": "x", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_above",
                                    "rhs": {"sma": {"window": "2h"}}}, "action": {"kind": "alert"}},
        {"name": "y", "condition": {"all": [{"lhs": {"rsi": {"window": 14}}, "op": ">", "rhs": 60},
                                            {"lhs": "close", "op": ">", "rhs": {"rolling_max": {"window": "1h"}}},
                                            {"lhs": {"position_qty": {}}, "op": "==", "rhs": 0}]},
         "action": {"kind": "alert"}}]})
    data = gbm(2, n_bars / (252 * 390) + 0.01, bar="1min", seed=1, assets=("AAA", "BBB")).rows(0, n_bars + 200)
    feed = ReplayFeed(data, start=200)
    rss = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        runner = PaperRunner(portfolio, feed, PaperBroker.for_portfolio(portfolio, feed.symbols), folder,
                             reference=data, config=LiveConfig(log_bars=False, status_every_s=60.0, snapshot_every=1000))
        step = max(n_bars // 10, 1)
        i = 0
        while (bar := feed.next_bar()) is not None:
            runner.on_bar(bar)
            i += 1
            if i % step == 0:
                gc.collect()
                rss.append(_rss_mb())
        signals = len(runner.store.signals())
        runner.close()
    return {"bars": i, "rss_mb_by_tenth": [round(x, 1) for x in rss], "signals": signals,
            "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--memory-bars", type=int, default=1_000_000)
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md (stream section)")
    args = parser.parse_args()
    lines = [f"machine: {machine()}", f"load average at start: {load_average()}"]
    print(lines[-1], flush=True)
    for name, make in (("sma_cross", sma_cross), ("rebalance_100", rebalance_100)) if args.bars else ():
        r = measure(make(), args.bars, args.snapshot_every)
        s = measure_step(make(), args.bars)
        b = measure_batch(make(), args.bars)
        lines.append(f"{name}: {r['bars']} bars, runner p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, "
                     f"max {r['max_us']:.0f} us, {r['orders']} orders, {r['wall_s']:.1f} s "
                     f"(p50 first 1000 bars {r['first_1000_p50_us']:.0f} us, last 1000 {r['last_1000_p50_us']:.0f} us); "
                     f"peers: strategy step alone p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us; "
                     f"backforge run {b['per_bar_us']:.1f} us/bar; load {load_average()}")
        print(lines[-1], flush=True)
    if args.memory_bars:
        m = memory(args.memory_bars)
        lines.append(f"memory: {m['bars']} bars in {m['wall_s']:.0f} s, current RSS by tenth (MB): "
                     f"{m['rss_mb_by_tenth']}, {m['signals']} signal events; load {load_average()}")
        print(lines[-1], flush=True)
    if args.write:
        body = "\n".join(f"- {line}" for line in lines)
        write_section("stream", f"<!-- stream:start -->\n## Paper runner (bench_live.py)\n\n{body}\n<!-- stream:end -->")


if __name__ == "__main__":
    main()
