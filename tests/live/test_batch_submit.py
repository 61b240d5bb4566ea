"""A bar's orders in one broker call: ``PaperBroker.submit_many`` answers exactly as one ``submit`` each (the same
order ids, answers, injected faults and errors, the same venue state), and the store's batched writes keep the
one-at-a-time semantics (a fill stored once by id, in order)."""

from __future__ import annotations

import numpy as np
import pytest

from backforge.engine import kernels as k
from backforge.live import PaperBroker
from backforge.live.broker import BarEvent, BrokerError, BrokerOrder, Fill, OrderRequest
from backforge.live.store import SessionStore

SYMBOLS = ("A", "B", "C")


def _bar(t: int, price: float) -> BarEvent:
    row = np.full(len(SYMBOLS), price)
    return BarEvent(ts_ns=(t + 1) * 86_400_000_000_000, open=row, high=row * 1.01, low=row * 0.99, close=row,
                    volume=np.ones(len(SYMBOLS)))


def _requests() -> list[OrderRequest]:
    engine = {"asset": 0, "side": 1, "order_type": int(k.MARKET), "size_type": int(k.EQUITY_FRACTION), "size": 0.2,
              "limit_price": None, "stop_price": None, "sl_pct": 0.05, "sl_abs": None, "tp_pct": None, "tp_abs": None,
              "trail_pct": None, "trail_abs": None, "tif": 0, "gtn_bars": 0, "role": int(k.ENTRY), "reverse": 0,
              "tag": 3, "reason": int(k.R_SIGNAL)}
    return [
        OrderRequest("s-1-0-0", "A", "buy", 10.0, engine_order=engine),
        OrderRequest("s-1-0-1", "B", "buy", 5.0, "limit", limit_price=99.0),
        OrderRequest("s-1-0-2", "ZZZ", "buy", 1.0),  # unknown symbol: final
        OrderRequest("s-1-0-3", "C", "sell", 2.0, time_in_force="ioc"),  # unsupported time in force: final
        OrderRequest("s-1-0-4", "C", "sell", 2.0, "stop", stop_price=95.0),
        OrderRequest("s-1-0-1", "B", "buy", 5.0, "limit", limit_price=99.0),  # the same id again: its view
        OrderRequest("s-1-0-5", "A", "sell", 1.0, reduce_only=True),
        OrderRequest("s-1-0-6", "B", "buy", 3.0),
    ]


def _broker(faults: dict[str, int]) -> PaperBroker:
    broker = PaperBroker(SYMBOLS, cash=100_000.0)
    broker.on_bar(_bar(0, 100.0))
    for fault, count in faults.items():
        broker.inject(fault, count)
    return broker


def _outcome(answer) -> tuple:
    if isinstance(answer, BrokerError):
        return ("error", answer.kind, answer.message)
    assert isinstance(answer, BrokerOrder)
    return ("order", answer.client_order_id, answer.venue_order_id, answer.status, answer.qty, answer.order_type,
            answer.limit_price, answer.stop_price, answer.ts_ns)


@pytest.mark.parametrize("faults", [{}, {"reject": 1}, {"unavailable": 2}, {"timeout_before_accept": 1},
                                    {"timeout_after_accept": 2}, {"reject": 1, "timeout_after_accept": 1}])
def test_submit_many_answers_as_one_submit_each(faults: dict[str, int]) -> None:
    one_by_one, batched = _broker(faults), _broker(faults)
    expected = []
    for request in _requests():
        try:
            expected.append(_outcome(one_by_one.submit(request)))
        except BrokerError as exc:
            expected.append(_outcome(exc))
    got = [_outcome(a) for a in batched.submit_many(_requests())]
    assert got == expected
    assert batched.submit_counts == one_by_one.submit_counts and batched.cids == one_by_one.cids
    n = int(one_by_one.state.counters[k.C_ORDERS])
    assert int(batched.state.counters[k.C_ORDERS]) == n and n >= 4
    assert batched.state.orders[:n].tobytes() == one_by_one.state.orders[:n].tobytes()
    # and the next bar fills both books alike
    for broker in (one_by_one, batched):
        broker.on_bar(_bar(1, 98.0))
    assert [_outcome(x) if isinstance(x, BrokerOrder) else x for x in batched.poll()] == \
        [_outcome(x) if isinstance(x, BrokerOrder) else x for x in one_by_one.poll()]


def test_submit_many_grows_the_book_for_a_bar_larger_than_its_room() -> None:
    broker = PaperBroker(SYMBOLS, cash=1e9)
    broker.on_bar(_bar(0, 100.0))
    room = broker.state.orders.shape[0]
    requests = [OrderRequest(f"s-1-{i}-0", SYMBOLS[i % 3], "buy", 1.0) for i in range(room + 50)]
    answers = broker.submit_many(requests)
    assert all(isinstance(a, BrokerOrder) and a.status == "accepted" for a in answers)
    assert [a.venue_order_id for a in answers] == [f"P{i}" for i in range(len(requests))]
    assert int(broker.state.counters[k.C_OVERFLOW]) == 0


def test_add_fills_stores_each_fill_once_in_order(tmp_path) -> None:
    store = SessionStore.open(tmp_path, config={"x": 1}, session_id="s")
    f = lambda i: Fill(f"f{i}", f"s-1-0-{i}", f"v{i}", "A", "buy", 1.0 + i, 100.0)
    assert store.add_fill(f(0)) is True
    assert store.add_fills([f(1), f(0), f(2), f(1)]) == [True, False, True, False]
    assert store.add_fills([]) == []
    assert [(r["fill_id"], r["seq"]) for r in store.fills()] == [("f0", 1), ("f1", 2), ("f2", 3)]
    store.close()


def test_write_intents_tells_new_ids_from_stored_ones_and_overwrites_nothing(tmp_path) -> None:
    """A bar re-decided after a restart writes intents the store may hold already: those are not new, and the
    stored row (status, sends, request) is kept as it was; an id twice in one call is new once."""
    from backforge.live.store import OrderIntent

    store = SessionStore.open(tmp_path, config={"x": 1}, session_id="s")
    intent = lambda cid, request=b"first": OrderIntent(cid, 3, 10, 0, 0, 0, "A", "buy", 1.0, "market",  # noqa: E731
                                                       request=request)
    assert store.write_intents([intent("s-3-0-0"), intent("s-3-0-1")]) == [True, True]
    store.set_status("s-3-0-1", "accepted")
    got = store.write_intents([intent("s-3-0-1", b"second"), intent("s-3-0-2"), intent("s-3-0-2", b"second")])
    assert got == [False, True, False]
    assert store.order("s-3-0-1")["status"] == "accepted" and store.order("s-3-0-1")["request"] == b"first"
    assert store.order("s-3-0-2")["request"] == b"first"
    assert [r["client_order_id"] for r in store.orders()] == ["s-3-0-0", "s-3-0-1", "s-3-0-2"]
    assert store.write_intents([intent("s-4-0-0")]) == [True]  # the store is usable after the savepoint's rollback
    store.close()
