"""Run CLI invocations and API calls each in a pristine interpreter state (a helper of the fresh-interpreter tests).

``python -m _fresh CASES.json`` imports ``backforge.cli`` once — exactly what the ``backforge`` script does
before it dispatches — checks that the modules whose absence hid bugs (``pyarrow.compute``, ``pyarrow.csv``,
``pyarrow.parquet``) are not loaded yet, then forks once per case, so every case starts from the state of a
freshly started ``backforge`` process and nothing one case imports can hide a missing import in another.
Prints one JSON object per case: ``{"code": exit code, "stdout": ..., "stderr": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

UNLOADED = ("pyarrow.compute", "pyarrow.csv", "pyarrow.parquet", "pyarrow.dataset")


def _run_case(case: dict) -> int:
    if "argv" in case:
        from backforge.cli import main

        sys.argv = ["backforge", *case["argv"]]
        try:
            main()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0
    import backforge as bf
    from backforge.errors import BackforgeError

    try:
        getattr(bf.data, case["api"])(*case.get("args", []), **case.get("kwargs", {}))
    except BackforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(path: str) -> None:
    import backforge.cli  # noqa: F401 - the state of a `backforge` process just before it dispatches

    loaded = [name for name in UNLOADED if name in sys.modules]
    if loaded:
        print(json.dumps({"error": f"already imported by `import backforge.cli`: {loaded}"}))
        sys.exit(3)
    cases = json.loads(open(path).read())
    for case in cases:
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:  # the child: one case, then leave without running the parent's cleanup
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            code = 70
            try:
                code = _run_case(case)
            except BaseException:  # noqa: BLE001 - a traceback is what the tests look for
                import traceback

                traceback.print_exc()
                code = 71
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + case.get("timeout", 60)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                code = -9
                break
            time.sleep(0.01)
        out.seek(0)
        err.seek(0)
        print(json.dumps({"code": code, "stdout": out.read().decode(errors="replace"),
                          "stderr": err.read().decode(errors="replace")}), flush=True)


def run_fresh(cases: list[dict], cwd, *, prefix: tuple[str, ...] = ()) -> list[dict]:
    """Run ``cases`` through this driver in a new interpreter (optionally under a command ``prefix``)."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    spec = Path(cwd) / f"cases-{os.getpid()}-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1] / "src"), str(here)]), "COLUMNS": "200"}
    proc = subprocess.run([*prefix, sys.executable, str(here / "_fresh.py"), str(spec)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd)
    spec.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), proc.stdout + proc.stderr
    return results


if __name__ == "__main__":
    main(sys.argv[1])
