"""Alpaca (US equities, paper by default) on ``alpaca-py``: :class:`AlpacaBroker` on ``TradingClient`` and
``TradingStream``, :class:`AlpacaFeed` on ``StockHistoricalDataClient`` and ``StockDataStream``.

* Orders: market, limit, stop, stop-limit natively; a request with ``take_profit``/``stop_loss`` is sent as
  ``order_class=bracket``. The runner's ``client_order_id`` is Alpaca's ``client_order_id``; a second submit
  with a known id (Alpaca answers 422 "client_order_id must be unique") returns the existing order.
* Fills: the trade-updates stream, backfilled after a reconnect from ``/v2/account/activities/FILL``. A fill's
  id is ``"<order id>:<cumulative qty>"``, the same on both channels, so a fill seen twice is counted once.
* Errors: 401 (and a 403 that is not "insufficient buying power") are ``auth``; 429 is ``retryable`` after
  ``Retry-After``; a timeout or a 5xx on a submit is ``ambiguous``; other 4xx are ``final``. The library's own
  fixed-wait 429 loop is bypassed, :class:`~backforge.live._venue.RetryPolicy` replaces it.
* Keys: ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` (or ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``), or the
  ``[alpaca]`` table (``key_id``, ``secret_key``) of the broker config file.

Examples
--------
>>> map_status("new"), map_status("partially_filled"), map_status("canceled"), map_status("done_for_day")
('accepted', 'partially_filled', 'cancelled', 'accepted')
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from typing import Sequence

from backforge.live._venue import (
    BarAssembler, RetryPolicy, UpdateQueue, bars_to_market_data, call_with_retry,
    conform_order, dt_ns, http_error_kind, load_credentials, log, ns_iso, parse_retry_after, scrub,
    unknown_symbol_error,
)
from backforge.live.broker import (
    Account, Broker, BrokerError, BrokerOrder, Feed, Fill, Instrument, OrderRequest, Position,
)

with warnings.catch_warnings():  # alpaca-py imports websockets.legacy, deprecated in websockets >= 14
    warnings.simplefilter("ignore", DeprecationWarning)
    import requests
    from alpaca.common.exceptions import APIError
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.live import StockDataStream
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
    from alpaca.trading.requests import (
        GetAssetsRequest, GetOrdersRequest, LimitOrderRequest, MarketOrderRequest, ReplaceOrderRequest,
        StopLimitOrderRequest, StopLossRequest, StopOrderRequest, TakeProfitRequest,
    )
    from alpaca.trading.stream import TradingStream

__all__ = ["AlpacaBroker", "AlpacaFeed", "map_status", "CREDENTIAL_VARIABLES"]

CREDENTIAL_VARIABLES = {"key_id": ("APCA_API_KEY_ID", "ALPACA_API_KEY"),
                        "secret_key": ("APCA_API_SECRET_KEY", "ALPACA_SECRET_KEY")}

_STATUS = {
    "new": "accepted", "accepted": "accepted", "pending_new": "accepted", "accepted_for_bidding": "accepted",
    "held": "accepted", "calculated": "accepted", "done_for_day": "accepted", "pending_replace": "accepted",
    "pending_review": "accepted", "stopped": "accepted", "suspended": "accepted",
    "partially_filled": "partially_filled", "filled": "filled", "canceled": "cancelled",
    "replaced": "cancelled", "expired": "expired", "rejected": "rejected", "pending_cancel": "pending_cancel",
}
_TYPES = {"market": "market", "limit": "limit", "stop": "stop", "stop_limit": "stop_limit"}
_TIF = {"gtc": TimeInForce.GTC, "day": TimeInForce.DAY, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
_INSUFFICIENT = "40310000"


def map_status(status: str) -> str:
    """backforge's order state of an Alpaca order status."""
    return _STATUS.get(str(getattr(status, "value", status)), "accepted")


def _value(x):
    return getattr(x, "value", x)


def _float(x, default: float | None = None) -> float | None:
    return default if x is None or x == "" else float(x)


class _TimedClientMixin:
    """Adds a request timeout (alpaca-py sends none) and leaves 429 handling to the adapter."""

    _backforge_timeout: float = 10.0

    def _one_request(self, method, url, opts, retry):
        opts = dict(opts, timeout=self._backforge_timeout)
        return super()._one_request(method, url, opts, 0)  # retry=0: a 429 raises APIError at once


class _TradingClient(_TimedClientMixin, TradingClient):
    pass


class _DataClient(_TimedClientMixin, StockHistoricalDataClient):
    pass


class _TradingStream(TradingStream):
    """``TradingStream`` that reports each (re)connection, so the adapter can backfill what it missed."""

    def __init__(self, *args, on_connect, reconnect_delay: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect
        self._reconnect_min_backoff = reconnect_delay
        self._reconnect_max_backoff = max(reconnect_delay * 8, reconnect_delay)

    async def _dispatch(self, msg) -> None:
        if msg.get("stream") == "listening":  # subscribed: from here on nothing is missed
            self._on_connect()
        await super()._dispatch(msg)


class _DataStream(StockDataStream):
    def __init__(self, *args, on_connect, reconnect_delay: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect
        self._reconnect_min_backoff = reconnect_delay
        self._reconnect_max_backoff = max(reconnect_delay * 8, reconnect_delay)

    async def _dispatch(self, msg) -> None:
        if msg.get("T") == "subscription":  # the venue confirmed the bar subscription
            self._on_connect()
        await super()._dispatch(msg)


def _classify(exc: Exception, *, venue: str, mutating: bool, secrets) -> BrokerError:
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, APIError):
        status = exc.status_code or 0
        try:
            code, message = str(exc.code), str(exc.message)
        except Exception:  # a body that is not Alpaca's JSON
            code, message = None, str(exc)[:200]
        kind = http_error_kind(status, mutating=mutating)
        if status == 403 and code == _INSUFFICIENT:
            kind = "final"
        retry_after = parse_retry_after(exc.response.headers.get("Retry-After")) if exc.response is not None else None
        text = scrub(f"{venue}: HTTP {status}: {message}", secrets)
        if kind == "auth":
            text = f"{venue}: the API keys were refused (HTTP {status}); check APCA_API_KEY_ID/APCA_API_SECRET_KEY " \
                   f"and the paper/live endpoint"
        return BrokerError(text, kind=kind, retry_after=retry_after, status=status, venue_code=code)
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.InvalidURL)) or (
            isinstance(exc, requests.ConnectionError) and "NewConnectionError" in repr(exc)):
        return BrokerError(f"{venue}: cannot connect ({type(exc).__name__})", kind="retryable")
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        kind = "ambiguous" if mutating else "retryable"
        return BrokerError(f"{venue}: no answer ({type(exc).__name__}); the venue may have acted", kind=kind)
    return BrokerError(scrub(f"{venue}: {type(exc).__name__}: {exc}", secrets)[:300], kind="ambiguous"
                       if mutating else "final")


class AlpacaBroker(Broker):
    """Alpaca trading on ``alpaca-py``; the paper endpoint unless ``paper=False``.

    ``url_override`` / ``stream_url`` point the client and the trade-updates stream elsewhere (a proxy, or a
    local fake venue in tests). ``stream=False`` skips the websocket (then :meth:`poll` returns ``[]`` and the
    runner reconciles by querying).
    """

    name = "alpaca"
    native_brackets = True

    def __init__(self, key_id: str | None = None, secret_key: str | None = None, *, paper: bool = True,
                 url_override: str | None = None, stream_url: str | None = None, stream: bool = True,
                 config_path: str | None = None, timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 reconnect_delay: float = 1.0) -> None:
        creds = load_credentials("alpaca", {k: list(v) for k, v in CREDENTIAL_VARIABLES.items()},
                                 given={"key_id": key_id, "secret_key": secret_key}, config_path=config_path)
        self._key, self._secret = creds["key_id"], creds["secret_key"]
        self.paper = paper
        self._retry = retry
        self._client = _TradingClient(self._key.reveal(), self._secret.reveal(), paper=paper,
                                      url_override=url_override)
        self._client._backforge_timeout = timeout
        self._stream_url = stream_url
        self._use_stream = stream
        self._reconnect_delay = reconnect_delay
        self._updates = UpdateQueue()
        self._client_ids: dict[str, str] = {}
        self._instruments: dict[str, Instrument] = {}
        self._assets: dict[str, object] = {}
        self._stream: _TradingStream | None = None
        self._stream_thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._connections = 0
        self._last_fill_ns = 0
        self._connected_at_ns = 0
        self.notes: dict[str, list[str]] = {}
        """Reasons for every change :meth:`submit` made to an order (rounding), by client order id."""

    def __repr__(self) -> str:
        return f"AlpacaBroker(paper={self.paper})"

    # ------------------------------------------------------------------ plumbing
    def _call(self, what: str, fn, *, mutating: bool = False):
        def once():
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                raise _classify(exc, venue="alpaca", mutating=mutating, secrets=(self._key, self._secret)) from None
        return call_with_retry(once, self._retry, what=f"alpaca {what}")

    def connect(self) -> None:
        self._call("account", self._client.get_account)  # bad keys fail here, once
        self._connected_at_ns = time.time_ns()
        if not self._use_stream or self._stream is not None:
            return
        self._stream = _TradingStream(self._key.reveal(), self._secret.reveal(), paper=self.paper,
                                      url_override=self._stream_url, on_connect=self._on_stream_connect,
                                      reconnect_delay=self._reconnect_delay)
        self._stream.subscribe_trade_updates(self._on_trade_update)
        self._stream_thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates", daemon=True)
        self._stream_thread.start()
        if not self._connected.wait(10.0):
            self.close()
            raise BrokerError("alpaca: the trade-updates stream did not connect within 10 s", kind="retryable")

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream._loop is not None and stream._loop.is_running():
            async def stop():
                await stream.stop_ws()
                await stream.close()
            import asyncio
            try:
                asyncio.run_coroutine_threadsafe(stop(), stream._loop).result(5)
            except Exception:  # the loop ended on its own meanwhile
                pass
        if self._stream_thread is not None:
            self._stream_thread.join(10)
            self._stream_thread = None
        self._connected.clear()
        self._client._session.close()  # requests reopens its pool on the next call

    def _on_stream_connect(self) -> None:
        self._connections += 1
        self._connected.set()
        if self._connections > 1:
            threading.Thread(target=self._backfill, name="alpaca-backfill", daemon=True).start()

    def _backfill(self) -> None:
        """After a reconnect: queue the fills and order states the stream missed (dedupe drops repeats)."""
        try:
            # the runner reconciled everything before connect(); look back a minute past the later of the
            # connection time and the last fill seen, for clock skew between the venue and this machine
            since = max(self._last_fill_ns, self._connected_at_ns) - 60 * 1_000_000_000
            for fill in self.fills(since):
                self._updates.put(fill)
            for order in self.open_orders():
                self._updates.put(order)
        except BrokerError as exc:
            log.warning("alpaca backfill after reconnect failed: %s", exc)

    async def _on_trade_update(self, update) -> None:
        order = self._map_order(update.order)
        event = str(_value(update.event))
        if event in ("fill", "partial_fill") and update.qty is not None:
            fill = Fill(fill_id=f"{update.order.id}:{_float(update.order.filled_qty, 0.0):g}",
                        client_order_id=order.client_order_id, venue_order_id=str(update.order.id),
                        symbol=order.symbol, side=order.side, qty=float(update.qty), price=float(update.price),
                        ts_ns=dt_ns(update.timestamp))
            self._last_fill_ns = max(self._last_fill_ns, fill.ts_ns)
            self._updates.put(fill)
        self._updates.put(order)

    def _map_order(self, o, reason: str = "") -> BrokerOrder:
        self._client_ids[str(o.id)] = o.client_order_id
        kind = _TYPES.get(str(_value(o.order_type or o.type)), "market")
        return BrokerOrder(
            client_order_id=o.client_order_id, venue_order_id=str(o.id), symbol=o.symbol or "",
            side=str(_value(o.side)), qty=_float(o.qty, 0.0), order_type=kind, status=map_status(o.status),
            filled_qty=_float(o.filled_qty, 0.0), avg_fill_price=_float(o.filled_avg_price),
            limit_price=_float(o.limit_price), stop_price=_float(o.stop_price), ts_ns=dt_ns(o.updated_at),
            reason=reason)

    # ------------------------------------------------------------------ Broker
    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        missing = [s for s in symbols if s not in self._instruments]
        if missing:
            assets = self._call("assets", lambda: self._client.get_all_assets(GetAssetsRequest(status="active")))
            listed = {a.symbol: a for a in assets if a.tradable}
            for symbol in missing:
                if symbol not in listed:
                    raise unknown_symbol_error("alpaca", symbol, listed)
                asset = listed[symbol]
                self._assets[symbol] = asset
                fractional = bool(asset.fractionable)
                step = _float(getattr(asset, "min_trade_increment", None)) or (1e-9 if fractional else 1.0)
                self._instruments[symbol] = Instrument(
                    symbol, qty_step=step, min_qty=_float(getattr(asset, "min_order_size", None)) or step,
                    price_tick=_float(getattr(asset, "price_increment", None)) or 0.01, venue_symbol=symbol)
        return {s: self._instruments[s] for s in symbols}

    def submit(self, request: OrderRequest) -> BrokerOrder:
        instrument = self.instruments([request.symbol])[request.symbol]
        price = request.limit_price or request.stop_price
        if price is not None and price < 1.0 and instrument.price_tick == 0.01:
            instrument = replace(instrument, price_tick=0.0001)  # Alpaca: sub-dollar prices take 4 decimals
        request, notes = conform_order(request, instrument, venue="alpaca")
        self.notes[request.client_order_id] = notes
        payload = self._order_request(request)
        try:
            order = self._call("submit", lambda: self._client.submit_order(payload), mutating=True)
        except BrokerError as exc:
            if exc.status == 422 and "client_order_id must be unique" in str(exc):
                existing = self.order(request.client_order_id)
                if existing is not None:
                    return existing
            raise
        return self._map_order(order, reason="; ".join(notes))

    def _order_request(self, r: OrderRequest):
        common = dict(symbol=r.symbol, qty=r.qty, side=OrderSide(r.side), time_in_force=_TIF[r.time_in_force],
                      client_order_id=r.client_order_id)
        if r.take_profit is not None or r.stop_loss is not None:
            common["order_class"] = OrderClass.BRACKET if (r.take_profit and r.stop_loss) else OrderClass.OTO
            if r.take_profit is not None:
                common["take_profit"] = TakeProfitRequest(limit_price=r.take_profit)
            if r.stop_loss is not None:
                common["stop_loss"] = StopLossRequest(stop_price=r.stop_loss)
        if r.order_type == "market":
            return MarketOrderRequest(**common)
        if r.order_type == "limit":
            return LimitOrderRequest(limit_price=r.limit_price, **common)
        if r.order_type == "stop":
            return StopOrderRequest(stop_price=r.stop_price, **common)
        return StopLimitOrderRequest(limit_price=r.limit_price, stop_price=r.stop_price, **common)

    def order(self, client_order_id: str) -> BrokerOrder | None:
        try:
            o = self._call("order", lambda: self._client.get_order_by_client_id(client_order_id))
        except BrokerError as exc:
            if exc.status == 404:
                return None
            raise
        return self._map_order(o)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        current = self.order(client_order_id)
        if current is None:
            return None
        if not current.is_open:
            return current
        try:
            self._call("cancel", lambda: self._client.cancel_order_by_id(current.venue_order_id), mutating=True)
        except BrokerError as exc:
            if exc.status != 422:  # 422: no longer cancelable (filled meanwhile)
                raise
        return self.order(client_order_id)

    def replace(self, client_order_id: str, *, new_client_order_id: str, qty: float | None = None,
                limit_price: float | None = None, stop_price: float | None = None) -> BrokerOrder:
        current = self.order(client_order_id)
        if current is None:
            raise BrokerError(f"alpaca has no order {client_order_id!r} to replace", kind="final")
        payload = ReplaceOrderRequest(qty=int(qty) if qty is not None and float(qty).is_integer() else qty,
                                      limit_price=limit_price, stop_price=stop_price,
                                      client_order_id=new_client_order_id)
        o = self._call("replace", lambda: self._client.replace_order_by_id(current.venue_order_id, payload),
                       mutating=True)
        return self._map_order(o)

    def open_orders(self) -> list[BrokerOrder]:
        orders = self._call("open orders", lambda: self._client.get_orders(
            GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=False)))
        return [self._map_order(o) for o in orders]

    def fills(self, since_ns: int = 0) -> list[Fill]:
        out: list[Fill] = []
        params = {"direction": "asc", "page_size": 100}
        if since_ns > 0:
            params["after"] = ns_iso(since_ns - 1_000)
        for _ in range(1000):  # bounded paging
            page = self._call("fills", lambda: self._client.get("/account/activities/FILL", dict(params))) or []
            for act in page:
                ts = dt_ns(act.get("transaction_time"))
                if ts < since_ns:
                    continue
                venue_id = str(act["order_id"])
                client_id = self._client_ids.get(venue_id)
                if client_id is None:
                    o = self._call("order", lambda: self._client.get_order_by_id(venue_id))
                    client_id = self._map_order(o).client_order_id
                side = "sell" if str(act.get("side", "")).startswith("sell") else "buy"
                out.append(Fill(fill_id=f"{venue_id}:{float(act['cum_qty']):g}", client_order_id=client_id,
                                venue_order_id=venue_id, symbol=act["symbol"], side=side, qty=float(act["qty"]),
                                price=float(act["price"]), ts_ns=ts))
            if len(page) < params["page_size"]:
                break
            params["page_token"] = page[-1]["id"]
        return out

    def positions(self) -> dict[str, Position]:
        out = {}
        for p in self._call("positions", self._client.get_all_positions):
            qty = abs(float(p.qty)) * (-1.0 if str(_value(p.side)) == "short" else 1.0)
            out[p.symbol] = Position(p.symbol, qty, float(p.avg_entry_price))
        return out

    def account(self) -> Account:
        a = self._call("account", self._client.get_account)
        return Account(currency=a.currency or "USD", cash=_float(a.cash, 0.0), equity=_float(a.equity, 0.0),
                       buying_power=_float(a.buying_power, 0.0))

    def poll(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        return self._updates.drain(timeout)


_UNITS = {"Min": TimeFrameUnit.Minute, "Hour": TimeFrameUnit.Hour, "Day": TimeFrameUnit.Day}
_UNIT_NS = {"Min": 60_000_000_000, "Hour": 3_600_000_000_000, "Day": 86_400_000_000_000}


class AlpacaFeed(Feed):
    """Closed bars from Alpaca's market-data API: history from ``/v2/stocks/bars`` (warm-up and catch-up),
    live minute bars from the bar stream; after a stream reconnect the missed bars are fetched over REST.
    ``timeframe`` is ``"<n>Min"``, ``"<n>Hour"`` or ``"1Day"`` (the stream carries minute bars only)."""

    def __init__(self, symbols: Sequence[str], timeframe: str = "1Min", key_id: str | None = None,
                 secret_key: str | None = None, *, data_feed: str = "iex", url_override: str | None = None,
                 stream_url: str | None = None, config_path: str | None = None, timeout: float = 10.0,
                 retry: RetryPolicy = RetryPolicy(), reconnect_delay: float = 1.0) -> None:
        import re
        match = re.fullmatch(r"(\d+)(Min|Hour|Day)", timeframe)
        if not match:
            raise BrokerError(f"alpaca timeframe must look like 1Min, 15Min, 1Hour or 1Day, got {timeframe!r}",
                              kind="final")
        self.symbols = tuple(symbols)
        self._amount, self._unit = int(match.group(1)), match.group(2)
        self.bar_ns = self._amount * _UNIT_NS[self._unit]
        creds = load_credentials("alpaca", {k: list(v) for k, v in CREDENTIAL_VARIABLES.items()},
                                 given={"key_id": key_id, "secret_key": secret_key}, config_path=config_path)
        self._key, self._secret = creds["key_id"], creds["secret_key"]
        self._data_feed = data_feed
        self._client = _DataClient(self._key.reveal(), self._secret.reveal(), url_override=url_override)
        self._client._backforge_timeout = timeout
        self._stream_url = stream_url
        self._retry = retry
        self._reconnect_delay = reconnect_delay
        self._assembler = BarAssembler(self.symbols)
        self._stream: _DataStream | None = None
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._connections = 0

    def __repr__(self) -> str:
        return f"AlpacaFeed({list(self.symbols)}, {self._amount}{self._unit})"

    def _bars(self, start_ns: int, end_ns: int) -> dict[str, list[tuple]]:
        request = StockBarsRequest(
            symbol_or_symbols=list(self.symbols), timeframe=TimeFrame(self._amount, _UNITS[self._unit]),
            start=datetime.fromtimestamp(start_ns / 1e9, timezone.utc),
            end=datetime.fromtimestamp(end_ns / 1e9, timezone.utc), feed=self._data_feed)

        def once():
            try:
                return self._client.get_stock_bars(request)
            except Exception as exc:  # noqa: BLE001
                raise _classify(exc, venue="alpaca", mutating=False, secrets=(self._key, self._secret)) from None
        barset = call_with_retry(once, self._retry, what="alpaca bars")
        rows: dict[str, list[tuple]] = {}
        for symbol, bars in barset.data.items():
            rows[symbol] = [(dt_ns(b.timestamp), b.open, b.high, b.low, b.close, b.volume) for b in bars]
        return rows

    max_history_bars = 100_000

    def history(self, n_bars: int, *, end_ns: int | None = None):
        """The last ``n_bars`` (at most :attr:`max_history_bars`) closed bars up to ``end_ns`` (default: now,
        without the bar still forming)."""
        n_bars = min(n_bars, self.max_history_bars)
        end = end_ns if end_ns is not None else time.time_ns()
        # markets close overnight and at weekends: ask for a window wide enough, keep the last n_bars
        span = max(n_bars * self.bar_ns * 4, 7 * _UNIT_NS["Day"])
        rows = self._bars(end - span, end)
        if end_ns is None:
            rows = {s: [r for r in rs if r[0] + self.bar_ns <= end] for s, rs in rows.items()}
        return bars_to_market_data(self.symbols, rows, n_bars)

    def connect(self) -> None:
        if self._stream is not None:
            return
        if (self._amount, self._unit) != (1, "Min"):
            raise BrokerError(f"alpaca streams minute bars only; a live {self._amount}{self._unit} feed is not "
                              "supported (use 1Min; history() serves any timeframe)", kind="final")
        self._stream = _DataStream(self._key.reveal(), self._secret.reveal(), url_override=self._stream_url,
                                   on_connect=self._on_connect, reconnect_delay=self._reconnect_delay)
        self._stream.subscribe_bars(self._on_bar, *self.symbols)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-bars", daemon=True)
        self._thread.start()
        if not self._connected.wait(10.0):
            self.close()
            raise BrokerError("alpaca: the bar stream did not connect within 10 s", kind="retryable")

    def seek(self, ts_ns: int) -> None:
        """Continue after ``ts_ns``: the closed bars since then (missed while the runner was down) come first."""
        now = time.time_ns()
        rows = self._bars(ts_ns + 1, now)
        self._assembler.rewind(ts_ns, [(s, *r) for s, rs in rows.items() for r in rs if r[0] + self.bar_ns <= now])

    def _on_connect(self) -> None:
        self._connections += 1
        self._connected.set()
        if self._connections > 1 and self._assembler.last_ts >= 0:
            threading.Thread(target=self._catch_up, name="alpaca-bars-backfill", daemon=True).start()

    def _catch_up(self) -> None:
        try:
            rows = self._bars(self._assembler.last_ts + 1, time.time_ns())
        except BrokerError as exc:
            log.warning("alpaca bar backfill failed: %s", exc)
            return
        for ts, symbol, row in sorted((r[0], s, r) for s, rs in rows.items() for r in rs):
            self._assembler.add(symbol, ts, *row[1:])

    async def _on_bar(self, bar) -> None:
        self._assembler.add(bar.symbol, dt_ns(bar.timestamp), bar.open, bar.high, bar.low, bar.close, bar.volume)

    def next_bar(self, timeout: float | None = None):
        return self._assembler.next(timeout)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream._loop is not None and stream._loop.is_running():
            import asyncio

            async def stop():
                await stream.stop_ws()
                await stream.close()
            try:
                asyncio.run_coroutine_threadsafe(stop(), stream._loop).result(5)
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._connected.clear()
        self._client._session.close()

