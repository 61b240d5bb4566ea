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
def hbt_grid(hbt, step_ns, half_spread_ticks, grid_interval_ticks, grid_num, order_qty, max_position, out, out_ts):
    """Returns the number of fills written to ``out`` (rows: side, order_id, side, price, qty; float) and
    ``out_ts`` (exchange timestamps, int64: a float64 cannot hold nanosecond timestamps exactly)."""
    asset_no = 0
    tick_size = hbt.depth(asset_no).tick_size
    grid_interval = tick_size * grid_interval_ticks
    half_spread = tick_size * half_spread_ticks
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
        depth = hbt.depth(asset_no)
        best_bid = depth.best_bid
        best_ask = depth.best_ask
        if not (np.isfinite(best_bid) and np.isfinite(best_ask)):
            continue
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
        for order_id, price in new_ask.items():
            if order_id not in orders:
                hbt.submit_sell_order(asset_no, order_id, price, order_qty, 1, 0, False)
    return n_fills
