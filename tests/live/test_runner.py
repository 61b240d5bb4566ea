"""The runner and its store: bad state folders, recovery and reconciliation, circuit breakers, bad bars."""

from __future__ import annotations

import sqlite3

import numpy as np
import polars as pl
import pytest

from backforge.data.synth import gbm
from backforge.engine import kernels as k
from backforge.live import (
    PaperBroker,
    PaperRunner,
    ReplayFeed,
    SessionError,
    SessionStore,
)
from backforge.live.broker import Fill
from backforge.live.runner import LiveConfig
from backforge.live.step import bar_event
from backforge.live.store import pack_arrays, unpack_arrays
from backforge.strategy.compiler import sim_config_of
from backforge.strategy.schema import load_portfolio

SPEC = {"name": "rec", "universe": ["AAA", "BBB"], "cash": 100_000, "costs": {"fee_rate": 0.001},
        "strategies": [
            {"name": "in", "condition": {"lhs": {"sma": {"window": 3}}, "op": "crosses_above", "rhs": {"sma": {"window": 8}}},
             "action": {"buy": {"allocation": {"equity_fraction": 0.3}}}},
            {"name": "out", "condition": {"lhs": {"sma": {"window": 3}}, "op": "crosses_below", "rhs": {"sma": {"window": 8}}},
             "action": {"close": {}}}]}
START = 20


@pytest.fixture(scope="module")
def market():
    return gbm(2, 0.6, seed=11, assets=("AAA", "BBB"))


@pytest.fixture(scope="module")
def portfolio():
    return load_portfolio(SPEC)


def _broker(portfolio, market):
    return PaperBroker(market.assets, config=sim_config_of(portfolio))


def _runner(portfolio, market, broker, folder, **config):
    return PaperRunner(portfolio, ReplayFeed(market, start=START), broker, folder, reference=market,
                       config=LiveConfig(**config) if config else None)


def _outcome(broker):
    s = broker.state
    n = int(s.counters[k.C_FILLS])
    return float(s.cash[0]), s.position.copy(), s.fills[:n].copy()


@pytest.fixture(scope="module")
def uninterrupted(portfolio, market, tmp_path_factory):
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path_factory.mktemp("u")) as runner:
        runner.run()
    return _outcome(broker)


def _same(outcome, reference):
    cash, pos, fills = outcome
    assert cash == reference[0]
    assert np.array_equal(pos, reference[1])
    assert fills.tobytes() == reference[2].tobytes()


def _run_until_order_pending(runner, broker):
    for _ in range(400):
        runner.run(max_bars=1)
        if broker.open_orders():
            return broker.open_orders()[0]
    raise AssertionError("no order was sent")


def _events(folder, what=None):
    store = SessionStore.read(folder)
    try:
        return [e for e in store.events("reconciliation") if what is None or e["what"] == what]
    finally:
        store.close()


# ---------------------------------------------------------------------------------- state folder
def test_second_runner_is_refused_and_hash_mismatch_needs_force(portfolio, market, tmp_path):
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path):
        with pytest.raises(SessionError, match="another runner .* is using this state folder"):
            _runner(portfolio, market, broker, tmp_path)
    changed = load_portfolio({**SPEC, "cash": 50_000})
    with pytest.raises(SessionError, match="different strategy config"):
        _runner(changed, market, _broker(changed, market), tmp_path)
    with PaperRunner(changed, ReplayFeed(market, start=START), _broker(changed, market), tmp_path, reference=market,
                     force=True) as runner:
        assert runner.store.events("forced_config")


def test_corrupt_database_is_one_clear_error(tmp_path):
    (tmp_path / "session.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(SessionError, match="corrupt|cannot be opened"):
        SessionStore.open(tmp_path, config={"x": 1})
    assert (tmp_path / "session.db").read_bytes().startswith(b"this is not")  # nothing overwritten


def test_store_dedupes_fills_and_round_trips_snapshots(tmp_path):
    store = SessionStore.open(tmp_path, config={"x": 1})
    fill = Fill("F1", "c1", "v1", "AAA", "buy", 2.0, 10.0, 0.1, 5)
    assert store.add_fill(fill) and not store.add_fill(fill) and len(store.fills()) == 1
    arrays = {"a": np.arange(5.0), "orders": np.zeros(3, dtype=np.dtype([("x", "i8"), ("y", "f8")], align=True))}
    back = unpack_arrays(pack_arrays(arrays))
    assert back["a"].tolist() == arrays["a"].tolist() and back["orders"].dtype == arrays["orders"].dtype
    store.commit_bar(0, 5, "fp", 1.0, 1.0, snapshot=pack_arrays(arrays))
    assert store.last_snapshot()[2]["a"].tolist() == [0, 1, 2, 3, 4]
    store.close()
    with sqlite3.connect(tmp_path / "session.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_restored_snapshot_has_the_engine_types_of_a_fresh_state():
    """A snapshot read back must type exactly like the state it came from; a structured dtype read back from its
    description is "unaligned" to numba, and a restarted session compiled the whole live step again."""
    import numba

    from backforge.live._engine import fresh_state, state_arrays, state_from_arrays

    state = fresh_state(3, cash=1_000.0, record_positions=True)
    back = state_from_arrays(unpack_arrays(pack_arrays(state_arrays(state))))
    leaves = lambda s: [numba.typeof(a) for f in s for a in (f if isinstance(f, tuple) else (f,))]
    assert [str(t) for t in leaves(back)] == [str(t) for t in leaves(state)]


# ---------------------------------------------------------------------------------- reconciliation
def test_order_filled_while_the_runner_was_down(portfolio, market, tmp_path, uninterrupted):
    broker = _broker(portfolio, market)
    runner = _runner(portfolio, market, broker, tmp_path)
    pending = _run_until_order_pending(runner, broker)
    t = runner.step.t
    runner.close()
    broker.on_bar(bar_event(market, START + t + 1))  # the venue moves on while the runner is down
    assert broker.order(pending.client_order_id).status == "filled"
    with _runner(portfolio, market, broker, tmp_path) as runner:
        assert _events(tmp_path, "fill_while_down")
        runner.run()
    _same(_outcome(broker), uninterrupted)
    assert set(broker.submit_counts.values()) == {1}
    assert not _events(tmp_path, "position_mismatch")


def test_order_the_broker_cancelled(portfolio, market, tmp_path):
    broker = _broker(portfolio, market)
    runner = _runner(portfolio, market, broker, tmp_path)
    pending = _run_until_order_pending(runner, broker)
    runner.close()
    broker.cancel(pending.client_order_id)  # the venue cancels it while the runner is down
    with _runner(portfolio, market, broker, tmp_path) as runner:
        changed = _events(tmp_path, "order_changed_while_down")
        assert changed and changed[0]["now"] == "cancelled"
        assert _events(tmp_path, "venue_closed_order")  # closed in the model before it re-steps a bar
        runner.run(max_bars=1)
        model = runner.step.state.orders[int(runner.store.order(pending.client_order_id)["engine_id"])]
        assert int(model["status"]) == k.CANCELLED  # closed in the model too: it never fills there
        runner.run()
        assert np.array_equal(runner.step.state.position, broker.state.position)
    assert not _events(tmp_path, "position_mismatch")


@pytest.mark.parametrize("policy", ["adopt", "halt"])
def test_position_changed_outside_the_runner(portfolio, market, tmp_path, policy):
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path, reconcile_policy=policy) as runner:
        runner.run(max_bars=5)
        broker.set_position("BBB", 7.0, float(market.close[START + 4, 1]))  # a manual trade at the venue
        runner.run(max_bars=1)
        (event,) = _events(tmp_path, "position_mismatch")
        assert event["symbol"] == "BBB" and event["venue"] == 7.0 and event["policy"] == policy
        if policy == "adopt":
            assert runner.step.state.position[1] == 7.0 and not runner.halted
            runner.run()
            assert np.array_equal(runner.step.state.position, broker.state.position)
        else:
            assert "position mismatch on BBB" in runner.halted
            runner.run()
            assert all(r["status"] in ("suppressed",) for r in runner.store.orders() if r["bar"] > 6)


def test_broker_times_out_after_accepting(portfolio, market, tmp_path, uninterrupted):
    broker = _broker(portfolio, market)
    broker.inject("timeout_after_accept")
    with _runner(portfolio, market, broker, tmp_path) as runner:
        _run_until_order_pending(runner, broker)
        (row,) = runner.store.orders(("ambiguous",))  # in flight, not rejected
        runner.run(max_bars=1)
        assert runner.store.order(row["client_order_id"])["status"] == "filled"
        runner.run()
    assert broker.submit_counts[row["client_order_id"]] == 1
    _same(_outcome(broker), uninterrupted)


# ---------------------------------------------------------------------------------- bad bars, breakers
def test_duplicate_and_out_of_order_bars_are_dropped(portfolio, market, tmp_path):
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path) as runner:
        runner.run(max_bars=3)
        assert runner.on_bar(bar_event(market, START + 2)) is False
        assert runner.on_bar(bar_event(market, START)) is False
        assert runner.step.t == 2
        whys = [e["why"] for e in runner.store.events("bar_dropped")]
        assert whys == ["duplicate", "duplicate"]
        revised = bar_event(market, START + 1)
        revised.close[0] += 1.0
        assert runner.on_bar(revised) is False and runner.store.events("bar_dropped")[-1]["why"] == "revised"


def test_max_notional_breaker_halts_and_resume_clears(portfolio, market, tmp_path):
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path, max_notional_per_order=1_000.0) as runner:
        _run_until_refused = [runner.run(max_bars=1) for _ in range(200) if not runner.halted]
        assert "above max_notional_per_order" in runner.halted and _run_until_refused
        assert not broker.submit_counts  # nothing reached the venue
        assert runner.store.orders(("refused",))
        runner.resume()
        assert not runner.halted and runner.store.meta("halted") == ""


def test_broker_error_streak_halts(portfolio, market, tmp_path):
    broker = _broker(portfolio, market)
    broker.inject("unavailable", 100)
    with _runner(portfolio, market, broker, tmp_path, retry_limit=1, max_error_streak=2) as runner:
        for _ in range(300):
            runner.run(max_bars=1)
            if runner.halted:
                break
        assert "broker errors in a row" in runner.halted
        (row, *_) = runner.store.orders(("intent",))  # a retryable failure stays an intent: sent later
        assert row["sends"] == 2


def test_assets_the_feed_lacks(portfolio, market, tmp_path):
    from backforge.errors import ConfigError

    other = load_portfolio({**SPEC, "universe": ["AAA", "CCC"]})
    with pytest.raises(ConfigError, match="CCC"):
        PaperRunner(other, ReplayFeed(market, start=START), _broker(portfolio, market), tmp_path, reference=market)


def test_adopted_position_without_an_entry_price_takes_the_mark(portfolio, market, tmp_path):
    """A spot venue (ccxt) reports balances, not entry prices: adopting such a position must not leave an average
    price of 0 under an open position (the kernels' return arithmetic divided by it: ZeroDivisionError)."""
    from dataclasses import replace

    class SpotBroker(PaperBroker):
        def positions(self):
            return {s: replace(p, avg_price=0.0) for s, p in super().positions().items()}

    broker = SpotBroker(market.assets, config=sim_config_of(portfolio))
    with _runner(portfolio, market, broker, tmp_path) as runner:
        runner.run(max_bars=5)
        broker.set_position("BBB", 7.0, float(market.close[START + 4, 1]))  # reported without an average price
        runner.run(max_bars=1)
        assert any(e["symbol"] == "BBB" and e["venue"] == 7.0 for e in _events(tmp_path, "position_mismatch"))
        state = runner.step.state
        assert state.position[1] == broker.state.position[1] and state.avg_price[1] > 0
        runner.run()  # the rest of the replay steps without dividing by zero
        assert np.all((runner.step.state.position == 0) | (runner.step.state.avg_price > 0))


def test_venue_quantity_is_rounded_to_the_lot_size(market, tmp_path):
    """The runner asks the venue for what the engine fills: the opening part rounded down to the lot size
    (here 7 units), the closing part the whole position."""
    spec = {**SPEC, "costs": {"fee_rate": 0.001, "lot_size": 7}}
    portfolio = load_portfolio(spec)
    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path) as runner:
        runner.run()
        rows = [r for r in runner.store.orders() if not r["external"] and r["status"] != "rejected"]
        fills = runner.store.fills()
    assert len(rows) >= 4 and fills
    for row in rows:
        assert row["qty"] > 0 and row["qty"] % 7 == 0, row
    # the venue filled exactly what was asked (the engine's own sizing at the venue agrees on the lot)
    assert all(f["qty"] % 7 == 0 for f in fills)


@pytest.mark.parametrize("lot", [5.0, 1.0])
def test_lot_rounded_orders_match_the_backtest(market, tmp_path, lot):
    """Units orders of 12.5 with lots of 5 (and whole shares): the engine fills 10 (12); the runner asks the
    venue for exactly that quantity — without the engine's lot kernel in the action path it asked for 12.5 —
    and the session stays bit-identical to `run`."""
    from live_helpers import assert_parity, backtest_and_paper

    spec = {**SPEC, "costs": {"fee_rate": 0.001, "lot_size": lot},
            "strategies": [{**SPEC["strategies"][0], "action": {"buy": {"allocation": {"type": "units", "value": 12.5}}}},
                           SPEC["strategies"][1]]}
    portfolio = load_portfolio(spec)
    result, runner, broker, tables = backtest_and_paper(portfolio, market, START, tmp_path)
    assert_parity(result, runner, broker, tables)
    rows = {r["client_order_id"]: r for r in tables["orders"].to_dicts() if not r["external"]}
    fills = tables["fills"].to_dicts()
    assert len(fills) >= 4
    for f in fills:
        row = rows[f["client_order_id"]]
        assert row["qty"] == f["qty"], (row, f)  # market orders fill whole: what was asked is what the engine filled
    assert {f["qty"] for f in fills} == {12.0 if lot == 1.0 else 10.0}


def test_an_order_sent_again_from_its_stored_row_is_the_same_request(portfolio, market, tmp_path):
    """A retryable failure leaves a strategy's order as an intent; the next bar sends it again from the store's row
    (its engine fields kept as bytes, ``engine_rows``): the venue gets the request of the first send, engine fields
    included, and the session ends where an unfailed one does."""
    requests = []

    class Recording(PaperBroker):
        def submit_many(self, batch):
            requests.extend(batch)
            return super().submit_many(batch)

        def submit(self, request):
            requests.append(request)
            return super().submit(request)

    broker = Recording(market.assets, config=sim_config_of(portfolio))
    with _runner(portfolio, market, broker, tmp_path, retry_limit=0) as runner:
        for _ in range(400):
            if requests:
                break
            broker.inject("unavailable", 1)  # armed each bar until the first order meets it
            runner.run(max_bars=1)
        broker.faults.clear()
        (first,) = requests
        (row,) = runner.store.orders(("intent",))
        assert row["client_order_id"] == first.client_order_id and isinstance(row["request"], bytes)
        runner.run(max_bars=1)
        again = requests[1]
        assert again == first and again.engine_order == first.engine_order
        assert runner.store.order(first.client_order_id)["status"] not in ("intent", "ambiguous")

        damaged = {**row, "request": b"\0\0\0\0" + row["request"][4:]}  # written by another layout of the fields
        with pytest.raises(SessionError, match="another version of backforge"):
            runner._send_row(damaged)


def test_engine_rows_read_back_as_the_records_fields():
    from backforge.live._engine import ENGINE_ORDER_DT, engine_row_fields, engine_rows, record_fields

    broker = PaperBroker(("AAA", "BBB"), cash=10_000.0)
    state = broker.state
    orders = np.zeros(3, dtype=state.orders.dtype)
    orders["asset"], orders["side"], orders["size"], orders["tag"] = [0, 1, 1], [1, -1, 1], [0.5, 2.0, 1e-9], [0, 3, -1]
    orders["limit_price"] = [np.nan, 101.25, np.nan]
    orders["sl_pct"] = [0.02, np.nan, np.nan]
    rows = engine_rows(orders, 0, 3)
    assert [len(r) for r in rows] == [4 + ENGINE_ORDER_DT.itemsize] * 3
    assert [engine_row_fields(r) for r in rows] == [record_fields(rec) for rec in orders.tolist()]
    assert engine_row_fields(rows[1])["limit_price"] == 101.25 and engine_row_fields(rows[0])["limit_price"] is None
    assert engine_row_fields(rows[0][:-1]) is None and engine_row_fields(b"xxxx" + rows[0][4:]) is None


def test_flatten_closes_positions_and_the_orders_table_reads_as_text(portfolio, market, tmp_path):
    """``flatten`` halts and sends a market order per position (its request stored as JSON, a strategy's orders as
    engine-field bytes); ``session_tables`` shows every ``request`` as JSON text."""
    import json

    from backforge.live import session_tables

    broker = _broker(portfolio, market)
    with _runner(portfolio, market, broker, tmp_path) as runner:
        for _ in range(400):
            runner.run(max_bars=1)
            if np.any(runner.step.state.position != 0) and not broker.open_orders():
                break
        held = {s: float(p) for s, p in zip(runner.step.assets, runner.step.state.position) if p != 0}
        assert held
        runner.flatten()
        assert runner.halted == "flatten requested"
        runner.run(max_bars=1)  # the venue fills the flatten orders on its next bar
        assert all(float(p) == 0.0 for p in broker.state.position)
    orders = session_tables(tmp_path)["orders"]
    assert orders["request"].dtype == pl.String
    requests = {r["client_order_id"]: json.loads(r["request"]) for r in orders.to_dicts()}
    flat = {cid: r for cid, r in requests.items() if "-flat-" in cid}
    assert {r["symbol"] for r in flat.values()} == set(held) and all(r["reduce_only"] for r in flat.values())
    others = [r for cid, r in requests.items() if "-flat-" not in cid]
    assert others and all(set(r) == {"engine_order"} and "size_type" in r["engine_order"] for r in others)
