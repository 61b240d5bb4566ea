"""OandaBroker and OandaFeed (httpx on OANDA v20 REST + streaming) against a fake OANDA practice account."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from backforge.live import BrokerError, BrokerOrder, Fill, OrderRequest
from backforge.live.oanda import OandaBroker, OandaFeed
from venue_support import FAST_RETRY, collect, track
from fakes.oanda_fake import ACCOUNT, T0, TOKEN, candle, drop_streams, on_loop


def make_broker(server, **kwargs) -> OandaBroker:
    options = dict(token=TOKEN, account_id=ACCOUNT, rest_url=server.url, stream_url=server.url, timeout=1.0,
                   retry=FAST_RETRY, reconnect_delay=0.1, heartbeat_timeout=1.0, config_path="/nonexistent.toml")
    options.update(kwargs)
    return track(OandaBroker(**options))


def fills_of(items):
    return [i for i in items if isinstance(i, Fill)]


def test_full_session_market_order_with_native_bracket(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server)
    broker.connect()
    try:
        assert broker.open_orders() == [] and broker.fills() == [] and broker.positions() == {}
        assert broker.account() == broker.account() and broker.account().cash == 100_000.0
        inst = broker.instruments(["EUR_USD", "USD_JPY"])
        assert (inst["EUR_USD"].qty_step, inst["EUR_USD"].price_tick, inst["USD_JPY"].price_tick) == (1.0, 1e-5, 1e-3)
        ack = broker.submit(OrderRequest("s1-b1-0-0", "EUR_USD", "buy", 1000, take_profit=1.12, stop_loss=1.08))
        assert (ack.status, ack.filled_qty, ack.client_order_id) == ("filled", 1000, "s1-b1-0-0")
        sent = venue.find("@s1-b1-0-0")
        assert sent["units"] == "1000" and sent["takeProfitOnFill"] == {"price": "1.12000"}
        assert sent["stopLossOnFill"] == {"price": "1.08000"}
        items = collect(broker, lambda xs: len(fills_of(xs)) >= 1)
        (fill,) = fills_of(items)
        assert (fill.qty, fill.price, fill.side, fill.symbol) == (1000, 1.1001, "buy", "EUR_USD")
        time.sleep(0.2)
        assert fills_of(broker.poll(0.1)) == []  # the stream's copy of the fill is dropped
        assert [f.fill_id for f in broker.fills()] == [fill.fill_id]
        assert broker.positions()["EUR_USD"].qty == 1000
        sell = broker.submit(OrderRequest("s1-b2-0-0", "EUR_USD", "sell", 400))
        assert sell.status == "filled" and broker.positions()["EUR_USD"].qty == 600
    finally:
        broker.close()


def test_limit_partial_fills_and_cancel(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server)
    broker.connect()
    try:
        ack = broker.submit(OrderRequest("p-1", "EUR_USD", "sell", 10_000, "limit", limit_price=1.105))
        assert (ack.status, ack.order_type, ack.limit_price, ack.side) == ("accepted", "limit", 1.105, "sell")
        on_loop(server, venue.fill, "p-1", 4000, 1.105)
        items = collect(broker, lambda xs: any(isinstance(x, BrokerOrder) and x.status == "partially_filled" for x in xs))
        assert [f.qty for f in fills_of(items)] == [4000]
        assert broker.positions()["EUR_USD"].qty == -4000
        assert [o.client_order_id for o in broker.open_orders()] == ["p-1"]
        cancelled = broker.cancel("p-1")
        assert cancelled.status == "cancelled" and cancelled.filled_qty == 4000
        assert broker.open_orders() == []
    finally:
        broker.close()


def test_rejections_are_final_with_the_venue_reason(oanda_venue):
    server, _ = oanda_venue
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError, match="INSUFFICIENT_MARGIN") as info:
        broker.submit(OrderRequest("r-1", "XAU_USD", "buy", 10_000_000))
    assert info.value.kind == "final"
    assert broker.order("r-1").status == "cancelled"


def test_duplicate_client_id_returns_the_existing_order(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server, stream=False)
    first = broker.submit(OrderRequest("dup-1", "EUR_USD", "buy", 100, "limit", limit_price=1.09))
    again = broker.submit(OrderRequest("dup-1", "EUR_USD", "buy", 100, "limit", limit_price=1.09))
    assert again.venue_order_id == first.venue_order_id and len(venue.orders) == 1


def test_timeout_after_accept_is_ambiguous_then_found(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server, stream=False, timeout=0.3)
    broker.instruments(["EUR_USD"])
    server.fault("POST", f"/v3/accounts/{ACCOUNT}/orders", stall=0.8)
    with pytest.raises(BrokerError) as info:
        broker.submit(OrderRequest("t-1", "EUR_USD", "buy", 100, "limit", limit_price=1.09))
    assert info.value.kind == "ambiguous"
    assert server.count("POST", f"/v3/accounts/{ACCOUNT}/orders") == 1
    time.sleep(0.6)
    found = broker.order("t-1")
    assert found is not None and found.status == "accepted" and len(venue.orders) == 1


def test_http_429_honours_retry_after(oanda_venue):
    server, _ = oanda_venue
    broker = make_broker(server, stream=False)
    server.fault("GET", f"/v3/accounts/{ACCOUNT}/summary", status=429, headers={"Retry-After": "0.3"},
                 body='{"errorMessage":"Requests are being rate limited"}')
    started = time.monotonic()
    assert broker.account().currency == "USD"
    assert time.monotonic() - started >= 0.3 and server.count("GET", f"/v3/accounts/{ACCOUNT}/summary") == 2
    server.fault("GET", f"/v3/accounts/{ACCOUNT}/openPositions", status=429, headers={"Retry-After": "0"}, times=10)
    with pytest.raises(BrokerError) as info:
        broker.positions()
    assert info.value.kind == "retryable"
    assert server.count("GET", f"/v3/accounts/{ACCOUNT}/openPositions") == FAST_RETRY.attempts


def test_stream_drop_backfills_missed_fill_once(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server)
    broker.connect()
    try:
        broker.submit(OrderRequest("d-1", "EUR_USD", "buy", 500, "limit", limit_price=1.099))
        collect(broker, lambda xs: any(isinstance(x, BrokerOrder) for x in xs))
        drop_streams(server, venue)
        txn = on_loop(server, venue.fill, "d-1", 500, 1.099, True)  # executed while the stream was down
        items = collect(broker, lambda xs: len(fills_of(xs)) >= 1)
        on_loop(server, lambda: [q.put_nowait(txn) for q in venue.streams])  # replayed on the new stream
        time.sleep(0.3)
        items += broker.poll(0.1)
        assert [f.fill_id for f in fills_of(items)] == [txn["id"]]
        assert broker.reconnects >= 1 and broker.order("d-1").status == "filled"
    finally:
        broker.close()


def test_silent_stream_counts_as_dropped(oanda_venue):
    server, venue = oanda_venue
    venue.heartbeat = 5.0  # no heartbeat within the broker's 0.4 s: the stream is reopened
    broker = make_broker(server, heartbeat_timeout=0.4)
    broker.connect()
    try:
        deadline = time.monotonic() + 5
        while broker.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.reconnects >= 1
    finally:
        broker.close()


def test_restart_sees_external_order(oanda_venue):
    server, venue = oanda_venue
    other = make_broker(server, stream=False)
    other.submit(OrderRequest("by-hand", "USD_JPY", "buy", 50, "limit", limit_price=144.0))
    restarted = make_broker(server, stream=False)
    (order,) = restarted.open_orders()
    assert (order.client_order_id, order.symbol, order.qty, order.limit_price) == ("by-hand", "USD_JPY", 50, 144.0)


def test_wrong_token_one_clear_error_no_retry_storm(oanda_venue, caplog):
    server, _ = oanda_venue
    caplog.set_level(logging.DEBUG)
    broker = make_broker(server, token="wrong-token-0123456789")
    with pytest.raises(BrokerError) as info:
        broker.connect()
    assert info.value.kind == "auth" and "refused" in str(info.value)
    assert server.count("GET", f"/v3/accounts/{ACCOUNT}/summary") == 1
    for text in (str(info.value), repr(broker), caplog.text):
        assert "wrong-token-0123456789" not in text


def test_unknown_symbol_and_precision(oanda_venue):
    server, venue = oanda_venue
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError, match=r"does not list 'EURUSD'; closest: EUR_USD"):
        broker.instruments(["EURUSD"])
    ack = broker.submit(OrderRequest("x-1", "EUR_USD", "buy", 100.7, "limit", limit_price=1.0912345))
    assert ack.qty == 100 and ack.limit_price == 1.09123 and "rounded" in ack.reason
    assert venue.find("@x-1")["price"] == "1.09123" and venue.find("@x-1")["units"] == "100"
    with pytest.raises(BrokerError, match="below the minimum 1"):
        broker.submit(OrderRequest("x-2", "EUR_USD", "buy", 0.5))


def test_feed_bid_ask_history_and_polled_bars(oanda_venue):
    server, venue = oanda_venue
    minute = 60_000_000_000
    for symbol, mid in (("EUR_USD", 1.1), ("USD_JPY", 145.0)):
        venue.candles[symbol] = [candle(T0 + i * minute, (mid + i * 0.001,) * 4, (mid + i * 0.001 + 0.0002,) * 4)
                                 for i in range(5)]
    feed = track(OandaFeed(["EUR_USD", "USD_JPY"], "M1", TOKEN, rest_url=server.url, retry=FAST_RETRY,
                           poll_interval=0.1, config_path="/nonexistent.toml"))
    md = feed.history(3, end_ns=T0 + 4 * minute)
    assert md.n_bars == 3 and md.bid is not None and np.allclose(md.bid.close[:, 0], [1.102, 1.103, 1.104])
    assert np.allclose(md.close[:, 0], [1.1021, 1.1031, 1.1041]) and np.allclose(md.ask.close[:, 1], [145.0022, 145.0032, 145.0042])
    feed.connect()
    try:
        for symbol, mid in (("EUR_USD", 1.2), ("USD_JPY", 150.0)):
            venue.candles[symbol].append(candle(T0 + 5 * minute, (mid,) * 4, (mid + 0.0002,) * 4))
            venue.candles[symbol].append(candle(T0 + 6 * minute, (mid,) * 4, (mid,) * 4, complete=False))
        bar = feed.next_bar(timeout=3)
        assert bar.ts_ns == T0 + 5 * minute and np.allclose(bar.close, [1.2001, 150.0001])
        assert np.allclose(bar.bid[3], [1.2, 150.0]) and feed.next_bar(timeout=0.3) is None  # incomplete candle waits
    finally:
        feed.close()


def test_replace_changes_a_working_order(oanda_venue):
    server, _ = oanda_venue
    broker = make_broker(server, stream=False)
    broker.submit(OrderRequest("rep-1", "EUR_USD", "buy", 100, "limit", limit_price=1.09))
    new = broker.replace("rep-1", new_client_order_id="rep-2", limit_price=1.091)
    assert (new.client_order_id, new.limit_price, new.status) == ("rep-2", 1.091, "accepted")
    assert broker.order("rep-1").status == "cancelled" and [o.client_order_id for o in broker.open_orders()] == ["rep-2"]
