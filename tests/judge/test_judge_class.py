"""The judge on a Strategy class (issue 19: "judge works unchanged"): the class is re-run with other values
of its parameters, scaled costs and narrower periods (what sensitivity, cost stress and --apply need), from
a live result and from a run saved by `backforge run file.py`; what cannot apply to a class says why."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge.cli import app
from backforge.judge import ChangeParameter, ChangeRisk, JudgeError, RunTest, apply_recommendations, open_run
from backforge.judge.recommendations import check_recommendation
from backforge.judge.runs import ClassRerunner
from backforge.strategy.code import Strategy, crossover
from backforge.strategy.indicators import sma

SOURCE = '''
import backforge as bf
from backforge.strategy.code import crossover
from backforge.strategy.indicators import sma


class Cross(bf.Strategy):
    universe = ("AAPL",)
    data_spec = {"source": "synthetic", "years": 4, "seed": 3}
    fast, slow = 10, 30

    def init(self):
        self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)

    def next(self):
        if crossover(self.f, self.s) and not self.position:
            self.buy(0.5)
        elif crossover(self.s, self.f) and self.position:
            self.close()
'''


class Cross(Strategy):
    fast, slow = 10, 30

    def init(self):
        self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)

    def next(self):
        if crossover(self.f, self.s) and not self.position:
            self.buy(0.5)
        elif crossover(self.s, self.f) and self.position:
            self.close()


def _rec(cls, **fields):
    return cls(rationale="because", expected_effect="better", **fields)


@pytest.fixture(scope="module")
def data():
    return bf.synth(n_assets=1, years=4, seed=3)


def test_a_class_result_is_rerun_with_its_parameters_costs_and_period(data):
    result = bf.backtest(data, Cross, fee_rate=0.001, cash=50_000.0)
    rerun = open_run(result).rerunner
    assert isinstance(rerun, ClassRerunner) and rerun.parameters == {"fast": 10, "slow": 30}
    same = rerun.run()
    assert np.array_equal(same.equity_values, result.equity_values)
    other = rerun.run(config={"fast": 5})
    alone = bf.backtest(data, Cross, fast=5, fee_rate=0.001, cash=50_000.0)
    assert np.array_equal(other.equity_values, alone.equity_values)
    stressed = rerun.run(cost_multiplier=2.0)
    assert stressed.sim_config.fee_rate == 0.002 and stressed.sim_config.cash == 50_000.0
    start = int(data.timestamps[500])  # a later period: the bars before it warm the class up, as in walk-forward
    later = rerun.run(start_ns=start)
    assert np.array_equal(later.equity_values, bf.backtest(data, Cross, start=500, fee_rate=0.001,
                                                           cash=50_000.0).equity_values)
    with pytest.raises(JudgeError, match="no parameter 'fsat'.*did you mean 'fast'"):
        rerun.run(config={"fsat": 5})
    with pytest.raises(JudgeError, match="cannot be lagged"):
        rerun.run(lag=1)


def test_recommendations_on_a_class_are_its_parameters_and_tests(data):
    view = open_run(bf.backtest(data, Cross, fee_rate=0.001))
    report = apply_recommendations(view, [
        ("llm", _rec(ChangeParameter, path="fast", values=[5, 15])),
        ("llm", _rec(ChangeRisk, stop_loss={"percent": 0.05})),
        ("llm", _rec(ChangeParameter, path="slwo", value=40)),
        ("llm", _rec(RunTest, test="cost_stress", cost_multiplier=3.0)),
    ], holdout=0.3)
    rows = {row["variant"]: row for row in report.rows}
    assert report.variants == {"change_parameter fast to 5": {"fast": 5}, "change_parameter fast to 15": {"fast": 15}}
    assert rows["change_parameter fast to 5"]["status"] == "ok" and report.total_trials == 3
    risk = next(r for r in report.rows if r["kind"] == "change_risk")
    assert risk["status"] == "invalid" and "this run is a Strategy class" in risk["error"]
    assert "(fast, slow)" in risk["error"]
    typo = next(r for r in report.rows if r.get("error", "").startswith("the class has no parameter 'slwo'"))
    assert "did you mean 'slow'" in typo["error"]
    (stress,) = report.tests
    assert stress["status"] == "ok" and stress["cost_multiplier"] == 3.0
    strategy = view.strategy
    assert check_recommendation(_rec(ChangeParameter, path="fast", value=2.5), mode="code", config=strategy) == \
        "parameter 'fast' is a whole number, got 2.5"
    assert check_recommendation(_rec(ChangeParameter, path="slow", value=40), mode="code", config=strategy) is None


def test_the_evidence_moves_the_class_parameters(data):
    from backforge.judge import build_evidence

    pack = build_evidence(bf.backtest(data, Cross, fee_rate=0.001))
    sensitivity = pack.sections["parameter_sensitivity"]
    assert sensitivity["method"] == "class_parameters"
    assert [(k["name"], [n["value"] for n in k["neighbours"]]) for k in sensitivity["knobs"]] == \
        [("fast", [8, 12]), ("slow", [24, 36])]
    assert pack.sections["lookahead"]["lag_test"]["status"] == "not_needed"


def test_judge_apply_on_a_saved_class_run_reloads_its_file(tmp_path):
    path = tmp_path / "cross.py"
    path.write_text(SOURCE)
    runner = CliRunner()
    done = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "runs"), "--no-report"])
    assert done.exit_code == 0, done.output
    (folder,) = (tmp_path / "runs").iterdir()
    applied = runner.invoke(app, ["judge", str(folder), "--apply", "--no-save"])
    assert applied.exit_code == 0, applied.output
    assert "cannot re-run" not in applied.output and "holdout" in applied.output
    path.write_text(SOURCE.replace("fast, slow = 10, 30", "fast, slow = 12, 30"))
    changed = runner.invoke(app, ["judge", str(folder), "--apply", "--no-save"])
    assert changed.exit_code == 2 and "the strategy file changed since the run" in changed.output
    review = runner.invoke(app, ["judge", str(folder), "--no-save"])  # the review itself needs no re-run
    assert review.exit_code == 0, review.output
