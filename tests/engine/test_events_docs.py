"""The event engine's docstring examples run (and docs/events.md names every API function)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", [
    "backforge.data.events", "backforge.engine.events", "backforge.engine.events.api",
    "backforge.engine.events.run", "backforge.engine.events.strategies",
])
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    failures, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert failures == 0


def test_docs_name_every_api_function():
    from backforge.engine.events import api

    text = (ROOT / "docs" / "events.md").read_text()
    missing = [name for name in api.__all__ if name.isidentifier() and name.islower() and f"`{name}" not in text
               and name not in text]
    assert missing == []
