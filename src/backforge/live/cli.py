"""`backforge paper` and `backforge sessions ...`: paper sessions from the command line (mounted by
:mod:`backforge.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from backforge._cli import command_app, console, friendly_errors
from backforge.errors import ConfigError
from backforge.live.venues import app as venues_app

DEFAULT_ROOT = Path("backforge-sessions")


def _speed(text: str | None) -> float | str | None:
    if text is None:
        return None
    if text == "realtime":
        return "realtime"
    try:
        value = float(text.rstrip("x"))
    except ValueError:
        raise ConfigError(f"--speed takes a number (e.g. 10 for 10x) or 'realtime', got {text!r}", field="speed") from None
    if value <= 0:
        raise ConfigError(f"--speed must be > 0, got {text!r}", field="speed")
    return value


def _broker(spec: str, feed: Any, portfolio: Any):
    from backforge.live.paper import PaperBroker, RemoteBroker

    if spec == "paper":
        return PaperBroker.for_portfolio(portfolio, feed.symbols, has_quotes=feed.has_quotes)
    if spec.startswith("paper:"):
        host, _, port = spec[len("paper:"):].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--broker paper:HOST:PORT expected, got {spec!r}", field="broker")
        return RemoteBroker.from_env((host, int(port)))
    raise ConfigError(f"unknown --broker {spec!r}; use 'paper' or 'paper:HOST:PORT' (venue brokers: backforge live)",
                      field="broker")


app = command_app()
"""``paper``, the ``sessions`` group and ``live`` (:mod:`backforge.live.venues`), added to the main CLI by
:mod:`backforge.cli`."""
app.add_typer(venues_app)


@app.command()
@friendly_errors
def paper(
    strategy: Path = typer.Argument(..., help="Strategy file (YAML or JSON), or a Python file defining a "
                                    "backforge.Strategy class."),
    feed: str = typer.Option("replay", help="Data feed: 'replay' (the strategy's data, or --data)."),
    data: list[Path] | None = typer.Option(None, "--data", help="Data file(s) to replay instead of the strategy's "
                                              "data spec."),
    start: str | None = typer.Option(None, help="First bar to trade (earlier bars warm indicators up)."),
    speed: str | None = typer.Option(None, help="Replay speed: N (N times the bars' own pace) or 'realtime'; "
                                        "default as fast as possible."),
    state: Path | None = typer.Option(None, help="State folder (default backforge-sessions/<strategy name>)."),
    broker: str = typer.Option("paper", help="'paper' (in-process) or 'paper:HOST:PORT' (a paper broker process; "
                               "key in BACKFORGE_PAPER_KEY)."),
    policy: str = typer.Option("adopt", help="On a mismatch with the broker: adopt | halt."),
    force: bool = typer.Option(False, "--force", help="Continue a state folder written by another strategy version."),
    max_bars: int | None = typer.Option(None, min=1, help="Stop after this many bars."),
    strategy_class: str | None = typer.Option(None, "--strategy", help="With a Python file that defines several "
                                              "Strategy classes: the one to run."),
) -> None:
    """Run a strategy file as a paper session: bar by bar, persisted, recoverable (rerun to resume)."""
    from backforge.live.runner import LiveConfig, PaperRunner, _slug
    from backforge.live.session import open_replay

    if feed != "replay":
        raise ConfigError(f"unknown --feed {feed!r}; this command replays data ('replay')", field="feed")
    if policy not in ("adopt", "halt"):
        raise ConfigError(f"--policy must be adopt or halt, got {policy!r}", field="policy")
    if strategy.suffix == ".py":  # a file defining a backforge.Strategy class
        from backforge.live.code_step import open_code_replay

        portfolio, replay = open_code_replay(strategy, data=[str(p) for p in data] if data else None, start=start,
                                             speed=_speed(speed), name=strategy_class)
    else:
        if strategy_class:
            raise ConfigError("--strategy picks a class in a Python strategy file", field="strategy")
        portfolio, replay = open_replay(strategy, data=[str(p) for p in data] if data else None, start=start,
                                        speed=_speed(speed))
    folder = state or DEFAULT_ROOT / _slug(portfolio.name)
    venue = _broker(broker, replay, portfolio)
    runner = PaperRunner(portfolio, replay, venue, folder, config=LiveConfig(reconcile_policy=policy), force=force,
                         reference=replay.data)
    try:
        runner.run(max_bars=max_bars)
        status = runner.status()
    finally:
        runner.close()
    _print_status(console, status, folder)


sessions = command_app(help="List, inspect and control paper sessions.", no_args_is_help=True)
"""``backforge sessions ...``."""


@sessions.command("list")
@friendly_errors
def list_(root: Path = typer.Argument(DEFAULT_ROOT, help="Folder holding session folders.")) -> None:
    """Every session under ROOT."""
    from backforge.live.session import list_sessions

    table = Table(title=f"sessions in {root}")
    for column in ("folder", "session", "bars", "last bar", "state"):
        table.add_column(column)
    for s in list_sessions(root):
        state = "running" if s["running"] else "stopped"
        if s["halted"]:
            state += f", halted: {s['halted']}"
        table.add_row(s["folder"], s["session"], str(s["bars"]), _ts(s["last_bar_ts"]), state)
    console.print(table)

@sessions.command()
@friendly_errors
def status(folder: Path = typer.Argument(..., help="Session state folder."),
           as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Positions, P&L, open orders, last bar, breaker state, lag and heartbeat of a session."""
    from backforge.live.session import session_status

    info = session_status(folder)
    if as_json:
        console.print_json(json.dumps(info, default=str))
    else:
        _print_status(console, info, folder)

def _control(command: str, folder: Path, reason: str = "") -> None:
    from backforge.live.session import send_command

    console.print(send_command(folder, command, reason))

@sessions.command()
@friendly_errors
def halt(folder: Path = typer.Argument(...), reason: str = typer.Option("", help="Why (kept in the log).")) -> None:
    """Halt a session: no order is sent until `resume`."""
    _control("halt", folder, reason)

@sessions.command()
@friendly_errors
def resume(folder: Path = typer.Argument(...)) -> None:
    """Clear a halt or a tripped circuit breaker."""
    _control("resume", folder)

@sessions.command()
@friendly_errors
def flatten(folder: Path = typer.Argument(...)) -> None:
    """Halt and close every position (through the running runner, or at its next start)."""
    _control("flatten", folder)

@sessions.command()
@friendly_errors
def stop(folder: Path = typer.Argument(...)) -> None:
    """Stop the running runner after its current bar."""
    _control("stop", folder)


app.add_typer(sessions, name="sessions")


def _ts(ns: Any) -> str:
    if not ns:
        return "-"
    from backforge._time import format_ns

    return format_ns(int(ns), "minute", offset=False)


def _print_status(console: Any, info: dict, folder: Path) -> None:
    halted = info.get("breakers", {}).get("reason") or info.get("halted") or ""
    console.print(f"[bold]{info.get('session', '?')}[/] [dim]({folder})[/]  bars {info.get('bars', 0)}, last bar "
                  f"{_ts(info.get('last_bar_ts'))}, equity {info.get('equity', float('nan')):,.2f}, "
                  f"P&L {info.get('pnl', float('nan')):+,.2f}" + (f"  [red]halted: {halted}[/]" if halted else ""),
                  highlight=False, soft_wrap=True)
    positions = info.get("positions") or {}
    if positions:
        table = Table(title="positions")
        for column in ("asset", "qty", "avg price", "mark", "unrealized"):
            table.add_column(column, justify="right")
        for symbol, p in positions.items():
            table.add_row(symbol, f"{p['qty']:,.4g}", f"{p['avg_price']:,.4f}", f"{p['mark']:,.4f}", f"{p['unrealized']:+,.2f}")
        console.print(table)
    orders = info.get("open_orders") or []
    if orders:
        console.print(f"{len(orders)} order(s) in flight: " + ", ".join(f"{o['client_order_id']} {o['side']} {o['symbol']} "
                                                                    f"({o['status']})" for o in orders[:10]))
