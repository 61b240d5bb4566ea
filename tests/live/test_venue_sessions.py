"""Sessions of the paper/live runner on the venue adapters, against the fake venues: warm-up from the venue's
history, live bars from its feed, an order under a deterministic client id, the venue's fill recorded once,
and a restart that reconciles instead of sending anything twice."""

from __future__ import annotations

import threading
import time

import pytest

from backforge.live.session import session_tables
from backforge.live.venues import Renamed, RenamedFeed, run_session
from backforge.strategy.schema import load_portfolio
from venue_support import FAST_RETRY, track

MINUTE = 60_000_000_000
COLD = 300.0
"""Upper bound for waits that may include numba compiling the strategy step on a cold cache (a warm run
takes well under a second)."""


def strategy(tmp_path, asset: str, level: float, units: float = 10, lot_size: float = 1):
    """``lot_size`` is the strategy's (the engine's) lot: the runner rounds what it asks the venue for with it,
    as ``backforge run`` fills (0: fractional, as crypto trades)."""
    path = tmp_path / "s.yaml"
    path.write_text(f"""
name: venue-session
universe: [{asset}]
costs: {{lot_size: {lot_size}}}
strategies:
  - name: breakout
    condition: {{lhs: close, op: crosses_above, rhs: {level}}}
    action: {{buy: {{allocation: {{units: {units}}}}}}}
data: {{source: synthetic}}
""")
    return load_portfolio(path)


class Session(threading.Thread):
    """run_session on a thread, so the test can play the venue meanwhile."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(daemon=True)
        self.args, self.kwargs, self.status, self.error = args, kwargs, None, None
        self.start()

    def run(self) -> None:
        try:
            self.status = run_session(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish()
            self.error = exc

    def finish(self, timeout: float = COLD) -> dict:
        self.join(timeout)
        assert not self.is_alive(), "the session did not finish"
        if self.error is not None:
            raise self.error
        return self.status


def wait_until(predicate, timeout: float = COLD, session: "Session | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if session is not None and session.error is not None:
            raise session.error
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def started(folder, times: int = 1):
    """True once the runner logged its start (warm-up done, reconciled) ``times`` times."""
    log = folder / "events.jsonl"
    if not log.is_file():
        return False
    text = log.read_text()
    return text.count('"session_started"') + text.count('"session_recovered"') >= times


def bar_times(folder) -> list[int]:
    import json
    return [e["ts"] for e in map(json.loads, (folder / "events.jsonl").read_text().splitlines()) if e["kind"] == "bar"]


def test_alpaca_session_trades_once_and_survives_a_restart(tmp_path, alpaca_venue):
    from backforge.live.alpaca import AlpacaBroker, AlpacaFeed
    from fakes.alpaca_fake import KEY, SECRET, run

    server, venue = alpaca_venue
    now = (time.time_ns() // MINUTE - 10) * MINUTE
    venue.bars["AAPL"] = [(now + i * MINUTE, 98.0, 99.0, 97.0, 98.0 + i * 0.1, 1000.0) for i in range(5)]
    portfolio = strategy(tmp_path, "AAPL", 100.0)
    folder = tmp_path / "state"

    def parts():
        broker = track(AlpacaBroker(KEY, SECRET, url_override=server.url, stream_url=server.ws_url + "/stream",
                                    retry=FAST_RETRY, reconnect_delay=0.1, config_path="/nonexistent.toml"))
        feed = track(AlpacaFeed(["AAPL"], "1Min", KEY, SECRET, url_override=server.url,
                                stream_url=server.ws_url + "/v2/iex", retry=FAST_RETRY, reconnect_delay=0.1,
                                config_path="/nonexistent.toml"))
        return broker, feed

    broker, feed = parts()
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=2)
    wait_until(lambda: started(folder), session=session)
    run(server, venue.push_bar("AAPL", now + 5 * MINUTE, 99.0, 101.0, 99.0, 100.5, 500.0))  # crosses 100
    wait_until(lambda: venue.orders, session=session)
    (order,) = venue.orders.values()
    assert order["symbol"] == "AAPL" and order["side"] == "buy" and float(order["qty"]) == 10
    assert order["client_order_id"].startswith("venue-session-")
    run(server, venue.fill(order["client_order_id"], 10, 100.6))
    run(server, venue.push_bar("AAPL", now + 6 * MINUTE, 100.6, 101.0, 100.0, 100.8, 500.0))
    status = session.finish()
    assert status["bars"] >= 2
    tables = session_tables(folder)
    assert tables["fills"].height <= 1  # the fill reaches the store on the next bar's drain, or at the restart
    assert tables["orders"]["client_order_id"].to_list() == [order["client_order_id"]]

    venue.bars["AAPL"].append((now + 7 * MINUTE, 100.8, 101.0, 100.0, 100.9, 500.0))  # closed while down
    broker, feed = parts()  # restart: catch up the missed bar, reconcile, send nothing again
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=2)
    wait_until(lambda: started(folder, 2), session=session)
    run(server, venue.push_bar("AAPL", now + 8 * MINUTE, 100.9, 101.0, 100.0, 101.0, 500.0))
    session.finish()
    assert bar_times(folder)[-3:] == [now + 6 * MINUTE, now + 7 * MINUTE, now + 8 * MINUTE]
    assert len(venue.orders) == 1 and server.count("POST", "/v2/orders") == 1
    fills = session_tables(folder)["fills"]
    assert fills.height == 1 and fills["qty"].to_list() == [10.0] and fills["price"].to_list() == [100.6]


def test_ccxt_session_under_strategy_names(tmp_path, ccxt_venue):
    from backforge.live.ccxt_venue import CcxtBroker, CcxtFeed
    from fakes.binance_fake import KEY, SECRET, run

    server, venue = ccxt_venue
    minute_ms = 60_000
    now_ms = (time.time_ns() // MINUTE - 10) * 60_000
    venue.klines["BTCUSDT"] = [[now_ms + i * minute_ms, 98.0, 99.0, 97.0, 98.0 + i * 0.1, 2.0] for i in range(5)]
    portfolio = strategy(tmp_path, "BTC", 100.0, units=0.1, lot_size=0)
    folder = tmp_path / "state"
    mapping = {"BTC": "BTC/USDT"}

    def parts():
        broker = track(CcxtBroker("binance", KEY, SECRET, base_url=server.url, ws_url=server.ws_url, retry=FAST_RETRY,
                                  reconnect_delay=0.1, rate_limit_ms=1, config_path="/nonexistent.toml"))
        feed = track(CcxtFeed("binance", ["BTC/USDT"], "1m", base_url=server.url, ws_url=server.ws_url,
                              retry=FAST_RETRY, reconnect_delay=0.1, rate_limit_ms=1))
        return Renamed(broker, mapping), RenamedFeed(feed, mapping)

    broker, feed = parts()
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=1)
    wait_until(lambda: started(folder) and venue.kline_sockets, session=session)
    t5 = now_ms + 5 * minute_ms
    run(server, venue.push_kline("BTCUSDT", t5, 99.0, 101.0, 99.0, 100.5, 3.0, closed=True))
    run(server, venue.push_kline("BTCUSDT", t5 + minute_ms, 100.5, 100.5, 100.5, 100.5, 0.1, closed=False))
    wait_until(lambda: venue.orders, session=session)
    (order,) = venue.orders.values()
    assert (order["symbol"], order["side"], order["type"], float(order["origQty"])) == ("BTCUSDT", "BUY", "MARKET", 0.1)
    run(server, venue.fill(order["clientOrderId"], 0.1, 100.6))
    session.finish()
    orders = session_tables(folder)["orders"]
    assert orders["client_order_id"].to_list() == [order["clientOrderId"]] and orders["symbol"].to_list() == ["BTC"]

    broker, feed = parts()  # restart: the fill made after the last bar is reconciled, nothing is resent
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=1)
    wait_until(lambda: started(folder, 2), session=session)
    run(server, venue.push_kline("BTCUSDT", t5 + minute_ms, 100.5, 101.0, 100.0, 100.9, 1.0, closed=True))
    run(server, venue.push_kline("BTCUSDT", t5 + 2 * minute_ms, 100.9, 100.9, 100.9, 100.9, 0.1, closed=False))
    session.finish()
    fills = session_tables(folder)["fills"]
    assert fills.height == 1 and fills["symbol"].to_list() == ["BTC"] and fills["qty"].to_list() == [0.1]
    assert server.count("POST", "/api/v3/order") == 1


def test_oanda_session_market_order_filled_on_submit(tmp_path, oanda_venue):
    from backforge.live.oanda import OandaBroker, OandaFeed
    from fakes.oanda_fake import ACCOUNT, TOKEN, candle

    server, venue = oanda_venue
    now = (time.time_ns() // MINUTE - 10) * MINUTE
    venue.candles["EUR_USD"] = [candle(now + i * MINUTE, (1.09,) * 4, (1.0902,) * 4) for i in range(5)]
    portfolio = strategy(tmp_path, "EUR_USD", 1.1)
    folder = tmp_path / "state"

    def parts():
        broker = track(OandaBroker(TOKEN, ACCOUNT, rest_url=server.url, stream_url=server.url, retry=FAST_RETRY,
                                   reconnect_delay=0.1, heartbeat_timeout=1.0, config_path="/nonexistent.toml"))
        feed = track(OandaFeed(["EUR_USD"], "M1", TOKEN, rest_url=server.url, retry=FAST_RETRY, poll_interval=0.05,
                               config_path="/nonexistent.toml"))
        return broker, feed

    broker, feed = parts()
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=1)
    wait_until(lambda: started(folder), session=session)
    venue.candles["EUR_USD"].append(candle(now + 5 * MINUTE, (1.0995, 1.1010, 1.0990, 1.1005),
                                           (1.0997, 1.1012, 1.0992, 1.1007)))
    status = session.finish()
    (order,) = venue.orders.values()
    assert (order["units"], order["type"], order["state"]) == ("10", "MARKET", "FILLED")
    venue.candles["EUR_USD"].append(candle(now + 6 * MINUTE, (1.1005,) * 4, (1.1007,) * 4))  # while down
    broker, feed = parts()  # restart: the fill (in the submit answer and on the stream) is reconciled once
    session = Session(portfolio, broker, feed, folder, warmup_bars=50, max_bars=2)
    wait_until(lambda: started(folder, 2), session=session)
    venue.candles["EUR_USD"].append(candle(now + 7 * MINUTE, (1.1006,) * 4, (1.1008,) * 4))
    session.finish()
    assert bar_times(folder) == [now + 5 * MINUTE, now + 6 * MINUTE, now + 7 * MINUTE]
    fills = session_tables(folder)["fills"]
    assert len(venue.orders) == 1 and fills.height == 1 and fills["qty"].to_list() == [10.0]
    assert status["bars"] == 1
