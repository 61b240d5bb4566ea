"""The contract between the paper/live runner and a venue: records, errors, and the `Broker` and `Feed`
interfaces every adapter implements (the paper broker, Alpaca, ccxt venues, OANDA).

The runner is single-threaded and synchronous: on each closed bar it asks the feed for the bar, steps the
compiled strategy, writes each new order to its session store, then calls :meth:`Broker.submit`.
Adapters whose venue streams updates (websockets) run the stream on a background thread and queue what
arrives; :meth:`Broker.poll` hands the queue to the runner. Nothing here is async, so a test drives an
adapter with plain calls.

Identity: every order carries a ``client_order_id`` chosen by the runner (deterministic: session, bar,
strategy, leg). It is the key for idempotence: an adapter must send it to the venue in the venue's own
field, must answer :meth:`Broker.order` by it, and a second :meth:`Broker.submit` with an id the venue
already has must return that order instead of creating another (or raise ``final`` with the venue's
"duplicate client order id" answer, which the runner then resolves with :meth:`Broker.order`).

Failure classes (:class:`BrokerError.kind`) decide what the runner does:

* ``retryable`` — the venue did not act (connection refused before sending, 429, 503 with nothing
  accepted): the runner may retry after ``retry_after`` seconds;
* ``ambiguous`` — the request may or may not have been acted on (timeout after sending, 5xx, connection
  dropped mid-request): the order stays *in flight* and is resolved by reconciliation, never treated as
  rejected;
* ``final`` — the venue refused it (bad symbol, below minimum size, insufficient funds): the order is
  rejected with ``reason``;
* ``auth`` — wrong or expired keys (401/403): the session halts; never retried in a loop.

Quantities are positive units with a separate ``side``; positions are signed. Timestamps are int64 ns UTC.
Secrets (keys, tokens) never appear in a record, an error message or a ``repr``.

Examples
--------
>>> req = OrderRequest(client_order_id="s1-b10-0-0", symbol="AAPL", side="buy", qty=5.0)
>>> req.order_type, req.time_in_force
('market', 'gtc')
>>> BrokerError("timed out after 10 s", kind="ambiguous").kind
'ambiguous'
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Sequence

from backforge.errors import BackforgeError

if TYPE_CHECKING:  # annotations only: the CLI imports this module for `backforge --help`
    import numpy as np

__all__ = [
    "ORDER_STATUSES", "OPEN_STATUSES", "FINAL_STATUSES",
    "OrderRequest", "BrokerOrder", "Fill", "Position", "Account", "Instrument", "BarEvent",
    "BrokerError", "Broker", "Feed",
]

Side = Literal["buy", "sell"]
OrderKind = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["gtc", "day", "ioc", "fok"]
ErrorKind = Literal["retryable", "ambiguous", "final", "auth"]

ORDER_STATUSES = ("accepted", "partially_filled", "filled", "cancelled", "rejected", "expired", "pending_cancel")
"""Venue order states as the runner sees them (adapters map the venue's own names onto these)."""
OPEN_STATUSES = frozenset({"accepted", "partially_filled", "pending_cancel"})
FINAL_STATUSES = frozenset({"filled", "cancelled", "rejected", "expired"})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as the runner asks a venue for it.

    ``take_profit`` / ``stop_loss`` are absolute prices of bracket children attached to an entry; an
    adapter whose venue has native brackets (Alpaca ``order_class=bracket``, OANDA ``takeProfitOnFill``)
    sends them with the entry, otherwise the runner emulates them and never sets these fields.
    """

    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderKind = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "gtc"
    take_profit: float | None = None
    stop_loss: float | None = None
    reduce_only: bool = False
    engine_order: dict | None = field(default=None, compare=False)
    """The engine's own order fields (size type and size, brackets, time in force, role) when the order
    comes from a compiled strategy. Only :class:`backforge.live.paper.PaperBroker` reads it — it sizes and
    fills the order with the backtest's kernels, which is what makes paper fills equal ``backforge run``'s;
    venue adapters ignore it and trade ``qty``."""

    def __post_init__(self) -> None:
        if not self.client_order_id:
            raise BrokerError("an order needs a client_order_id", kind="final")
        if self.side not in ("buy", "sell"):
            raise BrokerError(f"side must be 'buy' or 'sell', got {self.side!r}", kind="final")
        if not (math.isfinite(self.qty) and self.qty > 0):
            raise BrokerError(f"qty must be a finite number > 0, got {self.qty!r}", kind="final")
        if self.order_type in ("limit", "stop_limit") and not _positive(self.limit_price):
            raise BrokerError(f"a {self.order_type} order needs a limit_price > 0, got {self.limit_price!r}", kind="final")
        if self.order_type in ("stop", "stop_limit") and not _positive(self.stop_price):
            raise BrokerError(f"a {self.order_type} order needs a stop_price > 0, got {self.stop_price!r}", kind="final")

    @property
    def signed_qty(self) -> float:
        """``+qty`` for a buy, ``-qty`` for a sell."""
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """A venue's view of one order (an acknowledgement, an update, or the answer to a query)."""

    client_order_id: str
    venue_order_id: str | None
    symbol: str
    side: Side
    qty: float
    order_type: OrderKind
    status: str
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    ts_ns: int = 0
    reason: str = ""

    @property
    def is_open(self) -> bool:
        """True while the venue may still fill it."""
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``fill_id`` is the venue's trade/transaction id: unique per venue, the key that stops a
    fill replayed by a reconnect or a restart from being counted twice."""

    fill_id: str
    client_order_id: str
    venue_order_id: str | None
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float = 0.0
    ts_ns: int = 0
    liquidity: Literal["maker", "taker", ""] = ""

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True, slots=True)
class Position:
    """A net position at the venue (signed units)."""

    symbol: str
    qty: float
    avg_price: float = 0.0


@dataclass(frozen=True, slots=True)
class Account:
    """Cash and equity in the account currency."""

    currency: str
    cash: float
    equity: float
    buying_power: float


@dataclass(frozen=True, slots=True)
class Instrument:
    """A venue's trading rules for one symbol (0 = no rule)."""

    symbol: str
    qty_step: float = 0.0
    min_qty: float = 0.0
    price_tick: float = 0.0
    min_notional: float = 0.0
    venue_symbol: str = ""

    def round_qty(self, qty: float) -> float:
        """``qty`` rounded down to the quantity step (unchanged without a step).

        >>> Instrument("BTC/USDT", qty_step=0.001).round_qty(0.12345)
        0.123
        """
        if self.qty_step <= 0:
            return qty
        steps = math.floor(qty / self.qty_step + 1e-9)
        return round(steps * self.qty_step, 12)

    def round_price(self, price: float, side: Side) -> float:
        """``price`` on the tick grid, rounded away from crossing: buys down, sells up.

        >>> Instrument("EUR_USD", price_tick=0.00001).round_price(1.234567, "buy")
        1.23456
        """
        if self.price_tick <= 0:
            return price
        ticks = price / self.price_tick
        ticks = math.floor(ticks + 1e-9) if side == "buy" else math.ceil(ticks - 1e-9)
        return round(ticks * self.price_tick, 12)


@dataclass(frozen=True, slots=True, eq=False)
class BarEvent:
    """One closed bar for every subscribed symbol at one timestamp (rows are ``[A]`` float64 in the feed's
    symbol order; NaN where a symbol has no bar). ``bid`` / ``ask`` are ``(open, high, low, close)`` rows
    when the feed has quotes."""

    ts_ns: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    bid: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    ask: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


class BrokerError(BackforgeError):
    """A venue call that did not succeed, classified so the runner knows whether it may retry.

    >>> str(BrokerError("rate limited", kind="retryable", retry_after=2.0))
    'rate limited'
    """

    code = "BF-BROKER"

    def __init__(self, message: str, *, kind: ErrorKind, retry_after: float | None = None, status: int | None = None,
                 venue_code: str | None = None, **where: str | int | None) -> None:
        where.setdefault("code", f"BF-BROKER-{kind.upper()}")
        self.kind: ErrorKind = kind
        self.retry_after = retry_after
        self.status = status
        self.venue_code = venue_code
        super().__init__(message, **where)


class Broker(ABC):
    """A trading venue as the runner uses it. Every method is synchronous and may raise :class:`BrokerError`."""

    name: str = "broker"
    native_brackets: bool = False
    """True when :meth:`submit` sends ``take_profit`` / ``stop_loss`` to the venue with the entry (Alpaca
    ``order_class=bracket``, OANDA ``takeProfitOnFill``); otherwise the runner emulates brackets and leaves those
    fields unset."""

    def connect(self) -> None:
        """Open sessions and streams (idempotent). Raises ``auth`` for bad keys."""

    def close(self) -> None:
        """Close sessions and streams (idempotent)."""

    @abstractmethod
    def instruments(self, symbols: Sequence[str]) -> dict[str, Instrument]:
        """The trading rules of ``symbols``; a symbol the venue does not list raises ``final`` naming the
        closest matches."""

    @abstractmethod
    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Send an order. Idempotent by ``client_order_id`` (see the module docstring)."""

    def submit_many(self, requests: Sequence[OrderRequest]) -> list[BrokerOrder | BrokerError]:
        """:meth:`submit` of several orders, in order: each answer, or the :class:`BrokerError` its submit raised
        (a bar's orders in one call; a venue that can book them together overrides this). Default: one
        :meth:`submit` each."""
        out: list[BrokerOrder | BrokerError] = []
        for request in requests:
            try:
                out.append(self.submit(request))
            except BrokerError as exc:
                out.append(exc)
        return out

    @abstractmethod
    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Ask the venue to cancel; returns its view of the order (None when the venue never saw it)."""

    def replace(self, client_order_id: str, *, new_client_order_id: str, qty: float | None = None,
                limit_price: float | None = None, stop_price: float | None = None) -> BrokerOrder:
        """Change a working order (venues that cannot do it in place cancel and resubmit under
        ``new_client_order_id``). Default: not supported, ``final``."""
        raise BrokerError(f"{self.name} cannot replace orders; cancel and submit instead", kind="final")

    @abstractmethod
    def order(self, client_order_id: str) -> BrokerOrder | None:
        """The venue's current view of an order by client id; None when the venue has no such order."""

    @abstractmethod
    def open_orders(self) -> list[BrokerOrder]:
        """Every order the venue still works, including ones this runner did not send (external)."""

    @abstractmethod
    def fills(self, since_ns: int = 0) -> list[Fill]:
        """Executions at or after ``since_ns``, oldest first (reconciliation and stream backfill)."""

    @abstractmethod
    def positions(self) -> dict[str, Position]:
        """Net positions by symbol (symbols with no position may be absent)."""

    @abstractmethod
    def account(self) -> Account:
        """Cash and equity."""

    def poll(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        """Updates that arrived since the last call (order updates and fills, in arrival order), waiting
        up to ``timeout`` seconds for the first one. Adapters without a stream return ``[]``; the runner
        then reconciles by querying."""
        return []


class Feed(ABC):
    """Market data for a session: history for warm-up, then closed bars one at a time."""

    symbols: tuple[str, ...] = ()
    bar_ns: int = 0
    has_quotes: bool = False

    def connect(self) -> None:
        """Open the connection or stream (idempotent)."""

    def close(self) -> None:
        """Close it (idempotent)."""

    @abstractmethod
    def history(self, n_bars: int, *, end_ns: int | None = None):
        """The last ``n_bars`` closed bars up to ``end_ns`` (inclusive) as a ``MarketData``, for warm-up
        and for catching up bars missed while the runner was down."""

    @abstractmethod
    def next_bar(self, timeout: float | None = None) -> BarEvent | None:
        """The next closed bar, waiting up to ``timeout`` seconds (None: until one arrives or the feed
        ends). Returns None on timeout or at the end of a replay (then :attr:`finished` is True)."""

    @property
    def finished(self) -> bool:
        """True when a finite feed (a replay) has delivered its last bar."""
        return False


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
