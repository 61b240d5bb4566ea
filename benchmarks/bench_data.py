"""Data-layer benchmarks: catalog loads, tick CSV import, tick resampling (medians of repeated runs).

    python benchmarks/bench_data.py            # full: 7 symbols x 10 years x 1 min, 10 M ticks
    python benchmarks/bench_data.py --quick    # 7 symbols x 1 year, 1 M ticks
    python benchmarks/bench_data.py --workdir /tmp/bf-bench   # keep (and reuse) the generated files

Targets (issue "Data: importers, catalog ..."): warm load of 6.88 M bars into MarketData < 0.2 s with
resident memory growing by no more than the arrays; 10 M FX ticks imported from CSV (rows/s, against
plain ``polars.read_csv`` in the same run); 10 M ticks resampled to 1-minute bars < 1 s.

Memory is read from /proc/self/status (Linux): ``RssAnon`` is private memory, ``RssFile`` pages of
memory-mapped files (shared with the page cache, dropped by the kernel under pressure).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from backforge.data.catalog import Catalog  # noqa: E402
from backforge.data.synth import gbm  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA"]
MB = 1024 * 1024


def rss() -> dict[str, float]:
    """Resident memory in MB: total, anonymous (private) and file-backed (memory maps)."""
    out = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in out:
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall time of ``runs`` calls (the last result is returned)."""
    times = []
    result = None
    for _ in range(runs):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def row(name: str, seconds: float, extra: str = "") -> None:
    print(f"  {name:<58} {seconds * 1000:10.1f} ms  {extra}")


# ---------------------------------------------------------------------- catalog loads

def bench_load(work: Path, years: float, runs: int) -> None:
    root = work / f"catalog-{years:g}y"
    cat = Catalog(root)
    if not all(s in cat.symbols() for s in SYMBOLS):
        print(f"writing {len(SYMBOLS)} symbols x {years:g} years x 1 min to {root} ...")
        t0 = time.perf_counter()
        md = gbm(len(SYMBOLS), years, bar="1min", seed=7)
        cat.write_market(md, mode="replace")
        print(f"  generated and written in {time.perf_counter() - t0:.1f} s")
        del md
        gc.collect()
    n_bars = cat.info("AAPL", "1min").rows * len(SYMBOLS)
    print(f"\nload {len(SYMBOLS)} symbols, {n_bars:,} bars (1 min), from a warm catalog")

    cat.clear_cache()
    t0 = time.perf_counter()
    md = cat.load(SYMBOLS)
    row("first multi-symbol load (align once + write aligned cache)", time.perf_counter() - t0)
    array_mb = md.nbytes / MB
    del md
    gc.collect()

    before = rss()
    seconds, md = timed(lambda: cat.load(SYMBOLS), runs)
    after = rss()
    row("warm load, 7 symbols -> MarketData [T, A] (aligned cache)", seconds,
        f"arrays {array_mb:.0f} MB; RSS +{after['VmRSS'] - before['VmRSS']:.1f} MB (anon +{after['RssAnon'] - before['RssAnon']:.1f})")
    total = float(np.nansum(md.close)) + float(np.nansum(md.volume))  # touch every page of two fields
    total += float(np.nansum(md.open)) + float(np.nansum(md.high)) + float(np.nansum(md.low))
    touched = rss()
    print(f"  {'after reading every value of every array':<58} {'':>13}  RSS +{touched['VmRSS'] - before['VmRSS']:.1f} MB "
          f"(anon +{touched['RssAnon'] - before['RssAnon']:.1f}, file-backed +{touched['RssFile'] - before['RssFile']:.1f}) "
          f"vs arrays {array_mb:.0f} MB")
    del md
    gc.collect()

    seconds, one = timed(lambda: cat.load("AAPL"), runs)
    row("warm load, 1 symbol (zero-copy memory map)", seconds, f"{one.n_bars:,} bars")
    info = cat.info("AAPL", "1min")
    lo = info.start + (info.end - info.start) * 4 // 10
    hi = lo + (info.end - info.start) // 10
    seconds, part = timed(lambda: cat.load(SYMBOLS, lo, hi), runs)
    row("warm load, 7 symbols, a window of 1/10 of the range", seconds, f"{part.n_bars:,} timestamps")
    del one, part

    plain = Catalog(root, cache_aligned=False)
    seconds, md = timed(lambda: plain.load(SYMBOLS), max(3, runs // 2))
    row("load without aligned cache (mmap + one copy into [T, A])", seconds, f"private copy of {array_mb:.0f} MB")
    del md
    gc.collect()

    import polars as pl

    from backforge.data.market import MarketData

    def naive() -> MarketData:
        frames = {s: pl.read_parquet([str(f) for f in sorted((root / s / "1min").glob("v*/*.parquet"))]) for s in SYMBOLS}
        return MarketData.from_frames(frames)

    seconds, md = timed(naive, 3)
    row("peer: polars.read_parquet + MarketData.from_frames", seconds)
    del md


# ---------------------------------------------------------------------- tick import

def make_ticks(path: Path, n: int) -> None:
    import polars as pl

    rng = np.random.default_rng(0)
    ts = 1_600_000_000_000_000_000 + np.cumsum(rng.integers(1, 200_000_000, n))
    mid = 1.1 + np.cumsum(rng.normal(0, 1e-5, n))
    frame = pl.DataFrame({"timestamp": pl.Series(ts).cast(pl.Datetime("ns", "UTC")), "bid": np.round(mid - 5e-5, 5),
                          "ask": np.round(mid + 5e-5, 5), "volume": rng.integers(1, 10, n).astype(float)})
    frame.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.3f+00:00")).write_csv(path)


def bench_ticks(work: Path, n: int, runs: int) -> None:
    import polars as pl

    from backforge.data.importers import read_file
    from backforge.data.resample import quotes_to_bars, trades_to_bars

    path = work / f"ticks-{n}.csv"
    if not path.exists():
        print(f"\nwriting {n:,} FX ticks to {path} ...")
        make_ticks(path, n)
    print(f"\nimport {n:,} FX quote ticks from CSV ({path.stat().st_size / MB:.0f} MB; timestamp,bid,ask,volume)")
    base, _ = timed(lambda: pl.read_csv(path), runs)
    row("peer: polars.read_csv (timestamps left as text)", base, f"{n / base / 1e6:.2f} M rows/s")
    dates, _ = timed(lambda: pl.read_csv(path, try_parse_dates=True), runs)
    row("peer: polars.read_csv(try_parse_dates=True)", dates, f"{n / dates / 1e6:.2f} M rows/s")
    ours, fd = timed(lambda: read_file(path), runs)
    row("backforge read_file (detect, parse to ns UTC, normalize)", ours, f"{n / ours / 1e6:.2f} M rows/s  ({base / ours:.2f}x plain read_csv)")

    def full() -> Any:
        cat = Catalog(work / "tick-catalog")
        return cat.import_file(path, symbol="EURUSD", mode="replace")

    seconds, report = timed(full, max(1, runs // 2))
    row("backforge import_file (read + quality + Parquet + Arrow cache)", seconds, f"{n / seconds / 1e6:.2f} M rows/s")

    print(f"\nresample {n:,} ticks")
    frame = fd.frame
    seconds, bars = timed(lambda: quotes_to_bars(frame, "1min"), runs)
    row("quotes -> 1 min bid/ask bars", seconds, f"{bars.height:,} bars")
    seconds, bars = timed(lambda: quotes_to_bars(frame, "1min", side="mid"), runs)
    row("quotes -> 1 min mid bars", seconds, f"{bars.height:,} bars")
    trades = frame.select("timestamp", ((pl.col("bid") + pl.col("ask")) / 2).alias("price"), pl.col("volume").alias("size"))
    seconds, bars = timed(lambda: trades_to_bars(trades, "1min"), runs)
    row("trades -> 1 min OHLCV + vwap", seconds, f"{bars.height:,} bars")
    peer = trades.to_pandas().set_index("timestamp")["price"]
    seconds, _ = timed(lambda: peer.resample("1min", closed="left", label="right").ohlc().dropna(), 3)
    row("peer: pandas Series.resample('1min').ohlc()", seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 year of minutes and 1 M ticks")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for generated files (kept); default: a temp folder")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (median reported)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="backforge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    years, ticks = (1.0, 1_000_000) if args.quick else (10.0, 10_000_000)
    print(f"backforge data benchmarks ({'quick' if args.quick else 'full'}), work folder {work}")
    try:
        bench_load(work, years, args.runs)
        bench_ticks(work, ticks, max(3, args.runs // 2))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
