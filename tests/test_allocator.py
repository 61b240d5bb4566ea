"""``backforge._resources.tune_allocator``: the compiled engine's per-call arrays reuse freed memory.

Each case runs in a fresh interpreter (the setting is process-wide and made once). The effect is measured,
not assumed: a round of a dozen 800 KiB arrays — the size of a one-year minute-bar history — allocated,
written and freed, again and again, costs a page fault per 4 KiB with glibc's defaults and next to none
once the engine is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

ROUNDS = """
    import json, resource
    import numpy as np
    def faults_per_round(rounds=20):
        arrays = None
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            arrays = [np.ones(100_000) for _ in range(12)]  # 800 KB each, written
            del arrays
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds
"""


def _run(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BACKFORGE_MALLOC"}
    environ.update(env, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(ROUNDS) + textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loading_the_engine_lets_freed_arrays_be_reused() -> None:
    out = _run("""
        faults_per_round()  # glibc adapts its thresholds to the first frees
        default = faults_per_round()
        import backforge._jit, backforge._resources as r
        faults_per_round()
        print(json.dumps({"tuned": r._tuned, "default": default, "after": faults_per_round()}))
    """)
    assert out["tuned"] is True
    assert out["default"] > 1000  # 12 x 800 KB of fresh pages every round (about 2,400 faults)
    assert out["after"] < 50, out


@pytest.mark.parametrize("env", [{"BACKFORGE_MALLOC": "default"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_the_users_own_setting_or_default_is_left_alone(env: dict) -> None:
    out = _run("""
        import backforge._jit, backforge._resources as r
        faults_per_round()
        print(json.dumps({"tuned": r._tuned, "after": faults_per_round()}))
    """, **env)
    assert out["tuned"] is False
    assert out["after"] > 1000, out  # fresh pages every round, as without backforge
