"""Start-up cost (issue 17): the ``backforge`` command imports what a command needs when it runs.

Each case runs in a new interpreter (what the ``backforge`` script is) and reports which heavy modules
were loaded by the time the command exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
HEAVY = ("numba", "polars", "pyarrow", "pandas", "backforge.judge.core", "backforge.judge.evidence",
         "backforge.engine.kernels", "backforge.results.result")


def _loaded_after(argv: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    """Run ``backforge ARGV`` in a fresh interpreter; its exit code, output and the heavy modules it loaded."""
    script = textwrap.dedent(f"""
        import json, sys
        from backforge.cli import main
        sys.argv = ["backforge", *{argv!r}]
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        else:
            code = 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r})
        print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], proc.stdout + proc.stderr, report["heavy"]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["data", "--help"], ["optimize", "--help"],
                                  ["judge", "--help"], ["sessions", "--help"]])
def test_help_loads_neither_numba_nor_polars_nor_the_judge(argv: list[str], tmp_path: Path) -> None:
    code, output, heavy = _loaded_after(argv, tmp_path)
    assert code == 0, output
    assert heavy == [], f"backforge {' '.join(argv)} loaded {heavy}"


def test_help_lists_every_command(tmp_path: Path) -> None:
    code, output, _ = _loaded_after(["--help"], tmp_path)
    assert code == 0
    for command in ("demo", "validate", "run", "report", "compare", "montecarlo", "optimize", "walkforward", "serve",
                    "judge", "generate", "paper", "live", "sessions", "data"):
        assert f" {command} " in output, command


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                                            if "events:" not in p.read_text()))
def test_validate_loads_neither_numba_nor_the_judge(example: str, tmp_path: Path) -> None:
    code, output, heavy = _loaded_after(["validate", str(ROOT / "examples" / example)], tmp_path)
    assert code == 0 and "valid: " in output, output
    compiled = [m for m in heavy if m.split(".")[0] not in ("polars", "pyarrow", "pandas")]  # those read data files
    assert compiled == [], f"backforge validate {example} loaded {compiled}"


def test_validate_of_a_bad_file_is_one_line_without_the_judge(tmp_path: Path) -> None:
    code, output, heavy = _loaded_after(["validate", str(tmp_path / "nothere.yaml")], tmp_path)
    assert code == 2 and "strategy file not found" in output, output
    assert not [m for m in heavy if m.startswith("backforge.judge")], heavy


def test_import_backforge_is_cheap_and_still_exposes_the_api() -> None:
    script = ("import sys, backforge as bf; before = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('numba', 'polars', 'pandas')); ok = callable(bf.from_signals) and bf.MarketData.__name__ == 'MarketData'; "
              "print(before, ok, 'numba' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["[]", "True", "True"], out.stdout + out.stderr
