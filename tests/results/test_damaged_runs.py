"""Damaged run folders: report, judge, compare and explain refuse them with one line naming the file
(issue 10, item 7), and explain refuses times outside the run (items 5 and 17)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import backforge as bf
from backforge.errors import BackforgeError, ConfigError
from backforge.results.result import compare_runs, load_result

STRATEGY = {"name": "dmg", "universe": ["AAPL"], "strategies": [
    {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}}, "action": {"buy": {}}},
    {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 10}}}, "action": {"close": {}}}],
    "data": {"years": 1, "seed": 4}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    from backforge.strategy.compiler import load_data, run_portfolio
    from backforge.strategy.schema import load_portfolio

    portfolio = load_portfolio(STRATEGY)
    return run_portfolio(portfolio, load_data(portfolio)).save(tmp_path_factory.mktemp("runs") / "good")


def _damaged(saved: Path, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / how
    shutil.copytree(saved, folder)
    if how == "metrics_not_object":
        (folder / "metrics.json").write_text("[1, 2, 3]")
    elif how == "no_equity":
        (folder / "equity.parquet").unlink()
    elif how == "no_sim_config":
        config = json.loads((folder / "config.json").read_text())
        del config["sim_config"]
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "summary_string":
        (folder / "summary.json").write_text('"hello"')
    elif how == "no_trades":
        (folder / "trades.parquet").unlink()
    return folder


@pytest.mark.parametrize("how, file, words", [
    ("metrics_not_object", "metrics.json", "JSON array, not an object"),
    ("no_equity", "equity.parquet", "equity.parquet is missing"),
    ("no_sim_config", "config.json", "no sim_config"),
    ("summary_string", "summary.json", "JSON string, not an object"),
])
def test_damaged_folders_are_refused_naming_the_file(saved, tmp_path, how, file, words):
    folder = _damaged(saved, tmp_path, how)
    with pytest.raises(BackforgeError) as info:
        compare_runs([load_result(folder)])
    assert file in str(info.value) and words in str(info.value)
    from backforge.judge.errors import JudgeError
    from backforge.judge.runs import open_run

    with pytest.raises(JudgeError) as judged:
        open_run(folder)
    assert file in str(judged.value) and words in str(judged.value)


def test_a_missing_table_is_a_clear_error_when_it_is_read(saved, tmp_path):
    run = load_result(_damaged(saved, tmp_path, "no_trades"))
    with pytest.raises(BackforgeError, match="trades.parquet is missing"):
        run.trades  # noqa: B018
    with pytest.raises(KeyError):  # still a mapping
        run["trades"]
    assert "trades" not in run


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "backforge.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.slow
def test_cli_report_and_compare_refuse_a_damaged_run_in_one_line(saved, tmp_path):
    folder = _damaged(saved, tmp_path, "metrics_not_object")
    proc = _cli("compare", str(folder), str(saved))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "metrics.json" in proc.stderr


def test_explain_refuses_bad_and_out_of_range_times(saved):
    from backforge.strategy.explain import explain_run

    for at in ("garbage", "2020-03-16T25:00", ""):
        with pytest.raises(ConfigError, match="not a date/time"):
            explain_run(saved, at)
    with pytest.raises(ConfigError, match="after the last bar of the run"):
        explain_run(saved, "2099-01-01")
    with pytest.raises(ConfigError, match="before the first bar"):
        explain_run(saved, "1990-01-01")
    summary = json.loads((saved / "summary.json").read_text())
    lines = explain_run(saved, summary["end"][:10])
    assert any("strategy 'in'" in line for line in lines)


def test_explain_refuses_a_damaged_run(saved, tmp_path):
    from backforge.strategy.explain import explain_run

    with pytest.raises(BackforgeError, match="config.json has no sim_config"):
        explain_run(_damaged(saved, tmp_path, "no_sim_config"), "2015-06-01")


def test_run_portfolio_honours_the_strategy_period():
    """`run_portfolio(p, load_data(p))` trades only the file's data.start..data.end (item 16)."""
    from backforge.strategy.compiler import load_data, run_portfolio
    from backforge.strategy.schema import load_portfolio

    portfolio = load_portfolio({**STRATEGY, "data": {"years": 2, "seed": 4, "start": "2015-06-01", "end": "2016-03-31"}})
    result = run_portfolio(portfolio, load_data(portfolio))
    summary = result.summary()
    assert summary["start"][:10] >= "2015-06-01" and summary["end"][:10] <= "2016-03-31"
    wide = run_portfolio(portfolio, load_data(portfolio), start="2015-02-01")
    assert wide.summary()["start"][:10] < "2015-06-01"
    assert bf.load_result  # the package still exposes the loader
