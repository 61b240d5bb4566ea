"""A writer killed with SIGKILL leaves a temporary version folder; the next catalog open (or import) removes it —
but never the folder of a writer that is still alive (issue 10, item 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from backforge.data import parquet_store as store_module
from backforge.data.catalog import Catalog
from backforge.data.synth import gbm

SRC = Path(store_module.__file__).parents[2]


def test_sigkilled_import_of_a_new_symbol_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "cat"
    Catalog(root).write_market(gbm(1, 1, seed=1))
    data = tmp_path / "new.csv"
    data.write_text("date,close\n" + "".join(f"2020-01-{d:02d},{d}.5\n" for d in range(1, 29)))
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import pathlib, time
        from backforge.data import catalog, parquet_store
        def hang(tmp, final):  # the writer is stuck (or slow) just before publishing its new version
            pathlib.Path({str(ready)!r}).write_text(str(tmp))
            time.sleep(600)
        parquet_store._publish_step = hang
        catalog.Catalog({str(root)!r}).import_file({str(data)!r}, symbol="NEWSYM")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "writer never got ready"
        tmp = Path(ready.read_text())
        assert tmp.is_dir() and tmp.name.startswith(".tmp-") and any(tmp.iterdir())
        assert Catalog(root).symbols() == ["AAPL"] and tmp.is_dir()  # a live writer's folder is left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and tmp.is_dir()  # the debris of the dead writer
    cat = Catalog(root)  # opening the catalog cleans up
    assert not tmp.exists() and not list((root / ".pending").iterdir())
    assert cat.symbols() == ["AAPL"]
    cat.import_file(data, symbol="NEWSYM")
    assert cat.read("NEWSYM").height == 28 and not list(root.rglob(".tmp-*"))


def test_interrupted_deletes_and_aligned_cache_writes_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "cat"
    Catalog(root).write_market(gbm(1, 1, seed=1))
    trash = root / ".trash" / ("a" * 32)
    trash.mkdir(parents=True)
    (trash / "data.parquet").write_bytes(b"x" * 1000)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (root / "_aligned").mkdir()
    stale = root / "_aligned" / f".1d-key.arrow.{dead}.{'b' * 32}.tmp"
    live = root / "_aligned" / f".1d-key.arrow.{os.getpid()}.{'c' * 32}.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    Catalog(root)
    assert not trash.exists() and not stale.exists() and live.exists()
