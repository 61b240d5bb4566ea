"""Helpers of the venue tests (imported by name: a module called ``conftest`` is ambiguous when several
test folders are collected together)."""

from __future__ import annotations

import time

from backforge.live._venue import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_wait=1.0)
MADE: list = []
"""Brokers and feeds a test built; each test module's autouse fixture closes them."""


def track(thing):
    MADE.append(thing)
    return thing


def close_made() -> None:
    while MADE:
        MADE.pop().close()


def collect(broker, until, timeout: float = 5.0) -> list:
    """Poll ``broker`` until ``until(items)`` holds for the items gathered so far (bounded by ``timeout``)."""
    items: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items.extend(broker.poll(0.05))
        if until(items):
            return items
    raise AssertionError(f"timed out after {timeout} s; got {items!r}")
