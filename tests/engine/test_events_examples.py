"""The two event-engine examples run as shipped, and their figures are checked by hand: the grid market
maker's fills against its own rules, the USDJPY comparison's fills against the quotes they traded on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"backforge_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grid_market_maker_example(tmp_path, monkeypatch, capsys):
    """Every fill is a maker fill (post-only orders) on a grid price, the position stays within the 1 BTC
    cap, the printed final equity is the run's, and --save writes the run with its report."""
    example = _example("events_grid_market_maker")
    monkeypatch.setattr(sys, "argv", ["x", "--events", "60000", "--save", str(tmp_path / "grid")])
    example.main()
    out = capsys.readouterr().out
    assert "60,000 events in" in out and (tmp_path / "grid" / "report.html").exists()

    from backforge.data.events import synthetic_l2
    from backforge.engine.events import EventConfig, run_events
    from backforge.engine.events.strategies import grid_market_maker
    from backforge.results.result import load_result

    data = synthetic_l2(n_events=60_000, seed=42)
    config = EventConfig(cash=100_000.0, maker_fee=-0.00005, taker_fee=0.0007, queue_model="power_prob",
                         queue_power=3.0, entry_latency_ns=5_000_000, response_latency_ns=5_000_000)
    result = run_events(grid_market_maker, data, config, args=(100_000_000, 2, 1, 10, 0.1, 1.0))
    assert f"final_equity: {result.summary()['final_equity']}" in out
    fills = result.fills
    assert fills.height >= 20
    assert (fills["fee"] < 0).all()  # every fill earned the maker rebate: none took liquidity
    ticks = fills["price"].to_numpy() / data.tick_size
    assert np.allclose(ticks, np.round(ticks))
    position = np.cumsum(fills["qty"].to_numpy())
    assert np.abs(position).max() <= 1.0 + 0.1 + 1e-9  # the cap, plus at most one order in flight
    saved = load_result(tmp_path / "grid")
    assert saved.fills.height == fills.height


def test_usdjpy_ticks_vs_bars_example(shared_data_dir, capsys):
    """The three runs take the same positions (long, then short, then long 100,000 USD); the bar run fills
    at the next bar's open ask (buys) or bid (sells), the event runs at the ask or bid prevailing when the
    order reached the exchange; the half-spread each paid is the printed one."""
    example = _example("events_usdjpy_ticks_vs_bars")
    example.main()
    out = capsys.readouterr().out
    from backforge.data.events import read_truefx_quotes
    from backforge.engine.events import EventConfig

    quotes = read_truefx_quotes(shared_data_dir / "truefx-usdjpy-ticks.csv", policy="drop")
    cfg = EventConfig(cash=10_000_000.0, lot_size=1.0, entry_latency_ns=example.LATENCY_NS,
                      response_latency_ns=example.LATENCY_NS, sample_every="1min")
    runs = example.runs(quotes, cfg)
    for name, result in zip(("bars (1-minute bid/ask)", "events, 1-minute decisions", "events, every tick"), runs):
        fills = result.fills
        qty, price = fills["qty"].to_numpy(), fills["price"].to_numpy()
        assert qty.tolist() == [100_000.0, -200_000.0, 200_000.0], name
        bid, ask = example.quote_at_fills(result, quotes)
        assert np.array_equal(price, np.where(qty > 0, ask, bid)), name
        paid = float((np.abs(qty) * (ask - bid) / 2).sum())
        assert paid > 0 and f"half-spread paid {paid:,.0f} JPY" in out, name
