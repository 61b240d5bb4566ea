"""The reference strategies of the event engine against slow, obvious versions of themselves."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from backforge.data.events import synthetic_quotes
from backforge.engine.events import EventConfig, api, new_sim
from backforge.engine.events import core as c
from backforge.engine.events.strategies import quote_breakout


@njit
def quote_breakout_rescan(sim, lookback, order_qty, every_event, step_ns):
    """The breakout as first written: rescan the whole window on every observation (O(lookback))."""
    window = np.empty(lookback)
    n = 0
    next_id = 1
    target = 0.0
    while True:
        code = api.wait_next_feed(sim, False, 3_600_000_000_000) if every_event else api.elapse(sim, step_ns)
        if code == 1:
            break
        mid = api.mid_price(sim)
        if not np.isfinite(mid):
            continue
        if n >= lookback:
            hi = window.max()
            lo = window.min()
            if mid > hi:
                target = order_qty
            elif mid < lo:
                target = -order_qty
        window[n % lookback] = mid
        n += 1
        gap = target - api.position(sim)
        if abs(gap) > 1e-12 and not api.order_exists(sim, next_id - 1):
            if gap > 0:
                api.submit_buy_order(sim, next_id, 0.0, gap, api.IOC, api.MARKET)
            else:
                api.submit_sell_order(sim, next_id, 0.0, -gap, api.IOC, api.MARKET)
            next_id += 1
    return n


def _fills(sim):
    f = sim.fills[: sim.ints[c.I_NFILL]]
    return list(zip(f["ts"].tolist(), f["price"].tolist(), f["qty"].tolist()))


@pytest.mark.parametrize("lookback, every_event, step_ns", [(1, True, 0), (7, True, 0), (50, True, 0),
                                                            (20, False, 250_000_000)])
def test_quote_breakout_running_extremes_match_a_rescan(lookback, every_event, step_ns):
    data = synthetic_quotes(n_ticks=20_000, seed=11, mean_gap_ns=100_000_000)
    cfg = EventConfig(entry_latency_ns=1_000_000, response_latency_ns=1_000_000, sample_every="1min")
    fast, slow = new_sim(data, cfg), new_sim(data, cfg)
    n_fast = quote_breakout(fast, lookback, 1_000.0, every_event, step_ns)
    n_slow = quote_breakout_rescan(slow, lookback, 1_000.0, every_event, step_ns)
    assert n_fast == n_slow > 0
    assert len(_fills(fast)) > 20
    assert _fills(fast) == _fills(slow)
