"""docs/events.md names every API function of the event engine (its docstring examples run in tests/test_documentation.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_name_every_api_function():
    from backforge.engine.events import api

    text = (ROOT / "docs" / "events.md").read_text()
    missing = [name for name in api.__all__ if name.isidentifier() and name.islower() and f"`{name}" not in text
               and name not in text]
    assert missing == []
