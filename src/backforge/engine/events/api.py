"""The strategy API of the event engine: compiled functions a ``@njit`` strategy calls with the ``sim``
it receives, modelled on hftbacktest's ``hbt`` methods.

>>> from backforge.engine.events import api
>>> sorted(name for name in api.__all__ if name.startswith("submit"))
['submit_buy_order', 'submit_sell_order']

Time functions return hftbacktest's codes: 0 ok, 1 end of data, 2 a market feed row arrived,
3 an order response arrived. Order functions return 0 or a negative error code (:data:`ERRORS`).
Queries read the **local** view: the book as the feed delivered it (``local_ts``) and orders and
position as the responses reported them — never the exchange's state the strategy could not know yet.
"""

from __future__ import annotations

import numpy as np

from backforge._jit import njit
from backforge.engine.events import core as c
from backforge.engine.records import OrderType, TimeInForce

__all__ = [
    "elapse", "wait_next_feed", "wait_order_response", "current_timestamp",
    "submit_buy_order", "submit_sell_order", "cancel", "modify",
    "best_bid", "best_ask", "best_bid_tick", "best_ask_tick", "mid_price", "bid_qty_at_tick", "ask_qty_at_tick",
    "tick_size", "lot_size", "position", "balance", "fee", "equity", "num_trades",
    "order_exists", "order_status", "order_leaves_qty", "order_price", "order_side", "order_cancellable",
    "num_orders", "order_id_at", "order_side_at", "order_cancellable_at", "last_trade_price", "buy_volume", "sell_volume", "book_imbalance",
    "GTC", "GTX", "IOC", "FOK", "LIMIT", "MARKET", "ERRORS", "STATUS",
]

GTC, GTX, IOC, FOK = TimeInForce.GTC, TimeInForce.GTX, TimeInForce.IOC, TimeInForce.FOK
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
ERRORS = {0: "ok", -1: "order id exists", -2: "order not found", -3: "a request for this order is in flight",
          -4: "capacity exhausted", -5: "price invalid or outside the book window", -6: "quantity invalid"}
"""Error codes of the order functions."""
STATUS = {0: "none", 1: "new", 2: "partially_filled", 3: "filled", 4: "canceled", 5: "expired", 6: "rejected"}
"""Order status codes (hftbacktest's Status) of :func:`order_status`."""

# no reference counting (`_nrt=False`): with it, every call that touches `sim` would incref and decref its
# ~35 arrays (~350 ns); without it LLVM inlines these small functions into the strategy for free
api = njit(cache=True, _nrt=False, error_model="numpy")


@api
def elapse(sim, duration):
    """Let ``duration`` ns pass (both clocks); 0, or 1 at the end of the data."""
    if not c.start_nb(sim):
        return c.R_END
    return c.goto_nb(sim, sim.ints[c.I_CUR] + duration, False, -1)


@api
def wait_next_feed(sim, include_order_response, timeout):
    """Run until the next feed row reaches the strategy (2), an order response does (3, when
    ``include_order_response``), ``timeout`` ns pass (0) or the data ends (1)."""
    if not c.start_nb(sim):
        return c.R_END
    return c.goto_nb(sim, sim.ints[c.I_CUR] + timeout, True, -2 if include_order_response else -1)


@api
def wait_order_response(sim, order_id, timeout):
    """Run until the response to order ``order_id`` arrives or ``timeout`` ns pass."""
    if not c.start_nb(sim):
        return c.R_END
    i = c.find_slot_nb(sim, order_id)
    if i < 0:
        return c.E_NOT_FOUND
    return c.goto_nb(sim, sim.ints[c.I_CUR] + timeout, False, i)


@api
def current_timestamp(sim):
    """The strategy's clock (ns)."""
    return sim.ints[c.I_CUR]


@api
def submit_buy_order(sim, order_id, price, qty, time_in_force, order_type):
    """Send a buy order (``order_type`` LIMIT or MARKET; ``time_in_force`` GTC, GTX, IOC or FOK)."""
    return c.submit_nb(sim, order_id, 1, price, qty, time_in_force, order_type)


@api
def submit_sell_order(sim, order_id, price, qty, time_in_force, order_type):
    """Send a sell order."""
    return c.submit_nb(sim, order_id, -1, price, qty, time_in_force, order_type)


@api
def cancel(sim, order_id):
    """Ask the exchange to cancel an order (it may fill before the cancel arrives)."""
    return c.cancel_nb(sim, order_id)


@api
def modify(sim, order_id, price, qty):
    """Ask the exchange to change an order's price/quantity (a new price or a larger size loses the queue position)."""
    return c.modify_nb(sim, order_id, price, qty)


@api
def tick_size(sim):
    return sim.params[c.P_TICK]


@api
def lot_size(sim):
    return sim.params[c.P_LOT]


@api
def best_bid_tick(sim):
    """Best bid of the local book in ticks (price / tick size); -1 when the bid side is empty."""
    t = sim.ints[c.I_LBB]
    return t + sim.ints[c.I_WLO] if t >= 0 else -1


@api
def best_ask_tick(sim):
    """Best ask of the local book in ticks; -1 when the ask side is empty."""
    t = sim.ints[c.I_LBA]
    return t + sim.ints[c.I_WLO] if t < sim.l_ask.shape[0] else -1


@api
def best_bid(sim):
    t = sim.ints[c.I_LBB]
    return (t + sim.ints[c.I_WLO]) * sim.params[c.P_TICK] if t >= 0 else np.nan


@api
def best_ask(sim):
    t = sim.ints[c.I_LBA]
    return (t + sim.ints[c.I_WLO]) * sim.params[c.P_TICK] if t < sim.l_ask.shape[0] else np.nan


@api
def mid_price(sim):
    return (best_bid(sim) + best_ask(sim)) * 0.5


@api
def bid_qty_at_tick(sim, price_tick):
    t = price_tick - sim.ints[c.I_WLO]
    return sim.l_bid[t] if 0 <= t < sim.l_bid.shape[0] else 0.0


@api
def ask_qty_at_tick(sim, price_tick):
    t = price_tick - sim.ints[c.I_WLO]
    return sim.l_ask[t] if 0 <= t < sim.l_ask.shape[0] else 0.0


@api
def book_imbalance(sim, levels):
    """(bid qty - ask qty) / (bid qty + ask qty) over the ``levels`` ticks from each touch (local book)."""
    bb, ba = sim.ints[c.I_LBB], sim.ints[c.I_LBA]
    w = sim.l_bid.shape[0]
    b = 0.0
    a = 0.0
    for k in range(levels):
        if bb - k >= 0:
            b += sim.l_bid[bb - k]
        if ba + k < w:
            a += sim.l_ask[ba + k]
    return (b - a) / (b + a) if b + a > 0.0 else 0.0


@api
def position(sim):
    """The position as the order responses reported it."""
    return sim.floats[c.F_LPOS]


@api
def balance(sim):
    """Cash from fills as reported (before fees)."""
    return sim.floats[c.F_LCASH]


@api
def fee(sim):
    return sim.floats[c.F_LFEES]


@api
def num_trades(sim):
    return int(sim.floats[c.F_LNTRADES])


@api
def equity(sim):
    """Balance + position at the local mid - fees (hftbacktest's equity)."""
    mid = mid_price(sim)
    value = sim.floats[c.F_LPOS] * mid if sim.floats[c.F_LPOS] != 0.0 else 0.0
    return sim.floats[c.F_LCASH] + value - sim.floats[c.F_LFEES]


@api
def last_trade_price(sim):
    """Price of the last trade the feed delivered (NaN before the first)."""
    return sim.floats[c.F_LAST_TRADE]


@api
def buy_volume(sim):
    """Cumulative buyer-initiated trade quantity delivered by the feed."""
    return sim.floats[c.F_BUY_VOL]


@api
def sell_volume(sim):
    return sim.floats[c.F_SELL_VOL]


@api
def order_exists(sim, order_id):
    return c.find_slot_nb(sim, order_id) >= 0


@api
def order_status(sim, order_id):
    """Local status code (:data:`STATUS`) of a live order; -1 when unknown (finished orders are
    forgotten once their last response arrived)."""
    i = c.find_slot_nb(sim, order_id)
    return sim.slots[i].l_status if i >= 0 else -1


@api
def order_leaves_qty(sim, order_id):
    i = c.find_slot_nb(sim, order_id)
    return sim.slots[i].l_leaves if i >= 0 else 0.0


@api
def order_price(sim, order_id):
    i = c.find_slot_nb(sim, order_id)
    return (sim.slots[i].l_tick + sim.ints[c.I_WLO]) * sim.params[c.P_TICK] if i >= 0 else np.nan


@api
def order_side(sim, order_id):
    i = c.find_slot_nb(sim, order_id)
    return sim.slots[i].side if i >= 0 else 0


@api
def order_cancellable(sim, order_id):
    """New or partially filled, with no request in flight (hftbacktest ``Order.cancellable``)."""
    i = c.find_slot_nb(sim, order_id)
    if i < 0:
        return False
    st = sim.slots[i].l_status
    return (st == c.ST_NEW or st == c.ST_PARTIAL) and sim.slots[i].l_req == c.REQ_NONE


@api
def num_orders(sim):
    """Number of order slots to iterate with :func:`order_id_at` (some may be -1: free)."""
    return sim.ints[c.I_NSLOT]


@api
def order_id_at(sim, k):
    """The id of the order in slot ``k`` (-1 when the slot is free)."""
    return sim.slots[k].id if sim.slots[k].in_use else -1


@api
def order_side_at(sim, k):
    """Side (+1 buy, -1 sell) of the order in slot ``k``."""
    return sim.slots[k].side


@api
def order_cancellable_at(sim, k):
    """:func:`order_cancellable` for the order in slot ``k`` (no id lookup)."""
    if not sim.slots[k].in_use:
        return False
    st = sim.slots[k].l_status
    return (st == c.ST_NEW or st == c.ST_PARTIAL) and sim.slots[k].l_req == c.REQ_NONE
