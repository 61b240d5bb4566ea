"""Research benchmarks: one genetic-optimization generation of 300 backtests of a 100-asset, 2-year daily
rank-and-rebalance strategy with RSI and fundamental filters (target < 2 s; the seed's engine: 87.5 s),
and the per-backtest cost of that strategy (target < 5 ms warm; the seed: 292 ms).

    python benchmarks/bench_research.py [--quick] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


import backforge as bf
from backforge.data.synth import synthetic_fundamentals
from backforge.research.optimize import LocalExecutor, evaluate_params, optimize
from backforge.strategy.compiler import compile_portfolio, run_compiled
from backforge.strategy.schema import load_portfolio

from _common import machine, write_section


def describe() -> str:
    info = machine()
    return (f"{info['cpu']}, {info['cores']}, {info['ram']} RAM, Python {platform.python_version()}, "
            f"numba {__import__('numba').__version__}, load average {info['load']}")


def strategy(assets: tuple[str, ...]) -> dict:
    return {"name": "momentum-rotation", "universe": list(assets), "costs": {"fee_rate": 0.0005},
            "strategies": [{"name": "rotate", "schedule": "month_start", "action": {"rebalance": {
                "weights": "equal",
                "sort_by": {"returns": {"window": {"param": "lookback", "range": [20, 250, 10]}}},
                "top": {"param": "top", "range": [5, 50, 5]},
                "filter": {"all": [
                    {"lhs": {"rsi": {"window": {"param": "rsi_window", "range": [5, 30, 5]}}}, "op": "<",
                     "rhs": {"param": "rsi_max", "range": [50, 95, 5]}},
                    {"lhs": {"fundamental": {"field": "eps"}}, "op": ">", "rhs": 0}]}}}}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    args = parser.parse_args()
    data = bf.synth(n_assets=100, years=2, seed=7)
    from backforge.data.fundamentals import Fundamentals

    fundamentals = Fundamentals.from_frame(synthetic_fundamentals(data.assets, 2, seed=7))  # indexed once
    raw = strategy(data.assets)
    print(f"machine: {describe()}")
    print(f"data: {data!r}")

    # single backtest, compiled once (the engine's per-backtest cost) and end to end (compile + run)
    portfolio = load_portfolio(raw)
    compiled = compile_portfolio(portfolio, data, fundamentals=fundamentals)
    run_compiled(compiled, audit=False)
    reps = 20 if args.quick else 100
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run_compiled(compiled, audit=False)
        runs.append(time.perf_counter() - t0)
    evaluate_params(raw, {}, data, fundamentals=fundamentals)
    trials = []
    for i in range(reps // 2):
        t0 = time.perf_counter()
        evaluate_params(raw, {"lookback": 20 + 10 * (i % 20), "top": 5 + 5 * (i % 10)}, data, fundamentals=fundamentals)
        trials.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    compile_portfolio(load_portfolio(raw), data, fundamentals=fundamentals)
    compile_cold = time.perf_counter() - t0

    # one genetic generation of 300 backtests on every core (workers started and warmed first)
    population = 300
    workers = os.cpu_count() or 1
    with LocalExecutor(workers) as pool:
        optimize(raw, data, method="random", samples=2 * workers, seed=99, executor=pool, fundamentals=fundamentals,
                 keep_returns=0)  # start and warm the workers
        generations = []
        for rep in range(1 if args.quick else 3):
            t0 = time.perf_counter()
            res = optimize(raw, data, method="genetic", population=population, generations=1, seed=rep,
                           executor=pool, fundamentals=fundamentals, keep_returns=0)
            generations.append(time.perf_counter() - t0)
    rows = [
        ("backtest, compiled strategy (100 assets × 504 days, monthly rebalance)", f"{statistics.median(runs) * 1e3:.2f} ms", "< 5 ms", "292 ms (seed's Rust engine)"),
        ("trial = instantiate + validate + compile (cached indicators) + run + score", f"{statistics.median(trials) * 1e3:.2f} ms", "", ""),
        ("compile a strategy (validation + indicator plan, indicators cached on disk)", f"{compile_cold * 1e3:.1f} ms", "< 50 ms", ""),
        (f"genetic generation: {res.n_trials} backtests on {workers} workers", f"{statistics.median(generations):.2f} s", "< 2 s", "87.5 s (seed)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target, peer in rows:
        print(f"{name:<{width}}  {value:>10}  {target:>8}  {peer}")
    if args.write:
        lines = ["<!-- bench_research:start -->", "## Research: backtests for optimizers (`benchmarks/bench_research.py`)", "",
                 f"Machine: {describe()}; {time.strftime('%Y-%m-%d')}. Medians of warm runs.", "",
                 "| scenario | backforge | target | anchor |", "|---|---|---|---|"]
        lines += [f"| {n} | {v} | {t} | {p} |" for n, v, t, p in rows]
        lines += ["<!-- bench_research:end -->"]
        write_section("bench_research", "\n".join(lines))


if __name__ == "__main__":
    main()
