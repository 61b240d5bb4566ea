"""Oracle: hftbacktest and backforge on the same synthetic L2 stream, with the same latency, queue,
exchange and fee models and the same grid market maker, give the same fills.

hftbacktest runs its tutorial's grid-trading code (``_hbt_grid.hbt_grid``); backforge runs its twin
``strategies.grid_market_maker``. Compared: every fill's exchange timestamp, order id (the price tick),
side, price and quantity, and the final position, balance, fees and trade count.
"""

from __future__ import annotations

import numpy as np
import pytest

hftbacktest = pytest.importorskip("hftbacktest")

from _hbt_grid import build_hbt, hbt_grid  # noqa: E402

from backforge.data.events import synthetic_l2  # noqa: E402
from backforge.engine.events import EventConfig, new_sim  # noqa: E402
from backforge.engine.events import api  # noqa: E402
from backforge.engine.events import core as c  # noqa: E402
from backforge.engine.events.strategies import grid_market_maker  # noqa: E402

pytestmark = pytest.mark.slow

GRID = (100_000_000, 2, 1, 10, 0.1, 1.0)
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
