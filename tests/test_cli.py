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


# ---------------------------------------------------------------------- argument errors (issue 10, item 8)

USAGE_ERRORS = [
    ["run", "--bogus", "x"], ["run"], ["run", "s.yaml", "--ot", "x"], ["demo", "--assets", "abc"], ["demo", "--assets", "0"],
    ["validate"], ["report"], ["compare"], ["explain", "run-folder"], ["nosuch"],
    ["optimize", "s.yaml", "--method"], ["walkforward", "s.yaml"], ["judge"], ["judge", "r", "--budget", "1"],
    ["generate", "--bogus"],
    ["data", "nosuch"], ["data", "import"], ["data", "import", "x.csv", "--bogus"], ["data", "synth", "--years", "abc"],
    ["data", "sql"], ["data", "show"], ["data", "quality", "--gap-factor", "x"], ["data", "list", "--bogus"],
]


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_argument_errors_are_one_line_in_every_sub_app():
    for args in USAGE_ERRORS:
        result = runner.invoke(app, args)
        lines = _lines(result.output)
        assert result.exit_code == 2 and len(lines) == 1, (args, result.output)
        assert lines[0].startswith("error: ") and "--help" in lines[0], (args, lines)
        assert not any(mark in result.output for mark in ("╭", "│", "Usage:", "Traceback")), (args, result.output)


def test_argument_errors_keep_the_useful_part_of_the_message():
    result = runner.invoke(app, ["run", "s.yaml", "--ot", "x"])
    assert "No such option: --ot" in result.output and "--out" in result.output
    result = runner.invoke(app, ["data", "synth", "--years", "abc"])
    assert "Invalid value for '--years'" in result.output


def test_help_and_no_arguments_still_print_the_help():
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0 and "import" in result.output and "sql" in result.output
    result = runner.invoke(app, ["data"])
    assert "import" in result.output and "error:" not in result.output


# ---------------------------------------------------------------------- one friendly_errors for every CLI

def test_every_cli_shares_one_friendly_errors():
    from backforge import _cli, cli
    from backforge.data import cli as data_cli

    assert cli.friendly_errors is _cli.friendly_errors
    assert data_cli._friendly_errors is _cli.friendly_errors


def test_file_errors_are_one_line_in_the_data_cli(tmp_path):
    (tmp_path / "f").write_text("a file, not a folder")
    result = runner.invoke(app, ["data", "sql", "SELECT 1 AS x", "--output", str(tmp_path / "f" / "x.csv"),
                                 "--catalog", str(tmp_path / "cat")])
    lines = _lines(result.output)
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(tmp_path / "f") in lines[0]


def test_markup_in_messages_is_printed_as_it_is(tmp_path):
    path = tmp_path / "[bold]odd[/bold] name.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "[bold]odd[/bold] name.yaml" in result.output, result.output
