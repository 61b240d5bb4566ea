"""OANDA (FX and CFDs, practice by default) on the v20 REST and streaming API with httpx:
:class:`OandaBroker` and :class:`OandaFeed`.

* Orders are unit-sized (``units`` signed by side): MARKET (FOK), LIMIT, STOP, and stop-limit as a STOP with a
  ``priceBound`` (OANDA's worst acceptable fill price). ``take_profit`` / ``stop_loss`` go natively as
  ``takeProfitOnFill`` / ``stopLossOnFill``. The client order id is ``clientExtensions.id`` and orders are
  looked up as ``/orders/@<id>``; a second submit with a known id (``CLIENT_ORDER_ID_ALREADY_EXISTS``)
  returns the existing order.
* Fills: the transactions stream (``/transactions/stream``, heartbeats every few seconds); a silent or
  dropped stream is reopened and ``/transactions/sinceid`` replays what was missed. A fill's id is its
  ``ORDER_FILL`` transaction id, the same on both channels. A market order OANDA cancels (FOK, e.g.
  ``INSUFFICIENT_MARGIN``) is a final rejection with the venue's reason.
* Bars: bid/ask candles (``price=BA``); OHLC are the mid prices and :attr:`BarEvent.bid` / ``ask`` carry the
  quotes. OANDA has no candle stream: the feed polls for the next complete candle.
* Keys: ``OANDA_API_TOKEN`` (or ``OANDA_TOKEN``) and ``OANDA_ACCOUNT_ID``, or the ``[oanda]`` table (``token``,
  ``account_id``) of the broker config file.

Examples
--------
>>> map_state({"state": "PENDING"}), map_state({"state": "FILLED"}), map_state({"state": "CANCELLED"})
('accepted', 'filled', 'cancelled')
>>> granularity_ns("M5") // 1_000_000_000, granularity_ns("H1") // 1_000_000_000
(300, 3600)
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Sequence

import httpx

from backforge.live._venue import (
    BarAssembler, RetryPolicy, UpdateQueue, bars_to_market_data, call_with_retry, conform_order, dt_ns,
    http_error_kind, load_credentials, log, ns_iso, parse_retry_after, scrub, unknown_symbol_error,
)
from backforge.live.broker import (
    Account, Broker, BrokerError, BrokerOrder, Feed, Fill, Instrument, OrderRequest, Position,
)

__all__ = ["OandaBroker", "OandaFeed", "map_state", "granularity_ns", "PRACTICE", "LIVE"]

PRACTICE = ("https://api-fxpractice.oanda.com", "https://stream-fxpractice.oanda.com")
LIVE = ("https://api-fxtrade.oanda.com", "https://stream-fxtrade.oanda.com")
CREDENTIAL_VARIABLES = {"token": ("OANDA_API_TOKEN", "OANDA_TOKEN"), "account_id": ("OANDA_ACCOUNT_ID",)}

_KINDS = {"MARKET": "market", "LIMIT": "limit", "STOP": "stop", "MARKET_IF_TOUCHED": "stop"}
_TIF = {"gtc": "GTC", "day": "GFD", "ioc": "IOC", "fok": "FOK"}
_ORDER_TXNS = {"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER", "ORDER_FILL", "ORDER_CANCEL", "MARKET_ORDER_REJECT",
               "LIMIT_ORDER_REJECT", "STOP_ORDER_REJECT"}


def map_state(order: dict) -> str:
    """backforge's state of an OANDA order (PENDING, TRIGGERED, FILLED, CANCELLED)."""
    return {"PENDING": "accepted", "TRIGGERED": "accepted", "FILLED": "filled",
            "CANCELLED": "cancelled"}.get(order.get("state", ""), "accepted")


def granularity_ns(granularity: str) -> int:
    """Length of an OANDA candle granularity (S5 ... M1, M5, H1, H4, D, W) in ns."""
    units = {"S": 1, "M": 60, "H": 3600}
    if granularity == "D":
        return 86_400 * 1_000_000_000
    if granularity == "W":
        return 7 * 86_400 * 1_000_000_000
    try:
        return int(granularity[1:]) * units[granularity[0]] * 1_000_000_000
    except (KeyError, ValueError):
        raise BrokerError(f"OANDA granularity must look like S5, M1, M15, H1, D or W, got {granularity!r}",
                          kind="final") from None


class _Oanda:
    """httpx plumbing shared by the broker and the feed."""

    _http: httpx.Client
    _secrets: tuple
    _retry: RetryPolicy

    def _request(self, method: str, path: str, *, what: str, mutating: bool = False, ok404: bool = False,
                 **kwargs):
        if self._http.is_closed:  # reopened after close()
            self._http = _client(str(self._http.base_url), self._token.reveal(), self._timeout)

        def once():
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise BrokerError(f"oanda: cannot connect ({type(exc).__name__})", kind="retryable") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                kind = "ambiguous" if mutating else "retryable"
                raise BrokerError(f"oanda: no answer to {what} ({type(exc).__name__}); the venue may have acted",
                                  kind=kind) from None
            if response.status_code == 404 and ok404:
                return None
            if response.status_code >= 400:
                raise self._http_error(response, what=what, mutating=mutating)
            return response.json() if response.content else {}
        return call_with_retry(once, self._retry, what=f"oanda {what}")

    def _http_error(self, response: httpx.Response, *, what: str, mutating: bool) -> BrokerError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = body.get("errorCode") or (body.get("orderRejectTransaction") or {}).get("rejectReason")
        message = body.get("errorMessage") or response.reason_phrase
        kind = http_error_kind(status, mutating=mutating)
        if kind == "auth":
            return BrokerError(f"oanda: the API token was refused (HTTP {status}); check OANDA_API_TOKEN, "
                               "OANDA_ACCOUNT_ID and the practice/live environment", kind="auth", status=status)
        text = scrub(f"oanda: {what}: HTTP {status}" + (f" {code}" if code else "") + f": {message}", self._secrets)
        return BrokerError(text, kind=kind, status=status, venue_code=code,
                           retry_after=parse_retry_after(response.headers.get("Retry-After")))


def _client(base_url: str, token: str, timeout: float, read_timeout: float | None = None) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout, read=read_timeout or timeout),
                        headers={"Authorization": f"Bearer {token}", "Accept-Datetime-Format": "RFC3339",
                                 "Content-Type": "application/json"})


class OandaBroker(_Oanda, Broker):
    """Trading on an OANDA v20 account; the practice environment unless ``practice=False``.

    ``rest_url`` / ``stream_url`` replace the REST and streaming hosts (a proxy, or a local fake venue in
    tests). ``heartbeat_timeout`` is how long the transactions stream may stay silent before it is treated as
    dropped (OANDA sends a heartbeat every 5 s).
    """

    name = "oanda"
    native_brackets = True

    def __init__(self, token: str | None = None, account_id: str | None = None, *, practice: bool = True,
                 rest_url: str | None = None, stream_url: str | None = None, stream: bool = True,
                 config_path: str | None = None, timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 reconnect_delay: float = 1.0, heartbeat_timeout: float = 20.0) -> None:
        creds = load_credentials("oanda", {k: list(v) for k, v in CREDENTIAL_VARIABLES.items()},
                                 given={"token": token, "account_id": account_id}, config_path=config_path)
        self._token = creds["token"]
        self._secrets = (self._token,)
        self._account = creds["account_id"].reveal()
        self.practice = practice
        rest, streaming = PRACTICE if practice else LIVE
        self._rest_url, self._stream_url = rest_url or rest, stream_url or streaming
        self._http = _client(self._rest_url, self._token.reveal(), timeout)
        self._timeout = timeout
        self._retry = retry
        self._use_stream = stream
        self._reconnect_delay = reconnect_delay
        self._heartbeat_timeout = heartbeat_timeout
        self._updates = UpdateQueue()
        self._instruments: dict[str, Instrument] = {}
        self._listed: dict[str, dict] = {}
        self._filled: dict[str, float] = {}       # order id -> units filled, from fills seen
        self._counted: set[str] = set()
        self._last_txn = "0"
        self._txn_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.reconnects = 0
        self.notes: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"OandaBroker(practice={self.practice})"

    def _path(self, tail: str) -> str:
        return f"/v3/accounts/{self._account}{tail}"

    # ------------------------------------------------------------------ connection and the transactions stream
    def connect(self) -> None:
        summary = self._request("GET", self._path("/summary"), what="account")  # bad token fails here, once
        self._advance(summary.get("lastTransactionID", "0"))
        if not self._use_stream or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._stream_main, name="oanda-transactions", daemon=True)
        self._thread.start()
        if not self._connected.wait(10.0):
            self.close()
            raise BrokerError("oanda: the transactions stream did not connect within 10 s", kind="retryable")

    def close(self) -> None:
        self._stop.set()
        stream = getattr(self, "_stream_response", None)
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a half-dead socket
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._connected.clear()
        self._http.close()

    def _advance(self, txn_id) -> None:
        with self._txn_lock:
            if int(txn_id) > int(self._last_txn):
                self._last_txn = str(txn_id)

    def _stream_main(self) -> None:
        first = True
        client = _client(self._stream_url, self._token.reveal(), self._timeout, read_timeout=self._heartbeat_timeout)
        try:
            while not self._stop.is_set():
                try:
                    with client.stream("GET", self._path("/transactions/stream")) as response:
                        if response.status_code >= 400:
                            response.read()
                            error = self._http_error(response, what="transactions stream", mutating=False)
                            if error.kind == "auth":
                                log.error("%s", error)
                                return
                            raise error
                        self._stream_response = response
                        if not first:
                            self.reconnects += 1
                            self._backfill()
                        self._connected.set()
                        first = False
                        for line in response.iter_lines():
                            if self._stop.is_set():
                                return
                            if line.strip():
                                self._on_transaction(json.loads(line))
                except Exception as exc:  # noqa: BLE001 - dropped, silent or refused: reopen and backfill
                    if self._stop.is_set():
                        return
                    log.warning("oanda transactions stream dropped (%s); reconnecting in %.2f s",
                                type(exc).__name__, self._reconnect_delay)
                    first = False
                    self._stop.wait(self._reconnect_delay)
        finally:
            self._stream_response = None
            client.close()

    def _backfill(self) -> None:
        """Replay the transactions after the last one seen (``/transactions/sinceid``)."""
        try:
            answer = self._request("GET", self._path("/transactions/sinceid"), what="transactions",
                                   params={"id": self._last_txn})
        except BrokerError as exc:
            log.warning("oanda backfill after reconnect failed: %s", exc)
            return
        for txn in answer.get("transactions", []):
            self._on_transaction(txn)

    def _on_transaction(self, txn: dict) -> None:
        kind = txn.get("type")
        if kind == "HEARTBEAT":
            return
        if "id" in txn:
            self._advance(txn["id"])
        if kind == "ORDER_FILL":
            fill = self._map_fill(txn)
            if fill is not None:
                self._updates.put(fill)
        if kind in _ORDER_TXNS:
            order_id = txn.get("orderID") if kind in ("ORDER_FILL", "ORDER_CANCEL") else txn.get("id")
            if order_id and not kind.endswith("_REJECT"):
                try:
                    found = self._request("GET", self._path(f"/orders/{order_id}"), what="order", ok404=True)
                except BrokerError as exc:
                    log.warning("oanda: order %s after a %s: %s", order_id, kind, exc)
                    return
                if found:
                    self._updates.put(self._map_order(found["order"]))

    # ------------------------------------------------------------------ mapping
    def _map_fill(self, txn: dict) -> Fill | None:
        units = float(txn.get("units", 0))
        if units == 0:
            return None
        if str(txn["id"]) not in self._counted:  # each fill counts once toward its order's filled units
            self._counted.add(str(txn["id"]))
            self._filled[str(txn.get("orderID"))] = self._filled.get(str(txn.get("orderID")), 0.0) + abs(units)
        fee = abs(float(txn.get("commission", 0) or 0))
        return Fill(fill_id=str(txn["id"]), client_order_id=txn.get("clientOrderID") or str(txn.get("orderID")),
                    venue_order_id=str(txn.get("orderID")), symbol=txn["instrument"],
                    side="buy" if units > 0 else "sell", qty=abs(units), price=float(txn["price"]), fee=fee,
                    ts_ns=dt_ns(txn.get("time")))

    def _map_order(self, o: dict, reason: str = "") -> BrokerOrder:
        units = float(o.get("units", 0))
        kind = _KINDS.get(o.get("type", ""), "market")
        if kind == "stop" and o.get("priceBound"):
            kind = "stop_limit"
        status = map_state(o)
        filled = abs(units) if status == "filled" else self._filled.get(str(o.get("id")), 0.0)
        if status == "accepted" and filled > 0:
            status = "partially_filled"
        price = float(o["price"]) if o.get("price") else None
        return BrokerOrder(
            client_order_id=(o.get("clientExtensions") or {}).get("id") or str(o.get("id")),
            venue_order_id=str(o.get("id")), symbol=o.get("instrument", ""), side="buy" if units > 0 else "sell",
            qty=abs(units), order_type=kind, status=status, filled_qty=filled,
            limit_price=price if kind == "limit" else (float(o["priceBound"]) if kind == "stop_limit" else None),
            stop_price=price if kind in ("stop", "stop_limit") else None,
            ts_ns=dt_ns(o.get("filledTime") or o.get("cancelledTime") or o.get("createTime")), reason=reason)

    # ------------------------------------------------------------------ Broker
    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        if not self._listed:
            answer = self._request("GET", self._path("/instruments"), what="instruments")
            self._listed = {i["name"]: i for i in answer.get("instruments", [])}
        out = {}
        for symbol in symbols:
            info = self._listed.get(symbol)
            if info is None:
                raise unknown_symbol_error("oanda", symbol, self._listed)
            step = 10.0 ** -int(info.get("tradeUnitsPrecision", 0))
            out[symbol] = self._instruments[symbol] = Instrument(
                symbol, qty_step=step, min_qty=float(info.get("minimumTradeSize", step)),
                price_tick=10.0 ** -int(info.get("displayPrecision", 5)), venue_symbol=symbol)
        return out

    def submit(self, request: OrderRequest) -> BrokerOrder:
        instrument = self._instruments.get(request.symbol) or self.instruments([request.symbol])[request.symbol]
        request, notes = conform_order(request, instrument, venue="oanda")
        self.notes[request.client_order_id] = notes
        decimals = max(0, -int(round(math.log10(instrument.price_tick)))) if instrument.price_tick else 5
        price = (lambda x: f"{x:.{decimals}f}")
        units = request.qty if request.side == "buy" else -request.qty
        order: dict = {"instrument": request.symbol, "units": f"{units:g}", "positionFill":
                       "REDUCE_ONLY" if request.reduce_only else "DEFAULT",
                       "clientExtensions": {"id": request.client_order_id}}
        if request.order_type == "market":
            order.update(type="MARKET", timeInForce="FOK" if request.time_in_force not in ("ioc",) else "IOC")
        elif request.order_type == "limit":
            order.update(type="LIMIT", price=price(request.limit_price), timeInForce=_TIF[request.time_in_force])
        else:
            order.update(type="STOP", price=price(request.stop_price), timeInForce=_TIF[request.time_in_force])
            if request.order_type == "stop_limit":
                order["priceBound"] = price(request.limit_price)
        if request.take_profit is not None:
            order["takeProfitOnFill"] = {"price": price(request.take_profit)}
        if request.stop_loss is not None:
            order["stopLossOnFill"] = {"price": price(request.stop_loss)}
        try:
            answer = self._request("POST", self._path("/orders"), what="submit", mutating=True,
                                   json={"order": order})
        except BrokerError as exc:
            if exc.venue_code == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                existing = self.order(request.client_order_id)
                if existing is not None:
                    return existing
            raise
        self._advance(answer.get("lastTransactionID", "0"))
        for key in ("orderFillTransaction",):
            if key in answer:
                fill = self._map_fill(answer[key])
                if fill is not None:
                    self._updates.put(fill)
        cancel = answer.get("orderCancelTransaction")
        created = answer.get("orderCreateTransaction", {})
        if cancel is not None and "orderFillTransaction" not in answer:
            raise BrokerError(f"oanda cancelled the order: {cancel.get('reason', 'unknown reason')}", kind="final",
                              venue_code=cancel.get("reason"), asset=request.symbol)
        current = self._request("GET", self._path(f"/orders/{created.get('id')}"), what="order", ok404=True)
        if current:
            return self._map_order(current["order"], reason="; ".join(notes))
        return BrokerOrder(request.client_order_id, str(created.get("id")), request.symbol, request.side, request.qty,
                           request.order_type, "accepted", reason="; ".join(notes))

    def order(self, client_order_id: str) -> BrokerOrder | None:
        found = self._request("GET", self._path(f"/orders/@{client_order_id}"), what="order", ok404=True)
        return None if not found else self._map_order(found["order"])

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        current = self.order(client_order_id)
        if current is None or not current.is_open:
            return current
        try:
            self._request("PUT", self._path(f"/orders/@{client_order_id}/cancel"), what="cancel", mutating=True)
        except BrokerError as exc:
            if exc.status != 404:
                raise
        return self.order(client_order_id)

    def replace(self, client_order_id: str, *, new_client_order_id: str, qty: float | None = None,
                limit_price: float | None = None, stop_price: float | None = None) -> BrokerOrder:
        current = self.order(client_order_id)
        if current is None or not current.is_open:
            raise BrokerError(f"oanda has no working order {client_order_id!r} to replace", kind="final")
        units = qty if qty is not None else current.qty
        order = {"type": {"limit": "LIMIT", "stop": "STOP", "stop_limit": "STOP"}.get(current.order_type, "LIMIT"),
                 "instrument": current.symbol, "units": f"{units if current.side == 'buy' else -units:g}",
                 "price": f"{(limit_price or stop_price or current.limit_price or current.stop_price):g}",
                 "clientExtensions": {"id": new_client_order_id}, "timeInForce": "GTC"}
        self._request("PUT", self._path(f"/orders/@{client_order_id}"), what="replace", mutating=True,
                      json={"order": order})
        return self.order(new_client_order_id) or current

    def open_orders(self) -> list[BrokerOrder]:
        answer = self._request("GET", self._path("/pendingOrders"), what="open orders")
        # take-profit / stop-loss orders attached to trades have no instrument of their own: they are the
        # bracket children of a filled entry, reported as the trade's exit orders
        return [self._map_order(o) for o in answer.get("orders", []) if o.get("instrument")]

    def fills(self, since_ns: int = 0) -> list[Fill]:
        params = {"type": "ORDER_FILL", "pageSize": 1000}
        if since_ns > 0:
            params["from"] = ns_iso(since_ns)
        answer = self._request("GET", self._path("/transactions"), what="fills", params=params)
        out: list[Fill] = []
        for page in answer.get("pages", [])[:1000]:
            data = self._request("GET", page, what="fills page")
            for txn in data.get("transactions", []):
                if txn.get("type") == "ORDER_FILL" and dt_ns(txn.get("time")) >= since_ns:
                    fill = self._map_fill(txn)
                    if fill is not None:
                        out.append(fill)
        out.sort(key=lambda f: (f.ts_ns, int(f.fill_id)))
        return out

    def positions(self) -> dict[str, Position]:
        answer = self._request("GET", self._path("/openPositions"), what="positions")
        out = {}
        for p in answer.get("positions", []):
            long_units, short_units = float(p["long"]["units"]), float(p["short"]["units"])
            qty = long_units + short_units  # short units are negative
            if qty:
                side = p["long"] if long_units else p["short"]
                out[p["instrument"]] = Position(p["instrument"], qty, float(side.get("averagePrice", 0) or 0))
        return out

    def account(self) -> Account:
        a = self._request("GET", self._path("/summary"), what="account")["account"]
        return Account(currency=a.get("currency", ""), cash=float(a.get("balance", 0)), equity=float(a.get("NAV", 0)),
                       buying_power=float(a.get("marginAvailable", 0)))

    def poll(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        return self._updates.drain(timeout)


class OandaFeed(_Oanda, Feed):
    """Bid/ask candles (``price=BA``) of OANDA instruments: history for warm-up and catch-up, then each next
    complete candle, polled every ``poll_interval`` seconds (OANDA streams prices, not candles)."""

    has_quotes = True

    def __init__(self, symbols: Sequence[str], granularity: str = "M1", token: str | None = None, *,
                 account_id: str | None = None, practice: bool = True, rest_url: str | None = None,
                 config_path: str | None = None, timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 poll_interval: float = 2.0) -> None:
        creds = load_credentials("oanda", {"token": list(CREDENTIAL_VARIABLES["token"])}, given={"token": token},
                                 config_path=config_path)
        self._token = creds["token"]
        self._secrets = (self._token,)
        self.symbols = tuple(symbols)
        self.granularity = granularity
        self.bar_ns = granularity_ns(granularity)
        self._http = _client(rest_url or (PRACTICE if practice else LIVE)[0], self._token.reveal(), timeout)
        self._timeout = timeout
        self._retry = retry
        self._poll_interval = poll_interval
        self._assembler = BarAssembler(self.symbols)
        self._seen: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"OandaFeed({list(self.symbols)}, {self.granularity!r})"

    def _candles(self, symbol: str, **params) -> list[tuple]:
        answer = self._request("GET", f"/v3/instruments/{symbol}/candles", what="candles",
                               params={"price": "BA", "granularity": self.granularity, **params})
        rows = []
        for c in answer.get("candles", []):
            if not c.get("complete", True):
                continue
            bid = tuple(float(c["bid"][k]) for k in "ohlc")
            ask = tuple(float(c["ask"][k]) for k in "ohlc")
            mid = tuple((b + a) / 2 for b, a in zip(bid, ask))
            rows.append((dt_ns(c["time"]), *mid, float(c.get("volume", 0)), bid, ask))
        return rows

    max_history_bars = 5000
    """OANDA serves at most 5000 candles per request."""

    def history(self, n_bars: int, *, end_ns: int | None = None):
        if n_bars > self.max_history_bars:
            log.warning("oanda: %d bars of history asked, OANDA serves %d per request", n_bars, self.max_history_bars)
            n_bars = self.max_history_bars
        params = {"count": n_bars}
        if end_ns is not None:
            params["to"] = ns_iso(end_ns + 1000)
        rows = {s: self._candles(s, **params) for s in self.symbols}
        for symbol, found in rows.items():
            if found:
                self._seen[symbol] = max(self._seen.get(symbol, 0), found[-1][0])
        return bars_to_market_data(self.symbols, rows, n_bars, quotes=True)

    def seek(self, ts_ns: int) -> None:
        """Continue after ``ts_ns``: the complete candles since then (missed while the runner was down) first."""
        rows = []
        for symbol in self.symbols:
            found = self._candles(symbol, **{"from": ns_iso(ts_ns + 1000)})
            rows.extend((symbol, r[0], *r[1:6], r[6], r[7]) for r in found if r[0] > ts_ns)
            if found:
                self._seen[symbol] = max(self._seen.get(symbol, -1), found[-1][0])
        self._assembler.rewind(ts_ns, rows)

    def connect(self) -> None:
        if self._thread is not None:
            return
        for symbol in self.symbols:  # candles complete before connect() are history, not live bars
            if symbol not in self._seen:
                latest = self._candles(symbol, count=1)
                self._seen[symbol] = latest[-1][0] if latest else -1
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_main, name="oanda-candles", daemon=True)
        self._thread.start()

    def _poll_main(self) -> None:
        while not self._stop.is_set():
            for symbol in self.symbols:
                try:
                    params = {"from": ns_iso(self._seen[symbol] + 1000)} if self._seen[symbol] >= 0 else {"count": 2}
                    for row in self._candles(symbol, **params):
                        if row[0] > self._seen.get(symbol, -1):
                            self._seen[symbol] = row[0]
                            self._assembler.add(symbol, row[0], *row[1:6], bid=row[6], ask=row[7])
                except BrokerError as exc:
                    log.warning("oanda candles for %s: %s", symbol, exc)
            self._stop.wait(self._poll_interval)

    def next_bar(self, timeout: float | None = None):
        return self._assembler.next(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._http.close()
