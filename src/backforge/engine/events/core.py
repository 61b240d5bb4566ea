"""The compiled event core: two books (exchange and local), order latency, queue position, matching.

Two clocks run through one event stream (hftbacktest's design): the **exchange** applies each row at
its ``exch_ts`` to its book and matches resting orders; the **local** side (the strategy) applies the
same row at its ``local_ts``. Orders travel local → exchange with the entry latency and responses
exchange → local with the response latency. At each step the earliest of four things happens next,
ties broken in this order: a local feed row, an order response arriving locally, an exchange feed row,
an order request arriving at the exchange (:func:`goto_nb`).

Named steps (all ``*_nb``, arrays and scalars only):

* ``set_level_nb`` / ``apply_book_row_nb`` — a tick-indexed book window (memory = window ticks, not
  data length); quotes remove better levels of their side; a side crossing the other moves it away;
* ``queue_new_nb``, ``queue_trade_nb``, ``queue_depth_nb``, ``queue_filled_nb`` — hftbacktest's
  risk-averse and probabilistic queue models (``queue.rs``);
* ``exchange_row_nb`` — fills of resting orders by trades and by the book moving through them;
* ``ack_new_nb``, ``ack_cancel_nb``, ``ack_modify_nb`` — an order request at the exchange, with and
  without partial fills (``nopartialfillexchange.rs`` / ``partialfillexchange.rs``);
* ``fill_nb`` — account, order, fill, trade and order-log records (the bar engine's record dtypes);
* ``receive_response_nb`` — the local view of an order and of the position.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from backforge._jit import njit
from backforge.engine.records import EventKind, OrderRole, OrderStatus, OrderType, Reason, TimeInForce

# error_model="numpy": compiled code never raises (a division by zero gives inf/nan, as in numpy)
kernel = njit(cache=True, _nrt=False, error_model="numpy")
inline = njit(cache=True, _nrt=False, inline="always", error_model="numpy")

# --------------------------------------------------------------------------------------------- codes
TRADE, QUOTE, DEPTH, SNAPSHOT, CLEAR = 1, 2, 3, 4, 5
GTC, GTX, IOC, FOK = TimeInForce.GTC, TimeInForce.GTX, TimeInForce.IOC, TimeInForce.FOK
MARKET, LIMIT = OrderType.MARKET, OrderType.LIMIT
# order states (exchange and local views), hftbacktest's Status
ST_NONE, ST_NEW, ST_PARTIAL, ST_FILLED, ST_CANCELED, ST_EXPIRED, ST_REJECTED = 0, 1, 2, 3, 4, 5, 6
# requests in flight
REQ_NONE, REQ_NEW, REQ_CANCEL, REQ_MODIFY, REQ_REJECTED = 0, 1, 2, 3, 4
# queue models
Q_RISK_AVERSE, Q_POWER, Q_POWER2, Q_POWER3, Q_LOG, Q_LOG2 = 0, 1, 2, 3, 4, 5
# elapse results (hftbacktest's ElapseResult)
R_OK, R_END, R_FEED, R_RESPONSE = 0, 1, 2, 3
# API error codes
E_OK, E_ID_EXISTS, E_NOT_FOUND, E_IN_PROCESS, E_CAPACITY, E_BAD_PRICE, E_BAD_QTY = 0, -1, -2, -3, -4, -5, -6

INT_MAX = np.iinfo(np.int64).max
ID_EMPTY = np.iinfo(np.int64).min  # the one order id that cannot be used
# record codes as plain ints (module-level ints are frozen into compiled code)
EV_CANCELLED = EventKind.CANCELLED
EV_EXPIRED = EventKind.EXPIRED
EV_FILLED = EventKind.FILLED
EV_REJECTED = EventKind.REJECTED
EV_REPLACED = EventKind.REPLACED
EV_SUBMITTED = EventKind.SUBMITTED
ROLE_ENTRY = OrderRole.ENTRY
ROLE_EXIT = OrderRole.EXIT
OS_CANCELLED = OrderStatus.CANCELLED
OS_EXPIRED = OrderStatus.EXPIRED
OS_FILLED = OrderStatus.FILLED
OS_PENDING = OrderStatus.PENDING
OS_REJECTED = OrderStatus.REJECTED
RS_LATENCY_REJECT = Reason.LATENCY_REJECT
RS_NONE = Reason.NONE
RS_NO_LIQUIDITY = Reason.NO_LIQUIDITY
RS_POST_ONLY = Reason.POST_ONLY
RS_REPLACED = Reason.REPLACED
RS_UNKNOWN_ORDER = Reason.UNKNOWN_ORDER
RS_USER = Reason.USER

# params slots (f8)
P_TICK, P_LOT, P_MAKER, P_TAKER, P_QUEUE, P_QN, P_PARTIAL, P_ENTRY, P_RESP, P_INTP, P_CASH, P_SAMPLE_NS, \
    P_MARKET_TICKS = range(13)
N_PARAMS = 13
# integer state slots
(I_CUR, I_IE, I_IL, I_XBB, I_XBA, I_LBB, I_LBA, I_NSLOT, I_NMSG, I_NORD, I_NFILL, I_NTRADE, I_NEVT, I_NSAMP,
 I_NEXT_SAMPLE, I_LAT_E, I_LAT_R, I_OVERFLOW, I_MIN_TO_EXCH, I_MIN_TO_LOCAL, I_RESTING, I_WLO, I_W, I_STARTED,
 I_OPEN_TS, I_OPEN_SAMPLE, I_LAST_EXCH_TS, I_MIN_SELL, I_MAX_BUY) = range(29)
N_INTS = 29
# float state slots
(F_POS, F_CASH, F_FEES, F_AVG, F_ENTRY_FEES, F_LPOS, F_LCASH, F_LFEES, F_BUY_VOL, F_SELL_VOL, F_LAST_TRADE,
 F_TRADED, F_SLIPPAGE, F_EXT_HI, F_EXT_LO, F_LNTRADES) = range(16)
N_FLOATS = 16

slot_dt = np.dtype([
    ("id", np.int64), ("in_use", np.int64), ("side", np.int64), ("order_type", np.int64), ("tif", np.int64),
    ("rec", np.int64), ("inflight", np.int64),
    # exchange view
    ("x_status", np.int64), ("x_tick", np.int64), ("x_qty", np.float64), ("x_leaves", np.float64),
    ("x_resting", np.int64), ("front_q", np.float64), ("cum_trade", np.float64), ("x_ts", np.int64),
    ("nxt", np.int64), ("prv", np.int64),  # our other orders resting at the same tick (linked list)
    # local view
    ("l_status", np.int64), ("l_req", np.int64), ("l_tick", np.int64), ("l_qty", np.float64),
    ("l_leaves", np.float64), ("l_exec_qty", np.float64), ("l_exec_tick", np.int64), ("l_ts", np.int64),
    ("l_req_ts", np.int64), ("l_prev_tick", np.int64), ("l_prev_qty", np.float64),
], align=True)
"""One order slot: the exchange's copy and the strategy's (local) copy of the same order."""

msg_dt = np.dtype([
    ("ts", np.int64), ("slot", np.int64), ("to_local", np.int64), ("req", np.int64), ("status", np.int64),
    ("tick", np.int64), ("qty", np.float64), ("leaves", np.float64), ("exec_qty", np.float64),
    ("exec_tick", np.int64), ("maker", np.int64), ("x_ts", np.int64), ("req_ts", np.int64), ("seq", np.int64),
    ("rec", np.int64),
], align=True)
"""An order request travelling to the exchange, or a response (the exchange's order snapshot) travelling back."""


class Sim(NamedTuple):
    """Everything the event core reads and mutates (arrays only, so it caches and passes cheaply)."""

    exch_ts: np.ndarray
    local_ts: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    params: np.ndarray  # f8[N_PARAMS]
    ints: np.ndarray  # i8[N_INTS]
    floats: np.ndarray  # f8[N_FLOATS]
    x_bid: np.ndarray  # f8[W] exchange book
    x_ask: np.ndarray
    l_bid: np.ndarray  # f8[W] local book
    l_ask: np.ndarray
    x_bid_orders: np.ndarray  # i8[W] first of our orders resting at each bid tick (-1: none)
    x_ask_orders: np.ndarray
    slots: np.ndarray  # slot_dt[S]
    id_keys: np.ndarray  # i8[2^k] open-addressing table: order id -> slot (ID_EMPTY = free)
    id_slots: np.ndarray  # i8[2^k]
    msgs: np.ndarray  # msg_dt[M]
    lat_req: np.ndarray  # i8[L] recorded order latencies (req, exch, resp timestamps)
    lat_exch: np.ndarray
    lat_resp: np.ndarray
    orders: np.ndarray  # order_dt[C]
    fills: np.ndarray  # fill_dt[C]
    trades: np.ndarray  # trade_dt[C]
    events: np.ndarray  # event_dt[4C]
    sample_ts: np.ndarray  # i8[H]
    equity: np.ndarray  # f8[H]
    cash: np.ndarray
    position: np.ndarray
    mid: np.ndarray


# ----------------------------------------------------------------------------------------------- book

@inline
def best_below_nb(book, start):
    """Highest index <= start with a positive quantity (-1 if none)."""
    t = start
    while t >= 0:
        if book[t] > 0.0:
            return t
        t -= 1
    return -1


@inline
def best_above_nb(book, start, w):
    """Lowest index >= start with a positive quantity (w if none)."""
    t = start
    while t < w:
        if book[t] > 0.0:
            return t
        t += 1
    return w


@inline
def set_level_nb(bid, ask, ints, bb_slot, ba_slot, side, t, q, lot):
    """Set the quantity of level ``t``; keep the best ticks; a crossing level clears the other side's
    levels it crosses. Returns the previous quantity. hftbacktest's ``update_bid_depth`` /
    ``update_ask_depth`` (quantities below half a lot count as an empty level)."""
    w = bid.shape[0]
    if q < lot * 0.5:
        q = 0.0
    if side > 0:
        prev = bid[t]
        bid[t] = q
        if q == 0.0:
            if t == ints[bb_slot]:
                ints[bb_slot] = best_below_nb(bid, t - 1)
        elif t > ints[bb_slot]:
            ints[bb_slot] = t
            if t >= ints[ba_slot]:
                for u in range(ints[ba_slot], t + 1):
                    ask[u] = 0.0
                ints[ba_slot] = best_above_nb(ask, t + 1, w)
    else:
        prev = ask[t]
        ask[t] = q
        if q == 0.0:
            if t == ints[ba_slot]:
                ints[ba_slot] = best_above_nb(ask, t + 1, w)
        elif t < ints[ba_slot]:
            ints[ba_slot] = t
            if t <= ints[bb_slot]:
                for u in range(t, ints[bb_slot] + 1):
                    bid[u] = 0.0
                ints[bb_slot] = best_below_nb(bid, t - 1)
    return prev


@inline
def clear_side_nb(bid, ask, ints, bb_slot, ba_slot, side):
    w = bid.shape[0]
    if side >= 0:
        bid[:] = 0.0
        ints[bb_slot] = -1
    if side <= 0:
        ask[:] = 0.0
        ints[ba_slot] = w


@inline
def apply_book_row_nb(bid, ask, ints, bb_slot, ba_slot, kind, side, price, qty, tick_size, lot):
    """Apply one feed row to a book (local side: no matching). Trades do not change the book."""
    if kind == CLEAR:
        clear_side_nb(bid, ask, ints, bb_slot, ba_slot, side)
        return
    if kind == TRADE:
        return
    t = int(np.round(price / tick_size)) - ints[I_WLO]
    if t < 0 or t >= bid.shape[0]:
        return
    if kind == QUOTE:
        # a quote with a size sets level t next (set_level_nb makes it the best): no need to scan the
        # (in L1 data, empty) levels below it; a zero-size quote empties the side down to t
        keep = qty >= lot * 0.5
        if side > 0:
            for u in range(t + 1, max(ints[bb_slot] + 1, t + 1)):
                bid[u] = 0.0
            if ints[bb_slot] > t:
                ints[bb_slot] = -1 if keep else best_below_nb(bid, t)
        else:
            for u in range(min(ints[ba_slot], t), t):
                ask[u] = 0.0
            if ints[ba_slot] < t:
                ints[ba_slot] = bid.shape[0] if keep else best_above_nb(ask, t, bid.shape[0])
    set_level_nb(bid, ask, ints, bb_slot, ba_slot, side, t, qty, lot)


# ---------------------------------------------------------------------------------------- queue models

@inline
def prob_nb(model, n, front, back):
    """hftbacktest's probability functions: the chance a decrease of the level happened behind us."""
    if model == Q_POWER:
        fb, ff = back ** n, front ** n
        return fb / (fb + ff)
    if model == Q_POWER2:
        return back ** n / (back + front) ** n
    if model == Q_POWER3:
        return 1.0 - (front / (front + back)) ** n
    if model == Q_LOG:
        fb, ff = np.log1p(back), np.log1p(front)
        return fb / (fb + ff)
    return np.log1p(back) / np.log1p(back + front)  # Q_LOG2


@inline
def queue_depth_nb(slots, i, model, n, prev_qty, new_qty):
    """The level of resting order ``i`` changed from ``prev_qty`` to ``new_qty``."""
    if model == Q_RISK_AVERSE:
        slots[i].front_q = min(slots[i].front_q, new_qty)
        return
    chg = prev_qty - new_qty - slots[i].cum_trade
    slots[i].cum_trade = 0.0
    if chg < 0.0:
        slots[i].front_q = min(slots[i].front_q, new_qty)
        return
    front = slots[i].front_q
    back = prev_qty - front
    p = prob_nb(model, n, front, back)
    if np.isinf(p):
        p = 1.0
    est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
    # Rust's f64::min returns the other operand when one is NaN (hftbacktest relies on it)
    slots[i].front_q = new_qty if np.isnan(est) else min(est, new_qty)


@inline
def queue_trade_nb(slots, i, model, qty):
    slots[i].front_q -= qty
    if model != Q_RISK_AVERSE:
        slots[i].cum_trade += qty


@inline
def queue_filled_nb(slots, i, lot):
    """Quantity the queue model says executed (the part of a trade beyond the queue ahead of us)."""
    execd = np.floor(-slots[i].front_q / lot + 0.5)  # Rust f64::round: half away from zero
    if execd > 0:
        slots[i].front_q = 0.0
        return execd * lot
    return 0.0


# ------------------------------------------------------------------------------------------- latency

@inline
def _intp(x, x1, y1, x2, y2):
    return int(float(y2 - y1) / float(x2 - x1) * float(x - x1)) + y1


@kernel
def entry_latency_nb(sim, ts):
    """Order entry latency at local time ``ts``: constant, or interpolated between the recorded
    requests around ``ts`` (hftbacktest ``IntpOrderLatency.entry``; negative = rejected)."""
    if sim.params[P_INTP] == 0.0:
        return int(sim.params[P_ENTRY])
    req, exch = sim.lat_req, sim.lat_exch
    n = req.shape[0]
    if ts < req[0]:
        return exch[0] - req[0]
    if ts >= req[n - 1]:
        return exch[n - 1] - req[n - 1]
    i = np.searchsorted(req, ts, "right") - 1
    return _intp(ts, req[i], exch[i] - req[i], req[i + 1], exch[i + 1] - req[i + 1])


@kernel
def response_latency_nb(sim, ts):
    """Response latency at exchange time ``ts`` (constant or interpolated on the recorded exchange times)."""
    if sim.params[P_INTP] == 0.0:
        return int(sim.params[P_RESP])
    exch, resp = sim.lat_exch, sim.lat_resp
    n = exch.shape[0]
    if ts < exch[0]:
        return resp[0] - exch[0]
    if ts >= exch[n - 1]:
        return resp[n - 1] - exch[n - 1]
    i = np.searchsorted(exch, ts, "right") - 1
    return _intp(ts, exch[i], resp[i] - exch[i], exch[i + 1], resp[i + 1] - exch[i + 1])


# ------------------------------------------------------------------------------------------ messages

@kernel
def push_msg_nb(sim, ts, slot, to_local, req):
    """Queue a request (to the exchange) or a response snapshot (to local) arriving at ``ts``."""
    ints = sim.ints
    m = ints[I_NMSG]
    if m >= sim.msgs.shape[0] - 1:  # the last row is the scratch row of pop_msg_nb
        ints[I_OVERFLOW] = 1
        return
    s = sim.slots[slot]
    g = sim.msgs[m]
    g.ts = ts
    g.slot = slot
    g.to_local = to_local
    g.req = req
    g.seq = m
    g.rec = s.rec
    if to_local:
        g.status = s.x_status
        g.tick = s.x_tick
        g.qty = s.x_qty
        g.leaves = s.x_leaves
        g.x_ts = s.x_ts
        g.req_ts = s.l_req_ts
        if ts < ints[I_MIN_TO_LOCAL]:
            ints[I_MIN_TO_LOCAL] = ts
    else:
        g.tick = s.l_tick
        g.qty = s.l_qty
        g.req_ts = s.l_req_ts
        if ts < ints[I_MIN_TO_EXCH]:
            ints[I_MIN_TO_EXCH] = ts
    g.exec_qty = 0.0
    g.exec_tick = 0
    g.maker = 0
    sim.slots[slot].inflight += 1
    ints[I_NMSG] = m + 1


@kernel
def pop_msg_nb(sim, to_local, ts):
    """Move the earliest message of one direction with ``msg.ts <= ts`` (first sent first among
    equal times) to the scratch row ``msgs[-1]`` and return that row's index (-1 if none)."""
    ints = sim.ints
    msgs = sim.msgs
    best = -1
    best_ts = INT_MAX
    n = ints[I_NMSG]
    for m in range(n):
        if msgs[m].to_local == to_local and msgs[m].ts <= ts and msgs[m].ts < best_ts:
            best = m
            best_ts = msgs[m].ts
    if best < 0:
        return -1
    scratch = msgs.shape[0] - 1
    msgs[scratch] = msgs[best]
    for m in range(best, n - 1):
        msgs[m] = msgs[m + 1]
    ints[I_NMSG] = n - 1
    # recompute the earliest arrival per direction
    lo_e = INT_MAX
    lo_l = INT_MAX
    for m in range(n - 1):
        if msgs[m].to_local:
            if msgs[m].ts < lo_l:
                lo_l = msgs[m].ts
        elif msgs[m].ts < lo_e:
            lo_e = msgs[m].ts
    ints[I_MIN_TO_EXCH] = lo_e
    ints[I_MIN_TO_LOCAL] = lo_l
    sim.slots[msgs[scratch].slot].inflight -= 1
    return scratch


# ------------------------------------------------------------------------------------------- records

@inline
def record_event_nb(sim, oid, ts, kind, reason, price, qty):
    n = sim.ints[I_NEVT]
    if n >= sim.events.shape[0]:
        sim.ints[I_OVERFLOW] = 1
        return
    e = sim.events[n]
    e.order_id = oid
    e.bar = max(sim.ints[I_NSAMP] - 1, 0)
    e.ts = ts
    e.kind = kind
    e.reason = reason
    e.price = price
    e.qty = qty
    sim.ints[I_NEVT] = n + 1


@kernel
def mid_nb(sim):
    """Mid price of the exchange book (last trade / NaN when a side is empty)."""
    bb, ba = sim.ints[I_XBB], sim.ints[I_XBA]
    if bb >= 0 and ba < sim.x_bid.shape[0]:
        return (bb + ba + 2 * sim.ints[I_WLO]) * 0.5 * sim.params[P_TICK]
    return sim.floats[F_LAST_TRADE]


@kernel
def fill_nb(sim, i, ts, exec_tick, exec_qty, maker, quote_tick):
    """Execute ``exec_qty`` of slot ``i`` at ``exec_tick``: account (hftbacktest ``State.apply_fill`` with
    a trading-value fee), order, fill, trade and order-log records."""
    p = sim.params
    f = sim.floats
    s = sim.slots[i]
    tick_size = p[P_TICK]
    price = (exec_tick + sim.ints[I_WLO]) * tick_size
    side = s.side
    qty = exec_qty * side
    fee = price * exec_qty * (p[P_MAKER] if maker else p[P_TAKER])
    pos = f[F_POS]
    new_pos = pos + qty
    f[F_CASH] -= price * qty + fee
    f[F_FEES] += fee
    f[F_TRADED] += abs(price * qty)
    quote_price = (quote_tick + sim.ints[I_WLO]) * tick_size
    slip = (price - quote_price) * side
    f[F_SLIPPAGE] += slip * exec_qty
    bar = max(sim.ints[I_NSAMP] - 1, 0)
    # trades: reducing part closes at the average entry price (exit-trade convention)
    closing = 0.0
    if pos != 0.0 and np.sign(qty) != np.sign(pos):
        closing = min(abs(qty), abs(pos))
    role = ROLE_EXIT if closing > 0.0 else ROLE_ENTRY
    if closing > 0.0:
        nt = sim.ints[I_NTRADE]
        if nt < sim.trades.shape[0]:
            direction = 1 if pos > 0 else -1
            share = closing / abs(pos)
            entry_fees = f[F_ENTRY_FEES] * share
            f[F_ENTRY_FEES] -= entry_fees
            exit_fee = fee * closing / exec_qty
            pnl = direction * (price - f[F_AVG]) * closing - entry_fees - exit_fee
            t = sim.trades[nt]
            t.asset = 0
            t.direction = direction
            t.qty = closing
            t.entry_bar = sim.ints[I_OPEN_SAMPLE]
            t.entry_ts = sim.ints[I_OPEN_TS]
            t.entry_price = f[F_AVG]
            t.exit_bar = bar
            t.exit_ts = ts
            t.exit_price = price
            t.fees = entry_fees + exit_fee
            t.pnl = pnl
            t.ret = pnl / (f[F_AVG] * closing) if f[F_AVG] * closing != 0.0 else 0.0
            hi = max(f[F_EXT_HI], price)
            lo = min(f[F_EXT_LO], price)
            t.mae = lo / f[F_AVG] - 1.0 if direction > 0 else 1.0 - hi / f[F_AVG]
            t.mfe = hi / f[F_AVG] - 1.0 if direction > 0 else 1.0 - lo / f[F_AVG]
            t.exit_role = ROLE_EXIT
            t.is_open = 0
            sim.ints[I_NTRADE] = nt + 1
        else:
            sim.ints[I_OVERFLOW] = 1
    opening = abs(qty) - closing
    if opening > 0.0:
        open_fee = fee * opening / exec_qty
        if pos == 0.0 or closing > 0.0:
            f[F_AVG] = price
            f[F_ENTRY_FEES] = open_fee
            f[F_EXT_HI] = price
            f[F_EXT_LO] = price
            sim.ints[I_OPEN_TS] = ts
            sim.ints[I_OPEN_SAMPLE] = bar
        else:
            f[F_AVG] = (f[F_AVG] * abs(pos) + price * opening) / (abs(pos) + opening)
            f[F_ENTRY_FEES] += open_fee
    if abs(new_pos) < p[P_LOT] * 1e-6 + 1e-12:
        new_pos = 0.0
    f[F_POS] = new_pos
    # order record
    r = sim.orders[s.rec]
    filled_before = abs(r.filled_qty)
    r.fill_price = (r.fill_price * filled_before + price * exec_qty) / (filled_before + exec_qty)
    r.filled_qty += qty
    r.fee += fee
    r.fill_ts = ts
    r.fill_bar = bar
    if r.role != ROLE_EXIT:
        r.role = role
    # fill record
    nf = sim.ints[I_NFILL]
    if nf < sim.fills.shape[0]:
        fr = sim.fills[nf]
        fr.order_id = s.rec
        fr.bar = bar
        fr.ts = ts
        fr.asset = 0
        fr.qty = qty
        fr.price = price
        fr.quote_price = quote_price
        fr.slippage = slip
        fr.fee = fee
        fr.role = role
        fr.position_after = new_pos
        fr.cash_after = f[F_CASH]
        sim.ints[I_NFILL] = nf + 1
    else:
        sim.ints[I_OVERFLOW] = 1
    record_event_nb(sim, s.rec, ts, EV_FILLED, RS_NONE, price, qty)
    # exchange copy of the order
    sim.slots[i].x_leaves -= exec_qty
    sim.slots[i].x_ts = ts
    if np.round(sim.slots[i].x_leaves / p[P_LOT]) > 0:
        sim.slots[i].x_status = ST_PARTIAL
    else:
        sim.slots[i].x_leaves = 0.0
        sim.slots[i].x_status = ST_FILLED
        r.status = OS_FILLED
    # the response carries this execution
    push_msg_nb(sim, ts + response_latency_nb(sim, ts), i, 1, REQ_NONE)
    g = sim.msgs[sim.ints[I_NMSG] - 1]
    g.exec_qty = exec_qty
    g.exec_tick = exec_tick
    g.maker = 1 if maker else 0


# -------------------------------------------------------------------------------------- resting orders

@inline
def rest_nb(sim, i, ts):
    """Put slot ``i`` in the exchange book behind the queue already at its price (linked into the
    list of our orders at that tick, so a feed row only visits the orders at its own price)."""
    s = sim.slots[i]
    t = s.x_tick
    heads = sim.x_bid_orders if s.side > 0 else sim.x_ask_orders
    sim.slots[i].front_q = sim.x_bid[t] if s.side > 0 else sim.x_ask[t]
    sim.slots[i].cum_trade = 0.0
    sim.slots[i].x_resting = 1
    sim.slots[i].x_status = ST_NEW
    sim.slots[i].x_ts = ts
    sim.slots[i].prv = -1
    sim.slots[i].nxt = heads[t]
    if heads[t] >= 0:
        sim.slots[heads[t]].prv = i
    heads[t] = i
    sim.ints[I_RESTING] += 1
    if s.side > 0:
        sim.ints[I_MAX_BUY] = max(sim.ints[I_MAX_BUY], t)
    else:
        sim.ints[I_MIN_SELL] = min(sim.ints[I_MIN_SELL], t)


@kernel
def resting_bounds_nb(sim):
    """Recompute the highest resting buy tick and the lowest resting sell tick."""
    hi = -1
    lo = INT_MAX
    for i in range(sim.ints[I_NSLOT]):
        if sim.slots[i].x_resting:
            if sim.slots[i].side > 0:
                hi = max(hi, sim.slots[i].x_tick)
            else:
                lo = min(lo, sim.slots[i].x_tick)
    sim.ints[I_MAX_BUY] = hi
    sim.ints[I_MIN_SELL] = lo


@inline
def unrest_nb(sim, i):
    if sim.slots[i].x_resting:
        sim.slots[i].x_resting = 0
        sim.ints[I_RESTING] -= 1
        t = sim.slots[i].x_tick
        heads = sim.x_bid_orders if sim.slots[i].side > 0 else sim.x_ask_orders
        prv = sim.slots[i].prv
        nxt = sim.slots[i].nxt
        if prv >= 0:
            sim.slots[prv].nxt = nxt
        else:
            heads[t] = nxt
        if nxt >= 0:
            sim.slots[nxt].prv = prv
        if heads[t] < 0 and ((sim.slots[i].side > 0 and t == sim.ints[I_MAX_BUY])
                             or (sim.slots[i].side < 0 and t == sim.ints[I_MIN_SELL])):
            resting_bounds_nb(sim)


@inline
def trade_at_level_nb(sim, heads, u, t, q, ts, model, lot, partial):
    """A trade at tick ``t`` against our orders resting at tick ``u``: strictly better-priced orders fill
    completely; at ``t`` the queue ahead is consumed first (hftbacktest ``check_if_*_filled``)."""
    j = heads[u]
    while j >= 0:
        nxt = sim.slots[j].nxt
        if u != t:
            unrest_nb(sim, j)
            fill_nb(sim, j, ts, u, sim.slots[j].x_leaves, True, u)
        else:
            queue_trade_nb(sim.slots, j, model, q)
            execd = queue_filled_nb(sim.slots, j, lot)
            if execd > 0.0:
                if not partial or execd >= sim.slots[j].x_leaves:
                    unrest_nb(sim, j)
                    fill_nb(sim, j, ts, u, sim.slots[j].x_leaves, True, u)
                else:
                    fill_nb(sim, j, ts, u, execd, True, u)
        j = nxt


@inline
def fill_level_nb(sim, heads, u, ts):
    """The book moved through tick ``u``: every order of ours resting there fills at its price."""
    j = heads[u]
    while j >= 0:
        nxt = sim.slots[j].nxt
        unrest_nb(sim, j)
        fill_nb(sim, j, ts, u, sim.slots[j].x_leaves, True, u)
        j = nxt


@inline
def depth_at_level_nb(sim, heads, u, model, n, prev_q, new_q):
    j = heads[u]
    while j >= 0:
        queue_depth_nb(sim.slots, j, model, n, prev_q, new_q)
        j = sim.slots[j].nxt


@inline
def exchange_row_nb(sim, r):
    """Apply feed row ``r`` at the exchange and match resting orders (hftbacktest ``Processor.process``)."""
    ints = sim.ints
    p = sim.params
    kind = sim.kind[r]
    side = sim.side[r]
    ts = sim.exch_ts[r]
    lot = p[P_LOT]
    model = int(p[P_QUEUE])
    partial = p[P_PARTIAL] != 0.0
    w = sim.x_bid.shape[0]
    if kind == TRADE:
        if sim.price[r] > 0.0:
            sim.floats[F_LAST_TRADE] = sim.price[r]
        t = int(np.round(sim.price[r] / p[P_TICK])) - ints[I_WLO]
        q = sim.qty[r]
        if side > 0 and ints[I_MIN_SELL] <= t:
            for u in range(max(ints[I_MIN_SELL], 0), min(t, w - 1) + 1):
                trade_at_level_nb(sim, sim.x_ask_orders, u, t, q, ts, model, lot, partial)
        elif side < 0 and ints[I_MAX_BUY] >= t:
            for u in range(min(ints[I_MAX_BUY], w - 1), max(t, 0) - 1, -1):
                trade_at_level_nb(sim, sim.x_bid_orders, u, t, q, ts, model, lot, partial)
        return
    prev_bb = ints[I_XBB]
    prev_ba = ints[I_XBA]
    if kind == CLEAR:
        clear_side_nb(sim.x_bid, sim.x_ask, ints, I_XBB, I_XBA, side)
        return
    t = int(np.round(sim.price[r] / p[P_TICK])) - ints[I_WLO]
    if t < 0 or t >= w:
        return
    if kind == QUOTE:
        # an L1 quote: better levels of its side are gone (each is a depth change for orders there)
        if side > 0:
            for u in range(t + 1, max(prev_bb + 1, t + 1)):
                if sim.x_bid[u] > 0.0:
                    prev_q = sim.x_bid[u]
                    sim.x_bid[u] = 0.0
                    depth_at_level_nb(sim, sim.x_bid_orders, u, model, p[P_QN], prev_q, 0.0)
            if prev_bb > t:  # as in apply_book_row_nb: a sized quote becomes the best at once
                ints[I_XBB] = -1 if sim.qty[r] >= lot * 0.5 else best_below_nb(sim.x_bid, t)
        else:
            for u in range(min(prev_ba, t), t):
                if sim.x_ask[u] > 0.0:
                    prev_q = sim.x_ask[u]
                    sim.x_ask[u] = 0.0
                    depth_at_level_nb(sim, sim.x_ask_orders, u, model, p[P_QN], prev_q, 0.0)
            if prev_ba < t:
                ints[I_XBA] = w if sim.qty[r] >= lot * 0.5 else best_above_nb(sim.x_ask, t, w)
    prev_q = set_level_nb(sim.x_bid, sim.x_ask, ints, I_XBB, I_XBA, side, t, sim.qty[r], lot)
    if ints[I_RESTING] == 0:
        return
    if side > 0:
        depth_at_level_nb(sim, sim.x_bid_orders, t, model, p[P_QN], prev_q, sim.x_bid[t])
    else:
        depth_at_level_nb(sim, sim.x_ask_orders, t, model, p[P_QN], prev_q, sim.x_ask[t])
    # the best bid rose through resting sells / the best ask fell through resting buys: they fill
    if side > 0 and ints[I_XBB] > prev_bb and ints[I_MIN_SELL] <= ints[I_XBB]:
        for u in range(max(ints[I_MIN_SELL], 0), ints[I_XBB] + 1):
            fill_level_nb(sim, sim.x_ask_orders, u, ts)
    elif side < 0 and ints[I_XBA] < prev_ba and ints[I_MAX_BUY] >= ints[I_XBA]:
        for u in range(ints[I_MAX_BUY], ints[I_XBA] - 1, -1):
            fill_level_nb(sim, sim.x_bid_orders, u, ts)


# ------------------------------------------------------------------------------------ order requests

@kernel
def expire_nb(sim, i, ts, reason):
    sim.slots[i].x_status = ST_EXPIRED
    sim.slots[i].x_ts = ts
    rec = sim.slots[i].rec
    if sim.orders[rec].status == OS_PENDING:
        sim.orders[rec].status = OS_EXPIRED
        sim.orders[rec].reason = reason
    record_event_nb(sim, rec, ts, EV_EXPIRED, reason, np.nan, sim.slots[i].x_leaves)


@kernel
def take_nb(sim, i, ts, limit_tick, max_ticks):
    """Walk the opposite side from its best up to ``limit_tick`` filling slot ``i`` level by level
    (partial-fill exchange). Returns the quantity still open."""
    s = sim.slots[i]
    w = sim.x_bid.shape[0]
    if s.side > 0:
        best = sim.ints[I_XBA]
        t = best
        while t <= limit_tick and t < w and t < best + max_ticks:
            q = sim.x_ask[t]
            if q > 0.0:
                fill_nb(sim, i, ts, t, min(q, sim.slots[i].x_leaves), False, best)
                if sim.slots[i].x_status == ST_FILLED:
                    return 0.0
            t += 1
    else:
        best = sim.ints[I_XBB]
        t = best
        while t >= limit_tick and t >= 0 and t > best - max_ticks:
            q = sim.x_bid[t]
            if q > 0.0:
                fill_nb(sim, i, ts, t, min(q, sim.slots[i].x_leaves), False, best)
                if sim.slots[i].x_status == ST_FILLED:
                    return 0.0
            t -= 1
    return sim.slots[i].x_leaves


@kernel
def available_nb(sim, side, limit_tick):
    """Opposite-side quantity at prices at least as good as ``limit_tick`` (FOK check)."""
    total = 0.0
    if side > 0:
        for t in range(max(sim.ints[I_XBA], 0), min(limit_tick + 1, sim.x_bid.shape[0])):
            total += sim.x_ask[t]
    else:
        for t in range(max(limit_tick, 0), min(sim.ints[I_XBB] + 1, sim.x_bid.shape[0])):
            total += sim.x_bid[t]
    return total


@kernel
def ack_new_nb(sim, i, ts):
    """A new order reaches the exchange (hftbacktest ``ack_new``)."""
    s = sim.slots[i]
    p = sim.params
    w = sim.x_bid.shape[0]
    partial = p[P_PARTIAL] != 0.0
    lot = p[P_LOT]
    side = s.side
    opp_best = sim.ints[I_XBA] if side > 0 else sim.ints[I_XBB]
    opp_exists = opp_best < w if side > 0 else opp_best >= 0
    rec = s.rec
    sim.slots[i].x_tick = s.l_tick
    sim.slots[i].x_qty = s.l_qty
    sim.slots[i].x_leaves = s.l_qty
    sim.slots[i].x_ts = ts
    if s.order_type == MARKET:
        record_event_nb(sim, rec, ts, EV_SUBMITTED, RS_NONE, np.nan, s.l_qty * side)
        if not opp_exists:
            expire_nb(sim, i, ts, RS_NO_LIQUIDITY)
            return
        if partial:
            limit = w if side > 0 else -1
            left = take_nb(sim, i, ts, limit, int(p[P_MARKET_TICKS]))
            if left > 0.0:
                expire_nb(sim, i, ts, RS_NO_LIQUIDITY)
        else:
            fill_nb(sim, i, ts, opp_best, s.l_qty, False, opp_best)
        return
    tick = s.l_tick
    crosses = opp_exists and ((side > 0 and tick >= opp_best) or (side < 0 and tick <= opp_best))
    price = (tick + sim.ints[I_WLO]) * p[P_TICK]
    record_event_nb(sim, rec, ts, EV_SUBMITTED, RS_NONE, price, s.l_qty * side)
    if crosses:
        if s.tif == GTX:
            expire_nb(sim, i, ts, RS_POST_ONLY)
            return
        if not partial:
            fill_nb(sim, i, ts, opp_best, s.l_qty, False, opp_best)
            return
        if s.tif == FOK:
            if np.round(available_nb(sim, side, tick) / lot) >= np.round(s.l_qty / lot):
                take_nb(sim, i, ts, tick, w)
            else:
                expire_nb(sim, i, ts, RS_NO_LIQUIDITY)
            return
        if s.tif == IOC:
            left = take_nb(sim, i, ts, tick, w)
            if left > 0.0:
                expire_nb(sim, i, ts, RS_NO_LIQUIDITY)
            return
        # GTC: take what the book offers strictly better than the limit, then the rest at the limit
        inner = tick - 1 if side > 0 else tick + 1
        left = take_nb(sim, i, ts, inner, w)
        if left > 0.0:
            fill_nb(sim, i, ts, tick, left, False, opp_best)
        return
    if s.tif == GTC or s.tif == GTX:
        rest_nb(sim, i, ts)
        return
    expire_nb(sim, i, ts, RS_NO_LIQUIDITY)


@kernel
def ack_cancel_nb(sim, i, ts):
    """A cancel reaches the exchange: the order leaves the book, or the cancel is rejected when the
    order is no longer resting (filled or expired meanwhile: the cancel lost the race)."""
    rec = sim.slots[i].rec
    if not sim.slots[i].x_resting:
        record_event_nb(sim, rec, ts, EV_REJECTED, RS_UNKNOWN_ORDER, np.nan, 0.0)
        return False
    unrest_nb(sim, i)
    sim.slots[i].x_status = ST_CANCELED
    sim.slots[i].x_ts = ts
    if sim.orders[rec].status == OS_PENDING:
        sim.orders[rec].status = OS_CANCELLED
        sim.orders[rec].reason = RS_USER
    record_event_nb(sim, rec, ts, EV_CANCELLED, RS_USER, np.nan, sim.slots[i].x_leaves)
    return True


@kernel
def ack_modify_nb(sim, i, ts, tick, qty):
    """A modify reaches the exchange (hftbacktest ``ack_modify``): a new price or a larger size loses
    the queue position (cancel + new); a smaller size at the same price keeps it."""
    rec = sim.slots[i].rec
    if not sim.slots[i].x_resting:
        record_event_nb(sim, rec, ts, EV_REJECTED, RS_UNKNOWN_ORDER, np.nan, 0.0)
        return False
    price = (tick + sim.ints[I_WLO]) * sim.params[P_TICK]
    sim.orders[rec].limit_price = price
    sim.orders[rec].size = qty
    record_event_nb(sim, rec, ts, EV_REPLACED, RS_REPLACED, price, qty * sim.slots[i].side)
    if tick != sim.slots[i].x_tick or qty > sim.slots[i].x_leaves:
        unrest_nb(sim, i)
        sim.slots[i].l_tick = tick
        sim.slots[i].l_qty = qty
        ack_new_nb(sim, i, ts)
    else:
        sim.slots[i].x_qty = qty
        sim.slots[i].x_leaves = qty
        sim.slots[i].x_ts = ts
        sim.slots[i].x_status = ST_NEW
    return True


@kernel
def exchange_receive_nb(sim, ts):
    """Process every request that has reached the exchange by ``ts``."""
    while True:
        m = pop_msg_nb(sim, 0, ts)
        if m < 0:
            return
        g = sim.msgs[m]
        i = g.slot
        at = g.ts
        req = g.req
        if sim.slots[i].rec != g.rec:
            # the strategy forgot this order (its final response arrived) and reused the slot: a late
            # cancel/modify of it finds nothing at the exchange
            record_event_nb(sim, g.rec, at, EV_REJECTED, RS_UNKNOWN_ORDER, np.nan, 0.0)
            continue
        if req == REQ_NEW:
            ack_new_nb(sim, i, at)
        elif req == REQ_CANCEL:
            ack_cancel_nb(sim, i, at)
        elif req == REQ_MODIFY:
            ack_modify_nb(sim, i, at, g.tick, g.qty)
        push_msg_nb(sim, at + response_latency_nb(sim, at), i, 1, req)


@kernel
def local_receive_nb(sim, ts, wait_slot):
    """Deliver every response that has reached the strategy by ``ts``; True if ``wait_slot``'s came."""
    got = False
    f = sim.floats
    while True:
        m = pop_msg_nb(sim, 1, ts)
        if m < 0:
            return got
        g = sim.msgs[m]
        i = g.slot
        if i == wait_slot or wait_slot == -2:
            got = True
        if not sim.slots[i].in_use or sim.slots[i].rec != g.rec:
            continue  # a late response about an order the strategy already forgot
        if g.req == REQ_REJECTED:
            # rejected before reaching the exchange (negative latency)
            if sim.slots[i].l_req_ts == g.req_ts:
                if sim.slots[i].l_req == REQ_NEW:
                    sim.slots[i].l_status = ST_EXPIRED
                elif sim.slots[i].l_req == REQ_MODIFY:
                    sim.slots[i].l_tick = sim.slots[i].l_prev_tick
                    sim.slots[i].l_qty = sim.slots[i].l_prev_qty
                sim.slots[i].l_req = REQ_NONE
        else:
            if g.exec_qty > 0.0:
                amount = (g.exec_tick + sim.ints[I_WLO]) * sim.params[P_TICK] * g.exec_qty
                sd = sim.slots[i].side
                f[F_LPOS] += g.exec_qty * sd
                f[F_LCASH] -= amount * sd
                f[F_LFEES] += amount * (sim.params[P_MAKER] if g.maker else sim.params[P_TAKER])
                f[F_LNTRADES] += 1.0
                sim.slots[i].l_exec_qty = g.exec_qty
                sim.slots[i].l_exec_tick = g.exec_tick
            sim.slots[i].l_status = g.status
            sim.slots[i].l_tick = g.tick
            sim.slots[i].l_qty = g.qty
            sim.slots[i].l_leaves = g.leaves
            sim.slots[i].l_ts = g.x_ts
            sim.slots[i].l_req = REQ_NONE
        # a finished order is forgotten at once (hftbacktest's clear_inactive_orders on every step):
        # its id can be reused; responses still travelling about it are ignored
        if sim.slots[i].l_status >= ST_FILLED and sim.slots[i].l_req == REQ_NONE and sim.slots[i].x_resting == 0:
            sim.slots[i].in_use = 0
            id_delete_nb(sim, sim.slots[i].id)


# --------------------------------------------------------------------------------------- equity grid

@kernel
def record_sample_nb(sim, ts):
    """Write one row of the equity grid (exchange truth, marked at the exchange mid)."""
    n = sim.ints[I_NSAMP]
    if n >= sim.equity.shape[0]:
        sim.ints[I_OVERFLOW] = 1
        return
    mid = mid_nb(sim)
    f = sim.floats
    pos = f[F_POS]
    value = pos * mid if pos != 0.0 and np.isfinite(mid) else 0.0
    sim.sample_ts[n] = ts
    sim.equity[n] = f[F_CASH] + value
    sim.cash[n] = f[F_CASH]
    sim.position[n] = pos
    sim.mid[n] = mid
    if pos != 0.0 and np.isfinite(mid):
        f[F_EXT_HI] = max(f[F_EXT_HI], mid)
        f[F_EXT_LO] = min(f[F_EXT_LO], mid)
    sim.ints[I_NSAMP] = n + 1


# ------------------------------------------------------------------------------------------ the loop

@kernel
def goto_nb(sim, target, wait_feed, wait_slot):
    """Advance both clocks to ``target`` (hftbacktest ``Backtest::goto``).

    ``wait_feed``: return at the first local feed row (its timestamp becomes ``target``);
    ``wait_slot`` >= 0: return when that order's response arrives; -2: any response; -1: none.
    Returns ``R_OK``, ``R_END`` (no event left), ``R_FEED`` or ``R_RESPONSE``.
    """
    ints = sim.ints
    n = sim.exch_ts.shape[0]
    result = R_OK
    sample_every = int(sim.params[P_SAMPLE_NS])
    tick_size = sim.params[P_TICK]
    lot = sim.params[P_LOT]
    while True:
        il = ints[I_IL]
        ie = ints[I_IE]
        t_ld = sim.local_ts[il] if il < n else INT_MAX
        t_lo = ints[I_MIN_TO_LOCAL]
        t_ed = sim.exch_ts[ie] if ie < n else INT_MAX
        t_eo = ints[I_MIN_TO_EXCH]
        # ties: local data, local order, exchange data, exchange order (hftbacktest EventSet)
        ts = t_ld
        which = 0
        if t_lo < ts:
            ts = t_lo
            which = 1
        if t_ed < ts:
            ts = t_ed
            which = 2
        if t_eo < ts:
            ts = t_eo
            which = 3
        if ts == INT_MAX:
            ints[I_CUR] = max(ints[I_CUR], min(target, ints[I_LAST_EXCH_TS]))
            return R_END
        if ts > target:
            ints[I_CUR] = target
            return result
        while ts >= ints[I_NEXT_SAMPLE]:
            record_sample_nb(sim, ints[I_NEXT_SAMPLE])
            ints[I_NEXT_SAMPLE] += sample_every
        if which == 0:
            k = sim.kind[il]
            if k == TRADE:
                if sim.side[il] > 0:
                    sim.floats[F_BUY_VOL] += sim.qty[il]
                else:
                    sim.floats[F_SELL_VOL] += sim.qty[il]
            else:
                apply_book_row_nb(sim.l_bid, sim.l_ask, ints, I_LBB, I_LBA, k, sim.side[il], sim.price[il],
                                  sim.qty[il], tick_size, lot)
            ints[I_IL] = il + 1
            if wait_feed:
                target = ts
                result = R_FEED
        elif which == 1:
            if local_receive_nb(sim, ts, wait_slot):
                target = ts
                if wait_feed:
                    result = R_RESPONSE
        elif which == 2:
            exchange_row_nb(sim, ie)
            ints[I_LAST_EXCH_TS] = ts
            ints[I_IE] = ie + 1
        else:
            exchange_receive_nb(sim, ts)


@kernel
def finish_nb(sim):
    """Close the equity grid with a last row at the last event time."""
    last = max(sim.ints[I_LAST_EXCH_TS], sim.ints[I_CUR])
    n = sim.ints[I_NSAMP]
    if n == 0 or sim.sample_ts[n - 1] < last:
        record_sample_nb(sim, last)


# ------------------------------------------------------------------------------------------ requests

@inline
def id_home_nb(order_id, mask):
    h = np.uint64(order_id) * np.uint64(11400714819323198485)
    return np.int64((h >> np.uint64(17)) & np.uint64(mask))


@inline
def find_slot_nb(sim, order_id):
    """Slot of a live order id (-1 if none): linear probing in ``id_keys``."""
    keys = sim.id_keys
    mask = keys.shape[0] - 1
    j = id_home_nb(order_id, mask)
    while True:
        k = keys[j]
        if k == order_id:
            return sim.id_slots[j]
        if k == ID_EMPTY:
            return -1
        j = (j + 1) & mask


@kernel
def id_insert_nb(sim, order_id, slot):
    keys = sim.id_keys
    mask = keys.shape[0] - 1
    j = id_home_nb(order_id, mask)
    while keys[j] != ID_EMPTY:
        j = (j + 1) & mask
    keys[j] = order_id
    sim.id_slots[j] = slot


@kernel
def id_delete_nb(sim, order_id):
    """Remove an id (backward-shift deletion keeps every probe chain unbroken)."""
    keys = sim.id_keys
    mask = keys.shape[0] - 1
    i = id_home_nb(order_id, mask)
    while keys[i] != order_id:
        if keys[i] == ID_EMPTY:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == ID_EMPTY:
            break
        home = id_home_nb(keys[j], mask)
        if i <= j:
            if i < home <= j:
                continue
        elif home > i or home <= j:
            continue
        keys[i] = keys[j]
        sim.id_slots[i] = sim.id_slots[j]
        i = j
    keys[i] = ID_EMPTY


@kernel
def new_slot_nb(sim):
    n = sim.ints[I_NSLOT]
    for i in range(n):
        if not sim.slots[i].in_use:
            return i
    if n < sim.slots.shape[0]:
        sim.ints[I_NSLOT] = n + 1
        return n
    return -1


@kernel
def send_request_nb(sim, i, req):
    """Send a request from the strategy at the current time with the entry latency."""
    now = sim.ints[I_CUR]
    sim.slots[i].l_req = req
    sim.slots[i].l_req_ts = now
    lat = entry_latency_nb(sim, now)
    if lat < 0:
        # rejected before the matching engine: the rejection comes back after -lat
        push_msg_nb(sim, now - lat, i, 1, REQ_REJECTED)
        g = sim.msgs[sim.ints[I_NMSG] - 1]
        g.req_ts = now
        if req == REQ_NEW:
            rec = sim.slots[i].rec
            sim.orders[rec].status = OS_REJECTED
            sim.orders[rec].reason = RS_LATENCY_REJECT
            record_event_nb(sim, rec, now, EV_REJECTED, RS_LATENCY_REJECT, np.nan, 0.0)
        return
    push_msg_nb(sim, now + lat, i, 0, req)


@kernel
def submit_nb(sim, order_id, side, price, qty, tif, order_type):
    """Create an order at the current time and send it (hftbacktest ``submit_buy_order``)."""
    if order_id == ID_EMPTY or find_slot_nb(sim, order_id) >= 0:
        return E_ID_EXISTS
    if not (qty > 0.0) or not np.isfinite(qty):
        return E_BAD_QTY
    p = sim.params
    if order_type == LIMIT:
        if not (price > 0.0) or not np.isfinite(price):
            return E_BAD_PRICE
        tick = int(np.round(price / p[P_TICK])) - sim.ints[I_WLO]
        if tick < 0 or tick >= sim.x_bid.shape[0]:
            return E_BAD_PRICE
    else:
        tick = 0
    i = new_slot_nb(sim)
    rec = sim.ints[I_NORD]
    if i < 0 or rec >= sim.orders.shape[0] or sim.ints[I_NMSG] + 4 >= sim.msgs.shape[0]:
        sim.ints[I_OVERFLOW] = 1
        return E_CAPACITY
    sim.ints[I_NORD] = rec + 1
    now = sim.ints[I_CUR]
    o = sim.orders[rec]
    o.id = rec
    o.asset = 0
    o.side = side
    o.order_type = order_type
    o.size_type = 0
    o.size = qty
    o.limit_price = (tick + sim.ints[I_WLO]) * p[P_TICK] if order_type == LIMIT else np.nan
    o.stop_price = np.nan
    o.sl_pct = np.nan
    o.sl_abs = np.nan
    o.tp_pct = np.nan
    o.tp_abs = np.nan
    o.trail_pct = np.nan
    o.trail_abs = np.nan
    o.trail_level = np.nan
    o.tif = tif
    o.created_bar = max(sim.ints[I_NSAMP] - 1, 0)
    o.created_ts = now
    o.status = OS_PENDING
    o.reason = RS_USER
    o.role = ROLE_ENTRY
    o.parent_id = -1
    o.oco_group = -1
    o.fill_bar = -1
    o.fill_ts = 0
    o.fill_price = 0.0
    o.filled_qty = 0.0
    o.fee = 0.0
    o.tag = order_id
    s = sim.slots[i]
    s.id = order_id
    s.in_use = 1
    id_insert_nb(sim, order_id, i)
    s.side = side
    s.order_type = order_type
    s.tif = tif
    s.rec = rec
    s.inflight = 0
    s.x_status = ST_NONE
    s.x_resting = 0
    s.x_tick = tick
    s.x_qty = qty
    s.x_leaves = qty
    s.l_status = ST_NONE
    s.l_tick = tick
    s.l_qty = qty
    s.l_leaves = qty
    s.l_exec_qty = 0.0
    s.l_ts = 0
    send_request_nb(sim, i, REQ_NEW)
    return E_OK


@kernel
def cancel_nb(sim, order_id):
    i = find_slot_nb(sim, order_id)
    if i < 0:
        return E_NOT_FOUND
    if sim.slots[i].l_req != REQ_NONE:
        return E_IN_PROCESS
    if sim.ints[I_NMSG] + 4 >= sim.msgs.shape[0]:
        return E_CAPACITY
    send_request_nb(sim, i, REQ_CANCEL)
    return E_OK


@kernel
def modify_nb(sim, order_id, price, qty):
    i = find_slot_nb(sim, order_id)
    if i < 0:
        return E_NOT_FOUND
    if sim.slots[i].l_req != REQ_NONE:
        return E_IN_PROCESS
    if not (qty > 0.0) or not (price > 0.0):
        return E_BAD_QTY
    tick = int(np.round(price / sim.params[P_TICK])) - sim.ints[I_WLO]
    if tick < 0 or tick >= sim.x_bid.shape[0]:
        return E_BAD_PRICE
    if sim.ints[I_NMSG] + 4 >= sim.msgs.shape[0]:
        return E_CAPACITY
    sim.slots[i].l_prev_tick = sim.slots[i].l_tick
    sim.slots[i].l_prev_qty = sim.slots[i].l_qty
    sim.slots[i].l_tick = tick
    sim.slots[i].l_qty = qty
    send_request_nb(sim, i, REQ_MODIFY)
    return E_OK


@kernel
def start_nb(sim):
    """The first call of elapse/wait: the clock starts at the first event (hftbacktest)."""
    if sim.ints[I_STARTED] == 0:
        sim.ints[I_STARTED] = 1
        n = sim.exch_ts.shape[0]
        if n == 0:
            return False
        first = min(sim.exch_ts[0], sim.local_ts[0])
        sim.ints[I_CUR] = first
        sim.ints[I_NEXT_SAMPLE] = first
    return True
