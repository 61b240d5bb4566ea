"""Errors of the judge: every one is a :class:`~backforge.errors.BackforgeError`, so the CLI prints one
red line (what failed and what to do) and exits with code 2.

Examples
--------
>>> err = ProviderError("the LLM provider rejected the API key (401)", field="api_key")
>>> isinstance(err, JudgeError), str(err)
(True, 'field api_key: the LLM provider rejected the API key (401)')
"""

from __future__ import annotations

from backforge.errors import BackforgeError

__all__ = ["JudgeError", "ProviderError", "InvalidAnswerError", "NotConfiguredError"]


class JudgeError(BackforgeError):
    """A judgement that cannot be made as asked (a run that cannot be re-run, a bad recommendation...)."""

    code = "BF-JUDGE"


class ProviderError(JudgeError):
    """An LLM provider that cannot be used: unreachable, wrong key, rate-limited, failing, too slow.

    ``escalate`` is True when another (stronger or differently hosted) model might succeed where this
    one failed (timeouts, rate limits, server errors), False when the configuration itself is wrong
    (no connection, a rejected key, an unknown model).
    """

    def __init__(self, message: str, *, escalate: bool = False, **where: str | None) -> None:
        self.escalate = escalate
        super().__init__(message, **where)


class InvalidAnswerError(JudgeError):
    """A model that never returned an answer that parses and validates, after retries and escalation."""


class NotConfiguredError(JudgeError):
    """No LLM is configured; the message says how to configure one."""
