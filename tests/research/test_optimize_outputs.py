"""What `backforge optimize` shows and writes (issue 16): the overfitting table with a one-line
interpretation of each figure, and the parameter heatmap section of the best run's tear sheet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backforge.cli import app
from backforge.research.cli import overfitting_rows

STRATEGY = """\
name: three-knobs
universe: [AAPL]
cash: 100000
constraints: ["fast < slow"]
strategies:
  - name: enter
    condition:
      all:
        - lhs: {sma: {window: {param: fast, choices: [5, 10, 15], default: 10}}}
          op: ">"
          rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}
        - {lhs: {price: {field: close}}, op: ">", rhs: {sma: {window: {param: trend, choices: [50, 100], default: 50}}}}
    action: {buy: {}}
  - name: exit
    condition:
      lhs: {sma: {window: {param: fast, choices: [5, 10, 15], default: 10}}}
      op: "<"
      rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}
    action: {close: {}}
data: {source: synthetic, years: 3, bar: 1d, seed: 11}
"""


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[Path, str]:
    """One grid search of 12 trials over three parameters, saved with its best run."""
    root = tmp_path_factory.mktemp("optimize-outputs")
    strategy = root / "knobs.yaml"
    strategy.write_text(STRATEGY)
    result = CliRunner().invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "1",
                                      "--out", str(root / "out")], terminal_width=200)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in (root / "out").iterdir() if p.is_dir()]
    return folder, result.output


# ---------------------------------------------------------------------- the overfitting table

def test_pbo_reads_as_the_issue_asks():
    more = dict((row[0], row) for row in overfitting_rows({"n_trials": 50, "pbo": {"pbo": 0.54, "combinations": 70}}))
    assert more["PBO"][1] == "0.54"
    assert more["PBO"][2].startswith("the in-sample winner is more likely than not to underperform")
    less = dict((row[0], row) for row in overfitting_rows({"n_trials": 50, "pbo": {"pbo": 0.2, "combinations": 70}}))
    assert "in 20% of the splits" in less["PBO"][2] and "more likely than not" not in less["PBO"][2]


def test_dsr_psr_and_min_track_record_against_the_record():
    figures = {"n_trials": 200, "deflated_sharpe": {"dsr": 0.41, "psr": 0.98, "sharpe_per_period": 0.05,
                                                    "expected_max_sharpe": 0.07, "n_trials": 200},
               "min_track_record_length": 1500.0}
    rows = {row[0]: row for row in overfitting_rows(figures, track_record=500)}
    assert rows["Trials"][1] == "200" and "best of 200" in rows["Trials"][2]
    assert rows["DSR"][1] == "0.41" and "below the usual 0.95 bar" in rows["DSR"][2]
    assert rows["PSR"][1] == "0.98" and "98% probability" in rows["PSR"][2]
    assert "not above the 0.070" in rows["Best Sharpe (per bar)"][2]
    assert rows["MinTRL"][1] == "1,500 bars (record: 500)"
    assert "too short" in rows["MinTRL"][2] and "3.0× as long" in rows["MinTRL"][2]
    passing = {row[0]: row for row in overfitting_rows({**figures, "deflated_sharpe": {**figures["deflated_sharpe"],
                                                                                         "dsr": 0.96}})}
    assert "passes the usual 0.95 bar" in passing["DSR"][2]
    hopeless = {row[0]: row for row in overfitting_rows({"n_trials": 3, "min_track_record_length": float("inf")})}
    assert hopeless["MinTRL"][1] == "∞"


def test_notes_and_errors_are_rows_not_silence():
    rows = overfitting_rows({"n_trials": 1, "note": "fewer than two trials with returns: no overfitting statistics"})
    assert [r[0] for r in rows] == ["Trials", "Note"] and "no selection bias" in rows[0][2]
    rows = overfitting_rows({"n_trials": 5, "pbo_error": "too few bars", "deflated_sharpe_error": "zero variance"})
    assert ("PBO", "–", "not computed: too few bars") in rows and ("DSR", "–", "not computed: zero variance") in rows


def test_optimize_prints_the_table_and_keeps_the_saved_summary(search):
    folder, output = search
    assert "Overfitting" in output and "what it means" in output
    for figure in ("Trials", "PSR", "DSR", "MinTRL", "PBO"):
        assert figure in output, figure
    assert "overfitting: trials=" not in output  # the old k=v line is gone
    summary = json.loads((folder / "summary.json").read_text())
    of = summary["overfitting"]  # the saved document keeps its raw figures
    assert of["n_trials"] == 12 and set(of) >= {"deflated_sharpe", "min_track_record_length", "pbo"}
    assert set(of["deflated_sharpe"]) == {"dsr", "psr", "sharpe_per_period", "expected_max_sharpe", "n_trials"}
    assert f"{of['deflated_sharpe']['dsr']:.2f}" in output and f"{of['pbo']['pbo']:.2f}" in output


# ---------------------------------------------------------------------- the parameter heatmap of the tear sheet

def _charts(html: str) -> dict:
    import re

    match = re.search(r'<script type="application/json" id="bf-charts">(.*?)</script>', html, flags=re.S)
    return json.loads(match.group(1))


def test_best_run_report_has_a_heatmap_of_every_parameter_pair(search):
    import numpy as np
    import polars as pl

    from backforge.research.optimize import heatmap_grid

    folder, _ = search
    html = (folder / "best-1" / "report.html").read_text()
    assert 'id="parameters"' in html and 'href="#parameters"' in html
    spec = _charts(html)["chart-parameters"]
    (menu,) = spec["layout"]["updatemenus"]
    labels = [b["label"] for b in menu["buttons"]]
    assert labels == ["fast × slow", "fast × trend", "slow × trend"]
    trials = pl.read_parquet(folder / "trials.parquet")
    best = json.loads((folder / "summary.json").read_text())["best"]
    for button, (x, y) in zip(menu["buttons"], [("fast", "slow"), ("fast", "trend"), ("slow", "trend")]):
        xs, ys, grid = heatmap_grid(trials, x, y, "sharpe")
        update, layout = button["args"]
        assert update["x"][0] == [str(v) for v in xs] and update["y"][0] == [str(v) for v in ys]
        shown = np.array([[np.nan if v is None else v for v in row] for row in update["z"][0]])
        assert np.array_equal(shown, grid, equal_nan=True)
        # the best over the others, by hand: the max Sharpe of the trials with those two values
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = trials.filter((pl.col(f"param.{x}") == xv) & (pl.col(f"param.{y}") == yv))["sharpe"]
                assert (np.isnan(shown[i, j]) and cell.len() == 0) or shown[i, j] == cell.max()
        assert update["x"][1] == [str(best[x])] and update["y"][1] == [str(best[y])]  # ★ on this run
        assert layout == {"xaxis.title.text": x, "yaxis.title.text": y}


def test_backforge_report_of_a_best_run_keeps_the_heatmap_and_plain_runs_have_none(search, tmp_path):
    folder, _ = search
    out = tmp_path / "again.html"
    result = CliRunner().invoke(app, ["report", str(folder / "best-1"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "chart-parameters" in _charts(out.read_text())
    import shutil

    alone = tmp_path / "best-1"  # the same run outside its search folder: no heatmap, no link
    shutil.copytree(folder / "best-1", alone)
    plain = CliRunner().invoke(app, ["report", str(alone), "--output", str(tmp_path / "plain.html")])
    assert plain.exit_code == 0, plain.output
    html = (tmp_path / "plain.html").read_text()
    assert "chart-parameters" not in _charts(html) and 'href="#parameters"' not in html
