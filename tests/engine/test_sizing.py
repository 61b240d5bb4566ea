"""Shrinking an unaffordable order: the quantity is solved for, not searched one lot at a time.

The engine's affordability rule is ``fits_margin_nb``: after the fill and its commission, gross exposure
must not exceed ``(equity - fee) × leverage`` (with the engine's 1e-9 tolerance). An order asking for
more is reduced to the largest lot multiple that fits, searched from below the first estimate
``affordable_qty_nb`` (room / cost of a unit with its proportional fee, rounded down to the lot). These
tests state both in plain Python (:func:`fits`, :func:`estimate_lots`) and check the engine against them
on random accounts, costs and lot sizes — including reversals, where the commission on the closing part
(and a minimum fee) is what makes the first estimate too large.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import backforge as bf

# see tests/engine/test_properties.py: keeps a hypothesis failure report readable under "warnings are errors"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

EPS = 1e-9
MINUTE = 60_000_000_000


def fee(qty: float, price: float, fee_rate: float, fee_per_order: float, fee_min: float) -> float:
    """The engine's commission of one fill (``fee_nb``)."""
    return max(fee_rate * qty * price + fee_per_order, fee_min) if qty > 0 else 0.0


def fits(cash: float, position: float, opening: float, price: float, *, fee_rate: float, fee_per_order: float,
         fee_min: float, leverage: float) -> bool:
    """True when a fill that closes ``|position|`` (an opposite position, or none) and opens ``opening``
    units at ``price`` respects the leverage limit (``fits_margin_nb`` for one asset)."""
    fill_fee = fee(abs(position) + opening, price, fee_rate, fee_per_order, fee_min)
    equity = cash + position * price - fill_fee
    return opening * price <= equity * leverage * (1.0 + EPS) + EPS


def estimate_lots(cash: float, position: float, price: float, lot: float, *, fee_rate: float, fee_per_order: float,
                  fee_min: float, leverage: float) -> float:
    """``affordable_qty_nb`` for a flat or reversing account, in whole lots (``round_lot_nb``)."""
    room = (cash + position * price) * leverage - leverage * fee_per_order
    unit_cost = price * (1.0 + leverage * fee_rate)
    return float(np.floor(room / unit_cost / lot + EPS)) if room > 0 else 0.0


def test_huge_account_with_fees_is_sized_in_milliseconds() -> None:
    # issue 10 item 13: reversals of a 1e13 account with a 5 bps fee stepped down one share at a time
    # (24 s on these 63 bars); the closed form takes a few steps per fill
    data = bf.synth(n_assets=1, years=0.25, seed=3)
    assert data.n_bars == 63
    close = data.close[:, 0]
    fast = np.convolve(close, np.ones(3) / 3)[: len(close)]
    up, down = fast > close, fast < close
    bf.from_signals(data, up, down, down, up, fee_rate=0.0005, cash=1e4)  # compiled
    started = time.perf_counter()
    result = bf.from_signals(data, up, down, down, up, fee_rate=0.0005, cash=1e13)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    fills = result.fills
    assert fills.height > 10
    # every fill kept the account within its means, and whole shares
    assert np.all(np.abs(fills["qty"].to_numpy()) == np.floor(np.abs(fills["qty"].to_numpy())))
    assert np.all(result.equity_values > 0)


@settings(max_examples=60, deadline=None)
@given(
    cash=st.floats(1e2, 1e13),
    prices=st.tuples(st.floats(1.0, 1000.0), st.floats(1.0, 1000.0), st.floats(1.0, 1000.0)),
    fee_rate=st.sampled_from([0.0, 0.0005, 0.003, 0.02]),
    fee_per_order=st.sampled_from([0.0, 1.0, 25.0]),
    fee_min=st.sampled_from([0.0, 5.0, 500.0]),
    lot=st.sampled_from([1.0, 10.0, 100.0, 0.5, 0.25]),
    leverage=st.sampled_from([1.0, 2.0, 4.0]),
    first_fraction=st.sampled_from([0.0, 0.3, 0.9]),
)
def test_a_reduced_order_gets_the_largest_affordable_lot_multiple(cash, prices, fee_rate, fee_per_order, fee_min,
                                                                  lot, leverage, first_fraction) -> None:
    costs = dict(fee_rate=fee_rate, fee_per_order=fee_per_order, fee_min=fee_min, leverage=leverage)
    sim = bf.Simulator(["X"], cash=cash, lot_size=lot, **costs)
    p0, p1, p2 = prices

    def bar(i: int, price: float) -> None:
        sim.on_bar(i * MINUTE, open=[price], high=[price], low=[price], close=[price])

    bar(0, p0)
    if first_fraction > 0:
        sim.submit("X", "buy", np.floor(first_fraction * cash / p0 / lot) * lot)
    bar(1, p1)
    position, cash_before = sim.position("X"), sim.cash
    # far more than the account can carry: a reversal when a long position is open
    sim.submit("X", "sell", position + 1e6 * cash / p2)
    bar(2, p2)
    fills = sim.result().fills.filter(pl.col("bar") == 2)
    cap = estimate_lots(cash_before, position, p2, lot, **costs)
    if fills.height:
        qty = -float(fills["qty"][0])
        opening = qty - position
        lots = round(opening / lot)
        assert abs(opening / lot - lots) < 1e-6 * max(1.0, lots), (opening, lot)
        if opening > 0:
            assert lots <= cap
            assert fits(cash_before, position, opening, p2, **costs)
        # the next lot up is not affordable (or above the estimate the search starts from)
        assert lots + 1 > cap or not fits(cash_before, position, (lots + 1) * lot, p2, **costs)
    else:
        # rejected: not even one lot (beyond closing the position) fits
        assert cap < 1 or not fits(cash_before, position, lot, p2, **costs)

