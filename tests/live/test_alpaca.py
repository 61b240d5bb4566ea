"""AlpacaBroker and AlpacaFeed through alpaca-py against a fake Alpaca on 127.0.0.1."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from backforge.live import BrokerError, BrokerOrder, Fill, OrderRequest
from backforge.live.alpaca import AlpacaBroker, AlpacaFeed
from venue_support import FAST_RETRY, collect, track
from fakes.alpaca_fake import KEY, SECRET, T0, run


def make_broker(server, **kwargs) -> AlpacaBroker:
    options = dict(key_id=KEY, secret_key=SECRET, url_override=server.url, stream_url=server.ws_url + "/stream",
                   timeout=1.0, retry=FAST_RETRY, reconnect_delay=0.1, config_path="/nonexistent.toml")
    options.update(kwargs)
    return track(AlpacaBroker(**options))


def fills_of(items):
    return [i for i in items if isinstance(i, Fill)]


def test_full_session_reconcile_trade_disconnect(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server)
    broker.connect()
    try:
        assert broker.open_orders() == [] and broker.fills() == [] and broker.positions() == {}
        assert broker.account().cash == 100_000.0
        inst = broker.instruments(["AAPL", "GOOG"])
        assert inst["GOOG"].qty_step == 1.0 and inst["AAPL"].qty_step < 1e-6 and inst["AAPL"].price_tick == 0.01
        ack = broker.submit(OrderRequest("s1-b1-0-0", "AAPL", "buy", 10, "limit", limit_price=185.5,
                                         time_in_force="day"))
        assert (ack.status, ack.client_order_id, ack.qty, ack.limit_price) == ("accepted", "s1-b1-0-0", 10, 185.5)
        run(server, venue.fill("s1-b1-0-0", 10, 185.5))
        items = collect(broker, lambda xs: any(isinstance(x, BrokerOrder) and x.status == "filled" for x in xs))
        (fill,) = fills_of(items)
        assert (fill.qty, fill.price, fill.side, fill.client_order_id) == (10, 185.5, "buy", "s1-b1-0-0")
        assert broker.positions()["AAPL"].qty == 10
        assert broker.account().cash == pytest.approx(100_000 - 1855)
        assert [f.fill_id for f in broker.fills()] == [fill.fill_id]  # REST and stream agree on the id
        assert broker.order("s1-b1-0-0").status == "filled"
        assert broker.order("never-sent") is None
    finally:
        broker.close()
    assert not broker._connected.is_set()


def test_bracket_order_sent_natively(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server, stream=False)
    broker.submit(OrderRequest("br-1", "AAPL", "buy", 5, "market", take_profit=200.004, stop_loss=170.0))
    sent = venue.order_json("br-1")
    assert sent["order_class"] == "bracket"


def test_partial_fills_then_cancel(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server)
    broker.connect()
    try:
        broker.submit(OrderRequest("p-1", "MSFT", "buy", 10, "limit", limit_price=300.0))
        run(server, venue.fill("p-1", 3, 300.0))
        run(server, venue.fill("p-1", 4, 299.5))
        items = collect(broker, lambda xs: len(fills_of(xs)) == 2)
        assert [f.qty for f in fills_of(items)] == [3, 4]
        assert [o.status for o in items if isinstance(o, BrokerOrder)][-1] == "partially_filled"
        cancelled = broker.cancel("p-1")
        assert cancelled.status == "cancelled" and cancelled.filled_qty == 7
        assert broker.positions()["MSFT"].qty == 7
    finally:
        broker.close()


def test_rejection_is_final_with_reason(alpaca_venue):
    server, _ = alpaca_venue
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError) as info:
        broker.submit(OrderRequest("r-1", "GOOG", "buy", 5000, "limit", limit_price=150.0))
    assert info.value.kind == "final" and "insufficient buying power" in str(info.value)
    assert server.count("POST", "/v2/orders") == 1


def test_timeout_after_accept_is_ambiguous_then_found(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server, stream=False, timeout=0.3)
    server.fault("POST", "/v2/orders", stall=0.8)
    with pytest.raises(BrokerError) as info:
        broker.submit(OrderRequest("t-1", "AAPL", "buy", 1))
    assert info.value.kind == "ambiguous"
    assert server.count("POST", "/v2/orders") == 1  # never retried blindly
    time.sleep(0.6)
    found = broker.order("t-1")
    assert found is not None and found.status == "accepted"
    # a resubmit with the same client id returns the venue's order instead of a second one
    again = broker.submit(OrderRequest("t-1", "AAPL", "buy", 1))
    assert again.venue_order_id == found.venue_order_id and len(venue.orders) == 1


def test_http_429_honours_retry_after(alpaca_venue):
    server, _ = alpaca_venue
    broker = make_broker(server, stream=False)
    server.fault("GET", "/v2/account", status=429, headers={"Retry-After": "0.3"},
                 body='{"code":42910000,"message":"rate limit exceeded"}')
    started = time.monotonic()
    assert broker.account().currency == "USD"
    assert time.monotonic() - started >= 0.3
    assert server.count("GET", "/v2/account") == 2
    server.fault("GET", "/v2/positions", status=429, headers={"Retry-After": "0"}, times=10)
    with pytest.raises(BrokerError) as info:
        broker.positions()
    assert info.value.kind == "retryable" and server.count("GET", "/v2/positions") == FAST_RETRY.attempts


def test_stream_drop_backfills_missed_fill_once(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server)
    broker.connect()
    try:
        broker.submit(OrderRequest("d-1", "AAPL", "buy", 4, "limit", limit_price=180.0))
        collect(broker, lambda xs: any(isinstance(x, BrokerOrder) for x in xs))
        server.drop_sockets()
        run(server, venue.fill("d-1", 4, 180.0, push=False))  # executed while the stream was down
        items = collect(broker, lambda xs: len(fills_of(xs)) >= 1)
        run(server, venue.replay_last_fill())  # the venue replays it on the new connection
        time.sleep(0.3)
        items += broker.poll(0.1)
        assert len(fills_of(items)) == 1 and fills_of(items)[0].qty == 4
        assert broker._connections >= 2
    finally:
        broker.close()


def test_restart_sees_external_order(alpaca_venue):
    server, venue = alpaca_venue
    venue.new_order({"symbol": "MSFT", "qty": 2, "side": "sell", "type": "limit", "limit_price": "400",
                     "time_in_force": "gtc", "client_order_id": "placed-by-hand"})
    broker = make_broker(server, stream=False)
    (order,) = broker.open_orders()
    assert (order.client_order_id, order.side, order.qty, order.limit_price) == ("placed-by-hand", "sell", 2, 400)


def test_wrong_keys_one_clear_error_no_retry_storm(alpaca_venue, caplog):
    server, _ = alpaca_venue
    caplog.set_level(logging.DEBUG)
    broker = make_broker(server, key_id="PKWRONGKEY999", secret_key="wrong-secret-value-xyz")
    with pytest.raises(BrokerError) as info:
        broker.connect()
    assert info.value.kind == "auth" and "refused" in str(info.value)
    assert server.count("GET", "/v2/account") == 1
    for text in (str(info.value), repr(broker), caplog.text, repr(broker.__dict__)):
        assert "wrong-secret-value-xyz" not in text and "PKWRONGKEY999" not in text


def test_missing_keys_name_the_variables(monkeypatch):
    for name in ("APCA_API_KEY_ID", "ALPACA_API_KEY", "APCA_API_SECRET_KEY", "ALPACA_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BrokerError, match="set APCA_API_KEY_ID or ALPACA_API_KEY") as info:
        AlpacaBroker(config_path="/nonexistent.toml")
    assert info.value.kind == "auth"


def test_keys_from_config_file(tmp_path, alpaca_venue, monkeypatch):
    for name in ("APCA_API_KEY_ID", "ALPACA_API_KEY", "APCA_API_SECRET_KEY", "ALPACA_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    server, _ = alpaca_venue
    config = tmp_path / "brokers.toml"
    config.write_text(f'[alpaca]\nkey_id = "{KEY}"\nsecret_key = "{SECRET}"\n')
    broker = track(AlpacaBroker(config_path=str(config), url_override=server.url, stream=False, retry=FAST_RETRY))
    assert broker.account().currency == "USD"


def test_unknown_symbol_and_tick_rules(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError, match=r"does not list 'AAPLL'; closest: AAPL, AAP") as info:
        broker.instruments(["AAPLL"])
    assert info.value.kind == "final"
    ack = broker.submit(OrderRequest("tick-1", "AAPL", "buy", 1.5, "limit", limit_price=185.123, time_in_force="day"))
    assert ack.limit_price == 185.12 and "rounded" in ack.reason and venue.order_json("tick-1")["limit_price"] == 185.12
    ack = broker.submit(OrderRequest("tick-2", "GOOG", "buy", 2.7, "limit", limit_price=0.56789))
    assert ack.qty == 2 and ack.limit_price == 0.5678  # whole shares; sub-dollar tick 0.0001
    with pytest.raises(BrokerError, match="below the minimum 1"):
        broker.submit(OrderRequest("tick-3", "GOOG", "buy", 0.4))


def test_feed_history_stream_and_reconnect_backfill(alpaca_venue):
    server, venue = alpaca_venue
    minute = 60_000_000_000
    for i in range(5):
        for s, base in (("AAPL", 100.0), ("MSFT", 300.0)):
            venue.bars.setdefault(s, []).append((T0 + i * minute, base + i, base + i + 1, base + i - 1, base + i + .5, 1000.0))
    feed = track(AlpacaFeed(["AAPL", "MSFT"], "1Min", KEY, SECRET, url_override=server.url,
                            stream_url=server.ws_url + "/v2/iex", retry=FAST_RETRY, reconnect_delay=0.1,
                            config_path="/nonexistent.toml"))
    md = feed.history(3, end_ns=T0 + 4 * minute)
    assert md.assets == ("AAPL", "MSFT") and md.n_bars == 3
    assert md.timestamps[0] == T0 + 2 * minute and np.allclose(md.close[:, 1], [302.5, 303.5, 304.5])
    feed.connect()
    try:
        t5 = T0 + 5 * minute
        run(server, venue.push_bar("AAPL", t5, 105, 106, 104, 105.5, 10))
        run(server, venue.push_bar("MSFT", t5, 305, 306, 304, 305.5, 20))
        bar = feed.next_bar(timeout=3)
        assert bar.ts_ns == t5 and list(bar.close) == [105.5, 305.5]
        server.drop_sockets()
        t6 = T0 + 6 * minute
        venue.bars["AAPL"].append((t6, 106, 107, 105, 106.5, 10))  # closed while the stream was down
        venue.bars["MSFT"].append((t6, 306, 307, 305, 306.5, 10))
        bar = feed.next_bar(timeout=5)
        assert bar is not None and bar.ts_ns == t6 and list(bar.close) == [106.5, 306.5]
    finally:
        feed.close()


def test_replace_changes_a_working_order(alpaca_venue):
    server, venue = alpaca_venue
    broker = make_broker(server, stream=False)
    broker.submit(OrderRequest("rep-1", "AAPL", "buy", 5, "limit", limit_price=180.0))
    new = broker.replace("rep-1", new_client_order_id="rep-2", limit_price=181.0)
    assert (new.client_order_id, new.limit_price, new.status) == ("rep-2", 181.0, "accepted")
    assert broker.order("rep-1").status == "cancelled" and [o.client_order_id for o in broker.open_orders()] == ["rep-2"]


def test_feed_refuses_a_live_timeframe_the_stream_lacks():
    feed = track(AlpacaFeed(["AAPL"], "5Min", KEY, SECRET, config_path="/nonexistent.toml"))
    with pytest.raises(BrokerError, match="minute bars only"):
        feed.connect()
