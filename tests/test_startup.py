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


# synthetic data, CSV files, bid/ask quote files, a rebalance with risk rules and sizing, nested indicators
# (tests/strategy/test_inputs.py checks every example in process)
@pytest.mark.parametrize("example", ["sma_cross.yaml", "rsi_mean_reversion.yaml", "fx_breakout_usdjpy.yaml",
                                     "vol_target_rotation.yaml", "pairs_ratio_zscore.yaml"])
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


def _console(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_console_script_ends_without_teardown_but_runs_atexit_and_keeps_every_file(tmp_path: Path) -> None:
    proc = _console("""
        import atexit, gc, sys
        atexit.register(lambda: print("atexit ran", gc.get_threshold(), flush=True))
        import numba  # what a backtest loads: the teardown exit_now skips
        from backforge.cli import console_script
        sys.argv = ["backforge", "demo", "--years", "1", "--assets", "2", "--out", "runs"]
        console_script()
        print("not reached")
    """, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the collector's young threshold raised (tune_gc), the older ones Python's own
    assert proc.stdout.rstrip().endswith("atexit ran (50000, 10, 10)") and "not reached" not in proc.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    from backforge.results.saved import load_result

    saved = load_result(folder)  # every table of the run reads back (a truncated Parquet file would not)
    assert saved.trades.height > 0 and (folder / "report.html").read_text().rstrip().endswith("</html>")
    assert f"report: runs/{folder.name}/report.html" in proc.stdout  # the last line was flushed


def test_exit_now_keeps_the_exit_code_and_joins_a_running_thread(tmp_path: Path) -> None:
    proc = _console("""
        import threading, time
        import numba
        from backforge._cli import exit_now
        def late():
            time.sleep(0.3)
            open("late.txt", "w").write("done")
        threading.Thread(target=late).start()
        exit_now(3)
    """, tmp_path)
    assert proc.returncode == 3 and (tmp_path / "late.txt").read_text() == "done", proc.stderr
    proc = _console("import numba\nfrom backforge._cli import exit_now\nexit_now(2)", tmp_path)
    assert proc.returncode == 2 and proc.stderr == ""
    proc = _console("import numba\nfrom backforge._cli import exit_now\nexit_now('a message')", tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip() == "a message"  # sys.exit's handling of a text code
