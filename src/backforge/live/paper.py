"""The paper broker: a :class:`~backforge.live.broker.Broker` that fills with the engine's own kernels.

:class:`PaperBroker` keeps an engine account state and advances it with
:func:`~backforge.engine.kernels.process_bar_nb` on every bar it is given (:meth:`PaperBroker.on_bar`) — the
fill rules, fees, slippage, spread, brackets and margin of ``backforge run``. An order from a compiled
strategy carries its engine fields (``OrderRequest.engine_order``) and is sized at the fill exactly as in the
backtest; a plain order trades ``qty`` units. ``latency_bars`` delays every order by that many bars.

The paper venue's clock is the bars it is given: a bar at or before the last one it processed is ignored,
so a restarted runner that re-sends its recent bars changes nothing. It is idempotent by client order id
(a second ``submit`` of a known id returns the order) and counts how many times each id reached it
(:attr:`PaperBroker.submit_counts`; the crash test checks every count is 1).

:func:`serve` runs a paper broker in its own process on 127.0.0.1 (``multiprocessing.connection`` with an
auth key), persisting its state after every change; :class:`RemoteBroker` is the runner's client. The
auth key is a secret: it is never logged or shown in a ``repr``.

Examples
--------
>>> import numpy as np
>>> from backforge.live.broker import BarEvent, OrderRequest
>>> broker = PaperBroker(["AAPL"], cash=10_000.0)
>>> bar = lambda ts, p: BarEvent(ts, np.array([p]), np.array([p]), np.array([p]), np.array([p]), np.array([1e6]))
>>> broker.on_bar(bar(1, 100.0))
True
>>> broker.submit(OrderRequest("o1", "AAPL", "buy", 10.0)).status
'accepted'
>>> broker.on_bar(bar(2, 101.0)), broker.positions()["AAPL"].qty, broker.fills()[0].price
(True, 10.0, 101.0)
"""

from __future__ import annotations

import json
import operator
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backforge.engine import kernels as k
from backforge.engine.config import SimConfig
from backforge.engine.risk import RiskConfig, lower_fill_caps
from backforge.engine.records import OrderType, Reason, SizeType, TimeInForce, fill_dt
from backforge.engine.simulator import frozen_prices
from backforge.errors import did_you_mean
from backforge.live._engine import (
    ENGINE_ORDER_DT,
    ENGINE_ORDER_FIELDS,
    ORDER_FIELD_INDEX,
    book_orders_nb,
    bounded_history,
    child_client_id,
    compact_history,
    fresh_state,
    grow_state,
    state_arrays,
    state_from_arrays,
)
from backforge.live.broker import (
    Account,
    BarEvent,
    Broker,
    BrokerError,
    BrokerOrder,
    Fill,
    Instrument,
    OrderRequest,
    Position,
)

__all__ = ["PaperBroker", "RemoteBroker", "serve", "start_server"]

_STATUS = {k.PENDING: "accepted", k.TRIGGERED: "accepted", k.FILLED: "filled", k.CANCELLED: "cancelled",
           k.REJECTED: "rejected", k.EXPIRED: "expired"}
_TIF = {"gtc": TimeInForce.GTC, "day": TimeInForce.DAY}
# where the fields stand in an order / fill record read as a tuple (``.item()`` / ``.tolist()``)
(_O_ASSET, _O_SIDE, _O_TYPE, _O_SIZE_TYPE, _O_SIZE, _O_LIMIT, _O_STOP, _O_STATUS, _O_REASON, _O_FILL_TS,
 _O_CREATED_TS, _O_FILL_PRICE, _O_FILLED) = (ORDER_FIELD_INDEX[name] for name in (
    "asset", "side", "order_type", "size_type", "size", "limit_price", "stop_price", "status", "reason", "fill_ts",
    "created_ts", "fill_price", "filled_qty"))
(_F_ORDER, _F_ASSET, _F_QTY, _F_PRICE, _F_FEE, _F_TS) = (fill_dt.names.index(name) for name in (
    "order_id", "asset", "qty", "price", "fee", "ts"))


class PaperBroker(Broker):
    """A simulated venue on the engine's fill kernels (see the module docstring).

    ``config`` is the engine's :class:`~backforge.engine.config.SimConfig` (costs, cash, leverage); keyword
    ``cash`` is a shortcut for a default config with that cash. ``risk`` (the portfolio's
    :class:`~backforge.engine.risk.RiskConfig`) and ``strategy_risks`` (each strategy's, by order tag) give
    the venue the risk rules that act at the fill — weight, exposure, quantity and notional caps
    (:func:`~backforge.engine.risk.lower_fill_caps`) — so an entry is cut at the paper fill exactly as in the
    backtest; the other rules stay with the strategy that decides the orders. :meth:`for_portfolio` sets all
    of it from a strategy file. ``state_path`` makes it durable: its state is saved there after every change
    and loaded at start.
    """

    name = "paper"

    def __init__(self, symbols: Sequence[str], *, config: SimConfig | None = None, cash: float | None = None,
                 has_quotes: bool = False, latency_bars: int = 0, state_path: str | Path | None = None,
                 risk: RiskConfig | None = None, strategy_risks: Sequence[RiskConfig | None] = ()) -> None:
        if config is None:
            config = SimConfig(cash=cash if cash is not None else 100_000.0)
        self.symbols = tuple(symbols)
        self._index = {symbol: a for a, symbol in enumerate(self.symbols)}
        self.config = config
        self.params = config.lower(self.symbols, has_quotes=has_quotes)
        self.has_quotes = has_quotes
        self.latency_bars = int(latency_bars)
        caps = lower_fill_caps(risk, self.symbols, strategy_risks=list(strategy_risks))
        # per-bar history bounded to the current row (the venue needs no past equity): memory stays flat;
        # positions are recorded (into that one row) so the state has the layout of a strategy session's
        self.state = bounded_history(fresh_state(len(self.symbols), cash=config.cash, record_positions=True,
                                                 risk=caps), 0)
        self.t = -1
        self.last_ts = 0
        self.cids: dict[str, int] = {}  # client order id -> engine order id (-1 while delayed by latency)
        self.oid_cid: dict[int, str] = {}
        self.children: dict[str, int] = {}
        self.submit_counts: dict[str, int] = {}
        self.delayed: list[tuple[int, OrderRequest]] = []  # (release bar, request)
        self.requests: dict[str, OrderRequest] = {}
        self.queue: list[BrokerOrder | Fill] = []
        self.fills_seen = 0
        self.faults: dict[str, int] = {}
        self._seen: dict[int, tuple[int, float]] = {}
        self.state_path = Path(state_path) if state_path is not None else None
        if self.state_path is not None and self.state_path.exists():
            self._load()

    @classmethod
    def for_portfolio(cls, portfolio: Any, symbols: Sequence[str], **options: Any) -> "PaperBroker":
        """The paper venue of a strategy file: its costs and cash (``sim_config_of``) and its fill-time risk
        caps; ``options`` as for the constructor (``has_quotes``, ``latency_bars``, ``state_path``)."""
        from backforge.strategy.compiler import sim_config_of

        config = getattr(portfolio, "sim_config", None) or sim_config_of(portfolio)  # a Strategy class carries its own
        return cls(symbols, config=config, risk=getattr(portfolio, "risk", None),
                   strategy_risks=[s.risk for s in portfolio.strategies], **options)

    # ------------------------------------------------------------------ venue clock
    def on_bar(self, bar: BarEvent) -> bool:
        """Advance the venue over one bar (fills, brackets, marks). False when the bar was already seen."""
        if bar.ts_ns <= self.last_ts:
            return False
        self.t += 1
        self.last_ts = bar.ts_ns
        release = [r for due, r in self.delayed if due <= self.t]
        self.delayed = [(due, r) for due, r in self.delayed if due > self.t]
        for request in release:  # orders delayed by latency reach the book before this bar
            self._book(request, self.t - 1, self._prev_ts)
        self.state = state = grow_state(self.state, self.t)
        rows = [np.ascontiguousarray(np.asarray(x, dtype=np.float64)) for x in (bar.open, bar.high, bar.low, bar.close)]
        if self.has_quotes:
            if bar.bid is None or bar.ask is None:
                raise BrokerError("the paper broker was created with quotes but the bar has none", kind="final")
            quotes = [np.ascontiguousarray(x, dtype=np.float64) for x in (*bar.bid, *bar.ask)]
        else:
            quotes = rows + rows
        n_orders = int(state.counters[k.C_ORDERS])
        touched = [int(oid) for oid in state.active[: state.counters[k.C_ACTIVE]]]
        k.process_bar_nb(state, self.params, self.t, bar.ts_ns, frozen_prices(*rows, *quotes))
        self._prev_ts = bar.ts_ns
        for oid in range(n_orders, int(state.counters[k.C_ORDERS])):  # bracket children made by fills
            self._name_child(oid)
        n_fills = int(state.counters[k.C_FILLS])
        for i, record in enumerate(state.fills[self.fills_seen:n_fills].tolist(), start=self.fills_seen):
            self.queue.append(self._fill(i, record))
        self.fills_seen = n_fills
        oids = [oid for oid in sorted(set(touched) | set(range(n_orders, int(state.counters[k.C_ORDERS]))))
                if oid in self.oid_cid]
        for oid, record in zip(oids, state.orders[oids].tolist()):
            seen = (record[_O_STATUS], float(record[_O_FILLED]))
            if self._seen.get(oid) != seen:
                self._seen[oid] = seen
                self.queue.append(self._order(oid, record))
        self._save()
        return True

    _prev_ts = 0

    def _name_child(self, oid: int) -> None:
        order = self.state.orders[oid]
        parent = int(order["parent_id"])
        if parent < 0 or parent not in self.oid_cid:
            cid = f"{self.name}-{oid}"
        else:
            pcid = self.oid_cid[parent]
            n = self.children.get(pcid, 0)
            self.children[pcid] = n + 1
            cid = child_client_id(pcid, int(order["role"]), n)
        self.cids[cid] = oid
        self.oid_cid[oid] = cid

    # ------------------------------------------------------------------ records
    def _order(self, oid: int, record: tuple | None = None) -> BrokerOrder:
        """The venue's view of order ``oid`` (``record``: its engine record as a tuple, when already read)."""
        o = self.state.orders[oid].item() if record is None else record
        cid = self.oid_cid[oid]
        request = self.requests.get(cid)
        filled = abs(o[_O_FILLED])
        status = _STATUS[o[_O_STATUS]]
        if status == "accepted" and filled > 0:
            status = "partially_filled"
        side = "buy" if o[_O_SIDE] > 0 else "sell"
        qty = request.qty if request is not None else o[_O_SIZE] if o[_O_SIZE_TYPE] == SizeType.UNITS else filled
        reason = Reason.describe(o[_O_REASON]) if status in ("rejected", "cancelled", "expired") else ""
        return BrokerOrder(cid, f"P{oid}", self.symbols[o[_O_ASSET]], side, qty if qty > 0 else filled,
                           OrderType.name(o[_O_TYPE]), status, filled, o[_O_FILL_PRICE] if filled > 0 else None,
                           _num(o[_O_LIMIT]), _num(o[_O_STOP]), int(o[_O_FILL_TS] or o[_O_CREATED_TS]), reason)

    def _fill(self, i: int, record: tuple | None = None) -> Fill:
        """Fill ``i`` as the venue reports it (``record``: its engine record as a tuple, when already read)."""
        f = self.state.fills[i].item() if record is None else record
        oid = f[_F_ORDER]
        qty = f[_F_QTY]
        return Fill(f"PF{i}", self.oid_cid.get(oid, f"{self.name}-{oid}"), f"P{oid}", self.symbols[f[_F_ASSET]],
                    "buy" if qty > 0 else "sell", abs(qty), f[_F_PRICE], f[_F_FEE], f[_F_TS], "taker")

    # ------------------------------------------------------------------ Broker interface
    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        out = {}
        for s in symbols:
            if s not in self.symbols:
                raise BrokerError(f"the paper venue does not list {s!r}{did_you_mean(s, self.symbols)}", kind="final")
            a = self.symbols.index(s)
            out[s] = Instrument(s, qty_step=float(self.params.lot_size[a]), min_qty=float(self.params.min_qty[a]))
        return out

    def inject(self, fault: str, count: int = 1) -> None:
        """Arm a fault for the next ``count`` calls: ``"timeout_after_accept"`` (submit books the order, then
        answers like a timed-out request), ``"timeout_before_accept"``, ``"reject"`` or ``"unavailable"``
        (retryable 503)."""
        self.faults[fault] = self.faults.get(fault, 0) + count

    def _fault(self, name: str) -> bool:
        count = self.faults.get(name, 0)
        if count <= 0:
            return False
        if count == 1:
            del self.faults[name]  # an empty dict: no fault armed, the checks are skipped
        else:
            self.faults[name] = count - 1
        return True

    def submit(self, request: OrderRequest) -> BrokerOrder:
        answer = self.submit_many([request])[0]
        if isinstance(answer, BrokerError):
            raise answer
        return answer

    def submit_many(self, requests: Sequence[OrderRequest]) -> list[BrokerOrder | BrokerError]:
        """:meth:`submit` of each request in order (the same answers, faults and errors as one call each), the
        accepted ones booked together (:func:`~backforge.live._engine.book_orders_nb`) and the state saved once."""
        out: list[BrokerOrder | BrokerError | None] = [None] * len(requests)
        book: list[int] = []
        booking: set[str] = set()
        accepted: list[int] = []
        for i, request in enumerate(requests):
            cid = request.client_order_id
            self.submit_counts[cid] = self.submit_counts.get(cid, 0) + 1
            if cid in self.cids or cid in booking:
                out[i] = cid  # already booked (or booked just before in this call): its current view, below
                continue
            try:
                self._check(request)
            except BrokerError as exc:
                out[i] = exc
                continue
            self.requests[cid] = request
            accepted.append(i)
            if self.latency_bars > 0:
                self.cids[cid] = -1
                self.delayed.append((self.t + self.latency_bars, request))
                out[i] = BrokerOrder(cid, None, request.symbol, request.side, request.qty, request.order_type,
                                     "accepted", limit_price=request.limit_price, stop_price=request.stop_price,
                                     ts_ns=self.last_ts)
            else:
                book.append(i)
                booking.add(cid)
        if book:
            oids = self._book_many([requests[i] for i in book], self.t, self.last_ts)
            records = self.state.orders[[max(oid, 0) for oid in oids]].tolist()  # their records, read once
            for i, oid, record in zip(book, oids, records):
                out[i] = self._order(oid, record) if oid >= 0 else BrokerError("the paper venue's order book is full",
                                                                               kind="retryable")
        for i, answer in enumerate(out):
            if isinstance(answer, str):
                out[i] = self.order(answer)
        if accepted:
            self._save()
        for i in accepted if self.faults else ():  # the injected fault answers like a timed-out request: booked
            if not isinstance(out[i], BrokerError) and self._fault("timeout_after_accept"):
                out[i] = BrokerError("paper venue timed out after accepting the order", kind="ambiguous")
        return out  # type: ignore[return-value]

    def _check(self, request: OrderRequest) -> None:
        """The venue's checks of a new order (and the injected faults that answer before it is booked)."""
        if self.faults:
            if self._fault("unavailable"):
                raise BrokerError("paper venue unavailable (503)", kind="retryable", retry_after=0.0, status=503)
            if self._fault("timeout_before_accept"):
                raise BrokerError("paper venue timed out", kind="ambiguous")
            if self._fault("reject"):
                raise BrokerError("paper venue rejected the order (injected)", kind="final")
        if request.symbol not in self._index:
            raise BrokerError(f"unknown symbol {request.symbol!r}{did_you_mean(request.symbol, self.symbols)}", kind="final")
        if request.time_in_force not in _TIF:
            raise BrokerError(f"the paper venue supports time in force gtc and day, not {request.time_in_force!r}", kind="final")
        if request.take_profit is not None or request.stop_loss is not None:
            raise BrokerError("the paper venue takes brackets as engine fields (engine_order), not absolute prices",
                              kind="final")

    def _book(self, request: OrderRequest, t: int, ts: int) -> int:
        oid = self._book_many([request], t, ts)[0]
        if oid < 0:
            raise BrokerError("the paper venue's order book is full", kind="retryable")
        return oid

    def _book_many(self, requests: Sequence[OrderRequest], t: int, ts: int) -> list[int]:
        """Book ``requests`` in order at bar ``t`` with the engine's own order kernel; their order ids (-1: the
        book could not grow)."""
        tuples = []
        for request in requests:
            e = request.engine_order
            if e is not None:  # the engine's own fields (a None price is NaN in the row), on the venue's asset index
                tuples.append((self._index[request.symbol], *_ENGINE_FIELDS_AFTER_ASSET(e)))
            else:
                tuples.append((self._index[request.symbol], 1 if request.side == "buy" else -1,
                               OrderType.code(request.order_type), SizeType.UNITS, float(request.qty),
                               _nan(request.limit_price), _nan(request.stop_price), np.nan, np.nan, np.nan, np.nan,
                               np.nan, np.nan, _TIF[request.time_in_force], 0,
                               k.EXIT if request.reduce_only else k.ENTRY, 0, -1, k.R_USER))
        rows = np.array(tuples, dtype=ENGINE_ORDER_DT).reshape(len(requests))
        oids = np.full(len(requests), -1, dtype=np.int64)
        done = 0
        while done < len(requests):
            self.state = state = grow_state(self.state, max(t, 0))
            book_orders_nb(state, t, ts, rows[done:], oids[done:])
            booked = int(np.count_nonzero(oids[done:] >= 0))
            if booked == 0:
                break
            done += booked
        statuses = self.state.orders["status"][np.maximum(oids, 0)].tolist()
        for request, oid, status in zip(requests, oids.tolist(), statuses):
            if oid >= 0:
                self._seen[oid] = (status, 0.0)
                self.cids[request.client_order_id] = oid
                self.oid_cid[oid] = request.client_order_id
        return oids.tolist()

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        oid = self.cids.get(client_order_id)
        if oid is None:
            return None
        if oid < 0:  # still delayed by latency: never reaches the book
            self.delayed = [(d, r) for d, r in self.delayed if r.client_order_id != client_order_id]
            request = self.requests[client_order_id]
            del self.cids[client_order_id]
            return BrokerOrder(client_order_id, None, request.symbol, request.side, request.qty, request.order_type,
                               "cancelled", reason="cancelled before reaching the book")
        k.cancel_order_nb(self.state, oid, self.t, self.last_ts, k.R_USER)
        answer = self._order(oid)
        self.queue.append(answer)
        self._save()
        return answer

    def order(self, client_order_id: str) -> BrokerOrder | None:
        oid = self.cids.get(client_order_id)
        if oid is None:
            return None
        if oid < 0:
            r = self.requests[client_order_id]
            return BrokerOrder(client_order_id, None, r.symbol, r.side, r.qty, r.order_type, "accepted", ts_ns=self.last_ts)
        return self._order(oid)

    def open_orders(self) -> list[BrokerOrder]:
        s = self.state
        out = [self._order(int(oid)) for oid in s.active[: s.counters[k.C_ACTIVE]] if int(oid) in self.oid_cid]
        out += [self.order(r.client_order_id) for _, r in self.delayed]  # type: ignore[misc]
        return out

    def fills(self, since_ns: int = 0) -> list[Fill]:
        return [f for f in (self._fill(i) for i in range(int(self.state.counters[k.C_FILLS]))) if f.ts_ns >= since_ns]

    def positions(self) -> dict[str, Position]:
        s = self.state
        key = s.position.tobytes() + s.avg_price.tobytes()
        if key != self._positions_key:  # rebuilt only when a position changed (a fill, an outside change)
            self._positions_key = key
            self._positions = {sym: Position(sym, qty, avg) for sym, qty, avg in
                               zip(self.symbols, s.position.tolist(), s.avg_price.tolist()) if qty != 0.0}
        return dict(self._positions)

    _positions_key: bytes | None = None
    _positions: dict[str, Position] = {}

    def account(self) -> Account:
        equity = float(k.equity_nb(self.state)) if self.t >= 0 else float(self.state.cash[0])
        if equity != equity:
            equity = float(self.state.cash[0])
        return Account("USD", float(self.state.cash[0]), equity, max(equity * self.config.leverage, 0.0))

    def poll(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        out, self.queue = self.queue, []
        return out

    # ------------------------------------------------------------------ outside changes (tests, sessions)
    def set_position(self, symbol: str, qty: float, price: float) -> None:
        """Change a position outside the runner (a manual trade at the venue), cash adjusted at ``price``."""
        a = self.symbols.index(symbol)
        s = self.state
        s.cash[0] -= (qty - s.position[a]) * price
        s.position[a] = qty
        s.avg_price[a] = price if qty != 0 else 0.0
        self._save()

    # ------------------------------------------------------------------ durability
    def _save(self) -> None:
        if self.state_path is None:
            return
        meta = {"t": self.t, "last_ts": self.last_ts, "prev_ts": self._prev_ts, "cids": self.cids,
                "children": self.children, "submit_counts": self.submit_counts, "fills_seen": self.fills_seen,
                "requests": {c: _request_json(r) for c, r in self.requests.items()},
                "delayed": [(d, r.client_order_id) for d, r in self.delayed]}
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                     **state_arrays(compact_history(self.state), bars=1))
        os.replace(tmp, self.state_path)

    def _load(self) -> None:
        with np.load(self.state_path, allow_pickle=False) as z:
            arrays = {n: z[n] for n in z.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        self.t, self.last_ts, self._prev_ts = meta["t"], meta["last_ts"], meta["prev_ts"]
        self.state = bounded_history(state_from_arrays(arrays), max(self.t, 0))  # a full history: its row t
        self.cids = {c: int(o) for c, o in meta["cids"].items()}
        self.oid_cid = {o: c for c, o in self.cids.items() if o >= 0}
        self.children = meta["children"]
        self.submit_counts = meta["submit_counts"]
        self.fills_seen = meta["fills_seen"]
        self.requests = {c: OrderRequest(**r) for c, r in meta["requests"].items()}
        self.delayed = [(d, self.requests[c]) for d, c in meta["delayed"]]


_ENGINE_FIELDS_AFTER_ASSET = operator.itemgetter(*ENGINE_ORDER_FIELDS[1:])
"""The engine fields of an order request but its asset, in :data:`ENGINE_ORDER_DT` order."""


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


def _num(value: Any) -> float | None:
    value = float(value)
    return None if value != value else value


def _request_json(r: OrderRequest) -> dict:
    return {name: getattr(r, name) for name in OrderRequest.__dataclass_fields__}


# ====================================================================== separate process

_METHODS = {"instruments", "submit", "cancel", "order", "open_orders", "fills", "positions", "account", "poll",
            "on_bar", "inject", "set_position", "submit_counts", "ping", "shutdown"}


def serve(address: tuple[str, int], authkey: bytes, broker: PaperBroker, *, ready_file: str | None = None,
          max_idle_s: float | None = None) -> None:
    """Serve ``broker`` on ``address`` (127.0.0.1) until a ``shutdown`` call: one client at a time; a client
    that disconnects (a killed runner) is dropped and the next one accepted. The broker's state outlives
    its clients (and, with ``state_path``, the server)."""
    from multiprocessing.connection import Listener

    with Listener(address, authkey=authkey) as listener:
        if ready_file:
            tmp = Path(ready_file).with_suffix(".tmp")
            tmp.write_text(f"{listener.address[0]}:{listener.address[1]}")
            os.replace(tmp, ready_file)
        running = True
        while running:
            try:
                conn = listener.accept()
            except (OSError, EOFError):
                continue
            with conn:
                while True:
                    try:
                        method, args, kwargs = conn.recv()
                    except (EOFError, OSError):
                        break
                    if method not in _METHODS:
                        conn.send(("error", ("final", f"unknown method {method!r}")))
                        continue
                    if method == "shutdown":
                        conn.send(("ok", None))
                        running = False
                        break
                    try:
                        if method == "ping":
                            result: Any = "pong"
                        elif method == "submit_counts":
                            result = dict(broker.submit_counts)
                        else:
                            result = getattr(broker, method)(*args, **kwargs)
                        reply = ("ok", result)
                    except BrokerError as exc:
                        reply = ("error", (exc.kind, exc.message))
                    try:
                        conn.send(reply)
                    except (OSError, EOFError):
                        break


class RemoteBroker(Broker):
    """The client of a paper broker served by :func:`serve` in another process. A call that gets no answer
    within ``timeout`` seconds raises ``ambiguous`` (the request may have been acted on) and reconnects on
    the next call; a refused connection is ``retryable``."""

    name = "paper-remote"

    def __init__(self, address: tuple[str, int], authkey: bytes, *, timeout: float = 10.0) -> None:
        self.address = (str(address[0]), int(address[1]))
        self._authkey = authkey
        self.timeout = timeout
        self._conn = None

    def __repr__(self) -> str:  # never shows the key
        return f"RemoteBroker({self.address[0]}:{self.address[1]})"

    def connect(self) -> None:
        if self._conn is None:
            from multiprocessing.connection import Client

            try:
                self._conn = Client(self.address, authkey=self._authkey)
            except (ConnectionRefusedError, FileNotFoundError, OSError) as exc:
                raise BrokerError(f"paper broker at {self.address[0]}:{self.address[1]} is not reachable "
                                  f"({type(exc).__name__})", kind="retryable") from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.connect()
        conn = self._conn
        try:
            conn.send((method, args, kwargs))
            if not conn.poll(self.timeout):
                self.close()
                raise BrokerError(f"paper broker did not answer {method} within {self.timeout} s", kind="ambiguous")
            status, payload = conn.recv()
        except (EOFError, OSError, ConnectionError) as exc:
            self.close()
            raise BrokerError(f"connection to the paper broker dropped during {method} ({type(exc).__name__})",
                              kind="ambiguous" if method == "submit" else "retryable") from None
        if status == "error":
            kind, message = payload
            raise BrokerError(message, kind=kind)
        return payload

    def instruments(self, symbols):
        return self._call("instruments", list(symbols))

    def submit(self, request):
        return self._call("submit", request)

    def cancel(self, client_order_id):
        return self._call("cancel", client_order_id)

    def order(self, client_order_id):
        return self._call("order", client_order_id)

    def open_orders(self):
        return self._call("open_orders")

    def fills(self, since_ns: int = 0):
        return self._call("fills", since_ns)

    def positions(self):
        return self._call("positions")

    def account(self):
        return self._call("account")

    def poll(self, timeout: float = 0.0):
        return self._call("poll")

    def on_bar(self, bar: BarEvent) -> bool:
        return self._call("on_bar", bar)

    def inject(self, fault: str, count: int = 1) -> None:
        return self._call("inject", fault, count)

    def set_position(self, symbol: str, qty: float, price: float) -> None:
        return self._call("set_position", symbol, qty, price)

    def submit_counts(self) -> dict[str, int]:
        return self._call("submit_counts")

    @classmethod
    def from_env(cls, address: tuple[str, int], *, variable: str = "BACKFORGE_PAPER_KEY", timeout: float = 10.0) -> RemoteBroker:
        """A client whose auth key (hex) is read from an environment variable."""
        key = os.environ.get(variable)
        if not key:
            raise BrokerError(f"no auth key for the paper broker: set {variable}", kind="auth")
        return cls(address, bytes.fromhex(key), timeout=timeout)

    def shutdown(self) -> None:
        try:
            self._call("shutdown")
        finally:
            self.close()


def _server_main(spec_path: str) -> None:  # pragma: no cover - runs in the child process
    spec = json.loads(Path(spec_path).read_text())
    authkey = bytes.fromhex(os.environ.pop("BACKFORGE_PAPER_KEY"))
    config = SimConfig(**spec["config"])
    risk = lambda r: RiskConfig(**r) if r is not None else None  # noqa: E731
    broker = PaperBroker(spec["symbols"], config=config, has_quotes=spec["has_quotes"],
                         latency_bars=spec["latency_bars"], state_path=spec.get("state_path"),
                         risk=risk(spec.get("risk")), strategy_risks=[risk(r) for r in spec.get("strategy_risks", [])])
    serve(("127.0.0.1", int(spec.get("port", 0))), authkey, broker, ready_file=spec["ready_file"])


def start_server(symbols: Sequence[str], folder: str | Path, *, config: SimConfig | None = None,
                 has_quotes: bool = False, latency_bars: int = 0, timeout: float = 60.0,
                 risk: RiskConfig | None = None, strategy_risks: Sequence[RiskConfig | None] = ()):
    """Start a durable paper broker in its own process (state in ``folder``); returns ``(process, client)``.
    ``risk`` / ``strategy_risks``: the fill-time caps, as for :class:`PaperBroker`.
    The auth key goes to the child through its environment, never through a file or the command line."""
    import subprocess
    import sys

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ready = folder / "broker.address"
    ready.unlink(missing_ok=True)
    config = config or SimConfig()
    spec = {"symbols": list(symbols), "config": config.model_dump(mode="json"), "has_quotes": has_quotes,
            "latency_bars": latency_bars, "state_path": str(folder / "broker_state.npz"), "ready_file": str(ready),
            "risk": risk.model_dump(mode="json") if risk is not None else None,
            "strategy_risks": [r.model_dump(mode="json") if r is not None else None for r in strategy_risks]}
    (folder / "broker.json").write_text(json.dumps(spec))
    key = secrets.token_bytes(32)
    env = dict(os.environ, BACKFORGE_PAPER_KEY=key.hex())
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from backforge.live.paper import _server_main; "
                             "_server_main(sys.argv[1])", str(folder / "broker.json")], env=env)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise BrokerError(f"the paper broker process exited with code {proc.returncode}", kind="final")
        if time.monotonic() > deadline:
            proc.kill()
            raise BrokerError(f"the paper broker did not start within {timeout} s", kind="final")
        time.sleep(0.02)
    host, port = ready.read_text().split(":")
    return proc, RemoteBroker((host, int(port)), key)
