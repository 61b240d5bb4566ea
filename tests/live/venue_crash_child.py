"""The runner process of the per-venue crash test (tests/live/test_venue_crash.py): a replay of a small
synthetic data set, a strategy that enters and leaves often, and the real venue adapter pointed at a fake venue
that lives in the test process (so it outlives every kill). Forked from a warm fork server like crash_child."""

from __future__ import annotations

import numpy as np

from backforge.data.synth import gbm
from backforge.live import PaperRunner, ReplayFeed
from backforge.live import runner as runner_module
from backforge.strategy.schema import load_portfolio

START = 6
UNITS = {"alpaca": 10, "ccxt": 0.1, "oanda": 10}
ASSETS = {"alpaca": ("AAPL", "MSFT"), "ccxt": ("BTC", "ETH"), "oanda": ("EUR_USD", "USD_JPY")}
CCXT_SYMBOLS = {"BTC": "BTC/USDT", "ETH": "ETH/USDT"}
VENUE_SYMBOLS = {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}


def spec(venue: str) -> dict:
    units = UNITS[venue]
    costs = {"lot_size": 0.00001} if venue == "ccxt" else {}  # the venue's LOT_SIZE step: the model fills 0.1 too
    return {"name": f"crash-{venue}", "universe": list(ASSETS[venue]), "cash": 100_000, "costs": costs,
            "strategies": [
                {"name": "in", "condition": {"lhs": {"sma": {"window": 2}}, "op": "crosses_above",
                                             "rhs": {"sma": {"window": 4}}},
                 "action": {"buy": {"allocation": {"units": units}}}},
                {"name": "out", "condition": {"lhs": {"sma": {"window": 2}}, "op": "crosses_below",
                                              "rhs": {"sma": {"window": 4}}},
                 "action": {"close": {}}}]}


def market(venue: str):
    return gbm(2, 0.25, seed=11, assets=ASSETS[venue])


def fill_price(venue: str):
    """The fake venue's fill price for a market order: the close of the decision bar named in the client order id
    (``SESSION-BAR-STRATEGY-LEG``), rounded to the venue's tick — the same for every run, killed or not."""
    data = market(venue)
    close = np.asarray(data.close)
    assets = list(data.assets)

    def price(symbol: str, client_order_id: str) -> float:
        asset = VENUE_SYMBOLS.get(symbol, symbol)
        bar = int(client_order_id.rsplit("-", 3)[1])
        return round(float(close[min(bar, close.shape[0] - 1), assets.index(asset)]), 2)
    return price


def broker(venue: str, url: str, ws_url: str):
    from venue_support import FAST_RETRY

    if venue == "alpaca":
        from backforge.live.alpaca import AlpacaBroker
        from fakes.alpaca_fake import KEY, SECRET
        return AlpacaBroker(KEY, SECRET, url_override=url, stream_url=ws_url + "/stream", retry=FAST_RETRY,
                            reconnect_delay=0.1, config_path="/nonexistent.toml")
    if venue == "ccxt":
        from backforge.live.ccxt_venue import CcxtBroker
        from backforge.live.venues import Renamed
        from fakes.binance_fake import KEY, SECRET
        return Renamed(CcxtBroker("binance", KEY, SECRET, base_url=url, ws_url=ws_url, retry=FAST_RETRY,
                                  reconnect_delay=0.1, rate_limit_ms=1, config_path="/nonexistent.toml"), CCXT_SYMBOLS)
    from backforge.live.oanda import OandaBroker
    from fakes.oanda_fake import ACCOUNT, TOKEN
    return OandaBroker(TOKEN, ACCOUNT, rest_url=url, stream_url=url, retry=FAST_RETRY, reconnect_delay=0.1,
                       heartbeat_timeout=1.0, config_path="/nonexistent.toml")


def child(venue: str, folder: str, url: str, ws_url: str, crash_at: str) -> None:
    runner_module._CRASH_AT = crash_at
    data = market(venue)
    client = broker(venue, url, ws_url)
    try:
        runner = PaperRunner(load_portfolio(spec(venue)), ReplayFeed(data, start=START), client, folder,
                             reference=data)
        try:
            runner.run()
        finally:
            runner.close()
    finally:
        client.close()


def _warm() -> None:
    """Run once in the fork server: imports the adapters and loads the compiled strategy step, so a restart
    costs milliseconds instead of a cold start."""
    import tempfile

    import backforge.live.alpaca  # noqa: F401
    import backforge.live.ccxt_venue  # noqa: F401
    import backforge.live.oanda  # noqa: F401
    from backforge.live import PaperBroker
    from backforge.strategy.compiler import sim_config_of

    for venue in ASSETS:
        portfolio = load_portfolio(spec(venue))
        data = market(venue)
        with tempfile.TemporaryDirectory() as folder:
            runner = PaperRunner(portfolio, ReplayFeed(data, start=START),
                                 PaperBroker(data.assets, config=sim_config_of(portfolio)), folder, reference=data)
            try:
                runner.run()
            finally:
                runner.close()


if __import__("os").environ.get("BACKFORGE_CRASH_WARM") == "1":
    _warm()
