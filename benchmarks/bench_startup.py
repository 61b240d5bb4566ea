"""Benchmark (issue 17, start-up): how long the ``backforge`` command takes from start to exit.

Each figure is the median wall time of ``--repeats`` fresh interpreters (after one discarded run, so the
numba disk cache and the OS file cache are warm), measured beside the interpreter doing nothing
(``python -c pass``) in the same run. With ``--baseline SRC`` the same commands run against another
source tree too (e.g. ``/path/to/main/src``), interleaved, and the table shows the ratio.

Commands: ``import backforge``, ``import backforge.cli``, ``backforge --help``, ``backforge validate
examples/sma_cross.yaml`` and ``backforge demo`` (7 synthetic assets × 10 years of daily bars: data,
indicators, two backtests, the printed summary, the saved run and its HTML report). The machine may be
shared: the load average is printed; compare the ratios of one run.

Usage::

    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeats 7 --baseline ../main/src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sma_cross.yaml"


def commands(out: Path) -> dict[str, list[str]]:
    """Name -> arguments after ``python``."""
    return {
        "python -c pass": ["-c", "pass"],
        "import backforge": ["-c", "import backforge"],
        "import backforge.cli": ["-c", "import backforge.cli"],
        "backforge --help": ["-m", "backforge.cli", "--help"],
        "backforge validate": ["-m", "backforge.cli", "validate", str(EXAMPLE)],
        "backforge demo": ["-m", "backforge.cli", "demo", "--out", str(out)],
    }


def run_once(args: list[str], src: Path, cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per command (median)")
    parser.add_argument("--baseline", type=Path, default=None, help="another src folder to measure beside this one")
    parser.add_argument("--only", default=None, help="comma-separated command names (default: all)")
    options = parser.parse_args()
    trees = {"this": REPO / "src"} | ({"baseline": options.baseline.resolve()} if options.baseline else {})
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        table = commands(cwd / "runs")
        names = [n for n in table if options.only is None or n in options.only.split(",") or n == "python -c pass"]
        load_before = os.getloadavg()[0]
        times: dict[tuple[str, str], list[float]] = {}
        for name in names:
            for tree, src in trees.items():
                run_once(table[name], src, cwd)  # warm: numba disk cache, OS file cache, the demo's folders
            for _ in range(options.repeats):
                for tree, src in trees.items():  # interleaved: both trees see the same load
                    times.setdefault((name, tree), []).append(run_once(table[name], src, cwd))
        load_after = os.getloadavg()[0]
    print(f"start-up, median of {options.repeats} fresh interpreters (load average {load_before:.1f} -> "
          f"{load_after:.1f}, {os.cpu_count()} cores)")
    header = f"{'command':<24}{'this':>10}" + (f"{'baseline':>11}{'ratio':>8}" if options.baseline else "")
    print(header)
    for name in names:
        this = statistics.median(times[(name, "this")])
        row = f"{name:<24}{this:>9.3f}s"
        if options.baseline:
            base = statistics.median(times[(name, "baseline")])
            row += f"{base:>10.3f}s{base / this:>7.1f}x"
        print(row)


if __name__ == "__main__":
    main()
