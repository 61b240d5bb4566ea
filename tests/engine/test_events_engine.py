"""The event engine, hand-computed: queue models, latency models, order types, exchange models, fees.

Every case is a handful of feed rows on a 1.0 tick / 1.0 lot book, driven step by step from Python
through the same compiled API a strategy uses; the expected fills are worked out in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from backforge.data.events import EventData, MarketEventKind as K, event_record_dt
from backforge.engine.events import EventConfig, api, new_sim, run_events
from backforge.engine.events import core as c
from backforge.engine.records import EventKind, Reason

BUY, SELL = 1, -1


def stream(*rows, feed_latency: int = 0) -> EventData:
    """Rows ``(ts, kind, side, price, qty)``; ``local_ts = ts + feed_latency``."""
    rec = np.zeros(len(rows), dtype=event_record_dt)
    for i, (ts, kind, side, price, qty) in enumerate(rows):
        rec[i] = (ts, ts + feed_latency, kind, side, price, qty)
    return EventData.from_records(rec, symbol="X", tick_size=1.0, lot_size=1.0)


def book(ts=0, bids=((99.0, 5.0),), asks=((101.0, 5.0),)):
    rows = [(ts, K.CLEAR, 0, math.nan, 0.0)]
    rows += [(ts, K.SNAPSHOT, BUY, p, q) for p, q in bids]
    rows += [(ts, K.SNAPSHOT, SELL, p, q) for p, q in asks]
    return rows


def sim_for(data, **options):
    options.setdefault("book_margin_ticks", 50)
    options.setdefault("sample_every", "1us")
    return new_sim(data, EventConfig(lot_size=1.0, **options))


def fills(sim):
    f = sim.fills[: sim.ints[c.I_NFILL]]
    return [(int(r["ts"]), float(r["price"]), float(r["qty"])) for r in f]


def slot_of(sim, order_id):
    return sim.slots[c.find_slot_nb(sim, order_id)]


def log_kinds(sim):
    e = sim.events[: sim.ints[c.I_NEVT]]
    return [(EventKind.name(k), Reason.name(r)) for k, r in zip(e["kind"], e["reason"])]


# ------------------------------------------------------------------------------------------ queues

def test_risk_averse_queue_behind_then_filled():
    # our bid joins 5 lots at 99 (front 5). Sells of 3 and 2 at 99 use up the queue ahead (front 0, no
    # fill: nothing traded beyond it); the next sell of 1 executes us. Cancels never move us up.
    data = stream(*book(), (100, K.TRADE, SELL, 99.0, 3.0), (110, K.DEPTH, BUY, 99.0, 2.0),
                  (200, K.DEPTH, BUY, 99.0, 1.0),  # a cancellation ahead or behind: min(front, 1)
                  (300, K.TRADE, SELL, 99.0, 1.0), (400, K.TRADE, SELL, 99.0, 1.0))
    sim = sim_for(data)
    api.elapse(sim, 10)
    assert api.submit_buy_order(sim, 7, 99.0, 1.0, api.GTC, api.LIMIT) == 0
    api.elapse(sim, 95)  # t = 105: the first trade went through
    assert slot_of(sim, 7)["front_q"] == 2.0
    api.elapse(sim, 100)  # t = 205: depth 99 -> 1
    assert slot_of(sim, 7)["front_q"] == 1.0
    api.elapse(sim, 100)  # t = 305: the sell of 1 only clears the queue ahead
    assert fills(sim) == []
    api.elapse(sim, 100)
    assert fills(sim) == [(400, 99.0, 1.0)]


def test_order_ahead_of_the_queue_fills_on_first_trade():
    # the bid level is empty when our order arrives: nothing ahead, the first sell at 99 fills it
    data = stream(*book(bids=((98.0, 5.0),)), (100, K.DEPTH, BUY, 99.0, 4.0), (200, K.TRADE, SELL, 99.0, 1.0))
    sim = sim_for(data)
    api.elapse(sim, 10)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)
    api.elapse(sim, 1000)
    # the later 4 lots at 99 queue behind us (a rise of the level never moves us back)
    assert fills(sim) == [(200, 99.0, 1.0)]


@pytest.mark.parametrize("model, n, expected", [
    # front 4, back 6, the level falls 10 -> 7 without trades (chg 3):
    # power n=2: p = 6^2 / (6^2 + 4^2) = 0.6923; front = 4 - (1 - p) * 3 = 3.0769
    ("power_prob", 2.0, 4 - (1 - 36 / 52) * 3),
    # power2 n=2: p = 6^2 / 10^2 = 0.36; front = 4 - 0.64 * 3 = 2.08
    ("power_prob2", 2.0, 4 - 0.64 * 3),
    # power3 n=2: p = 1 - (4/10)^2 = 0.84; front = 4 - 0.16 * 3 = 3.52
    ("power_prob3", 2.0, 4 - 0.16 * 3),
    # log: p = ln 7 / (ln 7 + ln 5); log2: p = ln 7 / ln 11
    ("log_prob", 3.0, 4 - (1 - math.log(7) / (math.log(7) + math.log(5))) * 3),
    ("log_prob2", 3.0, 4 - (1 - math.log(7) / math.log(11)) * 3),
    # risk averse: min(front, new qty) = min(4, 7)
    ("risk_averse", 3.0, 4.0),
])
def test_probabilistic_queue_models(model, n, expected):
    data = stream(*book(bids=((99.0, 4.0),)), (100, K.DEPTH, BUY, 99.0, 10.0), (200, K.DEPTH, BUY, 99.0, 7.0))
    sim = sim_for(data, queue_model=model, queue_power=n)
    api.elapse(sim, 10)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)
    api.elapse(sim, 150)
    assert slot_of(sim, 1)["front_q"] == 4.0  # an increase happens behind us
    api.elapse(sim, 100)
    assert slot_of(sim, 1)["front_q"] == pytest.approx(expected, abs=1e-12)


def test_probabilistic_queue_does_not_count_trades_twice():
    # a trade of 2 at our price, then the feed's depth row showing the level 2 lower: the depth change
    # is the trade itself, so the queue moves by 2 only (hftbacktest's cum_trade_qty)
    data = stream(*book(bids=((99.0, 6.0),)), (100, K.DEPTH, BUY, 99.0, 10.0), (200, K.TRADE, SELL, 99.0, 2.0),
                  (200, K.DEPTH, BUY, 99.0, 8.0))
    sim = sim_for(data, queue_model="power_prob", queue_power=2.0)
    api.elapse(sim, 10)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)
    api.elapse(sim, 500)
    assert slot_of(sim, 1)["front_q"] == 4.0


# ----------------------------------------------------------------------------------------- latency

def test_order_latency_no_fill_before_arrival_and_late_position():
    # entry 10 ns, response 20 ns. Submitted at t=0, at the exchange at t=10: the sell at t=5 cannot
    # fill it, the sell at t=15 does. The strategy learns of the fill at 15 + 20 = 35.
    data = stream(*book(bids=((98.0, 5.0),)), (5, K.TRADE, SELL, 99.0, 1.0), (15, K.TRADE, SELL, 99.0, 1.0),
                  (100, K.DEPTH, BUY, 98.0, 6.0))
    sim = sim_for(data, entry_latency_ns=10, response_latency_ns=20)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)
    api.elapse(sim, 34)
    assert fills(sim) == [(15, 99.0, 1.0)]
    assert api.position(sim) == 0.0 and api.order_status(sim, 1) == c.ST_NEW
    api.elapse(sim, 1)
    assert api.position(sim) == 1.0 and not api.order_exists(sim, 1)  # finished orders are forgotten


def test_interpolated_order_latency():
    table = np.array([(0, 10, 20), (100, 130, 150)], dtype=[("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8")])
    data = stream(*book(), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = new_sim(data, EventConfig(lot_size=1.0, book_margin_ticks=10), order_latency=table)
    # entry at t=50: between 10 (at 0) and 30 (at 100) -> 20; response at exchange time 70:
    # between 10 (at 10) and 20 (at 130) -> 15; outside the table: the nearest row's latency
    assert c.entry_latency_nb(sim, 50) == 20 and c.response_latency_nb(sim, 70) == 15
    assert c.entry_latency_nb(sim, -5) == 10 and c.entry_latency_nb(sim, 500) == 30


def test_negative_recorded_latency_rejects_before_the_exchange():
    table = np.array([(0, -1, 40), (100, -1, 140)], dtype=[("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8")])
    data = stream(*book(), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = new_sim(data, EventConfig(lot_size=1.0, book_margin_ticks=10), order_latency=table)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)
    assert sim.orders[0]["status"] == 3 and sim.orders[0]["reason"] == Reason.LATENCY_REJECT
    api.elapse(sim, 2_000)
    assert fills(sim) == [] and not api.order_exists(sim, 1)


def test_feed_latency_hides_rows_until_local_time():
    data = stream(*book(), (100, K.DEPTH, BUY, 100.0, 2.0), feed_latency=50)
    sim = sim_for(data)
    api.elapse(sim, 0)  # t = 0: the snapshot is stamped local 50
    assert math.isnan(api.best_bid(sim))
    api.elapse(sim, 50)
    assert api.best_bid(sim) == 99.0
    api.elapse(sim, 99)  # t = 149: the exchange has 100 since t=100, the strategy not yet
    assert api.best_bid(sim) == 99.0 and sim.ints[c.I_XBB] + sim.ints[c.I_WLO] == 100
    api.elapse(sim, 1)
    assert api.best_bid(sim) == 100.0
    assert api.wait_next_feed(sim, False, 1_000) == 1  # end of data


# ------------------------------------------------------------------------------------- order types

ASKS = ((101.0, 2.0), (102.0, 5.0))


@pytest.mark.parametrize("exchange, expected", [
    ("partial_fill", [(10, 101.0, 2.0), (10, 102.0, 1.0)]),  # walks the book
    ("no_partial_fill", [(10, 101.0, 3.0)]),  # the whole size at the best price (hftbacktest)
])
def test_market_order(exchange, expected):
    data = stream(*book(asks=ASKS), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = sim_for(data, exchange=exchange, entry_latency_ns=10, taker_fee=0.001)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 0.0, 3.0, api.IOC, api.MARKET)
    api.elapse(sim, 100)
    assert fills(sim) == expected
    f = sim.fills[: sim.ints[c.I_NFILL]]
    np.testing.assert_allclose(f["fee"], f["price"] * f["qty"] * 0.001)
    np.testing.assert_allclose(f["slippage"], f["price"] - 101.0)  # against the touch on arrival


@pytest.mark.parametrize("tif, price, expected, final", [
    (api.GTX, 101.0, [], ("expired", "post_only")),
    (api.IOC, 101.0, [(10, 101.0, 2.0)], ("expired", "no_liquidity")),
    (api.FOK, 101.0, [], ("expired", "no_liquidity")),
    (api.FOK, 102.0, [(10, 101.0, 2.0), (10, 102.0, 1.0)], ("filled", "none")),
    (api.GTC, 102.0, [(10, 101.0, 2.0), (10, 102.0, 1.0)], ("filled", "none")),
])
def test_crossing_limit_orders_partial_fill_exchange(tif, price, expected, final):
    data = stream(*book(asks=ASKS), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = sim_for(data, exchange="partial_fill", entry_latency_ns=10)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, price, 3.0, tif, api.LIMIT)
    api.elapse(sim, 100)
    assert fills(sim) == expected
    assert log_kinds(sim)[-1] == final


def test_a_resting_order_fills_in_pieces_from_its_queue():
    """Partial-fill exchange, risk-averse queue, lots of 1: our bid of 10 joins 17 at 99; cancels leave 2
    ahead; a sell of 1 leaves 1 ahead; a sell of 6 goes 5 beyond it: 5 execute (the order rests with 5);
    the queue ahead is now none (the level refills behind us); a sell of 15 takes the remaining 5. The
    no-partial exchange fills all 10 on the sell of 6."""
    rows = (*book(bids=((99.0, 17.0),)), (100, K.DEPTH, BUY, 99.0, 2.0), (200, K.TRADE, SELL, 99.0, 1.0),
            (210, K.DEPTH, BUY, 99.0, 1.0), (300, K.TRADE, SELL, 99.0, 6.0), (310, K.DEPTH, BUY, 99.0, 0.0),
            (400, K.DEPTH, BUY, 99.0, 8.0), (500, K.TRADE, SELL, 99.0, 15.0))
    for exchange, expected in (("partial_fill", [(300, 99.0, 5.0), (500, 99.0, 5.0)]),
                               ("no_partial_fill", [(300, 99.0, 10.0)])):
        sim = sim_for(stream(*rows), exchange=exchange)
        api.elapse(sim, 10)
        api.submit_buy_order(sim, 7, 99.0, 10.0, api.GTC, api.LIMIT)
        api.elapse(sim, 350)  # t = 360: after the sell of 6
        assert fills(sim) == expected[:1], exchange
        if exchange == "partial_fill":
            assert slot_of(sim, 7)["x_leaves"] == 5.0 and api.position(sim) == 5.0
        while api.elapse(sim, 100) == 0:
            pass
        assert fills(sim) == expected and api.position(sim) == 10.0, exchange


def test_post_only_that_would_cross_expires_and_one_that_does_not_rests():
    data = stream(*book(), (100, K.TRADE, SELL, 100.0, 1.0), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = sim_for(data, entry_latency_ns=10)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 101.0, 1.0, api.GTX, api.LIMIT)  # at the ask: would take
    api.submit_buy_order(sim, 2, 100.0, 1.0, api.GTX, api.LIMIT)  # inside the spread: rests, front 0
    api.elapse(sim, 200)
    assert fills(sim) == [(100, 100.0, 1.0)]
    assert sim.orders[0]["status"] == 4 and sim.orders[0]["reason"] == Reason.POST_ONLY


def test_ioc_that_does_not_cross_expires_and_gtc_rests():
    data = stream(*book(), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = sim_for(data)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 100.0, 1.0, api.IOC, api.LIMIT)
    api.submit_buy_order(sim, 2, 100.0, 1.0, api.GTC, api.LIMIT)
    api.elapse(sim, 10)
    assert not api.order_exists(sim, 1) and api.order_status(sim, 2) == c.ST_NEW


def test_book_moving_through_a_resting_order_fills_it_at_its_price():
    # our sell rests at 102 behind 1 lot; a buyer sweeps the 102 level and bids 103 (the feed shows the
    # level gone and the new bid, no trade row): the book moved through our order, filled at 102 as maker
    data = stream(*book(asks=((101.0, 1.0), (102.0, 1.0))), (100, K.DEPTH, SELL, 101.0, 0.0),
                  (200, K.DEPTH, SELL, 102.0, 0.0), (200, K.DEPTH, BUY, 103.0, 1.0))
    sim = sim_for(data, maker_fee=-0.0001)
    api.elapse(sim, 0)
    api.submit_sell_order(sim, 1, 102.0, 1.0, api.GTC, api.LIMIT)
    cash = sim.floats[c.F_CASH]
    api.elapse(sim, 300)
    assert fills(sim) == [(200, 102.0, -1.0)]
    # negative maker fee = rebate: cash grows by the price plus 0.01 %
    assert sim.floats[c.F_CASH] - cash == pytest.approx(102.0 * 1.0001)
    assert sim.fills[0]["fee"] == pytest.approx(-0.0102)
    assert sim.ints[c.I_XBA] > sim.ints[c.I_XBB]  # not crossed


# ----------------------------------------------------------------------------------- cancel / modify

def race(cancel_at):
    data = stream(*book(bids=((98.0, 5.0),)), (100, K.TRADE, SELL, 99.0, 1.0), (1_000, K.DEPTH, BUY, 98.0, 6.0))
    sim = sim_for(data, entry_latency_ns=10, response_latency_ns=10)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT)  # at the exchange at t=10, front 0
    api.elapse(sim, cancel_at)
    assert api.cancel(sim, 1) == 0
    assert api.cancel(sim, 1) == c.E_IN_PROCESS  # one request at a time
    api.elapse(sim, 2_000)
    return sim


def test_cancel_that_arrives_after_the_fill_loses_the_race():
    sim = race(cancel_at=95)  # the cancel reaches the exchange at 105, the sell came at 100
    assert fills(sim) == [(100, 99.0, 1.0)]
    assert log_kinds(sim)[-1] == ("rejected", "unknown_order")
    assert api.position(sim) == 1.0


def test_cancel_that_arrives_first_wins():
    sim = race(cancel_at=85)  # at the exchange at 95, before the sell at 100
    assert fills(sim) == []
    assert log_kinds(sim)[-1] == ("cancelled", "user") and sim.orders[0]["status"] == 2


def test_modify_smaller_keeps_the_queue_new_price_loses_it():
    data = stream(*book(bids=((99.0, 5.0), (98.0, 3.0))), (500, K.DEPTH, BUY, 99.0, 6.0), (1_000, K.DEPTH, BUY, 99.0, 7.0))
    sim = sim_for(data, entry_latency_ns=10, response_latency_ns=10)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 99.0, 3.0, api.GTC, api.LIMIT)
    api.elapse(sim, 100)
    assert api.modify(sim, 1, 99.0, 2.0) == 0
    api.elapse(sim, 100)
    s = slot_of(sim, 1)
    assert (s["front_q"], s["x_leaves"], s["l_qty"]) == (5.0, 2.0, 2.0)
    api.modify(sim, 1, 98.0, 2.0)
    api.elapse(sim, 100)
    s = slot_of(sim, 1)
    assert (s["front_q"], s["x_tick"] + sim.ints[c.I_WLO]) == (3.0, 98)  # behind the 3 lots at 98
    assert [k for k, _ in log_kinds(sim)].count("replaced") == 2


def test_api_errors():
    data = stream(*book(), (1_000, K.DEPTH, BUY, 99.0, 6.0))
    sim = sim_for(data)
    api.elapse(sim, 0)
    assert api.submit_buy_order(sim, 1, 99.0, 1.0, api.GTC, api.LIMIT) == 0
    assert api.submit_buy_order(sim, 1, 98.0, 1.0, api.GTC, api.LIMIT) == c.E_ID_EXISTS
    assert api.submit_buy_order(sim, 2, 99.0, 0.0, api.GTC, api.LIMIT) == c.E_BAD_QTY
    assert api.submit_buy_order(sim, 3, 1e9, 1.0, api.GTC, api.LIMIT) == c.E_BAD_PRICE
    assert api.cancel(sim, 99) == c.E_NOT_FOUND


# ----------------------------------------------------------------------------------------- L1 quotes

def test_quote_fills_when_the_opposite_quote_reaches_the_limit():
    # L1 quotes without sizes (inf): a bid at the best bid never advances by queue; it fills when the
    # ask quote comes down to it. A market order takes its whole size at the quote.
    q = np.inf
    data = stream((0, K.QUOTE, BUY, 99.0, q), (0, K.QUOTE, SELL, 101.0, q), (100, K.QUOTE, BUY, 98.0, q),
                  (200, K.QUOTE, SELL, 99.0, q), (300, K.QUOTE, BUY, 97.0, q), (300, K.QUOTE, SELL, 98.0, q))
    sim = sim_for(data)
    api.elapse(sim, 0)
    api.submit_buy_order(sim, 1, 99.0, 2.0, api.GTC, api.LIMIT)
    api.submit_sell_order(sim, 2, 0.0, 5.0, api.IOC, api.MARKET)
    api.elapse(sim, 150)
    assert api.best_bid(sim) == 98.0  # the quote replaced the better bid level
    api.elapse(sim, 1_000)
    assert fills(sim) == [(0, 99.0, -5.0), (200, 99.0, 2.0)]


def test_run_events_result_tables():
    data = stream(*book(), (1_000_000_000, K.TRADE, SELL, 99.0, 6.0), (2_000_000_000, K.DEPTH, BUY, 99.0, 4.0),
                  (3_000_000_000, K.DEPTH, SELL, 100.0, 1.0))
    from numba import njit

    @njit
    def strategy(sim):
        api.elapse(sim, 0)
        api.submit_buy_order(sim, 1, 99.0, 2.0, api.GTC, api.LIMIT)
        api.elapse(sim, 2_500_000_000)
        api.submit_sell_order(sim, 2, 0.0, 2.0, api.GTC, api.MARKET)
        while api.elapse(sim, 1_000_000_000) == 0:
            pass

    result = run_events(strategy, data, EventConfig(lot_size=1.0, maker_fee=0.001, taker_fee=0.002, cash=1_000.0))
    # the buy joins 5 lots at 99; the sell of 6 goes 1 lot beyond the queue: executed, and the
    # no-partial exchange fills the whole 2 (maker). The market sell then takes the 99 bid (taker).
    assert result.fills["price"].to_list() == [99.0, 99.0]
    trade = result.trades.row(0, named=True)
    assert trade["pnl"] == pytest.approx(-(99.0 * 2 * 0.001 + 99.0 * 2 * 0.002))
    assert result.summary()["final_equity"] == pytest.approx(1_000.0 + trade["pnl"])
    assert result.orders["time_in_force"].to_list() == ["gtc", "gtc"]
