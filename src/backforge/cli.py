"""The `backforge` command line. It only decodes arguments and calls one runner per command; every
`BackforgeError` (and every argument error) becomes one readable red line and exit code 2, never a
traceback — see :mod:`backforge._cli`, shared by every sub-app.

The sub-CLIs (``research/cli.py``, ``judge/cli.py``, ``live/cli.py``, ``service/cli.py``, ``data/cli.py``) are
module-level Typer apps added here with ``add_typer``. Start-up stays small: these modules import Typer and
Rich only, and a command imports the engine, Polars or the judge when it runs — ``backforge --help`` loads
neither numba nor the judge (``tests/test_startup.py``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from backforge import __version__
from backforge._cli import (check_output_file, check_output_folder, command_app, console, err_console, exit_now,
                            friendly_errors, tune_gc)
from backforge.data.cli import app as data_app
from backforge.engine.events.cli import app as events_app
from backforge.errors import BackforgeError, ConfigError
from backforge.judge.cli import app as judge_app
from backforge.live.cli import app as live_app
from backforge.research.cli import app as research_app
from backforge.service.cli import app as service_app

app = command_app(name="backforge", help="Fast, accurate, event-driven backtesting and strategy evaluation.",
                  no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"backforge {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """backforge: backtest strategies in milliseconds, judge them like a quant."""


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        if kind == "pct":
            return f"{value:.2%}"
        if kind == "money":
            return f"{value:,.2f}"
        return f"{value:.3f}"
    return str(value)


def print_summary(result: Any, *, title: str, elapsed: float | None = None) -> None:
    """Print a result's headline figures and per-asset breakdown as Rich tables."""
    s = result.summary()
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("Period", f"{s['start'][:10]} → {s['end'][:10]}"),
        ("Bars × assets", f"{s['bars']:,} × {s['assets']}"),
        ("Final equity", _fmt(s["final_equity"], "money")),
        ("Total return", _fmt(s["total_return"], "pct")),
        ("CAGR", _fmt(s["cagr"], "pct")),
        ("Sharpe", _fmt(s["sharpe"])),
        ("Max drawdown", _fmt(s["max_drawdown"], "pct")),
        ("Closed trades", f"{s['trades']:,}"),
        ("Win rate", _fmt(s["win_rate"], "pct")),
        ("Fees paid", _fmt(s["fees"], "money")),
        ("Open positions", str(s["open_positions"])),
    ]
    if elapsed is not None:
        rows.append(("Backtest time", f"{elapsed * 1000:.1f} ms"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    trades = result.trades
    if trades.height:
        import polars as pl

        per_asset = (
            trades.filter(~pl.col("is_open")).group_by("asset", maintain_order=True)
            .agg(pl.len().alias("trades"), pl.col("pnl").sum().alias("pnl"), (pl.col("pnl") > 0).mean().alias("win_rate"))
            .sort("asset")
        )
        t2 = Table(title="Closed trades by asset", title_justify="left")
        for col in ("asset", "trades", "P&L", "win rate"):
            t2.add_column(col, justify="right" if col != "asset" else "left")
        for row in per_asset.iter_rows(named=True):
            t2.add_row(row["asset"], f"{row['trades']:,}", _fmt(row["pnl"], "money"), _fmt(row["win_rate"], "pct"))
        console.print(t2)


@app.command()
@friendly_errors
def demo(
    assets: int = typer.Option(7, min=1, max=1000, help="Number of synthetic assets."),
    years: float = typer.Option(10.0, min=0.1, max=50, help="Years of data."),
    bar: str = typer.Option("1d", help="Bar size, e.g. 1d, 1h, 15min, 1min."),
    seed: int = typer.Option(7, help="Seed of the synthetic data."),
    fast: int = typer.Option(20, min=1, help="Fast moving-average window (bars)."),
    slow: int = typer.Option(50, min=2, help="Slow moving-average window (bars)."),
    out: Path = typer.Option(Path("backforge-runs"), help="Folder under which the run is saved."),
) -> None:
    """Run a multi-asset SMA-cross strategy on built-in synthetic data, print the results, save the run."""
    from backforge import from_signals, synth
    from backforge.engine.config import config_hash, split_options

    if fast >= slow:
        raise BackforgeError(f"--fast ({fast}) must be smaller than --slow ({slow})", field="fast")
    check_output_folder(out, option="--out")
    from backforge._resources import require_memory
    from backforge.data.synth import bar_count

    cells = float(bar_count(years, bar)) * assets
    require_memory(cells * 8 * 14, what=f"the demo on {years:g} years of {bar} bars × {assets} assets ({cells:,.0f} bars)",
                   hint="use fewer assets or years, or a longer bar", field="assets")  # data, indicators, signals, results
    data = synth(n_assets=assets, years=years, bar=bar, seed=seed)
    console.print(f"[dim]data:[/] {data!r}")
    from backforge.strategy.indicators import sma

    close = data.close
    fast_ma, slow_ma = sma(close, data.timestamps, fast), sma(close, data.timestamps, slow)
    entries, exits = fast_ma > slow_ma, fast_ma < slow_ma
    options = dict(size=1.0 / assets, fee_rate=0.0005, slippage_bps=1.0)
    from_signals(data, entries, exits, **options)  # warm the compiled code (loaded from the disk cache)
    start = time.perf_counter()
    result = from_signals(data, entries, exits, **options)
    elapsed = time.perf_counter() - start
    print_summary(result, title=f"SMA {fast}/{slow} cross on {assets} synthetic assets ({bar} bars)", elapsed=elapsed)
    sim_cfg, sig_cfg = split_options(options)
    run_id = config_hash(sim_cfg, sig_cfg, extra={"demo": [assets, years, bar, seed, fast, slow]})
    result.data_source = {"synthetic": {"n_assets": assets, "years": years, "bar": bar, "seed": seed},
                          "demo": {"signal": "sma_cross", "fast": fast, "slow": slow}}
    folder = result.save(out / f"demo-{run_id}")
    console.print(f"[green]saved run:[/] {folder}", soft_wrap=True)
    t0 = time.perf_counter()
    report_path = result.write_html(folder / "report.html", title=f"SMA {fast}/{slow} cross on {assets} synthetic assets")
    console.print(f"[green]report:[/] {report_path} [dim]({report_path.stat().st_size / 1e6:.1f} MB, "
                  f"{time.perf_counter() - t0:.1f} s)[/]", soft_wrap=True)


@contextlib.contextmanager
def _in_file(strategy: Path):
    """A mistake the data reveals (a ConfigError at a config path) names the file too, as a loading error does."""
    try:
        yield
    except ConfigError as exc:
        if exc.path is None or str(exc.path).startswith(f"{strategy}: "):
            raise
        raise ConfigError(exc.message, path=f"{strategy}: {exc.path}", field=exc.field) from None


def _load(strategy: Path):
    from backforge.strategy.schema import load_portfolio

    return load_portfolio(strategy)


@app.command()
@friendly_errors
def validate(strategy: Path = typer.Argument(..., help="Strategy file (YAML or JSON).")) -> None:
    """Check a strategy file: schema, names, windows and assets. Exit code 2 with the exact path on error."""
    from backforge.strategy.inputs import check_portfolio, load_data  # NumPy only: no compiled code is loaded

    portfolio = _load(strategy)
    data = load_data(portfolio, base=strategy.parent)
    with _in_file(strategy):
        checked = check_portfolio(portfolio, data, start=portfolio.data.start, end=portfolio.data.end)
    console.print(f"[green]valid:[/] {portfolio.name} — {checked.n_strategies} strategies, "
                  f"{checked.n_assets} assets, {checked.n_indicators} indicators, {checked.n_bars:,} bars "
                  f"(checked in {checked.seconds * 1000:.1f} ms)", soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of strategy files."""
    import json

    from backforge.strategy.schema import portfolio_json_schema

    print(json.dumps(portfolio_json_schema(), indent=2))


@app.command()
@friendly_errors
def run(
    strategy: Path = typer.Argument(..., help="Strategy file: YAML/JSON, or a Python file defining a Strategy class."),
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Data file(s) to run on instead of the strategy's data spec."),
    start: Optional[str] = typer.Option(None, help="First bar to trade (earlier bars only warm indicators up)."),
    end: Optional[str] = typer.Option(None, help="Last bar."),
    out: Path = typer.Option(Path("backforge-runs"), help="Folder under which the run is saved."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML tear sheet into the run folder."),
    strategy_class: Optional[str] = typer.Option(None, "--strategy", help="With a Python file that defines several "
                                                                           "Strategy classes: the one to run."),
    fundamentals: Optional[Path] = typer.Option(None, "--fundamentals", help="Point-in-time fundamentals (CSV/Parquet of "
                                                "symbol, field, published_at, value) for `fundamental` indicators."),
) -> None:
    """Run a strategy file, save the run and its HTML report (without --data: the file's data spec)."""
    from backforge.engine.config import config_hash
    from backforge.strategy.compiler import compile_portfolio, load_data, run_compiled

    from backforge.data.fundamentals import read_fundamentals

    check_output_folder(out, option="--out")
    if strategy.suffix == ".py":
        if fundamentals is not None:
            raise BackforgeError("--fundamentals applies to strategy files (YAML/JSON); a Python strategy reads its own data",
                                 field="fundamentals")
        _run_code(strategy, data, start, end, out, report, strategy_class)
        return
    portfolio = _load(strategy)
    fundamentals_table = read_fundamentals(fundamentals) if fundamentals is not None else None  # a bad file fails before the data loads
    market = load_data(portfolio, base=strategy.parent, override=data or None)
    with _in_file(strategy):
        compiled = compile_portfolio(portfolio, market, start=start or portfolio.data.start,
                                     end=end or portfolio.data.end, fundamentals=fundamentals_table)
    t0 = time.perf_counter()
    result = run_compiled(compiled)
    elapsed = time.perf_counter() - t0
    print_summary(result, title=f"{portfolio.name}", elapsed=elapsed)
    events = result.signal_events
    if events is not None and events.height:
        console.print(f"[dim]{events.height} signal events; `backforge explain RUN --at DATE` shows why[/]")
    extra = {"data": market.fingerprint(), "start": start, "end": end}
    if fundamentals_table is not None:
        extra["fundamentals"] = str(fundamentals.resolve())
    run_id = config_hash(portfolio, extra=extra)
    result.data_source = {"strategy_file": str(strategy.resolve()), "data": [str(p.resolve()) for p in data or []],
                          "start": start, "end": end}
    if fundamentals_table is not None:
        result.data_source["fundamentals"] = str(fundamentals.resolve())
    folder = result.save(out / f"{_slug(portfolio.name)}-{run_id}", report=report, title=portfolio.name)
    console.print(f"[green]saved run:[/] {folder}")
    if report:  # written inside the folder before it was swapped in: concurrent runs never collide
        path = folder / "report.html"
        console.print(f"[green]report:[/] {path} [dim]({path.stat().st_size / 1e6:.1f} MB)[/]")


def _run_code(path: Path, data: Optional[list[Path]], start: Optional[str], end: Optional[str], out: Path,
              report: bool, name: Optional[str]) -> None:
    """`backforge run file.py`: the file's Strategy (or compiled) class on its universe / data_spec (or --data)."""
    import hashlib

    from backforge.engine.config import config_hash
    from backforge.strategy.code import backtest, class_market, load_strategy_class, strategy_parameters

    cls = load_strategy_class(path, name, compiled=True)
    market = class_market(cls, path.parent, data, start, end)  # the data spec is validated like a strategy file's
    t0 = time.perf_counter()
    if getattr(cls, "__backforge_compiled__", False):
        from backforge.strategy.compiled import backtest_compiled

        result = backtest_compiled(market, cls)
    else:
        result = backtest(market, cls)
    print_summary(result, title=cls.__name__, elapsed=time.perf_counter() - t0)
    run_id = config_hash(extra={"class": cls.__name__, "parameters": strategy_parameters(cls),
                                "data": market.fingerprint(), "source": path.read_text()})
    result.data_source = {"strategy_file": str(path.resolve()), "class": cls.__name__,
                          "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),  # the judge re-runs it
                          "data": [str(p.resolve()) for p in data or []], "start": start, "end": end}
    folder = result.save(out / f"{_slug(cls.__name__)}-{run_id}", report=report, title=cls.__name__)
    console.print(f"[green]saved run:[/] {folder}")


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower() or "run"


@app.command()
@friendly_errors
def explain(
    run_folder: Path = typer.Argument(..., help="A saved run folder (from `backforge run`)."),
    at: str = typer.Option(..., "--at", help="Date/time to explain, e.g. 2020-03-16."),
) -> None:
    """Show why each strategy's action fired (or did not) at a time: every condition with its values."""
    from backforge.strategy.explain import explain_run

    for line in explain_run(run_folder, at):
        console.print(line, highlight=False)


@app.command()
@friendly_errors
def report(
    run_folder: Path = typer.Argument(..., help="A saved run folder (from `backforge run` or `backforge demo`)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="HTML file to write [default: RUN/report.html]."),
    benchmark: str = typer.Option("equal_weight", help="Benchmark: equal_weight (buy and hold of the run's assets) or none."),
    risk_free: float = typer.Option(0.0, help="Annual risk-free rate as a fraction, e.g. 0.03."),
    title: Optional[str] = typer.Option(None, help="Report title [default: the strategy's name or the folder's]."),
) -> None:
    """Write the HTML tear sheet of a saved run (one self-contained file that works offline); print its path."""
    from backforge.results.result import load_result

    check_output_file(output or run_folder / "report.html", option="--output")
    run = load_result(run_folder)
    t0 = time.perf_counter()
    path = run.write_html(output or run_folder / "report.html", benchmark=benchmark, risk_free=risk_free, title=title)
    console.print(f"[green]report:[/] {path} [dim]({path.stat().st_size / 1e6:.1f} MB, "
                  f"{time.perf_counter() - t0:.1f} s)[/]", soft_wrap=True)


@app.command()
@friendly_errors
def compare(
    runs: list[Path] = typer.Argument(..., help="Saved run folders to compare."),
    all_metrics: bool = typer.Option(False, "--all", help="Show every metric, not only the headline ones."),
) -> None:
    """Print the metrics of saved runs side by side (read from each run's metrics.json; nothing is re-run)."""
    from backforge.results.report import HEADLINE_METRICS, METRIC_DISPLAY, format_metric
    from backforge.results.result import compare_runs, load_result

    loaded = [load_result(path) for path in runs]
    table_data = compare_runs(loaded, keys=None if all_metrics else list(HEADLINE_METRICS))
    names = table_data.columns[1:]
    table = Table(title="Runs side by side (best in green)", title_justify="left")
    table.add_column("metric", style="bold")
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    periods = [f"{r.summary()['start'][:10]} → {r.summary()['end'][:10]}" for r in loaded]
    table.add_row("period", *periods)
    for row in table_data.iter_rows(named=True):
        key = row["metric"]
        label, _, direction = METRIC_DISPLAY.get(key, (key, "float", 0))
        values = [row[name] for name in names]
        present = [v for v in values if v is not None]
        best = (max(present) if direction > 0 else min(present)) if present and direction and len(set(present)) > 1 else None
        cells = [f"[green]{format_metric(key, v)}[/]" if v is not None and v == best else format_metric(key, v)
                 for v in values]
        table.add_row(label, *cells)
    console.print(table)


_MC_METHODS = {"reshuffle": "reshuffle", "bootstrap": "bootstrap", "block": "block_bootstrap",
               "block_bootstrap": "block_bootstrap"}


@app.command()
@friendly_errors
def montecarlo(
    run_folder: Path = typer.Argument(..., help="A saved run folder (from `backforge run`, `demo` or `optimize`)."),
    method: str = typer.Option("reshuffle", help="reshuffle | bootstrap (closed trades) | block (per-bar returns, "
                                                 "stationary block bootstrap)."),
    n: int = typer.Option(2000, "--n", min=1, max=1_000_000, help="Number of simulated paths."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Random seed (same seed, same paths)."),
    ruin: float = typer.Option(0.5, help="Drawdown counted as ruin, a fraction in (0, 1] (0.5 = half the peak)."),
    block_length: Optional[float] = typer.Option(None, help="Mean block length in bars for --method block "
                                                             "(default: Politis-White)."),
) -> None:
    """Monte Carlo of a saved run: the distribution of final equity, drawdown and Sharpe, probability of ruin;
    saved beside the run (montecarlo.json, montecarlo_bands.parquet) for the report's fan chart."""
    from backforge.research.montecarlo import monte_carlo
    from backforge.results.result import load_result
    from backforge.results.montecarlo_io import save_monte_carlo

    if method not in _MC_METHODS:
        from backforge.errors import did_you_mean

        raise ConfigError(f"unknown method {method!r}: use reshuffle, bootstrap or block{did_you_mean(method, _MC_METHODS)}",
                          field="method")
    run = load_result(run_folder)
    started = time.perf_counter()
    mc = monte_carlo(run, method=_MC_METHODS[method], n_simulations=n, seed=seed, ruin_drawdown=ruin,
                     block_length=block_length)
    summary = save_monte_carlo(run_folder, mc)
    steps = "trades" if mc.block_length is None else "bars"
    table = Table(title=f"Monte Carlo: {mc.n_simulations:,} paths of {mc.n_steps:,} {steps} ({mc.method}, seed "
                        f"{mc.seed}, {time.perf_counter() - started:.2f} s)", title_justify="left")
    levels = [k for k in summary["final_equity"] if k.startswith("p")]
    table.add_column("statistic", style="bold")
    for level in levels:
        table.add_column(level, justify="right")
    table.add_column("this run", justify="right")
    table.add_column("its percentile", justify="right")
    start = mc.initial_equity
    rows = [("total return", "final_equity", lambda v: f"{v / start - 1.0:.1%}"),
            ("max drawdown", "max_drawdown", lambda v: f"{v:.1%}"),
            ("Sharpe", "sharpe", lambda v: f"{v:.2f}")]
    for label, key, show in rows:
        stats = summary[key]
        table.add_row(label, *(show(stats[level]) for level in levels), show(summary["original"][key]),
                      f"{summary['original_percentile'][key]:.0%}")
    console.print(table)
    console.print(f"probability of loss: {summary['probability_of_loss']:.1%}   probability of ruin "
                  f"(a {ruin:.0%} drawdown): {summary['probability_of_ruin']:.1%}")
    console.print(f"[green]saved:[/] {run_folder / 'montecarlo.json'} (the report draws the fan chart from it)")


# The sub-CLIs' commands become top-level commands (listed after these), ``data`` a group.
for _sub_app in (research_app, service_app, judge_app, live_app):
    app.add_typer(_sub_app)
app.add_typer(data_app, name="data", help="Import, inspect, check, resample and query market data.")
app.add_typer(events_app, name="events", help="Import tick, quote and L2 data; run strategies on the event engine.")


def main() -> None:
    """Run the command line (``sys.argv``); ends with ``SystemExit`` as Typer apps do."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def console_script() -> None:
    """Entry point of the ``backforge`` console script: :func:`main` with the collector's passes made rarer
    (:func:`~backforge._cli.tune_gc`), then :func:`~backforge._cli.exit_now` (the process ends without the
    interpreter's teardown once the command is done)."""
    tune_gc()
    try:
        main()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


if __name__ == "__main__":
    console_script()
