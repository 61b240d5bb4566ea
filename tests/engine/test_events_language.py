"""The strategy language on event data (``backforge.engine.events.language``): hand-computed event
series, evaluation points, orders with latency, refusals, and the example file checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from backforge.data.events import EventData, MarketEventKind as K, event_record_dt, synthetic_l2
from backforge.engine.events.language import (compile_event_portfolio, evaluation_times, event_series,
                                              run_event_portfolio, trade_flow)
from backforge.errors import ConfigError
from backforge.strategy.compiler import compile_portfolio, load_data
from backforge.strategy.schema import dump_portfolio, load_portfolio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "events" / "imbalance_taker.yaml"
BUY, SELL = 1, -1
NAN = math.nan


def stream(rows, feed_latency: int = 0) -> EventData:
    rec = np.zeros(len(rows), dtype=event_record_dt)
    for i, (ts, kind, side, price, qty) in enumerate(rows):
        rec[i] = (ts, ts + feed_latency, kind, side, price, qty)
    return EventData.from_records(rec, symbol="X", tick_size=1.0, lot_size=1.0)


HAND = [
    (0, K.CLEAR, 0, NAN, 0.0),
    (0, K.SNAPSHOT, BUY, 99.0, 5.0), (0, K.SNAPSHOT, BUY, 98.0, 3.0),
    (0, K.SNAPSHOT, SELL, 101.0, 4.0), (0, K.SNAPSHOT, SELL, 102.0, 6.0),
    (10, K.TRADE, BUY, 101.0, 2.0), (10, K.DEPTH, SELL, 101.0, 2.0),  # a buyer takes 2 at 101
    (20, K.DEPTH, BUY, 100.0, 1.0),  # a new best bid
    (30, K.TRADE, SELL, 100.0, 1.0), (30, K.DEPTH, BUY, 100.0, 0.0),  # a seller takes it
]


def test_series_by_hand():
    data = stream(HAND)
    ts = evaluation_times(data)
    assert ts.tolist() == [0, 10, 20, 30]  # one point per distinct local timestamp
    s = event_series(data, ts, levels=(1, 2))
    assert s.bid.tolist() == [99, 99, 100, 99]
    assert s.ask.tolist() == [101, 101, 101, 101]
    assert s.mid.tolist() == [100, 100, 100.5, 100]
    # 1 level: (bid - ask) / (bid + ask) at the touch; 2 levels: the touch and the next tick of each side
    assert np.allclose(s.imbalance[1], [1 / 9, 3 / 7, -1 / 3, 3 / 7])
    assert np.allclose(s.imbalance[2], [(8 - 10) / 18, (8 - 8) / 16, (6 - 8) / 14, (8 - 8) / 16])
    assert s.volume.tolist() == [0, 2, 0, 1]
    assert s.buy.tolist() == [0, 2, 2, 2] and s.sell.tolist() == [0, 0, 0, 1]
    # a 15 ns window: trades in (t - 15, t], NaN until t - 15 reaches the first point
    assert np.allclose(trade_flow(s, data, "15ns", "net"), [NAN, NAN, 2, -1], equal_nan=True)
    assert np.allclose(trade_flow(s, data, "15ns", "total"), [NAN, NAN, 2, 1], equal_nan=True)
    # a window of 1 or 2 evaluations
    assert np.allclose(trade_flow(s, data, 1, "net"), [NAN, 2, 0, -1], equal_nan=True)
    assert np.allclose(trade_flow(s, data, 2, "imbalance"), [NAN, NAN, 1, -1], equal_nan=True)
    assert np.allclose(trade_flow(s, data, 2, "sell"), [NAN, NAN, 0, 1], equal_nan=True)


def test_grid_points_see_every_row_up_to_them():
    data = stream(HAND, feed_latency=2)  # the strategy receives every row 2 ns late
    ts = evaluation_times(data, {"grid": "15ns"})
    assert ts.tolist() == [15, 30]  # from the first local time (2) rounded up to the grid
    s = event_series(data, ts)
    assert s.bid.tolist() == [99, 100]  # at 30 the row stamped 30 has not arrived (local 32)
    assert s.volume.tolist() == [2, 0]


def test_series_match_a_replay_of_the_stream():
    data = synthetic_l2(n_events=3_000, seed=4)
    ts = evaluation_times(data, {"grid": "50ms"})
    s = event_series(data, ts, levels=(1, 4))
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    i, buy, sell = 0, 0.0, 0.0
    tick = data.tick_size
    for k, t in enumerate(ts):
        while i < len(data) and data.local_ts[i] <= t:
            kind, side, price, qty = int(data.kind[i]), int(data.side[i]), float(data.price[i]), float(data.qty[i])
            if kind == K.CLEAR:
                bids.clear()
                asks.clear()
            elif kind == K.TRADE:
                buy, sell = (buy + qty, sell) if side > 0 else (buy, sell + qty)
            else:
                book = bids if side > 0 else asks
                key = round(price / tick)
                if qty > 0:
                    book[key] = qty
                else:
                    book.pop(key, None)
            i += 1
        bb, ba = max(bids), min(asks)
        assert s.bid[k] == pytest.approx(bb * tick) and s.ask[k] == pytest.approx(ba * tick)
        b = sum(bids.get(bb - u, 0.0) for u in range(4))
        a = sum(asks.get(ba + u, 0.0) for u in range(4))
        assert s.imbalance[4][k] == pytest.approx((b - a) / (b + a))
        assert s.buy[k] == pytest.approx(buy) and s.sell[k] == pytest.approx(sell)


def hand_strategy(**engine):
    return {
        "name": "hand", "universe": ["X"],
        "data": {"events": {"engine": {"entry_latency_ns": 3, "response_latency_ns": 3, "taker_fee": 0.001,
                                       "book_margin_ticks": 10, "sample_every": "1ns", **engine}}},
        "strategies": [
            {"name": "enter", "condition": {"lhs": "mid", "op": "crosses_above", "rhs": 100.25},
             "action": {"buy": {"allocation": {"units": 2}}}},
            {"name": "leave", "condition": {"lhs": "spread", "op": ">", "rhs": 1.5}, "action": {"close": {}}},
        ],
    }


def test_orders_travel_with_latency_and_fill_at_the_exchange_book():
    rows = [(0, K.CLEAR, 0, NAN, 0.0), (0, K.SNAPSHOT, BUY, 99.0, 5.0), (0, K.SNAPSHOT, SELL, 101.0, 4.0),
            (0, K.SNAPSHOT, SELL, 102.0, 6.0),
            (10, K.DEPTH, BUY, 100.0, 3.0),  # mid 100 -> 100.5: crosses above 100.25
            (20, K.DEPTH, SELL, 101.0, 0.0),  # ask 102: spread 2 > 1.5
            (50, K.TRADE, BUY, 102.0, 1.0)]
    result = run_event_portfolio(hand_strategy(), stream(rows, feed_latency=1))
    # seen locally at 11 -> at the exchange at 14: the whole 2 at the ask (101); response back at 17;
    # the spread widens locally at 21 -> the close reaches the exchange at 24: 2 at the bid (100)
    fills = result.fills
    assert result.state.fills[:2]["ts"].tolist() == [14, 24]
    assert fills["price"].to_list() == [101.0, 100.0]
    assert fills["qty"].to_list() == [2.0, -2.0]
    assert fills["fee"].to_list() == pytest.approx([0.202, 0.2])
    ev = result.signal_events
    assert ev["strategy"].to_list() == ["enter", "leave"]
    assert ev["action"].to_list() == ["buy", "close"]
    assert ev["timestamp"].cast(pl.Int64).to_list() == [11, 21]
    assert ev["order_id"].to_list() == result.orders["order_id"].to_list()


def test_limit_orders_rest_at_the_near_touch():
    config = hand_strategy()
    config["strategies"][0]["action"] = {"buy": {"allocation": {"units": 2}, "order_type": "limit"}}
    rows = [(0, K.CLEAR, 0, NAN, 0.0), (0, K.SNAPSHOT, BUY, 99.0, 5.0), (0, K.SNAPSHOT, SELL, 101.0, 4.0),
            (10, K.DEPTH, BUY, 100.0, 3.0),  # the decision: a buy limit at the bid, 100, behind 3
            (20, K.TRADE, SELL, 100.0, 4.0), (20, K.DEPTH, BUY, 100.0, 1.0),  # 4 sold at 100: 3 ahead, 1 for us
            (30, K.TRADE, SELL, 100.0, 2.0), (30, K.DEPTH, BUY, 100.0, 0.0)]
    config["strategies"] = config["strategies"][:1]
    result = run_event_portfolio(config, stream(rows))
    assert result.fills["price"].to_list() == [100.0]  # no partial fills: the whole 2 once the queue is passed
    assert result.state.fills[:1]["ts"].tolist() == [20]
    assert result.fills["fee"].to_list() == [0.0]  # maker fee 0


@pytest.mark.parametrize("change, path, message", [
    ({"strategies": [{"name": "s", "condition": {"lhs": "position_qty", "op": ">", "rhs": 0}, "action": {"close": {}}}]},
     "strategies[0].condition", "position and portfolio state"),
    ({"costs": {"fee_rate": 0.001}}, "costs.fee_rate", "maker_fee / taker_fee"),
    ({"strategies": [{"name": "s", "action": {"buy": {"order_type": "stop", "stop_offset": 0.01}}}]},
     "strategies[0].action.order_type", "stop orders"),
    ({"strategies": [{"name": "s", "action": {"rebalance": {}}}]}, "strategies[0].action", "rebalance"),
    ({"universe": ["X", "Y"]}, "universe", "one instrument"),
])
def test_what_events_cannot_do_is_refused_with_its_path(change, path, message):
    config = {**hand_strategy(), **change}
    with pytest.raises(ConfigError) as info:
        compile_event_portfolio(config, stream(HAND))
    assert info.value.path == path and message in str(info.value)


def test_engine_settings_are_checked_when_the_file_is_read():
    config = hand_strategy(queue_model="fifo")
    with pytest.raises(ConfigError) as info:
        load_portfolio(config)
    assert info.value.path == "data.events.engine.queue_model"
    with pytest.raises(ConfigError, match="cash"):
        load_portfolio(hand_strategy(cash=5))


def test_event_indicators_and_files_do_not_run_on_bars():
    bars = {"name": "b", "universe": ["A"], "data": {"years": 1},
            "strategies": [{"name": "s", "condition": {"lhs": "book_imbalance", "op": ">", "rhs": 0},
                            "action": {"buy": {}}}]}
    portfolio = load_portfolio(bars)
    with pytest.raises(ConfigError, match="needs event data") as info:
        compile_portfolio(portfolio, load_data(portfolio))
    assert info.value.path == "strategies[0].condition.lhs"
    with pytest.raises(ConfigError, match="events run") as info:
        load_data(load_portfolio(hand_strategy()))
    assert info.value.path == "data.events"


def test_the_example_file_checked_by_hand():
    """examples/events/imbalance_taker.yaml on a shorter stream: every decision is re-derived from a
    replay of the rows, every fill from the exchange's book when the order arrived."""
    config = yaml.safe_load(EXAMPLE.read_text())
    assert load_portfolio(dump_portfolio(load_portfolio(EXAMPLE))) == load_portfolio(EXAMPLE)  # round trip
    config["data"]["events"]["n_events"] = 30_000
    result = run_event_portfolio(config)
    data = synthetic_l2(n_events=30_000, seed=5)
    tick = data.tick_size
    latency = config["data"]["events"]["engine"]["entry_latency_ns"]

    def replay(clock, until):
        bids, asks, trades = {}, {}, []
        for i in np.flatnonzero(clock <= until):
            kind, side, price, qty = int(data.kind[i]), int(data.side[i]), float(data.price[i]), float(data.qty[i])
            if kind == K.CLEAR:
                bids.clear()
                asks.clear()
            elif kind == K.TRADE:
                trades.append((int(data.local_ts[i]), side * qty))
            else:
                book = bids if side > 0 else asks
                if qty > 0:
                    book[round(price / tick)] = qty
                else:
                    book.pop(round(price / tick), None)
        return bids, asks, trades

    def imbalance(bids, asks):
        bb, ba = max(bids), min(asks)
        b, a = sum(bids.get(bb - u, 0.0) for u in range(5)), sum(asks.get(ba + u, 0.0) for u in range(5))
        return (b - a) / (b + a)

    ev = result.signal_events
    assert ev.height >= 10 and set(ev["action"]) == {"buy", "close"}
    local = np.asarray(data.local_ts)
    exch = np.asarray(data.exch_ts)
    fills = result.state.fills[: result.fills.height]
    position = 0.0
    for row, fill in zip(ev.with_columns(ts=pl.col("timestamp").cast(pl.Int64)).iter_rows(named=True), fills):
        t = row["ts"]
        bids, asks, trades = replay(local, t)
        if row["action"] == "buy":
            flow = sum(q for ts, q in trades if ts > t - 2_000_000_000)
            assert imbalance(bids, asks) > 0.35 and flow > 0 and position == 0
            assert fill["qty"] > 0
        else:
            assert imbalance(bids, asks) < -0.1 and position > 0
            assert fill["qty"] == -position
        # the market order reached the exchange `latency` later and took the whole size at its touch
        assert fill["ts"] == t + latency
        xb, xa, _ = replay(exch, t + latency)
        assert fill["price"] == pytest.approx((min(xa) if fill["qty"] > 0 else max(xb)) * tick)
        position += fill["qty"]
    assert result.fills.height == ev.height


def test_quotes_replace_the_touch():
    from backforge.data.events import synthetic_quotes

    data = synthetic_quotes(n_ticks=5_000, seed=9)
    s = event_series(data, evaluation_times(data))
    bids = np.asarray(data.price)[np.asarray(data.side) > 0]
    asks = np.asarray(data.price)[np.asarray(data.side) < 0]
    assert np.allclose(s.bid, bids) and np.allclose(s.ask, asks)  # every tick: its own bid and ask
    # a sized quote below the touch replaces it; a zero-size quote empties the side from its price up
    rows = [(0, K.QUOTE, BUY, 100.0, 5.0), (0, K.QUOTE, SELL, 102.0, 5.0), (1, K.QUOTE, BUY, 97.0, 2.0),
            (2, K.QUOTE, SELL, 104.0, 1.0), (3, K.QUOTE, BUY, 96.0, 0.0), (4, K.QUOTE, BUY, 101.0, 3.0)]
    s = event_series(stream(rows), np.arange(5))
    assert np.allclose(s.bid, [100, 97, 97, NAN, 101], equal_nan=True)
    assert s.ask.tolist() == [102, 102, 104, 104, 104]


@pytest.mark.parametrize("evaluate, points", [("every_event", [0, 10, 20, 30]), ({"grid": "15ns"}, [0, 15, 30])])
def test_every_point_is_evaluated_up_to_the_last_row(evaluate, points):
    config = hand_strategy()
    config["data"]["events"]["evaluate"] = evaluate
    config["strategies"] = [{"name": "tick", "action": {"alert": {}}}]
    ev = run_event_portfolio(config, stream(HAND)).signal_events
    assert ev["timestamp"].cast(pl.Int64).to_list() == points and set(ev["order_id"]) == {-1}


def test_the_judge_sees_an_event_runs_fees_and_spread():
    """The judge's evidence of an event run lists the maker/taker fees and the book's spread it paid, so
    it does not warn that no costs were modelled."""
    from backforge.judge import judge

    config = yaml.safe_load(EXAMPLE.read_text())
    config["data"]["events"]["n_events"] = 30_000
    result = run_event_portfolio(config)
    assert result.summary()["fees"] > 0
    verdict = judge(result, n_simulations=100, walk_forward=False)
    costs = verdict.evidence.sections["cost_sensitivity"]["costs_modelled"]
    engine = config["data"]["events"]["engine"]
    assert {k: costs[k] for k in ("maker_fee", "taker_fee") if k in costs} == \
        {k: engine[k] for k in ("maker_fee", "taker_fee") if engine.get(k)} and "spread" in costs
    assert "costs.none_modelled" not in {f.id for f in verdict.findings}
