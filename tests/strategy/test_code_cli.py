"""`backforge optimize file.py` and `backforge walkforward file.py`: a Strategy class's own parameter ranges
(or --range) searched from the command line, giving what optimize_class / walk_forward_class give; bad input is
one line naming the file and line, exit code 2."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge._time import format_ns
from backforge.cli import app
from backforge.live import session_tables
from backforge.research.optimize import score_result
from backforge.research.walkforward import windows as window_spans
from backforge.strategy.code import class_market, load_strategy_class
from backforge.strategy.compiled import backtest_compiled
from backforge.strategy.search import optimize_class, walk_forward_class

SOURCE = '''
import backforge as bf
from backforge.strategy.code import crossover
from backforge.strategy.indicators import sma


class Cross(bf.Strategy):
    universe = ("AAPL",)
    data_spec = {"source": "synthetic", "years": 3, "seed": 5}
    fast, slow, size = 10, 40, 0.5
    ranges = {"fast": range(5, 25, 5), "slow": {"range": [30, 60, 30]}}
    constraints = ["fast < slow"]

    def init(self):
        self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
        self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)

    def next(self):
        if crossover(self.f, self.s) and not self.position:
            self.buy(self.size)
        elif crossover(self.s, self.f) and self.position:
            self.close()
'''

COMPILED = '''
import numba
from backforge.strategy.compiled import compiled, buy_nb, close_nb, position_nb
from backforge.strategy.indicators import sma


@compiled
class CrossNb:
    universe = ("AAPL",)
    data_spec = {"source": "synthetic", "years": 2, "seed": 5}
    fast, slow = 10, 40
    ranges = {"fast": [5, 10]}

    def init(self, data):
        return sma(data.close, data.timestamps, self.fast), sma(data.close, data.timestamps, self.slow)

    @staticmethod
    @numba.njit
    def next_nb(state, t, ts, user):
        fast, slow = user
        if t == 0:
            return
        was, now = fast[t - 1, 0] - slow[t - 1, 0], fast[t, 0] - slow[t, 0]
        if was <= 0.0 < now and position_nb(state, 0) == 0.0:
            buy_nb(state, t, ts, 0, 0.5)
        elif now < 0.0 <= was and position_nb(state, 0) != 0.0:
            close_nb(state, t, ts, 0)
'''


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(done, *fragments):
    lines = [line for line in done.output.strip().splitlines() if line.strip()]
    assert done.exit_code == 2, done.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.output, done.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def cross_file(tmp_path):
    path = tmp_path / "cross.py"
    path.write_text(SOURCE)
    return path


def _saved(out, prefix):
    (folder,) = [p for p in out.iterdir() if p.name.startswith(prefix)]
    return folder


def test_optimize_a_python_file_searches_the_class_ranges(cross_file, tmp_path):
    out = tmp_path / "runs"
    done = _invoke("optimize", cross_file, "--workers", "1", "--top", "1", "--heatmap", "fast,slow", "--out", out)
    assert done.exit_code == 0, done.output
    folder = _saved(out, "optimize-cross")
    summary = json.loads((folder / "summary.json").read_text())
    cls = load_strategy_class(cross_file)
    expected = optimize_class(class_market(cls, cross_file.parent), cls)  # the class's own ranges and constraints
    assert summary["trials"] == expected.n_trials == 8  # fast 5..20 x slow 30, 60 with fast < slow
    assert summary["best"] == expected.best.params and summary["class"] == "Cross"
    trials = pl.read_parquet(folder / "trials.parquet")
    assert sorted(zip(trials["param.fast"], trials["param.slow"])) == \
        sorted((f, s) for f in (5, 10, 15, 20) for s in (30, 60))
    assert (folder / "heatmap.html").is_file() and (folder / "best-1").is_dir()
    # --range replaces the class's own range of one parameter (random search over it)
    done = _invoke("optimize", cross_file, "--range", "fast=5,10", "--range", "size=0.25,0.5", "--method", "random",
                   "--samples", "3", "--workers", "1", "--top", "0", "--out", tmp_path / "r2")
    assert done.exit_code == 0, done.output
    summary = json.loads((_saved(tmp_path / "r2", "optimize-cross") / "summary.json").read_text())
    assert summary["trials"] == 3 and set(summary["best"]) == {"fast", "slow", "size"}


def test_walkforward_a_python_file(cross_file, tmp_path):
    out = tmp_path / "runs"
    done = _invoke("walkforward", cross_file, "--in-sample", "1y", "--out-of-sample", "6mo", "--range", "fast=5:10:5",
                   "--workers", "1", "--out", out)
    assert done.exit_code == 0, done.output
    windows = pl.read_parquet(_saved(out, "walkforward-cross") / "windows.parquet")
    cls = load_strategy_class(cross_file)
    expected = walk_forward_class(class_market(cls, cross_file.parent), cls, {"fast": [5, 10], "slow": [30, 60]},
                                  constraints=["fast < slow"], in_sample="1y", out_of_sample="6mo")
    assert windows.equals(expected.windows) and windows.height >= 2


def test_bad_input_is_one_line_naming_the_file(cross_file, tmp_path):
    out = tmp_path / "runs"
    bad = tmp_path / "bad_range.py"
    bad.write_text(SOURCE.replace('{"range": [30, 60, 30]}', '{"range": [30, 60, 0]}'))
    line = 1 + SOURCE.splitlines().index('    ranges = {"fast": range(5, 25, 5), "slow": {"range": [30, 60, 30]}}')
    _one_line_error(_invoke("optimize", bad, "--out", out), f"bad_range.py:{line}", "ranges.slow.range",
                    "step must be > 0")
    bad.write_text(SOURCE.replace('"fast < slow"', '"fast < slwo"'))
    _one_line_error(_invoke("walkforward", bad, "--in-sample", "1y", "--out-of-sample", "6mo", "--out", out),
                    f"bad_range.py:{line + 1}", "'slwo'", "did you mean 'slow'")
    bad.write_text(SOURCE.replace("    ranges = {", "    rangez = {"))
    _one_line_error(_invoke("optimize", bad, "--out", out), "declares no parameter ranges")
    _one_line_error(_invoke("optimize", cross_file, "--range", "fast=1.5,2", "--out", out), "ranges.fast", "is int")
    _one_line_error(_invoke("optimize", cross_file, "--range", "fsat=1,2", "--out", out), "did you mean 'fast'")
    _one_line_error(_invoke("optimize", cross_file, "--range", "fast", "--out", out), "--range takes NAME=")
    _one_line_error(_invoke("optimize", cross_file, "--executor", "ray", "--out", out), "local cores")
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    _one_line_error(_invoke("optimize", none, "--out", out), "none.py", "defines no Strategy subclass")
    broken = tmp_path / "broken.py"
    broken.write_text("import backforge\n\nraise RuntimeError('boom')\n")
    _one_line_error(_invoke("walkforward", broken, "--in-sample", "1y", "--out-of-sample", "6mo", "--out", out),
                    "broken.py:3", "boom")
    _one_line_error(_invoke("optimize", "examples/sma_cross.yaml", "--range", "fast=1,2", "--out", out),
                    "--range applies to a Python strategy file")
    assert not out.exists()  # nothing half-made was saved


@pytest.mark.slow
def test_a_compiled_class_is_searched_walked_forward_run_and_paper_traded(tmp_path):
    path = tmp_path / "cross_nb.py"
    path.write_text(COMPILED)
    out = tmp_path / "runs"
    done = _invoke("optimize", path, "--workers", "1", "--top", "0", "--out", out)
    assert done.exit_code == 0, done.output
    assert json.loads((_saved(out, "optimize-cross_nb") / "summary.json").read_text())["trials"] == 2
    done = _invoke("walkforward", path, "--in-sample", "1y", "--out-of-sample", "6mo", "--workers", "1", "--out", out)
    assert done.exit_code == 0, done.output
    windows = pl.read_parquet(_saved(out, "walkforward-cross_nb") / "windows.parquet")
    cls = load_strategy_class(path, compiled=True)
    market = class_market(cls, path.parent)
    expected = walk_forward_class(market, cls, in_sample="1y", out_of_sample="6mo")
    assert windows.equals(expected.windows) and windows.height >= 2
    # each window's out-of-sample run: init warmed up on the bars before it, next_nb on the window's
    _, lo, hi = window_spans(market.timestamps, "1y", "6mo")[0]
    fast = expected.windows.row(0, named=True)["param.fast"]
    oos = backtest_compiled(market, cls, start=lo, end=hi, fast=fast)
    assert score_result(oos)["sharpe"] == expected.windows["oos_sharpe"][0]
    done = _invoke("run", path, "--no-report", "--out", tmp_path / "run")  # `run` takes a compiled class too
    assert done.exit_code == 0 and "saved run" in done.output, done.output
    done = _invoke("paper", path, "--state", tmp_path / "session", "--max-bars", "300")
    assert done.exit_code == 0, done.output
    bars = session_tables(tmp_path / "session")["bars"]
    replayed = backtest_compiled(market.rows(0, 300), cls)
    assert bars.height == 300 and np.array_equal(bars["equity"].to_numpy(), replayed.state.equity[:300])


def test_bf_optimize_and_walk_forward_accept_a_class(cross_file):
    cls = load_strategy_class(cross_file)
    data = class_market(cls, cross_file.parent)
    mine = bf.optimize(cls, data, method="random", samples=3, seed=2, fee_rate=0.001)
    theirs = optimize_class(data, cls, method="random", samples=3, seed=2, fee_rate=0.001)
    assert [t.params for t in mine.trials] == [t.params for t in theirs.trials] and mine.n_trials == 3
    assert [t.metrics for t in mine.trials] == [t.metrics for t in theirs.trials]
    wf = bf.walk_forward(cls, data, in_sample="1y", out_of_sample="6mo", ranges={"fast": [5, 10], "slow": [30]})
    expected = walk_forward_class(data, cls, {"fast": [5, 10], "slow": [30]}, in_sample="1y", out_of_sample="6mo")
    assert wf.windows.equals(expected.windows)


def test_run_names_the_strategy_line_and_bar_when_next_fails_and_saves_nothing(tmp_path, monkeypatch):
    """`backforge run file.py` given as a relative path: a next() that reads ahead, or raises, is one line
    naming the user's file and line (not backforge's own frame) and the bar's time; no run is saved."""
    monkeypatch.chdir(tmp_path)
    peek = SOURCE.replace("        if crossover(self.f, self.s) and not self.position:",
                          "        ahead = self.data.close[len(self.data.close)]\n"
                          "        if crossover(self.f, self.s) and not self.position:")
    raises = SOURCE.replace("        if crossover(self.f, self.s) and not self.position:",
                            "        if len(self.data.close) == 100:\n"
                            "            raise ValueError('my bug')\n"
                            "        if crossover(self.f, self.s) and not self.position:")
    line = 1 + peek.splitlines().index("        ahead = self.data.close[len(self.data.close)]")
    (tmp_path / "peek.py").write_text(peek)
    (tmp_path / "raises.py").write_text(raises)
    _one_line_error(_invoke("run", "peek.py", "--out", "runs"), f"peek.py:{line}", "IndexError")
    done = _invoke("run", "raises.py", "--out", "runs")
    _one_line_error(done, f"raises.py:{line + 1}", "ValueError", "my bug")
    when = format_ns(int(class_market(load_strategy_class(tmp_path / "raises.py"), tmp_path).timestamps[99]))
    assert f"at bar 99 ({when}, raises.py:{line + 1})" in done.output, done.output  # the 100th bar's next()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
