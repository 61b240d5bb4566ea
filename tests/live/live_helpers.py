"""Shared helpers of the live tests: run the same data through `backforge run` and a paper session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backforge.engine import kernels as k
from backforge.live import PaperBroker, PaperRunner, ReplayFeed, session_tables
from backforge.live.runner import LiveConfig
from backforge.strategy.compiler import compile_portfolio, run_compiled

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def backtest_and_paper(portfolio, market, start: int, folder: Path, *, config: LiveConfig | None = None):
    """(backtest result, finished runner, broker, session tables) for one data set."""
    result = run_compiled(compile_portfolio(portfolio, market, start_bar=start))
    feed = ReplayFeed(market, start=start)
    broker = PaperBroker.for_portfolio(portfolio, feed.symbols, has_quotes=feed.has_quotes)
    runner = PaperRunner(portfolio, feed, broker, folder, reference=market, config=config)
    try:
        runner.run()
    finally:
        runner.close()
    return result, runner, broker, session_tables(folder)


def records_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Structured arrays equal field by field, bit for bit (NaN equal to NaN)."""
    if a.shape != b.shape:
        return False
    for name in a.dtype.names:
        x, y = a[name], b[name]
        if x.dtype.kind == "f":
            if not np.array_equal(x.view(np.int64), y.view(np.int64)):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def assert_parity(result, runner, broker, tables) -> None:
    """Orders, fills, equity and signal events of the paper session equal the backtest's, bit for bit."""
    bt = result.state
    model = runner.step.state
    n_orders, n_fills = int(bt.counters[k.C_ORDERS]), int(bt.counters[k.C_FILLS])
    assert int(model.counters[k.C_ORDERS]) == n_orders
    assert records_equal(model.orders[:n_orders], bt.orders[:n_orders]), "orders differ"
    assert int(broker.state.counters[k.C_FILLS]) == n_fills
    assert records_equal(broker.state.fills[:n_fills], bt.fills[:n_fills]), "the paper broker's fills differ"
    fills = tables["fills"]
    assert fills.height == n_fills
    if n_fills:
        signed = fills["qty"].to_numpy() * np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0)
        assert np.array_equal(signed, bt.fills[:n_fills]["qty"])
        assert np.array_equal(fills["price"].to_numpy(), bt.fills[:n_fills]["price"])
        assert np.array_equal(fills["fee"].to_numpy(), bt.fills[:n_fills]["fee"])
        assert np.array_equal(fills["ts_ns"].to_numpy(), bt.fills[:n_fills]["ts"])
    bars = tables["bars"]
    T = bars.height
    assert T == len(result.data.timestamps)
    assert np.array_equal(bars["equity"].to_numpy().view(np.int64), bt.equity[:T].view(np.int64)), "equity differs"
    events = result.signal_events
    signals = tables["signals"]
    assert signals.height == events.height
    if events.height:
        assert signals["ts_ns"].to_list() == events["timestamp"].dt.epoch("ns").to_list()
        names = [s.name for s in runner.portfolio.strategies]
        assert [names[s] for s in signals["strategy"]] == events["strategy"].to_list()
        assert signals["order_id"].to_list() == events["order_id"].to_list()
        assert np.array_equal(signals["value"].to_numpy(), events["value"].to_numpy(), equal_nan=True)
