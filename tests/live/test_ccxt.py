"""CcxtBroker and CcxtFeed through ccxt / ccxt.pro against a fake Binance spot testnet on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from backforge.live import BrokerError, BrokerOrder, Fill, OrderRequest
from backforge.live.ccxt_venue import CcxtBroker, CcxtFeed
from venue_support import FAST_RETRY, collect, track
from fakes.binance_fake import KEY, SECRET, T0_MS, run, wait_for


def make_broker(server, **kwargs) -> CcxtBroker:
    options = dict(api_key=KEY, secret=SECRET, base_url=server.url, ws_url=server.ws_url, timeout=1.0,
                   retry=FAST_RETRY, reconnect_delay=0.1, config_path="/nonexistent.toml", rate_limit_ms=1)
    options.update(kwargs)
    return track(CcxtBroker("binance", **options))


def fills_of(items):
    return [i for i in items if isinstance(i, Fill)]


def test_full_session_and_partial_fills(ccxt_venue):
    server, venue = ccxt_venue
    broker = make_broker(server)
    broker.connect()
    try:
        wait_for(lambda: venue.user_sockets)
        assert broker.open_orders() == [] and broker.positions() == {}
        inst = broker.instruments(["BTC/USDT"])["BTC/USDT"]
        assert (inst.qty_step, inst.min_qty, inst.price_tick, inst.min_notional) == (1e-5, 1e-5, 0.01, 5.0)
        assert broker.fills() == []
        ack = broker.submit(OrderRequest("s1-b1-0-0", "BTC/USDT", "buy", 0.02, "limit", limit_price=41000.0))
        assert (ack.status, ack.client_order_id, ack.qty) == ("accepted", "s1-b1-0-0", 0.02)
        assert venue.by_client_id("s1-b1-0-0")["orderId"] == int(ack.venue_order_id)  # newClientOrderId sent
        run(server, venue.fill("s1-b1-0-0", 0.005, 41000.0))
        items = collect(broker, lambda xs: any(isinstance(x, BrokerOrder) and x.status == "partially_filled"
                                               and x.filled_qty == 0.005 for x in xs) and fills_of(xs))
        run(server, venue.fill("s1-b1-0-0", 0.015, 40999.0))
        items += collect(broker, lambda xs: len(fills_of(xs)) == 1
                         and any(isinstance(x, BrokerOrder) and x.status == "filled" for x in xs))
        assert [(f.qty, f.price) for f in fills_of(items)] == [(0.005, 41000.0), (0.015, 40999.0)]
        assert {f.client_order_id for f in fills_of(items)} == {"s1-b1-0-0"}
        assert [f.fill_id for f in broker.fills()] == [f.fill_id for f in fills_of(items)]
        assert broker.positions()["BTC/USDT"].qty == pytest.approx(0.02)
        account = broker.account()
        assert account.currency == "USDT" and account.cash == pytest.approx(10_000 - 0.005 * 41000 - 0.015 * 40999)
        assert account.equity == pytest.approx(account.cash + 0.02 * 42_000)
        assert broker.order("s1-b1-0-0").status == "filled"
        assert broker.reconnects == 0
    finally:
        broker.close()


def test_cancel_and_duplicate_client_id(ccxt_venue):
    server, venue = ccxt_venue
    broker = make_broker(server, stream=False)
    first = broker.submit(OrderRequest("dup-1", "ETH/USDT", "buy", 0.5, "limit", limit_price=2000.0))
    again = broker.submit(OrderRequest("dup-1", "ETH/USDT", "buy", 0.5, "limit", limit_price=2000.0))
    assert again.venue_order_id == first.venue_order_id and len(venue.orders) == 1
    with pytest.raises(BrokerError, match="cannot replace"):
        broker.replace("dup-1", new_client_order_id="dup-2", limit_price=2001.0)  # the runner cancels and resubmits
    cancelled = broker.cancel("dup-1")
    assert cancelled.status == "cancelled"
    assert broker.cancel("never-sent") is None


def test_rejection_is_final(ccxt_venue):
    server, _ = ccxt_venue
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError) as info:
        broker.submit(OrderRequest("r-1", "BTC/USDT", "buy", 1.0, "limit", limit_price=41000.0))
    assert info.value.kind == "final" and "insufficient balance" in str(info.value)
    assert server.count("POST", "/api/v3/order") == 1


def test_timeout_after_accept_is_ambiguous_then_found(ccxt_venue):
    server, venue = ccxt_venue
    broker = make_broker(server, stream=False)
    broker.instruments(["BTC/USDT"])
    server.fault("POST", "/api/v3/order", stall=1.4)
    with pytest.raises(BrokerError) as info:
        broker.submit(OrderRequest("t-1", "BTC/USDT", "buy", 0.001, "limit", limit_price=40000.0))
    assert info.value.kind == "ambiguous"
    assert not re.search(r"signature=[0-9a-f]{8}", str(info.value)) and SECRET not in str(info.value)
    assert server.count("POST", "/api/v3/order") == 1
    found = broker.order("t-1")
    assert found is not None and found.status == "accepted" and len(venue.orders) == 1


def test_http_429_honours_retry_after(ccxt_venue):
    server, _ = ccxt_venue
    broker = make_broker(server, stream=False)
    broker.instruments(["BTC/USDT"])
    server.fault("GET", "/api/v3/openOrders", status=429, headers={"Retry-After": "0.3"},
                 body='{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}')
    started = time.monotonic()
    assert broker.open_orders() == []
    assert time.monotonic() - started >= 0.3 and server.count("GET", "/api/v3/openOrders") == 2
    server.fault("GET", "/api/v3/openOrders", status=429, headers={"Retry-After": "0"}, times=10,
                 body='{"code":-1003,"msg":"Too many requests"}')
    with pytest.raises(BrokerError) as info:
        broker.open_orders()
    assert info.value.kind == "retryable" and server.count("GET", "/api/v3/openOrders") == 2 + FAST_RETRY.attempts


def test_stream_drop_backfills_missed_fill_once(ccxt_venue):
    server, venue = ccxt_venue
    broker = make_broker(server)
    broker.connect()
    try:
        wait_for(lambda: venue.user_sockets)
        broker.submit(OrderRequest("d-1", "BTC/USDT", "buy", 0.01, "limit", limit_price=40000.0))
        collect(broker, lambda xs: any(isinstance(x, BrokerOrder) for x in xs))
        server.drop_sockets()
        order = run(server, venue.fill("d-1", 0.01, 40000.0, push=False))  # executed while disconnected
        items = collect(broker, lambda xs: len(fills_of(xs)) >= 1)
        wait_for(lambda: venue.user_sockets)
        trade_id = venue.trades[-1]["id"]
        run(server, venue.push_user(venue.execution_report(order, "TRADE", 0.01, 40000.0, trade_id)))  # replayed
        time.sleep(0.3)
        items += broker.poll(0.1)
        assert len(fills_of(items)) == 1 and fills_of(items)[0].fill_id == f"BTC/USDT:{trade_id}"
        assert broker.reconnects >= 1
    finally:
        broker.close()


def test_restart_sees_external_order(ccxt_venue):
    server, venue = ccxt_venue
    venue.new_order({"symbol": "ETHUSDT", "quantity": "0.1000", "price": "2100.00", "type": "LIMIT", "side": "SELL"})
    first = make_broker(server, stream=False)
    first.instruments(["ETH/USDT"])
    first.submit(OrderRequest("mine-1", "ETH/USDT", "buy", 0.1, "limit", limit_price=1900.0))
    restarted = make_broker(server, stream=False)
    restarted.instruments(["ETH/USDT"])
    orders = {o.client_order_id: o for o in restarted.open_orders()}
    assert set(orders) == {"x-ext1001", "mine-1"}
    assert (orders["x-ext1001"].side, orders["x-ext1001"].qty, orders["x-ext1001"].limit_price) == ("sell", 0.1, 2100.0)
    assert restarted.order("mine-1").venue_order_id == orders["mine-1"].venue_order_id


def test_rate_limiter_is_on(ccxt_venue):
    server, _ = ccxt_venue
    broker = make_broker(server, stream=False, rate_limit_ms=20)  # openOrders without a symbol weighs 80 at Binance
    assert broker._rest.enableRateLimit
    broker.open_orders()
    started = time.monotonic()
    broker.open_orders()
    assert time.monotonic() - started >= 0.2


def test_wrong_keys_one_clear_error_no_retry_storm(ccxt_venue, caplog):
    server, _ = ccxt_venue
    caplog.set_level(logging.DEBUG)
    broker = make_broker(server, api_key="wrong-key-abcdef", secret="wrong-secret-value-xyz")
    with pytest.raises(BrokerError) as info:
        broker.connect()
    assert info.value.kind == "auth" and "refused" in str(info.value)
    assert server.count("GET", "/api/v3/account") == 1
    for text in (str(info.value), repr(broker), caplog.text):
        assert "wrong-secret-value-xyz" not in text and "wrong-key-abcdef" not in text


def test_unknown_exchange_and_symbol(ccxt_venue):
    server, _ = ccxt_venue
    with pytest.raises(BrokerError, match="no exchange 'binanse'; closest: binance"):
        CcxtBroker("binanse", KEY, SECRET, config_path="/nonexistent.toml")
    broker = make_broker(server, stream=False)
    with pytest.raises(BrokerError, match=r"does not list 'BTC/USDTT'; closest: BTC/USDT, BTC/USDC"):
        broker.instruments(["BTC/USDTT"])


def test_step_tick_and_minimums(ccxt_venue):
    server, venue = ccxt_venue
    broker = make_broker(server, stream=False)
    ack = broker.submit(OrderRequest("k-1", "BTC/USDT", "sell", 0.0123456, "limit", limit_price=43000.004))
    assert ack.qty == 0.01234 and ack.limit_price == 43000.01 and "rounded" in ack.reason  # sell rounds up
    assert venue.by_client_id("k-1")["price"] == "43000.01"
    with pytest.raises(BrokerError, match="below the minimum 1e-05"):
        broker.submit(OrderRequest("k-2", "BTC/USDT", "buy", 0.000004, "limit", limit_price=40000.0))
    with pytest.raises(BrokerError, match="notional of 4: below the minimum 5"):
        broker.submit(OrderRequest("k-3", "BTC/USDT", "buy", 0.0001, "limit", limit_price=40000.0))
    assert server.count("POST", "/api/v3/order") == 1


def test_keys_from_environment(ccxt_venue, monkeypatch):
    server, _ = ccxt_venue
    monkeypatch.setenv("BACKFORGE_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BACKFORGE_BINANCE_SECRET", SECRET)
    broker = track(CcxtBroker("binance", base_url=server.url, ws_url=server.ws_url, stream=False, retry=FAST_RETRY,
                              config_path="/nonexistent.toml"))
    assert broker.account().currency == "USDT"


def test_feed_history_stream_and_reconnect_backfill(ccxt_venue):
    server, venue = ccxt_venue
    minute = 60_000
    for i in range(5):
        venue.klines.setdefault("BTCUSDT", []).append([T0_MS + i * minute, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 2.0])
        venue.klines.setdefault("ETHUSDT", []).append([T0_MS + i * minute, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 3.0])
    feed = track(CcxtFeed("binance", ["BTC/USDT", "ETH/USDT"], "1m", base_url=server.url, ws_url=server.ws_url,
                          retry=FAST_RETRY, reconnect_delay=0.1, rate_limit_ms=1))
    md = feed.history(3, end_ns=(T0_MS + 4 * minute) * 1_000_000)
    assert md.n_bars == 3 and np.allclose(md.close[:, 0], [102.5, 103.5, 104.5])
    feed.connect()
    try:
        wait_for(lambda: sum(len(s) for s in venue.kline_sockets.values()) == 2)
        t5, t6, t7 = (T0_MS + k * minute for k in (5, 6, 7))
        for symbol, base in (("BTCUSDT", 100.0), ("ETHUSDT", 10.0)):
            run(server, venue.push_kline(symbol, t5, base, base + 1, base - 1, base + 0.25, 1.0, closed=False))
            run(server, venue.push_kline(symbol, t5, base, base + 2, base - 1, base + 0.5, 2.0, closed=True))
            run(server, venue.push_kline(symbol, t6, base + 0.5, base + 0.5, base + 0.5, base + 0.5, 0.1, closed=False))
        bar = feed.next_bar(timeout=3)
        assert bar.ts_ns == t5 * 1_000_000 and list(bar.close) == [100.5, 10.5] and list(bar.high) == [102.0, 12.0]
        server.drop_sockets()
        for symbol, base in (("BTCUSDT", 200.0), ("ETHUSDT", 20.0)):  # closed while the stream was down
            venue.klines[symbol].append([t6, base, base + 1, base - 1, base + 0.5, 1.0])
            venue.klines[symbol].append([t7, base, base, base, base, 0.1])
        bar = feed.next_bar(timeout=5)
        assert bar is not None and bar.ts_ns == t6 * 1_000_000 and list(bar.close) == [200.5, 20.5]
        assert feed.reconnects >= 1
    finally:
        feed.close()
