"""`--fundamentals FILE` for `backforge run`, `optimize` and `walkforward` (issue 16).

The strategy buys AAPL when its EPS is positive and closes when it is negative. The file publishes
a negative EPS first and a positive one on 2016-03-01 (a Tuesday), so the first entry must be the
first bar at or after that publication — never earlier (point in time) — and a run without the file
must be refused with the compiler's one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from backforge.cli import app

runner = CliRunner()

STRATEGY = """\
name: eps-gate
universe: [AAPL]
cash: 100000
strategies:
  - name: enter
    condition:
      all:
        - {lhs: {fundamental: {field: eps}}, op: ">", rhs: 0}
        - {lhs: {sma: {window: {param: fast, choices: [3, 5], default: 3}}}, op: ">", rhs: 0}
    action: {buy: {}}
  - name: exit
    condition: {lhs: {fundamental: {field: eps}}, op: "<", rhs: 0}
    action: {close: {}}
data: {source: synthetic, years: 2, bar: 1d, seed: 4}
"""

FUNDAMENTALS = """\
symbol,field,published_at,value
AAPL,eps,2015-01-01T00:00:00Z,-0.5
AAPL,eps,2016-03-01T00:00:00Z,1.25
"""


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    strategy = tmp_path / "eps.yaml"
    strategy.write_text(STRATEGY)
    table = tmp_path / "eps.csv"
    table.write_text(FUNDAMENTALS)
    return strategy, table


def _one_folder(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_run_with_fundamentals_trades_from_the_publication_and_the_judge_reloads_them(files, tmp_path):
    from backforge.judge.runs import open_run
    from backforge.results.result import load_result

    strategy, table = files
    refused = runner.invoke(app, ["run", str(strategy), "--out", str(tmp_path / "none"), "--no-report"])
    assert refused.exit_code == 2
    assert "needs fundamental data" in refused.output and "Traceback" not in refused.output

    done = runner.invoke(app, ["run", str(strategy), "--fundamentals", str(table), "--out", str(tmp_path / "runs"),
                               "--no-report"])
    assert done.exit_code == 0, done.output
    folder = _one_folder(tmp_path / "runs")
    saved = load_result(folder)
    assert saved.config["data_source"]["fundamentals"] == str(table.resolve())
    trades = saved.trades
    assert trades.height == 1  # entered once, never saw a negative EPS again
    published = np.datetime64("2016-03-01T00:00:00", "ns").astype(np.int64)
    entry = int(trades["entry_time"].dt.epoch("ns")[0])
    assert entry >= published
    assert entry - published < 4 * 86_400 * 10**9  # the first bar(s) after it (fills on the next bar's open)

    view = open_run(folder)  # the judge's re-runs read the recorded file
    assert view.rerunner is not None, view.rerun_note
    assert view.rerunner.fundamentals is not None
    again = view.rerunner.run()
    assert np.array_equal(again.equity, saved.equity)


def test_bad_fundamentals_file_is_one_line_exit_2_in_every_command(files, tmp_path):
    strategy, _ = files
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,field,published_at,value\nAAPL,eps,not-a-date,1\n")
    missing = tmp_path / "missing.csv"
    for command in (["run"], ["optimize"], ["walkforward", "--in-sample", "100", "--out-of-sample", "50"]):
        for path in (bad, missing, tmp_path):
            result = runner.invoke(app, [command[0], str(strategy), *command[1:], "--fundamentals", str(path),
                                         "--out", str(tmp_path / "out")])
            assert result.exit_code == 2, (command, path, result.output)
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # refused before any work


def test_optimize_and_walkforward_use_the_fundamentals(files, tmp_path):
    strategy, table = files
    refused = runner.invoke(app, ["optimize", str(strategy), "--workers", "1", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "needs fundamental data" in refused.output

    done = runner.invoke(app, ["optimize", str(strategy), "--fundamentals", str(table), "--workers", "1", "--top", "1",
                               "--out", str(tmp_path / "opt")])
    assert done.exit_code == 0, done.output
    folder = _one_folder(tmp_path / "opt")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == 2 and summary["best_metrics"]["total_return"] != 0.0  # it traded: the EPS gate opened
    from backforge.results.result import load_result

    assert load_result(folder / "best-1").config["data_source"]["fundamentals"] == str(table.resolve())

    walked = runner.invoke(app, ["walkforward", str(strategy), "--fundamentals", str(table), "--in-sample", "200",
                                 "--out-of-sample", "100", "--workers", "1", "--out", str(tmp_path / "wf")])
    assert walked.exit_code == 0, walked.output
    assert "walk-forward efficiency" in walked.output
