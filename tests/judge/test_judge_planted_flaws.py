"""Runs with planted flaws must each be flagged for the right reason (and a sound control must not be).

* a strategy that peeks at the next bar (signals built from ``close`` of bar t + 1);
* one lucky trade carrying the whole result;
* a strategy that only works without costs;
* the winner of an overfit parameter sweep (``backforge optimize``, then ``backforge judge best-1``).
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge.data.market import MarketData
from backforge.data.synth import _calendar
from backforge.judge import SignalRerunner, judge
from backforge.strategy.compiler import run_portfolio


def _market(returns: np.ndarray, name: str = "XYZ") -> MarketData:
    """One asset whose bars open at the previous close (so a decision's fill price is its close)."""
    ts = _calendar(len(returns) / 252 + 0.01, 86_400 * 10**9, "equities")[: len(returns)]
    close = 100.0 * np.cumprod(1.0 + returns)
    opens = np.r_[100.0, close[:-1]]
    return MarketData.from_arrays(ts, close=close.reshape(-1, 1), open=opens.reshape(-1, 1), assets=[name])


def _ids(judgement) -> dict[str, object]:
    return {f.id: f for f in judgement.findings}


def test_peeking_at_the_next_bar_is_flagged():
    data = bf.synth(n_assets=1, years=4, seed=11)
    tomorrow = np.vstack([data.close[1:], data.close[-1:]])
    entries = tomorrow > data.close  # uses bar t + 1: the planted flaw
    exits = ~entries
    result = bf.from_signals(data, entries, exits, fee_rate=0.0005)
    verdict = judge(result, rerun=SignalRerunner(data, entries, exits, fee_rate=0.0005), n_simulations=200)
    found = _ids(verdict)
    lag = found["lookahead.lag_collapse"]
    assert lag.severity == "critical"
    assert lag.numbers["sharpe"] > 3 and lag.numbers["lagged_sharpe"] < 0.3 * lag.numbers["sharpe"]
    assert found["stats.implausible_sharpe"].severity == "critical"


def test_peeking_is_flagged_from_the_saved_tables_alone(tmp_path):
    data = bf.synth(n_assets=1, years=4, seed=12)
    tomorrow = np.vstack([data.close[1:], data.close[-1:]])
    folder = bf.from_signals(data, tomorrow > data.close, tomorrow <= data.close).save(tmp_path / "peek")
    found = _ids(judge(folder, n_simulations=200))
    assert {"stats.implausible_sharpe", "stats.implausible_win_rate"} <= set(found)
    assert "lookahead.lag_collapse" not in found  # no signal arrays: the lag test cannot run
    assert "judge.cannot_rerun" in found


def test_one_lucky_trade_is_flagged():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.0, 0.004, 756)
    returns[380:400] = 0.003  # a steady rise puts the strategy in the market...
    returns[400] = 0.5  # ...for one lucky jump
    config = {"name": "lucky", "universe": ["XYZ"], "costs": {"fee_rate": 0.0005}, "strategies": [
        {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}}, "action": {"buy": {}}},
        {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 10}}},
         "action": {"close": {}}}]}
    result = run_portfolio(config, _market(returns))
    assert result.metrics()["total_return"] > 0.2
    found = _ids(judge(result, n_simulations=200, walk_forward=False))
    top = found["concentration.top_trade"]
    assert top.severity == "critical"
    assert top.numbers["top_1_share"] > 1.0 and top.numbers["pnl_without_top_1"] < 0


def test_a_strategy_that_only_works_without_costs_is_flagged():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.01, 1008)
    returns = np.zeros_like(noise)
    for t in range(1, returns.size):  # a small mean reversion: an edge far thinner than trading costs
        returns[t] = -0.08 * returns[t - 1] + noise[t]
    config = {"name": "flip", "universe": ["XYZ"], "strategies": [
        {"name": "in", "condition": {"lhs": "close", "op": "<", "rhs": {"lag": {"window": 1}}}, "action": {"buy": {}}},
        {"name": "out", "condition": {"lhs": "close", "op": ">", "rhs": {"lag": {"window": 1}}},
         "action": {"close": {}}}]}
    result = run_portfolio(config, _market(returns))
    assert result.metrics()["total_return"] > 0
    verdict = judge(result, n_simulations=200, walk_forward=False)
    found = _ids(verdict)
    kill = found["costs.realistic_kills_edge"]
    assert kill.severity == "critical"
    assert kill.numbers["total_return_without_costs"] > 0 > kill.numbers["total_return_with_assumed_costs"]
    assert "costs.none_modelled" in found
    # the rule's fix is testable: a turnover filter on the entries
    assert kill.recommendation is not None and kill.recommendation.type == "add_filter"


OVERFIT = """\
name: sweep
universe: [AAA]
costs: {fee_rate: 0.0005}
constraints: ["fast < slow"]
strategies:
  - name: enter
    condition:
      lhs: {sma: {window: {param: fast, range: [2, 20, 2]}}}
      op: crosses_above
      rhs: {sma: {window: {param: slow, range: [10, 60, 5]}}}
    action: {buy: {}}
  - name: exit
    condition:
      lhs: {sma: {window: {param: fast, range: [2, 20, 2]}}}
      op: crosses_below
      rhs: {sma: {window: {param: slow, range: [10, 60, 5]}}}
    action: {close: {}}
data: {source: synthetic, years: 3, bar: 1d, seed: 3}
"""


def test_the_winner_of_an_overfit_sweep_is_flagged(tmp_path):
    from backforge.cli import app

    strategy = tmp_path / "sweep.yaml"
    strategy.write_text(OVERFIT)
    runner = CliRunner()
    out = runner.invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "1", "--out", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    (search,) = (tmp_path / "runs").iterdir()
    verdict = judge(search / "best-1", n_simulations=200)
    found = _ids(verdict)
    dsr = found["stats.dsr_low"]
    assert dsr.numbers["n_trials"] == 100 and dsr.numbers["dsr"] < 0.95
    assert verdict.evidence.get("overfitting.psr") > dsr.numbers["dsr"]  # undeflated, it looked better
    assert "parameter search" in verdict.evidence.get("overfitting.trials_source")
    assert verdict.evidence.get("parameter_sensitivity.method") == "parameter_search_trials"


def test_a_sound_control_is_not_flagged_for_these_reasons(strategy_run):
    found = _ids(judge(strategy_run, n_simulations=200))
    planted = {"lookahead.lag_collapse", "stats.implausible_sharpe", "stats.implausible_win_rate",
               "costs.realistic_kills_edge", "costs.none_modelled", "costs.edge_vanishes_2x"}
    assert not planted & set(found)


@pytest.mark.parametrize("seed", [1, 2])
def test_flags_are_deterministic(seed):
    data = bf.synth(n_assets=1, years=3, seed=seed)
    result = bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.001)
    first = judge(result, n_simulations=200).to_json()
    second = judge(result, n_simulations=200).to_json()
    assert first == second
