"""The runner process of the crash test, forked from a warm fork server (imports done and compiled kernels
loaded once, so 30 restarts cost milliseconds each instead of a cold start)."""

from __future__ import annotations

import os
import tempfile

from backforge.data.synth import gbm
from backforge.live import PaperBroker, PaperRunner, ReplayFeed
from backforge.live import runner as runner_module
from backforge.live.paper import RemoteBroker
from backforge.strategy.compiler import sim_config_of
from backforge.strategy.schema import load_portfolio

SPEC = {"name": "crash", "universe": ["AAA", "BBB", "CCC"], "cash": 100_000, "costs": {"fee_rate": 0.001, "slippage_bps": 2},
        "strategies": [
            {"name": "in", "condition": {"lhs": {"sma": {"window": 2}}, "op": "crosses_above", "rhs": {"sma": {"window": 5}}},
             "action": {"buy": {"allocation": {"equity_fraction": 0.2}, "stop_loss": {"percent": 0.02}}}},
            {"name": "out", "condition": {"lhs": {"sma": {"window": 2}}, "op": "crosses_below", "rhs": {"sma": {"window": 5}}},
             "action": {"close": {}}}]}
START = 10


def market():
    return gbm(3, 0.45, seed=5, assets=("AAA", "BBB", "CCC"))


def run_session(folder: str, broker) -> PaperRunner:
    data = market()
    runner = PaperRunner(load_portfolio(SPEC), ReplayFeed(data, start=START), broker, folder, reference=data)
    try:
        runner.run()
    finally:
        runner.close()
    return runner


def child(folder: str, address: tuple, key: bytes, crash_at: str) -> None:
    runner_module._CRASH_AT = crash_at
    broker = RemoteBroker(address, key, timeout=20.0)
    try:
        run_session(folder, broker)
    finally:
        broker.close()


def _warm() -> None:
    portfolio = load_portfolio(SPEC)
    with tempfile.TemporaryDirectory() as folder:
        run_session(folder, PaperBroker(market().assets, config=sim_config_of(portfolio)))


if os.environ.get("BACKFORGE_CRASH_WARM") == "1":
    _warm()
