"""The bar step's shortcut: a bar on which no working order can act skips ``fill_orders_nb``.

``process_bar_nb`` calls ``fill_orders_nb`` (fills, triggers, expiries, trailing ratchets) only when
``orders_quiet_nb`` says an order may act. The shortcut is exact only if a "quiet" bar is one on which
``fill_orders_nb`` changes nothing at all; these tests pin that, over random books of working orders and
random bars, and by hand at the edges (a level exactly touched, a gap, a trailing stop, a day order).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backforge.engine import kernels as k
from backforge.engine.config import SimConfig
from backforge.engine.simulator import frozen_prices, new_state

DAY = 86_400_000_000_000
T0 = 1_704_067_200_000_000_000
ASSETS = ("X", "Y")


def book(orders, position=(10.0, 0.0), spread=0.0):
    """A state after bar 0 (marked at 100) holding ``position`` with ``orders`` working:
    (asset, side, order type, level, tif, role) each."""
    params = SimConfig(cash=100_000.0, spread=spread).lower(ASSETS, has_quotes=False)
    state = new_state(len(ASSETS), 4, cash=100_000.0, order_capacity=64, record_positions=False)
    for a, pos in enumerate(position):
        state.position[a] = pos
        state.avg_price[a] = 100.0
        state.mark[a] = 100.0
        state.extreme_high[a] = 100.0
        state.extreme_low[a] = 100.0
    for asset, side, order_type, level, tif, role in orders:
        limit = level if order_type in (k.LIMIT, k.STOP_LIMIT) else np.nan
        stop = level if order_type in (k.STOP, k.STOP_LIMIT) else np.nan
        trail = 0.05 if role == k.TRAILING_STOP else np.nan
        k.submit_order_nb(state, 0, T0, asset, side, order_type, k.UNITS, 1.0, limit, stop, np.nan, np.nan, np.nan,
                          np.nan, trail, np.nan, tif, 2, role, -1, -1, 0, 0, k.R_USER)
    state.counters[k.C_BARS] = 1
    state.counters[k.C_LAST_TS] = T0
    return state, params


def bar(rows):
    """One bar's Prices from per-asset (open, high, low, close) rows (NaN: no bar for that asset)."""
    arr = np.array(rows, dtype=float)
    o, h, low, c = (np.ascontiguousarray(arr[:, i]) for i in range(4))
    return frozen_prices(o, h, low, c, o, h, low, c, o, h, low, c)


def snapshot(state) -> list[bytes]:
    """Every array of the state as bytes (records included), to compare before and after."""
    out = []
    for value in state:
        arrays = value if isinstance(value, tuple) else (value,)
        out += [np.ascontiguousarray(a).tobytes() for a in arrays]
    return out


def quiet_and_unchanged(state, params, prices) -> tuple[bool, bool]:
    """(orders_quiet_nb, fill_orders_nb left every array as it was)."""
    quiet = bool(k.orders_quiet_nb(state, params, prices))
    before = snapshot(state)
    k.fill_orders_nb(state, params, 1, T0 + DAY, prices)
    return quiet, snapshot(state) == before


ORDER = st.tuples(
    st.sampled_from([0, 1]),  # asset
    st.sampled_from([1, -1]),  # side
    st.sampled_from([k.MARKET, k.LIMIT, k.STOP, k.STOP_LIMIT]),
    st.floats(90.0, 110.0).map(lambda x: round(x * 4) / 4),  # on a quarter grid: exact touches happen
    st.sampled_from([k.GTC, k.GTC, k.DAY, k.GTN]),
    st.sampled_from([k.ENTRY, k.ENTRY, k.STOP_LOSS, k.TAKE_PROFIT, k.TRAILING_STOP]),
)
PRICE = st.floats(90.0, 110.0).map(lambda x: round(x * 4) / 4)


@st.composite
def bars(draw):
    rows = []
    for _ in ASSETS:
        if draw(st.integers(0, 9)) == 0:
            rows.append((np.nan, np.nan, np.nan, np.nan))
            continue
        o, c = draw(PRICE), draw(PRICE)
        h = max(o, c) + draw(st.sampled_from([0.0, 0.25, 1.0, 5.0]))
        low = min(o, c) - draw(st.sampled_from([0.0, 0.25, 1.0, 5.0]))
        rows.append((o, h, low, c))
    return rows


@settings(max_examples=300, deadline=None)
@given(st.lists(ORDER, min_size=1, max_size=5), bars(), st.sampled_from([0.0, 0.5]))
def test_a_quiet_bar_is_one_on_which_fill_orders_changes_nothing(orders, rows, spread):
    state, params = book(orders, spread=spread)
    quiet, unchanged = quiet_and_unchanged(state, params, bar(rows))
    assert unchanged or not quiet


def test_a_resting_stop_the_bar_does_not_reach_is_quiet_and_touching_it_is_not():
    stop_loss = (0, -1, k.STOP, 95.0, k.GTC, k.STOP_LOSS)
    for rows, quiet in (([(100, 101, 95.25, 100), (100, 100, 100, 100)], True),
                        ([(100, 101, 95.0, 100), (100, 100, 100, 100)], False),  # touched exactly
                        ([(94, 99, 93, 98), (100, 100, 100, 100)], False),  # gaps through at the open
                        ([(np.nan,) * 4, (100, 100, 100, 100)], True)):  # no bar for the asset
        state, params = book([stop_loss])
        got, unchanged = quiet_and_unchanged(state, params, bar(rows))
        assert got == quiet
        assert unchanged == quiet  # here every bar the stop is reached on fills it
    # a half spread moves the side's prices: a sell stop at 95 is reached by a 95.25 low less 0.25
    state, params = book([stop_loss], spread=0.5)
    assert not k.orders_quiet_nb(state, params, bar([(100, 101, 95.25, 100), (100, 100, 100, 100)]))


def test_orders_that_act_without_a_touch_are_never_quiet():
    calm = bar([(100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100)])
    for order in ((0, 1, k.MARKET, 100.0, k.GTC, k.ENTRY),  # fills at the open
                  (0, -1, k.STOP, 80.0, k.GTC, k.TRAILING_STOP),  # its level ratchets with the high
                  (0, -1, k.STOP, 80.0, k.DAY, k.STOP_LOSS),  # a day order records its expiry day
                  (0, 1, k.LIMIT, 80.0, k.GTN, k.ENTRY)):  # may expire
        state, params = book([order])
        assert not k.orders_quiet_nb(state, params, calm)
    state, params = book([(0, 1, k.LIMIT, 80.0, k.GTC, k.ENTRY)])
    k.cancel_order_nb(state, 0, 0, T0, k.R_USER)  # finished but still listed until the next compaction
    assert not k.orders_quiet_nb(state, params, calm)
