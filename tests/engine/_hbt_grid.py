"""hftbacktest's grid-trading strategy (its tutorial's code, order ids = price ticks) recording every
fill, for the oracle test and the benchmark. The same strategy for backforge is
:func:`backforge.engine.events.strategies.grid_market_maker`."""

from __future__ import annotations

import numpy as np
from numba import njit, uint64
from numba.typed import Dict


def build_hbt(events, *, tick_size, lot_size, entry_ns, response_ns, queue_model, queue_power=3.0,
              partial=False, maker_fee=0.0, taker_fee=0.0, roi=(0.0, 0.0)):
    """An hftbacktest backtest over ``events`` (its ``event_dtype`` array). hftbacktest reads the array's
    memory while it runs and does not own it: the caller must keep ``events`` alive until ``close()``."""
    from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest

    asset = (BacktestAsset().data(events).linear_asset(1.0)
             .constant_order_latency(int(entry_ns), int(response_ns))
             .tick_size(tick_size).lot_size(lot_size).roi_lb(roi[0]).roi_ub(roi[1])
             .trading_value_fee_model(maker_fee, taker_fee))
    if queue_model == "risk_averse":
        asset = asset.risk_adverse_queue_model()
    elif queue_model == "power_prob":
        asset = asset.power_prob_queue_model(queue_power)
    elif queue_model == "log_prob":
        asset = asset.log_prob_queue_model()
    else:
        raise ValueError(queue_model)
    asset = asset.partial_fill_exchange() if partial else asset.no_partial_fill_exchange()
    return ROIVectorMarketDepthBacktest([asset])


@njit
def _requote(hbt, asset_no, tick_size, grid_interval, half_spread, grid_num, order_qty, max_position, submitted):
    """The tutorial's grid: cancel the orders off the new grid, submit the missing ones (GTX limits);
    ``submitted`` counts the orders submitted under each id."""
    depth = hbt.depth(asset_no)
    best_bid = depth.best_bid
    best_ask = depth.best_ask
    if not (np.isfinite(best_bid) and np.isfinite(best_ask)):
        return
    position = hbt.position(asset_no)
    orders = hbt.orders(asset_no)
    mid = (best_bid + best_ask) / 2.0
    bid_price = np.floor((mid - half_spread) / grid_interval) * grid_interval
    ask_price = np.ceil((mid + half_spread) / grid_interval) * grid_interval
    new_bid = Dict.empty(np.uint64, np.float64)
    if position < max_position and np.isfinite(bid_price):
        for _ in range(grid_num):
            new_bid[uint64(round(bid_price / tick_size))] = bid_price
            bid_price -= grid_interval
    new_ask = Dict.empty(np.uint64, np.float64)
    if position > -max_position and np.isfinite(ask_price):
        for _ in range(grid_num):
            new_ask[uint64(round(ask_price / tick_size))] = ask_price
            ask_price += grid_interval
    values = orders.values()
    while values.has_next():
        order = values.get()
        if order.cancellable:
            if (order.side == 1 and order.order_id not in new_bid) or (order.side == -1 and order.order_id not in new_ask):
                hbt.cancel(asset_no, order.order_id, False)
    for order_id, price in new_bid.items():
        if order_id not in orders:
            hbt.submit_buy_order(asset_no, order_id, price, order_qty, 1, 0, False)  # GTX, LIMIT
            submitted[order_id] = submitted.get(order_id, 0) + 1
    for order_id, price in new_ask.items():
        if order_id not in orders:
            hbt.submit_sell_order(asset_no, order_id, price, order_qty, 1, 0, False)
            submitted[order_id] = submitted.get(order_id, 0) + 1


@njit
def hbt_grid(hbt, step_ns, half_spread_ticks, grid_interval_ticks, grid_num, order_qty, max_position, out, out_ts):
    """Returns the number of fills written to ``out`` (rows: side, order_id, side, price, qty; float) and
    ``out_ts`` (exchange timestamps, int64: a float64 cannot hold nanosecond timestamps exactly)."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    submitted = Dict.empty(np.uint64, np.int64)
    n_fills = 0
    while hbt.elapse(step_ns) == 0:
        orders = hbt.orders(asset_no)
        values = orders.values()
        while values.has_next():
            order = values.get()
            if order.status == 3:  # FILLED
                out_ts[n_fills] = order.exch_timestamp
                out[n_fills, 0] = order.side
                out[n_fills, 1] = order.order_id
                out[n_fills, 2] = order.side
                out[n_fills, 3] = order.exec_price
                out[n_fills, 4] = order.exec_qty
                n_fills += 1
        hbt.clear_inactive_orders(asset_no)
        _requote(hbt, asset_no, tick_size, tick_size * grid_interval_ticks, tick_size * half_spread_ticks, grid_num,
                 order_qty, max_position, submitted)
    return n_fills


@njit
def hbt_grid_executions(hbt, step_ns, half_spread_ticks, grid_interval_ticks, grid_num, order_qty, max_position,
                        rows, rows_ts):
    """The same strategy, recording at every step each order that has executed anything so far: rows of
    (order_id, side, price, executed quantity = qty - leaves_qty) in ``rows`` and (the order's number
    among the orders submitted under its id, from 1; exchange time of its last response) in ``rows_ts``;
    returns the number of rows. An order's last row is its total execution — what its partial fills add
    up to, which hftbacktest 2.4's local state does not count (its ``state_values`` apply a response only
    when its status is Filled)."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    submitted = Dict.empty(np.uint64, np.int64)
    n = 0
    while hbt.elapse(step_ns) == 0:
        orders = hbt.orders(asset_no)
        values = orders.values()
        while values.has_next():
            order = values.get()
            executed = order.qty - order.leaves_qty
            if executed > 0.0 and n < rows.shape[0]:
                rows[n, 0] = order.order_id
                rows[n, 1] = order.side
                rows[n, 2] = order.price
                rows[n, 3] = executed
                rows_ts[n, 0] = submitted[order.order_id]
                rows_ts[n, 1] = order.exch_timestamp
                n += 1
        hbt.clear_inactive_orders(asset_no)
        _requote(hbt, asset_no, tick_size, tick_size * grid_interval_ticks, tick_size * half_spread_ticks, grid_num,
                 order_qty, max_position, submitted)
    return n
