"""``backforge live STRATEGY.yaml --broker alpaca|oanda|ccxt:EXCHANGE``: build and check a venue adapter for a
strategy file (paper/testnet unless ``--live --confirm-live``), then hand the session to the paper/live
runner (mounted by :mod:`backforge.live.cli`).

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

from backforge.live.broker import Broker, BrokerError, Feed

__all__ = ["parse_broker_spec", "make_broker", "make_feed", "register", "BROKERS"]

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


def register(app, console, friendly_errors) -> None:
    """Add the ``live`` command to the main CLI."""
    import typer
    from rich.table import Table

    @app.command()
    @friendly_errors
    def live(
        strategy: Path = typer.Argument(..., help="Strategy file (YAML or JSON)."),
        broker: str = typer.Option(..., "--broker", help="alpaca, oanda or ccxt:EXCHANGE (e.g. ccxt:binance)."),
        live_mode: bool = typer.Option(False, "--live", help="Trade the real account instead of paper/testnet."),
        confirm_live: bool = typer.Option(False, "--confirm-live", help="Required with --live: real money."),
        config: Optional[Path] = typer.Option(None, "--config", help="Broker keys file (TOML, a table per venue); "
                                              "default: the environment, then ~/.config/backforge/brokers.toml."),
        symbol: list[str] = typer.Option([], "--symbol", help="ASSET=VENUE_SYMBOL when the venue names an asset "
                                         "differently (repeatable), e.g. BTC=BTC/USDT."),
        state: Path = typer.Option(Path("backforge-sessions"), "--state", help="Session state folder."),
        check: bool = typer.Option(False, "--check", help="Connect, validate symbols and show the account, "
                                   "positions and open orders, then stop without trading."),
        rest_url: Optional[str] = typer.Option(None, "--rest-url", hidden=True, help="Venue REST base (proxy/test)."),
        stream_url: Optional[str] = typer.Option(None, "--stream-url", hidden=True, help="Venue stream base."),
    ) -> None:
        """Trade a strategy through a broker or exchange (paper/testnet unless --live --confirm-live)."""
        from backforge.strategy.schema import load_portfolio

        if live_mode and not confirm_live:
            raise BrokerError("--live trades real money; add --confirm-live to go ahead", kind="final",
                              field="live")
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
            _run_session(portfolio, strategy, adapter, broker, mapping, state, live_mode, config, rest_url, stream_url)
        finally:
            adapter.close()


def _run_session(portfolio, strategy: Path, adapter: Broker, spec: str, mapping: dict, state: Path, live_mode: bool,
                 config, rest_url, stream_url) -> None:
    """Hand the checked broker to the paper/live runner of issue 12 (not part of this build yet)."""
    try:
        from backforge.live import runner  # noqa: F401 - the runner lands with the paper-trading issue
    except ImportError:
        raise BrokerError("the live session runner is not part of this build yet; `backforge live ... --check` "
                          "validates the broker, keys and symbols", kind="final") from None
    raise BrokerError("this build's runner has no live entry point wired to `backforge live` yet", kind="final")
