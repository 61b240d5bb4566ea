"""Oracle: hftbacktest and backforge on the same synthetic L2 stream, with the same latency, queue,
exchange and fee models and the same grid market maker, give the same fills.

hftbacktest runs its tutorial's grid-trading code (``_hbt_grid.hbt_grid``); backforge runs its twin
``strategies.grid_market_maker``. Compared: every fill's exchange timestamp, order id (the price tick),
side, price and quantity, and the final position, balance, fees and trade count. With the partial-fill
exchange: every order's total execution (what its partial fills add up to) and the position they make —
hftbacktest 2.4's own position, balance and trade count leave partial executions out (its local processor
applies a response to its state only when the order is Filled; see docs/events.md), so they are not
compared there.
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

from _hbt_grid import build_hbt, hbt_grid, hbt_grid_executions  # noqa: E402

from backforge.data.events import synthetic_l2  # noqa: E402
from backforge.engine.events import EventConfig, new_sim  # noqa: E402
from backforge.engine.events import api  # noqa: E402
from backforge.engine.events import core as c  # noqa: E402
from backforge.engine.events.strategies import grid_market_maker  # noqa: E402

pytestmark = pytest.mark.slow

GRID = (100_000_000, 2, 1, 10, 0.1, 1.0)
UNCAPPED = GRID[:5] + (1e9,)
MAKER, TAKER = -0.00005, 0.0007


def fills_of(sim):
    f = sim.fills[: sim.ints[c.I_NFILL]]
    ids = sim.orders["tag"][f["order_id"]]
    return sorted(zip(f["ts"].tolist(), ids.tolist(), np.sign(f["qty"]).astype(int).tolist(),
                      np.round(f["price"], 6).tolist(), np.round(np.abs(f["qty"]), 9).tolist()))


@pytest.mark.parametrize("queue_model, latency_ns, seed", [
    ("risk_averse", 5_000_000, 11),
    ("power_prob", 5_000_000, 12),
    ("log_prob", 2_000_000, 13),
])
def test_grid_market_maker_matches_hftbacktest(queue_model, latency_ns, seed):
    data = synthetic_l2(n_events=150_000, seed=seed)
    cfg = EventConfig(entry_latency_ns=latency_ns, response_latency_ns=latency_ns, queue_model=queue_model,
                      queue_power=3.0, maker_fee=MAKER, taker_fee=TAKER)
    sim = new_sim(data, cfg)
    grid_market_maker(sim, *GRID)
    ours = fills_of(sim)

    lo, hi = data.price_range()
    events = data.to_hftbacktest()  # hftbacktest reads this memory during the run: keep it alive
    hbt = build_hbt(events, tick_size=data.tick_size, lot_size=data.lot_size, entry_ns=latency_ns,
                    response_ns=latency_ns, queue_model=queue_model, queue_power=3.0, maker_fee=MAKER,
                    taker_fee=TAKER, roi=(lo - 100 * data.tick_size, hi + 100 * data.tick_size))
    out, out_ts = np.zeros((50_000, 5)), np.zeros(50_000, dtype=np.int64)
    n = hbt_grid(hbt, *GRID, out, out_ts)
    state = hbt.state_values(0)
    position, balance, fee, trades = state.position, state.balance, state.fee, state.num_trades
    hbt.close()
    del events
    theirs = sorted(zip(out_ts[:n].tolist(), out[:n, 1].astype(np.int64).tolist(),
                        out[:n, 2].astype(int).tolist(), np.round(out[:n, 3], 6).tolist(),
                        np.round(out[:n, 4], 9).tolist()))
    assert len(ours) > 50  # the scenario trades
    assert ours == theirs
    assert api.position(sim) == pytest.approx(position, abs=1e-9)
    assert api.balance(sim) == pytest.approx(balance, rel=1e-12)
    assert api.fee(sim) == pytest.approx(fee, rel=1e-9)
    assert api.num_trades(sim) == trades


def _executions_of(sim) -> dict:
    """Each order's total execution: (price tick id, side, its number among the orders of that id) ->
    (price, quantity)."""
    orders = sim.orders[: sim.ints[c.I_NORD]]
    count: dict[int, int] = {}
    out = {}
    for o in orders:  # in submission order
        tag = int(o["tag"])
        count[tag] = count.get(tag, 0) + 1
        if o["filled_qty"] != 0:  # signed: negative for sells
            out[(tag, int(o["side"]), count[tag])] = (round(float(o["limit_price"]), 6),
                                                      round(abs(float(o["filled_qty"])), 9))
    return out


@pytest.mark.parametrize("queue_model, latency_ns, seed", [
    ("risk_averse", 5_000_000, 11),
    ("power_prob", 5_000_000, 12),
    ("log_prob", 2_000_000, 13),
])
def test_partial_fills_match_hftbacktest(queue_model, latency_ns, seed):
    """The grid without its position cap (hftbacktest's own position misses partial executions, so a cap
    would steer its strategy differently): the same orders, each executed by the same total."""
    data = synthetic_l2(n_events=150_000, seed=seed)
    cfg = EventConfig(entry_latency_ns=latency_ns, response_latency_ns=latency_ns, queue_model=queue_model,
                      queue_power=3.0, maker_fee=MAKER, taker_fee=TAKER, exchange="partial_fill")
    sim = new_sim(data, cfg)
    grid_market_maker(sim, *UNCAPPED)
    ours = _executions_of(sim)

    lo, hi = data.price_range()
    events = data.to_hftbacktest()  # hftbacktest reads this memory during the run: keep it alive
    hbt = build_hbt(events, tick_size=data.tick_size, lot_size=data.lot_size, entry_ns=latency_ns,
                    response_ns=latency_ns, queue_model=queue_model, queue_power=3.0, partial=True,
                    maker_fee=MAKER, taker_fee=TAKER, roi=(lo - 100 * data.tick_size, hi + 100 * data.tick_size))
    rows, rows_ts = np.zeros((400_000, 4)), np.zeros((400_000, 2), dtype=np.int64)
    n = hbt_grid_executions(hbt, *UNCAPPED, rows, rows_ts)
    hbt.close()
    del events
    assert n < rows.shape[0]
    theirs = {}
    for (order_id, side, price, executed), (number, _) in zip(rows[:n].tolist(), rows_ts[:n].tolist()):
        theirs[(int(order_id), int(side), int(number))] = (round(price, 6), round(executed, 9))  # the last row wins
    partial = sum(1 for i in range(sim.ints[c.I_NFILL]) if abs(sim.fills[i]["qty"]) < GRID[4] - 1e-12)
    assert len(ours) > 30 and partial > 10, (len(ours), partial)  # the scenario trades, partly in pieces
    assert ours == theirs
    position = sum(side * qty for (_, side, _), (_, qty) in theirs.items())
    assert api.position(sim) == pytest.approx(position, abs=1e-9)


def test_interpolated_order_latency_matches_hftbacktest():
    """hftbacktest's intp_order_latency and backforge's order_latency table, on the same recorded
    (req_ts, exch_ts, resp_ts) rows (every 250 ms, 1-9 ms each way): the same fills, position and balance."""
    from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest

    data = synthetic_l2(n_events=150_000, seed=11)
    t0, t1 = int(data.local_ts[0]), int(data.local_ts[-1])
    rng = np.random.default_rng(3)
    req = np.arange(t0 - 10**9, t1 + 2 * 10**9, 250_000_000, dtype=np.int64)
    table = np.zeros(len(req), dtype=[("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")])
    table["req_ts"] = req
    table["exch_ts"] = req + rng.integers(1_000_000, 9_000_000, len(req))
    table["resp_ts"] = table["exch_ts"] + rng.integers(1_000_000, 9_000_000, len(req))
    sim = new_sim(data, EventConfig(queue_model="risk_averse", maker_fee=MAKER, taker_fee=TAKER),
                  order_latency=table[["req_ts", "exch_ts", "resp_ts"]])
    grid_market_maker(sim, *GRID)
    ours = fills_of(sim)

    lo, hi = data.price_range()
    events = data.to_hftbacktest()  # hftbacktest reads this memory during the run: keep it alive
    asset = (BacktestAsset().data(events).linear_asset(1.0).intp_order_latency(table)
             .tick_size(data.tick_size).lot_size(data.lot_size).roi_lb(lo - 100 * data.tick_size)
             .roi_ub(hi + 100 * data.tick_size).trading_value_fee_model(MAKER, TAKER)
             .risk_adverse_queue_model().no_partial_fill_exchange())
    hbt = ROIVectorMarketDepthBacktest([asset])
    out, out_ts = np.zeros((50_000, 5)), np.zeros(50_000, dtype=np.int64)
    n = hbt_grid(hbt, *GRID, out, out_ts)
    state = hbt.state_values(0)
    position, balance, trades = state.position, state.balance, state.num_trades  # read before close()
    hbt.close()
    del events
    theirs = sorted(zip(out_ts[:n].tolist(), out[:n, 1].astype(np.int64).tolist(),
                        out[:n, 2].astype(int).tolist(), np.round(out[:n, 3], 6).tolist(),
                        np.round(out[:n, 4], 9).tolist()))
    assert len(ours) > 50 and ours == theirs
    assert api.position(sim) == pytest.approx(position, abs=1e-9)
    assert api.balance(sim) == pytest.approx(balance, rel=1e-12)
    assert api.num_trades(sim) == trades
