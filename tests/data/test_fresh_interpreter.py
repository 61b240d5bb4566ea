"""Bad CSV fields give one clear line (exit 2) in a fresh interpreter — where nothing else has imported
``pyarrow.compute`` first — for ``data import``, ``data quality``, ``run --data`` and ``bf.data.read_csv``.

The cases run through ``tests/data/_fresh.py``: one new interpreter imports ``backforge.cli`` (the state of a
``backforge`` process about to dispatch), checks that ``pyarrow.compute`` is not loaded, and forks once per
case, so each case is as fresh as a new process at the cost of a fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2020-01-01,1,2,0.5,1.5,100\n"

# name -> (file body, extra import options, expected fragments of the one error line)
BAD_FILES: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "bad_timestamp": (HEADER + GOOD + "2020-13-45,1,2,0.5,1.5,100\n", [], ("row 3", "field timestamp", "'2020-13-45'")),
    "text_price": (HEADER + GOOD + "2020-01-02,abc,2,0.5,1.5,100\n", [], ("row 3", "field open", "cannot parse 'abc' as a number")),
    "year_3000": (HEADER + GOOD + "3000-01-02,1,2,0.5,1.5,100\n", [], ("row 3", "field timestamp", "outside the supported range")),
    "year_0001": (HEADER + "0001-01-01,1,2,0.5,1.5,100\n" + GOOD, [], ("row 2", "field timestamp", "outside the supported range")),
    "mixed_offsets": (HEADER + "2020-01-01T00:00:00+00:00,1,2,0.5,1.5,100\n2020-01-02T00:00:00+05:00,1,2,0.5,1.5,100\n"
                      "2020-01-03T00:00:00,1,2,0.5,1.5,100\n", [], ("row 4", "field timestamp", "mixed time zones")),
    "unix_on_dates": (HEADER + GOOD + "2020-01-02,1,2,0.5,1.5,100\n", ["--time-format", "unix_s"],
                      ("row 2", "field timestamp", "'2020-01-01'")),
}
STRATEGY = """\
name: fresh
universe: [X]
strategies:
  - name: s
    condition: {lhs: close, op: ">", rhs: 0}
    action: {buy: {}}
"""


def run_fresh(cases: list[dict], tmp_path: Path) -> list[dict]:
    from _fresh import run_fresh as run

    return run(cases, tmp_path)


def _case(kind: str, entry: str, name: str, tmp_path: Path) -> dict:
    body, options, _ = BAD_FILES[name]
    path = tmp_path / f"{name}.csv"
    path.write_text(body)
    if entry == "import":
        return {"argv": ["data", "import", str(path), "--symbol", "X", "--catalog", str(tmp_path / "catalog"), *options]}
    if entry == "quality":
        assert not options  # data quality reads files with the detected layout only
        return {"argv": ["data", "quality", str(path)]}
    if entry == "run":
        strategy = tmp_path / "fresh.yaml"
        strategy.write_text(STRATEGY)
        return {"argv": ["run", str(strategy), "--data", str(path), "--out", str(tmp_path / "runs"), "--no-report"]}
    kwargs = {"time_format": options[1]} if options else {}
    return {"api": "read_csv", "args": [str(path)], "kwargs": kwargs}


def _check(result: dict, name: str, path: Path) -> None:
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 2 and len(lines) == 1, result
    assert "Traceback" not in result["stderr"] and lines[0].startswith(f"error: {path}"), result
    for fragment in BAD_FILES[name][2]:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (path.parent / "catalog").exists() or not any((path.parent / "catalog").glob("X/*/CURRENT"))


# every defect once and every entry point at least once in the default tier (one interpreter, forks)
DEFAULT = [("import", "bad_timestamp"), ("quality", "text_price"), ("run", "year_3000"), ("read_csv", "year_0001"),
           ("import", "mixed_offsets"), ("import", "unix_on_dates"), ("read_csv", "unix_on_dates"), ("run", "text_price")]


@pytest.mark.slow
def test_bad_fields_give_one_line_in_a_fresh_interpreter(tmp_path: Path) -> None:
    cases = [_case("", entry, name, tmp_path) for entry, name in DEFAULT]
    for (entry, name), result in zip(DEFAULT, run_fresh(cases, tmp_path)):
        _check(result, name, tmp_path / f"{name}.csv")


@pytest.mark.slow
def test_every_bad_field_through_every_entry_point_in_a_fresh_interpreter(tmp_path: Path) -> None:
    matrix = [(entry, name) for name, (_, options, _) in BAD_FILES.items()
              for entry in ("import", "quality", "run", "read_csv") if not (options and entry in ("quality", "run"))]
    cases = [_case("", entry, name, tmp_path) for entry, name in matrix]
    for (entry, name), result in zip(matrix, run_fresh(cases, tmp_path)):
        _check(result, name, tmp_path / f"{name}.csv")


@pytest.mark.slow
def test_the_backforge_script_itself_in_a_new_process(tmp_path: Path) -> None:
    """No fork: a plain new process, exactly as a user runs it."""
    case = _case("", "import", "text_price", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-m", "backforge.cli", *case["argv"]], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    _check({"code": proc.returncode, "stderr": proc.stderr}, "text_price", tmp_path / "text_price.csv")
