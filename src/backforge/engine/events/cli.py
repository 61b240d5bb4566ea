"""``backforge events ...``: import event data into the catalog and run event strategies from the shell.

* ``backforge events import FILE --format truefx|binance|l2`` — check the whole file (the rules of
  docs/events.md, "Bad input"), then store it in the catalog's ``events/`` folder (nothing is stored
  when a row is bad, unless ``--policy drop``);
* ``backforge events synth`` — store a seeded synthetic L2 market or quote stream;
* ``backforge events list`` — the stored streams;
* ``backforge events run FILE`` — a strategy file with ``data.events`` on the event engine (``--events
  SYMBOL`` runs it on a stored stream instead of the file's source); ``--out DIR`` saves the run.

Bad input is one red line naming the file, the row and the field, exit code 2 — never a traceback.

Examples
--------
>>> from typer.testing import CliRunner
>>> result = CliRunner().invoke(app, ["import", "no-such-file.csv", "--format", "l2"])
>>> result.exit_code, result.output.split(":")[0]
(2, 'error')
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from backforge._cli import check_output_folder, command_app, friendly_errors
from backforge.errors import ConfigError

__all__ = ["app"]

app = command_app(name="events", no_args_is_help=True,
                  help="Import event data (ticks, quotes, L2 books) and run strategies on the event engine.")
CatalogOption = typer.Option(None, "--catalog", "-c", envvar="BACKFORGE_DATA",
                             help="Catalog folder (default ./backforge-data).")
FORMATS = ("truefx", "binance", "l2")


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _store(root: Optional[str]):
    from backforge.data.catalog import DEFAULT_ROOT
    from backforge.data.events import EventStore

    if root is not None and str(root).startswith("lmdb://"):
        raise ConfigError("event streams are stored in a catalog folder, not in ArcticDB", path="--catalog")
    return EventStore(root or DEFAULT_ROOT)


def _describe(data) -> str:
    import numpy as np

    from backforge._time import format_ns
    from backforge.data.events import MarketEventKind

    if len(data) == 0:
        return "0 rows"
    kinds = {MarketEventKind.name(int(k)): int(n) for k, n in zip(*np.unique(data.kind, return_counts=True))}
    counts = ", ".join(f"{n:,} {k}" for k, n in kinds.items())
    return f"{len(data):,} rows ({counts}), {format_ns(int(data.exch_ts[0]))} .. {format_ns(int(data.exch_ts[-1]))}"


def _duration(value: Optional[str], option: str) -> int:
    from backforge._time import parse_duration

    if value is None:
        return 0
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=option) from None


@app.command("import")
@friendly_errors
def import_command(
    path: Path = typer.Argument(..., help="The file: TrueFX quotes CSV, Binance trades (Parquet or CSV) or incremental L2 CSV."),
    format: str = typer.Option(..., "--format", "-f", help="truefx, binance or l2."),
    symbol: Optional[str] = typer.Option(None, "--symbol", "-s", help="Name of the stream (default: the reader's)."),
    tick_size: Optional[float] = typer.Option(None, "--tick-size", help="Price step (default: the reader's)."),
    lot_size: Optional[float] = typer.Option(None, "--lot-size", help="Quantity step (binance, l2)."),
    feed_latency: Optional[str] = typer.Option(None, "--feed-latency", help="local_ts = exch_ts + this, for files without a local clock (e.g. 1ms)."),
    timestamp_unit: str = typer.Option("us", "--timestamp-unit", help="Unit of integer L2 timestamps: s, ms, us or ns."),
    policy: str = typer.Option("error", "--policy", "-p", help="Bad rows: error (refuse the file) or drop them."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Check a tick/quote/L2 file row by row and store it as an event stream."""
    from backforge.data import events as ev

    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r} (truefx, binance or l2)", path="--format")
    if policy not in ("error", "drop"):
        raise ConfigError(f"unknown policy {policy!r} (error or drop)", path="--policy")
    if tick_size is not None and not tick_size > 0:
        raise ConfigError(f"must be > 0, got {tick_size}", path="--tick-size")
    if lot_size is not None and not lot_size > 0:
        raise ConfigError(f"must be > 0, got {lot_size}", path="--lot-size")
    options: dict = {"feed_latency_ns": _duration(feed_latency, "--feed-latency"), "policy": policy}
    if symbol:
        options["symbol"] = symbol
    if tick_size:
        options["tick_size"] = tick_size
    if format == "truefx":
        data = ev.read_truefx_quotes(path, **options)
    elif format == "binance":
        data = ev.read_binance_trades(path, **options, **({"lot_size": lot_size} if lot_size else {}))
    else:
        if timestamp_unit not in ("s", "ms", "us", "ns"):
            raise ConfigError(f"unknown unit {timestamp_unit!r} (s, ms, us or ns)", path="--timestamp-unit")
        data = ev.read_l2_csv(path, timestamp_unit=timestamp_unit, **options, **({"lot_size": lot_size} if lot_size else {}))
    store = _store(catalog)
    name = store.write(data)
    dropped = data.source.get("dropped_rows")
    _console().print(f"[green]stored[/] {name} in {store.root / 'events'}: {_describe(data)}"
                     + (f"; {dropped:,} bad rows dropped" if dropped else ""))


@app.command("synth")
@friendly_errors
def synth_command(
    kind: str = typer.Option("l2", "--kind", help="l2 (a synthetic order book) or quotes (an L1 quote stream)."),
    events: int = typer.Option(100_000, "--events", "-n", help="Rows (l2) or bid/ask ticks (quotes)."),
    seed: int = typer.Option(0, "--seed"),
    symbol: Optional[str] = typer.Option(None, "--symbol", "-s"),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Store a seeded synthetic market (the model is documented in docs/events.md)."""
    from backforge._validate import whole
    from backforge.data import events as ev

    n = whole(events, "--events", 10, maximum=500_000_000)
    s = whole(seed, "--seed", 0, maximum=2**63 - 1)
    options = {"symbol": symbol} if symbol else {}
    if kind == "l2":
        data = ev.synthetic_l2(n_events=n, seed=s, **options)
    elif kind == "quotes":
        data = ev.synthetic_quotes(n_ticks=n, seed=s, **options)
    else:
        raise ConfigError(f"unknown kind {kind!r} (l2 or quotes)", path="--kind")
    store = _store(catalog)
    _console().print(f"[green]stored[/] {store.write(data)} in {store.root / 'events'}: {_describe(data)}")


@app.command("list")
@friendly_errors
def list_command(catalog: Optional[str] = CatalogOption) -> None:
    """The stored event streams."""
    store = _store(catalog)
    console = _console()
    names = store.symbols()
    if not names:
        console.print(f"no event streams in {store.root / 'events'}")
    for name in names:
        console.print(f"{name}: {_describe(store.load(name))}")


@app.command("run")
@friendly_errors
def run_command(
    file: Path = typer.Argument(..., help="A strategy file (YAML/JSON) with data.events."),
    events: Optional[str] = typer.Option(None, "--events", "-e", help="Run on this stored stream instead of the file's source."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Save the run to this folder."),
    report: bool = typer.Option(True, "--report/--no-report", help="With --out: write the HTML tear sheet into it."),
    catalog: Optional[str] = CatalogOption,
) -> None:
    """Run a strategy file on the event engine and print its summary."""
    from backforge.engine.events.language import run_event_portfolio
    from backforge.strategy.schema import load_portfolio

    if out is not None:
        check_output_folder(out, option="--out")
    if not file.is_file():
        raise ConfigError(f"no such file: {file}", path="FILE")
    portfolio = load_portfolio(file)
    data = _store(catalog).load(events) if events else None
    result = run_event_portfolio(portfolio, data, base=file.resolve().parent)
    summary = result.summary()
    console = _console()
    console.print(f"[bold]{portfolio.name}[/] on {result.data_source['symbol']}: {result.data_source['events']:,} events, "
                  f"{result.data_source['evaluations']:,} evaluations, {summary['orders']:,} orders, "
                  f"{summary['fills']:,} fills, fees {summary['fees']:,.2f}")
    console.print(f"final equity {summary['final_equity']:,.2f} (return {summary['total_return']:.2%}, "
                  f"max drawdown {summary['max_drawdown']:.2%})")
    if out is not None:
        console.print(f"[green]saved:[/] {result.save(out, report=report, title=portfolio.name)}")
