"""Recommendations become variants, run in sample and on held-out data, with every added trial counted."""

from __future__ import annotations

import json

import pytest

import backforge as bf
from backforge.judge import (
    AddFilter,
    ChangeParameter,
    ChangeRisk,
    JudgeError,
    RunTest,
    SignalRerunner,
    apply_recommendations,
    judge,
    open_run,
)
from backforge.judge.recommendations import check_recommendation, variants_of


def _rec(cls, **fields):
    return cls(rationale="because", expected_effect="better", **fields)


def test_variants_are_applied_in_and_out_of_sample(strategy_run):
    view = open_run(strategy_run)
    recs = [
        ("test", _rec(ChangeParameter, path="strategies[enter].condition.rhs.window",
                      also=["strategies[exit].condition.rhs.window"], values=[40, 50])),
        ("test", _rec(AddFilter, strategy="enter", condition={"lhs": "close", "op": ">", "rhs": {"sma": {"window": 100}}})),
        ("test", _rec(ChangeRisk, stop_loss={"percent": 0.05}, allocation={"type": "equity_fraction", "value": 0.25})),
        ("test", _rec(ChangeParameter, path="strategies[0].condition.rhs.nope", value=3)),
        ("test", _rec(RunTest, test="holdout")),
        ("test", _rec(RunTest, test="cost_stress", cost_multiplier=3.0)),
    ]
    report = apply_recommendations(view, recs, holdout=0.3, base_trials=1)
    table = report.table
    assert table["variant"].to_list()[0] == "original"
    ok = table.filter(table["status"] == "ok")
    assert ok.height == 5  # original + 2 parameter values + filter + risk
    assert report.total_trials == 1 + 4
    assert all(v is not None for v in ok["oos_sharpe"].to_list())
    assert ok["verdict"].to_list()[0] == "baseline"
    invalid = table.filter(table["status"] == "invalid")
    assert invalid.height == 1 and "has no field 'nope'" in invalid["error"][0]
    assert report.split.is_end < report.split.oos_start
    # out-of-sample runs trade only the held-out bars, in-sample runs only the first 70 %
    original = report.rows[0]
    assert original["is_trades"] > 0 and original["oos_trades"] > 0
    holdout, stress = report.tests
    assert holdout["test"] == "holdout" and holdout["sharpe"] == pytest.approx(original["oos_sharpe"])
    assert stress["cost_multiplier"] == 3.0 and stress["total_return"] < original["is_total_return"]
    variant = report.variants["strategies[0].condition.rhs.window = 40 (+1 more)"]
    assert variant["strategies"][1]["condition"]["rhs"]["window"] == 40
    assert json.loads(json.dumps(report.to_dict()))["total_trials"] == 5


def test_dsr_counts_the_added_trials(strategy_run):
    view = open_run(strategy_run)
    one = apply_recommendations(view, [("t", _rec(ChangeRisk, stop_loss={"percent": 0.05}))], base_trials=1)
    many = apply_recommendations(view, [("t", _rec(ChangeRisk, stop_loss={"percent": 0.05}))], base_trials=200)
    assert many.total_trials == 201
    assert many.rows[0]["dsr"] < one.rows[0]["dsr"]


def test_judge_apply_only_shows_the_in_sample_part(strategy_run):
    verdict = judge(strategy_run, apply=True, holdout=0.25, n_simulations=200)
    assert verdict.split is not None and verdict.applied is not None
    assert verdict.evidence.get("run.end") < verdict.split.to_dict()["out_of_sample"][0][:10]
    assert any("held out" in note for note in verdict.evidence.get("run.notes"))
    sources = {row["source"] for row in verdict.applied.rows[1:]}
    assert sources <= {f.id for f in verdict.findings}
    html = verdict.section_html()
    assert "Before and after" in html and "original" in html


def test_signal_runs_accept_risk_changes_with_a_rerunner():
    data = bf.synth(n_assets=1, years=3, seed=6)
    entries, exits = data.close > data.open, data.close < data.open
    view = open_run(bf.from_signals(data, entries, exits, fee_rate=0.001),
                    rerun=SignalRerunner(data, entries, exits, fee_rate=0.001))
    report = apply_recommendations(view, [("t", _rec(ChangeRisk, stop_loss={"percent": 0.03})),
                                          ("t", _rec(AddFilter, condition={"lhs": "close", "op": ">", "rhs": 1}))])
    statuses = [row["status"] for row in report.rows]
    assert statuses == ["ok", "ok", "invalid"]
    assert report.variants["change_risk of every buy/sell strategy: stop_loss 3%"] == {"stop_loss": 0.03}


def test_runs_that_cannot_be_rerun_say_why(signal_run):
    with pytest.raises(JudgeError, match="cannot apply recommendations: cannot re-run: the run was made from signal"):
        judge(signal_run, apply=True)


def test_recommendation_checks_name_the_problem():
    config = {"name": "x", "universe": ["A"], "strategies": [
        {"name": "enter", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}}, "action": {"buy": {}}},
        {"name": "exit", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 20}}}, "action": {"close": {}}}]}
    assert check_recommendation(_rec(AddFilter, strategy="exit", condition={"lhs": "close", "op": ">", "rhs": 1}),
                                mode="strategy", config=config).endswith("name a buy/sell strategy")
    assert "no item named 'entr' in strategies; did you mean 'enter'?" == check_recommendation(
        _rec(ChangeParameter, path="strategies[entr].condition.rhs.window", value=30), mode="strategy", config=config)
    assert "not a number" in check_recommendation(
        _rec(ChangeParameter, path="strategies[0].condition.rhs", value=30), mode="strategy", config=config)
    assert "must be > 0" in check_recommendation(
        _rec(ChangeParameter, path="strategies[0].condition.rhs.window", value=-3), mode="strategy", config=config)
    (label, variant), = variants_of(_rec(ChangeRisk, strategy="enter", trailing_stop={"atr": 3}, leverage=2.0), config)
    assert variant["strategies"][0]["action"]["trailing_stop"]["atr"] == 3.0 and variant["costs"]["leverage"] == 2.0
    with pytest.raises(ValueError, match="exactly one of value"):
        _rec(ChangeParameter, path="x", value=1, values=[2])
