"""The evidence pack: sections, numbers consistent with the run, budget trimming, damaged runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import backforge as bf
from backforge.judge import JudgeError, build_evidence, open_run
from backforge.judge.evidence import TRIM_ORDER, estimate_tokens

SECTIONS = {"run", "strategy", "data", "metrics", "yearly_returns", "monthly_returns", "drawdowns", "trades",
            "concentration", "cost_sensitivity", "parameter_sensitivity", "monte_carlo", "walk_forward", "stability",
            "overfitting", "benchmark", "regimes", "exposure", "lookahead"}


@pytest.fixture(scope="module")
def strategy_pack(strategy_run):
    return build_evidence(strategy_run, n_simulations=300)


def test_every_section_is_there_and_json_ready(strategy_pack):
    assert set(strategy_pack.sections) == SECTIONS
    document = json.loads(strategy_pack.to_json())
    assert document["run"]["can_rerun"] is True and document["run"]["assets"] == ["AAPL", "MSFT"]


def test_numbers_match_the_run(strategy_run, strategy_pack):
    run = bf.load_result(strategy_run)
    saved = run.metrics()
    assert strategy_pack.get("metrics.sharpe") == pytest.approx(saved["sharpe"], rel=1e-3)
    assert strategy_pack.get("metrics.n_trades") == saved["n_trades"]
    trades = run.trades.filter(~run.trades["is_open"])
    pnl = np.sort(trades["pnl"].to_numpy())[::-1]
    assert strategy_pack.get("concentration.net_pnl") == pytest.approx(pnl.sum(), rel=1e-3)
    assert strategy_pack.get("concentration.top_1_share") == pytest.approx(pnl[0] / pnl.sum(), rel=1e-3)
    years = strategy_pack.get("yearly_returns")
    assert np.prod([1 + y["return"] for y in years]) - 1 == pytest.approx(saved["total_return"], rel=1e-2)
    deepest = strategy_pack.get("drawdowns.deepest")[0]
    assert deepest["depth"] == pytest.approx(saved["max_drawdown"], rel=1e-3)


def test_cost_sensitivity_reruns_at_2x_and_5x(strategy_pack):
    runs = {r["multiplier"]: r for r in strategy_pack.get("cost_sensitivity.runs")}
    assert strategy_pack.get("cost_sensitivity.method") == "rerun"
    assert runs[1.0]["total_return"] > runs[2.0]["total_return"] > runs[5.0]["total_return"]
    assert runs[5.0]["costs_paid"] > 4 * runs[1.0]["costs_paid"]
    assert strategy_pack.get("cost_sensitivity.costs_modelled") == {"fee_rate": 0.0005, "slippage_bps": 1.0}


def test_parameter_neighbours_of_config_numbers(strategy_pack):
    sensitivity = strategy_pack.get("parameter_sensitivity")
    assert sensitivity["method"] == "config_numbers"
    names = [k["name"] for k in sensitivity["knobs"]]
    assert names == ["sma.window = 10", "sma.window = 30"]
    assert [n["value"] for n in sensitivity["knobs"][0]["neighbours"]] == [8, 12]
    assert len(sensitivity["knobs"][0]["paths"]) == 2  # the entry and the exit move together


def test_declared_parameters_walk_forward_and_neighbours(parameter_run):
    pack = build_evidence(parameter_run, n_simulations=200)
    sensitivity = pack.get("parameter_sensitivity")
    assert sensitivity["method"] == "declared_parameters"
    fast = next(k for k in sensitivity["knobs"] if k["name"] == "fast")
    assert [n["value"] for n in fast["neighbours"]] == [5, 15]
    assert pack.get("walk_forward.status") == "run"
    assert pack.get("walk_forward.trials") > 0 and "efficiency" in pack.sections["walk_forward"]
    assert pack.get("walk_forward.runtime") == "batched"  # the re-test's searches ran on the batched runtime
    assert [p["name"] for p in pack.get("strategy.declared_parameters")] == ["fast", "slow"]


def test_signal_run_is_reviewed_without_rerunning(signal_run):
    pack = build_evidence(signal_run, n_simulations=200)
    assert pack.get("run.can_rerun") is False and "signal arrays" in pack.get("run.rerun_note")
    assert pack.get("cost_sensitivity.method") == "estimate"
    estimate = pack.get("cost_sensitivity.runs")[1]
    assert estimate["estimated"] is True and estimate["multiplier"] == 2.0
    assert pack.get("parameter_sensitivity.method") == "unavailable"
    assert pack.get("walk_forward.status") == "not_run"


def test_trades_samples_and_concentration(strategy_pack):
    trades = strategy_pack.get("trades")
    assert len(trades["best"]) == 5 and len(trades["worst"]) == 5 and len(trades["recent"]) == 5
    assert trades["best"][0]["return"] >= trades["best"][-1]["return"]
    assert trades["worst"][0]["return"] <= trades["worst"][-1]["return"]
    assert trades["recent"][0]["exit"] >= trades["recent"][-1]["exit"]
    shares = [a["share"] for a in strategy_pack.get("concentration.per_asset")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)


def test_monte_carlo_regimes_and_overfitting(strategy_pack):
    mc = strategy_pack.get("monte_carlo")
    for key in ("trade_bootstrap", "block_bootstrap"):
        bands = mc[key]["total_return"]
        assert bands["p5"] <= bands["p50"] <= bands["p95"]
    regimes = {r["regime"] for r in strategy_pack.get("regimes.regimes")}
    assert regimes == {"trend_up", "trend_down", "high_volatility", "low_volatility"}
    over = strategy_pack.get("overfitting")
    assert over["n_trials"] == 1 and 0.0 <= over["dsr"] <= 1.0 and over["dsr"] == over["psr"]
    assert over["pbo"]["source"].startswith("the chosen parameters and 4 neighbours")


def test_trials_given_deflate_the_sharpe_ratio(strategy_run):
    one = build_evidence(strategy_run, n_simulations=100, sensitivity=False, walk_forward=False)
    many = build_evidence(strategy_run, n_trials=500, n_simulations=100, sensitivity=False, walk_forward=False)
    assert many.get("overfitting.n_trials") == 500
    assert many.get("overfitting.dsr") < one.get("overfitting.dsr")


def test_budget_trims_least_important_first(strategy_pack):
    full = strategy_pack.for_model(None)
    assert full["budget"]["trimmed"] == []
    for budget in (6000, 3000, 1500):
        small = strategy_pack.for_model(budget)
        assert small["budget"]["tokens"] <= budget, small["budget"]
        assert estimate_tokens(small) <= budget + 5
        dropped = [name for name in TRIM_ORDER if name not in small]
        # dropped sections form a prefix of the trimming order
        assert dropped == list(TRIM_ORDER[:len(dropped)])
        assert "metrics" in small and "overfitting" in small
    tiny = strategy_pack.for_model(1500)
    assert "monthly_returns" in tiny["budget"]["trimmed"]
    assert any("monthly_returns (last 24" in t for t in tiny["budget"]["trimmed"])


def test_impossible_budget_says_so(strategy_pack):
    pack = strategy_pack.for_model(100)
    assert pack["budget"]["over_budget"] is True and "run" in pack


def test_missing_and_damaged_runs_fail_with_one_clear_line(tmp_path, copy_run, strategy_run):
    with pytest.raises(JudgeError, match="no run folder here"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeError, match="config.json is missing"):
        open_run(tmp_path / "empty")
    broken = copy_run(strategy_run)
    (broken / "trades.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(JudgeError, match="trades.parquet cannot be read") as info:
        open_run(broken)
    assert "\n" not in str(info.value)
    broken_json = copy_run(strategy_run)
    (broken_json / "metrics.json").write_text("{not json")
    with pytest.raises(JudgeError, match="metrics.json is corrupted"):
        open_run(broken_json)


def test_rerun_reproduces_the_saved_run(strategy_run):
    view = open_run(strategy_run)
    again = view.rerunner.run()
    assert again.metrics()["sharpe"] == pytest.approx(view.metrics()["sharpe"], rel=1e-9)
    assert view.notes == []
