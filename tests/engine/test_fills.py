"""Hand-computed cases for every order type, fill rule, cost, sizing mode, short, reversal and margin call.

Each test builds a few bars by hand; the expected numbers are worked out in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

import backforge as bf

DAY = 86_400_000_000_000
HOUR = 3_600_000_000_000
T0 = 1_704_067_200_000_000_000  # 2024-01-01 00:00 UTC


def bars(rows, *, step=DAY, asset="X", quotes=None) -> bf.MarketData:
    """One-asset data from (open, high, low, close) rows, one bar per ``step``."""
    arr = np.array(rows, dtype=float)
    ts = T0 + 21 * HOUR + np.arange(len(arr), dtype=np.int64) * step
    kwargs = {}
    if quotes is not None:
        bid = np.array(quotes[0], dtype=float)
        ask = np.array(quotes[1], dtype=float)
        kwargs["bid"] = {f: bid[:, i : i + 1] for i, f in enumerate(("open", "high", "low", "close"))}
        kwargs["ask"] = {f: ask[:, i : i + 1] for i, f in enumerate(("open", "high", "low", "close"))}
    return bf.MarketData.from_arrays(ts, open=arr[:, :1], high=arr[:, 1:2], low=arr[:, 2:3], close=arr[:, 3:4],
                                     assets=[asset], **kwargs)


BASE = [(10, 11, 9, 10.5), (11, 12, 10, 11.5), (12, 13, 11, 12)]


def run(data, *orders, **options):
    """Run an order program given as (method, kwargs) pairs; returns (result, refs)."""
    program = bf.OrderProgram()
    refs = []
    for method, kwargs in orders:
        refs.append(getattr(program, method)(**kwargs))
    options.setdefault("cash", 1000.0)
    return bf.simulate(data, program, **options), refs


def buy(bar=0, size=10.0, **kw):
    return ("submit", dict(bar=bar, asset=0, side="buy", size=size, **kw))


def sell(bar=0, size=10.0, **kw):
    return ("submit", dict(bar=bar, asset=0, side="sell", size=size, **kw))


def fills(result):
    return [(row["bar"], row["qty"], pytest.approx(row["price"])) for row in result.fills.iter_rows(named=True)]


# ----------------------------------------------------------------------------------- order types

def test_market_order_fills_at_next_open_and_accounts_cash():
    result, _ = run(bars(BASE), buy())
    assert fills(result) == [(1, 10.0, 11.0)]
    eq = result.equity
    assert eq["cash"].to_list() == [1000.0, 890.0, 890.0]
    # equity = cash + 10 × close
    assert eq["equity"].to_list() == pytest.approx([1000.0, 1005.0, 1010.0])


def test_decision_on_last_bar_never_fills():
    result, _ = run(bars(BASE), buy(bar=2))
    assert result.fills.height == 0
    assert result.orders["status"].to_list() == ["pending"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(10.5, [(1, 10.0, 10.5)]),  # low 10 <= 10.5 < open 11: fills at the limit
     (11.5, [(1, 10.0, 11.0)]),  # open 11 already below the limit: fills at the better open
     (9.5, [])],                 # never reached
)
def test_limit_buy(limit, expected):
    result, _ = run(bars(BASE), buy(order_type="limit", limit_price=limit))
    assert fills(result) == expected


def test_limit_sell_fills_at_limit_when_high_reaches_it():
    result, _ = run(bars(BASE), buy(), sell(bar=1, order_type="limit", limit_price=12.5))
    assert fills(result) == [(1, 10.0, 11.0), (2, -10.0, 12.5)]


def test_limit_sell_gap_fills_at_open():
    result, _ = run(bars(BASE), buy(), sell(bar=1, order_type="limit", limit_price=11.8))
    assert fills(result)[1] == (2, -10.0, 12.0)  # bar 2 opens at 12 >= 11.8


@pytest.mark.parametrize(("stop", "expected"), [(11.8, 11.8), (10.8, 11.0)])
def test_stop_buy_fills_at_stop_or_gap_open(stop, expected):
    result, _ = run(bars(BASE), buy(order_type="stop", stop_price=stop))
    assert fills(result) == [(1, 10.0, expected)]
    assert "triggered" in result.order_log["event"].to_list()


def test_stop_sell_gap_down_fills_at_open():
    data = bars([(10, 10, 10, 10), (10, 10.5, 9.5, 10), (8, 8.5, 7.5, 8)])
    result, _ = run(data, buy(), sell(bar=1, order_type="stop", stop_price=9.0))
    assert fills(result) == [(1, 10.0, 10.0), (2, -10.0, 8.0)]  # gapped through 9 → the open, 8


def test_stop_limit_triggers_and_fills_at_stop_within_limit():
    result, _ = run(bars(BASE), buy(order_type="stop_limit", stop_price=11.5, limit_price=11.7))
    assert fills(result) == [(1, 10.0, 11.5)]


def test_stop_limit_with_limit_below_stop_waits_for_the_next_bar():
    # bar 1 reaches the stop 11.5 (high 12) but the path back to 11.2 inside the bar is unknown:
    # the order becomes a working limit and fills on bar 2 where low 11 <= 11.2 < open 12
    result, _ = run(bars(BASE), buy(order_type="stop_limit", stop_price=11.5, limit_price=11.2))
    assert fills(result) == [(2, 10.0, 11.2)]
    events = result.order_log["event"].to_list()
    assert events == ["submitted", "triggered", "filled"]


def test_stop_limit_gap_fills_at_open_when_within_limit():
    result, _ = run(bars(BASE), buy(order_type="stop_limit", stop_price=10.5, limit_price=11.2))
    assert fills(result) == [(1, 10.0, 11.0)]


def test_invalid_limit_price_is_rejected_with_reason():
    result, _ = run(bars(BASE), buy(order_type="limit", limit_price=-1.0))
    assert result.orders["status"].to_list() == ["rejected"]
    assert result.orders["reason"].to_list() == ["invalid_price"]


# ------------------------------------------------------------------------------------- brackets

def test_bracket_both_touched_in_one_bar_takes_the_stop():
    # entry at bar 1's open 11: stop 10, target 12; bar 1's range 10..12 touches both → the stop
    result, _ = run(bars(BASE), buy(stop_loss_abs=1.0, take_profit_abs=1.0))
    assert fills(result) == [(1, 10.0, 11.0), (1, -10.0, 10.0)]
    trade = result.trades.row(0, named=True)
    assert trade["exit_reason"] == "stop_loss" and trade["pnl"] == pytest.approx(-10.0)
    statuses = dict(zip(result.orders["role"], result.orders["status"]))
    assert statuses == {"entry": "filled", "stop_loss": "filled", "take_profit": "cancelled"}


def test_bracket_gap_through_take_profit_fills_target_at_open():
    data = bars([(10, 10.5, 9.5, 10), (10, 10.4, 9.8, 10.2), (11.5, 11.6, 8.5, 9)])
    result, _ = run(data, buy(stop_loss_abs=1.0, take_profit_abs=1.0))
    # stop 9, target 11: bar 2 opens at 11.5 above the target — the open comes first, so the target fills
    assert fills(result) == [(1, 10.0, 10.0), (2, -10.0, 11.5)]
    assert result.trades["exit_reason"].to_list() == ["take_profit"]


def test_bracket_born_intrabar_can_stop_but_not_take_profit_in_that_bar():
    # limit entry at 10.5 inside bar 1 (11, 12, 10, 11.5): target 11 is touched by the high 12 but
    # the order of prices inside the bar is unknown → no take-profit on bar 1; bar 2 opens at 12 ≥ 11
    result, _ = run(bars(BASE), buy(order_type="limit", limit_price=10.5, take_profit_abs=0.5, stop_loss_abs=1.0))
    assert fills(result) == [(1, 10.0, 10.5), (2, -10.0, 12.0)]
    # the same entry with a 0.4 stop (10.1): bar 1's low 10 reaches it → assumed hit after the entry
    result, _ = run(bars(BASE), buy(order_type="limit", limit_price=10.5, stop_loss_abs=0.4))
    assert fills(result) == [(1, 10.0, 10.5), (1, -10.0, 10.1)]


def test_trailing_stop_ratchets_with_highs_and_triggers_next_bar():
    data = bars([(10, 10, 10, 10), (10, 12, 9.5, 11.5), (11.5, 11.8, 10.5, 11)])
    result, _ = run(data, buy(trailing_stop_abs=1.0))
    # entry 10 → stop 9; bar 1 low 9.5 does not reach it; the high 12 ratchets it to 11;
    # bar 2 opens at 11.5 and its low 10.5 reaches 11 → exit at 11
    assert fills(result) == [(1, 10.0, 10.0), (2, -10.0, 11.0)]
    assert result.trades["exit_reason"].to_list() == ["trailing_stop"]


def test_percent_bracket_levels_are_relative_to_fill_price():
    result, _ = run(bars(BASE), buy(stop_loss=0.05, take_profit=0.10))
    orders = result.orders
    sl = orders.filter(orders["role"] == "stop_loss")["stop_price"][0]
    tp = orders.filter(orders["role"] == "take_profit")["limit_price"][0]
    assert sl == pytest.approx(11 * 0.95) and tp == pytest.approx(11 * 1.10)


def test_exit_closing_position_cancels_its_brackets():
    result, _ = run(bars(BASE), buy(stop_loss_abs=5.0), sell(bar=1, size=1.0, size_type="position_fraction"))
    statuses = dict(zip(result.orders["role"], result.orders["status"]))
    assert statuses["stop_loss"] == "cancelled"
    assert result.orders.filter(result.orders["role"] == "stop_loss")["reason"][0] == "position_closed"


# ------------------------------------------------------------------------- cancel, replace, TIF

def test_cancel_and_replace():
    data = bars(BASE)
    program = bf.OrderProgram()
    ref = program.submit(bar=0, asset=0, side="buy", size=10, order_type="limit", limit_price=9.5)
    program.cancel(bar=1, ref=ref)
    result = bf.simulate(data, program, cash=1000)
    assert result.orders["status"].to_list() == ["cancelled"]
    program = bf.OrderProgram()
    ref = program.submit(bar=0, asset=0, side="buy", size=10, order_type="limit", limit_price=9.5)
    program.replace(bar=1, ref=ref, limit_price=11.5)
    result = bf.simulate(data, program, cash=1000)
    # working from bar 2 at 11.5: bar 2 opens 12, low 11 → fills at 11.5
    assert fills(result) == [(2, 10.0, 11.5)]
    assert "replaced" in result.order_log["event"].to_list()


def test_day_order_expires_at_the_next_calendar_day():
    data = bars([(10, 10, 10, 10)] * 3 + [(10, 10, 10, 10)], step=HOUR)
    ts = data.timestamps.copy()
    ts[3] = ts[0] + DAY  # the fourth bar is on the next day
    data = bf.MarketData.from_arrays(ts, open=data.open, high=data.high, low=data.low, close=data.close, assets=["X"])
    result, _ = run(data, buy(order_type="limit", limit_price=9.0, time_in_force="day"))
    assert result.orders["status"].to_list() == ["expired"]
    expired = result.order_log.filter(result.order_log["event"] == "expired")
    assert expired["bar"].to_list() == [3] and expired["reason"].to_list() == ["time_in_force"]


def test_good_for_n_bars_expires_after_n_bars():
    data = bars([(10, 10, 10, 10)] * 5)
    result, _ = run(data, buy(order_type="limit", limit_price=9.0, time_in_force="gtn", gtn_bars=2))
    expired = result.order_log.filter(result.order_log["event"] == "expired")
    assert expired["bar"].to_list() == [3]  # eligible on bars 1 and 2


# ---------------------------------------------------------------------------------------- costs

@pytest.mark.parametrize(
    ("options", "fee"),
    [({"fee_rate": 0.01}, 1.1),                   # 1 % of 110
     ({"fee_per_unit": 0.05}, 0.5),               # 10 units × 0.05
     ({"fee_per_order": 2.0}, 2.0),
     ({"fee_rate": 0.01, "fee_per_unit": 0.05, "fee_per_order": 2.0}, 3.6),
     ({"fee_rate": 0.01, "fee_min": 5.0}, 5.0)],  # minimum commission
)
def test_commission_models(options, fee):
    result, _ = run(bars(BASE), buy(), **options)
    assert result.fills["fee"][0] == pytest.approx(fee)
    assert result.equity["cash"][1] == pytest.approx(1000 - 110 - fee)


@pytest.mark.parametrize(
    ("options", "price"),
    [({"slippage_bps": 100}, 11.11),                         # 1 % of 11
     ({"slippage_range": 0.1}, 11.2),                        # 10 % of bar 1's range 2
     ({"slippage_bps": 100, "slippage_range": 0.1}, 11.31),
     ({"spread": 0.2}, 11.1)],                               # buys pay half the spread
)
def test_slippage_and_spread_on_market_buy(options, price):
    result, _ = run(bars(BASE), buy(), **options)
    assert result.fills["price"][0] == pytest.approx(price)


def test_slippage_never_applies_to_limit_fills():
    result, _ = run(bars(BASE), buy(order_type="limit", limit_price=10.5), slippage_bps=100)
    assert result.fills["price"][0] == pytest.approx(10.5)
    assert result.fills["slippage"][0] == 0.0


def test_spread_sells_at_bid():
    result, _ = run(bars(BASE), buy(), sell(bar=1, size=1.0, size_type="position_fraction"), spread=0.2)
    assert fills(result) == [(1, 10.0, 11.1), (2, -10.0, 11.9)]
    assert result.trades["pnl"][0] == pytest.approx(8.0)  # (11.9 − 11.1) × 10


def test_quotes_buy_at_ask_sell_at_bid():
    mid = [(10, 10.5, 9.5, 10), (11, 11.5, 10.5, 11), (12, 12.5, 11.5, 12)]
    bid = [(o - 0.05, h - 0.05, l - 0.05, c - 0.05) for o, h, l, c in mid]
    ask = [(o + 0.05, h + 0.05, l + 0.05, c + 0.05) for o, h, l, c in mid]
    data = bars(mid, quotes=(bid, ask))
    result, _ = run(data, buy(), sell(bar=1, size=1.0, size_type="position_fraction"), spread=5.0)
    # the configured spread is ignored when real quotes exist
    assert fills(result) == [(1, 10.0, 11.05), (2, -10.0, 11.95)]


def test_limit_buy_with_quotes_triggers_on_the_ask():
    mid = [(10, 10, 10, 10), (10, 10.2, 9.9, 10)]
    bid = [(o - 0.1, h - 0.1, l - 0.1, c - 0.1) for o, h, l, c in mid]
    ask = [(o + 0.1, h + 0.1, l + 0.1, c + 0.1) for o, h, l, c in mid]
    data = bars(mid, quotes=(bid, ask))
    result, _ = run(data, buy(order_type="limit", limit_price=9.95))
    assert result.fills.height == 0  # the ask's low is 10.0 > 9.95 even though the mid's low is 9.9
    result, _ = run(data, buy(order_type="limit", limit_price=10.0))
    assert fills(result) == [(1, 10.0, 10.0)]


# --------------------------------------------------------------------------------------- sizing

@pytest.mark.parametrize(
    ("kwargs", "options", "qty"),
    [({"size": 0.5, "size_type": "equity_fraction"}, {}, 45.0),          # 500 / 11 = 45.45 → 45
     ({"size": 0.5, "size_type": "equity_fraction"}, {"lot_size": 0}, 500 / 11),
     ({"size": 0.5, "size_type": "equity_fraction"}, {"lot_size": 10}, 40.0),
     ({"size": 100, "size_type": "notional"}, {}, 9.0),
     ({"size": 1.0, "size_type": "cash_fraction"}, {}, 90.0),            # 1000 / 11 = 90.9 → 90
     ({"size": 1.0, "size_type": "equity_fraction"}, {"fee_rate": 0.01}, 90.0),  # 1000 / (11 × 1.01)
     ({"size": 7, "size_type": "target_units"}, {}, 7.0),
     ({"size": 0.5, "size_type": "target_fraction"}, {"lot_size": 0}, 500 / 11)],
)
def test_sizing_modes(kwargs, options, qty):
    result, _ = run(bars(BASE), ("submit", dict(bar=0, asset=0, side="buy", **kwargs)), **options)
    assert result.fills["qty"][0] == pytest.approx(qty)


def test_min_qty_rejects_small_orders():
    result, _ = run(bars(BASE), buy(size=5), min_qty=10)
    assert result.orders["status"].to_list() == ["rejected"]
    assert result.orders["reason"].to_list() == ["below_min_qty"]


def test_insufficient_funds_reduces_or_rejects():
    result, _ = run(bars(BASE), buy(size=100))  # 1100 needed, 1000 available → 90 units
    assert result.fills["qty"].to_list() == [90.0]
    reduced = result.order_log.filter(result.order_log["event"] == "reduced")
    assert reduced["reason"].to_list() == ["insufficient_funds"]
    result, _ = run(bars(BASE), buy(size=100), allow_partial=False)
    assert result.orders["status"].to_list() == ["rejected"]
    assert result.orders["reason"].to_list() == ["insufficient_funds"]


def test_target_units_sells_down_through_zero():
    result, _ = run(bars(BASE), ("submit", dict(bar=0, asset=0, side="buy", size=5, size_type="target_units")),
                    ("submit", dict(bar=1, asset=0, side="sell", size=-5, size_type="target_units")))
    assert fills(result) == [(1, 5.0, 11.0), (2, -10.0, 12.0)]


# ------------------------------------------------------------------------- shorts and reversals

def test_short_sale_credits_cash_and_marks_to_market():
    result, _ = run(bars(BASE), sell())
    assert result.equity["cash"][1] == pytest.approx(1110.0)
    assert result.equity["equity"][1] == pytest.approx(1110.0 - 115.0)  # short 10 at close 11.5
    assert result.trades.row(0, named=True)["is_open"] is True


def test_short_not_allowed_is_rejected():
    result, _ = run(bars(BASE), sell(), allow_short=False)
    assert result.orders["reason"].to_list() == ["short_not_allowed"]


def test_signal_reversal_closes_and_opens_in_one_order():
    data = bars(BASE + [(13, 13, 13, 13)])
    entries = np.array([True, False, False, False])
    shorts = np.array([False, True, False, False])
    result = bf.from_signals(data, entries, None, shorts, None, cash=1000, size=10, size_type="units")
    # long 10 at bar 1's open 11; the short entry on bar 1 sells 20 at bar 2's open 12
    assert fills(result) == [(1, 10.0, 11.0), (2, -20.0, 12.0)]
    closed = result.trades.filter(~result.trades["is_open"])
    assert closed["direction"].to_list() == ["long"] and closed["pnl"].to_list() == pytest.approx([10.0])
    assert result.positions["X"].to_list() == [0.0, 10.0, -10.0, -10.0]


def test_partial_exit_records_a_partial_trade():
    result, _ = run(bars(BASE), buy(), sell(bar=1, size=0.5, size_type="position_fraction"))
    trade = result.trades.row(0, named=True)
    assert (trade["qty"], trade["entry_price"], trade["exit_price"], trade["pnl"]) == (5.0, 11.0, 12.0, 5.0)
    assert result.trades.row(1, named=True)["is_open"] is True


def test_trade_fees_split_between_partial_exits():
    result, _ = run(bars(BASE + [(12, 12, 12, 12)]), buy(), sell(bar=1, size=0.5, size_type="position_fraction"),
                    sell(bar=2, size=1.0, size_type="position_fraction"), fee_per_order=1.0)
    closed = result.trades.filter(~result.trades["is_open"])
    # entry fee 1 split 50/50, plus each exit's own fee of 1
    assert closed["fees"].to_list() == pytest.approx([1.5, 1.5])
    assert closed["pnl"].to_list() == pytest.approx([5 * 1 - 1.5, 5 * 1 - 1.5])


def test_mae_and_mfe_of_a_long_trade():
    data = bars([(10, 10, 10, 10), (10, 12, 9, 11), (11, 11.5, 10.5, 11), (11, 11, 11, 11)])
    result, _ = run(data, buy(), sell(bar=2, size=1.0, size_type="position_fraction"))
    trade = result.trades.row(0, named=True)
    assert trade["mae"] == pytest.approx(9 / 10 - 1) and trade["mfe"] == pytest.approx(12 / 10 - 1)


# ------------------------------------------------------------------------- financing and margin

def test_borrow_cost_on_shorts_per_day():
    result, _ = run(bars(BASE), sell(), borrow_rate=0.365)
    # one day short 10 units marked at 11.5: 115 × 0.365 / 365 = 0.115
    assert result.summary()["financing"] == pytest.approx(0.115)
    assert result.equity["cash"][2] == pytest.approx(1110.0 - 0.115)


def test_interest_on_borrowed_cash_with_leverage():
    result, _ = run(bars(BASE), buy(size=150), leverage=2.0, financing_rate=0.365)
    # 150 × 11 = 1650 bought with 1000 → cash −650; one day at 36.5 % a year → 0.65
    assert result.fills["qty"][0] == 150.0
    assert result.summary()["financing"] == pytest.approx(0.65)


def test_leverage_limit_caps_exposure():
    result, _ = run(bars(BASE), buy(size=1000), leverage=2.0)
    assert result.fills["qty"][0] == 181.0  # 2000 / 11 = 181.8 → 181


def test_margin_call_liquidates_at_the_close():
    data = bars([(10, 10, 10, 10), (10, 10.5, 9.5, 10), (9, 9, 5, 5.2), (5, 5, 5, 5)])
    result, _ = run(data, buy(size=180), leverage=2.0, maintenance_margin=0.25)
    # bar 2 close: equity = −800 + 180 × 5.2 = 136 < 25 % × 936 → liquidated at 5.2
    liq = result.fills.filter(result.fills["role"] == "liquidation")
    assert liq["bar"].to_list() == [2] and liq["qty"].to_list() == [-180.0]
    assert liq["price"][0] == pytest.approx(5.2)
    assert result.equity["equity"].to_list() == pytest.approx([1000.0, 1000.0, 136.0, 136.0])
    assert result.orders.filter(result.orders["role"] == "liquidation")["reason"].to_list() == ["margin_call"]


def test_unlevered_long_can_never_go_below_zero_cash():
    result, _ = run(bars(BASE), buy(size=1.0, size_type="equity_fraction"), fee_rate=0.001, slippage_bps=50)
    assert min(result.equity["cash"].to_list()) >= 0.0
