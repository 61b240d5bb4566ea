"""Fixtures: fake venues (real servers on 127.0.0.1) and helpers to wait on stream updates."""

from __future__ import annotations

import time

import pytest

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


@pytest.fixture(autouse=True)
def _close_everything():
    """Close every broker and feed the test built (their sockets and stream threads)."""
    yield
    close_made()


def collect(broker, until, timeout: float = 5.0) -> list:
    """Poll ``broker`` until ``until(items)`` holds for the items gathered so far (bounded by ``timeout``)."""
    items: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items.extend(broker.poll(0.05))
        if until(items):
            return items
    raise AssertionError(f"timed out after {timeout} s; got {items!r}")


@pytest.fixture
def alpaca_venue():
    from fakes import alpaca_fake
    server, venue = alpaca_fake.start()
    yield server, venue
    close_made()  # brokers first: a stream must not reconnect to a stopped venue
    server.stop()


@pytest.fixture
def ccxt_venue():
    from fakes import binance_fake
    server, venue = binance_fake.start()
    yield server, venue
    close_made()  # brokers first: a stream must not reconnect to a stopped venue
    server.stop()


@pytest.fixture
def oanda_venue():
    from fakes import oanda_fake
    server, venue = oanda_fake.start()
    yield server, venue
    close_made()
    server.stop()
