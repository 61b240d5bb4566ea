"""Benchmark: the HTML tear sheet of a 7-asset × 10-year × 1-minute run (6,879,600 bars).

Target (issue "Results"): the report of the 7 M-bar minute run stays below 15 MB and opens quickly.

What is measured, in one process, on ``backforge.synth(n_assets=7, years=10, bar="1min")`` with an
SMA 20/50 cross through ``from_signals`` (``size=1/7``, ``fee_rate=0.0005``):

* report generation from a fresh ``Result`` (compiled kernels cached on disk, nothing else warm):
  the metrics, the equal-weight benchmark, every chart series downsampled, tables, HTML;
* the same again on the same ``Result`` (its tables and metrics cached), and from the saved run
  (``load_result(folder).to_html()``, the path of ``backforge report RUN``);
* the file size, and how much of it is plotly.js (embedded once);
* when Chromium is installed: the time from navigation to the last chart drawn, measured inside the
  page by headless Chromium (the harness of ``tests/results/test_report.py``), and whether all
  charts rendered without a console error.

Usage::

    python benchmarks/bench_report.py            # 7 assets × 10 years × 1 minute
    python benchmarks/bench_report.py --quick    # 7 assets × 1 year × 1 minute, a smoke test
    python benchmarks/bench_report.py --write    # also update the bench_report section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB = 15.0
START, END = "<!-- bench_report:start -->", "<!-- bench_report:end -->"


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def browser_load(page: Path) -> dict | None:
    """Open ``page`` in headless Chromium with the test suite's harness; None without Chromium."""
    sys.path.insert(0, str(ROOT / "tests" / "results"))
    try:
        from test_report import find_chromium, open_in_chromium
    except ImportError as exc:  # the harness needs the test dependencies
        print(f"  (browser timing skipped: {exc})")
        return None
    binary = find_chromium()
    if binary is None:
        print("  (browser timing skipped: Chromium not installed)")
        return None
    return open_in_chromium(binary, page, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 year instead of 10")
    parser.add_argument("--write", action="store_true", help="update the bench_report section of BENCHMARKS.md")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium load timing")
    args = parser.parse_args(argv)

    import backforge as bf
    from backforge.strategy.indicators import sma

    years = 1 if args.quick else 10
    print(f"workload: 7 assets × {years} years × 1-minute bars, SMA 20/50 cross (from_signals)")
    data, seconds = timed(lambda: bf.synth(n_assets=7, years=years, bar="1min"))
    print(f"  data: {data.n_bars:,} timestamps × 7 = {data.n_bars * 7:,} bars ({seconds:.1f} s)")
    fast, slow = sma(data.close, data.timestamps, 20), sma(data.close, data.timestamps, 50)
    options = dict(size=1 / 7, fee_rate=0.0005)

    def backtest():
        return bf.from_signals(data, fast > slow, fast < slow, **options)

    backtest()  # load the compiled kernels
    result, run_seconds = timed(backtest)
    print(f"  backtest: {run_seconds:.2f} s, {len(result.trade_records):,} closed trades, "
          f"{len(result.order_records):,} orders")
    tiny = bf.synth(n_assets=1, years=0.2, seed=1)
    bf.from_signals(tiny, tiny.close > tiny.open).to_html()  # load the report's kernels and plotly once

    html, cold = timed(result.to_html)
    _, warm = timed(result.to_html)
    from plotly.offline import get_plotlyjs

    size_mb = len(html.encode()) / 1e6
    plotly_mb = len(get_plotlyjs().encode()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        folder, save_seconds = timed(lambda: result.save(Path(tmp) / "run"))
        run = bf.load_result(folder)
        saved_html, saved_seconds = timed(run.to_html)
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        state = None if args.no_browser else browser_load(page)
    print(f"report: {size_mb:.2f} MB (plotly.js {plotly_mb:.2f} MB, charts and tables {size_mb - plotly_mb:.2f} MB); "
          f"limit {LIMIT_MB:.0f} MB: {'met' if size_mb < LIMIT_MB else 'MISSED'}")
    print(f"  generation from a fresh Result: {cold:.2f} s; again (tables cached): {warm:.2f} s; "
          f"from the saved run: {saved_seconds:.2f} s (save: {save_seconds:.1f} s)")
    rendered = None
    if state is not None:
        ok = state["rendered"] == str(state["charts"]) and not state["problems"] and not state["errors"]
        rendered = (state["renderMs"], state["charts"], ok)
        print(f"  headless Chromium: {state['charts']} charts drawn in {state['renderMs'] / 1000:.2f} s from navigation "
              f"({'no console errors' if ok else 'PROBLEMS: ' + str(state['problems'] + state['errors'])})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}")

    if args.write:
        if args.quick:
            print("--write ignored with --quick (BENCHMARKS.md records the full workload)")
        else:
            write_section(data.n_bars * 7, len(result.trade_records), size_mb, plotly_mb, cold, warm, saved_seconds,
                          rendered, load)
    return 0 if size_mb < LIMIT_MB else 1


def write_section(bars, trades, size_mb, plotly_mb, cold, warm, saved_seconds, rendered, load) -> None:
    """Replace the bench_report section of BENCHMARKS.md (re-read just before writing; other sections
    belong to other benchmarks)."""
    browser = (f"| headless Chromium, navigation to last chart drawn | {rendered[0] / 1000:.2f} s "
               f"({rendered[1]} charts, {'no console errors' if rendered[2] else 'errors!'}) |\n"
               if rendered else "| headless Chromium | not measured (Chromium not installed) |\n")
    section = (
        f"{START}\n"
        "## HTML tear sheet of a minute run (`benchmarks/bench_report.py`)\n\n"
        f"7 assets × 10 years × 1-minute bars ({bars:,} bars), SMA 20/50 cross via `from_signals`, "
        f"{trades:,} closed trades. Target: file < {LIMIT_MB:.0f} MB, opens quickly. Measured on the 2-core "
        f"development machine, load average {load:.1f} while measuring.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| file size | {size_mb:.2f} MB (plotly.js {plotly_mb:.2f} MB embedded once) |\n"
        f"| generation, fresh `Result` (kernels cached) | {cold:.2f} s |\n"
        f"| generation, same `Result` again | {warm:.2f} s |\n"
        f"| generation from the saved run (`backforge report`) | {saved_seconds:.2f} s |\n"
        f"{browser}"
        "\nEvery series is min/max-downsampled to at most 4,002 points; markers and table rows are capped "
        "(largest P&L kept) with a note in the report.\n"
        f"{END}"
    )
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(f"updated {path}")


if __name__ == "__main__":
    sys.exit(main())
