"""Crypto venues through ccxt: :class:`CcxtBroker` and :class:`CcxtFeed` for any ccxt exchange by name,
testnet (``set_sandbox_mode(True)``) unless ``sandbox=False``, with ccxt's rate limiter on.

* REST: the synchronous ccxt client (``create_order`` / ``fetch_order`` / ``cancel_order`` /
  ``fetch_open_orders`` / ``fetch_my_trades`` / ``fetch_balance`` / ``fetch_ohlcv``).
* Streams: ``ccxt.pro`` (``watch_orders``, ``watch_my_trades``, ``watch_ohlcv``) where the exchange has them,
  on a background thread with its own event loop. A dropped stream is reopened after ``reconnect_delay`` and
  the fills and open orders it may have missed are fetched over REST; fills are keyed by the venue's trade
  id, so one seen on both channels is counted once.
* Client order ids go in ``params`` under the venue's own name (:data:`CLIENT_ID_PARAMS`, e.g. Binance
  ``newClientOrderId``; ccxt's unified ``clientOrderId`` for others). A duplicate id returns the existing
  order.
* Trading rules come from ccxt's market structure (precision and limits) -> :class:`Instrument`; orders are
  rounded down to the amount step and onto the price tick, and refused below the minimum amount or cost.
* Spot positions are the base-currency balances of the symbols the session trades.
* Keys: ``BACKFORGE_<EXCHANGE>_API_KEY`` / ``_SECRET`` / ``_PASSWORD`` (also ``<EXCHANGE>_API_KEY`` ...), or
  the ``[ccxt.<exchange>]`` table (``api_key``, ``secret``, ``password``) of the broker config file.

Examples
--------
>>> map_status({"status": "open", "filled": 0.5, "amount": 1.0})
'partially_filled'
>>> CLIENT_ID_PARAMS["binance"], CLIENT_ID_PARAMS["bybit"]
('newClientOrderId', 'orderLinkId')
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Sequence
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from backforge.live._venue import (
    BarAssembler, LoopThread, RetryPolicy, UpdateQueue, bars_to_market_data, call_with_retry, closest_symbols,
    conform_order, load_credentials, log, parse_retry_after, scrub, unknown_symbol_error,
)
from backforge.live.broker import (
    Account, Broker, BrokerError, BrokerOrder, Feed, Fill, Instrument, OrderRequest, Position,
)

__all__ = ["CcxtBroker", "CcxtFeed", "CLIENT_ID_PARAMS", "map_status", "make_exchange"]

CLIENT_ID_PARAMS = {
    "binance": "newClientOrderId", "binanceusdm": "newClientOrderId", "binancecoinm": "newClientOrderId",
    "bybit": "orderLinkId", "okx": "clOrdId", "kucoin": "clientOid", "bitget": "clientOid",
    "gate": "text", "coinbase": "client_order_id", "kraken": "cl_ord_id", "bitmex": "clOrdID",
}
"""The venue's own parameter for a client order id (others get ccxt's unified ``clientOrderId``)."""

EXCHANGE_OPTIONS = {
    "binance": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "defaultType": "spot",
                "warnOnFetchOpenOrdersWithoutSymbol": False},
}
"""Per-exchange ccxt options the adapter sets (spot markets only, no private currency endpoint)."""

_DUPLICATE = ("duplicate order", "duplicate client", "clientorderid is duplicated", "duplicate clordid",
              "order link id is duplicate", "duplicate")


def map_status(order: dict) -> str:
    """backforge's state of a ccxt order structure."""
    status = order.get("status")
    info_status = str((order.get("info") or {}).get("status", "")).upper()
    if info_status == "PENDING_CANCEL":
        return "pending_cancel"
    if status == "open":
        return "partially_filled" if (order.get("filled") or 0) > 0 else "accepted"
    return {"closed": "filled", "canceled": "cancelled", "cancelled": "cancelled", "expired": "expired",
            "rejected": "rejected"}.get(status, "accepted")


def _rebase(urls, http_base: str | None, ws_base: str | None):
    """Every URL under ``urls`` moved to ``http_base`` / ``ws_base`` (path kept): a proxy or a local fake."""
    if isinstance(urls, dict):
        return {k: _rebase(v, http_base, ws_base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        base = ws_base if parts.scheme in ("ws", "wss") else http_base
        if base:
            return base.rstrip("/") + parts.path + (("?" + parts.query) if parts.query else "")
    return urls


def make_exchange(exchange: str, *, pro: bool, credentials: dict, sandbox: bool, timeout: float,
                  base_url: str | None, ws_url: str | None, options: dict | None, rate_limit_ms: float | None = None):
    """A configured ccxt (or ccxt.pro) exchange: sandbox URLs, rate limiter on (``rate_limit_ms`` replaces the
    exchange's base interval between requests, which ccxt multiplies by each endpoint's weight), URLs moved
    when asked."""
    module = ccxt.pro if pro else ccxt
    if exchange not in ccxt.exchanges:
        near = closest_symbols(exchange, ccxt.exchanges)
        raise BrokerError(f"ccxt has no exchange {exchange!r}" + (f"; closest: {', '.join(near)}" if near else ""),
                          kind="final")
    if pro and not hasattr(module, exchange):
        return None
    config = {"enableRateLimit": True, "timeout": int(timeout * 1000), **({"rateLimit": rate_limit_ms} if rate_limit_ms else {}),
              "options": {**EXCHANGE_OPTIONS.get(exchange, {}), **(options or {})}}
    for name, secret in credentials.items():
        config[{"api_key": "apiKey", "secret": "secret", "password": "password"}[name]] = secret.reveal()
    client = getattr(module, exchange)(config)
    if sandbox:
        try:
            client.set_sandbox_mode(True)
        except ccxt.NotSupported:
            raise BrokerError(f"{exchange} has no sandbox/testnet in ccxt; trading it needs --live", kind="final") \
                from None
    if base_url or ws_url:
        client.urls["api"] = _rebase(client.urls["api"], base_url, ws_url)
    return client


class _Ccxt:
    """Shared REST plumbing: classification of ccxt exceptions and bounded retries."""

    venue: str
    _rest: object
    _secrets: tuple
    _retry: RetryPolicy

    def _classify(self, exc: Exception, *, mutating: bool) -> BrokerError:
        text = scrub(f"{self.venue}: {type(exc).__name__}: {exc}", self._secrets)[:400]
        if isinstance(exc, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
            return BrokerError(f"{self.venue}: the API keys were refused ({type(exc).__name__}); check "
                               f"BACKFORGE_{self.venue.upper()}_API_KEY/_SECRET and the testnet/live setting",
                               kind="auth")
        if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
            headers = getattr(self._rest, "last_response_headers", None) or {}
            retry_after = parse_retry_after(next((v for k, v in headers.items() if k.lower() == "retry-after"), None))
            return BrokerError(text, kind="retryable", retry_after=retry_after, status=429)
        if isinstance(exc, ccxt.InvalidNonce):
            return BrokerError(text, kind="retryable")
        if isinstance(exc, ccxt.RequestTimeout):
            return BrokerError(text, kind="ambiguous" if mutating else "retryable")
        if isinstance(exc, ccxt.OnMaintenance):
            return BrokerError(text, kind="retryable")
        if isinstance(exc, ccxt.NetworkError):  # ExchangeNotAvailable (5xx), connection reset ...
            return BrokerError(text, kind="ambiguous" if mutating else "retryable")
        if isinstance(exc, ccxt.OrderNotFound):
            return BrokerError(text, kind="final", status=404)
        if isinstance(exc, ccxt.BaseError):
            return BrokerError(text, kind="final")
        return BrokerError(text, kind="ambiguous" if mutating else "final")

    def _call(self, what: str, fn, *, mutating: bool = False):
        def once():
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified, never swallowed
                raise self._classify(exc, mutating=mutating) from None
        return call_with_retry(once, self._retry, what=f"{self.venue} {what}")


class CcxtBroker(_Ccxt, Broker):
    """Trading on a ccxt exchange (spot); testnet unless ``sandbox=False``.

    ``base_url`` / ``ws_url`` move every REST / websocket URL of the exchange to another host (path kept): a
    proxy, or a local fake venue in tests. ``options`` are passed to ccxt (merged over :data:`EXCHANGE_OPTIONS`).
    """

    native_brackets = False

    def __init__(self, exchange: str, api_key: str | None = None, secret: str | None = None,
                 password: str | None = None, *, sandbox: bool = True, base_url: str | None = None,
                 ws_url: str | None = None, stream: bool = True, options: dict | None = None,
                 config_path: str | None = None, timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 reconnect_delay: float = 1.0, sweep: float = 0.25, rate_limit_ms: float | None = None) -> None:
        self.venue = self.name = exchange
        upper = exchange.upper()
        fields = {"api_key": [f"BACKFORGE_{upper}_API_KEY", f"{upper}_API_KEY"],
                  "secret": [f"BACKFORGE_{upper}_SECRET", f"{upper}_SECRET", f"{upper}_API_SECRET"],
                  "password": [f"BACKFORGE_{upper}_PASSWORD", f"{upper}_PASSWORD"]}
        creds = load_credentials(f"ccxt.{exchange}", fields, given={"api_key": api_key, "secret": secret,
                                                                    "password": password},
                                 config_path=config_path, required=("api_key", "secret"))
        self._creds = creds
        self._secrets = tuple(creds.values())
        self.sandbox = sandbox
        self._settings = dict(credentials=creds, sandbox=sandbox, timeout=timeout, base_url=base_url,
                              ws_url=ws_url, options=options, rate_limit_ms=rate_limit_ms)
        self._rest = make_exchange(exchange, pro=False, **self._settings)
        self._client_id_param = CLIENT_ID_PARAMS.get(exchange, "clientOrderId")
        self._retry = retry
        self._use_stream = stream
        self._reconnect_delay = reconnect_delay
        self._sweep = sweep
        self._order_states: set = set()
        self._updates = UpdateQueue()
        self._instruments: dict[str, Instrument] = {}
        self._symbol_of: dict[str, str] = {}      # client order id -> symbol
        self._client_of: dict[str, str] = {}      # venue order id -> client order id
        self._loop: LoopThread | None = None
        self._pro = None
        self._tasks: list = []
        self._stopping = False
        self._connected = threading.Event()
        self.reconnects = 0
        self._last_fill_ns = 0
        self._connected_at_ns = 0
        self.notes: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"CcxtBroker({self.venue!r}, sandbox={self.sandbox})"

    # ------------------------------------------------------------------ connection and streams
    def connect(self) -> None:
        self._call("markets", self._rest.load_markets)
        self._call("balance", self._rest.fetch_balance)  # bad keys fail here, once
        self._connected_at_ns = time.time_ns()
        if not self._use_stream or self._loop is not None:
            return
        self._loop = LoopThread(f"ccxt-{self.venue}")
        self._pro = self._loop.run(self._make_pro(), 10)
        if self._pro is None or not (self._pro.has.get("watchOrders") and self._pro.has.get("watchMyTrades")):
            log.info("%s has no order/trade websockets in ccxt.pro; updates come from reconciliation", self.venue)
            self._stop_loop()
            return
        self._stopping = False
        self._tasks = [self._loop.spawn(self._watch("orders")), self._loop.spawn(self._watch("trades"))]
        if not self._connected.wait(10.0):
            self.close()
            raise BrokerError(f"{self.venue}: the order stream did not connect within 10 s", kind="retryable")

    async def _make_pro(self):
        return make_exchange(self.venue, pro=True, **self._settings)

    async def _watch(self, what: str) -> None:
        """One ``watch_*`` loop. ccxt.pro resolves a watch only for a message that arrives while it waits, so
        updates of a burst land in its cache; every ``sweep`` seconds (and after each wake-up) the cache is
        read, and dedupe drops what was already handed on."""
        first, subscribing, task = True, True, None
        while not self._stopping:
            try:
                if task is None:
                    task = asyncio.ensure_future(self._pro.watch_orders() if what == "orders"
                                                 else self._pro.watch_my_trades())
                    if subscribing and what == "orders":
                        await self._wait_subscribed(task, first)
                    first = subscribing = False
                done, _ = await asyncio.wait({task}, timeout=self._sweep)
                self._sweep_cache(what)
                if task in done:
                    finished, task = task, None
                    finished.result()  # raises when the stream dropped
            except asyncio.CancelledError:
                if task is not None:
                    task.cancel()
                return
            except ccxt.AuthenticationError as exc:
                log.error("%s stream refused the keys: %s", self.venue, scrub(str(exc), self._secrets))
                return
            except Exception as exc:  # noqa: BLE001 - a dropped or failed stream: reconnect and backfill
                task = None
                if self._stopping:
                    return
                log.warning("%s %s stream dropped (%s); reconnecting in %.2f s", self.venue, what,
                            type(exc).__name__, self._reconnect_delay)
                first, subscribing = False, True
                await asyncio.sleep(self._reconnect_delay)

    def _sweep_cache(self, what: str) -> None:
        if what == "orders":
            for o in list(self._pro.orders or []):
                key = (o.get("id"), o.get("status"), o.get("filled"))
                if key not in self._order_states:
                    self._order_states.add(key)
                    self._updates.put(self._map_order(o))
        else:
            for t in list(self._pro.myTrades or []):
                if not self._updates.seen(f"{t['symbol']}:{t['id']}"):
                    self._updates.put(self._map_trade(t))

    async def _wait_subscribed(self, task, first: bool) -> None:
        """Wait until the user-data subscription is open again (or the watch ended), then mark the stream
        connected and, after a reconnect, backfill over REST."""
        for _ in range(200):
            if task.done():
                break
            client = next(iter(self._pro.clients.values()), None) if self._pro.clients else None
            if client is not None and getattr(client, "subscriptions", None) and client.connected.done():
                break
            await asyncio.sleep(0.02)
        if first:
            self._connected.set()
        else:
            self.reconnects += 1
            await asyncio.get_running_loop().run_in_executor(None, self._backfill)

    def _backfill(self) -> None:
        try:
            since = max(self._last_fill_ns, self._connected_at_ns) - 60 * 1_000_000_000  # see AlpacaBroker
            for fill in self.fills(since):
                self._updates.put(fill)
            for order in self.open_orders():
                self._updates.put(order)
        except BrokerError as exc:
            log.warning("%s backfill after reconnect failed: %s", self.venue, exc)

    def _stop_loop(self) -> None:
        if self._loop is None:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._pro is not None:
            try:
                self._loop.run(self._pro.close(), 10)
            except Exception as exc:  # noqa: BLE001
                log.debug("%s: closing the websocket client: %s", self.venue, type(exc).__name__)
        self._loop.stop()
        self._loop, self._pro, self._tasks = None, None, []

    def close(self) -> None:
        self._stop_loop()
        self._connected.clear()
        session = getattr(self._rest, "session", None)
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ mapping
    def _map_order(self, o: dict, reason: str = "") -> BrokerOrder:
        client_id = o.get("clientOrderId") or (o.get("info") or {}).get("clientOrderId") or str(o.get("id"))
        if o.get("id") is not None:
            self._client_of[str(o["id"])] = client_id
        self._symbol_of[client_id] = o["symbol"]
        trigger = o.get("triggerPrice") or o.get("stopPrice")
        kind = str(o.get("type") or "market").lower()
        if trigger:
            kind = "stop_limit" if "limit" in kind else "stop"
        elif kind not in ("market", "limit"):
            kind = "limit" if o.get("price") else "market"
        return BrokerOrder(
            client_order_id=client_id, venue_order_id=str(o.get("id")), symbol=o["symbol"], side=o["side"],
            qty=float(o.get("amount") or 0.0), order_type=kind, status=map_status(o),
            filled_qty=float(o.get("filled") or 0.0), avg_fill_price=o.get("average"),
            limit_price=o.get("price") if kind in ("limit", "stop_limit") else None,
            stop_price=float(trigger) if trigger else None,
            ts_ns=int(o.get("lastUpdateTimestamp") or o.get("timestamp") or 0) * 1_000_000, reason=reason)

    def _map_trade(self, t: dict) -> Fill:
        venue_id = str(t.get("order"))
        info = t.get("info") or {}
        client_id = self._client_of.get(venue_id) or info.get("c") or info.get("clientOrderId")
        if client_id is None:
            found = self._call("order", lambda: self._rest.fetch_order(venue_id, t["symbol"]))
            client_id = self._map_order(found).client_order_id
        fee = (t.get("fee") or {}).get("cost") or 0.0
        taker = t.get("takerOrMaker")
        self._last_fill_ns = max(self._last_fill_ns, int(t.get("timestamp") or 0) * 1_000_000)
        return Fill(fill_id=f"{t['symbol']}:{t['id']}", client_order_id=client_id, venue_order_id=venue_id,
                    symbol=t["symbol"], side=t["side"], qty=float(t["amount"]), price=float(t["price"]),
                    fee=float(fee), ts_ns=int(t.get("timestamp") or 0) * 1_000_000,
                    liquidity=taker if taker in ("maker", "taker") else "")

    # ------------------------------------------------------------------ Broker
    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        markets = self._call("markets", self._rest.load_markets)
        out = {}
        for symbol in symbols:
            market = markets.get(symbol)
            if market is None or market.get("active") is False:
                raise unknown_symbol_error(self.venue, symbol, [s for s, m in markets.items()
                                                                if m.get("active") is not False])
            out[symbol] = self._instruments[symbol] = self._instrument(market)
        return out

    def _instrument(self, market: dict) -> Instrument:
        precision, limits = market.get("precision") or {}, market.get("limits") or {}

        def step(value):
            if value is None:
                return 0.0
            if self._rest.precisionMode == ccxt.TICK_SIZE:
                return float(value)
            if self._rest.precisionMode == ccxt.DECIMAL_PLACES:
                return 10.0 ** -int(value)
            return 0.0  # significant digits: no fixed grid
        return Instrument(market["symbol"], qty_step=step(precision.get("amount")),
                          min_qty=float((limits.get("amount") or {}).get("min") or 0.0),
                          price_tick=step(precision.get("price")),
                          min_notional=float((limits.get("cost") or {}).get("min") or 0.0),
                          venue_symbol=str(market.get("id", "")))

    def submit(self, request: OrderRequest) -> BrokerOrder:
        if request.take_profit is not None or request.stop_loss is not None:
            raise BrokerError(f"{self.venue} through ccxt has no native bracket orders; the runner emulates "
                              "take-profit and stop-loss", kind="final")
        instrument = self._instruments.get(request.symbol) or self.instruments([request.symbol])[request.symbol]
        request, notes = conform_order(request, instrument, venue=self.venue)
        self.notes[request.client_order_id] = notes
        self._symbol_of[request.client_order_id] = request.symbol
        params: dict = {self._client_id_param: request.client_order_id}
        if request.stop_price is not None:
            params["stopPrice" if self.venue.startswith("binance") else "triggerPrice"] = request.stop_price
        if request.order_type in ("limit", "stop_limit"):
            params["timeInForce"] = request.time_in_force.upper()
        if request.reduce_only:
            params["reduceOnly"] = True
        kind = "limit" if request.order_type in ("limit", "stop_limit") else "market"
        try:
            order = self._call("submit", lambda: self._rest.create_order(
                request.symbol, kind, request.side, request.qty, request.limit_price, dict(params)), mutating=True)
        except BrokerError as exc:
            if exc.kind == "final" and any(d in str(exc).lower() for d in _DUPLICATE):
                existing = self.order(request.client_order_id)
                if existing is not None:
                    return existing
            raise
        if not order.get("clientOrderId"):
            order["clientOrderId"] = request.client_order_id
        for trade in order.get("trades") or []:  # fills in the answer (market orders)
            trade.setdefault("symbol", request.symbol)
            trade.setdefault("order", order.get("id"))
            trade.setdefault("side", request.side)
        return self._map_order(order, reason="; ".join(notes))

    def _find(self, client_order_id: str) -> dict | None:
        symbols = [self._symbol_of[client_order_id]] if client_order_id in self._symbol_of else list(self._instruments)
        for symbol in symbols:
            try:
                return self._call("order", lambda: self._rest.fetch_order(
                    None, symbol, {"origClientOrderId": client_order_id, "clientOrderId": client_order_id}))
            except BrokerError as exc:
                if exc.status != 404:
                    raise
        return None

    def order(self, client_order_id: str) -> BrokerOrder | None:
        found = self._find(client_order_id)
        return None if found is None else self._map_order(found)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        current = self.order(client_order_id)
        if current is None or not current.is_open:
            return current
        try:
            self._call("cancel", lambda: self._rest.cancel_order(current.venue_order_id, current.symbol),
                       mutating=True)
        except BrokerError as exc:
            if exc.status != 404:  # gone meanwhile (filled): report the venue's state below
                raise
        return self.order(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        return [self._map_order(o) for o in self._call("open orders", self._rest.fetch_open_orders)]

    def fills(self, since_ns: int = 0) -> list[Fill]:
        out: list[Fill] = []
        since_ms = since_ns // 1_000_000 if since_ns > 0 else None
        symbols = sorted(set(self._instruments) | set(self._symbol_of.values()))
        for symbol in symbols:
            cursor = since_ms
            for _ in range(1000):  # bounded paging
                page = self._call("fills", lambda: self._rest.fetch_my_trades(symbol, cursor, 500))
                out.extend(self._map_trade(t) for t in page if t["timestamp"] * 1_000_000 >= since_ns)
                if len(page) < 500:
                    break
                cursor = page[-1]["timestamp"] + 1
        out.sort(key=lambda f: (f.ts_ns, f.fill_id))
        return out

    def _tracked(self) -> list[str]:
        return sorted(set(self._instruments) | set(self._symbol_of.values()))

    def positions(self) -> dict[str, Position]:
        balance = self._call("balance", self._rest.fetch_balance)
        markets = self._rest.markets or {}
        out = {}
        for symbol in self._tracked():
            base = (markets.get(symbol) or {}).get("base") or symbol.split("/")[0]
            qty = float((balance.get(base) or {}).get("total") or 0.0)
            if qty:
                out[symbol] = Position(symbol, qty)
        return out

    def account(self) -> Account:
        balance = self._call("balance", self._rest.fetch_balance)
        markets = self._rest.markets or {}
        tracked = self._tracked()
        quote = (markets.get(tracked[0]) or {}).get("quote", "USDT") if tracked else "USDT"
        cash = float((balance.get(quote) or {}).get("total") or 0.0)
        free = float((balance.get(quote) or {}).get("free") or 0.0)
        equity = cash
        if tracked:
            tickers = self._call("tickers", lambda: self._rest.fetch_tickers(tracked))
            for symbol in tracked:
                base = (markets.get(symbol) or {}).get("base")
                last = (tickers.get(symbol) or {}).get("last")
                if base and last:
                    equity += float((balance.get(base) or {}).get("total") or 0.0) * float(last)
        return Account(currency=quote, cash=cash, equity=equity, buying_power=free)

    def poll(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        return self._updates.drain(timeout)


_TIMEFRAME_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
                 "w": 7 * 86_400_000_000_000}


class CcxtFeed(_Ccxt, Feed):
    """Closed candles of a ccxt exchange: history from ``fetch_ohlcv``, live bars from ``watch_ohlcv``
    (a candle is closed when the first update of the next one arrives); after a stream drop the missed candles
    are fetched over REST. Exchanges without ``watchOHLCV`` are polled with ``fetch_ohlcv``."""

    def __init__(self, exchange: str, symbols: Sequence[str], timeframe: str = "1m", *, sandbox: bool = True,
                 base_url: str | None = None, ws_url: str | None = None, options: dict | None = None,
                 timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(), reconnect_delay: float = 1.0,
                 poll_interval: float = 5.0, sweep: float = 0.25, rate_limit_ms: float | None = None) -> None:
        self.venue = exchange
        self._sweep = sweep
        self.symbols = tuple(symbols)
        self.timeframe = timeframe
        try:
            self.bar_ns = int(timeframe[:-1]) * _TIMEFRAME_NS[timeframe[-1]]
        except (ValueError, KeyError):
            raise BrokerError(f"timeframe must look like 1m, 15m, 1h or 1d, got {timeframe!r}", kind="final") from None
        self._secrets = ()
        self._settings = dict(credentials={}, sandbox=sandbox, timeout=timeout, base_url=base_url, ws_url=ws_url,
                              options=options, rate_limit_ms=rate_limit_ms)
        self._rest = make_exchange(exchange, pro=False, **self._settings)
        self._retry = retry
        self._reconnect_delay = reconnect_delay
        self._poll_interval = poll_interval
        self._assembler = BarAssembler(self.symbols)
        self._latest: dict[str, list] = {}
        self._loop: LoopThread | None = None
        self._pro = None
        self._tasks: list = []
        self._stopping = False
        self._subscribed: set[str] = set()
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"CcxtFeed({self.venue!r}, {list(self.symbols)}, {self.timeframe!r})"

    max_history_bars = 100_000
    page_size = 1000

    def _candles(self, symbol: str, since_ms: int | None, limit: int) -> list:
        return self._call("candles", lambda: self._rest.fetch_ohlcv(symbol, self.timeframe, since_ms, limit))

    def history(self, n_bars: int, *, end_ns: int | None = None):
        markets = self._call("markets", self._rest.load_markets)
        for symbol in self.symbols:
            if symbol not in markets:
                raise unknown_symbol_error(self.venue, symbol, markets)
        n_bars = min(n_bars, self.max_history_bars)
        end = end_ns if end_ns is not None else time.time_ns()
        since_ms = (end - n_bars * self.bar_ns) // 1_000_000 + 1
        end_ms = end // 1_000_000
        rows = {}
        for symbol in self.symbols:
            candles, cursor = [], since_ms
            for _ in range(n_bars // self.page_size + 2):  # forward pages (venues cap candles per request)
                page = self._candles(symbol, cursor, self.page_size)
                candles.extend(c for c in page if c[0] <= end_ms)
                if len(page) < self.page_size or not page or page[-1][0] >= end_ms:
                    break
                cursor = page[-1][0] + 1
            rows[symbol] = [(c[0] * 1_000_000, c[1], c[2], c[3], c[4], c[5]) for c in candles
                            if end_ns is not None or (c[0] * 1_000_000 + self.bar_ns) <= end]
        return bars_to_market_data(self.symbols, rows, n_bars)

    def connect(self) -> None:
        if self._loop is not None:
            return
        self._call("markets", self._rest.load_markets)
        self._loop = LoopThread(f"ccxt-{self.venue}-bars")
        self._pro = self._loop.run(self._make_pro(), 10)
        self._stopping = False
        if self._pro is not None and self._pro.has.get("watchOHLCV"):
            self._tasks = [self._loop.spawn(self._watch(s)) for s in self.symbols]
        else:
            self._tasks = [self._loop.spawn(self._poll())]
        deadline = time.monotonic() + 10
        while len(self._subscribed) < len(self._tasks) and time.monotonic() < deadline:
            time.sleep(0.02)

    async def _make_pro(self):
        return make_exchange(self.venue, pro=True, **self._settings)

    def _on_candle(self, symbol: str, candle: list) -> None:
        latest = self._latest.get(symbol)
        if latest is not None and candle[0] > latest[0]:  # a new candle opened: the previous one is closed
            self._assembler.add(symbol, latest[0] * 1_000_000, *latest[1:6])
        if latest is None or candle[0] >= latest[0]:
            self._latest[symbol] = list(candle)

    async def _watch(self, symbol: str) -> None:
        reconnecting, task = False, None
        while not self._stopping:
            try:
                if task is None:
                    task = asyncio.ensure_future(self._pro.watch_ohlcv(symbol, self.timeframe))
                    await asyncio.sleep(0.05)
                    self._subscribed.add(symbol)
                    if reconnecting:
                        reconnecting = False
                        self.reconnects += 1
                        await asyncio.get_running_loop().run_in_executor(None, self._catch_up, symbol)
                done, _ = await asyncio.wait({task}, timeout=self._sweep)
                for candle in list((self._pro.ohlcvs.get(symbol) or {}).get(self.timeframe) or []):
                    self._on_candle(symbol, candle)
                if task in done:
                    finished, task = task, None
                    finished.result()
            except asyncio.CancelledError:
                if task is not None:
                    task.cancel()
                return
            except Exception as exc:  # noqa: BLE001 - dropped: reconnect, then fetch what was missed
                task = None
                if self._stopping:
                    return
                log.warning("%s candle stream for %s dropped (%s); reconnecting", self.venue, symbol,
                            type(exc).__name__)
                reconnecting = True
                await asyncio.sleep(self._reconnect_delay)

    def seek(self, ts_ns: int) -> None:
        """Continue after ``ts_ns``: the closed candles since then (missed while the runner was down) first."""
        now = time.time_ns()
        rows = []
        for symbol in self.symbols:
            cursor = ts_ns // 1_000_000 + 1
            for _ in range(1000):
                page = self._candles(symbol, cursor, self.page_size)
                rows.extend((symbol, c[0] * 1_000_000, *c[1:6]) for c in page
                            if c[0] * 1_000_000 > ts_ns and c[0] * 1_000_000 + self.bar_ns <= now)
                if len(page) < self.page_size:
                    break
                cursor = page[-1][0] + 1
        self._assembler.rewind(ts_ns, rows)

    def _catch_up(self, symbol: str) -> None:
        latest = self._latest.get(symbol)
        since = latest[0] if latest else None
        try:
            for candle in self._candles(symbol, since, 500):
                self._on_candle(symbol, candle)
        except BrokerError as exc:
            log.warning("%s candle backfill for %s failed: %s", self.venue, symbol, exc)

    async def _poll(self) -> None:
        for symbol in self.symbols:
            self._subscribed.add(symbol)
        while not self._stopping:
            for symbol in self.symbols:
                await asyncio.get_running_loop().run_in_executor(None, self._catch_up, symbol)
            await asyncio.sleep(self._poll_interval)

    def next_bar(self, timeout: float | None = None):
        return self._assembler.next(timeout)

    def close(self) -> None:
        session = getattr(self._rest, "session", None)
        if session is not None:
            session.close()
        if self._loop is None:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._pro is not None:
            try:
                self._loop.run(self._pro.close(), 10)
            except Exception as exc:  # noqa: BLE001
                log.debug("%s: closing the websocket client: %s", self.venue, type(exc).__name__)
        self._loop.stop()
        self._loop, self._pro, self._tasks = None, None, []
