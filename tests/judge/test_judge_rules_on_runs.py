"""Rules fed by real runs: backtests constructed to trip one rule each, end to end (run → evidence → rule)."""

from __future__ import annotations

import numpy as np

import backforge as bf
from backforge.data.market import MarketData
from backforge.judge import judge


def _found(result, **options):
    return {f.id: f for f in judge(result, n_simulations=200, **options).findings}


def test_leverage_near_liquidation_and_liquidations():
    data = bf.synth(n_assets=1, years=3, seed=2, annual_volatility=(0.6, 0.8))
    always = np.ones_like(data.close, dtype=bool)
    found = _found(bf.from_signals(data, always, None, size=3.0, leverage=3.0, maintenance_margin=0.25))
    assert found["risk.leverage_near_liquidation"].numbers["min_margin_headroom"] < 1.5
    assert found["risk.liquidations"].numbers["liquidations"] > 0


def test_gaps_and_missing_bars():
    base = bf.synth(n_assets=2, years=2, seed=3)
    keep = np.r_[np.arange(0, 200), np.arange(215, base.n_bars)]  # three weeks without bars
    close, opens = base.close[keep].copy(), base.open[keep].copy()
    close[300:330, 1] = opens[300:330, 1] = np.nan  # B misses 30 bars of its history
    data = MarketData.from_arrays(base.timestamps[keep], close=close, open=opens, assets=["A", "B"])
    found = _found(bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.0005))
    assert found["data.gaps"].numbers["longest_days"] == 22.0
    assert set(found["data.missing_bars"].numbers) == {"B"}


def test_survivorship_of_a_universe_of_winners():
    data = bf.synth(n_assets=5, years=5, seed=4, annual_drift=(0.15, 0.3), annual_volatility=(0.1, 0.15))
    found = _found(bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.0005, size=0.2))
    assert found["data.survivorship"].numbers["assets_trading_to_end"] == 5


def test_exposure_too_low():
    data = bf.synth(n_assets=1, years=3, seed=5)
    found = _found(bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.0005, size=0.02))
    assert found["exposure.too_low"].numbers["avg_gross_leverage"] < 0.05


def test_negative_skew_hidden_by_a_high_win_rate():
    data = bf.synth(n_assets=1, years=4, seed=6)
    always = np.ones_like(data.close, dtype=bool)
    found = _found(bf.from_signals(data, always, None, take_profit=0.02, stop_loss=0.25, fee_rate=0.0005))
    hit = found["risk.negative_skew_hidden"]
    assert hit.numbers["win_rate"] > 0.8 and hit.numbers["payoff_ratio"] < 0.2
    assert "stats.implausible_win_rate" not in found  # a high win rate paid for by big losses is not a peek


def test_long_deep_drawdown_of_a_falling_asset_held():
    data = bf.synth(n_assets=1, years=4, seed=7, annual_drift=(-0.3, -0.2))
    entries = np.zeros_like(data.close, dtype=bool)
    exits = np.zeros_like(entries)
    entries[0], exits[-3] = True, True
    found = _found(bf.from_signals(data, entries, exits))
    assert {"risk.drawdown_too_long", "risk.deep_drawdown", "activity.buy_and_hold_in_disguise"} <= set(found)


def test_few_trades_for_a_high_sharpe():
    data = bf.synth(n_assets=1, years=3, seed=8, annual_drift=(0.4, 0.5), annual_volatility=(0.1, 0.12))
    entries = np.zeros_like(data.close, dtype=bool)
    exits = np.zeros_like(entries)
    for k in range(4):
        entries[k * 180 + 5], exits[k * 180 + 170] = True, True
    hit = _found(bf.from_signals(data, entries, exits))["stats.few_trades_for_sharpe"]
    assert hit.numbers["n_trades"] == 4 and hit.numbers["sharpe"] > 1.0 and hit.severity == "critical"


def test_walk_forward_efficiency_of_a_parameter_search(parameter_run):
    found = {f.id: f for f in judge(parameter_run, n_simulations=200).findings}
    hit = found["robust.wfe_low"]
    assert hit.numbers["walk_forward_efficiency"] < 0.5 and hit.numbers["trials"] > 0
