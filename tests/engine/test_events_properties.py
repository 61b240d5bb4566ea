"""Properties of the event engine on generated markets and a random trader (hypothesis):

* the book never crosses after a feed row is applied (local and exchange books);
* the strategy's book is exactly the replay of the rows whose ``local_ts`` has passed (it never sees
  a row early — no decision on data it could not yet see);
* no fill happens before its order reached the exchange (order latency), fills are at exchange
  times of the data or of order arrivals, and the account adds up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from numba import njit

from backforge.data.events import MarketEventKind as K, synthetic_l2
from backforge.engine.events import EventConfig, api, new_sim
from backforge.engine.events import core as c

pytestmark = pytest.mark.slow  # compiles a random trader and replays six generated markets


@njit(cache=True)
def random_trader(sim, seed, step_ns, out_ts, out_bid, out_ask, out_xbid, out_xask):
    """Random limit/market orders and cancels around the local touch; records the books per step."""
    np.random.seed(seed)
    n = 0
    next_id = 1
    while n < out_ts.shape[0]:
        code = api.wait_next_feed(sim, True, step_ns) if np.random.random() < 0.5 else api.elapse(sim, step_ns)
        if code == 1:
            break
        out_ts[n] = api.current_timestamp(sim)
        out_bid[n] = api.best_bid(sim)
        out_ask[n] = api.best_ask(sim)
        bb = sim.ints[c.I_XBB]
        ba = sim.ints[c.I_XBA]
        out_xbid[n] = bb if bb >= 0 else -1
        out_xask[n] = ba if ba < sim.x_ask.shape[0] else -1
        n += 1
        bid = api.best_bid(sim)
        ask = api.best_ask(sim)
        if not (np.isfinite(bid) and np.isfinite(ask)):
            continue
        u = np.random.random()
        tick = api.tick_size(sim)
        qty = api.lot_size(sim) * (1 + int(np.random.random() * 400))
        if u < 0.35:
            price = bid + tick * int(np.random.random() * 5 - 2)
            api.submit_buy_order(sim, next_id, price, qty, (0, 3, 4, 5)[int(np.random.random() * 4)], api.LIMIT)
            next_id += 1
        elif u < 0.7:
            price = ask - tick * int(np.random.random() * 5 - 2)
            api.submit_sell_order(sim, next_id, price, qty, (0, 3, 4, 5)[int(np.random.random() * 4)], api.LIMIT)
            next_id += 1
        elif u < 0.75:
            if np.random.random() < 0.5:
                api.submit_buy_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
            else:
                api.submit_sell_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
            next_id += 1
        else:
            for k in range(api.num_orders(sim)):
                if api.order_cancellable_at(sim, k) and np.random.random() < 0.3:
                    if np.random.random() < 0.5:
                        api.cancel(sim, api.order_id_at(sim, k))
                    else:
                        oid = api.order_id_at(sim, k)
                        api.modify(sim, oid, api.order_price(sim, oid), api.order_leaves_qty(sim, oid))
    return n


def replay_local(data, times):
    """Best bid/ask of the book built from the rows with ``local_ts <= t`` for each t (slow reference)."""
    bids, asks = {}, {}
    out_bid, out_ask = [], []
    i = 0
    n = len(data)
    for t in times:
        while i < n and data.local_ts[i] <= t:
            kind, side, price, qty = int(data.kind[i]), int(data.side[i]), float(data.price[i]), float(data.qty[i])
            if kind == K.CLEAR:
                if side >= 0:
                    bids.clear()
                if side <= 0:
                    asks.clear()
            elif kind in (K.DEPTH, K.SNAPSHOT):
                book = bids if side > 0 else asks
                if qty < data.lot_size * 0.5:
                    book.pop(price, None)
                else:
                    book[price] = qty
            i += 1
        out_bid.append(max(bids) if bids else math.nan)
        out_ask.append(min(asks) if asks else math.nan)
    return np.array(out_bid), np.array(out_ask)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), latency=st.integers(0, 20_000_000), partial=st.booleans(),
       queue=st.sampled_from(["risk_averse", "power_prob", "log_prob2"]), step=st.integers(100_000, 50_000_000),
       jitter=st.integers(0, 5_000_000))
def test_books_latency_and_accounting(seed, latency, partial, queue, step, jitter):
    data = synthetic_l2(n_events=6_000, seed=seed, feed_jitter_ns=jitter, mean_trade_lots=400.0)
    cfg = EventConfig(entry_latency_ns=latency, response_latency_ns=latency // 2 + 1, queue_model=queue,
                      exchange="partial_fill" if partial else "no_partial_fill", maker_fee=-0.0001,
                      taker_fee=0.0005, sample_every="100ms")
    sim = new_sim(data, cfg)
    m = 20_000
    ts, bid, ask, xbid, xask = np.zeros(m, np.int64), np.zeros(m), np.zeros(m), np.zeros(m, np.int64), np.zeros(m, np.int64)
    n = random_trader(sim, seed, step, ts, bid, ask, xbid, xask)
    ts, bid, ask, xbid, xask = ts[:n], bid[:n], ask[:n], xbid[:n], xask[:n]
    # never crossed (local and exchange books)
    both = np.isfinite(bid) & np.isfinite(ask)
    assert (bid[both] < ask[both]).all()
    ex = (xbid >= 0) & (xask >= 0)
    assert (xbid[ex] < xask[ex]).all()
    # the strategy's book is the replay of the rows it could see
    ref_bid, ref_ask = replay_local(data, ts)
    # (prices are rebuilt from ticks: equal to a thousandth of a tick)
    np.testing.assert_allclose(bid, ref_bid, rtol=0, atol=data.tick_size * 1e-3)
    np.testing.assert_allclose(ask, ref_ask, rtol=0, atol=data.tick_size * 1e-3)
    # no fill before its order reached the exchange; fills at event or arrival times
    fills = sim.fills[: sim.ints[c.I_NFILL]]
    orders = sim.orders[: sim.ints[c.I_NORD]]
    created = orders["created_ts"][fills["order_id"]]
    assert (fills["ts"] >= created + latency).all()
    log = sim.events[: sim.ints[c.I_NEVT]]
    replaced = log["ts"][log["kind"] == 6]  # a modify to a new price is a new order on arrival
    arrivals = set((orders["created_ts"] + latency).tolist()) | set(data.exch_ts.tolist()) | set(replaced.tolist())
    assert set(fills["ts"].tolist()) <= arrivals
    # the account adds up: cash = start - sum(price * qty) - fees; position = sum(qty)
    assert sim.floats[c.F_CASH] == pytest.approx(cfg.cash - float((fills["price"] * fills["qty"]).sum())
                                                 - float(fills["fee"].sum()), abs=1e-6)
    assert sim.floats[c.F_POS] == pytest.approx(float(fills["qty"].sum()), abs=1e-9)
