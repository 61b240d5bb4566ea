"""The token budget of an evidence pack, in a module of its own so that the ``judge`` command's help
(``backforge --help``) shows the default without loading the judge."""

from __future__ import annotations

__all__ = ["DEFAULT_BUDGET_TOKENS"]

DEFAULT_BUDGET_TOKENS = 8_000
"""Default token budget of the pack given to a model."""
