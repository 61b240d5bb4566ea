"""`backforge paper` and `backforge sessions` end to end (Typer's runner, real files and SQLite)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from backforge.cli import app

STRATEGY = """
name: cli-paper
universe: [AAA]
cash: 10000
strategies:
  - name: in
    condition: {lhs: {sma: {window: 3}}, op: crosses_above, rhs: {sma: {window: 8}}}
    action: {buy: {allocation: {equity_fraction: 0.5}}}
  - name: out
    condition: {lhs: {sma: {window: 3}}, op: crosses_below, rhs: {sma: {window: 8}}}
    action: {close: {}}
data: {source: synthetic, years: 0.5, seed: 3, start: "2015-03-02"}
"""


def test_paper_then_sessions(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STRATEGY)
    state = tmp_path / "sessions" / "one"
    cli = CliRunner()
    first = cli.invoke(app, ["paper", str(path), "--state", str(state), "--max-bars", "30"])
    assert first.exit_code == 0, first.output
    assert "bars 30" in first.output
    again = cli.invoke(app, ["paper", str(path), "--state", str(state)])  # resumes where it stopped
    assert again.exit_code == 0, again.output
    listed = cli.invoke(app, ["sessions", "list", str(tmp_path / "sessions")])
    assert listed.exit_code == 0 and "cli-paper" in listed.output and "stopped" in listed.output
    status = cli.invoke(app, ["sessions", "status", str(state), "--json"])
    info = json.loads(status.output)
    assert info["bars"] > 30 and info["finished"] and not info["running"]
    assert cli.invoke(app, ["sessions", "halt", str(state), "--reason", "test"]).exit_code == 0
    assert "halted: test" in cli.invoke(app, ["sessions", "list", str(tmp_path / "sessions")]).output
    assert "done" in cli.invoke(app, ["sessions", "resume", str(state)]).output
    assert "queued" in cli.invoke(app, ["sessions", "stop", str(state)]).output
    lines = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert {"session_started", "session_recovered", "bar", "order", "fill"} <= {e["kind"] for e in lines}


def test_bad_input_is_one_line_exit_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STRATEGY)
    cli = CliRunner()
    state = tmp_path / "st"
    assert cli.invoke(app, ["paper", str(path), "--state", str(state), "--max-bars", "2"]).exit_code == 0
    path.write_text(STRATEGY.replace("cash: 10000", "cash: 20000"))
    changed = cli.invoke(app, ["paper", str(path), "--state", str(state)])
    assert changed.exit_code == 2 and "different strategy config" in changed.output and "Traceback" not in changed.output
    assert cli.invoke(app, ["paper", str(path), "--state", str(state), "--force", "--max-bars", "1"]).exit_code == 0
    bad_speed = cli.invoke(app, ["paper", str(path), "--speed", "fast", "--state", str(tmp_path / "x")])
    assert bad_speed.exit_code == 2 and "--speed" in bad_speed.output
    missing = cli.invoke(app, ["sessions", "status", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no session here" in missing.output
