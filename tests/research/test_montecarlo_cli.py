"""`backforge montecarlo RUN`: the distribution table, the saved study and the report's fan chart."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge.cli import app
from backforge.results.montecarlo_io import load_monte_carlo


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    data = bf.synth(n_assets=1, years=4, seed=5)
    result = bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.0005)
    return result.save(tmp_path_factory.mktemp("mc") / "run")


def _invoke(*args: str):
    return CliRunner().invoke(app, ["montecarlo", *map(str, args)], terminal_width=200)


def test_the_table_and_the_saved_study(run_folder):
    out = _invoke(run_folder, "--method", "bootstrap", "--n", "400", "--seed", "9")
    assert out.exit_code == 0, out.output
    assert "400 paths" in out.output and "probability of ruin" in out.output and "Sharpe" in out.output
    saved = load_monte_carlo(run_folder)
    summary = saved["summary"]
    assert summary["n_simulations"] == 400 and summary["seed"] == 9 and summary["method"] == "bootstrap"
    assert 0.0 <= summary["probability_of_loss"] <= 1.0 and 0.0 <= summary["probability_of_ruin"] <= 1.0
    bands = saved["bands"]
    assert bands.height == summary["n_steps"] + 1
    assert (bands["p5"] <= bands["p50"]).all() and (bands["p50"] <= bands["p95"]).all()
    again = _invoke(run_folder, "--method", "bootstrap", "--n", "400", "--seed", "9")
    assert json.loads((run_folder / "montecarlo.json").read_text())["final_equity"] == summary["final_equity"]
    assert again.exit_code == 0


def test_block_bootstrap_resamples_bars(run_folder):
    out = _invoke(run_folder, "--method", "block", "--n", "200", "--block-length", "5")
    assert out.exit_code == 0, out.output
    summary = load_monte_carlo(run_folder)["summary"]
    assert summary["method"] == "block_bootstrap" and summary["block_length"] == 5.0
    assert summary["n_steps"] == bf.load_result(run_folder).summary()["bars"]


@pytest.mark.parametrize("args, words", [
    (["--method", "blok"], "did you mean 'block'"),
    (["--ruin", "1.5"], "ruin_drawdown"),
    (["--block-length", "5"], "block_length only applies"),
])
def test_bad_options_are_one_line(run_folder, args, words):
    out = _invoke(run_folder, *args)
    assert out.exit_code == 2 and words in out.output and "Traceback" not in out.output


def test_a_missing_run_is_one_line(tmp_path):
    out = _invoke(tmp_path / "nope")
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_the_report_draws_the_saved_fan_chart(run_folder):
    assert _invoke(run_folder, "--n", "300", "--seed", "4").exit_code == 0
    page = bf.load_result(run_folder).to_html()
    charts = json.loads(re.search(r'id="bf-charts">(.*?)</script>', page, re.S).group(1))
    traces = charts["chart-montecarlo"]["data"]
    assert {t.get("name") for t in traces} >= {"this run", "p5–p95", "p25–p75", "p50"}
    assert "saved study: 300 paths" in page
