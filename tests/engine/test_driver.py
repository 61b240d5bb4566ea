"""One core, two drivers: stepping bars through `Simulator` equals the batch `from_signals` run, bit for bit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import backforge as bf


def _holey(data: bf.MarketData, seed: int) -> bf.MarketData:
    """Punch NaN holes (assets without a bar) into synthetic data."""
    rng = np.random.default_rng(seed)
    hole = rng.random(data.close.shape) < 0.05
    hole[0] = False
    arrays = {f: np.where(hole, np.nan, getattr(data, f)) for f in ("open", "high", "low", "close", "volume")}
    return bf.MarketData.from_arrays(data.timestamps, assets=data.assets, **arrays)


@pytest.mark.parametrize("options", [
    dict(size=0.3, fee_rate=0.001, slippage_bps=2.0),
    dict(size=0.25, stop_loss=0.03, take_profit=0.05, trailing_stop=0.04, fee_per_order=1.0),
    dict(size=0.5, leverage=2.0, maintenance_margin=0.3, borrow_rate=0.05, financing_rate=0.04, lot_size=0),
])
def test_bar_by_bar_equals_batch(options):
    data = _holey(bf.synth(n_assets=3, years=2, bar="1d", seed=11), seed=5)
    rng = np.random.default_rng(3)
    shape = data.close.shape
    le, lx, se, sx = (rng.random(shape) < p for p in (0.08, 0.08, 0.05, 0.05))
    batch = bf.from_signals(data, le, lx, se, sx, cash=50_000, **options)

    sim = bf.Simulator(data.assets, cash=50_000, **options)
    for t in range(data.n_bars):
        sim.on_bar(int(data.timestamps[t]), open=data.open[t], high=data.high[t], low=data.low[t], close=data.close[t])
        sim.signals(le[t], lx[t], se[t], sx[t])
    live = sim.result()

    assert np.array_equal(batch.equity_values, live.equity_values)
    assert batch.fills.height > 10
    for table in ("fills", "orders", "order_log", "trades", "positions"):
        assert getattr(batch, table).equals(getattr(live, table)), table


def test_simulator_submit_cancel_replace_and_errors():
    sim = bf.Simulator(["A", "B"], cash=1000)
    with pytest.raises(bf.SimulationError):
        sim.submit("A", "buy", 1)
    nan = np.nan
    sim.on_bar("2024-01-02", open=[10, nan], high=[10, nan], low=[10, nan], close=[10, nan])
    oid = sim.submit("A", "buy", 5, order_type="limit", limit_price=9.0)
    assert sim.replace(oid, limit_price=10.5)
    sim.on_bar("2024-01-03", open=[11, 20], high=[11, 20], low=[10.4, 20], close=[10.8, 20])
    assert sim.position("A") == 5.0
    assert not sim.cancel(oid)  # already filled
    with pytest.raises(bf.ConfigError, match="did you mean 'A'"):
        sim.position("a")
    with pytest.raises(bf.DataError, match="not after"):
        sim.on_bar("2024-01-03", open=[11, 20], high=[11, 20], low=[10, 20], close=[11, 20])
    with pytest.raises(bf.DataError, match="expected 2 values"):
        sim.on_bar("2024-01-04", open=[11], high=[11], low=[10], close=[11])


def test_simulator_grows_its_records_without_changing_results():
    data = bf.synth(n_assets=2, years=6, bar="1d", seed=2)  # > 1024 bars, many orders
    rng = np.random.default_rng(0)
    le = rng.random(data.close.shape) < 0.3
    lx = rng.random(data.close.shape) < 0.3
    batch = bf.from_signals(data, le, lx, size=0.5)
    sim = bf.Simulator(data.assets, size=0.5, capacity=16)
    for t in range(data.n_bars):
        sim.on_bar(int(data.timestamps[t]), open=data.open[t], high=data.high[t], low=data.low[t], close=data.close[t])
        sim.signals(le[t], lx[t])
    assert np.array_equal(batch.equity_values, sim.result().equity_values)
    assert batch.fills.equals(sim.result().fills)


def test_same_inputs_same_outputs_bitwise():
    data = bf.synth(n_assets=4, years=3, bar="1d", seed=4)
    rng = np.random.default_rng(9)
    le, lx = rng.random(data.close.shape) < 0.1, rng.random(data.close.shape) < 0.1
    a = bf.from_signals(data, le, lx, size=0.2, fee_rate=0.0005, stop_loss=0.05)
    b = bf.from_signals(data, le, lx, size=0.2, fee_rate=0.0005, stop_loss=0.05)
    assert a.equity_values.tobytes() == b.equity_values.tobytes()
    assert a.trades.equals(b.trades) and a.order_log.equals(b.order_log)
    assert isinstance(a.trades.to_pandas(), object) and a.trades.schema["entry_time"] == pl.Datetime("ns", "UTC")
