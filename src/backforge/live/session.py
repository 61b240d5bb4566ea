"""The Python API of paper sessions: start one (:func:`run_paper`), read one back (:func:`session_tables`),
and the ``sessions`` controls (:func:`list_sessions`, :func:`session_status`, :func:`send_command`).

Examples
--------
>>> import tempfile
>>> from backforge.strategy.schema import load_portfolio
>>> p = load_portfolio({"name": "demo", "universe": ["AAA"], "cash": 10000, "strategies": [{"name": "s",
...     "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above", "rhs": {"sma": {"window": 20}}},
...     "action": {"buy": {}}}], "data": {"years": 1}})
>>> folder = tempfile.mkdtemp()
>>> runner = run_paper(p, state=folder, start=100)
>>> runner.bars_processed, session_tables(folder)["bars"].height
(152, 152)
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from backforge.live.broker import Broker
from backforge.live.feeds import ReplayFeed, load_replay_data
from backforge.live.paper import PaperBroker
from backforge.live.runner import LiveConfig, PaperRunner
from backforge.live.store import (
    DB_NAME,
    LOCK_NAME,
    SessionError,
    SessionStore,
    iter_sessions,
)
from backforge.strategy import schema as sc

__all__ = [
    "list_sessions",
    "open_replay",
    "run_paper",
    "runner_active",
    "send_command",
    "session_status",
    "session_tables",
]


def open_replay(portfolio: sc.Portfolio | dict | str | Path, *, data: Any = None, start: Any = None,
                speed: float | str | None = None, base: Any = None) -> tuple[sc.Portfolio, ReplayFeed]:
    """The portfolio and a replay feed of the data ``backforge run`` would use (``start``: first traded bar;
    default the strategy's ``data.start``, else the first bar)."""
    if not isinstance(portfolio, sc.Portfolio):
        if isinstance(portfolio, (str, Path)) and base is None:
            base = Path(portfolio).parent
        portfolio = sc.load_portfolio(portfolio)
    market = load_replay_data(portfolio, data=data, base=base)
    if portfolio.data.end is not None:
        from backforge.strategy.compiler import _scalar_ns

        market = market.slice(None, _scalar_ns(portfolio.data.end, "end"))
    if tuple(portfolio.universe) != market.assets and set(portfolio.universe) <= set(market.assets):
        market = market.select(portfolio.universe)
    start = start if start is not None else (portfolio.data.start or 0)
    return portfolio, ReplayFeed(market, start=start, speed=speed)


def run_paper(portfolio: sc.Portfolio | dict | str | Path, *, state: str | Path, data: Any = None, start: Any = None,
              speed: float | str | None = None, broker: Broker | None = None, config: LiveConfig | None = None,
              force: bool = False, max_bars: int | None = None) -> PaperRunner:
    """Replay a strategy's data through a paper session (in-process :class:`PaperBroker` unless ``broker``
    is given) and return the finished (closed) runner."""
    portfolio, feed = open_replay(portfolio, data=data, start=start, speed=speed)
    if broker is None:
        broker = PaperBroker.for_portfolio(portfolio, feed.symbols, has_quotes=feed.has_quotes)
    runner = PaperRunner(portfolio, feed, broker, state, config=config, force=force, reference=feed.data)
    try:
        runner.run(max_bars=max_bars)
    finally:
        runner.close()
    return runner


def _readable(orders: list[dict]) -> list[dict]:
    """The store's order rows with ``request`` as JSON text throughout: a strategy's order keeps its engine fields
    as bytes (``live._engine.engine_rows``), shown here as their JSON object."""
    import json

    from backforge.live._engine import engine_row_fields

    for row in orders:
        if isinstance(row["request"], bytes):
            fields = engine_row_fields(row["request"])
            row["request"] = json.dumps({"engine_order": fields}) if fields is not None else None
    return orders


def session_tables(folder: str | Path) -> dict:
    """A session's bars (equity, cash), orders, fills, signal events and events as Polars DataFrames."""
    import polars as pl

    store = SessionStore.read(folder)
    try:
        bars = store.bars()
        out = {
            "bars": pl.DataFrame(bars, schema=["t", "ts_ns", "fingerprint", "equity", "cash"], orient="row"),
            "orders": pl.DataFrame(_readable(store.orders())) if store.orders() else pl.DataFrame(),
            "fills": pl.DataFrame(store.fills()) if store.fills() else pl.DataFrame(),
            "signals": pl.DataFrame(store.signals(), schema=["t", "ts_ns", "strategy", "asset", "action", "order_id",
                                                             "value", "leaves"], orient="row"),
            "events": store.events(),
        }
    finally:
        store.close()
    return out


def runner_active(folder: str | Path) -> bool:
    """True while a runner holds the folder's lock."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def list_sessions(root: str | Path) -> list[dict]:
    """Every session folder under ``root`` with its id, bars, last bar, halt state and whether it runs."""
    out = []
    for folder in iter_sessions(root):
        store = SessionStore.read(folder)
        try:
            last = store.last_bar()
            out.append({"folder": str(folder), "session": store.session_id, "bars": (last[0] + 1) if last else 0,
                        "last_bar_ts": last[1] if last else None, "halted": store.meta("halted") or "",
                        "running": runner_active(folder)})
        finally:
            store.close()
    return out


def session_status(folder: str | Path) -> dict:
    """The status a runner last wrote (``status.json``), with the store's halt state and whether it runs."""
    folder = Path(folder)
    if not (folder / DB_NAME).is_file():
        raise SessionError("no session here (no session.db)", path=str(folder))
    status_path = folder / "status.json"
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    store = SessionStore.read(folder)
    try:
        status["halted"] = store.meta("halted") or ""
        status["in_flight"] = len(store.in_flight())
    finally:
        store.close()
    status["running"] = runner_active(folder)
    return status


def send_command(folder: str | Path, command: str, reason: str = "") -> str:
    """Leave ``halt|resume|flatten|stop`` for the session's runner. Without a running runner, ``halt`` and
    ``resume`` change the stored state directly and ``flatten``/``stop`` wait for the next start."""
    if command not in ("halt", "resume", "flatten", "stop"):
        raise SessionError(f"unknown command {command!r}; use halt, resume, flatten or stop")
    store = SessionStore.read(folder)
    try:
        running = runner_active(folder)
        if not running and command in ("halt", "resume"):
            store.set_meta("halted", (reason or "halted by the operator") if command == "halt" else "")
            store.event(command, {"reason": reason, "by": "operator"})
            return f"{command}: done (no runner active)"
        store.push_command(f"{command}:{reason}" if reason else command)
        return f"{command}: sent to the running runner" if running else f"{command}: queued for the next start"
    finally:
        store.close()
