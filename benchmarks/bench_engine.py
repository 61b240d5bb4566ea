"""Benchmark: the engine's speed and memory on the VISION scenarios, against peers measured in the same run.

Targets (issue "Core", VISION.md "Performance targets"):

(a) 1 asset × 15 years of daily synthetic bars, SMA(10)/SMA(20) cross ........ < 1 ms warm
(b) GOOG daily (2,148 real bars from ``../shared/data``), same strategy ........ (peer reference)
(c) 7 assets × 10 years × 1-minute bars = 6,879,600 bars, SMA(50)/SMA(200) cross,
    ``size=1/7`` per asset, one account ........................................ < 0.5 s warm,
    peak RSS < 2× the price arrays (``MarketData.nbytes``)
(d) cold start: ``python -m backforge.cli demo`` in a fresh process, twice: the first compiles into an
    empty numba cache, the second loads the on-disk cache ..................... < 2 s (second run)
(e) the same scenarios with vectorbt ``Portfolio.from_signals`` and backtesting.py (backtrader too on
    the daily scenarios), printed as the ratio peer time / backforge time.

What is timed. Every engine gets the same precomputed boolean crossover arrays (events:
``fast[t-1] < slow[t-1] and fast[t] > slow[t]``), long-only, market orders at the next bar's open,
whole shares, no costs; the clock covers the engine call only (backforge ``from_signals`` returning a
``Result``; vectorbt ``Portfolio.from_signals`` with signals shifted one bar and ``price=open``;
backtesting.py ``Backtest(...).run()``; backtrader ``cerebro.run()``). backforge is also timed end
to end (its SMA indicators + crossovers + backtest). Each figure is the median of ``--repeats`` warm
runs after one warm-up run. The 6.9 M-bar scenario runs in a fresh subprocess per engine so that
each reports a clean peak RSS (``VmHWM`` of ``/proc/self/status``); backtesting.py runs it on
1 asset × 1 year of minutes and the time is extrapolated linearly to 6,879,600 bars (say so below).
The data are generated in memory (``backforge.synth``): the generation time is shown apart, not
included in the backtest time.

The machine is shared and noisy: compare ratios against peers measured in the same run rather than
absolute times across runs.

Usage::

    python benchmarks/bench_engine.py            # full run (several minutes: peers are slow)
    python benchmarks/bench_engine.py --quick    # smoke test: 7 assets × 1 year of minutes, cached cold start
    python benchmarks/bench_engine.py --write    # also record the figures in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from _common import REPO, machine, write_section
START_MARK = "<!-- bench_engine:start -->"
END_MARK = "<!-- bench_engine:end -->"
CASH = 100_000.0
BIG_BARS = 252 * 390 * 10 * 7  # 6,879,600


# ------------------------------------------------------------------------------------------ helpers

CPU_SECONDS: dict[int, list[float]] = {}


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``function`` after one untimed warm-up call.

    The process CPU seconds of the same calls are kept in ``CPU_SECONDS[id(result)]``: on a loaded
    machine they show what a call costs when it is not waiting for a core.
    """
    function()
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU_SECONDS[id(seconds)] = cpu
    return seconds


def memory_kib() -> dict[str, int]:
    """Current and peak resident set size of this process, in KiB (Linux ``/proc/self/status``)."""
    out = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        import resource

        out["VmHWM"] = out["VmRSS"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


def crossovers(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up- and down-crossings of ``fast`` through ``slow`` along axis 0 (backtesting.py's ``crossover``)."""
    up = np.zeros(fast.shape, dtype=bool)
    down = np.zeros(fast.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        np.logical_and(fast[:-1] < slow[:-1], fast[1:] > slow[1:], out=up[1:])
        np.logical_and(fast[:-1] > slow[:-1], fast[1:] < slow[1:], out=down[1:])
    return up, down


def shifted(signal: np.ndarray) -> np.ndarray:
    """The signal one bar later (vectorbt fills on the signal's own bar)."""
    out = np.zeros_like(signal)
    out[1:] = signal[:-1]
    return out


def load_goog():
    """GOOG daily bars from the shared data folder, or None when it is absent."""
    import pandas as pd

    folder = Path(os.environ.get("BACKFORGE_SHARED_DATA", REPO / ".." / "shared" / "data"))
    path = folder / "GOOG.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, index_col=0, parse_dates=True)
    frame.index.name = None
    return frame


def ohlcv_frame(data, asset: int = 0):
    """One asset of a MarketData as the pandas OHLCV frame backtesting.py and backtrader take."""
    import pandas as pd

    return pd.DataFrame(
        {"Open": data.open[:, asset], "High": data.high[:, asset], "Low": data.low[:, asset],
         "Close": data.close[:, asset], "Volume": data.volume[:, asset]},
        index=pd.to_datetime(data.timestamps).tz_localize(None),
    )


# ---------------------------------------------------------------------------------------- engines

def backforge_work(data, fast_window: int, slow_window: int, size: float):
    """(backtest only, end to end) callables for backforge."""
    import backforge as bf
    from backforge.strategy.indicators import sma

    up, down = crossovers(sma(data.close, data.timestamps, fast_window), sma(data.close, data.timestamps, slow_window))

    def backtest():
        return bf.from_signals(data, up, down, cash=CASH, size=size)

    def end_to_end():
        fast = sma(data.close, data.timestamps, fast_window)
        slow = sma(data.close, data.timestamps, slow_window)
        entries, exits = crossovers(fast, slow)
        return bf.from_signals(data, entries, exits, cash=CASH, size=size)

    return backtest, end_to_end, up, down


def vectorbt_work(data, up: np.ndarray, down: np.ndarray, size: float):
    import pandas as pd
    import vectorbt as vbt

    index = pd.to_datetime(data.timestamps)
    frame = lambda values: pd.DataFrame(values, index=index, columns=list(data.assets))  # noqa: E731
    close, open_ = frame(data.close), frame(data.open)
    entries, exits = frame(shifted(up)), frame(shifted(down))
    shared = data.n_assets > 1

    def backtest():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return vbt.Portfolio.from_signals(
                close, entries, exits, price=open_, size=size, size_type="percent", size_granularity=1,
                init_cash=CASH, cash_sharing=shared, group_by=True if shared else None, freq="1min" if shared else "1D",
            )

    return backtest


def backtesting_work(frame, up: np.ndarray, down: np.ndarray):
    from backtesting import Backtest, Strategy

    class SmaCross(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            if up[i]:
                self.buy()
            elif down[i]:
                self.position.close()

    def backtest():
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return Backtest(frame, SmaCross, cash=CASH, trade_on_close=False, finalize_trades=True).run()

    return backtest


def backtrader_work(frame, up: np.ndarray, down: np.ndarray):
    import backtrader as btr

    class SmaCross(btr.Strategy):
        def next(self) -> None:
            i = len(self) - 1
            if up[i] and not self.position:
                self.buy(size=int(0.95 * self.broker.getcash() // self.data.close[0]))
            elif down[i] and self.position:
                self.close()

    def backtest():
        cerebro = btr.Cerebro(stdstats=False)
        cerebro.broker.setcash(CASH)
        cerebro.broker.set_checksubmit(False)
        cerebro.adddata(btr.feeds.PandasData(dataname=frame))
        cerebro.addstrategy(SmaCross)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cerebro.run()

    return backtest


# ------------------------------------------------------------------------------ daily scenarios

def daily_scenario(name: str, data, repeats: int, peers: bool) -> dict[str, Any]:
    backtest, end_to_end, up, down = backforge_work(data, 10, 20, 1.0)
    many = max(5 * repeats, 50)  # sub-millisecond figures on a noisy machine: more runs, same median
    row: dict[str, Any] = {"scenario": name, "bars": data.n_bars * data.n_assets,
                           "backforge": statistics.median(timed(backtest, many)),
                           "backforge_e2e": statistics.median(timed(end_to_end, many)),
                           "trades": int(backtest().summary()["trades"])}
    if peers:
        frame = ohlcv_frame(data)
        row["vectorbt"] = statistics.median(timed(vectorbt_work(data, up, down, 1.0 - 1e-12), repeats))
        row["backtesting.py"] = statistics.median(timed(backtesting_work(frame, up[:, 0], down[:, 0]), repeats))
        row["backtrader"] = statistics.median(timed(backtrader_work(frame, up[:, 0], down[:, 0]), repeats))
    return row


# ---------------------------------------------------------------------- big scenario (subprocess)

def worker(kind: str, years: float, repeats: int) -> dict[str, Any]:
    """Run one engine on the minute scenario in this (fresh) process; return figures as a dict."""
    import backforge as bf

    # baseline: interpreter, libraries and the compiled kernels loaded (a tiny run), no data yet
    tiny = bf.synth(n_assets=7, years=0.01, bar="1min", seed=1)
    backforge_work(tiny, 50, 200, 1.0 / 7)[0]()
    del tiny
    baseline = memory_kib()["VmRSS"]
    start = time.perf_counter()
    n_assets = 1 if kind == "backtesting.py" else 7
    data = bf.synth(n_assets=n_assets, years=years, bar="1min", seed=7)
    out: dict[str, Any] = {"kind": kind, "bars": data.n_bars * data.n_assets, "nbytes": data.nbytes,
                           "synth_s": time.perf_counter() - start, "baseline_kib": baseline,
                           "after_data_kib": memory_kib()["VmHWM"]}
    if kind == "backforge":
        backtest, end_to_end, up, down = backforge_work(data, 50, 200, 1.0 / 7)
        out["seconds"] = timed(backtest, repeats)
        out["cpu_seconds"] = CPU_SECONDS[id(out["seconds"])]
        out["e2e_seconds"] = timed(end_to_end, repeats)
        out["e2e_cpu_seconds"] = CPU_SECONDS[id(out["e2e_seconds"])]
        result = backtest()
        out["trades"] = int(result.summary()["trades"])
        del result
    else:
        from backforge.strategy.indicators import sma

        up, down = crossovers(sma(data.close, data.timestamps, 50), sma(data.close, data.timestamps, 200))
        if kind == "vectorbt":
            out["seconds"] = timed(vectorbt_work(data, up, down, 1.0 / 7), repeats)
        else:
            out["seconds"] = timed(backtesting_work(ohlcv_frame(data), up[:, 0], down[:, 0]), repeats)
    out["peak_kib"] = memory_kib()["VmHWM"]
    return out


def run_worker(kind: str, years: float, repeats: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--years", str(years),
               "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def big_scenario(years: float, repeats: int, peers: bool) -> dict[str, Any]:
    ours = run_worker("backforge", years, repeats)
    row: dict[str, Any] = {
        "scenario": f"7 assets × {years:g} y × 1-min (synthetic)", "bars": ours["bars"],
        "backforge": statistics.median(ours["seconds"]), "backforge_e2e": statistics.median(ours["e2e_seconds"]),
        "trades": ours["trades"], "memory": ours,
        "backforge_cpu": statistics.median(ours["cpu_seconds"]), "backforge_e2e_cpu": statistics.median(ours["e2e_cpu_seconds"]),
    }
    if peers:
        vbt = run_worker("vectorbt", years, repeats)
        row["vectorbt"] = statistics.median(vbt["seconds"])
        row["vectorbt_memory"] = vbt
        bt_years = min(years, 1.0)
        bt = run_worker("backtesting.py", bt_years, max(3, repeats // 2))
        per_bar = statistics.median(bt["seconds"]) / bt["bars"]
        row["backtesting.py"] = per_bar * ours["bars"]
        row["backtesting_note"] = (f"backtesting.py ran 1 asset × {bt_years:g} y of minutes ({bt['bars']:,} bars, "
                                   f"median {statistics.median(bt['seconds']):.2f} s), extrapolated linearly "
                                   f"to {ours['bars']:,} bars")
    return row


# --------------------------------------------------------------------------------- cold start

def cold_start(fresh_cache: bool) -> dict[str, Any]:
    """Wall time of ``python -m backforge.cli demo`` in two fresh processes."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        env = dict(os.environ)
        if fresh_cache:
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba-cache")
        import resource

        seconds, cpu = [], []
        for run in range(2):
            command = [sys.executable, "-m", "backforge.cli", "demo", "--out", str(Path(tmp) / f"runs{run}")]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=env)
            seconds.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                return {"error": f"`backforge demo` exited with code {done.returncode}: {last}", "fresh_cache": fresh_cache}
    return {"first": seconds[0], "second": seconds[1], "first_cpu": cpu[0], "second_cpu": cpu[1],
            "fresh_cache": fresh_cache}


# ------------------------------------------------------------------------------------- reporting

def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("backforge", "numpy", "numba", "polars", "pandas", "vectorbt", "backtesting", "backtrader"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_peer(row: dict[str, Any], peer: str) -> str:
    value = row.get(peer)
    if value is None:
        return "–"
    return f"{fmt_time(value)} ({value / row['backforge']:.0f}×)" if value / row["backforge"] >= 10 else \
        f"{fmt_time(value)} ({value / row['backforge']:.1f}×)"


def report(rows: list[dict[str, Any]], cold: dict[str, Any] | None, args: argparse.Namespace) -> tuple[str, str]:
    """(plain-text table, Markdown section)."""
    head = ["scenario", "bars", "backforge", "backforge e2e", "vectorbt", "backtesting.py", "backtrader", "target"]
    targets = {"a": "< 1 ms", "b": "–", "c": "< 0.5 s"}
    table = []
    for key, row in rows:
        target = targets[key]
        status = ""
        if key == "a":
            status = " ✓" if row["backforge"] < 1e-3 else " ✗"
        elif key == "c" and not args.quick:
            status = " ✓" if row["backforge"] < 0.5 else " ✗"
        table.append([f"({key}) {row['scenario']}", f"{row['bars']:,}", fmt_time(row["backforge"]),
                      fmt_time(row.get("backforge_e2e")), fmt_peer(row, "vectorbt"), fmt_peer(row, "backtesting.py"),
                      fmt_peer(row, "backtrader"), target + status])
    notes = []
    big = next((row for key, row in rows if key == "c"), None)
    if big is not None:
        mem = big["memory"]
        nbytes = mem["nbytes"]
        peak = mem["peak_kib"] * 1024
        base = mem["baseline_kib"] * 1024
        ratio_total, ratio_net = peak / nbytes, (peak - base) / nbytes
        ok = (" ✓" if ratio_net < 2 else " ✗") if not args.quick else " (applies to the full 10-year run)"
        notes.append(f"(c) memory: price arrays (MarketData.nbytes) {nbytes / 2**20:,.0f} MiB; backforge process peak RSS "
                     f"{peak / 2**20:,.0f} MiB = {ratio_total:.2f}× (interpreter, libraries and compiled kernels before the data: "
                     f"{base / 2**20:,.0f} MiB; peak above that: {ratio_net:.2f}× the price arrays, target < 2×{ok}); "
                     f"peak right after generating the data: {mem['after_data_kib'] / 1024:,.0f} MiB.")
        if "vectorbt_memory" in big:
            vm = big["vectorbt_memory"]
            notes.append(f"(c) vectorbt process peak RSS {vm['peak_kib'] / 1024:,.0f} MiB "
                         f"({vm['peak_kib'] * 1024 / nbytes:.2f}× the price arrays).")
        notes.append(f"(c) backforge CPU time per run (median; the time actually spent on a core — the wall time also includes waiting for one on this shared "
                     f"machine): backtest {fmt_time(big['backforge_cpu'])}, end to end {fmt_time(big['backforge_e2e_cpu'])} "
                     f"(the SMA kernels run on all cores, so their CPU time exceeds their wall time when idle).")
        notes.append(f"(c) data generation (backforge.synth, not in the backtest time): {mem['synth_s']:.2f} s; "
                     f"{big['trades']:,} closed trades.")
        if "backtesting_note" in big:
            notes.append(f"(c) {big['backtesting_note']}.")
    if cold is not None and "error" in cold:
        notes.append(f"(d) cold start not measured: {cold['error']}")
    elif cold is not None:
        label = "empty numba cache: compiles everything" if cold["fresh_cache"] else "numba cache already on disk"
        ok = " ✓" if cold["second"] < 2 else " ✗"
        notes.append(f"(d) cold start `python -m backforge.cli demo` (7 assets × 10 y daily), fresh process, command to "
                     f"exit: 1st run ({label}) {cold['first']:.2f} s wall / {cold['first_cpu']:.2f} s CPU; 2nd run "
                     f"(cache on disk) {cold['second']:.2f} s wall / {cold['second_cpu']:.2f} s CPU, target < 2 s{ok}.")
    notes.append(f"Times: median of {args.repeats} warm runs after one warm-up ({max(5 * args.repeats, 50)} for backforge on "
                 f"the daily scenarios); ratios are peer time / backforge time measured in this run. 'backforge e2e' "
                 f"adds backforge's SMA indicators and the crossovers to the backtest.")
    info = machine()
    libs = versions()
    header = (f"Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM, {info['os']}; {info['date']}; "
              f"load average {info['load']} at the end\n"
              f"Versions: " + ", ".join(f"{k} {v}" for k, v in libs.items()))

    widths = [max(len(str(r[i])) for r in [head] + table) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    text = "\n".join([header, "", line(head), line(["-" * w for w in widths]), *map(line, table), "", *notes])

    md = [START_MARK, "## Engine (`benchmarks/bench_engine.py`)", "",
          f"Recorded {info['date']} with `python benchmarks/bench_engine.py{' --quick' if args.quick else ''} --write`.", "",
          f"- Machine: {info['cpu']}, {info['cores']}, {info['ram']} RAM, {info['os']}; load average {info['load']} at the end",
          "- Versions: " + ", ".join(f"{k} {v}" for k, v in libs.items()), "",
          "Long-only SMA cross, market orders at the next open, whole shares, no costs; every engine gets the "
          "same precomputed crossover signals. Times are medians of warm runs; (×) is the peer's time divided "
          "by backforge's in the same run.", "",
          "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
          *("| " + " | ".join(str(c) for c in r) + " |" for r in table), "",
          *(f"- {n}" for n in notes), END_MARK]
    return text, "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small minute scenario (1 year), cached cold start")
    parser.add_argument("--write", action="store_true", help="record the figures in BENCHMARKS.md")
    parser.add_argument("--repeats", type=int, default=None, help="timed warm runs per figure (default 7, quick 5)")
    parser.add_argument("--no-peers", action="store_true", help="time backforge only")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--years", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 7
    args.repeats = max(args.repeats, 5)

    if args.worker:
        print(json.dumps(worker(args.worker, args.years, args.repeats)))
        return 0

    import backforge as bf

    peers = not args.no_peers
    rows = []
    print("(a) 1 asset × 15 years daily ...", flush=True)
    rows.append(("a", daily_scenario("1 asset × 15 y daily (synthetic)", bf.synth(n_assets=1, years=15, bar="1d"),
                                     args.repeats, peers)))
    goog = load_goog()
    if goog is not None:
        print("(b) GOOG daily ...", flush=True)
        rows.append(("b", daily_scenario("GOOG daily (real)", bf.MarketData.from_frames({"GOOG": goog}), args.repeats, peers)))
    else:
        print("(b) skipped: GOOG.csv not found (set BACKFORGE_SHARED_DATA)")
    years = 1.0 if args.quick else 10.0
    print(f"(c) 7 assets × {years:g} years × 1-minute bars, one fresh process per engine ...", flush=True)
    rows.append(("c", big_scenario(years, args.repeats, peers)))
    cold = None
    if not args.no_cold:
        print("(d) cold start ...", flush=True)
        cold = cold_start(fresh_cache=not args.quick)
    text, markdown = report(rows, cold, args)
    print()
    print(text)
    if args.write:
        print(f"\nwrote {write_section('bench_engine', markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
