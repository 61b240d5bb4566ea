"""Every writing command refuses an output location it cannot use — a read-only folder, an existing regular
file, a symbolic link loop — with one line and exit code 2, before doing any work (issue 10, item 6).

Runs in a fresh interpreter (``_fresh.py``). As root, permission bits do not stop writes, so the driver is
started without the capabilities that bypass them (``setpriv``), as an ordinary user would be.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from _fresh import run_fresh

STRATEGY = """\
name: out
universe: [AAPL]
strategies:
  - name: s
    condition: {lhs: close, op: ">", rhs: {param: level, choices: [0, 1], default: 0}}
    action: {buy: {}}
data: {source: synthetic, years: 1, bar: 1d, seed: 1}
"""
NO_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
               "--inh-caps=-dac_override,-dac_read_search,-fowner")


def _prefix() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return NO_OVERRIDE


def _commands(target: Path, tmp_path: Path) -> dict[str, list[str]]:
    strategy = tmp_path / "out.yaml"
    csv = tmp_path / "x.csv"
    return {
        "demo": ["demo", "--assets", "1", "--years", "1", "--out", str(target)],
        "run": ["run", str(strategy), "--out", str(target)],
        "optimize": ["optimize", str(strategy), "--out", str(target)],
        "walkforward": ["walkforward", str(strategy), "--in-sample", "100", "--out-of-sample", "50", "--out", str(target)],
        "data import": ["data", "import", str(csv), "--symbol", "X", "--catalog", str(target)],
        "data synth": ["data", "synth", "--assets", "1", "--years", "1", "--catalog", str(target)],
        "data sql": ["data", "sql", "SELECT 1 AS x", "--output", str(target / "x.csv" if target.name == "ro" else target),
                     "--catalog", str(tmp_path / "empty-catalog")],
    }


@pytest.mark.slow
def test_unusable_output_locations_are_one_line_before_any_work(tmp_path: Path) -> None:
    prefix = _prefix()
    (tmp_path / "out.yaml").write_text(STRATEGY)
    (tmp_path / "x.csv").write_text("date,close\n2020-01-02,1.5\n2020-01-03,1.6\n")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    regular = tmp_path / "regular-file"
    regular.write_text("not a folder")
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    cases, labels = [], []
    for target, fragment in ((read_only, "cannot be written"), (regular, "file"), (loop, "symbolic link")):
        for name, argv in _commands(target, tmp_path).items():
            if name == "data sql" and target == regular:
                continue  # an existing file is a valid --output (it is replaced atomically)
            cases.append({"argv": argv})
            labels.append((name, target, fragment))
    read_only.chmod(0o555)
    try:
        results = run_fresh(cases, tmp_path, prefix=prefix)
    finally:
        read_only.chmod(0o755)
    for (name, target, fragment), result in zip(labels, results):
        lines = [line for line in (result["stdout"] + result["stderr"]).splitlines() if line.strip()]
        assert result["code"] == 2 and len(lines) == 1, (name, target, result)
        assert lines[0].startswith("error: ") and str(target) in lines[0] and fragment in lines[0], (name, lines)
    assert list(read_only.iterdir()) == []  # nothing was written, not even a temporary file
    assert regular.read_text() == "not a folder"


def test_a_regular_file_as_sql_output_is_replaced_atomically(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from backforge.cli import app

    target = tmp_path / "result.csv"
    target.write_text("old")
    result = CliRunner().invoke(app, ["data", "sql", "SELECT 42 AS x", "--output", str(target), "--catalog",
                                      str(tmp_path / "cat")])
    assert result.exit_code == 0, result.output
    assert target.read_text().splitlines() == ["x", "42"] and [p.name for p in tmp_path.iterdir()] == ["result.csv"]
