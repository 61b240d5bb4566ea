"""The compiled core: one bar step shared by the batch backtest and the live/paper driver.

A bar is processed in named stages (see :func:`process_bar_nb`):

1. ``accrue_financing_nb``   — borrow cost of shorts and interest on borrowed cash since the last bar;
2. ``mark_prices_nb``        — positions marked at the bar's open (the prices market orders fill at);
3. ``fill_orders_nb``        — working orders checked against the bar in submission order
                               (one-cancels-other brackets resolved together, conservatively), then
                               trailing-stop levels ratcheted (``update_trailing_stops_nb``); stages 2-3
                               run only when an order can act on the bar (``orders_quiet_nb``);
4. ``track_extremes_nb``, ``mark_close_nb`` — position extremes (MAE/MFE) widened with the bar's range,
                               positions marked at the close; ``book_value_nb`` sums the book once for
                               the next two stages;
5. ``margin_breached_nb``, ``liquidate_nb`` — forced liquidation at the close when equity < maintenance margin;
6. ``record_bar_nb``         — equity, cash, exposure and positions written to history row ``t``.

Decisions are taken *after* a bar is processed (``decide_signals_nb``, ``decide_program_nb``) and the
orders they submit are working from the next bar on: a decision on bar t's data never fills before
bar t+1. Every kernel takes and returns arrays/records only; nothing here touches Python objects,
files or clocks, so the same code runs inside the batch loop and one bar at a time from Python.

Fill rules (prices are those of the side traded: the ask for buys and the bid for sells when quotes
exist; otherwise the bar's prices ± half the configured spread):

* market: the open;
* limit buy at L: the open if open <= L (gap through), else L if low <= L (sells mirror);
* stop buy at S: the open if open >= S (gap through), else S if high >= S (sells mirror);
* stop-limit: the stop triggers as above; on a gap the limit is checked against the whole bar; on an
  intrabar trigger it fills at the stop only if the stop is within the limit, else it works as a limit
  from the next bar (the path inside the bar is unknown);
* brackets (stop-loss / take-profit / trailing stop, one-cancels-other): an order that gaps at the
  open wins; otherwise, if a stop and the take-profit are both touched inside one bar, the stop fills
  (conservative: the worse outcome is assumed). Brackets born inside a bar from an intrabar entry
  may stop out in that bar but never take profit in it;
* slippage (bps of price and fraction of the bar's range) applies to market, stop and liquidation
  fills, never to limit fills; the commission applies to every fill.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from backforge._jit import njit
from backforge.engine import risk as rk
from backforge.engine.records import (
    EventKind,
    OrderRole,
    OrderStatus,
    OrderType,
    Reason,
    SizeType,
    TimeInForce,
)

# ---------------------------------------------------------------------------------------------- codes
# (module-level ints are frozen into the compiled code as constants)
MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
UNITS, NOTIONAL, EQUITY_FRACTION, CASH_FRACTION = SizeType.UNITS, SizeType.NOTIONAL, SizeType.EQUITY_FRACTION, SizeType.CASH_FRACTION
TARGET_UNITS, TARGET_FRACTION, POSITION_FRACTION = SizeType.TARGET_UNITS, SizeType.TARGET_FRACTION, SizeType.POSITION_FRACTION
GTC, DAY, GTN = TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTN
PENDING, FILLED, CANCELLED, REJECTED, EXPIRED, TRIGGERED = (
    OrderStatus.PENDING, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.TRIGGERED,
)
ENTRY, EXIT, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, LIQUIDATION = (
    OrderRole.ENTRY, OrderRole.EXIT, OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT, OrderRole.TRAILING_STOP, OrderRole.LIQUIDATION,
)
EV_SUBMITTED, EV_FILLED, EV_CANCELLED, EV_REJECTED, EV_EXPIRED, EV_TRIGGERED, EV_REPLACED, EV_REDUCED = (
    EventKind.SUBMITTED, EventKind.FILLED, EventKind.CANCELLED, EventKind.REJECTED, EventKind.EXPIRED,
    EventKind.TRIGGERED, EventKind.REPLACED, EventKind.REDUCED,
)
R_NONE, R_SIGNAL, R_USER, R_FUNDS, R_ZERO, R_MIN_QTY, R_PRICE = (
    Reason.NONE, Reason.SIGNAL, Reason.USER, Reason.INSUFFICIENT_FUNDS, Reason.ZERO_SIZE, Reason.BELOW_MIN_QTY, Reason.INVALID_PRICE,
)
R_OCO, R_POS_CLOSED, R_TIF, R_MARGIN, R_NO_SHORT, R_NO_POS, R_REPLACED, R_SUPERSEDED, R_BRACKET, R_UNKNOWN = (
    Reason.OCO, Reason.POSITION_CLOSED, Reason.TIME_IN_FORCE, Reason.MARGIN_CALL, Reason.SHORT_NOT_ALLOWED,
    Reason.NO_POSITION, Reason.REPLACED, Reason.SUPERSEDED, Reason.BRACKET, Reason.UNKNOWN_ORDER,
)
R_RISK = Reason.RISK

# counters[] slots
C_ORDERS, C_FILLS, C_TRADES, C_EVENTS, C_ACTIVE, C_BARS, C_OVERFLOW, C_LAST_TS = 0, 1, 2, 3, 4, 5, 6, 7
N_COUNTERS = 8
# totals[] slots
T_FEES, T_FINANCING, T_SLIPPAGE, T_TRADED = 0, 1, 2, 3
N_TOTALS = 4

NS_PER_DAY = 86_400_000_000_000

# Kernels run without numba's reference counting (``_nrt=False``): they never allocate, and passing the
# State/Params tuples (two dozen arrays) between kernels would otherwise cost an atomic incref/decref per
# array per call — measured at ~150 ns per call, i.e. most of a bar's budget. Callers (Python or
# NRT-enabled code) keep the arrays alive for the duration of a call.
kernel = njit(_nrt=False)
# The per-bar entry points are also inlined into the batch loops (numba IR inlining): a call that passes
# the two tuples costs ~80 ns even without reference counting, because they flatten to ~250 arguments.
inline_kernel = njit(_nrt=False, inline="always")
EPS = 1e-9


class Params(NamedTuple):
    """Lowered, validated simulation parameters (per-asset arrays are ``[A]`` float64)."""

    init_cash: float
    leverage: float
    maintenance_margin: float
    financing_rate: float
    has_financing: bool
    allow_partial: bool
    allow_short: bool
    has_quotes: bool
    record_positions: bool
    fee_rate: np.ndarray
    fee_per_unit: np.ndarray
    fee_per_order: np.ndarray
    fee_min: np.ndarray
    slippage_bps: np.ndarray
    slippage_range: np.ndarray
    spread: np.ndarray
    lot_size: np.ndarray
    min_qty: np.ndarray
    borrow_rate: np.ndarray


class State(NamedTuple):
    """Everything the core mutates. Scalars live in small arrays so the tuple itself never changes."""

    cash: np.ndarray  # f8[1]
    counters: np.ndarray  # i8[N_COUNTERS]
    totals: np.ndarray  # f8[N_TOTALS]
    position: np.ndarray  # f8[A], signed units
    avg_price: np.ndarray  # f8[A]
    mark: np.ndarray  # f8[A], last known price (NaN before the first bar)
    realized: np.ndarray  # f8[A], realized P&L net of fees
    entry_fees: np.ndarray  # f8[A], fees of the open position not yet attributed to a trade
    open_bar: np.ndarray  # i8[A]
    open_ts: np.ndarray  # i8[A]
    extreme_high: np.ndarray  # f8[A]
    extreme_low: np.ndarray  # f8[A]
    last_fill_bar: np.ndarray  # i8[A]
    last_fill_price: np.ndarray  # f8[A]
    last_entry_bar: np.ndarray  # i8[A]
    signal_order: np.ndarray  # i8[A], last order placed by the signal decider (-1 none)
    signal_seen: np.ndarray  # i8[A], last bar on which an entry signal was on (-1 never)
    orders: np.ndarray  # order_dt[capacity]
    active: np.ndarray  # i8[capacity], ids of working orders in submission order
    fills: np.ndarray  # fill_dt[capacity]
    trades: np.ndarray  # trade_dt[capacity]
    events: np.ndarray  # event_dt[capacity]
    equity: np.ndarray  # f8[H]
    cash_history: np.ndarray  # f8[H]
    gross_exposure: np.ndarray  # f8[H]
    net_exposure: np.ndarray  # f8[H]
    positions: np.ndarray  # f8[H, A] (H = 0 when positions are not recorded)
    risk: rk.RiskBook  # risk rules and their state (an empty book when no rule is configured)


class SignalParams(NamedTuple):
    """Lowered parameters of :func:`backforge.from_signals` (``[A]`` arrays)."""

    size: np.ndarray
    size_type: int
    sl_pct: np.ndarray
    tp_pct: np.ndarray
    trail_pct: np.ndarray
    accumulate: bool
    tif: int
    gtn_bars: int


class Prices(NamedTuple):
    """The prices the core reads: OHLC and the bid and ask OHLC, float64 — ``[T, A]`` for a run, ``[A]``
    rows for one bar (:func:`bar_prices_nb`). Without quotes the bid and ask fields are the OHLC arrays
    again (no copy); the kernels then apply the configured spread. NaN where an asset has no bar.

    numba passes a NamedTuple of arrays exactly as it passes the arrays one by one (it flattens the
    tuple into the same arguments), so bundling costs nothing in a call or in the inlined bar step.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    bid_open: np.ndarray
    bid_high: np.ndarray
    bid_low: np.ndarray
    bid_close: np.ndarray
    ask_open: np.ndarray
    ask_high: np.ndarray
    ask_low: np.ndarray
    ask_close: np.ndarray


# ------------------------------------------------------------------------------------------- helpers

@inline_kernel
def bar_prices_nb(prices: Prices, t: int) -> Prices:
    """Row ``t`` of every ``[T, A]`` price array: the ``[A]`` views :func:`process_bar_nb` reads
    (equivalent to ``Prices(*(x[t] for x in prices))``; views, nothing is copied)."""
    return Prices(prices.open[t], prices.high[t], prices.low[t], prices.close[t], prices.bid_open[t],
                  prices.bid_high[t], prices.bid_low[t], prices.bid_close[t], prices.ask_open[t], prices.ask_high[t],
                  prices.ask_low[t], prices.ask_close[t])


@kernel
def rising_edges_nb(signal, out) -> None:
    """Add each column's number of False → True transitions of ``signal`` ``[T, A]`` (a True first row
    counts) to ``out[a]``: one pass, no temporaries."""
    if signal.shape[0] == 0:
        return
    for a in range(signal.shape[1]):
        out[a] += signal[0, a]
    for t in range(1, signal.shape[0]):
        for a in range(signal.shape[1]):
            out[a] += signal[t, a] > signal[t - 1, a]


@kernel
def overflowed_nb(state: State) -> bool:
    """True when a record array ran out of room (the caller retries with more capacity)."""
    return state.counters[C_OVERFLOW] != 0


@inline_kernel
def equity_nb(state: State) -> float:
    """Cash plus every position at its mark. Equivalent to ``cash + np.nansum(position * mark)``."""
    return book_value_nb(state.cash, state.position, state.mark)[0]


@inline_kernel
def gross_exposure_nb(state: State) -> float:
    """Sum of absolute position values at their marks."""
    return book_value_nb(state.cash, state.position, state.mark)[1]


@inline_kernel
def round_lot_nb(qty: float, lot: float) -> float:
    """Round a non-negative quantity down to a multiple of ``lot`` (``lot <= 0``: fractional, unchanged)."""
    if lot <= 0.0:
        return qty
    return np.floor(qty / lot + EPS) * lot


@inline_kernel
def fee_nb(params: Params, a: int, qty: float, price: float) -> float:
    """Commission of one fill: ``max(fee_min, fee_rate * notional + fee_per_unit * |qty| + fee_per_order)``."""
    if qty == 0.0:
        return 0.0
    fee = params.fee_rate[a] * abs(qty) * price + params.fee_per_unit[a] * abs(qty) + params.fee_per_order[a]
    return max(fee, params.fee_min[a])


@inline_kernel
def side_prices_nb(params: Params, a: int, side: int, bar: Prices):
    """The (open, high, low, close) of the side a ``side`` order trades against at asset ``a`` (``bar``
    holds one bar's ``[A]`` rows)."""
    if params.has_quotes:
        if side > 0:
            return bar.ask_open[a], bar.ask_high[a], bar.ask_low[a], bar.ask_close[a]
        return bar.bid_open[a], bar.bid_high[a], bar.bid_low[a], bar.bid_close[a]
    half = 0.5 * params.spread[a] * side
    return bar.open[a] + half, bar.high[a] + half, bar.low[a] + half, bar.close[a] + half


@inline_kernel
def record_event_nb(state: State, oid: int, t: int, ts: int, kind: int, reason: int, price: float, qty: float) -> None:
    """Append one row to the order log."""
    n = state.counters[C_EVENTS]
    if n >= state.events.shape[0]:
        state.counters[C_OVERFLOW] = 1
        return
    ev = state.events[n]
    ev["order_id"] = oid
    ev["bar"] = t
    ev["ts"] = ts
    ev["kind"] = kind
    ev["reason"] = reason
    ev["price"] = price
    ev["qty"] = qty
    state.counters[C_EVENTS] = n + 1


@inline_kernel
def close_order_nb(state: State, oid: int, status: int, t: int, ts: int, kind: int, reason: int) -> None:
    """Move a working order to a final status and log it."""
    order = state.orders[oid]
    order["status"] = status
    order["reason"] = reason
    record_event_nb(state, oid, t, ts, kind, reason, np.nan, 0.0)


@kernel
def submit_order_nb(
    state: State, t: int, ts: int, asset: int, side: int, order_type: int, size_type: int, size: float,
    limit_price: float, stop_price: float, sl_pct: float, sl_abs: float, tp_pct: float, tp_abs: float,
    trail_pct: float, trail_abs: float, tif: int, gtn_bars: int, role: int, parent_id: int, oco_group: int,
    reverse: int, tag: int, reason: int,
) -> int:
    """Create an order decided at bar ``t``; it can fill from bar ``t + 1``. Returns its id (-1 on overflow).

    Invalid orders are not raised: they are recorded as REJECTED with a reason code.
    """
    oid = state.counters[C_ORDERS]
    if oid >= state.orders.shape[0] or state.counters[C_ACTIVE] >= state.active.shape[0]:
        state.counters[C_OVERFLOW] = 1
        return -1
    state.counters[C_ORDERS] = oid + 1
    order = state.orders[oid]
    order["id"] = oid
    order["asset"] = asset
    order["side"] = side
    order["order_type"] = order_type
    order["size_type"] = size_type
    order["size"] = size
    order["limit_price"] = limit_price
    order["stop_price"] = stop_price
    order["sl_pct"] = sl_pct
    order["sl_abs"] = sl_abs
    order["tp_pct"] = tp_pct
    order["tp_abs"] = tp_abs
    order["trail_pct"] = trail_pct
    order["trail_abs"] = trail_abs
    order["trail_level"] = np.nan
    order["tif"] = tif
    order["gtn_bars"] = gtn_bars
    order["expire_day"] = -1
    order["created_bar"] = t
    order["created_ts"] = ts
    order["status"] = PENDING
    order["reason"] = reason
    order["role"] = role
    order["parent_id"] = parent_id
    order["oco_group"] = oco_group
    order["reverse"] = reverse
    order["born_intrabar"] = 0
    order["fill_bar"] = -1
    order["fill_ts"] = 0
    order["fill_price"] = np.nan
    order["filled_qty"] = 0.0
    order["fee"] = 0.0
    order["tag"] = tag
    record_event_nb(state, oid, t, ts, EV_SUBMITTED, reason, np.nan, size)
    bad_price = False
    if order_type == LIMIT or order_type == STOP_LIMIT:
        if not (limit_price > 0.0 and np.isfinite(limit_price)):
            bad_price = True
    if order_type == STOP or order_type == STOP_LIMIT:
        if not (stop_price > 0.0 and np.isfinite(stop_price)):
            bad_price = True
    if bad_price:
        close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, R_PRICE)
        return oid
    if not (np.isfinite(size) and size >= 0.0) and size_type != TARGET_UNITS and size_type != TARGET_FRACTION:
        close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, R_ZERO)
        return oid
    state.active[state.counters[C_ACTIVE]] = oid
    state.counters[C_ACTIVE] += 1
    return oid


@inline_kernel
def cancel_order_nb(state: State, oid: int, t: int, ts: int, reason: int) -> bool:
    """Cancel a working order (False when it is not working)."""
    if oid < 0 or oid >= state.counters[C_ORDERS]:
        return False
    status = state.orders[oid]["status"]
    if status != PENDING and status != TRIGGERED:
        return False
    close_order_nb(state, oid, CANCELLED, t, ts, EV_CANCELLED, reason)
    return True


@kernel
def replace_order_nb(state: State, oid: int, t: int, ts: int, size: float, limit_price: float, stop_price: float) -> bool:
    """Change a working order's size and/or prices (NaN keeps a field). False when it is not working."""
    if oid < 0 or oid >= state.counters[C_ORDERS]:
        return False
    order = state.orders[oid]
    if order["status"] != PENDING and order["status"] != TRIGGERED:
        return False
    if np.isfinite(size):
        order["size"] = size
    if np.isfinite(limit_price):
        order["limit_price"] = limit_price
    if np.isfinite(stop_price):
        order["stop_price"] = stop_price
    record_event_nb(state, oid, t, ts, EV_REPLACED, R_REPLACED, np.nan, order["size"])
    return True


@inline_kernel
def compact_active_nb(state: State) -> None:
    """Drop orders that are no longer working from the active list, keeping submission order."""
    n = state.counters[C_ACTIVE]
    k = 0
    for i in range(n):
        oid = state.active[i]
        status = state.orders[oid]["status"]
        if status == PENDING or status == TRIGGERED:
            state.active[k] = oid
            k += 1
    state.counters[C_ACTIVE] = k


@inline_kernel
def cancel_brackets_nb(state: State, asset: int, t: int, ts: int, reason: int) -> None:
    """Cancel every working bracket order (stop-loss, take-profit, trailing stop) of ``asset``."""
    for i in range(state.counters[C_ACTIVE]):
        oid = state.active[i]
        order = state.orders[oid]
        if order["asset"] != asset:
            continue
        role = order["role"]
        if role == STOP_LOSS or role == TAKE_PROFIT or role == TRAILING_STOP:
            cancel_order_nb(state, oid, t, ts, reason)


# ------------------------------------------------------------------------------------------ sizing

@inline_kernel
def desired_qty_nb(state: State, params: Params, order, price: float) -> float:
    """Signed quantity an order asks for at ``price``, before affordability and lot rounding.

    Fraction-of-equity and fraction-of-cash sizes divide by ``price * (1 + fee_rate)`` so that a
    fraction of 1 leaves room for the commission.
    """
    a = order["asset"]
    side = order["side"]
    size = order["size"]
    size_type = order["size_type"]
    pos = state.position[a]
    if size_type == UNITS:
        qty = side * size
    elif size_type == NOTIONAL:
        qty = side * size / price
    elif size_type == EQUITY_FRACTION:
        qty = side * size * max(equity_nb(state), 0.0) / (price * (1.0 + params.fee_rate[a]))
    elif size_type == CASH_FRACTION:
        free = max(0.0, equity_nb(state) * params.leverage - gross_exposure_nb(state))
        qty = side * size * free / (price * (1.0 + params.fee_rate[a]))
    elif size_type == TARGET_UNITS:
        qty = size - pos
    elif size_type == TARGET_FRACTION:
        qty = size * max(equity_nb(state), 0.0) / price - pos
    else:  # POSITION_FRACTION: close part of the position, never beyond it
        qty = -pos * min(max(size, 0.0), 1.0)
    if order["reverse"] != 0 and pos * side < 0.0 and size_type != TARGET_UNITS and size_type != TARGET_FRACTION:
        qty += -pos
    return qty


@inline_kernel
def affordable_qty_nb(state: State, params: Params, a: int, direction: int, base_abs: float, price: float) -> float:
    """Largest additional quantity in ``direction`` on top of ``base_abs`` units that keeps
    ``gross exposure <= (equity - fee) * leverage``, the position valued at ``price``."""
    lev = params.leverage
    equity = equity_nb(state) + state.position[a] * (price - state.mark[a])
    gross_other = gross_exposure_nb(state) - abs(state.position[a] * state.mark[a])
    room = equity * lev - gross_other - base_abs * price - lev * params.fee_per_order[a]
    unit_cost = price * (1.0 + lev * params.fee_rate[a]) + lev * params.fee_per_unit[a]
    if room <= 0.0 or unit_cost <= 0.0:
        return 0.0
    return room / unit_cost


@inline_kernel
def fits_margin_nb(state: State, params: Params, a: int, new_pos: float, price: float, fee: float) -> bool:
    """True when holding ``new_pos`` of asset ``a`` after paying ``fee`` respects the leverage limit."""
    equity = equity_nb(state) + state.position[a] * (price - state.mark[a]) - fee
    gross = gross_exposure_nb(state) - abs(state.position[a] * state.mark[a]) + abs(new_pos * price)
    return gross <= equity * params.leverage * (1.0 + EPS) + EPS


@inline_kernel
def margin_threshold_nb(state: State, params: Params, a: int, closing: float, base_abs: float, price: float) -> float:
    """The opening quantity ``m`` at which :func:`fits_margin_nb` turns false for a fill of ``closing + m``
    units whose position afterwards is ``base_abs + m`` units at ``price`` (solved in closed form: the
    gross exposure grows linearly in ``m``, the equity net of the commission
    ``max(fee_rate × notional + fee_per_unit × units + fee_per_order, fee_min)`` falls linearly)."""
    k = params.leverage * (1.0 + EPS)
    equity = equity_nb(state) + state.position[a] * (price - state.mark[a])
    gross_other = gross_exposure_nb(state) - abs(state.position[a] * state.mark[a])
    per_unit = params.fee_rate[a] * price + params.fee_per_unit[a]
    room = EPS - gross_other - base_abs * price
    linear = ((equity - params.fee_per_order[a] - per_unit * closing) * k + room) / (price + per_unit * k)
    floor_fee = ((equity - params.fee_min[a]) * k + room) / price
    return min(linear, floor_fee)


@kernel
def step_down_start_nb(state: State, params: Params, a: int, pos: float, side: int, closing: float, base_abs: float,
                       price: float, most: float) -> float:
    """Where the search for the largest affordable opening quantity resumes, given that ``most`` (a lot
    multiple) does not fit :func:`fits_margin_nb`.

    The search (``execute_order_nb``) steps down from ``most`` one lot at a time (``most × 1e-6`` at a
    time for fractional sizes) to the first quantity that fits. Every quantity above the closed-form
    threshold (:func:`margin_threshold_nb`) fails, so this skips them: for lots it returns the lot
    multiple just above the threshold (verified not to fit, else it backs off upwards), for fractional
    sizes it runs the step sequence without the margin test until it reaches the threshold. The
    quantities the search then tests are the ones it tested before, so the chosen quantity is the
    same; only the work is O(1) instead of O(most / lot).
    """
    lot = params.lot_size[a]
    threshold = margin_threshold_nb(state, params, a, closing, base_abs, price)
    if not np.isfinite(threshold):
        return most
    if threshold <= 0.0:
        threshold = 0.0
    if lot > 0.0:
        j = np.floor(threshold / lot) + 2.0
        step = 1.0
        while True:
            start = round_lot_nb(j * lot, lot)
            if start >= most:
                return most
            if not fits_margin_nb(state, params, a, pos + side * (closing + start), price,
                                  fee_nb(params, a, closing + start, price)):
                return start
            j += step  # the estimate was low (rounding near a tiny room): back off upwards
            step *= 2.0
    # fractional: x -> x - x * 1e-6, the search's own steps, without the margin test above the threshold
    limit = threshold * (1.0 + 1e-9)
    x = most
    previous = most
    n = 0
    while x > limit:
        if n == 1_048_576:
            # a million steps shrink the quantity by 63 %: stop walking and resume at the threshold
            # (the one case where the quantity differs from the step-by-step walk, by < 1e-6)
            return limit
        previous = x
        x = x - x * 1e-6
        n += 1
    if previous != most and fits_margin_nb(state, params, a, pos + side * (closing + previous), price,
                                           fee_nb(params, a, closing + previous, price)):
        return most  # the threshold was underestimated (rounding): let the search walk every step
    return x


# ------------------------------------------------------------------------------------- execution

@inline_kernel
def record_trade_nb(state: State, a: int, direction: int, qty: float, t: int, ts: int, exit_price: float,
                    fees: float, role: int) -> None:
    """Append the closed-trade record of ``qty`` units of the position in ``a`` exiting at ``exit_price``."""
    n = state.counters[C_TRADES]
    if n >= state.trades.shape[0]:
        state.counters[C_OVERFLOW] = 1
        return
    entry = state.avg_price[a]
    tr = state.trades[n]
    tr["asset"] = a
    tr["direction"] = direction
    tr["qty"] = qty
    tr["entry_bar"] = state.open_bar[a]
    tr["entry_ts"] = state.open_ts[a]
    tr["entry_price"] = entry
    tr["exit_bar"] = t
    tr["exit_ts"] = ts
    tr["exit_price"] = exit_price
    tr["fees"] = fees
    pnl = direction * (exit_price - entry) * qty - fees
    tr["pnl"] = pnl
    tr["ret"] = pnl / (entry * qty) if entry * qty != 0.0 else 0.0
    hi = max(state.extreme_high[a], exit_price)
    lo = min(state.extreme_low[a], exit_price)
    if direction > 0:
        tr["mae"] = lo / entry - 1.0
        tr["mfe"] = hi / entry - 1.0
    else:
        tr["mae"] = 1.0 - hi / entry
        tr["mfe"] = 1.0 - lo / entry
    tr["exit_role"] = role
    tr["is_open"] = 0
    state.counters[C_TRADES] = n + 1


@inline_kernel
def apply_fill_nb(state: State, params: Params, oid: int, t: int, ts: int, qty: float, quote_price: float,
                  slip: float) -> None:
    """Execute ``qty`` (signed) of order ``oid``: cash, position, average price, trades, fees, log, brackets."""
    order = state.orders[oid]
    a = order["asset"]
    side = 1 if qty > 0.0 else -1
    price = quote_price + side * slip
    fee = fee_nb(params, a, qty, price)
    pos = state.position[a]
    abs_qty = abs(qty)
    # --- closing part
    closed = 0.0
    if pos != 0.0 and pos * qty < 0.0:
        closed = min(abs_qty, abs(pos))
        direction = 1 if pos > 0.0 else -1
        entry_share = state.entry_fees[a] * closed / abs(pos)
        exit_share = fee * closed / abs_qty
        state.entry_fees[a] -= entry_share
        record_trade_nb(state, a, direction, closed, t, ts, price, entry_share + exit_share, order["role"])
        state.realized[a] += direction * (price - state.avg_price[a]) * closed - entry_share - exit_share
        pos = pos + side * closed
        if abs(pos) <= EPS * max(1.0, closed):
            pos = 0.0
            state.entry_fees[a] = 0.0
    # --- opening part
    opened = abs_qty - closed
    if opened > 0.0:
        open_fee = fee * opened / abs_qty
        if pos == 0.0:
            state.avg_price[a] = price
            state.open_bar[a] = t
            state.open_ts[a] = ts
            state.extreme_high[a] = price
            state.extreme_low[a] = price
        else:
            state.avg_price[a] = (state.avg_price[a] * abs(pos) + price * opened) / (abs(pos) + opened)
        state.entry_fees[a] += open_fee
        pos = pos + side * opened
        state.last_entry_bar[a] = t
    state.position[a] = pos
    state.cash[0] -= qty * price + fee
    state.mark[a] = quote_price
    state.totals[T_FEES] += fee
    state.totals[T_SLIPPAGE] += slip * abs_qty
    state.totals[T_TRADED] += abs_qty * price
    state.last_fill_bar[a] = t
    state.last_fill_price[a] = price
    # --- records
    n = state.counters[C_FILLS]
    if n >= state.fills.shape[0]:
        state.counters[C_OVERFLOW] = 1
    else:
        fl = state.fills[n]
        fl["order_id"] = oid
        fl["bar"] = t
        fl["ts"] = ts
        fl["asset"] = a
        fl["qty"] = qty
        fl["price"] = price
        fl["quote_price"] = quote_price
        fl["slippage"] = slip
        fl["fee"] = fee
        fl["role"] = order["role"]
        fl["position_after"] = pos
        fl["cash_after"] = state.cash[0]
        state.counters[C_FILLS] = n + 1
    order["status"] = FILLED
    order["fill_bar"] = t
    order["fill_ts"] = ts
    order["fill_price"] = price
    order["filled_qty"] = qty
    order["fee"] = fee
    record_event_nb(state, oid, t, ts, EV_FILLED, order["reason"], price, qty)
    # --- one-cancels-other siblings and brackets
    group = order["oco_group"]
    if group >= 0:
        for i in range(state.counters[C_ACTIVE]):
            other = state.active[i]
            if other != oid and state.orders[other]["oco_group"] == group:
                cancel_order_nb(state, other, t, ts, R_OCO)
    if pos == 0.0 or (closed > 0.0 and opened > 0.0):
        cancel_brackets_nb(state, a, t, ts, R_POS_CLOSED)
    if opened > 0.0 and (np.isfinite(order["sl_abs"]) or np.isfinite(order["sl_pct"]) or np.isfinite(order["tp_abs"])
                         or np.isfinite(order["tp_pct"]) or np.isfinite(order["trail_abs"])
                         or np.isfinite(order["trail_pct"])):
        attach_brackets_nb(state, oid, t, ts, side, opened, price)


@kernel
def attach_brackets_nb(state: State, oid: int, t: int, ts: int, side: int, qty: float, price: float) -> None:
    """Create the stop-loss / take-profit / trailing-stop children of a filled entry (one-cancels-other)."""
    order = state.orders[oid]
    a = order["asset"]
    born_intrabar = state.orders[oid]["born_intrabar"]
    exit_side = -side
    first = state.counters[C_ORDERS]
    sl = np.nan
    if np.isfinite(order["sl_abs"]):
        sl = price - side * order["sl_abs"]
    elif np.isfinite(order["sl_pct"]):
        sl = price * (1.0 - side * order["sl_pct"])
    if np.isfinite(sl):
        submit_order_nb(state, t, ts, a, exit_side, STOP, UNITS, qty, np.nan, sl, np.nan, np.nan,
                        np.nan, np.nan, np.nan, np.nan, GTC, 0, STOP_LOSS, oid, oid, 0, order["tag"], R_BRACKET)
    tp = np.nan
    if np.isfinite(order["tp_abs"]):
        tp = price + side * order["tp_abs"]
    elif np.isfinite(order["tp_pct"]):
        tp = price * (1.0 + side * order["tp_pct"])
    if np.isfinite(tp):
        submit_order_nb(state, t, ts, a, exit_side, LIMIT, UNITS, qty, tp, np.nan, np.nan, np.nan,
                        np.nan, np.nan, np.nan, np.nan, GTC, 0, TAKE_PROFIT, oid, oid, 0, order["tag"], R_BRACKET)
    trail = np.nan
    if np.isfinite(order["trail_abs"]):
        trail = price - side * order["trail_abs"]
    elif np.isfinite(order["trail_pct"]):
        trail = price * (1.0 - side * order["trail_pct"])
    if np.isfinite(trail):
        child = submit_order_nb(state, t, ts, a, exit_side, STOP, UNITS, qty, np.nan, trail, np.nan, np.nan,
                                np.nan, np.nan, order["trail_pct"], order["trail_abs"], GTC, 0, TRAILING_STOP, oid, oid,
                                0, order["tag"], R_BRACKET)
        if child >= 0:
            state.orders[child]["trail_level"] = trail
    for child in range(first, state.counters[C_ORDERS]):
        state.orders[child]["born_intrabar"] = 1 + born_intrabar  # 1: born at the open, 2: born intrabar


@inline_kernel
def trigger_price_nb(order, so: float, sh: float, sl: float, t: int):
    """Where the bar reaches an order: (reached, quote price, at_open, slippage applies).

    ``so, sh, sl`` are the open/high/low of the side the order trades. A bracket born *inside* this
    bar (from an intrabar entry) cannot gap — the open happened before it existed — and a level it
    finds already crossed fills at the nearest price the bar traded (the level clamped to the bar's
    range). A bracket born at the open is checked against the open like any other order.
    """
    side = order["side"]
    otype = order["order_type"]
    born_inside = order["created_bar"] == t and order["born_intrabar"] == 2
    if otype == MARKET:
        return True, so, True, True
    if otype == LIMIT or (otype == STOP_LIMIT and order["status"] == TRIGGERED):
        limit = order["limit_price"]
        if side > 0:
            if not born_inside and so <= limit:
                return True, so, True, False
            if sl <= limit:
                return True, min(limit, sh), False, False
        else:
            if not born_inside and so >= limit:
                return True, so, True, False
            if sh >= limit:
                return True, max(limit, sl), False, False
        return False, np.nan, False, False
    stop = order["stop_price"]
    if side > 0:
        if not born_inside and so >= stop:
            return True, so, True, otype == STOP
        if sh >= stop:
            return True, max(stop, sl), False, otype == STOP
    else:
        if not born_inside and so <= stop:
            return True, so, True, otype == STOP
        if sl <= stop:
            return True, min(stop, sh), False, otype == STOP
    return False, np.nan, False, False


@inline_kernel
def expire_if_due_nb(state: State, oid: int, t: int, ts: int) -> bool:
    """Expire a DAY / GTN order whose time in force has elapsed before bar ``t``. True when expired."""
    order = state.orders[oid]
    tif = order["tif"]
    if tif == DAY:
        day = ts // NS_PER_DAY
        if order["expire_day"] < 0:
            order["expire_day"] = day
        elif day > order["expire_day"]:
            close_order_nb(state, oid, EXPIRED, t, ts, EV_EXPIRED, R_TIF)
            return True
    elif tif == GTN:
        if t > order["created_bar"] + order["gtn_bars"]:
            close_order_nb(state, oid, EXPIRED, t, ts, EV_EXPIRED, R_TIF)
            return True
    return False


@inline_kernel
def execute_order_nb(state: State, params: Params, oid: int, t: int, ts: int, quote_price: float,
                     slip_applies: bool, bar_range: float) -> None:
    """Size an order that the bar reached and fill it, reduce it, or reject it with a reason."""
    order = state.orders[oid]
    a = order["asset"]
    slip = 0.0
    if slip_applies:
        slip = quote_price * params.slippage_bps[a] * 1e-4 + params.slippage_range[a] * bar_range
    want = desired_qty_nb(state, params, order, quote_price + order["side"] * slip)
    pos = state.position[a]
    role = order["role"]
    if role == STOP_LOSS or role == TAKE_PROFIT or role == TRAILING_STOP or role == EXIT or order["size_type"] == POSITION_FRACTION:
        # exits never reverse: clip to the position
        if pos == 0.0 or pos * want >= 0.0:
            close_order_nb(state, oid, CANCELLED if role != EXIT else REJECTED, t, ts,
                           EV_CANCELLED if role != EXIT else EV_REJECTED, R_NO_POS if role == EXIT else R_POS_CLOSED)
            return
        if abs(want) > abs(pos):
            want = -pos
    if want == 0.0 or not np.isfinite(want):
        close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, R_ZERO)
        return
    side = 1 if want > 0.0 else -1
    closing = 0.0
    if pos * want < 0.0:
        closing = min(abs(want), abs(pos))
    opening = abs(want) - closing
    if opening > 0.0 and side < 0 and not params.allow_short:
        if closing == 0.0:
            close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, R_NO_SHORT)
            return
        opening = 0.0
    reduced = False
    if opening > 0.0 and state.risk.on[0] != 0 and role == ENTRY:
        cut = risk_cap_opening_nb(state, oid, t, ts, a, side, pos + side * closing, opening, quote_price + side * slip)
        if cut < opening:
            if cut <= 0.0 and closing == 0.0:
                close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, R_RISK)
                return
            record_event_nb(state, oid, t, ts, EV_REDUCED, R_RISK, np.nan, side * (closing + cut))
            opening = cut
    if opening > 0.0:
        lot = params.lot_size[a]
        rounded = round_lot_nb(opening, lot)
        price = quote_price + side * slip
        base_abs = abs(pos) - closing
        if not fits_margin_nb(state, params, a, pos + side * (closing + rounded), price,
                              fee_nb(params, a, closing + rounded, price)):
            most = round_lot_nb(affordable_qty_nb(state, params, a, side, base_abs, price), lot)
            if most > 0.0 and not fits_margin_nb(state, params, a, pos + side * (closing + most), price,
                                                 fee_nb(params, a, closing + most, price)):
                most = step_down_start_nb(state, params, a, pos, side, closing, base_abs, price, most)
            while most > 0.0 and not fits_margin_nb(state, params, a, pos + side * (closing + most), price,
                                                   fee_nb(params, a, closing + most, price)):
                most = round_lot_nb(most - (lot if lot > 0.0 else most * 1e-6), lot)
            if not params.allow_partial:
                most = 0.0
            rounded = min(rounded, max(most, 0.0))
            reduced = True
        if rounded < params.min_qty[a] or rounded <= 0.0:
            if closing == 0.0:
                reason = R_FUNDS if reduced else (R_MIN_QTY if opening > 0.0 else R_ZERO)
                close_order_nb(state, oid, REJECTED, t, ts, EV_REJECTED, reason)
                return
            rounded = 0.0
        opening = rounded  # rounding down to the lot size is not a reduction: no event
    qty = side * (closing + opening)
    if reduced:
        record_event_nb(state, oid, t, ts, EV_REDUCED, R_FUNDS, np.nan, qty)
    apply_fill_nb(state, params, oid, t, ts, qty, quote_price, slip)


@inline_kernel
def risk_cap_opening_nb(state: State, oid: int, t: int, ts: int, a: int, side: int, base: float, opening: float,
                        price: float) -> float:
    """The opening quantity of order ``oid`` the risk caps allow at ``price`` (``base``: the signed
    position after the order's closing part); see :func:`backforge.engine.risk.risk_cap_nb`."""
    pos = state.position[a]
    equity = 0.0
    gross_other = 0.0
    net_other = 0.0
    if rk.cap_needs_equity_nb(state.risk, state.orders[oid]["tag"], a):
        # one pass over the book (only when a weight or exposure cap is configured)
        equity = state.cash[0]
        for b in range(state.position.shape[0]):
            if state.position[b] != 0.0:
                value = state.position[b] * state.mark[b]
                equity += value
                if b != a:
                    gross_other += abs(value)
                    net_other += value
        equity += pos * (price - state.mark[a])
    return rk.risk_cap_nb(state.risk, state.orders[oid]["tag"], a, t, ts, oid, base, opening, side, price, equity,
                          gross_other, net_other)


@inline_kernel
def group_choice_nb(state: State, params: Params, group: int, t: int, phase: int, bar: Prices):
    """The member of one-cancels-other bracket group ``group`` that executes on bar ``t``, as ``(order id
    or -1, price, slippage applies)``: in phase 0 only members that fill at the open; in phase 1 intrabar
    touches, where a stop beats the take-profit (the worse outcome is assumed when both are touched).
    Nothing is changed: the caller executes the choice (one call site of the inlined fill)."""
    best = -1
    best_price = np.nan
    best_at_open = False
    best_is_stop = False
    best_slip = False
    for i in range(state.counters[C_ACTIVE]):
        oid = state.active[i]
        order = state.orders[oid]
        if order["oco_group"] != group or (order["status"] != PENDING and order["status"] != TRIGGERED):
            continue
        a = order["asset"]
        if order["role"] == TAKE_PROFIT and order["created_bar"] == t and order["born_intrabar"] == 2:
            continue
        so, sh, sl, sc = side_prices_nb(params, a, order["side"], bar)
        reached, price, at_open, slip = trigger_price_nb(order, so, sh, sl, t)
        if not reached or at_open != (phase == 0):
            continue
        is_stop = order["order_type"] == STOP
        better = False
        if best < 0:
            better = True
        elif at_open and not best_at_open:
            better = True
        elif at_open == best_at_open and is_stop and not best_is_stop:
            better = True
        elif at_open == best_at_open and is_stop == best_is_stop and is_stop:
            # two stops touched in one bar: the one nearer the open was hit first
            better = (order["side"] < 0 and price > best_price) or (order["side"] > 0 and price < best_price)
        if better:
            best, best_price, best_at_open, best_is_stop, best_slip = oid, price, at_open, is_stop, slip
    return best, best_price, best_slip


@kernel
def fill_orders_nb(state: State, params: Params, t: int, ts: int, bar: Prices) -> None:
    """Check every working order against bar ``t`` in submission order within three passes: at the open,
    first the orders that reduce a position (they free cash for the others), then the rest that
    executes at the open (market orders, gaps through limits and stops), then the touches inside the
    bar — so nothing that happens later in the bar can pre-empt the open. Brackets created by a fill
    are appended and checked in the same bar."""
    for i in range(state.counters[C_ACTIVE]):  # time in force first, once per bar
        oid = state.active[i]
        order = state.orders[oid]
        if (order["status"] == PENDING or order["status"] == TRIGGERED) and not np.isnan(bar.close[order["asset"]]) \
                and not (order["created_bar"] >= t and order["born_intrabar"] == 0):
            expire_if_due_nb(state, oid, t, ts)
    for step in range(3):
        # step 0: at the open, orders that reduce a position (they free cash first); step 1: the other
        # orders at the open; step 2: touches inside the bar
        phase = 0 if step < 2 else 1
        i = 0
        while i < state.counters[C_ACTIVE]:
            oid = state.active[i]
            i += 1
            order = state.orders[oid]
            status = order["status"]
            if status != PENDING and status != TRIGGERED:
                continue
            a = order["asset"]
            if np.isnan(bar.close[a]) or (order["created_bar"] >= t and order["born_intrabar"] == 0):
                continue  # no bar for this asset, or decided on this very bar
            if step == 0 and order["side"] * state.position[a] >= 0.0:
                continue  # not reducing: step 1 (re-checking a reducing order there is harmless)
            # the order executes at most once here: one (inlined) call site for the four ways it can
            go = False
            go_price = np.nan
            go_slip = False
            otype = order["order_type"]
            if order["oco_group"] >= 0:
                best, best_price, best_slip = group_choice_nb(state, params, order["oco_group"], t, phase, bar)
                if best >= 0:
                    oid = best
                    a = state.orders[best]["asset"]
                    if state.orders[best]["order_type"] == STOP:
                        record_event_nb(state, best, t, ts, EV_TRIGGERED, R_NONE, best_price, 0.0)
                    go, go_price, go_slip = True, best_price, best_slip
            elif otype == STOP_LIMIT and status == PENDING:
                so, sh, sl, sc = side_prices_nb(params, a, order["side"], bar)
                stop = order["stop_price"]
                limit = order["limit_price"]
                side = order["side"]
                gap = (side > 0 and so >= stop) or (side < 0 and so <= stop)
                touched = (side > 0 and sh >= stop) or (side < 0 and sl <= stop)
                if phase == 0 and gap:
                    order["status"] = TRIGGERED
                    record_event_nb(state, oid, t, ts, EV_TRIGGERED, R_NONE, so, 0.0)
                    reached, price, at_open, slip = trigger_price_nb(order, so, sh, sl, t)
                    if reached and at_open:
                        order["born_intrabar"] = 0
                        go, go_price = True, price
                elif phase == 1 and touched and not gap:
                    order["status"] = TRIGGERED
                    record_event_nb(state, oid, t, ts, EV_TRIGGERED, R_NONE, stop, 0.0)
                    if (side > 0 and stop <= limit) or (side < 0 and stop >= limit):
                        order["born_intrabar"] = 1
                        go, go_price = True, stop
            else:
                so, sh, sl, sc = side_prices_nb(params, a, order["side"], bar)
                reached, price, at_open, slip = trigger_price_nb(order, so, sh, sl, t)
                if reached and at_open == (phase == 0):
                    if otype == STOP:
                        record_event_nb(state, oid, t, ts, EV_TRIGGERED, R_NONE, price, 0.0)
                    order["born_intrabar"] = 0 if at_open else 1
                    go, go_price, go_slip = True, price, slip
            if go:
                execute_order_nb(state, params, oid, t, ts, go_price, go_slip, bar.high[a] - bar.low[a])
    compact_active_nb(state)
    update_trailing_stops_nb(state, params, bar)


# ------------------------------------------------------------------------------------ bar stages

@kernel
def accrue_financing_nb(state: State, params: Params, ts: int) -> None:
    """Charge borrow cost on shorts and interest on negative cash for the time since the last bar
    (annual rates, 365-day year, on the marks of the previous bar)."""
    last = state.counters[C_LAST_TS]
    if state.counters[C_BARS] == 0 or ts <= last:
        return
    years = (ts - last) / (365.0 * NS_PER_DAY)
    cost = 0.0
    for a in range(state.position.shape[0]):
        pos = state.position[a]
        if pos < 0.0 and params.borrow_rate[a] > 0.0:
            cost += -pos * state.mark[a] * params.borrow_rate[a] * years
    if state.cash[0] < 0.0 and params.financing_rate > 0.0:
        cost += -state.cash[0] * params.financing_rate * years
    if cost > 0.0:
        state.cash[0] -= cost
        state.totals[T_FINANCING] += cost


@inline_kernel
def mark_prices_nb(mark, prices) -> None:
    """Set each asset's mark to ``prices[a]`` where the asset has a bar."""
    for a in range(prices.shape[0]):
        if not np.isnan(prices[a]):
            mark[a] = prices[a]


@inline_kernel
def mark_close_nb(mark, close, open_) -> None:
    """Mark each asset at the bar's close; at its open when only the open exists (where the open marks of
    :func:`process_bar_nb` would have left it when they were skipped)."""
    for a in range(mark.shape[0]):
        if not np.isnan(close[a]):
            mark[a] = close[a]
        elif not np.isnan(open_[a]):
            mark[a] = open_[a]


@inline_kernel
def track_extremes_nb(position, extreme_high, extreme_low, h, l) -> None:
    """Widen each open position's high/low since entry with the bar's range (for MAE/MFE)."""
    for a in range(position.shape[0]):
        if position[a] != 0.0 and not np.isnan(h[a]):
            if h[a] > extreme_high[a]:
                extreme_high[a] = h[a]
            if l[a] < extreme_low[a]:
                extreme_low[a] = l[a]


@inline_kernel
def book_value_nb(cash, position, mark):
    """``(equity, gross exposure, net exposure)`` of the book at its marks (cash first, then the assets in
    order)."""
    equity = cash[0]
    gross = 0.0
    net = 0.0
    for a in range(position.shape[0]):
        if position[a] != 0.0:
            value = position[a] * mark[a]
            equity += value
            gross += abs(value)
            net += value
    return equity, gross, net


@inline_kernel
def update_trailing_stops_nb(state: State, params: Params, bar: Prices) -> None:
    """Ratchet trailing stops with the bar's range, after the bar's fills (this bar's extreme can only
    trigger the stop from the next bar on). A sell stop protecting a long follows the bid high; a buy
    stop protecting a short follows the ask low."""
    for i in range(state.counters[C_ACTIVE]):
        oid = state.active[i]
        order = state.orders[oid]
        if order["role"] != TRAILING_STOP or order["status"] != PENDING:
            continue
        a = order["asset"]
        if np.isnan(bar.high[a]):
            continue
        so, sh, sl, sc = side_prices_nb(params, a, order["side"], bar)
        if order["side"] < 0:
            level = sh - order["trail_abs"] if np.isfinite(order["trail_abs"]) else sh * (1.0 - order["trail_pct"])
            if level > order["stop_price"]:
                order["stop_price"] = level
                order["trail_level"] = level
        else:
            level = sl + order["trail_abs"] if np.isfinite(order["trail_abs"]) else sl * (1.0 + order["trail_pct"])
            if level < order["stop_price"]:
                order["stop_price"] = level
                order["trail_level"] = level


@inline_kernel
def margin_breached_nb(equity: float, gross: float, maintenance_margin: float) -> bool:
    """True when positions are open (``gross`` exposure) and equity < maintenance_margin × gross, or
    equity <= 0."""
    if gross == 0.0:
        return False
    return equity < maintenance_margin * gross or equity <= 0.0


@kernel
def liquidate_nb(state: State, params: Params, t: int, ts: int, bar: Prices) -> None:
    """Close every position at the bar's close (a margin call), with slippage and fees."""
    for a in range(state.position.shape[0]):
        pos = state.position[a]
        if pos == 0.0:
            continue
        side = 1 if pos < 0.0 else -1
        close_price = state.mark[a]
        bar_range = 0.0
        if not np.isnan(bar.close[a]):
            so, sh, sl, sc = side_prices_nb(params, a, side, bar)
            close_price = sc
            bar_range = bar.high[a] - bar.low[a]
        oid = submit_order_nb(state, t, ts, a, side, MARKET, TARGET_UNITS, 0.0, np.nan, np.nan, np.nan, np.nan,
                              np.nan, np.nan, np.nan, np.nan, GTC, 0, LIQUIDATION, -1, -1, 0, -1, R_MARGIN)
        if oid < 0:
            return
        slip = close_price * params.slippage_bps[a] * 1e-4 + params.slippage_range[a] * bar_range
        apply_fill_nb(state, params, oid, t, ts, -pos, close_price, slip)
    compact_active_nb(state)


@inline_kernel
def record_bar_nb(cash, position, equity: float, gross: float, net: float, equity_out, cash_out, gross_out, net_out,
                  positions_out, t: int) -> None:
    """Write equity, cash, gross/net exposure and (when ``positions_out`` has rows) positions of bar ``t``."""
    equity_out[t] = equity
    cash_out[t] = cash[0]
    gross_out[t] = gross
    net_out[t] = net
    if positions_out.shape[0] > t:
        for a in range(position.shape[0]):
            positions_out[t, a] = position[a]


@inline_kernel
def orders_quiet_nb(state: State, params: Params, bar: Prices) -> bool:
    """True when no working order can do anything on this bar, so :func:`fill_orders_nb` would change
    nothing: every active order is a pending good-till-cancelled limit or stop (not a trailing stop, whose
    level ratchets) whose level the bar's side prices do not reach (:func:`trigger_price_nb`'s tests,
    negated), or its asset has no bar. Anything else (a market order, a touch, a time in force that can
    expire, a triggered stop-limit, a finished order still listed) takes the full path.

    A resting stop-loss costs a bar a few reads here instead of a call of ``fill_orders_nb`` (that call
    passes the whole state: several hundred flattened arguments).
    """
    for i in range(state.counters[C_ACTIVE]):
        order = state.orders[state.active[i]]
        if order["status"] != PENDING or order["tif"] != GTC or order["role"] == TRAILING_STOP:
            return False
        a = order["asset"]
        if np.isnan(bar.close[a]):
            continue
        side = order["side"]
        so, sh, sl, sc = side_prices_nb(params, a, side, bar)
        otype = order["order_type"]
        if otype == STOP:
            level = order["stop_price"]
            if (side > 0 and (so >= level or sh >= level)) or (side < 0 and (so <= level or sl <= level)):
                return False
        elif otype == LIMIT:
            level = order["limit_price"]
            if (side > 0 and (so <= level or sl <= level)) or (side < 0 and (so >= level or sh >= level)):
                return False
        else:
            return False
    return True


@inline_kernel
def process_bar_nb(state: State, params: Params, t: int, ts: int, bar: Prices) -> None:
    """Advance the account over bar ``t`` (``bar`` holds that bar's ``[A]`` rows, :func:`bar_prices_nb`;
    NaN = no bar).

    This is the one step shared by :func:`run_signals_nb`, :func:`run_program_nb` and the Python
    driver :class:`backforge.Simulator`. The stages that need the whole state run only when there is
    work for them (financing configured, orders working, margin breached); the per-bar stages take
    only the arrays they touch, which keeps an idle bar to a few nanoseconds per asset.
    """
    if params.has_financing:
        accrue_financing_nb(state, params, ts)
    if state.counters[C_ACTIVE] > 0 and not orders_quiet_nb(state, params, bar):
        mark_prices_nb(state.mark, bar.open)  # the marks fills are sized at
        fill_orders_nb(state, params, t, ts, bar)  # then ratchets the trailing stops (update_trailing_stops_nb)
    track_extremes_nb(state.position, state.extreme_high, state.extreme_low, bar.high, bar.low)
    mark_close_nb(state.mark, bar.close, bar.open)
    equity, gross, net = book_value_nb(state.cash, state.position, state.mark)
    if margin_breached_nb(equity, gross, params.maintenance_margin):
        liquidate_nb(state, params, t, ts, bar)
        equity, gross, net = book_value_nb(state.cash, state.position, state.mark)
    record_bar_nb(state.cash, state.position, equity, gross, net, state.equity, state.cash_history,
                  state.gross_exposure, state.net_exposure, state.positions, t)
    state.counters[C_LAST_TS] = ts
    state.counters[C_BARS] = t + 1
    if state.risk.on[0] != 0:
        risk_after_bar_nb(state, t, ts)


# ---------------------------------------------------------------------------------------------- risk

@inline_kernel
def risk_after_bar_nb(state: State, t: int, ts: int) -> None:
    """Update the risk state after bar ``t`` (:func:`backforge.engine.risk.risk_update_nb`); when a
    drawdown halt fires, stand down (:func:`risk_stand_down_nb`)."""
    fired = rk.risk_update_nb(state.risk, state.fills, state.counters[C_FILLS], state.orders, state.trades,
                              state.counters[C_TRADES], t, ts, state.equity[t] if t < state.equity.shape[0] else equity_nb(state))
    if fired:
        risk_stand_down_nb(state, t, ts)


@kernel
def risk_stand_down_nb(state: State, t: int, ts: int) -> None:
    """Cancel the working entry orders a halt that fired at bar ``t`` covers (a portfolio halt: every
    entry; strategy ``s``'s halt: the entries tagged ``s``) and, for a rule that flattens, send a market
    exit for every position it covers (they fill at the next bar's open, reason ``risk``)."""
    risk = state.risk
    for i in range(state.counters[C_ACTIVE]):
        oid = state.active[i]
        order = state.orders[oid]
        if order["role"] == ENTRY and rk.risk_halts_order_nb(risk, order["tag"], t):
            cancel_order_nb(state, oid, t, ts, R_RISK)
    for a in range(state.position.shape[0]):
        pos = state.position[a]
        if pos != 0.0 and rk.risk_flattens_nb(risk, a, t):
            oid = submit_order_nb(state, t, ts, a, -1 if pos > 0.0 else 1, MARKET, POSITION_FRACTION, 1.0, np.nan,
                                  np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, GTC, 0, EXIT, -1, -1, 0,
                                  -1, R_RISK)
            if state.signal_order[a] >= 0:
                state.signal_order[a] = oid
    compact_active_nb(state)


@inline_kernel
def risk_entry_order_nb(state: State, row: int, a: int, t: int, ts: int, size_type: int, size: float, sl_pct: float,
                        sl_abs: float):
    """Size and check an entry decided after bar ``t`` under the risk rules of ``row`` (0: the portfolio
    or signals; 1 + s: strategy s, whose portfolio rules apply too). Returns ``(size_type, size, sl_abs)``
    with size type -1 when a rule blocks the entry (a risk event says which). The decision bar's close
    is the asset's mark; equity is the account's after that bar: no later data is used."""
    risk = state.risk
    equity = equity_nb(state)
    if risk.rules[row]["sizing"] != 0:
        atr_col = risk.atr_cols[row, a]
        if atr_col >= 0 and t < risk.series.shape[0]:
            sl_abs = risk.rules[row]["stop_atr"] * risk.series[t, atr_col]
        st, value = rk.risk_size_nb(risk, row, a, t, equity, state.mark[a], sl_pct, sl_abs)
        if st == -1:
            rule = rk.RULE_KELLY if risk.rules[row]["sizing"] == rk.SZ_KELLY else rk.RULE_NO_SIZE
            rk._block_nb(risk, t, ts, row, a, rule, np.nan, np.nan, np.nan)
            return -1, 0.0, sl_abs
        if st >= 0:
            size_type = st
            size = value
    sized = rk.risk_entry_nb(risk, state.position, state.orders, state.active, state.counters[C_ACTIVE], equity, row,
                             a, t, ts, size)
    if sized < 0.0:
        return -1, 0.0, sl_abs
    return size_type, sized, sl_abs


# ---------------------------------------------------------------------------------------- deciders

@inline_kernel
def submit_signal_order_nb(state: State, sp: SignalParams, t: int, ts: int, a: int, side: int, entry: bool,
                           reverse: int) -> None:
    """Replace any working signal order of asset ``a`` with a new market order."""
    size_type = sp.size_type
    size = sp.size[a]
    sl_abs = np.nan
    if state.risk.on[0] != 0:
        if entry:
            size_type, size, sl_abs = risk_entry_order_nb(state, 0, a, t, ts, size_type, size, sp.sl_pct[a], sl_abs)
            if size_type < 0:
                if reverse == 0:
                    return
                entry = False  # a blocked reversal still closes the position it reverses
        rk.risk_count_order_nb(state.risk, 0)
    prev = state.signal_order[a]
    if prev >= 0:
        cancel_order_nb(state, prev, t, ts, R_SUPERSEDED)
    sl_pct = sp.sl_pct[a]
    tp_pct = sp.tp_pct[a]
    trail_pct = sp.trail_pct[a]
    role = ENTRY
    if not entry:  # an exit: the whole position, no brackets
        size_type, size, sl_pct, sl_abs, tp_pct, trail_pct, role, reverse = (
            POSITION_FRACTION, 1.0, np.nan, np.nan, np.nan, np.nan, EXIT, 0)
    oid = submit_order_nb(state, t, ts, a, side, MARKET, size_type, size, np.nan, np.nan, sl_pct, sl_abs, tp_pct,
                          np.nan, trail_pct, np.nan, sp.tif, sp.gtn_bars, role, -1, -1, reverse, -1, R_SIGNAL)
    state.signal_order[a] = oid


@inline_kernel
def decide_signals_nb(state: State, sp: SignalParams, t: int, ts: int, c, long_entries, long_exits,
                      short_entries, short_exits) -> None:
    """Turn one bar of boolean signals into market orders for the next bar.

    Conflicting signals on the same bar and asset (entry with exit, long entry with short entry) are
    ignored. An entry against an open opposite position reverses it in one order; an entry while
    already positioned that way is ignored unless ``accumulate``. Signals on a bar where the asset
    has no data are ignored.
    """
    for a in range(c.shape[0]):
        if np.isnan(c[a]):
            continue
        le = long_entries[a]
        lx = long_exits[a]
        se = short_entries[a]
        sx = short_exits[a]
        if le and lx:
            le = False
            lx = False
        if se and sx:
            se = False
            sx = False
        if le and se:
            le = False
            se = False
        last = state.signal_order[a]
        working = last >= 0 and state.orders[last]["status"] == PENDING
        # an entry refused for size or funds is not retried on every bar while the signal stays on
        # (after a collapse it would flood the order log); a fresh signal, or an exit in between, retries
        refused = last >= 0 and state.orders[last]["status"] == REJECTED and state.orders[last]["role"] == ENTRY \
            and state.signal_seen[a] == t - 1
        if le or se:
            state.signal_seen[a] = t
        pos = state.position[a]
        if refused and pos == 0.0 and (le or se):
            continue
        # (side, entry, reverse) of the order to submit, side 0: none — one (inlined) call site below
        side = 0
        entry = True
        reverse = 0
        if le:
            if pos < 0.0:
                side, reverse = 1, 1
            elif pos == 0.0 or sp.accumulate:
                if not (working and state.orders[state.signal_order[a]]["role"] == ENTRY
                        and state.orders[state.signal_order[a]]["side"] > 0 and not sp.accumulate):
                    side = 1
        elif se:
            if pos > 0.0:
                side, reverse = -1, 1
            elif pos == 0.0 or sp.accumulate:
                if not (working and state.orders[state.signal_order[a]]["role"] == ENTRY
                        and state.orders[state.signal_order[a]]["side"] < 0 and not sp.accumulate):
                    side = -1
        elif lx and pos > 0.0:
            side, entry = -1, False
        elif sx and pos < 0.0:
            side, entry = 1, False
        elif (lx or sx) and working and state.orders[state.signal_order[a]]["role"] == ENTRY:
            # an exit signal arrives while the entry has not filled yet: withdraw the entry
            working_side = state.orders[state.signal_order[a]]["side"]
            if (lx and working_side > 0) or (sx and working_side < 0):
                cancel_order_nb(state, state.signal_order[a], t, ts, R_SUPERSEDED)
                state.signal_order[a] = -1
        if side != 0:
            submit_signal_order_nb(state, sp, t, ts, a, side, entry, reverse)


@kernel
def decide_program_nb(state: State, program, ref_ids, t: int, ts: int, start: int) -> int:
    """Carry out the order-program rows decided at bar ``t`` (rows are sorted by bar), from row ``start``.
    Returns the first row of a later bar."""
    i = start
    n = program.shape[0]
    while i < n and program[i]["bar"] <= t:
        row = program[i]
        if row["bar"] == t:
            action = row["action"]
            if action == 0:
                size_type = row["size_type"]
                size = row["size"]
                if state.risk.on[0] != 0:
                    if size_type != POSITION_FRACTION:
                        size_type, size, _ = risk_entry_order_nb(state, 0, row["asset"], t, ts, size_type, size,
                                                                 row["sl_pct"], row["sl_abs"])
                        if size_type < 0:
                            ref_ids[i] = -1
                            i += 1
                            continue
                    rk.risk_count_order_nb(state.risk, 0)
                ref_ids[i] = submit_order_nb(state, t, ts, row["asset"], row["side"], row["order_type"],
                                             size_type, size, row["limit_price"], row["stop_price"],
                                             row["sl_pct"], row["sl_abs"], row["tp_pct"], row["tp_abs"],
                                             row["trail_pct"], row["trail_abs"], row["tif"], row["gtn_bars"],
                                             ENTRY if row["size_type"] != POSITION_FRACTION else EXIT,
                                             -1, -1, 0, row["tag"], R_USER)
            else:
                target = ref_ids[row["ref"]] if row["ref"] >= 0 and row["ref"] < i else -1
                if action == 1:
                    ok = cancel_order_nb(state, target, t, ts, R_USER)
                else:
                    ok = replace_order_nb(state, target, t, ts, row["size"], row["limit_price"], row["stop_price"])
                if not ok and target >= 0:
                    record_event_nb(state, target, t, ts, EV_REJECTED, R_UNKNOWN, np.nan, 0.0)
        i += 1
    return i


# ------------------------------------------------------------------------------------ batch loops

@kernel
def run_signals_nb(state: State, params: Params, sp: SignalParams, timestamps, prices: Prices, long_entries,
                   long_exits, short_entries, short_exits) -> bool:
    """Backtest boolean signals over all bars. Returns False when a record array overflowed."""
    for t in range(timestamps.shape[0]):
        ts = timestamps[t]
        bar = bar_prices_nb(prices, t)
        process_bar_nb(state, params, t, ts, bar)
        decide_signals_nb(state, sp, t, ts, bar.close, long_entries[t], long_exits[t], short_entries[t], short_exits[t])
        if state.counters[C_OVERFLOW] != 0:
            return False
    return True


@kernel
def run_program_nb(state: State, params: Params, program, ref_ids, timestamps, prices: Prices) -> bool:
    """Backtest an order program over all bars. Returns False when a record array overflowed."""
    row = 0
    for t in range(timestamps.shape[0]):
        ts = timestamps[t]
        process_bar_nb(state, params, t, ts, bar_prices_nb(prices, t))
        row = decide_program_nb(state, program, ref_ids, t, ts, row)
        if state.counters[C_OVERFLOW] != 0:
            return False
    return True
