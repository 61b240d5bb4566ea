"""Benchmark (issue 18, compile time): what a fresh install pays before its first results, numba cache empty.

A child interpreter starts with ``NUMBA_CACHE_DIR`` pointing at an empty folder and runs, one after the
other, the steps a new user takes on the same 3-asset, 10-year daily data:

1. ``from_signals`` (SMA 20/50 cross) on in-memory data (writable arrays);
2. the same on that data written to a catalog and loaded back (read-only memory maps);
3. ``run_portfolio`` of ``examples/sma_cross.yaml`` on the catalog data (the strategy runtime);
4. a bar-by-bar ``Simulator`` over the first 50 bars (the paper runner's path).

Each step prints its wall time and the number of kernel specializations numba compiled in it (outermost
``numba:compile`` events). Before every array a kernel reads was made C-contiguous and read-only
(``backforge._jit.frozen``), step 2 compiled the whole engine again for the read-only arrays. With
``--baseline SRC`` the same steps run against another source tree too (e.g. an older checkout's ``src``).
The machine may be shared: the load average is printed; compare the trees of one run.

Usage::

    python benchmarks/bench_compile.py
    python benchmarks/bench_compile.py --baseline /tmp/old/src --label "9506572 (before)" --write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, tempfile, time
from numba.core import event

compiled = [0]
depth = [0]


class Count(event.Listener):
    def on_start(self, ev):
        depth[0] += 1

    def on_end(self, ev):
        depth[0] -= 1
        if depth[0] == 0:
            compiled[0] += 1


event.register("numba:compile", Count())
import numpy as np
import backforge as bf
from backforge.data.catalog import Catalog
from backforge.strategy.indicators import sma

steps = []


def step(name, fn):
    before, start = compiled[0], time.perf_counter()
    value = fn()
    steps.append({"step": name, "seconds": time.perf_counter() - start, "compiled": compiled[0] - before,
                  "value": value})


data = bf.synth(n_assets=3, years=10, seed=7)


def signals(md):
    fast, slow = sma(md.close, None, 20), sma(md.close, None, 50)
    up = (fast > slow) & (np.roll(fast, 1, axis=0) <= np.roll(slow, 1, axis=0))
    down = (fast < slow) & (np.roll(fast, 1, axis=0) >= np.roll(slow, 1, axis=0))
    return up, down


def in_memory():
    up, down = signals(data)
    return round(float(bf.from_signals(data, up, down).equity_values[-1]), 6)


catalog = Catalog(tempfile.mkdtemp())
catalog.write_market(data, bar="1d")
stored = catalog.load(list(data.assets), bar="1d")


def from_catalog():
    up, down = signals(stored)
    return round(float(bf.from_signals(stored, up, down).equity_values[-1]), 6)


def strategy_file():
    return round(float(bf.run_portfolio(sys.argv[1], stored).equity_values[-1]), 6)


def bar_by_bar():
    sim = bf.Simulator(stored.assets, cash=100_000.0)
    for t in range(50):
        sim.on_bar(int(stored.timestamps[t]), open=stored.open[t], high=stored.high[t], low=stored.low[t],
                   close=stored.close[t])
        if t == 10:
            sim.submit(stored.assets[0], "buy", 10)
    return round(float(sim.equity), 6)


step("from_signals, in-memory data", in_memory)
step("from_signals, catalog (read-only memory maps)", from_catalog)
step("run_portfolio examples/sma_cross.yaml, catalog", strategy_file)
step("Simulator, 50 bars one by one", bar_by_bar)
print(json.dumps(steps))
'''


def run_tree(src: Path) -> list[dict]:
    """The steps in a fresh interpreter importing ``src``, with an empty numba cache."""
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as cache:
        env = {**os.environ, "PYTHONPATH": str(src), "NUMBA_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "examples" / "sma_cross.yaml")], env=env,
                              cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{src}: the child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another src folder to measure beside this one")
    parser.add_argument("--label", default=None, help="how the table names the baseline (default: its path)")
    parser.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    trees = {"this tree": REPO / "src"}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    results = {}
    for name, src in trees.items():
        results[name] = run_tree(src)
        total = sum(s["seconds"] for s in results[name])
        print(f"{name} ({src}): {total:.1f} s in all")
        for s in results[name]:
            print(f"  {s['step']:<50} {s['seconds']:7.1f} s  {s['compiled']:3d} compiled  (final equity {s['value']})")
    if "baseline" in results:
        for mine, theirs in zip(results["this tree"], results["baseline"]):
            if mine["value"] != theirs["value"]:
                raise SystemExit(f"{mine['step']}: results differ ({mine['value']} vs {theirs['value']})")
    print(f"load average after: {load_average()}")
    if args.write:
        m = machine()
        head = "| step | this tree | compiled |" + (" baseline | compiled |" if "baseline" in results else "")
        rule = "|---|---:|---:|" + ("---:|---:|" if "baseline" in results else "")
        rows = []
        for i, s in enumerate(results["this tree"]):
            row = f"| {s['step']} | {s['seconds']:.1f} s | {s['compiled']} |"
            if "baseline" in results:
                b = results["baseline"][i]
                row += f" {b['seconds']:.1f} s | {b['compiled']} |"
            rows.append(row)
        totals = f"| **all four** | **{sum(s['seconds'] for s in results['this tree']):.1f} s** | " \
                 f"{sum(s['compiled'] for s in results['this tree'])} |"
        if "baseline" in results:
            totals += f" **{sum(s['seconds'] for s in results['baseline']):.1f} s** | " \
                      f"{sum(s['compiled'] for s in results['baseline'])} |"
        section = "\n".join([
            "<!-- compile:start -->",
            "## Compile time of a fresh install (`benchmarks/bench_compile.py`, issue 18)",
            "Wall time and kernel specializations compiled by the first runs of a new user, numba cache empty, one",
            f"child interpreter per tree (same final equity in both). {m['cpu']}, {m['cores']}, {m['ram']}, "
            f"load average {load_average()}, {m['date']}"
            + (f"; baseline: {args.label or f'`{args.baseline}`'}." if args.baseline else "."),
            "",
            head, rule, *rows, totals,
            "<!-- compile:end -->",
        ])
        print(f"wrote {write_section('compile', section)}")


if __name__ == "__main__":
    main()
