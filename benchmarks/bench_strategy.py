"""Benchmark: declarative strategies — validated, compiled to arrays and a condition program, run.

Targets (issue "Strategy language"), compiled code cached and warm:

(a) 7 assets × 10 years × 1-minute bars (6,879,600 bars), a condition over 3 indicators
    (enter: close crosses above SMA(60) and RSI(14) < 70 and close > EMA(390); exit: close crosses
    below SMA(60)): validation + compilation + backtest < 1 s.
(b) 100 assets × 2 years daily, a monthly rank-by-momentum rebalance (top 10 by 6-month return,
    equal weight) with an RSI filter and a fundamental filter (EPS > 0, point in time): < 5 ms per
    backtest (the seed's Rust engine: 292 ms).
(c) compiling a strategy — validation (``load_portfolio``) plus the indicator plan
    (``compile_portfolio``: every data-only indicator and condition computed once, vectorized, and the
    state-dependent programs emitted) — excluding the first-ever numba compilation: < 50 ms.
(d) risk rules (issue 11): (a) and (b) with three risk rules active are at most 15 % slower than without
    them (``run_compiled`` medians, the variants timed alternately). The target is judged on the rules set
    so that they never bind (``RISK_RULES_IDLE``: identical trades, so the difference is the cost of
    evaluating them); the binding rules (``RISK_RULES``) trade differently and are reported beside.

What is timed, in one process, on deterministic synthetic data (generation not timed, reported):

* ``validate``: ``load_portfolio(config_dict)`` (shorthand expansion + pydantic validation);
* ``compile``: ``compile_portfolio(portfolio, data, ...)`` (checks against the data, indicators,
  conditions, programs);
* ``run``: ``run_compiled(compiled)`` (the compiled loop, records, the Result and its signal-event
  table);
* ``backtest``: all three, as one call of a user (a parameter search recompiles every time).

Each figure is the median of ``--repeats`` warm runs (at least 5) after one warm-up run that loads
the kernels from numba's on-disk cache. The process's first run of a scenario is reported too (it
includes loading — or, on an empty cache, compiling — the kernels).

Usage::

    python benchmarks/bench_strategy.py            # full sizes
    python benchmarks/bench_strategy.py --quick    # (a) on 1 year of minutes: a smoke test
    python benchmarks/bench_strategy.py --write    # also record the figures in BENCHMARKS.md
    python benchmarks/bench_strategy.py --risk     # only (d), the cost of the risk rules
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from _common import REPO, machine, write_section
START_MARK = "<!-- bench_strategy:start -->"
END_MARK = "<!-- bench_strategy:end -->"
SEED_RUST_MS = 292.0  # seeds/000: one 100-asset monthly rebalance backtest in the Rust engine

MINUTE_STRATEGY = {
    "name": "minute-three-indicators",
    "costs": {"fee_rate": 0.0002, "slippage_bps": 0.5},
    "strategies": [
        {"name": "exit", "condition": {"lhs": "close", "op": "crosses_below", "rhs": {"sma": {"window": 60}}},
         "action": {"close": {}}},
        {"name": "enter",
         "condition": {"all": [
             {"lhs": "close", "op": "crosses_above", "rhs": {"sma": {"window": 60}}},
             {"lhs": {"rsi": {"window": 14}}, "op": "<", "rhs": 70},
             {"lhs": "close", "op": ">", "rhs": {"ema": {"window": 390}}},
         ]},
         "action": {"buy": {"allocation": {"equity_fraction": 0.14}}}},
    ],
}

REBALANCE_STRATEGY = {
    "name": "momentum-top10-rsi-eps",
    "costs": {"fee_rate": 0.0005, "slippage_bps": 2},
    "strategies": [
        {"name": "top10", "schedule": "month_start",
         "action": {"rebalance": {
             "filter": {"all": [
                 {"lhs": {"rsi": {"window": 14}}, "op": "<", "rhs": 70},
                 {"lhs": {"fundamental": {"field": "eps"}}, "op": ">", "rhs": 0},
             ]},
             "sort_by": {"returns": {"window": 126}},
             "top": 10,
             "weights": "equal",
             "gross": 0.98,
             "min_trade": 0.005,
         }}},
    ],
}


# three rules checked on every decision and bar: a drawdown halt, a weight cap at every fill, and the
# losing-streak multiplier (the rebalance: a weight cap, a gross cap and the drawdown halt)
RISK_RULES = {
    "minutes": {"max_drawdown": 0.3, "max_weight": 0.2, "losing_streak": {"losses": 3, "multiplier": 0.5}},
    "rebalance": {"max_drawdown": 0.3, "max_weight": 0.12, "max_gross": 1.0},
}
# the same three rules with limits that never bind: the pure cost of evaluating them (identical trades;
# the minute strategy loses 99 % of its equity over the 10 years, so its drawdown limit is 99.99 %)
RISK_RULES_IDLE = {
    "minutes": {"max_drawdown": 0.9999, "max_weight": 5.0, "losing_streak": {"losses": 1_000_000, "multiplier": 0.5}},
    "rebalance": {"max_drawdown": 0.9999, "max_weight": 5.0, "max_gross": 50.0},
}

# --------------------------------------------------------------------------------------- measuring

def timed(function: Callable[[], Any], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def stages(config: dict, data: Any, fundamentals: Any, repeats: int) -> dict[str, Any]:
    """First-call and warm medians of validate, compile, run and the whole backtest."""
    from backforge.strategy.compiler import compile_portfolio, run_compiled
    from backforge.strategy.schema import load_portfolio

    first = {}
    start = time.perf_counter()
    portfolio = load_portfolio(config)
    first["validate"] = time.perf_counter() - start
    start = time.perf_counter()
    compiled = compile_portfolio(portfolio, data, fundamentals=fundamentals)
    first["compile"] = time.perf_counter() - start
    start = time.perf_counter()
    result = run_compiled(compiled)
    first["run"] = time.perf_counter() - start
    first["backtest"] = sum(first.values())

    def backtest() -> None:
        run_compiled(compile_portfolio(load_portfolio(config), data, fundamentals=fundamentals))

    backtests = timed(backtest, repeats)
    warm = {
        "validate": statistics.median(timed(lambda: load_portfolio(config), repeats)),
        "compile": statistics.median(timed(lambda: compile_portfolio(portfolio, data, fundamentals=fundamentals), repeats)),
        "run": statistics.median(timed(lambda: run_compiled(compiled), repeats)),
        "backtest": statistics.median(backtests),
    }
    best = min(backtests)
    summary = result.summary()
    return {"first": first, "warm": warm, "best": best, "trades": summary["trades"], "orders": summary["orders"],
            "signals": result.signal_events.height, "series": compiled.series.shape[1], "ops": len(compiled.ops),
            "bars": data.n_bars, "assets": data.n_assets}


def scenario_minutes(years: float, repeats: int) -> dict[str, Any]:
    from backforge.data.synth import gbm

    start = time.perf_counter()
    data = gbm(7, years, bar="1min", seed=7)
    generated = time.perf_counter() - start
    config = dict(MINUTE_STRATEGY, universe=list(data.assets))
    out = stages(config, data, None, repeats)
    out["generate"] = generated
    out["price_mib"] = 5 * data.close.nbytes / 2**20
    return out


def scenario_rebalance(repeats: int) -> dict[str, Any]:
    from backforge.data.fundamentals import Fundamentals
    from backforge.data.synth import gbm, synthetic_fundamentals
    from backforge.strategy.compiler import compile_portfolio
    from backforge.strategy.schema import load_portfolio

    start = time.perf_counter()
    data = gbm(100, 2, bar="1d", seed=11)
    frame = synthetic_fundamentals(data.assets, 3, seed=11, start="2014-01-01")  # a year of history before the bars
    generated = time.perf_counter() - start
    # Prepared once, as a parameter search would: the table is validated and indexed by field on first use.
    table = Fundamentals.from_frame(frame)
    config = dict(REBALANCE_STRATEGY, universe=list(data.assets))
    out = stages(config, data, table, repeats)
    out["generate"] = generated
    out["fundamental_rows"] = frame.height
    portfolio = load_portfolio(config)
    out["compile_from_frame"] = statistics.median(timed(lambda: compile_portfolio(portfolio, data, fundamentals=frame), 5))
    return out


def scenario_risk(years: float, repeats: int) -> dict[str, Any]:
    """(d): ``run_compiled`` of (a) and (b) without risk rules, with the three rules set so that they never
    bind (``idle``: the same trades, the pure cost of evaluating the rules) and with them binding (``risk``:
    different trading), the three variants timed alternately."""
    from backforge.data.fundamentals import Fundamentals
    from backforge.data.synth import gbm, synthetic_fundamentals
    from backforge.strategy.compiler import compile_portfolio, run_compiled
    from backforge.strategy.schema import load_portfolio

    out: dict[str, Any] = {}
    minutes = gbm(7, years, bar="1min", seed=7)
    daily = gbm(100, 2, bar="1d", seed=11)
    table = Fundamentals.from_frame(synthetic_fundamentals(daily.assets, 3, seed=11, start="2014-01-01"))
    for name, config, data, fundamentals in (("minutes", MINUTE_STRATEGY, minutes, None),
                                             ("rebalance", REBALANCE_STRATEGY, daily, table)):
        variants = {"plain": None, "idle": RISK_RULES_IDLE[name], "risk": RISK_RULES[name]}
        compiled = {key: compile_portfolio(load_portfolio(dict(config, universe=list(data.assets),
                                                               **({"risk": rules} if rules else {}))),
                                           data, fundamentals=fundamentals)
                    for key, rules in variants.items()}
        runs: dict[str, list[float]] = {key: [] for key in variants}
        results = {key: run_compiled(cp) for key, cp in compiled.items()}  # warm-up
        if results["idle"].risk_events.height or \
                results["idle"].summary()["trades"] != results["plain"].summary()["trades"]:
            raise RuntimeError(f"{name}: the idle rules bind")
        n = repeats if name == "minutes" else max(repeats, 30)
        for _ in range(n):
            for key, cp in compiled.items():
                start = time.perf_counter()
                run_compiled(cp)
                runs[key].append(time.perf_counter() - start)
        med = {key: statistics.median(v) for key, v in runs.items()}
        best = {key: min(v) for key, v in runs.items()}
        events = results["risk"].risk_events
        out[name] = {"plain": med["plain"], "idle": med["idle"], "risk": med["risk"],
                     "idle_slowdown": med["idle"] / med["plain"] - 1, "slowdown": med["risk"] / med["plain"] - 1,
                     "best": best, "best_idle_slowdown": best["idle"] / best["plain"] - 1,
                     "best_slowdown": best["risk"] / best["plain"] - 1, "repeats": n,
                     "bars": data.n_bars, "assets": data.n_assets, "events": events.height,
                     "trades": (results["plain"].summary()["trades"], results["risk"].summary()["trades"]),
                     "halts": events.filter(events["event"] == "halted").height}
    return out


def scenario_example_compile(repeats: int) -> dict[str, Any]:
    """Validation + compilation of the shipped SMA-cross example (3 assets × 10 years daily)."""
    from backforge.strategy.compiler import compile_portfolio, load_data
    from backforge.strategy.schema import load_portfolio

    path = REPO / "examples" / "sma_cross.yaml"
    text = path.read_text()
    portfolio = load_portfolio(path)
    data = load_data(portfolio, base=path.parent)
    compile_portfolio(portfolio, data)
    validate = statistics.median(timed(lambda: load_portfolio(text), repeats))
    compile_ = statistics.median(timed(lambda: compile_portfolio(portfolio, data), repeats))
    return {"validate": validate, "compile": compile_, "bars": data.n_bars, "assets": data.n_assets}


def cli_cold(runs: int = 2) -> list[float]:
    """Wall time of `backforge run examples/sma_cross.yaml` in fresh processes (numba cache on disk)."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "backforge.cli", "run", str(REPO / "examples" / "sma_cross.yaml"),
                            "--out", folder], check=True, capture_output=True)
            out.append(time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------------- reporting

def versions() -> str:
    from importlib import metadata

    parts = [f"python {platform.python_version()}"]
    for name in ("backforge", "numpy", "numba", "polars", "pandas", "pydantic"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} not installed")
    return ", ".join(parts)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def risk_lines(d: dict[str, Any]) -> list[str]:
    lines = ["", "(d) Risk rules (issue 11): `run_compiled` without rules, with the three rules set so they never bind "
             "(*idle*: identical trades, the cost of evaluating them) and binding (different trading), timed "
             "alternately (medians):", "",
             "| scenario | without | idle rules | slower | target | binding rules | slower | trades without / binding "
             "| risk events |", "|---|---|---|---|---|---|---|---|---|"]
    for name, label in (("minutes", "(a) 7 assets × 1-min, 3 indicators"), ("rebalance", "(b) 100 assets monthly rebalance")):
        r = d[name]
        rules = ", ".join(sorted(RISK_RULES[name]))
        lines.append(f"| {label}; {rules} | {fmt(r['plain'])} | {fmt(r['idle'])} | {100 * r['idle_slowdown']:+.1f} % | "
                     f"≤ 15 % {mark(r['idle_slowdown'] <= 0.15)} | {fmt(r['risk'])} | {100 * r['slowdown']:+.1f} % | "
                     f"{r['trades'][0]:,} / {r['trades'][1]:,} | {r['events']:,} ({r['halts']} halts) |")
    lines.append("")
    for name, label in (("minutes", "(a)"), ("rebalance", "(b)")):
        r = d[name]
        b = r["best"]
        lines.append(f"- {label} best of {r['repeats']} (the least disturbed run of each variant): without {fmt(b['plain'])}, "
                     f"idle {fmt(b['idle'])} ({100 * r['best_idle_slowdown']:+.1f} %), binding {fmt(b['risk'])} "
                     f"({100 * r['best_slowdown']:+.1f} %).")
    return lines


def report(results: dict[str, Any], args: argparse.Namespace, info: dict[str, str]) -> str:
    if "minutes" not in results:
        return "\n".join(risk_lines(results["risk"]))
    a, b, c = results["minutes"], results["rebalance"], results["example"]
    aw, bw = a["warm"], b["warm"]
    compile_b = bw["validate"] + bw["compile"]
    compile_c = c["validate"] + c["compile"]
    rows = [
        ("(a) 7 assets × {} y × 1-min, 3 indicators".format(args.years_label), f"{a['bars'] * a['assets']:,}",
         fmt(aw["validate"]), fmt(aw["compile"]), fmt(aw["run"]), fmt(aw["backtest"]),
         f"< 1 s {mark(aw['backtest'] < 1.0)}" if not args.quick else "(quick: 1 y)"),
        ("(b) 100 assets × 2 y daily, monthly top-10 momentum, RSI + EPS filters", f"{b['bars'] * b['assets']:,}",
         fmt(bw["validate"]), fmt(bw["compile"]), fmt(bw["run"]), fmt(bw["backtest"]),
         f"< 5 ms {mark(bw['backtest'] < 0.005)} (seed: {SEED_RUST_MS:.0f} ms, {SEED_RUST_MS / 1e3 / bw['backtest']:.0f}× faster)"),
        ("(c) compile the SMA-cross example (3 assets × 10 y daily)", f"{c['bars'] * c['assets']:,}",
         fmt(c["validate"]), fmt(c["compile"]), "–", "–", f"< 50 ms {mark(compile_c < 0.05)}"),
    ]
    lines = [
        START_MARK,
        "## Strategy language (`benchmarks/bench_strategy.py`)",
        "",
        f"Recorded {info['date']} with `python benchmarks/bench_strategy.py{' --quick' if args.quick else ''} --write`.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM, {info['os']}; load average {info['load']} "
        "(1 / 5 / 15 min) at the end",
        f"- Versions: {versions()}",
        "",
        "Medians of warm runs (compiled kernels cached). *validate*: `load_portfolio` of the config dict; *compile*: "
        "`compile_portfolio` (checks against the data, every indicator and condition computed once, programs "
        "emitted); *run*: `run_compiled` (the compiled loop and the Result with its signal events); *backtest*: "
        "the three in one call, as a parameter search pays it.",
        "",
        "| scenario | bars × assets | validate | compile | run | backtest | target |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"- (b) compile time of the rebalance strategy (validation + indicator plan with the point-in-time EPS join "
        f"over {b['fundamental_rows']:,} fundamental rows, prepared once as a `Fundamentals`): {fmt(compile_b)}, "
        f"target < 50 ms {mark(compile_b < 0.05)}. Passing the raw Polars table instead re-validates and re-indexes it "
        f"on every compile: {fmt(b['compile_from_frame'])}.",
        f"- (a) {a['series']} compiled series, {a['ops']} program ops; {a['trades']:,} closed trades, "
        f"{a['signals']:,} signal events; price arrays {a['price_mib']:.0f} MiB; data generation (not timed) "
        f"{fmt(a['generate'])}; first run in the process {fmt(a['first']['backtest'])} "
        f"(compile {fmt(a['first']['compile'])}, run {fmt(a['first']['run'])}).",
        f"- (b) {b['orders']:,} orders, {b['signals']:,} signal events over {b['bars']} bars; best backtest "
        f"{fmt(b['best'])} (the spread between best and median is the machine's load); first run in the process "
        f"{fmt(b['first']['backtest'])}.",
    ]
    if results.get("cli"):
        cli = results["cli"]
        lines.append(f"- `backforge run examples/sma_cross.yaml`, fresh process, command to exit (numba cache on disk): "
                     + ", ".join(fmt(s) for s in cli) + f"; VISION target < 2 s {mark(min(cli) < 2.0)}.")
    if results.get("risk"):
        lines += risk_lines(results["risk"])
    lines += ["", f"- Median of {args.repeats} warm runs after one warm-up run per scenario.", END_MARK]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="(a) on 1 year of minutes; no cold CLI runs")
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=None, help="timed warm runs per figure (default 7, quick 5; min 5)")
    parser.add_argument("--risk", action="store_true", help="only (d): the cost of three risk rules on (a) and (b)")
    args = parser.parse_args(argv)
    args.repeats = max(args.repeats or (5 if args.quick else 7), 5)
    years = 1.0 if args.quick else 10.0
    args.years_label = f"{years:g}"

    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM, {info['os']}, load {info['load']}", flush=True)
    results: dict[str, Any] = {}
    if args.risk:
        print(f"(d) risk rules on (a) ({years:g} y) and (b) ...", flush=True)
        results["risk"] = scenario_risk(years, args.repeats)
        print("\n".join(risk_lines(results["risk"])))
        return 0
    print(f"(a) 7 assets × {years:g} years × 1-minute bars ...", flush=True)
    results["minutes"] = scenario_minutes(years, args.repeats)
    print("(b) 100 assets × 2 years daily, monthly rebalance ...", flush=True)
    results["rebalance"] = scenario_rebalance(max(args.repeats, 20))
    print("(c) compile the SMA-cross example ...", flush=True)
    results["example"] = scenario_example_compile(max(args.repeats, 20))
    print("(d) risk rules on (a) and (b) ...", flush=True)
    results["risk"] = scenario_risk(years, args.repeats)
    if not args.quick:
        print("cold CLI runs ...", flush=True)
        results["cli"] = cli_cold()
    info = machine()  # the load average at the end
    section = report(results, args, info)
    print()
    print(section)
    if args.write:
        print(f"\nwrote {write_section('bench_strategy', section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
