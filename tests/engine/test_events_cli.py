"""``backforge events``: import (every bad-input rule is one line naming file, row and field, exit 2,
nothing stored), synth, list and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from backforge.cli import app
from backforge.data.events import EventStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "events" / "imbalance_taker.yaml"
runner = CliRunner()
HEADER = "timestamp,side,price,amount,is_snapshot\n"
SNAPSHOT = "1000,bid,99.0,5,true\n1000,ask,101.0,4,true\n"


def invoke(*args):
    result = runner.invoke(app, ["events", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize("rows, message", [
    (SNAPSHOT + "2000,bid,102.0,1,false\n", "row 4, field price: crossed"),
    (SNAPSHOT + "900,bid,98.0,1,false\n", "row 4, field timestamp: unsorted_exch"),
    ("1000,bid,99.0,5,false\n", "row 2, field kind: depth_before_snapshot"),
    (SNAPSHOT + "2000,bid,98.0,nan,false\n", "row 4, field amount: bad_qty"),
    ("1000,bid,99.0,5,true\n1000,ask,101.0,-4,true\n", "row 3, field amount: bad_qty"),
    ("1000,bid,99.0,5,true\n1000,middle,101.0,4,true\n", "row 3, field side: side must be bid/ask (or buy/sell), got 'middle'"),
])
def test_bad_l2_rows_are_one_line_and_store_nothing(tmp_path, rows, message):
    path = tmp_path / "book.csv"
    path.write_text(HEADER + rows)
    result = invoke("import", path, "--format", "l2", "--tick-size", 1, "--catalog", tmp_path / "cat")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}, ") and message in lines[0], lines
    assert "Traceback" not in result.output
    assert EventStore(tmp_path / "cat").symbols() == []


def test_drop_policy_stores_the_rest(tmp_path):
    path = tmp_path / "book.csv"
    path.write_text(HEADER + SNAPSHOT + "2000,bid,102.0,1,false\n3000,bid,99.0,6,false\n")
    result = invoke("import", path, "-f", "l2", "--tick-size", 1, "-s", "BOOK", "-p", "drop", "-c", tmp_path / "cat")
    assert result.exit_code == 0, result.output
    assert "1 bad rows dropped" in result.output
    stored = EventStore(tmp_path / "cat").load("BOOK")
    assert stored.qty.tolist()[-1] == 6.0 and len(stored) == 4  # clear, 2 snapshot rows, the good update


@pytest.mark.parametrize("args, message", [
    (["--format", "csv"], "--format: unknown format 'csv'"),
    (["--format", "l2", "--policy", "repair"], "--policy: unknown policy 'repair'"),
    (["--format", "l2", "--feed-latency", "soon"], "--feed-latency"),
    (["--format", "l2", "--tick-size", "-1"], "--tick-size: must be > 0"),
])
def test_bad_options(tmp_path, args, message):
    path = tmp_path / "book.csv"
    path.write_text(HEADER + SNAPSHOT)
    result = invoke("import", path, *args, "-c", tmp_path / "cat")
    assert result.exit_code == 2 and message in result.output


def test_truefx_import_synth_list_and_run(tmp_path):
    quotes = tmp_path / "usdjpy.csv"
    quotes.write_text("timestamp,bid,ask\n2024-01-02 00:00:00.000,140.001,140.004\n"
                      "2024-01-02 00:00:00.250,140.002,140.005\n")
    cat = tmp_path / "cat"
    result = invoke("import", quotes, "-f", "truefx", "--feed-latency", "1ms", "-c", cat)
    assert result.exit_code == 0, result.output
    assert "stored USDJPY" in result.output and "4 rows (4 quote)" in result.output
    assert EventStore(cat).load("USDJPY").local_ts[0] - EventStore(cat).load("USDJPY").exch_ts[0] == 1_000_000
    assert invoke("synth", "-n", 30_000, "--seed", 5, "-c", cat).exit_code == 0
    listed = invoke("list", "-c", cat).output
    assert "SYNTH: 30,000 rows" in listed and "USDJPY: 4 rows" in listed
    out = tmp_path / "run"
    result = invoke("run", EXAMPLE, "--events", "SYNTH", "-c", cat, "--out", out)
    assert result.exit_code == 0, result.output
    assert "imbalance-taker on SYNTH: 30,000 events" in result.output
    assert (out / "signal_events.parquet").exists() and (out / "fills.parquet").exists()
    html = (out / "report.html").read_text()  # the tear sheet, its signal audit without condition values
    assert "imbalance-taker" in html and "Signal-event audit (" in html
    again = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "again.html")])
    assert again.exit_code == 0 and (tmp_path / "again.html").stat().st_size > 10_000, again.output
    assert invoke("run", EXAMPLE, "--events", "SYNTH", "-c", cat, "--out", tmp_path / "bare", "--no-report").exit_code == 0
    assert not (tmp_path / "bare" / "report.html").exists()


def test_run_errors(tmp_path):
    assert "no such file" in invoke("run", tmp_path / "none.yaml").output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("levels: 5}}, op: \"<\"", "levels: 0}}, op: \"<\""))
    result = invoke("run", bad)
    assert result.exit_code == 2 and "strategies[1].condition.lhs.levels" in result.output
    assert invoke("run", EXAMPLE, "--events", "NONE", "-c", tmp_path).exit_code == 2
    bars = tmp_path / "bars.yaml"
    bars.write_text("name: b\nuniverse: [A]\nstrategies: [{name: s, action: {buy: {}}}]\n")
    result = invoke("run", bars)
    assert result.exit_code == 2 and "data.events" in result.output


@pytest.mark.parametrize("args", [["nosuch"], ["import"], ["import", "x.csv"], ["run", "s.yaml", "--bogus"],
                                  ["synth", "-n", "many"]])
def test_argument_errors_are_one_line(args):
    result = invoke(*args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
    assert "Traceback" not in result.output and "Usage:" not in result.output


def test_events_help_loads_neither_numba_nor_polars(tmp_path):
    import json
    import os
    import subprocess
    import sys

    script = ("import json, sys\nfrom backforge.cli import main\nsys.argv = ['backforge', 'events', 'run', '--help']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'polars', 'pyarrow', 'pandas'))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "--events" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_optimize_searches_a_strategy_file_on_event_data(tmp_path):
    """`backforge optimize` of an event file: every trial is the event run of the file with its values,
    scored as every search; the best run is saved with its report; options that do not apply are refused."""
    import json

    import polars as pl
    import yaml

    from backforge.engine.events.language import run_event_portfolio
    from backforge.research.optimize import score_result
    from backforge.strategy.schema import load_portfolio

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["data"]["events"]["n_events"] = 40_000
    enter = raw["strategies"][0]["condition"]["all"][0]
    enter["rhs"] = {"param": "lean", "choices": [0.25, 0.35]}
    enter["lhs"]["book_imbalance"]["levels"] = {"param": "levels", "range": [3, 5, 2]}
    path = tmp_path / "taker.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "runs"
    done = runner.invoke(app, ["optimize", str(path), "--top", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    folder = next(out.glob("optimize-taker*"))
    trials = pl.read_parquet(folder / "trials.parquet")
    assert trials.height == 4 and trials["error"].is_null().all()
    for row in trials.iter_rows(named=True):
        values = {"lean": row["param.lean"], "levels": row["param.levels"]}
        expected = score_result(run_event_portfolio(load_portfolio(raw, parameters=values), base=tmp_path))
        assert row["sharpe"] == expected["sharpe"] and row["trades"] == expected["trades"], values
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == 4 and "event-engine runs" in summary["runtime_detail"]
    assert (folder / "best-1" / "report.html").exists()
    for extra in (["--executor", "ray"], ["--data", str(path)]):
        bad = runner.invoke(app, ["optimize", str(path), "--out", str(tmp_path / "no"), *extra])
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
    assert not (tmp_path / "no").exists()


def test_walk_forward_of_a_strategy_file_on_event_data(tmp_path):
    """Each window replays the stream from its start, trades only inside the window and stops before its
    end; the winner of each window is the best in-sample run, its out-of-sample figures those of its run
    on the window; `backforge walkforward` saves the same windows."""
    import polars as pl
    import yaml

    from backforge.engine.events.language import run_event_portfolio
    from backforge.research.optimize import SearchConfig, score_result
    from backforge.research.walkforward import walk_forward_events, windows
    from backforge.strategy.schema import load_portfolio

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["data"]["events"]["n_events"] = 60_000
    raw["data"]["events"]["engine"]["sample_every"] = "1s"
    enter = raw["strategies"][0]["condition"]["all"][0]
    enter["rhs"] = {"param": "lean", "choices": [0.25, 0.35]}
    wf = walk_forward_events(raw, in_sample="40s", out_of_sample="20s", search=SearchConfig(method="grid"),
                             base=tmp_path)
    grid = np.asarray(run_event_portfolio(load_portfolio(raw), base=tmp_path).data.timestamps)
    spans = windows(grid, "40s", "20s")
    assert wf.windows.height == len(spans) >= 3 and wf.n_trials == 2 * len(spans)
    traded = 0
    for row, (a, b, c) in zip(wf.windows.iter_rows(named=True), spans):
        lo, mid = int(grid[a]), int(grid[b])
        hi = int(grid[c]) if c < len(grid) else None
        scores = {}
        for lean in (0.25, 0.35):
            run = run_event_portfolio(load_portfolio(raw, parameters={"lean": lean}), base=tmp_path,
                                      trade_from_ns=lo if a else None, until_ns=mid)
            scores[lean] = score_result(run, from_ns=lo if a else None)["sharpe"]
        assert row["is_sharpe"] == scores[row["param.lean"]] == max(scores.values())
        oos = run_event_portfolio(load_portfolio(raw, parameters={"lean": row["param.lean"]}), base=tmp_path,
                                  trade_from_ns=mid, until_ns=hi)
        assert row["oos_sharpe"] == score_result(oos, from_ns=mid)["sharpe"]
        fills = oos.fills["timestamp"].cast(pl.Int64).to_numpy()
        assert (fills >= mid).all() and (hi is None or (fills < hi + 10_000_000).all())  # + the order latency
        traded += len(fills)
    assert traded > 0
    out = tmp_path / "runs"
    done = runner.invoke(app, ["walkforward", str(_write_yaml(tmp_path, raw)), "--in-sample", "40s",
                               "--out-of-sample", "20s", "--out", str(out)])
    assert done.exit_code == 0, done.output
    saved = pl.read_parquet(next(out.glob("walkforward-*")) / "windows.parquet")
    assert saved.equals(wf.windows)


def _write_yaml(folder, raw):
    import yaml

    path = folder / "taker.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
