"""Reference strategies for the event engine, compiled (``@njit(cache=True)``), written with the
strategy API (:mod:`backforge.engine.events.api`) exactly as a user would write them.

* :func:`grid_market_maker` — hftbacktest's grid-trading tutorial strategy (the oracle test runs the
  same code on hftbacktest);
* :func:`quote_breakout` — a channel breakout on the local mid, trading with market orders: the
  USDJPY tick example and the quote benchmark.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backforge.engine.events import api

__all__ = ["grid_market_maker", "quote_breakout"]


@njit(cache=True)
def grid_market_maker(sim, step_ns, half_spread_ticks, grid_interval_ticks, grid_num, order_qty, max_position):
    """Every ``step_ns``: quote ``grid_num`` post-only (GTX) bids below ``mid - half_spread`` and asks above
    ``mid + half_spread`` on a grid of ``grid_interval_ticks``, cancel orders off the grid, stop adding to
    a side once ``|position| >= max_position``. Order ids are the price ticks. Returns the number of steps.

    Same arithmetic as hftbacktest's grid-trading example (``examples/Grid Trading.ipynb``).
    """
    tick = api.tick_size(sim)
    grid_interval = tick * grid_interval_ticks
    half_spread = tick * half_spread_ticks
    steps = 0
    bid_ids = np.zeros(grid_num, dtype=np.int64)
    bid_prices = np.zeros(grid_num)
    ask_ids = np.zeros(grid_num, dtype=np.int64)
    ask_prices = np.zeros(grid_num)
    while api.elapse(sim, step_ns) == 0:
        steps += 1
        best_bid = api.best_bid(sim)
        best_ask = api.best_ask(sim)
        if not (np.isfinite(best_bid) and np.isfinite(best_ask)):
            continue
        position = api.position(sim)
        mid = (best_bid + best_ask) / 2.0
        bid_price = np.floor((mid - half_spread) / grid_interval) * grid_interval
        ask_price = np.ceil((mid + half_spread) / grid_interval) * grid_interval
        n_bid = 0
        if position < max_position and np.isfinite(bid_price):
            for _ in range(grid_num):
                bid_ids[n_bid] = int(np.round(bid_price / tick))
                bid_prices[n_bid] = bid_price
                n_bid += 1
                bid_price -= grid_interval
        n_ask = 0
        if position > -max_position and np.isfinite(ask_price):
            for _ in range(grid_num):
                ask_ids[n_ask] = int(np.round(ask_price / tick))
                ask_prices[n_ask] = ask_price
                n_ask += 1
                ask_price += grid_interval
        for k in range(api.num_orders(sim)):
            if not api.order_cancellable_at(sim, k):
                continue
            oid = api.order_id_at(sim, k)
            keep = False
            if api.order_side_at(sim, k) > 0:
                for j in range(n_bid):
                    if bid_ids[j] == oid:
                        keep = True
            else:
                for j in range(n_ask):
                    if ask_ids[j] == oid:
                        keep = True
            if not keep:
                api.cancel(sim, oid)
        for j in range(n_bid):
            if not api.order_exists(sim, bid_ids[j]):
                api.submit_buy_order(sim, bid_ids[j], bid_prices[j], order_qty, api.GTX, api.LIMIT)
        for j in range(n_ask):
            if not api.order_exists(sim, ask_ids[j]):
                api.submit_sell_order(sim, ask_ids[j], ask_prices[j], order_qty, api.GTX, api.LIMIT)
    return steps


@njit(cache=True)
def quote_breakout(sim, lookback, order_qty, every_event, step_ns):
    """Channel breakout on the local mid: long ``order_qty`` when the mid exceeds the highest of the
    previous ``lookback`` observations, short when it falls below the lowest; market orders, one order
    in flight at a time. Observations are every feed row (``every_event``) or every ``step_ns``.
    Returns the number of observations.
    """
    # running max/min of the last `lookback` observations: monotonic deques of observation numbers in
    # ring buffers (each observation enters and leaves each deque once: O(1) amortized per row)
    cap = lookback + 1
    values = np.empty(cap)
    hi_q = np.empty(cap, dtype=np.int64)
    lo_q = np.empty(cap, dtype=np.int64)
    hi_head = hi_tail = lo_head = lo_tail = 0  # deque = q[head % cap .. tail % cap)
    n = 0
    next_id = 1
    target = 0.0
    while True:
        if every_event:
            code = api.wait_next_feed(sim, False, 3_600_000_000_000)
        else:
            code = api.elapse(sim, step_ns)
        if code == 1:
            break
        mid = api.mid_price(sim)
        if not np.isfinite(mid):
            continue
        while hi_head < hi_tail and hi_q[hi_head % cap] < n - lookback:
            hi_head += 1
        while lo_head < lo_tail and lo_q[lo_head % cap] < n - lookback:
            lo_head += 1
        if n >= lookback:
            if mid > values[hi_q[hi_head % cap] % cap]:
                target = order_qty
            elif mid < values[lo_q[lo_head % cap] % cap]:
                target = -order_qty
        values[n % cap] = mid
        while hi_head < hi_tail and values[hi_q[(hi_tail - 1) % cap] % cap] <= mid:
            hi_tail -= 1
        hi_q[hi_tail % cap] = n
        hi_tail += 1
        while lo_head < lo_tail and values[lo_q[(lo_tail - 1) % cap] % cap] >= mid:
            lo_tail -= 1
        lo_q[lo_tail % cap] = n
        lo_tail += 1
        n += 1
        gap = target - api.position(sim)
        if abs(gap) > 1e-12 and not api.order_exists(sim, next_id - 1):
            if gap > 0:
                api.submit_buy_order(sim, next_id, 0.0, gap, api.IOC, api.MARKET)
            else:
                api.submit_sell_order(sim, next_id, 0.0, -gap, api.IOC, api.MARKET)
            next_id += 1
    return n
