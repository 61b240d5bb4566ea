"""``backforge live STRATEGY.yaml --broker alpaca|oanda|ccxt:EXCHANGE``: build and check a venue adapter for a
strategy file (paper/testnet unless ``--live --confirm-live``), then run the session on the paper/live
runner with the venue's own bar feed (mounted by :mod:`backforge.live.cli`).

Broker construction lives here so the runner, the CLI and tests share one path:

>>> parse_broker_spec("ccxt:binance")
('ccxt', 'binance')
>>> parse_broker_spec("alpaca")
('alpaca', None)
>>> parse_broker_spec("alpacca")
Traceback (most recent call last):
...
backforge.live.broker.BrokerError: unknown broker 'alpacca'; use alpaca, oanda or ccxt:EXCHANGE (did you mean 'alpaca'?)
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional

import typer

from backforge._cli import command_app, console, friendly_errors
from backforge.live.broker import Broker, BrokerError, Feed

__all__ = ["parse_broker_spec", "make_broker", "make_feed", "run_session", "Renamed", "RenamedFeed", "app",
           "BROKERS"]

BROKERS = ("alpaca", "oanda", "ccxt")


def parse_broker_spec(spec: str) -> tuple[str, str | None]:
    """``(kind, exchange)`` of ``alpaca``, ``oanda`` or ``ccxt:EXCHANGE``; a clear error otherwise."""
    kind, _, exchange = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in BROKERS or (kind == "ccxt") != bool(exchange):
        if kind == "ccxt":
            raise BrokerError("ccxt needs an exchange: --broker ccxt:binance (any ccxt exchange id)", kind="final")
        near = difflib.get_close_matches(kind, BROKERS, n=1, cutoff=0.5)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise BrokerError(f"unknown broker {spec!r}; use alpaca, oanda or ccxt:EXCHANGE{hint}", kind="final")
    return kind, (exchange.lower() or None)


def make_broker(spec: str, *, live: bool = False, config_path: str | None = None, rest_url: str | None = None,
                stream_url: str | None = None, **options) -> Broker:
    """The adapter named by ``spec``; paper/practice/testnet unless ``live``. Keys come from the environment or
    the config file (see ``docs/brokers.md``); ``rest_url`` / ``stream_url`` point it at a proxy or a local
    test venue."""
    kind, exchange = parse_broker_spec(spec)
    if kind == "alpaca":
        from backforge.live.alpaca import AlpacaBroker
        return AlpacaBroker(paper=not live, config_path=config_path, url_override=rest_url, stream_url=stream_url,
                            **options)
    if kind == "oanda":
        from backforge.live.oanda import OandaBroker
        return OandaBroker(practice=not live, config_path=config_path, rest_url=rest_url, stream_url=stream_url,
                           **options)
    from backforge.live.ccxt_venue import CcxtBroker
    return CcxtBroker(exchange, sandbox=not live, config_path=config_path, base_url=rest_url, ws_url=stream_url,
                      **options)


_BARS = {  # backforge bar -> (alpaca timeframe, OANDA granularity, ccxt timeframe)
    "1min": ("1Min", "M1", "1m"), "5min": ("5Min", "M5", "5m"), "15min": ("15Min", "M15", "15m"),
    "30min": ("30Min", "M30", "30m"), "1h": ("1Hour", "H1", "1h"), "4h": ("4Hour", "H4", "4h"),
    "1d": ("1Day", "D", "1d"),
}


def make_feed(spec: str, symbols, bar: str = "1min", *, live: bool = False, config_path: str | None = None,
              rest_url: str | None = None, stream_url: str | None = None, **options) -> Feed:
    """The venue's bar feed for ``symbols`` at ``bar`` (one of 1min, 5min, 15min, 30min, 1h, 4h, 1d)."""
    kind, exchange = parse_broker_spec(spec)
    if bar not in _BARS:
        raise BrokerError(f"live bars must be one of {', '.join(_BARS)}, got {bar!r}", kind="final")
    alpaca_tf, oanda_tf, ccxt_tf = _BARS[bar]
    if kind == "alpaca":
        from backforge.live.alpaca import AlpacaFeed
        return AlpacaFeed(symbols, alpaca_tf, config_path=config_path, url_override=rest_url, stream_url=stream_url,
                          **options)
    if kind == "oanda":
        from backforge.live.oanda import OandaFeed
        return OandaFeed(symbols, oanda_tf, practice=not live, config_path=config_path, rest_url=rest_url, **options)
    from backforge.live.ccxt_venue import CcxtFeed
    return CcxtFeed(exchange, symbols, ccxt_tf, sandbox=not live, base_url=rest_url, ws_url=stream_url, **options)


def _symbol_map(universe, pairs: list[str]) -> dict[str, str]:
    mapping = {asset: asset for asset in universe}
    for pair in pairs:
        asset, sep, symbol = pair.partition("=")
        if not sep or not asset or not symbol:
            raise BrokerError(f"--symbol takes ASSET=VENUE_SYMBOL, got {pair!r}", kind="final", field="symbol")
        if asset not in mapping:
            raise BrokerError(f"--symbol {pair!r}: {asset!r} is not in the strategy's universe "
                              f"({', '.join(universe)})", kind="final", field="symbol")
        mapping[asset] = symbol
    return mapping


app = command_app()
"""The ``live`` command, added to the main CLI by :mod:`backforge.live.cli`."""


@app.command()
@friendly_errors
def live(
    strategy: Path = typer.Argument(..., help="Strategy file (YAML or JSON), or a Python file defining a "
                                    "backforge.Strategy class."),
    broker: str = typer.Option(..., "--broker", help="alpaca, oanda or ccxt:EXCHANGE (e.g. ccxt:binance)."),
    live_mode: bool = typer.Option(False, "--live", help="Trade the real account instead of paper/testnet."),
    confirm_live: bool = typer.Option(False, "--confirm-live", help="Required with --live: real money."),
    config: Optional[Path] = typer.Option(None, "--config", help="Broker keys file (TOML, a table per venue); "
                                          "default: the environment, then "
                                          "$XDG_CONFIG_HOME/backforge/brokers.toml (~/.config/backforge/...)."),
    symbol: list[str] = typer.Option([], "--symbol", help="ASSET=VENUE_SYMBOL when the venue names an asset "
                                     "differently (repeatable), e.g. BTC=BTC/USDT."),
    state: Optional[Path] = typer.Option(None, "--state", help="Session state folder (default "
                                         "backforge-sessions/<strategy name>-<broker>)."),
    bar: str = typer.Option("1min", "--bar", help="Bar size traded: 1min, 5min, 15min, 30min, 1h, 4h or 1d."),
    warmup: int = typer.Option(500, "--warmup", min=1, help="Bars of venue history to warm indicators up."),
    policy: str = typer.Option("adopt", help="On a mismatch with the venue: adopt | halt."),
    force: bool = typer.Option(False, "--force", help="Continue a state folder written by another strategy "
                               "version."),
    max_bars: Optional[int] = typer.Option(None, "--max-bars", min=1, help="Stop after this many bars."),
    check: bool = typer.Option(False, "--check", help="Connect, validate symbols and show the account, "
                               "positions and open orders, then stop without trading."),
    rest_url: Optional[str] = typer.Option(None, "--rest-url", hidden=True, help="Venue REST base (proxy/test)."),
    stream_url: Optional[str] = typer.Option(None, "--stream-url", hidden=True, help="Venue stream base."),
    data_url: Optional[str] = typer.Option(None, "--data-url", hidden=True, help="Market-data REST base "
                                           "(Alpaca; default: the venue's)."),
    data_stream_url: Optional[str] = typer.Option(None, "--data-stream-url", hidden=True,
                                                  help="Market-data stream URL (Alpaca)."),
    strategy_class: Optional[str] = typer.Option(None, "--strategy", help="With a Python file that defines several "
                                                 "Strategy classes: the one to trade."),
) -> None:
    """Trade a strategy through a broker or exchange (paper/testnet unless --live --confirm-live)."""
    from rich.table import Table

    from backforge.strategy.schema import load_portfolio

    if live_mode and not confirm_live:
        raise BrokerError("--live trades real money; add --confirm-live to go ahead", kind="final",
                          field="live")
    if policy not in ("adopt", "halt"):
        raise BrokerError(f"--policy must be adopt or halt, got {policy!r}", kind="final", field="policy")
    if bar not in _BARS:
        raise BrokerError(f"--bar must be one of {', '.join(_BARS)}, got {bar!r}", kind="final", field="bar")
    if strategy.suffix == ".py":  # a backforge.Strategy class, on its own universe (live/code_step.py)
        from backforge.live.code_step import CodePortfolio
        from backforge.strategy.code import Strategy, load_strategy_class

        cls = load_strategy_class(strategy, strategy_class, compiled=True)
        portfolio = CodePortfolio(cls, tuple(getattr(cls, "universe", Strategy.universe)))
    else:
        if strategy_class:
            raise BrokerError("--strategy picks a class in a Python strategy file", kind="final", field="strategy")
        portfolio = load_portfolio(strategy)
    mapping = _symbol_map(list(portfolio.universe), symbol)
    adapter = make_broker(broker, live=live_mode, config_path=str(config) if config else None,
                          rest_url=rest_url, stream_url=stream_url)
    mode = "LIVE" if live_mode else "paper/testnet"
    console.print(f"[bold]{portfolio.name}[/] on {broker} ({mode})")
    adapter.connect()
    try:
        instruments = adapter.instruments(list(mapping.values()))
        table = Table(title="instruments")
        for column in ("asset", "venue symbol", "qty step", "min qty", "price tick", "min notional"):
            table.add_column(column)
        for asset, venue_symbol in mapping.items():
            inst = instruments[venue_symbol]
            table.add_row(asset, venue_symbol, f"{inst.qty_step:g}", f"{inst.min_qty:g}", f"{inst.price_tick:g}",
                          f"{inst.min_notional:g}")
        console.print(table)
        account = adapter.account()
        console.print(f"account: {account.currency} cash {account.cash:,.2f}, equity {account.equity:,.2f}, "
                      f"buying power {account.buying_power:,.2f}")
        positions = adapter.positions()
        console.print("positions: " + (", ".join(f"{p.symbol} {p.qty:g}" for p in positions.values()) or "none"))
        orders = adapter.open_orders()
        console.print(f"open orders at the venue: {len(orders)}" + "".join(
            f"\n  {o.client_order_id} {o.side} {o.qty:g} {o.symbol} {o.order_type} {o.status}" for o in orders))
        if check:
            console.print("[green]check passed:[/] keys accepted, every symbol listed")
            return
        separate_data = parse_broker_spec(broker)[0] == "alpaca"  # Alpaca's market data has its own hosts
        feed = make_feed(broker, list(mapping.values()), bar, live=live_mode,
                         config_path=str(config) if config else None,
                         rest_url=data_url if separate_data else (data_url or rest_url),
                         stream_url=data_stream_url if separate_data else (data_stream_url or stream_url))
        folder = state or Path("backforge-sessions") / f"{_slug(portfolio.name)}-{_slug(broker)}"
        status = run_session(portfolio, Renamed(adapter, mapping), RenamedFeed(feed, mapping), folder,
                             policy=policy, force=force, warmup_bars=warmup, max_bars=max_bars)
        from backforge.live.cli import _print_status
        _print_status(console, status, folder)
    finally:
        adapter.close()


def _slug(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "session"


def run_session(portfolio, broker: Broker, feed: Feed, folder: Path, *, policy: str = "adopt", force: bool = False,
                warmup_bars: int = 500, max_bars: int | None = None) -> dict:
    """Run ``portfolio`` on a venue through the paper/live runner (:class:`backforge.live.runner.PaperRunner`):
    warm-up from the venue's history, reconcile with the venue, then one closed bar at a time until
    ``max_bars`` (or a ``sessions stop``). Returns the session status. Rerunning resumes the session."""
    from backforge.live.runner import LiveConfig, PaperRunner

    runner = PaperRunner(portfolio, feed, broker, folder, config=LiveConfig(reconcile_policy=policy), force=force,
                         warmup_bars=warmup_bars)
    try:
        runner.run(max_bars=max_bars)
        return runner.status()
    finally:
        runner.close()
        feed.close()


class Renamed(Broker):
    """A broker seen under the strategy's asset names: ``mapping`` is asset -> venue symbol (e.g.
    ``{"BTC": "BTC/USDT"}``); requests are sent under the venue's symbols and every answer comes back under
    the assets'. Symbols outside the mapping pass unchanged (external orders and positions)."""

    def __init__(self, inner: Broker, mapping: dict[str, str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.native_brackets = inner.native_brackets
        self._to_venue = dict(mapping)
        self._to_asset = {v: a for a, v in mapping.items()}

    def __repr__(self) -> str:
        return f"Renamed({self.inner!r})"

    def _back(self, item):
        if item is None or not hasattr(item, "symbol"):
            return item
        from dataclasses import replace
        return replace(item, symbol=self._to_asset.get(item.symbol, item.symbol))

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()

    def instruments(self, symbols):
        found = self.inner.instruments([self._to_venue.get(s, s) for s in symbols])
        return {s: self._back(found[self._to_venue.get(s, s)]) for s in symbols}

    def submit(self, request):
        from dataclasses import replace
        return self._back(self.inner.submit(replace(request, symbol=self._to_venue.get(request.symbol,
                                                                                        request.symbol))))

    def cancel(self, client_order_id):
        return self._back(self.inner.cancel(client_order_id))

    def replace(self, client_order_id, **changes):
        return self._back(self.inner.replace(client_order_id, **changes))

    def order(self, client_order_id):
        return self._back(self.inner.order(client_order_id))

    def open_orders(self):
        return [self._back(o) for o in self.inner.open_orders()]

    def fills(self, since_ns: int = 0):
        return [self._back(f) for f in self.inner.fills(since_ns)]

    def positions(self):
        return {self._to_asset.get(s, s): self._back(p) for s, p in self.inner.positions().items()}

    def account(self):
        return self.inner.account()

    def poll(self, timeout: float = 0.0):
        return [self._back(u) for u in self.inner.poll(timeout)]


class RenamedFeed(Feed):
    """A venue feed seen under the strategy's asset names (bars keep the venue feed's symbol order)."""

    def __init__(self, inner: Feed, mapping: dict[str, str]) -> None:
        to_asset = {v: a for a, v in mapping.items()}
        self.inner = inner
        self.symbols = tuple(to_asset.get(s, s) for s in inner.symbols)
        self.bar_ns = inner.bar_ns
        self.has_quotes = inner.has_quotes

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()

    def history(self, n_bars: int, *, end_ns: int | None = None):
        from dataclasses import replace
        return replace(self.inner.history(n_bars, end_ns=end_ns), assets=self.symbols)

    def next_bar(self, timeout: float | None = None):
        return self.inner.next_bar(timeout)

    def seek(self, ts_ns: int) -> None:
        self.inner.seek(ts_ns)

    @property
    def finished(self) -> bool:
        return self.inner.finished
