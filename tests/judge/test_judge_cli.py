"""`backforge judge`: tables, evidence JSON, LLM review, --apply, and bad input as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from backforge.cli import app
from fake_llm import Reply
from test_judge_llm import VALID

runner = CliRunner()


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_judge_prints_findings_and_saves_them(strategy_run, copy_run):
    folder = copy_run(strategy_run)
    result = runner.invoke(app, ["judge", str(folder)])
    assert result.exit_code == 0, result.output
    assert "critical" in result.output or "warning" in result.output
    assert "fix:" in result.output and "Recommendations" in result.output
    document = json.loads((folder / "judge.json").read_text())
    assert document["findings"] and document["headline"].startswith(folder.name)
    assert (folder / "judge.html").read_text().startswith("<!DOCTYPE html>")
    assert not [name for name in _files(folder) if name.endswith(".tmp")]


def test_evidence_is_printed_as_json(strategy_run):
    result = runner.invoke(app, ["judge", str(strategy_run), "--evidence", "--budget", "2500"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["budget"]["budget"] == 2500 and document["budget"]["tokens"] <= 2500
    assert document["budget"]["trimmed"]
    full = json.loads(runner.invoke(app, ["judge", str(strategy_run), "--evidence", "--full"]).output)
    assert "monthly_returns" in full and full["budget"]["trimmed"] == []


def test_json_output_and_fail_on(strategy_run):
    result = runner.invoke(app, ["judge", str(strategy_run), "--json", "--no-save", "--max-drawdown-days", "30",
                                 "--fail-on", "critical"])
    document = json.loads(result.output)
    assert any(f["id"] == "risk.drawdown_too_long" and f["severity"] == "critical" for f in document["findings"])
    assert result.exit_code == 1


def test_llm_review_from_the_environment(fake_llm, strategy_run, copy_run):
    fake_llm.script("reviewer-small", "not json", VALID)
    folder = copy_run(strategy_run)
    result = runner.invoke(app, ["judge", str(folder), "--llm"])
    assert result.exit_code == 0, result.output
    assert "LLM review (openai:reviewer-small): fragile" in result.output
    assert "2 call(s), 0 cached, 2,400 input + 600 output tokens, $0.0000" in result.output
    saved = (folder / "judge.json").read_text()
    document = json.loads(saved)
    assert [c["outcome"][:7] for c in document["llm"]["calls"]] == ["invalid", "valid"]
    assert any(r["source"] == "llm:openai:reviewer-small" for r in document["recommendations"])
    assert "test-key" not in saved and fake_llm.openai_url not in saved
    again = runner.invoke(app, ["judge", str(folder), "--llm", "--no-save"])  # same input: served by the cache
    assert again.exit_code == 0 and "0 call(s), 1 cached" in again.output
    assert len(fake_llm.requests) == 2


def test_apply_reruns_every_recommendation(fake_llm, strategy_run, copy_run):
    fake_llm.script("reviewer-small", VALID)
    folder = copy_run(strategy_run)
    result = runner.invoke(app, ["judge", str(folder), "--llm", "--apply", "--holdout", "0.3"])
    assert result.exit_code == 0, result.output
    assert "Before and after" in result.output and "held out" in result.output
    applied = json.loads((folder / "judge.json").read_text())["applied"]
    sources = {row["source"] for row in applied["rows"]}
    assert "llm:openai:reviewer-small" in sources and "-" in sources
    assert applied["total_trials"] == 1 + sum(1 for r in applied["rows"][1:] if r["status"] == "ok")
    assert any(t["test"] == "monte_carlo" and t["status"] == "ok" for t in applied["tests"])
    html = (folder / "judge.html").read_text()
    assert "Before and after" in html and "LLM review: fragile" in html


@pytest.mark.parametrize("case, message", [
    ("missing", "no run folder here"),
    ("parquet", "trades.parquet cannot be read"),
    ("json", "summary.json is corrupted"),
    ("not_a_run", "config.json is missing"),
])
def test_bad_run_folders_give_one_line(tmp_path, strategy_run, copy_run, case, message):
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "not_a_run":
        folder = tmp_path / "empty"
        folder.mkdir()
    else:
        folder = copy_run(strategy_run)
        if case == "parquet":
            (folder / "trades.parquet").write_bytes(b"garbage")
        else:
            (folder / "summary.json").write_text('{"bars": ')
    result = runner.invoke(app, ["judge", str(folder)])
    assert result.exit_code == 2
    assert message in result.output and result.output.strip().count("\n") == 0
    assert "Traceback" not in result.output
    if folder.exists():
        assert "judge.json" not in _files(folder)


@pytest.mark.parametrize("setup, message", [
    ({"BACKFORGE_LLM_API_KEY": "sk-wrong-secret"}, "rejected the API key"),
    ({"BACKFORGE_LLM_BASE_URL": "http://127.0.0.1:9/v1", "BACKFORGE_LLM_MAX_RETRIES": "0"}, "cannot reach the LLM provider"),
    ({"script": "never valid"}, "no valid answer from openai:reviewer-small"),
    ({"script": "slow", "BACKFORGE_LLM_TIMEOUT": "0.3", "BACKFORGE_LLM_MAX_RETRIES": "0"}, "did not answer within 0.3 s"),
    ({"script": "500"}, "failed with HTTP 500"),
])
def test_llm_failures_give_one_line_and_write_nothing(fake_llm, monkeypatch, strategy_run, copy_run, setup, message):
    for name, value in setup.items():
        if name != "script":
            monkeypatch.setenv(name, value)
    script = setup.get("script")
    if script == "never valid":
        fake_llm.fallback = lambda body, api: Reply(content="The strategy looks fine to me.")
    elif script == "slow":
        fake_llm.fallback = lambda body, api: Reply(content=VALID, delay=1.5)
    elif script == "500":
        fake_llm.fallback = lambda body, api: Reply(status=500)
    folder = copy_run(strategy_run)
    before = _files(folder)
    result = runner.invoke(app, ["judge", str(folder), "--llm"])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.strip().count("\n") == 0
    assert "sk-wrong-secret" not in result.output and "Traceback" not in result.output
    assert _files(folder) == before


def test_judge_without_llm_configuration(no_llm_env, strategy_run):
    result = runner.invoke(app, ["judge", str(strategy_run), "--llm", "--no-save"])
    assert result.exit_code == 2 and "no LLM is configured" in result.output


def test_apply_on_a_run_that_cannot_be_rerun(signal_run):
    result = runner.invoke(app, ["judge", str(signal_run), "--apply", "--no-save"])
    assert result.exit_code == 2
    assert "cannot re-run: the run was made from signal arrays" in result.output


def test_console_script_error_is_one_stderr_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backforge.cli", "judge", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no run folder here" in proc.stderr
