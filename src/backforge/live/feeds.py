"""Feeds: replay of catalog or file data, and a bar builder that turns a trade/quote stream into bars with the
same rules as the catalog's resampler (:mod:`backforge.data.resample`).

:class:`ReplayFeed` plays a :class:`~backforge.data.market.MarketData` bar by bar from ``start`` — as fast as
possible (``speed=None``), ``speed`` times faster than the bars' own spacing, or paced to the wall clock
(``speed="realtime"``). Bars before ``start`` are its history (the strategy's warm-up).

:class:`BarBuilder` aggregates ticks into epoch-aligned time bars stamped at their close (a bar stamped
09:31 holds the ticks of [09:30, 09:31)), exactly like :func:`~backforge.data.resample.trades_to_bars` and
:func:`~backforge.data.resample.quotes_to_bars`: open = first, high = max, low = min, close = last price,
volume = summed size; intervals without ticks give no bar. A bar is complete when a tick of a later interval
arrives or the clock passes its close (:meth:`BarBuilder.flush`).

Examples
--------
>>> import backforge as bf
>>> data = bf.synth(n_assets=2, years=1, seed=3)
>>> feed = ReplayFeed(data, start=200)
>>> feed.history(5).n_bars, feed.next_bar().ts_ns == int(data.timestamps[200])
(5, True)
>>> b = BarBuilder(["X"], every="1min")
>>> b.add_trade("X", 0, 10.0, 1.0), b.add_trade("X", 20 * 10**9, 11.0, 1.0)
([], [])
>>> [(e.ts_ns // 10**9, *(float(x[0]) for x in (e.open, e.high, e.close, e.volume))) for e in b.add_trade("X", 70 * 10**9, 9.0, 2.0)]
[(60, 10.0, 11.0, 11.0, 2.0)]
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from backforge._time import parse_duration
from backforge.data.market import MarketData
from backforge.errors import ConfigError, DataError, did_you_mean
from backforge.live.broker import BarEvent, Feed

__all__ = ["BarBuilder", "ReplayFeed", "TickFeed", "load_replay_data"]


class ReplayFeed(Feed):
    """Replay ``data`` from bar ``start`` (an index, or a time: the first bar at or after it)."""

    def __init__(self, data: MarketData, *, start: int | Any = 0, speed: float | str | None = None,
                 symbols: Sequence[str] | None = None) -> None:
        if symbols is not None:
            missing = [s for s in symbols if s not in data.assets]
            if missing:
                raise ConfigError(f"the data has no {missing[0]!r}{did_you_mean(missing[0], data.assets)}", field="symbols")
            data = data.select(symbols)
        self.data = data
        self.symbols = tuple(data.assets)
        self.bar_ns = int(data.bar_ns) if data.n_bars > 1 else 0
        self.has_quotes = data.has_quotes
        if isinstance(start, (int, np.integer)):
            self.start = int(start)
        else:
            from backforge.strategy.compiler import _scalar_ns

            self.start = int(np.searchsorted(data.timestamps, _scalar_ns(start)))
        if not 0 <= self.start <= data.n_bars:
            raise ConfigError(f"start bar {self.start} is outside the data's 0..{data.n_bars}", field="start")
        if speed == "realtime":
            speed = 1.0
        if speed is not None and not (isinstance(speed, (int, float)) and speed > 0):
            raise ConfigError(f"speed must be a number > 0 or 'realtime', got {speed!r}", field="speed")
        self.speed = float(speed) if speed is not None else None
        self.cursor = self.start
        self._last_wall = None
        self._last_ts = None

    def history(self, n_bars: int, *, end_ns: int | None = None) -> MarketData:
        """The last ``n_bars`` bars before the replay cursor (or up to ``end_ns`` inclusive)."""
        hi = self.cursor if end_ns is None else int(np.searchsorted(self.data.timestamps, end_ns, side="right"))
        return self.data.rows(max(0, hi - int(n_bars)), hi)

    def seek(self, after_ns: int) -> None:
        """Continue after the bar stamped ``after_ns`` (a restarted session resumes where it stopped)."""
        self.cursor = max(self.start, int(np.searchsorted(self.data.timestamps, after_ns, side="right")))

    def peek_ts(self) -> int | None:
        """Timestamp of the bar :meth:`next_bar` returns next (the calendar), or None at the end."""
        return int(self.data.timestamps[self.cursor]) if self.cursor < self.data.n_bars else None

    def next_bar(self, timeout: float | None = None) -> BarEvent | None:
        if self.cursor >= self.data.n_bars:
            return None
        i = self.cursor
        ts = int(self.data.timestamps[i])
        if self.speed is not None and self._last_ts is not None:
            due = self._last_wall + (ts - self._last_ts) / 1e9 / self.speed
            wait = due - time.monotonic()
            if timeout is not None and wait > timeout:
                time.sleep(max(timeout, 0.0))
                return None
            if wait > 0:
                time.sleep(wait)
        self._last_wall = time.monotonic()
        self._last_ts = ts
        self.cursor += 1
        d = self.data
        quote = lambda q: tuple(np.array(a[i]) for a in q) if q is not None else None
        return BarEvent(ts, d.open[i].copy(), d.high[i].copy(), d.low[i].copy(), d.close[i].copy(), d.volume[i].copy(),
                        quote(d.bid), quote(d.ask))

    @property
    def finished(self) -> bool:
        return self.cursor >= self.data.n_bars


def load_replay_data(portfolio: Any, *, data: Any = None, base: Any = None) -> MarketData:
    """The data a replay of ``portfolio`` plays: ``data`` (a file path, a list of them, a catalog folder as
    ``"catalog:PATH"``, or MarketData), else the portfolio's own data spec — the same data ``backforge run``
    uses. A catalog is named ``"catalog:ROOT#BAR"`` (bar label default ``1d``)."""
    from backforge.strategy.compiler import load_data

    if isinstance(data, str) and data.startswith("catalog:"):
        from backforge.data.catalog import Catalog

        root, _, bar = data[len("catalog:"):].partition("#")
        return Catalog(root).load(list(portfolio.universe), bar=bar or "1d")
    return load_data(portfolio, base=base, override=data)


class BarBuilder:
    """Ticks to time bars for ``symbols`` (see the module docstring). ``kind="trades"`` takes
    :meth:`add_trade` (price, size); ``kind="quotes"`` takes :meth:`add_quote` (bid, ask, volume) and emits
    mid OHLC bars with bid/ask quote bars."""

    def __init__(self, symbols: Sequence[str], every: str = "1min", *, kind: str = "trades") -> None:
        if kind not in ("trades", "quotes"):
            raise ConfigError(f"kind must be 'trades' or 'quotes', got {kind!r}", field="kind")
        self.symbols = tuple(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.every_ns = parse_duration(every)
        self.kind = kind
        self._bucket: int | None = None
        self._reset()

    def _reset(self) -> None:
        A = len(self.symbols)
        nan = lambda: np.full(A, np.nan)
        if self.kind == "trades":
            self._cols = {"open": nan(), "high": nan(), "low": nan(), "close": nan(), "volume": np.zeros(A)}
        else:
            self._cols = {f"{s}_{f}": nan() for s in ("bid", "ask") for f in ("open", "high", "low", "close")}
            self._cols["volume"] = np.zeros(A)
        self._vol_seen = np.zeros(A, dtype=bool)
        self._count = np.zeros(A, dtype=np.int64)

    def _advance(self, ts: int) -> list[BarEvent]:
        bucket = (int(ts) // self.every_ns) * self.every_ns
        if self._bucket is not None and bucket < self._bucket:
            raise DataError(f"tick at {ts} is older than the bar being built (from {self._bucket}); ticks must be "
                            "in time order", field="timestamp")
        out: list[BarEvent] = []
        if self._bucket is not None and bucket > self._bucket:
            out = self._emit()
        self._bucket = bucket
        return out

    def _emit(self) -> list[BarEvent]:
        if self._bucket is None or not self._count.any():
            return []
        c = self._cols
        volume = np.where(self._vol_seen, c["volume"], np.nan)
        volume[self._count == 0] = np.nan
        ts = self._bucket + self.every_ns
        if self.kind == "trades":
            event = BarEvent(ts, c["open"], c["high"], c["low"], c["close"], volume)
        else:
            bid = tuple(c[f"bid_{f}"] for f in ("open", "high", "low", "close"))
            ask = tuple(c[f"ask_{f}"] for f in ("open", "high", "low", "close"))
            mid = [(b + a) / 2.0 for b, a in zip(bid, ask)]
            event = BarEvent(ts, mid[0], mid[1], mid[2], mid[3], volume, bid, ask)
        self._reset()
        return [event]

    def _symbol(self, symbol: str) -> int:
        i = self.index.get(symbol)
        if i is None:
            raise DataError(f"tick for unknown symbol {symbol!r}{did_you_mean(symbol, self.symbols)}", field="symbol")
        return i

    @staticmethod
    def _ohlc(cols: dict, prefix: str, i: int, price: float) -> None:
        if cols[f"{prefix}open"][i] != cols[f"{prefix}open"][i]:
            cols[f"{prefix}open"][i] = price
            cols[f"{prefix}high"][i] = price
            cols[f"{prefix}low"][i] = price
        else:
            cols[f"{prefix}high"][i] = max(cols[f"{prefix}high"][i], price)
            cols[f"{prefix}low"][i] = min(cols[f"{prefix}low"][i], price)
        cols[f"{prefix}close"][i] = price

    def add_trade(self, symbol: str, ts: int, price: float, size: float = float("nan")) -> list[BarEvent]:
        """Add one trade; returns the bars it completed (zero or one)."""
        out = self._advance(ts)
        i = self._symbol(symbol)
        self._ohlc(self._cols, "", i, float(price))
        if size == size:
            self._cols["volume"][i] += float(size)
            self._vol_seen[i] = True
        self._count[i] += 1
        return out

    def add_quote(self, symbol: str, ts: int, bid: float, ask: float, volume: float = float("nan")) -> list[BarEvent]:
        """Add one quote; returns the bars it completed (zero or one)."""
        out = self._advance(ts)
        i = self._symbol(symbol)
        self._ohlc(self._cols, "bid_", i, float(bid))
        self._ohlc(self._cols, "ask_", i, float(ask))
        if volume == volume:
            self._cols["volume"][i] += float(volume)
            self._vol_seen[i] = True
        self._count[i] += 1
        return out

    def flush(self, now_ns: int | None = None) -> list[BarEvent]:
        """Emit the bar being built if the clock (``now_ns``; None = unconditionally) has passed its close."""
        if self._bucket is None:
            return []
        if now_ns is not None and now_ns < self._bucket + self.every_ns:
            return []
        out = self._emit()
        self._bucket = None
        return out


class TickFeed(Feed):
    """A :class:`Feed` of bars built from a stream of ticks: ``(symbol, ts_ns, price, size)`` trades or
    ``(symbol, ts_ns, bid, ask, volume)`` quotes, from any iterable (a file reader, a websocket queue).
    ``history`` serves the bars built so far (bounded by ``keep`` bars)."""

    def __init__(self, ticks: Iterable[tuple], symbols: Sequence[str], every: str = "1min", *, kind: str = "trades",
                 keep: int = 10_000) -> None:
        self.builder = BarBuilder(symbols, every, kind=kind)
        self.symbols = tuple(symbols)
        self.bar_ns = self.builder.every_ns
        self.has_quotes = kind == "quotes"
        self._ticks = iter(ticks)
        self._ready: deque[BarEvent] = deque()
        self._built: deque[BarEvent] = deque(maxlen=keep)
        self._done = False

    def next_bar(self, timeout: float | None = None) -> BarEvent | None:
        add = self.builder.add_trade if not self.has_quotes else self.builder.add_quote
        while not self._ready and not self._done:
            try:
                tick = next(self._ticks)
            except StopIteration:
                self._done = True
                self._ready.extend(self.builder.flush())
                break
            self._ready.extend(add(*tick))
        if not self._ready:
            return None
        bar = self._ready.popleft()
        self._built.append(bar)
        return bar

    def history(self, n_bars: int, *, end_ns: int | None = None) -> MarketData:
        bars = [b for b in self._built if end_ns is None or b.ts_ns <= end_ns][-int(n_bars):] if n_bars > 0 else []
        A = len(self.symbols)
        stack = lambda name: np.vstack([getattr(b, name) for b in bars]) if bars else np.zeros((0, A))
        ts = np.array([b.ts_ns for b in bars], dtype=np.int64)
        return MarketData(ts, stack("open"), stack("high"), stack("low"), stack("close"), stack("volume"), self.symbols)

    @property
    def finished(self) -> bool:
        return self._done and not self._ready
