"""The shared venue helpers: secrets, scrubbing, retries, conforming orders, dedupe, bar assembly (the
modules' docstring examples run in tests/test_documentation.py)."""

from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from backforge.live import BrokerError, Fill, Instrument, OrderRequest
from backforge.live._venue import (
    BarAssembler, RetryPolicy, Secret, UpdateQueue, call_with_retry, conform_order, load_credentials, scrub,
)


def test_secret_never_prints_or_pickles():
    key = Secret("sk-live-0123456789")
    assert "0123456789" not in f"{key} {key!r} {[key]} {dict(k=key)}"
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_library_logs_are_scrubbed(caplog, tmp_path):
    config = tmp_path / "brokers.toml"
    config.write_text('[venue]\ntoken = "tok-abcdef-987654"\n')
    load_credentials("venue", {"token": ["NO_SUCH_VARIABLE_X"]}, config_path=config)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ccxt.base.exchange").debug("GET %s headers %s", "/x?signature=abc", {"Authorization": "tok-abcdef-987654"})
    assert "tok-abcdef-987654" not in caplog.text and "signature=***" in caplog.text


def test_broker_keys_reach_the_shared_redactor(tmp_path):
    from backforge._secrets import redact
    config = tmp_path / "brokers.toml"
    config.write_text('[venue2]\ntoken = "tok-shared-555666777"\n')
    load_credentials("venue2", {"token": ["NO_SUCH_VARIABLE_Y"]}, config_path=config)
    assert redact("refused tok-shared-555666777") == "refused ***"


def test_bad_config_file_names_no_value(tmp_path):
    config = tmp_path / "brokers.toml"
    config.write_text('[venue]\ntoken = "unterminated-secret-value\n')
    with pytest.raises(BrokerError) as info:
        load_credentials("venue", {"token": ["NO_SUCH_VARIABLE_X"]}, config_path=config)
    assert "unterminated-secret-value" not in str(info.value) and info.value.kind == "auth"


def test_scrub_bearer_and_query_credentials():
    text = scrub("Authorization: Bearer abc.def-123 url /v3?apiKey=xyz&token=q1", [])
    assert "abc.def-123" not in text and "xyz" not in text and "q1" not in text


def test_retries_are_bounded_and_only_for_retryable():
    calls = []

    def fail(kind):
        def call():
            calls.append(kind)
            raise BrokerError(kind, kind=kind, retry_after=0.0)
        return call

    for kind, expected in (("retryable", 4), ("ambiguous", 1), ("final", 1), ("auth", 1)):
        calls.clear()
        with pytest.raises(BrokerError):
            call_with_retry(fail(kind), RetryPolicy(attempts=4), what="t", sleep=lambda s: None)
        assert len(calls) == expected
    waits = []
    with pytest.raises(BrokerError):
        call_with_retry(lambda: (_ for _ in ()).throw(BrokerError("x", kind="retryable", retry_after=99.0)),
                        RetryPolicy(attempts=2, max_wait=1.5), what="t", sleep=waits.append)
    assert waits == [1.5]  # a venue's Retry-After is honoured up to the cap


@settings(max_examples=200, deadline=None)
@given(qty=st.floats(0.0001, 1e6), price=st.floats(0.01, 1e5), step_exp=st.integers(-6, 0),
       tick_exp=st.integers(-5, -1), side=st.sampled_from(["buy", "sell"]))
def test_conformed_orders_sit_on_the_grid(qty, price, step_exp, tick_exp, side):
    inst = Instrument("X", qty_step=10.0 ** step_exp, min_qty=10.0 ** step_exp, price_tick=10.0 ** tick_exp)
    request = OrderRequest("c", "X", side, qty, "limit", limit_price=price)
    try:
        fitted, _ = conform_order(request, inst, venue="v")
    except BrokerError as exc:
        assert exc.kind == "final"
        assert qty < inst.min_qty + inst.qty_step or (price < inst.price_tick and "below one price tick" in str(exc))
        return
    assert fitted.qty <= qty + 1e-9 and qty - fitted.qty < inst.qty_step + 1e-9
    assert math.isclose(fitted.qty / inst.qty_step, round(fitted.qty / inst.qty_step), abs_tol=1e-6)
    assert math.isclose(fitted.limit_price / inst.price_tick, round(fitted.limit_price / inst.price_tick), abs_tol=1e-6)
    assert (fitted.limit_price <= price + 1e-9) if side == "buy" else (fitted.limit_price >= price - 1e-9)


def test_update_queue_drops_repeated_fills():
    updates = UpdateQueue()
    fill = Fill("f1", "c1", "v1", "X", "buy", 1.0, 10.0)
    assert updates.put(fill) and not updates.put(fill)
    assert updates.drain() == [fill] and updates.drain() == []


def test_bar_assembler_waits_for_all_symbols_then_flushes_on_a_later_bar():
    bars = BarAssembler(["A", "B"])
    bars.add("A", 60, 1, 2, 0.5, 1.5, 10)
    assert bars.next(0) is None
    bars.add("B", 60, 5, 6, 4, 5.5, 20)
    event = bars.next(0)
    assert event.ts_ns == 60 and list(event.close) == [1.5, 5.5]
    bars.add("A", 120, 1, 1, 1, 1, 1)            # B silent at 120
    bars.add("A", 180, 2, 2, 2, 2, 1)
    bars.add("B", 180, 3, 3, 3, 3, 1)
    first, second = bars.next(0), bars.next(0)
    assert first.ts_ns == 120 and np.isnan(first.close[1]) and second.ts_ns == 180
    bars.add("A", 60, 9, 9, 9, 9, 9)             # a replayed old bar is dropped
    assert bars.next(0) is None


def test_rewind_hands_out_missed_bars_before_newer_stream_bars():
    bars = BarAssembler(["A"])
    bars.add("A", 300, 3, 3, 3, 3, 1)  # the stream delivered a bar before the runner asked to catch up
    bars.rewind(100, [("A", 200, 2, 2, 2, 2, 1), ("A", 100, 1, 1, 1, 1, 1), ("A", 300, 3, 3, 3, 3, 1)])
    assert [bars.next(0).ts_ns for _ in range(2)] == [200, 300] and bars.next(0) is None
