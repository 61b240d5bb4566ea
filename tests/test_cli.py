"""The CLI: real subprocesses for the entry point, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from backforge import __version__
from backforge.cli import app

runner = CliRunner()


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output


def test_demo_runs_and_saves(tmp_path):
    result = runner.invoke(app, ["demo", "--assets", "3", "--years", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Sharpe" in result.output and "saved run" in result.output
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "trades.parquet").exists() and (runs[0] / "summary.json").exists()


def test_bad_arguments_exit_non_zero_with_one_line(tmp_path):
    result = runner.invoke(app, ["demo", "--fast", "50", "--slow", "20", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["demo", "--bar", "7parsecs", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown duration unit" in result.output


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backforge.cli", "demo", "--fast", "9", "--slow", "3",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "must be smaller" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
