"""The docstring examples of backforge.live run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["backforge.live.broker", "backforge.live.store", "backforge.live._engine",
                                    "backforge.live.step", "backforge.live.paper", "backforge.live.feeds",
                                    "backforge.live.runner", "backforge.live.session"])
def test_docstring_examples(module):
    failures, _ = doctest.testmod(importlib.import_module(module),
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
