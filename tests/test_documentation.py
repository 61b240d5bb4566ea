"""Executable documentation: every docstring example of every module and every Python block of
``docs/*.md`` and the README run, collected automatically (a new module or page is covered the day it
is added — no hand-kept lists).

A page's ``python`` block runs in a fresh namespace in a temporary folder (with ``examples/`` of the
repository reachable as ``examples``); trailing ``# `` comment lines of a block are the output it must
print. A block that only shows a shape and cannot run is written as ``text``, not ``python``.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import os
import pkgutil
import re
import textwrap
from pathlib import Path

import pytest

import backforge

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
OPTIONAL = {"ray", "duckdb", "arcticdb", "openai", "anthropic", "fastapi", "uvicorn", "sqlalchemy", "alpaca", "ccxt",
            "httpx", "websockets", "hftbacktest", "playwright", "psycopg"}
"""Optional extras: a module that needs a missing one is skipped here (CI installs them all)."""


SLOW_DOCTESTS = {"backforge.strategy.compiled", "backforge.engine.events.run"}
"""Modules whose examples compile numba functions defined in the example (never cached): the slow tier."""


def _modules() -> list[str]:
    names = ["backforge"]
    for info in pkgutil.walk_packages(backforge.__path__, prefix="backforge."):
        names.append(info.name)
    return sorted(names)


def _module_params() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_DOCTESTS else name for name in _modules()]


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in OPTIONAL and not os.environ.get("CI"):
            pytest.skip(f"{name} needs the optional package {root!r}")
        raise


@pytest.mark.parametrize("module", _module_params())
def test_docstring_examples(module: str, tmp_path: Path, monkeypatch) -> None:
    mod = _import(module)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    tests = [t for t in finder.find(mod, module, globs=dict(vars(mod))) if t.examples]
    output = io.StringIO()
    for test in tests:
        runner.run(test, out=output.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, output.getvalue()


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in _pages():
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
            out.append((f"{page.relative_to(ROOT)}#{i}", block))
    return out


def split(block: str) -> tuple[str, str]:
    """Code, and the expected output written as trailing '# ' comment lines."""
    lines = block.rstrip("\n").split("\n")
    expected: list[str] = []
    while lines and (lines[-1].startswith("# ") or lines[-1] == "#"):
        expected.insert(0, lines.pop()[2:])
    return "\n".join(lines), "\n".join(expected)


BLOCKS = _blocks()


@pytest.mark.parametrize("block", [b for _, b in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_page_examples(block: str, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    code, expected = split(textwrap.dedent(block))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "doc-example", "exec"), {"__name__": "docs_example"})  # noqa: S102 - executable docs
    if expected:
        assert out.getvalue().rstrip("\n") == expected


def test_every_page_and_module_is_collected() -> None:
    assert len(_modules()) > 40
    assert {p.name for p in _pages()} >= {"README.md", "data.md", "strategy-language.md"}
