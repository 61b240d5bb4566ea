"""``backforge data ...``: import, inspect, check, generate and query market data from the shell.

The Typer application :data:`app` (also named ``data_app``) is mounted by the main CLI as ``backforge data``.
Every command takes ``--catalog DIR`` (default ``$BACKFORGE_DATA`` or ``./backforge-data``; ``lmdb://...``
selects the ArcticDB backend). Bad input prints one red line naming the file, line and column and exits with code 2
— never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from backforge._cli import check_output_file, command_app, progress_bar
from backforge._cli import friendly_errors as _friendly_errors

__all__ = ["app", "data_app"]

app = command_app(name="data", help="Import, inspect, check, generate and query market data in the catalog.",
                  no_args_is_help=True)
data_app = app
CatalogOption = typer.Option(None, "--catalog", "-c", envvar="BACKFORGE_DATA",
                             help="Catalog folder (default ./backforge-data) or lmdb://PATH for ArcticDB.")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped or captured output: do not squeeze tables into 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=160)
    return console


def _catalog(root: Optional[str]) -> Any:
    from backforge.data.catalog import Catalog

    return Catalog(root)


# ====================================================================== import

@app.command("import")
@_friendly_errors
def import_command(
    path: Path = typer.Argument(..., help="CSV (plain or gzip) or Parquet file. With --ask: the file of bid bars."),
    symbol: Optional[str] = typer.Option(None, "--symbol", "-s", help="Catalog name of the series (not needed for --format fundamentals)."),
    format: str = typer.Option("auto", "--format", "-f", help="auto, generic, yahoo, backtrader, binance, quotes, parquet or fundamentals."),
    ask: Optional[Path] = typer.Option(None, "--ask", help="File of ask bars to merge with the bid bars in PATH into quote bars."),
    bar: Optional[str] = typer.Option(None, "--bar", help="Bar label (1min, 1h, 1d...); inferred from the timestamps by default."),
    policy: str = typer.Option("error", "--policy", "-p", help="Bad rows: error (refuse the file), drop, or repair."),
    mode: str = typer.Option("append", "--mode", help="append (merge with stored data) or replace."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", "-d", help="Field separator (detected by default). Use '\\t' for tab."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated column names for a file without header."),
    time_column: Optional[str] = typer.Option(None, "--time-column", help="Name of the timestamp column."),
    time_format: Optional[str] = typer.Option(None, "--time-format", help="strftime format, or unix_s/unix_ms/unix_us/unix_ns."),
    timezone: Optional[str] = typer.Option(None, "--timezone", "--tz", help="Time zone of naive timestamps (default UTC)."),
    adjust: bool = typer.Option(False, "--adjust", help="Yahoo: store split/dividend-adjusted prices (Adj Close / Close)."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Import a data file into the catalog (all or nothing) and report what the quality policy did."""
    from backforge.errors import DataError

    cat = _catalog(catalog)
    cat.check_writable()
    out = _console()
    if format == "fundamentals":
        from backforge.data.fundamentals import read_fundamentals

        table = read_fundamentals(path)
        stored = cat.write_fundamentals(table, mode=mode)  # type: ignore[arg-type]
        out.print(f"{path}: {len(table):,} fundamentals rows ({len(table.symbols)} symbols, fields {', '.join(table.fields)}); "
                  f"{stored:,} rows stored")
        return
    if not symbol:
        raise DataError("--symbol is required (the catalog name of the series), e.g. --symbol GOOG", field="symbol")
    if delimiter == "\\t":
        delimiter = "\t"
    report = cat.import_file(
        path, symbol=symbol, format=format, ask=ask, bar=bar, policy=policy, mode=mode,  # type: ignore[arg-type]
        delimiter=delimiter, columns=[c.strip() for c in columns.split(",")] if columns else None,
        time_column=time_column, time_format=time_format, timezone=timezone, adjust=adjust,
    )
    out.print(report.summary())


# ====================================================================== list / show / delete

@app.command("list")
@_friendly_errors
def list_command(catalog: Optional[str] = CatalogOption) -> None:
    """List every series in the catalog."""
    from rich.table import Table

    cat = _catalog(catalog)
    series = cat.list()
    out = _console()
    if not series:
        out.print(f"the catalog {cat.uri} is empty; import a file with: backforge data import FILE --symbol NAME")
        return
    table = Table(title=f"catalog {cat.uri}")
    for name, justify in (("symbol", "left"), ("bar", "left"), ("kind", "left"), ("rows", "right"), ("start", "left"),
                          ("end", "left"), ("version", "right"), ("size", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in series:
        table.add_row(s.symbol, s.bar, s.kind, f"{s.rows:,}", s.start_iso, s.end_iso, str(s.version), _size(s.bytes) if s.bytes else "-")
    out.print(table)


@app.command("show")
@_friendly_errors
def show_command(
    symbol: str = typer.Argument(..., help="Symbol to show."),
    bar: Optional[str] = typer.Option(None, "--bar", help="Bar label, when the symbol has several."),
    rows: int = typer.Option(5, "--rows", "-n", help="Rows to print from the start and the end."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Describe one series: range, columns, import history, first and last rows."""
    cat = _catalog(catalog)
    info = cat.info(symbol, bar)
    out = _console()
    out.print(f"[bold]{info.symbol}[/bold] {info.bar} {info.kind}: {info.rows:,} rows, {info.start_iso} → {info.end_iso}, "
              f"version {info.version}{', partitioned by year' if info.partitioned else ''}")
    out.print("columns: " + ", ".join(info.columns))
    for h in info.history[-5:]:
        what = h.get("path") or h.get("from") or "?"
        actions = "; ".join(h.get("actions") or []) or "no quality actions"
        out.print(f"  {h.get('at', '')}: {h.get('mode')} from {what}: +{h.get('added', 0):,} rows, {h.get('replaced', 0):,} replaced ({actions})")
    frame = cat.read(symbol, bar=info.bar)
    head, tail = frame.head(rows), frame.tail(rows) if frame.height > rows else frame.head(0)
    _print_frame(out, head if not tail.height else _concat(head, tail), title=f"first and last {rows} rows" if tail.height else None)


@app.command("delete")
@_friendly_errors
def delete_command(
    symbol: str = typer.Argument(..., help="Symbol to delete."),
    bar: Optional[str] = typer.Option(None, "--bar", help="Delete only this bar size."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Delete a series (or all series of a symbol) from the catalog."""
    cat = _catalog(catalog)
    cat.check_writable()
    targets = [cat.info(symbol, bar)] if bar else [s for s in cat.list() if s.symbol == symbol]
    if not targets:
        cat.info(symbol)  # raises the "no data for symbol" error with a suggestion
    what = ", ".join(f"{s.symbol} {s.bar} ({s.rows:,} rows)" for s in targets)
    if not yes and not typer.confirm(f"delete {what}?"):
        raise typer.Exit(code=1)
    n = cat.delete(symbol, bar)
    _console().print(f"deleted {n} series: {what}")


# ====================================================================== quality

@app.command("quality")
@_friendly_errors
def quality_command(
    target: str = typer.Argument(..., help="A symbol in the catalog, or a data file to check without importing it."),
    bar: Optional[str] = typer.Option(None, "--bar", help="Bar label, when the symbol has several."),
    format: str = typer.Option("auto", "--format", "-f", help="File format when TARGET is a file."),
    gap_factor: float = typer.Option(3.0, "--gap-factor", help="A gap is a step longer than this many median steps."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Report gaps, duplicates, out-of-order rows, bad prices, high < low and price spikes.

    Exit code 1 when error-severity problems are found, 0 otherwise.
    """
    from backforge.data.quality import check

    out = _console()
    path = Path(target)
    if path.is_file() or (path.exists() and not path.is_dir()) or "/" in target:  # symbols never hold a slash
        from backforge.data.importers import read_file

        report = check(read_file(path, format=format), gap_factor=gap_factor)
        title = f"{path} ({report.kind})"
    else:
        cat = _catalog(catalog)
        info = cat.info(target, bar)
        report = check(cat.read(target, bar=info.bar), kind=info.kind, gap_factor=gap_factor)
        title = f"{info.symbol} {info.bar} ({info.kind})"
    out.print(f"[bold]{title}[/bold]")
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    if not report.issues:
        out.print(f"{report.rows:,} rows checked: [green]no issues[/green]")
    else:
        out.print(f"{report.rows:,} rows checked:")
        from rich.markup import escape

        for issue in report.issues:
            out.print(f"  [{colour[issue.severity]}]{issue.severity}[/{colour[issue.severity]}] {issue.code}: {escape(issue.message)}")
    if not report.ok:
        raise typer.Exit(code=1)


# ====================================================================== synth

@app.command("synth")
@_friendly_errors
def synth_command(
    assets: int = typer.Option(7, "--assets", "-a", help="Number of assets (AAPL, MSFT, ... then SYN007, ...)."),
    years: float = typer.Option(10.0, "--years", "-y", help="Years of data."),
    bar: str = typer.Option("1d", "--bar", "-b", help="Bar size: 1min, 5min, 1h, 1d..."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives bit-identical data."),
    calendar: str = typer.Option("equities", "--calendar", help="equities (252 days × 6.5 h) or crypto (24/7)."),
    jumps: float = typer.Option(0.0, "--jumps", help="Average number of price jumps per year (0 = none)."),
    regimes: Optional[str] = typer.Option(None, "--regimes", help="Volatility regime multipliers, e.g. '1,2.5'."),
    regime_duration: str = typer.Option("90d", "--regime-duration", help="Mean length of a volatility regime."),
    fundamentals: bool = typer.Option(True, "--fundamentals/--no-fundamentals", help="Also write synthetic quarterly fundamentals."),
    prefix: str = typer.Option("", "--prefix", help="Prefix added to every symbol name."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Generate deterministic synthetic data (GBM, optional jumps and volatility regimes) into the catalog.

    Each asset comes from its own random stream, so asset i is the same whatever --assets is, and the
    assets are generated and written one at a time (memory stays at one asset's arrays).
    """
    from backforge.data.synth import default_assets, synthetic_fundamentals, synthetic_series
    from backforge.errors import ConfigError

    try:
        multipliers = tuple(float(x) for x in regimes.split(",")) if regimes else ()
    except ValueError:
        raise ConfigError(f"--regimes must be numbers separated by commas, e.g. '1,2.5'; got {regimes!r}", field="regimes") from None
    if assets < 1:
        raise ConfigError(f"--assets must be >= 1, got {assets}", field="assets")
    cat = _catalog(catalog)
    cat.check_writable()
    if cat.root is not None:  # the Parquet catalog keeps an uncompressed cache (48 bytes a bar) next to the Parquet files
        from backforge._resources import require_disk
        from backforge.data.synth import bar_count

        require_disk(cat.root, float(bar_count(years, bar, calendar)) * assets * 80,
                     what=f"{years:g} years of {bar} bars × {assets} assets", hint="use fewer years or assets, or a longer bar",
                     field="years")
    names = tuple(prefix + n for n in default_assets(assets))
    out = _console()
    rows = 0
    with progress_bar(console=out) as progress:
        task = progress.add_task("generating", total=assets)
        for i, name in enumerate(names):
            md = synthetic_series(i, years, bar=bar, seed=seed, calendar=calendar, jump_intensity=jumps,
                                  volatility_regimes=multipliers, regime_duration=regime_duration, name=name)
            cat.write_market(md, bar=bar, mode="replace")
            rows += md.n_bars
            progress.advance(task)
    out.print(f"wrote {assets} synthetic series × {rows // assets:,} {bar} bars ({rows:,} bars) to {cat.uri} (seed {seed})")
    if 1 < assets and rows <= getattr(cat, "aligned_cache_max_cells", 0) and cat.backend == "parquet":
        cat.load(list(names), bar=bar)  # build the aligned cache now: the first load of the whole set is zero-copy too
    if fundamentals:
        table = synthetic_fundamentals(names, years, seed=seed)
        cat.write_fundamentals(table, mode="replace")
        out.print(f"wrote {table.height:,} quarterly fundamentals rows ({', '.join(sorted(set(table['field'].to_list())))})")


# ====================================================================== sql

@app.command("sql")
@_friendly_errors
def sql_command(
    query: str = typer.Argument(..., help="DuckDB SQL over the views bars, quotes, trades, fundamentals and series."),
    max_rows: int = typer.Option(40, "--max-rows", help="Rows to print."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the full result to a .csv or .parquet file."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Run SQL over the catalog with DuckDB, e.g. "SELECT symbol, count(*) FROM bars GROUP BY symbol"."""
    from backforge.errors import DataError

    if output is not None:
        if output.suffix.lower() not in (".csv", ".parquet"):
            raise DataError(f"--output must end in .csv or .parquet, got {output.name!r}", field="output")
        check_output_file(output, option="--output")
    cat = _catalog(catalog)
    result = cat.sql(query)
    out = _console()
    if output is not None:
        _write_atomically(output, result.write_csv if output.suffix.lower() == ".csv" else result.write_parquet)
        out.print(f"wrote {result.height:,} rows to {output}")
        return
    _print_frame(out, result.head(max_rows), title=f"{result.height:,} rows" + (f" (first {max_rows})" if result.height > max_rows else ""))


# ====================================================================== helpers

def _write_atomically(path: Path, write: Any) -> None:
    """``write(tmp)`` into a temporary file next to ``path``, then rename it over ``path`` (no half-written file)."""
    import os
    import uuid

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _print_frame(out: Any, frame: Any, *, title: Optional[str] = None) -> None:
    from rich.table import Table

    table = Table(title=title)
    for name in frame.columns:
        table.add_column(str(name), justify="right" if frame[name].dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _concat(head: Any, tail: Any) -> Any:
    import polars as pl

    return pl.concat([head, tail])


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
