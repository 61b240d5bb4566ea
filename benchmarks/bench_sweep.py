"""Benchmark: the vectorized-mode SMA-cross sweep against vectorbt's ``Portfolio.from_signals``.

Target (issue "Research", VISION.md): SMA-cross sweep on 10 years of daily data, >= 1,000,000
parameter combinations (fast/slow windows x stop levels) in < 10 s on 2 cores, < 2 GB, metrics only.

What is timed, in one process, on the same data and with the same settings (cash 100,000, the whole
equity in each entry, fractional units, fee 0.1 % of notional, 2 bps slippage on market and stop
fills, next-open fills):

* backforge: ``sweep_sma_cross(data, fast=2..101, slow=10..209 (fast < slow), stop_loss=8 levels,
  take_profit=8 levels)`` = 15,722 window pairs x 64 bracket variants = 1,006,208 combinations, from
  the close prices to the metrics table (SMAs, simulation, metrics, Polars frame). Median of
  ``--repeats`` warm runs; the first call (loading or compiling the kernels) is reported apart, and so
  is the CPU time of all threads (on a shared machine the wall time also counts waiting for a core).
* vectorbt: the vectorbt way — pandas rolling means for the distinct windows, ``[T, N]`` entry/exit
  arrays (the crossover decisions moved one bar forward, filled at ``price=open``), one
  ``Portfolio.from_signals`` over N columns with per-column ``sl_stop`` / ``tp_stop`` (and the OHLC for
  the stops), then total return, Sharpe, max drawdown, trade count and win rate — on an evenly spaced
  subset of the same combinations (``--peer-combinations``, 2,000 by default), after one warm-up call.
  Both are reported as combinations per second, and their ratio. The same comparison is repeated
  on the window pairs alone, without brackets (15,722 combinations for backforge).

The data: ``backforge.synth(n_assets=1, years=10, bar="1d", seed=7)`` (2,520 bars, the target), then the
real GOOG daily file (2,148 bars) from the shared data folder when it is present. Without brackets the
two engines agree (the script prints the largest total-return difference over the subset's plain
combinations whose crossings fall on the same bars — pandas' rolling mean and backforge's SMA differ by
~1e-13, which can move a crossing where two SMAs nearly touch); with brackets their rules differ
(vectorbt's stop checks and fill prices are its own), so only speed is compared there.

Usage::

    python benchmarks/bench_sweep.py            # 1,006,208 combinations per data set, 3 warm runs
    python benchmarks/bench_sweep.py --quick    # 24,752 combinations, 1 warm run, 200 for vectorbt
    python benchmarks/bench_sweep.py --write    # also record the figures in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _common import REPO, load_average, machine, write_section
START_MARK = "<!-- bench_sweep:start -->"
END_MARK = "<!-- bench_sweep:end -->"
NAN = math.nan
SETTINGS = dict(cash=100_000.0, size=1.0, fee_rate=0.001, slippage_bps=2.0, lot_size=0.0)
TARGET_COMBINATIONS = 1_000_000
TARGET_SECONDS = 10.0


def grid(quick: bool) -> dict:
    """The swept parameters: windows and bracket levels (NaN: no bracket)."""
    if quick:
        return dict(fast=range(2, 32), slow=range(10, 70), stop_loss=[NAN, 0.02, 0.05, 0.1],
                    take_profit=[NAN, 0.04, 0.1, 0.25])
    return dict(fast=range(2, 102), slow=range(10, 210), stop_loss=[NAN, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2],
                take_profit=[NAN, 0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.4])


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ backforge

def run_backforge(data, params: dict, repeats: int) -> dict:
    """Cold call, then ``repeats`` warm calls of the whole sweep; wall and CPU seconds."""
    from backforge.research.sweep import sweep_sma_cross

    start = time.perf_counter()
    table = sweep_sma_cross(data, **params, **SETTINGS)
    cold = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        table = sweep_sma_cross(data, **params, **SETTINGS)
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    wall = statistics.median(walls)
    return {"table": table, "combinations": table.height, "cold": cold, "wall": wall, "walls": walls,
            "cpu": statistics.median(cpus), "rate": table.height / wall, "table_mib": table.estimated_size() / 2**20}


# ------------------------------------------------------------------------------------------- vectorbt

def peer_subset(table, n: int):
    """``n`` combinations evenly spread over the table (all bracket variants and window pairs)."""
    n = min(n, table.height)
    rows = np.unique(np.linspace(0, table.height - 1, n).round().astype(np.int64))
    return table[rows]


def run_vectorbt(data, subset, repeats: int) -> dict:
    """vectorbt's Portfolio.from_signals on the subset's combinations, with the same settings."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import vectorbt as vbt

    index = pd.DatetimeIndex(pd.to_datetime(data.timestamps, utc=True))
    o, h, l, c = (pd.Series(getattr(data, f)[:, 0], index=index) for f in ("open", "high", "low", "close"))
    fast = subset["fast"].to_numpy()
    slow = subset["slow"].to_numpy()
    sl = subset["stop_loss"].fill_null(NAN).to_numpy()
    tp = subset["take_profit"].fill_null(NAN).to_numpy()

    def work(columns: slice) -> dict:
        windows = np.unique(np.concatenate([fast[columns], slow[columns]]))
        ma = pd.concat({int(w): c.rolling(int(w)).mean() for w in windows}, axis=1).to_numpy()
        position = {int(w): i for i, w in enumerate(windows)}
        f = ma[:, [position[int(w)] for w in fast[columns]]]
        s = ma[:, [position[int(w)] for w in slow[columns]]]
        with np.errstate(invalid="ignore"):
            entries, exits = f > s, f < s
        decisions = (entries, exits)
        # a decision at bar t's close fills at bar t+1's open: move the signals one bar forward
        entries = np.vstack([np.zeros((1, entries.shape[1]), bool), entries[:-1]])
        exits = np.vstack([np.zeros((1, exits.shape[1]), bool), exits[:-1]])
        simulation_start = time.perf_counter()
        portfolio = vbt.Portfolio.from_signals(
            c, pd.DataFrame(entries, index=index), pd.DataFrame(exits, index=index), price=o, open=o, high=h, low=l,
            sl_stop=sl[columns][None, :], tp_stop=tp[columns][None, :], fees=SETTINGS["fee_rate"],
            slippage=SETTINGS["slippage_bps"] * 1e-4, init_cash=SETTINGS["cash"], freq="1D",
        )
        simulation = time.perf_counter() - simulation_start
        return {"total_return": np.asarray(portfolio.total_return()), "sharpe": np.asarray(portfolio.sharpe_ratio()),
                "max_drawdown": np.asarray(portfolio.max_drawdown()),
                "n_trades": np.asarray(portfolio.trades.count()), "win_rate": np.asarray(portfolio.trades.win_rate()),
                "decisions": decisions, "simulation": simulation}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        work(slice(0, min(8, len(fast))))  # JIT compilation and first-call costs, kept out of the timing
        compile_seconds = time.perf_counter() - start
        walls, cpus, simulations = [], [], []
        for _ in range(repeats):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            metrics = work(slice(None))
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
            simulations.append(metrics["simulation"])
    wall = statistics.median(walls)
    # engine agreement, on the combinations without brackets whose decisions are identical: pandas'
    # rolling mean and backforge's SMA differ by ~1e-13, which flips a crossing where the two SMAs are
    # within that of each other
    from backforge.strategy.indicators import sma

    lines = {int(w): sma(data.close[:, 0], data.timestamps, int(w)) for w in np.unique(np.concatenate([fast, slow]))}
    ours_f = np.column_stack([lines[int(w)] for w in fast])
    ours_s = np.column_stack([lines[int(w)] for w in slow])
    with np.errstate(invalid="ignore"):
        same = ((ours_f > ours_s) == metrics["decisions"][0]).all(axis=0) & \
            ((ours_f < ours_s) == metrics["decisions"][1]).all(axis=0)
    plain = np.isnan(sl) & np.isnan(tp)
    compared = np.flatnonzero(plain & same)
    ours = subset["total_return"].to_numpy()
    agreement = float(np.max(np.abs(metrics["total_return"][compared] - ours[compared]))) if compared.size else NAN
    return {"combinations": len(fast), "wall": wall, "cpu": statistics.median(cpus), "rate": len(fast) / wall,
            "first_call": compile_seconds, "plain": int(compared.size), "flipped": int((plain & ~same).sum()),
            "simulation": statistics.median(simulations),
            "agreement": agreement}


# ------------------------------------------------------------------------------------------ reporting

def versions() -> str:
    import numba
    import polars

    import backforge

    names = {"python": platform.python_version(), "backforge": backforge.__version__, "numpy": np.__version__,
             "numba": numba.__version__, "polars": polars.__version__}
    try:
        from importlib.metadata import version

        names["vectorbt"] = version("vectorbt")
    except Exception:  # noqa: BLE001 - optional peer
        names["vectorbt"] = "not installed"
    return ", ".join(f"{k} {v}" for k, v in names.items())


def seconds(value: float) -> str:
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"


def verdict_mark(ours: dict, met: bool) -> str:
    if met:
        return "✓"
    if ours["combinations"] < TARGET_COMBINATIONS:
        return "–"
    return f"✗ in wall time (CPU ÷ 2 = {seconds(ours['cpu'] / 2)})"


def flipped_note(peer: dict) -> str:
    if not peer["flipped"]:
        return ""
    return (f" ({peer['flipped']} more left out: there pandas' rolling mean and backforge's SMA, ~1e-13 apart, put "
            "a crossing on different bars)")


def render(results: list[dict], host: dict, args, threads: int) -> str:
    rows = []
    for r in results:
        ours, peer = r["ours"], r["peer"]
        met = ours["combinations"] >= TARGET_COMBINATIONS and ours["wall"] < TARGET_SECONDS
        rows.append(
            f"| {r['name']} | {r['bars']:,} | {ours['combinations']:,} | {seconds(ours['wall'])} "
            f"({ours['cpu']:.2f} s CPU) | {ours['rate']:,.0f}/s | {peer['combinations']:,}: {seconds(peer['wall'])} | "
            f"{peer['rate']:,.0f}/s | {ours['rate'] / peer['rate']:,.0f}× | "
            f"{verdict_mark(ours, met)} |")
    notes = [
        f"Grid: fast {min(args.grid['fast'])}..{max(args.grid['fast'])} × slow {min(args.grid['slow'])}.."
        f"{max(args.grid['slow'])} (only fast < slow) × {len(args.grid['stop_loss'])} stop-loss × "
        f"{len(args.grid['take_profit'])} take-profit levels (NaN = none among them); cash 100,000, whole "
        "equity per entry, fractional units, fee 0.1 %, slippage 2 bps, next-open fills.",
        f"backforge: `sweep_sma_cross`, close prices to Polars metrics table (12 metrics per combination), "
        f"{threads} numba threads; median of {args.repeats} warm runs; CPU = all threads' CPU time per run "
        "(on free cores the wall time is about CPU / threads; above that, the cores were busy with other work).",
        "vectorbt: `Portfolio.from_signals` over N columns (signals moved one bar, `price=open`, per-column "
        "`sl_stop`/`tp_stop`, OHLC for the stops) plus total return, Sharpe, max drawdown, trade count and win "
        "rate, on an evenly spaced subset of the same combinations, after a warm-up call; ratio = backforge "
        "combinations/s ÷ vectorbt combinations/s in this run.",
    ]
    for r in results:
        ours, peer = r["ours"], r["peer"]
        if r["name"].endswith("no brackets"):
            notes.append(f"{r['name']}: the window pairs alone (one combination each, so the per-pair decision "
                         f"schedule is not shared); vectorbt agrees: max |Δ total return| {peer['agreement']:.1e} "
                         f"over {peer['plain']} combinations{flipped_note(peer)}.")
            continue
        notes.append(
            f"{r['name']}: first call {seconds(ours['cold'])} (kernels loaded from the numba cache, or compiled); "
            f"warm runs {', '.join(seconds(w) for w in ours['walls'])}; peak RSS of the process after the sweeps "
            f"{r['rss']:,.0f} MiB (results table {ours['table_mib']:,.0f} MiB; target < 2 GB "
            f"{'✓' if r['rss'] < 2048 else '✗'}); vectorbt first call {seconds(peer['first_call'])}, its "
            f"`from_signals` call alone {seconds(peer['simulation'])} ({peer['combinations'] / peer['simulation']:,.0f} "
            "combinations/s, the rest is signals and metrics); "
            f"without brackets the engines agree: max |Δ total return| {peer['agreement']:.1e} over the subset's "
            f"{peer['plain']} plain combinations{flipped_note(peer)}.")
    return "\n".join([
        START_MARK,
        "## Research: vectorized SMA-cross sweep (`benchmarks/bench_sweep.py`)",
        "",
        f"Recorded {host['date']} with `python benchmarks/bench_sweep.py --write`.",
        "",
        f"- Machine: {host['cpu']}, {host['cores']}, {host['ram']} RAM, {host['os']}; load average "
        f"{load_average()} at the end (the machine is shared: compare the ratio, and the CPU time)",
        f"- Versions: {versions()}",
        "",
        "Target: ≥ 1,000,000 combinations on 10 years of daily data in < 10 s on 2 cores, < 2 GB.",
        "",
        "| data | bars | combinations | backforge wall (CPU) | backforge | vectorbt subset | vectorbt | ratio "
        "| target |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *(f"- {n}" for n in notes),
        END_MARK,
    ])


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small grid, 1 warm run, 200 vectorbt combinations")
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=None, help="warm runs to take the median of (default 3)")
    parser.add_argument("--peer-combinations", type=int, default=None, help="combinations run with vectorbt (2,000)")
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: all cores)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    peer_n = args.peer_combinations or (200 if args.quick else 2_000)
    args.grid = grid(args.quick)

    import numba

    import backforge as bf
    from backforge.errors import BackforgeError

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    host = machine()
    print(f"machine: {host['cpu']}, {host['cores']}, {host['ram']} RAM, {host['os']}; load average {load_average()}")
    print(f"versions: {versions()}; numba threads {threads}")

    datasets = [("synthetic 10 y daily (seed 7)", lambda: bf.synth(n_assets=1, years=10, bar="1d", seed=7))]
    goog = Path(os.environ.get("BACKFORGE_SHARED_DATA", REPO / ".." / "shared" / "data")) / "GOOG.csv"
    if goog.is_file():
        datasets.append(("GOOG daily (real)", lambda: bf.data.read_csv(goog)))
    else:
        print(f"GOOG.csv not found at {goog}: skipped")

    results = []
    for name, load in datasets:  # backforge first: the peak memory is measured before vectorbt is imported
        try:
            data = load()
        except BackforgeError as exc:
            print(f"{name}: could not load ({exc}); skipped")
            continue
        ours = run_backforge(data, args.grid, args.repeats)
        print(f"\n{name}: {data.n_bars:,} bars")
        print(f"  backforge sweep_sma_cross: {ours['combinations']:,} combinations, median "
              f"{seconds(ours['wall'])} warm "
              f"(runs {', '.join(seconds(w) for w in ours['walls'])}), CPU {ours['cpu']:.2f} s, first call "
              f"{seconds(ours['cold'])} -> {ours['rate']:,.0f} combinations/s")
        print(f"    peak RSS so far {peak_rss_mib():,.0f} MiB; results table {ours['table_mib']:,.0f} MiB")
        if ours["combinations"] >= TARGET_COMBINATIONS:
            verdict = "met" if ours["wall"] < TARGET_SECONDS else (
                f"missed in wall time at this load (CPU {ours['cpu']:.2f} s over {threads} threads)")
            print(f"    target >= 1,000,000 in < 10 s: {verdict}")
        subset = peer_subset(ours.pop("table"), peer_n)
        results.append({"name": name, "bars": data.n_bars, "ours": ours, "data": data, "subset": subset})
        plain_grid = {**args.grid, "stop_loss": [NAN], "take_profit": [NAN]}
        plain = run_backforge(data, plain_grid, args.repeats)
        print(f"  same windows without brackets: {plain['combinations']:,} combinations, median "
              f"{seconds(plain['wall'])} "
              f"warm, CPU {plain['cpu']:.2f} s -> {plain['rate']:,.0f} combinations/s")
        results.append({"name": f"{name}, no brackets", "bars": data.n_bars, "ours": plain, "data": data,
                        "subset": peer_subset(plain.pop("table"), peer_n)})
    rss = peak_rss_mib()
    print(f"\npeak RSS after the backforge sweeps (before vectorbt is imported): {rss:,.0f} MiB")
    for r in results:
        peer = run_vectorbt(r.pop("data"), r.pop("subset"), args.repeats)
        r.update(peer=peer, rss=rss)
        print(f"{r['name']}: vectorbt Portfolio.from_signals: {peer['combinations']:,} combinations in "
              f"{seconds(peer['wall'])} (CPU {peer['cpu']:.2f} s; first call {seconds(peer['first_call'])}) -> "
              f"{peer['rate']:,.0f} combinations/s; the from_signals call alone {seconds(peer['simulation'])} "
              f"({peer['combinations'] / peer['simulation']:,.0f}/s)")
        print(f"    ratio backforge / vectorbt: {r['ours']['rate'] / peer['rate']:,.0f}x; without brackets the engines "
              f"agree: max |diff total return| {peer['agreement']:.1e} over {peer['plain']} combinations"
              f"{flipped_note(peer)}")

    print(f"\nload average at the end: {load_average()}")
    if args.write and args.quick:
        print("--write ignored with --quick (BENCHMARKS.md records the full workload)")
    elif args.write and results:
        path = write_section("bench_sweep", render(results, host, args, threads))
        print(f"wrote the bench_sweep section of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
