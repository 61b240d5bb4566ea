"""Fixtures: fake venues (real servers on 127.0.0.1) and helpers to wait on stream updates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from venue_support import FAST_RETRY, MADE, close_made, collect, track  # noqa: E402,F401 - re-exported


@pytest.fixture(autouse=True)
def _close_everything():
    """Close every broker and feed the test built (their sockets and stream threads)."""
    yield
    close_made()


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
