"""The paper/live runner: feed → strategy step → session store → broker, one closed bar at a time.

Per bar (:meth:`PaperRunner.on_bar`):

1. a bar at or before the last consumed one is dropped and logged (``bar_dropped``: duplicate, revised or
   out of order) — never processed twice;
2. a paper venue is given the bar (its clock), then broker updates are drained: fills are stored once by
   ``fill_id``, order updates recorded;
3. the strategy step advances one bar (:class:`~backforge.live.step.StrategyStep`: the backtest's kernels);
4. the venue's state is reconciled before acting: orders the venue finished that the model still works are
   closed in the model, positions and cash compared — a mismatch is a ``reconciliation`` event resolved by
   the policy (``adopt`` the venue's numbers, or ``halt``);
5. every new order gets a deterministic client order id ``SESSION-BAR-STRATEGY-LEG``, passes the circuit
   breakers and the in-flight gate, is written to the store and committed (with everything the bar wrote so
   far: one transaction, durable against a kill — see :mod:`backforge.live.store`) and only then sent; the
   answer is recorded. An ambiguous outcome (timeout, 5xx, disconnect) leaves the order *in flight* until the venue
   tells (an update, or :meth:`Broker.order` on a later bar) — it is never treated as a rejection;
6. the bar, its signal events, equity, the answers to the sends and (every ``snapshot_every`` bars) an engine
   snapshot are committed in one transaction; an event-log line and the status file are written.

On start the runner loads the newest snapshot, rebuilds its bar buffer from the feed's history, and
reconciles with the venue before acting: fills since the last known one, every in-flight order (sent again
only when the venue never saw it), unknown open orders (marked ``external``). Then the feed continues after
the snapshot's bar; bars consumed before the crash are re-stepped from the snapshot and their orders are
recognised by client order id — nothing is sent twice.

Circuit breakers (each halts the session with its reason; ``resume`` clears): stale data (no bar for
``stale_intervals`` bar intervals of wall time), a streak of ``max_error_streak`` broker errors, more than
``max_orders_per_bar`` orders in ``rate_window_bars`` bars, an order above ``max_notional_per_order``, and
``auth`` errors. While halted, bars are still consumed (the model stays in step with the venue) and decided
orders are recorded as ``suppressed`` and closed in the model, never sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backforge.engine import kernels as k
from backforge.engine.records import Reason, TimeInForce
from backforge.errors import BackforgeError
from backforge.live._engine import ORDER_FIELD_INDEX as _ORDER_FIELD_INDEX
from backforge.live._engine import (
    engine_row_fields,
    engine_rows,
    order_fields,
    record_fields,
    venue_qty_nb,
    venue_qtys_nb,
)
from backforge.live.broker import (
    FINAL_STATUSES,
    BarEvent,
    Broker,
    BrokerError,
    BrokerOrder,
    Feed,
    Fill,
    OrderRequest,
)
from backforge.live.step import StrategyStep
from backforge.live.store import (
    OrderIntent,
    SessionError,
    SessionStore,
    config_hash,
    pack_arrays,
)
from backforge.strategy import schema as sc

__all__ = ["LiveConfig", "PaperRunner", "bar_fingerprint", "venue_qty"]

_ACTIVE = (k.PENDING, k.TRIGGERED)
_TIF_NAMES = {TimeInForce.GTC: "gtc", TimeInForce.DAY: "day", TimeInForce.GTN: "gtc"}
_KIND_NAMES = {k.MARKET: "market", k.LIMIT: "limit", k.STOP: "stop", k.STOP_LIMIT: "stop_limit"}


class LiveConfig(BaseModel):
    """How a session trades: gating, reconciliation policy, circuit breakers, persistence cadence.

    >>> LiveConfig().gate, LiveConfig(reconcile_policy="halt").reconcile_policy
    ('unacknowledged', 'halt')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate: Literal["unacknowledged", "working", "off"] = Field(
        "unacknowledged", description="new orders for an asset wait while one is in flight: 'unacknowledged' "
        "(sent, no answer yet, or ambiguous), 'working' (also accepted and still working), 'off'")
    reconcile_policy: Literal["adopt", "halt"] = Field("adopt", description="on a mismatch with the venue")
    stale_intervals: float = Field(5.0, ge=0, description="halt when no bar arrived for this many bar intervals "
                                   "of wall time (scaled by the replay speed; 0 = off)")
    max_error_streak: int = Field(5, ge=1, description="halt after this many broker errors in a row")
    max_orders_per_bar: int = Field(1000, ge=1, description="order-rate limit: orders per rate_window_bars")
    rate_window_bars: int = Field(1, ge=1)
    max_notional_per_order: float | None = Field(None, gt=0, description="refuse and halt above this notional")
    retry_limit: int = Field(3, ge=0, description="immediate retries of a retryable broker error")
    snapshot_every: int = Field(1, ge=1, description="engine snapshot every N bars")
    status_every_s: float = Field(1.0, ge=0, description="status file refresh (seconds)")
    log_bars: bool = Field(True, description="one event-log line per bar")


def bar_fingerprint(bar: BarEvent) -> str:
    """A short hash of a bar's timestamp and prices (the store keeps it for every consumed bar).

    >>> import numpy as np
    >>> b = BarEvent(1, *(np.array([1.0]) for _ in range(5)))
    >>> len(bar_fingerprint(b))
    16
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(int(bar.ts_ns).to_bytes(8, "little", signed=True))
    for row in (bar.open, bar.high, bar.low, bar.close, bar.volume):
        h.update(np.ascontiguousarray(row, dtype=np.float64).tobytes())
    return h.hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:24] or "session"


_STORED_EVENTS = frozenset({"reconciliation", "halt", "resume", "bar_dropped", "order_refused", "broker_error",
                            "session_started", "session_recovered", "command"})
# Fault-injection hook of the crash test: "point:n" SIGKILLs this process the n-th time it passes ``point``
# (after_intent, before_submit, after_submit, mid_fills, after_step). Read at each call; off when empty.
_CRASH_AT = os.environ.get("BACKFORGE_PAPER_CRASH_AT", "")


class PaperRunner:
    """A paper/live session of ``portfolio`` on ``feed`` and ``broker`` with its state in ``state_dir``.

    ``reference`` is the data the program is validated against (a replay passes its data set; default: the
    feed's warm-up history); ``warmup_bars`` bounds that history (default: all the feed has).
    """

    def __init__(self, portfolio: sc.Portfolio, feed: Feed, broker: Broker, state_dir: str | Path, *,
                 config: LiveConfig | None = None, force: bool = False, reference: Any = None,
                 fundamentals: Any = None, warmup_bars: int | None = None, session_id: str | None = None) -> None:
        self.portfolio = portfolio
        self.feed = feed
        self.broker = broker
        self.config = config or LiveConfig()
        self.folder = Path(state_dir)
        spec = portfolio.model_dump(mode="json")
        self.session_id = session_id or f"{_slug(portfolio.name)}-{config_hash(spec)[:8]}"
        self.store = SessionStore.open(self.folder, config=spec, session_id=self.session_id, force=force)
        self.session_id = self.store.session_id
        self._log = open(self.folder / "events.jsonl", "a", buffering=1 << 16)
        self._log_held = False  # inside on_bar: the bar's lines are written at its end (one write, not one per line)
        self._crash_counts: dict[str, int] = {}
        self.halted = self.store.meta("halted") or ""
        self.error_streak = 0
        self.risk_halts: list[int] = []
        self.stopped = False
        self.bars_processed = 0
        self.last_latency_ns = 0  # the last bar's: from its arrival to its decisions made and its orders sent
        self._handed_ns = 0  # when the last send of the bar returned (perf_counter_ns)
        self._recent_orders: deque[tuple[int, int]] = deque()
        self._recent_total = 0  # the sum of _recent_orders' counts
        self._venue_final: set[str] = set()
        self._model_cid: dict[int, str] = {}  # engine order id -> client order id (and the reverse below)
        self._cid_model: dict[str, int] = {}
        self._ours: set[str] = set()  # client order ids the runner wrote (no store look-up to tell them from external)
        self._sends: list[tuple[int, BrokerOrder]] = []  # the bar's accepted sends, written after the last one
        self._held: list[tuple[int, str, dict]] = []  # the bar's event-log lines, serialized when it ends
        self._last_bar_wall = time.monotonic()
        self._last_status = 0.0
        try:
            self._open(reference, fundamentals, warmup_bars)
        except BaseException:
            self.close()
            raise

    # ================================================================== start and recovery
    def _open(self, reference: Any, fundamentals: Any, warmup_bars: int | None) -> None:
        self.feed.connect()
        self.broker.connect()
        big = warmup_bars if warmup_bars is not None else 10**12
        make_step = getattr(self.portfolio, "step_class", StrategyStep)  # a Strategy class: live/code_step.py
        snap = self.store.last_snapshot()
        if snap is None:
            history = self.feed.history(big)
            self.step = make_step(self.portfolio, history, reference=reference if reference is not None else history,
                                     fundamentals=fundamentals, feed_symbols=self.feed.symbols)
            self._emit("session_started", {"session": self.session_id, "warmup_bars": history.n_bars})
        else:
            t, ts, arrays = snap
            n_total = int(arrays["meta"][2])
            n_warm = int(arrays["meta"][1])
            history = self.feed.history(n_total, end_ns=ts)
            self.step = make_step(self.portfolio, history.rows(0, min(n_warm, history.n_bars)),
                                     reference=reference if reference is not None else history,
                                     fundamentals=fundamentals, feed_symbols=self.feed.symbols)
            self.step.restore(arrays, history)
            if hasattr(self.feed, "seek"):
                self.feed.seek(ts)
            self._emit("session_recovered", {"session": self.session_id, "snapshot_bar": t, "snapshot_ts": ts})
        self._universe = frozenset(self.step.assets)
        for row in self.store.orders():
            if not row["external"]:
                self._ours.add(row["client_order_id"])
                if row["engine_id"] is not None:
                    self._name_order(int(row["engine_id"]), row["client_order_id"])
        self.broker.instruments(list(self.portfolio.universe))
        self._reconcile_on_start()

    def _reconcile_on_start(self) -> None:
        """Before acting: fills since the last known one, every in-flight order, unknown open orders."""
        before = {r["client_order_id"]: r for r in self.store.in_flight()}
        self._drain(while_down=True)
        for fill in self.broker.fills(since_ns=self.store.last_fill_ts()):
            if self.store.add_fill(fill):
                self._emit("reconciliation", {"what": "fill_while_down", "fill_id": fill.fill_id,
                                              "client_order_id": fill.client_order_id, "qty": fill.qty, "price": fill.price})
        t_snap = self.step.t
        for cid, row in before.items():
            venue = self.broker.order(cid)
            if venue is not None:
                self._record_order(venue)
                if venue.status != row["status"]:
                    self._emit("reconciliation", {"what": "order_changed_while_down", "client_order_id": cid,
                                                  "was": row["status"], "now": venue.status})
                    if venue.status in ("cancelled", "rejected", "expired"):
                        # the venue closed it in the past: the model must not fill it when it re-steps those
                        # bars (a fill while down is made again by the model itself, bar for bar)
                        self._reconcile_orders(t_snap, self.step.last_ts or 0, only={cid})
            elif row["status"] in ("intent", "ambiguous") and row["bar"] is not None and row["bar"] <= t_snap:
                # decided and written before the snapshot, never reached the venue: send it now
                self._send_row(row)
            elif row["status"] not in ("intent", "ambiguous"):
                self._emit("reconciliation", {"what": "order_unknown_to_venue", "client_order_id": cid,
                                              "was": row["status"]})
                self.store.set_status(cid, "expired", "the venue does not know this order")
                self._reconcile_orders(t_snap, self.step.last_ts or 0, only={cid})
        for venue in self.broker.open_orders():
            if self.store.order(venue.client_order_id) is None:
                self.store.record_ack(venue, external=True)
                self._emit("reconciliation", {"what": "external_order", "client_order_id": venue.client_order_id,
                                              "symbol": venue.symbol, "qty": venue.qty, "side": venue.side})

    # ================================================================== the loop
    def run(self, *, max_bars: int | None = None, poll_timeout: float = 0.5) -> PaperRunner:
        """Consume bars until the feed ends, ``stop`` is asked, or ``max_bars`` bars were processed."""
        done = 0
        try:
            while not self.stopped and (max_bars is None or done < max_bars):
                self._commands()
                bar = self.feed.next_bar(timeout=poll_timeout)
                if bar is None:
                    if self.feed.finished:
                        break
                    self._check_stale()
                    self._status()
                    continue
                if self.on_bar(bar):
                    done += 1
        finally:
            self._status(force=True)
        return self

    def _check_stale(self) -> None:
        cfg = self.config
        bar_s = (self.feed.bar_ns or 0) / 1e9
        speed = getattr(self.feed, "speed", None) or 1.0
        if cfg.stale_intervals > 0 and bar_s > 0 and not self.halted:
            quiet = time.monotonic() - self._last_bar_wall
            if quiet > cfg.stale_intervals * bar_s / speed:
                self.halt(f"stale data: no bar for {quiet:.1f} s ({cfg.stale_intervals:g} bar intervals)")

    def on_bar(self, bar: BarEvent) -> bool:
        """Process one bar (see the module docstring). False when the bar was dropped."""
        started = time.perf_counter_ns()
        step = self.step
        last = step.last_ts
        fingerprint = bar_fingerprint(bar)
        if last is not None and bar.ts_ns <= last:
            known = self.store.bar_fingerprint(bar.ts_ns)
            what = "duplicate" if known == fingerprint else ("revised" if known is not None else "out_of_order")
            self._emit("bar_dropped", {"ts": bar.ts_ns, "last_ts": last, "why": what})
            return False
        self._last_bar_wall = time.monotonic()
        self._log_held = True
        try:
            with self.store.bar_batch():  # one transaction per bar, committed before the first order is sent
                try:
                    return self._on_bar(bar, started, fingerprint)
                finally:
                    if self._sends:  # the bar failed after sending: keep what the broker answered
                        self.store.record_sends(self._sends)
                        self._sends.clear()
        finally:
            self._log_held = False
            self._write_held()

    def _on_bar(self, bar: BarEvent, started: int, fingerprint: str) -> bool:
        step = self.step
        venue_clock = getattr(self.broker, "on_bar", None)
        if venue_clock is not None:
            self._broker_call(venue_clock, bar)
        self._drain()
        self._resend_pending()
        next_ts = self.feed.peek_ts() if hasattr(self.feed, "peek_ts") else None
        out = step.step(bar, next_ts=next_ts)
        self._crash("after_step")
        t = out.t
        self._reconcile_orders(t, bar.ts_ns)
        self._check_risk(t)
        self._reconcile_positions(t)
        self._handed_ns = 0
        sent = self._act(out, bar)
        # the bar's decisions are made and its last order is with the broker (its sends' answers are handled after
        # the stamp: a bar that sent nothing is stamped here)
        self.last_latency_ns = (self._handed_ns or time.perf_counter_ns()) - started
        self.store.record_sends(self._sends)  # their send counts and answers, committed with the bar record
        self._sends.clear()
        state = step.state
        signals = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), float(lv[0]),
                    json.dumps([None if x != x else float(x) for x in lv[1:]]))
                   for r, lv in zip(out.signals, out.signal_leaves)]
        snapshot = pack_arrays(step.snapshot()) if t % self.config.snapshot_every == 0 else None
        equity, cash = float(state.equity[t]), float(state.cash[0])
        self.store.commit_bar(t, bar.ts_ns, fingerprint, equity, cash, signals, snapshot)
        self.bars_processed += 1
        if self.config.log_bars:
            self._emit("bar", {"t": t, "ts": bar.ts_ns, "equity": equity, "cash": cash, "orders": sent,
                               "fills": out.fills_to - out.fills_from, "latency_us": self.last_latency_ns / 1e3})
        self._status()
        return True

    # ================================================================== broker traffic
    def _broker_call(self, fn, *args):
        try:
            result = fn(*args)
        except BrokerError as exc:
            self._broker_error(exc, getattr(fn, "__name__", "call"))
            return None
        self.error_streak = 0
        return result

    def _broker_error(self, exc: BrokerError, what: str) -> None:
        self.error_streak += 1
        self._emit("broker_error", {"call": what, "kind": exc.kind, "message": exc.message, "streak": self.error_streak})
        if exc.kind == "auth":
            self.halt(f"broker refused the credentials ({exc.message})")
        elif self.error_streak >= self.config.max_error_streak:
            self.halt(f"{self.error_streak} broker errors in a row (last: {exc.message})")

    def _drain(self, *, while_down: bool = False) -> None:
        updates = self._broker_call(self.broker.poll, 0.0) or []
        if not updates:
            return
        fresh = iter(self.store.add_fills([u for u in updates if isinstance(u, Fill)]))
        ours: list[BrokerOrder] = []  # updates of the runner's own orders: stored in one executemany, in order
        for update in updates:
            if isinstance(update, Fill):
                if next(fresh):
                    if while_down:
                        self._emit("reconciliation", {"what": "fill_while_down", "fill_id": update.fill_id,
                                                      "client_order_id": update.client_order_id, "qty": update.qty,
                                                      "price": update.price})
                    self._emit("fill", {"fill_id": update.fill_id, "client_order_id": update.client_order_id,
                                        "symbol": update.symbol, "side": update.side, "qty": update.qty,
                                        "price": update.price, "fee": update.fee, "ts": update.ts_ns})
                    self._crash("mid_fills")
            elif isinstance(update, BrokerOrder):
                if update.client_order_id in self._ours:
                    ours.append(update)
                    if update.status in FINAL_STATUSES:
                        self._venue_final.add(update.client_order_id)
                else:
                    self.store.record_acks(ours)
                    ours.clear()
                    self._record_order(update)
        self.store.record_acks(ours)

    def _record_order(self, venue: BrokerOrder, *, ours: bool = False) -> None:
        """Store the venue's view of an order (``ours``: the answer to our own submit, no look-up needed)."""
        cid = venue.client_order_id
        external = not ours and cid not in self._ours and self.store.order(cid) is None and not self._is_child(cid)
        self.store.record_ack(venue, external=external)
        if venue.status in FINAL_STATUSES:
            self._venue_final.add(venue.client_order_id)

    def _is_child(self, cid: str) -> bool:
        return ":" in cid and cid.split(":")[0].startswith(self.session_id)

    def _resend_pending(self) -> None:
        """Orders left as intents by retryable errors, and gated orders whose gate cleared."""
        for row in self.store.orders(("intent", "waiting")):
            if row["external"]:
                continue
            if row["status"] == "waiting" and self._gated(row["symbol"], exclude=row["client_order_id"]):
                continue
            if row["status"] == "intent" and row["bar"] is not None and row["bar"] > self.step.t:
                continue  # will be re-decided by the catch-up
            if self.halted:
                continue
            self._send_row(row)
        for row in self.store.orders(("ambiguous",)):
            venue = self._broker_call(self.broker.order, row["client_order_id"])
            if venue is not None:
                self._emit("reconciliation", {"what": "ambiguous_resolved", "client_order_id": row["client_order_id"],
                                              "status": venue.status})
                self._record_order(venue)

    def _send_row(self, row: dict) -> None:
        stored = row["request"]
        if isinstance(stored, bytes):  # a strategy's order: its engine fields (``engine_rows``)
            engine = engine_row_fields(stored)
            if engine is None:
                raise SessionError(f"order {row['client_order_id']} was stored by another version of backforge (its "
                                   "engine fields have another layout); it cannot be sent again",
                                   path=str(self.store.folder))
            request = _strategy_request(row["client_order_id"], row["symbol"], row["qty"], engine)
        else:
            request = OrderRequest(**json.loads(stored))
        self._submit(request, row["symbol"])

    def _submit(self, request: OrderRequest, symbol: str, sends: list | None = None, *,
                first: BrokerOrder | BrokerError | None = None) -> str:
        """Send one order. With ``sends`` (a bar's sends, inside its store batch), an accepted answer's send count
        and acknowledgement are appended there and written by the caller in one executemany (committed with the
        bar record, like the per-order writes they replace); errors are written at once. ``first``: the answer
        (or error) of a first attempt already made by :meth:`_submit_bar`."""
        cid = request.client_order_id
        for attempt in range(self.config.retry_limit + 1):
            if sends is None:
                self.store.mark_sent(cid)
            try:
                if attempt == 0 and first is not None:
                    if isinstance(first, BrokerError):
                        raise first
                    answer = first
                else:
                    self._crash("before_submit")
                    try:
                        answer = self.broker.submit(request)
                    finally:
                        self._handed_ns = time.perf_counter_ns()
            except BrokerError as exc:
                self._broker_error(exc, "submit")
                if sends is not None:
                    self.store.mark_sent(cid)
                if exc.kind == "retryable" and attempt < self.config.retry_limit and not self.halted:
                    time.sleep(min(exc.retry_after or 0.0, 1.0))
                    continue
                if exc.kind == "ambiguous":
                    self.store.set_status(cid, "ambiguous", exc.message)
                    return "ambiguous"
                if exc.kind in ("final", "auth"):
                    self.store.set_status(cid, "rejected", exc.message)
                    self._venue_final.add(cid)
                    return "rejected"
                self.store.set_status(cid, "intent", exc.message)  # retried on the next bar
                return "intent"
            self.error_streak = 0
            if not (attempt == 0 and first is not None):
                self._crash("after_submit")
            if sends is None:
                self._record_order(answer, ours=True)
            else:
                sends.append((attempt + 1, answer))
                if answer.status in FINAL_STATUSES:
                    self._venue_final.add(cid)
            self._emit("order_ack", {"client_order_id": cid, "status": answer.status,
                                     "venue_order_id": answer.venue_order_id})
            return answer.status
        return "intent"

    def _submit_bar(self, requests: list[OrderRequest], symbols: list[str]) -> None:
        """Send a bar's orders (already written and committed) in one broker call, then handle each answer as
        :meth:`_submit` does (a retryable error is retried alone)."""
        if not requests:
            return
        for _ in requests:
            self._crash("before_submit")
        try:
            answers = self.broker.submit_many(requests)
        except BrokerError as exc:  # the whole call failed (e.g. a dropped connection): each order got that answer
            answers = [exc] * len(requests)
        self._handed_ns = time.perf_counter_ns()
        for _ in requests:
            self._crash("after_submit")
        for request, symbol, answer in zip(requests, symbols, answers):
            self._submit(request, symbol, self._sends, first=answer)

    def _gated_symbols(self) -> dict[str, set[str]]:
        """The client order ids in flight per symbol that gate new orders (see ``LiveConfig.gate``)."""
        gate = self.config.gate
        if gate == "off":
            return {}
        statuses = ("intent", "ambiguous") if gate == "unacknowledged" else ("intent", "ambiguous", "accepted",
                                                                             "partially_filled", "pending_cancel")
        out: dict[str, set[str]] = {}
        for r in self.store.orders(statuses):
            if not r["external"]:
                out.setdefault(r["symbol"], set()).add(r["client_order_id"])
        return out

    def _gated(self, symbol: str, *, exclude: str = "") -> bool:
        return bool(self._gated_symbols().get(symbol, set()) - {exclude})

    # ================================================================== acting on the step
    def _name_order(self, oid: int, cid: str) -> None:
        """Record that engine order ``oid`` is sent as ``cid`` (a runner-made order)."""
        self._model_cid[oid] = cid
        self._cid_model[cid] = oid
        self._ours.add(cid)

    def _act(self, out, bar: BarEvent) -> int:
        state = self.step.state
        t, ts = out.t, out.ts
        legs: dict[int, int] = {}
        decided: list[tuple] = []
        tripping = ""
        sent = 0
        cfg = self.config
        gated: dict[str, set[str]] | None = None  # in-flight orders per symbol, read once per bar
        lo, hi = out.orders_from, out.orders_to
        if hi <= lo:
            return 0
        # the bar's new orders read once: their records as tuples, their venue quantities in one compiled pass
        records = state.orders[lo:hi].tolist()
        rows = engine_rows(state.orders, lo, hi)  # what the store keeps to send an order again after a restart
        quantities = np.empty(hi - lo)
        venue_qtys_nb(state, self.step.params, lo, hi, quantities)
        f = _ORDER_FIELD_INDEX
        for oid in range(lo, hi):
            record = records[oid - lo]
            if record[f["parent_id"]] >= 0 or record[f["reason"]] not in (k.R_SIGNAL, k.R_RISK, k.R_USER):
                continue  # engine-made children (brackets, liquidation): emulated by the same kernels at the venue
            s = record[f["tag"]]
            leg = legs.get(s, 0)
            legs[s] = leg + 1
            cid = f"{self.session_id}-{t}-{s if s >= 0 else 'risk'}-{leg}"
            self._name_order(oid, cid)
            a = record[f["asset"]]
            symbol = self.step.assets[a]
            price = float(state.mark[a])
            qty = float(quantities[oid - lo])
            request = _strategy_request(cid, symbol, qty, record_fields(record))
            side, kind = request.side, request.order_type
            status = "intent"
            reason = ""
            if record[f["status"]] == k.REJECTED:
                status, reason = "rejected", Reason.describe(record[f["reason"]])
            elif self.halted or tripping:
                status, reason = "suppressed", f"session halted: {self.halted or tripping}"
            elif cfg.max_notional_per_order is not None and qty * price > cfg.max_notional_per_order:
                status, reason = "refused", f"notional {qty * price:,.2f} above max_notional_per_order"
            else:
                while self._recent_orders and self._recent_orders[0][0] <= t - cfg.rate_window_bars:
                    self._recent_total -= self._recent_orders.popleft()[1]
                if self._recent_total >= cfg.max_orders_per_bar:
                    status, reason = "refused", (f"order-rate limit: more than {cfg.max_orders_per_bar} orders in "
                                                 f"{cfg.rate_window_bars} bars")
                else:
                    if gated is None:
                        gated = self._gated_symbols()
                    if gated.get(symbol, set()) - {cid}:  # its own intent (a bar re-decided after a restart) never gates it
                        status, reason = "waiting", "an earlier order for this asset is in flight"
            intent = OrderIntent(cid, t, ts, s, leg, oid, symbol, side, qty, kind, request.limit_price,
                                 request.stop_price, rows[oid - lo], status)
            decided.append((oid, cid, symbol, side, qty, kind, request, intent, status, reason))
            if status == "refused":
                tripping = reason
            if status == "intent":
                self._recent_orders.append((t, 1))
                self._recent_total += 1
        fresh_flags = self.store.write_intents([d[7] for d in decided])  # durable before anything is sent
        sending: list[OrderRequest] = []
        sending_symbols: list[str] = []
        for (oid, cid, symbol, side, qty, kind, request, intent, status, reason), fresh in zip(decided, fresh_flags):
            self._crash("after_intent")
            if status in ("suppressed", "refused"):
                k.cancel_order_nb(state, oid, t, ts, k.R_USER)  # the model must not fill what the venue never got
                self.store.set_status(cid, status, reason)
                self._emit("order_refused", {"client_order_id": cid, "status": status, "reason": reason})
                if status == "refused" and not self.halted:
                    self.halt(reason)
                continue
            if status != "intent":
                self._emit("order", {"client_order_id": cid, "status": status, "reason": reason})
                continue
            if not fresh:  # re-decided after a restart: the store knows it
                row = self.store.order(cid)
                if row["status"] not in ("intent", "ambiguous"):
                    continue
                venue = self._broker_call(self.broker.order, cid)
                if venue is not None:
                    self._record_order(venue)
                    continue
            self._emit("order", {"client_order_id": cid, "symbol": symbol, "side": side, "qty": qty, "type": kind,
                                 "bar": t})
            sending.append(request)
            sending_symbols.append(symbol)
            sent += 1
        self._submit_bar(sending, sending_symbols)
        return sent

    # ================================================================== reconciliation
    def _reconcile_orders(self, t: int, ts: int, *, only: set[str] | None = None) -> None:
        """Orders the venue finished (cancelled, rejected, expired, filled) that the model still works after
        the same bar: the venue acted on its own; close them in the model."""
        todo = self._venue_final if only is None else only
        if not todo:
            return
        state = self.step.state
        for cid in sorted(todo):
            oid = self._cid_model.get(cid)
            if oid is None or int(state.orders[oid]["status"]) not in _ACTIVE:
                continue
            row = self.store.order(cid) or {}
            k.cancel_order_nb(state, oid, t, ts, k.R_USER)
            self._emit("reconciliation", {"what": "venue_closed_order", "client_order_id": cid,
                                          "venue_status": row.get("status"), "reason": row.get("reason", "")})
        if only is None:
            self._venue_final.clear()

    def _reconcile_positions(self, t: int) -> None:
        venue = self._broker_call(self.broker.positions)
        if venue is None:
            return
        state = self.step.state
        mismatches = []
        for a, (symbol, model) in enumerate(zip(self.step.assets, state.position.tolist())):
            pos = venue.get(symbol)
            have = pos.qty if pos is not None else 0.0
            if model != have and abs(model - have) > 1e-9 * max(1.0, abs(have)):
                mismatches.append((a, symbol, model, have, pos.avg_price if pos is not None else 0.0))
        universe = self._universe
        for symbol, pos in venue.items():
            if symbol not in universe and pos.qty != 0:
                self._emit("reconciliation", {"what": "external_position", "symbol": symbol, "qty": pos.qty})
        if not mismatches:
            return
        account = self._broker_call(self.broker.account)
        for a, symbol, model, have, avg in mismatches:
            event = {"what": "position_mismatch", "symbol": symbol, "model": model, "venue": have,
                     "policy": self.config.reconcile_policy, "bar": t}
            self._emit("reconciliation", event)
            if self.config.reconcile_policy == "adopt":
                state.position[a] = have
                # a spot venue reports balances without an entry price: the bar's mark stands in (an average
                # price of 0 on an open position divides by zero in the kernels' return arithmetic)
                state.avg_price[a] = (avg if avg > 0 else float(state.mark[a])) if have != 0 else 0.0
        if self.config.reconcile_policy == "adopt":
            if account is not None:
                state.cash[0] = account.cash
        elif not self.halted:
            self.halt(f"position mismatch on {', '.join(m[1] for m in mismatches)} (policy halt)")
        self.store.set_positions({s: (p.qty, p.avg_price) for s, p in venue.items()})

    def _check_risk(self, t: int) -> None:
        """The risk layer's halts (engine/risk.py) are the session's risk breakers: the model already enforces
        them exactly as the backtest does (entries blocked, stand-down orders sent), so they are reported —
        event and status — rather than suppressing orders a second time."""
        book = self.step.state.risk
        if book.on[0] == 0:
            return
        halted = [row for row in range(book.state.shape[0]) if int(book.state[row]["halt"]) != 0]
        if halted != self.risk_halts:
            names = ["portfolio" if r == 0 else self.portfolio.strategies[r - 1].name for r in halted]
            self._emit("halt" if halted else "resume", {"source": "risk", "bar": t, "rows": names,
                                                        "reason": f"risk halt: {', '.join(names)}" if halted else ""})
            self.risk_halts = halted

    # ================================================================== control
    def halt(self, reason: str) -> None:
        """Trip the circuit breaker: no order is sent until :meth:`resume`."""
        self.halted = reason
        self.store.set_meta("halted", reason)
        self._emit("halt", {"reason": reason})

    def resume(self) -> None:
        """Clear a tripped breaker."""
        if self.halted:
            self._emit("resume", {"was": self.halted})
        self.halted = ""
        self.error_streak = 0
        self.store.set_meta("halted", "")

    def flatten(self) -> None:
        """Halt and close every position with market orders (sent now, filled on the venue's next bar)."""
        state = self.step.state
        t = max(self.step.t, 0)
        ts = self.step.last_ts or 0
        self.halt("flatten requested")
        for a, symbol in enumerate(self.step.assets):
            pos = float(state.position[a])
            if pos == 0.0:
                continue
            side = -1 if pos > 0 else 1
            oid = k.submit_order_nb(state, t, ts, a, side, k.MARKET, k.TARGET_UNITS, 0.0, np.nan, np.nan, np.nan,
                                    np.nan, np.nan, np.nan, np.nan, np.nan, k.GTC, 0, k.EXIT, -1, -1, 0, -1, k.R_USER)
            cid = f"{self.session_id}-{t}-flat-{a}"
            self._name_order(oid, cid)
            request = OrderRequest(cid, symbol, "buy" if side > 0 else "sell", abs(pos), reduce_only=True,
                                   engine_order=order_fields(state.orders[oid]))
            self.store.write_intent(OrderIntent(cid, t, ts, -1, a, oid, symbol, request.side, abs(pos), "market",
                                                request=json.dumps(_request_dict(request))))
            self._submit(request, symbol)

    def _commands(self) -> None:
        for command in self.store.take_commands():
            name, _, arg = command.partition(":")
            self._emit("command", {"command": name})
            if name == "halt":
                self.halt(arg or "halted by the operator")
            elif name == "resume":
                self.resume()
            elif name == "flatten":
                self.flatten()
            elif name == "stop":
                self.stopped = True

    # ================================================================== observability
    def _emit(self, kind: str, payload: dict) -> None:
        """One event-log line (written at once, or with the rest of its bar's lines when the bar ends: the log is
        for reading, the store is the durable record); reconciliation, halt, repair and refusal events also go to
        the store."""
        if self._log_held:
            self._held.append((time.time_ns(), kind, payload))
        else:
            self._log.write(json.dumps({"wall_ns": time.time_ns(), "kind": kind, **payload}, default=str) + "\n")
            self._log.flush()
        if kind in _STORED_EVENTS:
            self.store.event(kind, payload)

    def _write_held(self) -> None:
        if self._held:
            dumps = json.dumps
            self._log.write("".join(dumps({"wall_ns": w, "kind": kind, **payload}, default=str) + "\n"
                                    for w, kind, payload in self._held))
            self._held.clear()
        self._log.flush()

    def status(self) -> dict:
        """Positions, P&L, open orders, last bar, breaker state, lag and heartbeat."""
        state = self.step.state
        t = self.step.t
        positions = {}
        for a, symbol in enumerate(self.step.assets):
            qty = float(state.position[a])
            if qty != 0.0:
                mark = float(state.mark[a])
                positions[symbol] = {"qty": qty, "avg_price": float(state.avg_price[a]), "mark": mark,
                                     "unrealized": qty * (mark - float(state.avg_price[a]))}
        equity = float(state.equity[t]) if t >= 0 else float(state.cash[0])
        last_ts = self.step.last_ts
        return {
            "session": self.session_id, "pid": os.getpid(), "heartbeat_ns": time.time_ns(),
            "bars": t + 1, "last_bar_ts": last_ts,
            "lag_s": (time.time_ns() - last_ts) / 1e9 if last_ts else None,
            "last_bar_latency_us": self.last_latency_ns / 1e3,
            "cash": float(state.cash[0]), "equity": equity, "pnl": equity - self.step.sim_config.cash,
            "positions": positions,
            "open_orders": [{"client_order_id": r["client_order_id"], "symbol": r["symbol"], "side": r["side"],
                             "qty": r["qty"], "status": r["status"]} for r in self.store.in_flight()],
            "breakers": {"halted": bool(self.halted), "reason": self.halted, "error_streak": self.error_streak,
                         "risk_halts": ["portfolio" if r == 0 else self.portfolio.strategies[r - 1].name
                                        for r in self.risk_halts]},
            "finished": bool(self.feed.finished),
        }

    def _status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.config.status_every_s:
            return
        self._last_status = now
        path = self.folder / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=1, default=str))
        os.replace(tmp, path)

    def _crash(self, point: str) -> None:
        if not _CRASH_AT:
            return
        name, _, count = _CRASH_AT.partition(":")
        if name != point:
            return
        n = self._crash_counts.get(point, 0) + 1
        self._crash_counts[point] = n
        if n == int(count or 1):
            self._write_held()
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        """Release the state folder (the broker connection stays with its owner)."""
        try:
            if getattr(self, "step", None) is not None:
                self._status(force=True)
        except (BackforgeError, OSError):
            pass
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()
        self.store.close()

    def __enter__(self) -> PaperRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def venue_qty(state: k.State, params: k.Params, order, price: float) -> float:
    """The quantity to ask the venue for: what the engine order wants at ``price`` (the mark), its closing part
    exact and its opening part rounded down to the asset's lot size with the engine's own
    :func:`~backforge.engine.kernels.round_lot_nb` — as the engine's fill sizes it (0 when there is no price).

    >>> import numpy as np
    >>> from backforge.engine.config import SimConfig
    >>> from backforge.live._engine import fresh_state
    >>> params = SimConfig(cash=10_000, lot_size=5).lower(("A",), has_quotes=False)
    >>> state = fresh_state(1, cash=10_000, record_positions=False)
    >>> oid = k.submit_order_nb(state, 0, 0, 0, 1, k.MARKET, k.UNITS, 12.0, np.nan, np.nan, np.nan, np.nan, np.nan,
    ...                         np.nan, np.nan, np.nan, k.GTC, 0, k.ENTRY, -1, -1, 0, -1, k.R_SIGNAL)
    >>> venue_qty(state, params, state.orders[oid], 100.0)
    10.0
    """
    return float(venue_qty_nb(state, params, order, price))


def _strategy_request(cid: str, symbol: str, qty: float, engine: dict) -> OrderRequest:
    """The request of a strategy's order from its engine fields (``engine``: what the paper venue books and
    sizes) and its venue quantity ``qty`` (what other venues trade): one construction for the first send and
    for a send after a restart (from the stored row)."""
    return OrderRequest(cid, symbol, "buy" if engine["side"] > 0 else "sell", qty if qty > 0 else 1e-12,
                        _KIND_NAMES[engine["order_type"]], engine["limit_price"], engine["stop_price"],
                        _TIF_NAMES.get(engine["tif"], "gtc"), reduce_only=engine["role"] == k.EXIT,
                        engine_order=engine)


def _request_dict(request: OrderRequest) -> dict:
    return {name: getattr(request, name) for name in OrderRequest.__dataclass_fields__}
