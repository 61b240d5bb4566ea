"""Event-level market data: trades, quotes (BBO) and L2 depth as one columnar record.

Every row is one market event with two clocks, the hftbacktest convention:

* ``exch_ts`` — when the exchange matched/published it (int64 ns UTC), the clock the simulated exchange
  runs on;
* ``local_ts`` — when the strategy's process received it (``exch_ts`` + feed latency), the clock the
  strategy runs on. A strategy never sees an event before its ``local_ts``.

``kind`` is a :class:`MarketEventKind` code, ``side`` +1 (bid / buyer-initiated trade), -1 (ask /
seller-initiated trade) or 0 (both sides, for ``clear``); ``price`` and ``qty`` are floats. A depth row
carries the *new total* quantity at its price level (0 removes the level), as incremental L2 feeds do.
Quotes without sizes (TrueFX) carry ``qty = inf``: the size is unknown and treated as unlimited.

The record is stored columnar (:data:`EVENT_COLUMNS`, every column 8 bytes wide) so memory-mapped Arrow
files give zero-copy numpy columns, and :data:`event_record_dt` is the same row as an aligned structured
dtype for code that wants records.

Examples
--------
>>> events = synthetic_l2(n_events=2_000, seed=7)
>>> len(events), events.symbol, bool((np.diff(events.exch_ts) >= 0).all())
(2000, 'SYNTH', True)
>>> MarketEventKind.name(int(events.kind[0]))
'clear'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numba import njit

from backforge.engine.records import CodeTable
from backforge.errors import DataError

__all__ = [
    "event_record_dt", "EVENT_COLUMNS", "MarketEventKind", "EventData", "EventStore",
    "read_truefx_quotes", "read_binance_trades", "read_l2_csv", "synthetic_l2", "synthetic_quotes", "check_events",
    "EventIssue", "EVENT_ISSUES",
]


class MarketEventKind(CodeTable):
    TRADE = 1
    QUOTE = 2
    DEPTH = 3
    SNAPSHOT = 4
    CLEAR = 5
    _descriptions = {
        1: ("trade", "an execution: side is the aggressor (+1 buyer-initiated, -1 seller-initiated)"),
        2: ("quote", "best bid (side +1) or best ask (side -1) with its size; removes better levels of that side"),
        3: ("depth", "incremental L2 update: the new total quantity at a price level (0 removes it)"),
        4: ("snapshot", "one level of a full book snapshot (applied like a depth row after a clear)"),
        5: ("clear", "clear the side (+1 bids, -1 asks, 0 both) before a snapshot"),
    }


event_record_dt = np.dtype(
    [("exch_ts", np.int64), ("local_ts", np.int64), ("kind", np.int64), ("side", np.int64),
     ("price", np.float64), ("qty", np.float64)],
    align=True,
)
"""One market event: exchange and local timestamps (int64 ns UTC), kind code, side, price, quantity."""

EVENT_COLUMNS = tuple(event_record_dt.names)


class EventIssue(CodeTable):
    OK = 0
    UNSORTED_EXCH = 1
    UNSORTED_LOCAL = 2
    LOCAL_BEFORE_EXCH = 3
    UNKNOWN_KIND = 4
    BAD_SIDE = 5
    BAD_PRICE = 6
    BAD_QTY = 7
    DEPTH_BEFORE_SNAPSHOT = 8
    CROSSED = 9
    OUT_OF_RANGE = 10
    _descriptions = {
        0: ("ok", ""),
        1: ("unsorted_exch", "exchange timestamp earlier than the previous row's"),
        2: ("unsorted_local", "local timestamp earlier than the previous row's"),
        3: ("local_before_exch", "local timestamp earlier than the exchange timestamp (negative feed latency)"),
        4: ("unknown_kind", "unknown event kind"),
        5: ("bad_side", "side must be +1 (bid/buy) or -1 (ask/sell), or 0 for a clear of both sides"),
        6: ("bad_price", "price is NaN, infinite or <= 0"),
        7: ("bad_qty", "quantity is NaN, negative, or infinite outside a quote"),
        8: ("depth_before_snapshot", "depth update before any snapshot or quote of that side"),
        9: ("crossed", "the book is crossed or locked (best bid >= best ask) after this timestamp"),
        10: ("out_of_range", "price outside the book window of the tick size"),
    }


EVENT_ISSUES = EventIssue


# ------------------------------------------------------------------------------------------- container

@dataclass(frozen=True)
class EventData:
    """Columns of an event stream for one instrument, sorted by ``exch_ts`` (and ``local_ts``).

    Build it from the importers (:func:`read_truefx_quotes`, :func:`read_binance_trades`,
    :func:`read_l2_csv`), the generator (:func:`synthetic_l2`), :meth:`from_records`, or load it
    memory-mapped from an :class:`EventStore`. Columns are int64/float64 numpy arrays (read-only views
    when memory-mapped).

    Examples
    --------
    >>> rec = np.zeros(2, dtype=event_record_dt)
    >>> rec["kind"] = MarketEventKind.QUOTE; rec["side"] = [1, -1]; rec["price"] = [99.0, 101.0]
    >>> rec["qty"] = 1.0
    >>> data = EventData.from_records(rec, symbol="X", tick_size=1.0)
    >>> data.records()["price"].tolist()
    [99.0, 101.0]
    """

    exch_ts: np.ndarray
    local_ts: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    symbol: str = "EVENTS"
    tick_size: float = 0.01
    lot_size: float = 0.0
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.exch_ts.shape[0])

    def __repr__(self) -> str:
        counts = {MarketEventKind.name(c): int(n) for c, n in zip(*np.unique(self.kind, return_counts=True))}
        return f"EventData({self.symbol}, {len(self)} events {counts}, tick {self.tick_size})"

    @classmethod
    def from_records(cls, records: np.ndarray, *, symbol: str = "EVENTS", tick_size: float = 0.01,
                     lot_size: float = 0.0, source: dict | None = None, validate: bool = True) -> "EventData":
        """Columns from a structured array with the fields of :data:`event_record_dt`."""
        missing = [name for name in EVENT_COLUMNS if name not in (records.dtype.names or ())]
        if missing:
            raise DataError(f"event records need the fields {', '.join(EVENT_COLUMNS)}; missing {', '.join(missing)}")
        data = cls(
            *(np.ascontiguousarray(records[name], dtype=event_record_dt[name]) for name in EVENT_COLUMNS),
            symbol=symbol, tick_size=float(tick_size), lot_size=float(lot_size), source=dict(source or {}),
        )
        if validate:
            check_events(data)
        return data

    def records(self) -> np.ndarray:
        """The rows as a structured :data:`event_record_dt` array (a copy)."""
        out = np.empty(len(self), dtype=event_record_dt)
        for name in EVENT_COLUMNS:
            out[name] = getattr(self, name)
        return out

    def columns(self) -> tuple[np.ndarray, ...]:
        """``(exch_ts, local_ts, kind, side, price, qty)``: what the compiled engine reads."""
        return tuple(getattr(self, name) for name in EVENT_COLUMNS)

    def to_frame(self):
        """A Polars DataFrame with UTC datetimes and the kind/side as names."""
        import polars as pl

        utc = pl.Datetime("ns", "UTC")
        names = {str(c): n for c, (n, _) in MarketEventKind._descriptions.items()}
        return pl.DataFrame({
            "exch_ts": pl.Series(self.exch_ts).cast(utc), "local_ts": pl.Series(self.local_ts).cast(utc),
            "kind": pl.Series(self.kind).cast(pl.String).replace(names), "side": self.side,
            "price": self.price, "qty": self.qty,
        })

    def with_feed_latency(self, latency_ns: int) -> "EventData":
        """A copy whose ``local_ts = exch_ts + latency_ns`` (a constant feed latency model)."""
        if latency_ns < 0:
            raise DataError(f"feed latency must be >= 0 ns, got {latency_ns}", field="feed_latency_ns")
        return replace(self, local_ts=self.exch_ts + np.int64(latency_ns),
                       source={**self.source, "feed_latency_ns": int(latency_ns)})

    def slice(self, start: int, stop: int) -> "EventData":
        """Rows ``[start, stop)`` (views)."""
        return replace(self, **{name: getattr(self, name)[start:stop] for name in EVENT_COLUMNS})

    def price_range(self) -> tuple[float, float]:
        """Lowest and highest finite price of the book rows (trades included)."""
        mask = self.kind != MarketEventKind.CLEAR
        prices = self.price[mask]
        prices = prices[np.isfinite(prices)]
        return (float(prices.min()), float(prices.max())) if len(prices) else (0.0, 0.0)

    def to_hftbacktest(self) -> np.ndarray:
        """The rows as hftbacktest's ``event_dtype`` (EXCH_EVENT | LOCAL_EVENT flags set on every row).

        Quotes become ``DEPTH_BBO_EVENT`` rows, snapshots ``DEPTH_SNAPSHOT_EVENT``, clears
        ``DEPTH_CLEAR_EVENT``. The layout is defined here so that hftbacktest need not be imported.
        """
        dtype = np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
                          ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True)
        exch_event, local_event, buy_event, sell_event = 1 << 31, 1 << 30, 1 << 29, 1 << 28
        base = {MarketEventKind.DEPTH: 1, MarketEventKind.TRADE: 2, MarketEventKind.CLEAR: 3,
                MarketEventKind.SNAPSHOT: 4, MarketEventKind.QUOTE: 5}
        out = np.zeros(len(self), dtype=dtype)
        ev = np.zeros(len(self), dtype=np.uint64)
        for code, flag in base.items():
            ev[self.kind == code] = flag
        ev |= np.uint64(exch_event | local_event)
        ev[self.side > 0] |= np.uint64(buy_event)
        ev[self.side < 0] |= np.uint64(sell_event)
        out["ev"] = ev
        out["exch_ts"], out["local_ts"] = self.exch_ts, self.local_ts
        out["px"] = np.where(self.kind == MarketEventKind.CLEAR, 0.0, self.price)
        out["qty"] = np.where(np.isfinite(self.qty), self.qty, 0.0)
        return out


# -------------------------------------------------------------------------------------------- checking

@njit(cache=True)
def check_events_nb(exch_ts, local_ts, kind, side, price, qty, tick_size, window_lo, window_n, drop_bad):
    """Replay the book and return one :class:`EventIssue` code per row (0 = fine).

    With ``drop_bad`` a bad row is not applied and replay continues (so each later row is judged
    against the repaired stream); otherwise replay stops at the first bad row. The book is
    tick-indexed over ``[window_lo, window_lo + window_n)``. Crossing is judged after the last row of
    each exchange timestamp (a snapshot may pass through crossed states while it is applied).
    Equivalent to replaying the rows through a dict ``{price: qty}`` per side in Python.
    """
    n = exch_ts.shape[0]
    issues = np.zeros(n, dtype=np.int64)
    bid = np.zeros(window_n)
    ask = np.zeros(window_n)
    seen_bid = False
    seen_ask = False
    last_exch = np.iinfo(np.int64).min
    last_local = np.iinfo(np.int64).min
    group_start = 0
    for i in range(n):
        code = 0
        k = kind[i]
        s = side[i]
        if exch_ts[i] < last_exch:
            code = 1
        elif local_ts[i] < last_local:
            code = 2
        elif local_ts[i] < exch_ts[i]:
            code = 3
        elif k < 1 or k > 5:
            code = 4
        elif (k == 5 and (s < -1 or s > 1)) or (k != 5 and s != 1 and s != -1):
            code = 5
        elif k != 5 and (not np.isfinite(price[i]) or price[i] <= 0.0):
            code = 6
        elif k != 5 and (np.isnan(qty[i]) or qty[i] < 0.0 or (np.isinf(qty[i]) and k != 2)):
            code = 7
        elif k == 3 and ((s > 0 and not seen_bid) or (s < 0 and not seen_ask)):
            code = 8
        tick = 0
        if code == 0 and k != 5 and k != 1:
            tick = int(np.round(price[i] / tick_size)) - window_lo
            if tick < 0 or tick >= window_n:
                code = 10
        if code != 0:
            issues[i] = code
            if not drop_bad:
                return issues
            continue
        last_exch = exch_ts[i]
        last_local = local_ts[i]
        if k == 5:
            if s >= 0:
                bid[:] = 0.0
            if s <= 0:
                ask[:] = 0.0
        elif k == 2:
            book = bid if s > 0 else ask
            if s > 0:
                book[tick + 1:] = 0.0
                seen_bid = True
            else:
                book[:tick] = 0.0
                seen_ask = True
            book[tick] = qty[i] if np.isfinite(qty[i]) else 1.0
        elif k == 3 or k == 4:
            if s > 0:
                bid[tick] = qty[i]
                seen_bid = True
            else:
                ask[tick] = qty[i]
                seen_ask = True
        # crossing check at the end of a timestamp group
        if i == n - 1 or exch_ts[i + 1] != exch_ts[i]:
            best_bid = -1
            for t in range(window_n - 1, -1, -1):
                if bid[t] > 0.0:
                    best_bid = t
                    break
            if best_bid >= 0:
                crossed = False
                for t in range(best_bid + 1):
                    if ask[t] > 0.0:
                        crossed = True
                        break
                if crossed:
                    issues[i] = 9
                    if not drop_bad:
                        return issues
                    # repair: drop the whole group's book rows (restore by replaying without them)
                    for j in range(group_start, i + 1):
                        if issues[j] == 0 and kind[j] != 1:
                            issues[j] = 9
                    return issues  # the caller re-runs the check on the repaired stream
            group_start = i + 1
    return issues


def _window(price: np.ndarray, kind: np.ndarray, tick_size: float) -> tuple[int, int]:
    mask = (kind != MarketEventKind.CLEAR) & (kind != MarketEventKind.TRADE) & np.isfinite(price) & (price > 0)
    if not mask.any():
        return 0, 1
    lo = int(np.floor(price[mask].min() / tick_size)) - 1
    hi = int(np.ceil(price[mask].max() / tick_size)) + 2
    if hi - lo > 50_000_000:
        raise DataError(f"the book spans {hi - lo:,} ticks of {tick_size} (over 50M): is the tick size right?",
                        field="tick_size")
    return lo, hi - lo


def check_events(data: EventData, *, policy: Literal["error", "drop"] = "error",
                 path: str | None = None, row_offset: int = 0) -> EventData:
    """Validate an event stream; raise :class:`DataError` naming the file and row of the first problem
    (``policy="error"``) or return the stream without the bad rows (``policy="drop"``).

    Rules: timestamps non-decreasing on both clocks, ``local_ts >= exch_ts``, known kinds and sides,
    finite positive prices, finite non-negative quantities (``inf`` allowed for quotes: unknown size),
    no depth update on a side before its first snapshot or quote, and a book that is not crossed or
    locked after each exchange timestamp. ``drop`` removes the offending rows (for a crossed book: the
    book rows of the timestamp that crossed it) and re-checks the rest. ``row_offset`` maps rows to file
    lines (1 for a CSV with a header: row numbers in messages are then file line numbers).

    Examples
    --------
    >>> rec = np.zeros(3, dtype=event_record_dt)
    >>> rec["exch_ts"] = rec["local_ts"] = [1, 2, 3]; rec["kind"] = MarketEventKind.QUOTE
    >>> rec["side"] = [1, -1, 1]; rec["price"] = [99.0, 101.0, 102.0]; rec["qty"] = 1.0
    >>> data = EventData.from_records(rec, tick_size=1.0, validate=False)
    >>> check_events(data)
    Traceback (most recent call last):
    backforge.errors.DataError: row 2, field price: crossed: the book is crossed or locked (best bid >= best ask) after this timestamp
    >>> len(check_events(data, policy="drop"))
    2
    """
    if policy not in ("error", "drop"):
        raise DataError(f"unknown policy {policy!r} (choose 'error' or 'drop')", field="policy")
    if not (data.tick_size > 0 and np.isfinite(data.tick_size)):
        raise DataError(f"tick size must be > 0, got {data.tick_size}", field="tick_size", path=path)
    lo, n = _window(data.price, data.kind, data.tick_size)
    keep = np.ones(len(data), dtype=bool)
    current = data
    index = np.arange(len(data))
    for _ in range(len(data) + 1):
        issues = check_events_nb(*current.columns(), float(data.tick_size), lo, n, policy == "drop")
        bad = np.flatnonzero(issues)
        if len(bad) == 0:
            break
        if policy == "error":
            row = int(bad[0])
            code = int(issues[row])
            field_name = {1: "exch_ts", 2: "local_ts", 3: "local_ts", 4: "kind", 5: "side", 6: "price", 7: "qty",
                          8: "kind", 9: "price", 10: "price"}[code]
            raise DataError(f"{EventIssue.name(code)}: {EventIssue.describe(code)}", path=path,
                            row=int(index[row]) + row_offset, field=field_name)
        keep[index[bad]] = False
        index = np.flatnonzero(keep)
        current = replace(data, **{name: getattr(data, name)[index] for name in EVENT_COLUMNS})
    if policy == "drop" and not keep.all():
        return replace(current, source={**data.source, "dropped_rows": int((~keep).sum())})
    return current


# ------------------------------------------------------------------------------------------- importers

def _side_codes(values, *, path: str, row_offset: int) -> np.ndarray:
    text = np.char.lower(np.asarray(values, dtype=str))
    out = np.zeros(len(text), dtype=np.int64)
    out[np.isin(text, ["bid", "buy", "b", "1", "+1"])] = 1
    out[np.isin(text, ["ask", "sell", "s", "a", "-1", "offer"])] = -1
    bad = np.flatnonzero(out == 0)
    if len(bad):
        raise DataError(f"side must be bid/ask (or buy/sell), got {str(text[bad[0]])!r}", path=path,
                        row=int(bad[0]) + row_offset, field="side")
    return out


def _read_frame(path: str | os.PathLike[str], reader: str):
    import polars as pl

    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=str(p))
    try:
        if reader == "parquet":
            return pl.read_parquet(p)
        return pl.read_csv(p, infer_schema_length=10_000, try_parse_dates=False)
    except Exception as exc:  # polars raises many exception types for malformed files
        raise DataError(f"cannot read the file: {str(exc).splitlines()[0]}", path=str(p)) from None


def _first_row(path: str) -> int:
    """The number errors give the first data row of a file: its line in a CSV (the header is line 1), its
    position from 1 in a Parquet file."""
    return 1 if str(path).endswith(".parquet") else 2


def _timestamps(series, *, path: str, field_name: str, unit: str = "ns") -> np.ndarray:
    """Integer timestamps in ``unit``, datetimes, or ISO-8601 text (UTC when no zone is given); errors name the
    row as :func:`_first_row` counts."""
    import polars as pl

    first = _first_row(path)
    if series.null_count():
        row = int(series.is_null().arg_true()[0])
        raise DataError("missing timestamp", path=path, row=row + first, field=field_name)
    factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    if series.dtype.is_integer():
        return series.cast(pl.Int64).to_numpy() * factor
    if isinstance(series.dtype, pl.Datetime):
        from backforge._time import to_ns

        return to_ns(series)
    series = series.cast(pl.String)
    as_int = series.str.strip_chars().cast(pl.Int64, strict=False)
    as_time = series.str.to_datetime(time_zone="UTC", time_unit="ns", strict=False)
    neither = (as_int.is_null() & as_time.is_null()).arg_true()
    if len(neither):
        row = int(neither[0])
        raise DataError(f"cannot parse timestamp {str(series[row])!r}", path=path, row=row + first,
                        field=field_name)
    if as_int.null_count() == 0:
        return as_int.to_numpy() * factor
    if as_time.null_count() == 0:
        return as_time.cast(pl.Int64).to_numpy()
    row = int(as_time.is_null().arg_true()[0])  # a number among text timestamps
    raise DataError(f"timestamp {str(series[row])!r} is a number among text timestamps", path=path, row=row + first,
                    field=field_name)


def _floats(frame, name: str, *, path: str) -> np.ndarray:
    import polars as pl

    if name not in frame.columns:
        raise DataError(f"missing column {name!r} (columns: {', '.join(frame.columns)})", path=path, field=name)
    series = frame[name]
    try:
        values = series.cast(pl.Float64, strict=True)
    except Exception:
        bad = series.cast(pl.Float64, strict=False).is_null() & series.is_not_null()
        row = int(bad.arg_true()[0])
        raise DataError(f"not a number: {str(series[row])!r}", path=path, row=row + _first_row(path),
                        field=name) from None
    return values.fill_null(np.nan).to_numpy().astype(np.float64)


def _checked(data: EventData, *, policy: str, path: str, lines: np.ndarray | int, fields: dict[str, str]) -> EventData:
    """:func:`check_events` with its errors in the file's own terms: the row as the file counts it (``lines``:
    the number of each record's row, or the number of the first one when rows and records correspond)
    and the file's column names (``fields``: record field -> column)."""
    try:
        return check_events(data, policy=policy, path=path)
    except DataError as exc:
        row = exc.row or 0
        number = int(lines[row]) if isinstance(lines, np.ndarray) else row + int(lines)
        raise DataError(exc.message, path=path, row=number, field=fields.get(exc.field, exc.field)) from None


def read_truefx_quotes(path: str | os.PathLike[str], *, symbol: str = "USDJPY", tick_size: float = 0.001,
                       feed_latency_ns: int = 0, policy: Literal["error", "drop"] = "error") -> EventData:
    """Read a TrueFX-style quote file (``timestamp,bid,ask``) into quote events.

    Each line becomes a bid row then an ask row at the same timestamps, sizes unknown (``qty = inf``);
    ``local_ts = exch_ts + feed_latency_ns``. Row numbers in errors are file line numbers (the header
    is line 1); with ``policy="drop"`` bad rows are left out instead (``source["dropped_rows"]``).

    Examples
    --------
    >>> from backforge.data.events import read_truefx_quotes
    >>> q = read_truefx_quotes(_SHARED / "truefx-usdjpy-ticks.csv", feed_latency_ns=1_000_000)  # doctest: +SKIP
    """
    frame = _read_frame(path, "csv")
    p = str(path)
    for name in ("timestamp", "bid", "ask"):
        if name not in frame.columns:
            raise DataError(f"missing column {name!r} (columns: {', '.join(frame.columns)})", path=p, field=name)
    ts = _timestamps(frame["timestamp"], path=p, field_name="timestamp")
    bid, ask = _floats(frame, "bid", path=p), _floats(frame, "ask", path=p)
    n = len(ts)
    rec = np.zeros(2 * n, dtype=event_record_dt)
    rec["exch_ts"] = np.repeat(ts, 2)
    rec["local_ts"] = rec["exch_ts"] + int(feed_latency_ns)
    rec["kind"] = MarketEventKind.QUOTE
    rec["side"] = np.tile([1, -1], n)
    rec["price"] = np.column_stack([bid, ask]).ravel()
    rec["qty"] = np.inf
    data = EventData.from_records(rec, symbol=symbol, tick_size=tick_size, validate=False,
                                  source={"path": p, "format": "truefx", "feed_latency_ns": int(feed_latency_ns)})
    lines = np.repeat(np.arange(n) + 2, 2)  # two records per file line: its bid, then its ask
    fields = {"exch_ts": "timestamp", "local_ts": "timestamp"}
    try:
        return check_events(data, policy=policy, path=p)
    except DataError as exc:
        row = exc.row or 0
        field = ("bid" if row % 2 == 0 else "ask") if exc.field == "price" else fields.get(exc.field, exc.field)
        raise DataError(exc.message, path=p, row=int(lines[row]), field=field) from None


def read_binance_trades(path: str | os.PathLike[str], *, symbol: str = "BTCUSDT", tick_size: float = 0.01,
                        lot_size: float = 0.000001, feed_latency_ns: int = 0,
                        policy: Literal["error", "drop"] = "error") -> EventData:
    """Read Binance trades (``timestamp, trade_id, price, quantity, buyer_maker``; Parquet or CSV).

    ``buyer_maker`` true means the seller was the aggressor (side -1), false a buyer-initiated trade
    (side +1). Row numbers in errors are file lines of a CSV (the header is line 1), data rows from 1 of a
    Parquet file; fields are the file's columns.
    """
    p = str(path)
    frame = _read_frame(path, "parquet" if p.endswith(".parquet") else "csv")
    for name in ("timestamp", "price", "quantity", "buyer_maker"):
        if name not in frame.columns:
            raise DataError(f"missing column {name!r} (columns: {', '.join(frame.columns)})", path=p, field=name)
    ts = _timestamps(frame["timestamp"], path=p, field_name="timestamp", unit="ms")
    maker = np.char.lower(np.asarray(frame["buyer_maker"].cast(str).fill_null("").to_numpy(), dtype=str))
    bad = np.flatnonzero(~np.isin(maker, ["true", "false"]))
    if len(bad):
        raise DataError(f"buyer_maker must be True or False, got {str(maker[bad[0]])!r}", path=p,
                        row=int(bad[0]) + _first_row(p), field="buyer_maker")
    rec = np.zeros(len(ts), dtype=event_record_dt)
    rec["exch_ts"] = ts
    rec["local_ts"] = ts + int(feed_latency_ns)
    rec["kind"] = MarketEventKind.TRADE
    rec["side"] = np.where(maker == "true", -1, 1)
    rec["price"] = _floats(frame, "price", path=p)
    rec["qty"] = _floats(frame, "quantity", path=p)
    data = EventData.from_records(rec, symbol=symbol, tick_size=tick_size, lot_size=lot_size, validate=False,
                                  source={"path": p, "format": "binance_trades", "feed_latency_ns": int(feed_latency_ns)})
    return _checked(data, policy=policy, path=p, lines=_first_row(p),
                    fields={"qty": "quantity", "exch_ts": "timestamp", "local_ts": "timestamp"})


def read_l2_csv(path: str | os.PathLike[str], *, symbol: str = "L2", tick_size: float = 0.01, lot_size: float = 0.0,
                timestamp_unit: Literal["s", "ms", "us", "ns"] = "us", feed_latency_ns: int = 0,
                policy: Literal["error", "drop"] = "error") -> EventData:
    """Read the common incremental L2 CSV layout (Tardis ``incremental_book_L2``):
    ``timestamp, side, price, amount, is_snapshot`` (optional ``local_timestamp``; extra columns ignored).

    * ``amount`` is the new total size at the price level; 0 removes the level.
    * A run of ``is_snapshot = true`` rows after non-snapshot rows (or at the start) is a new full
      snapshot: a ``clear`` of both sides is emitted before it and its rows become ``snapshot`` events.
    * Integer timestamps are in ``timestamp_unit`` (µs by default, as Tardis writes them); text
      timestamps are parsed as ISO-8601 (UTC when no zone is given). Without ``local_timestamp``,
      ``local_ts = timestamp + feed_latency_ns``.

    Bad input (unsorted timestamps, a depth row before any snapshot, NaN/negative amounts, a crossed
    book, unknown sides) raises :class:`DataError` naming the file line; ``policy="drop"`` drops
    the offending rows instead. Nothing is returned half-imported.
    """
    import polars as pl

    p = str(path)
    frame = _read_frame(path, "csv")
    for name in ("timestamp", "side", "price", "amount", "is_snapshot"):
        if name not in frame.columns:
            raise DataError(f"missing column {name!r} (columns: {', '.join(frame.columns)})", path=p, field=name)
    ts = _timestamps(frame["timestamp"], path=p, field_name="timestamp", unit=timestamp_unit)
    if "local_timestamp" in frame.columns:
        local = _timestamps(frame["local_timestamp"], path=p, field_name="local_timestamp", unit=timestamp_unit)
    else:
        local = ts + int(feed_latency_ns)
    side = _side_codes(frame["side"].cast(pl.String).fill_null("").to_numpy(), path=p, row_offset=2)
    snap_text = np.char.lower(np.asarray(frame["is_snapshot"].cast(pl.String).fill_null("").to_numpy(), dtype=str))
    bad = np.flatnonzero(~np.isin(snap_text, ["true", "false", "1", "0"]))
    if len(bad):
        raise DataError(f"is_snapshot must be true or false, got {snap_text[bad[0]]!r}", path=p, row=int(bad[0]) + 2,
                        field="is_snapshot")
    snapshot = np.isin(snap_text, ["true", "1"])
    starts = snapshot & ~np.concatenate([[False], snapshot[:-1]])
    n = len(ts)
    n_out = n + int(starts.sum())
    # output position of each input row: shifted by the number of clears inserted before it
    pos = np.arange(n) + np.cumsum(starts)
    rec = np.zeros(n_out, dtype=event_record_dt)
    line = np.full(n_out, -1, dtype=np.int64)  # file line of each output row (clears point at their snapshot)
    rec["exch_ts"][pos], rec["local_ts"][pos] = ts, local
    rec["kind"][pos] = np.where(snapshot, MarketEventKind.SNAPSHOT, MarketEventKind.DEPTH)
    rec["side"][pos] = side
    rec["price"][pos] = _floats(frame, "price", path=p)
    rec["qty"][pos] = _floats(frame, "amount", path=p)
    line[pos] = np.arange(n) + 2
    clear_pos = pos[starts] - 1
    rec["exch_ts"][clear_pos], rec["local_ts"][clear_pos] = ts[starts], local[starts]
    rec["kind"][clear_pos] = MarketEventKind.CLEAR
    rec["price"][clear_pos] = np.nan
    line[clear_pos] = np.flatnonzero(starts) + 2
    data = EventData.from_records(rec, symbol=symbol, tick_size=tick_size, lot_size=lot_size, validate=False,
                                  source={"path": p, "format": "l2_csv", "feed_latency_ns": int(feed_latency_ns)})
    return _checked(data, policy=policy, path=p, lines=line,
                    fields={"qty": "amount", "exch_ts": "timestamp", "local_ts": "local_timestamp"})


# -------------------------------------------------------------------------------------- synthetic book

@njit(cache=True)
def _synthetic_l2_nb(n_events, seed, start_tick, depth, base_qty, lot, mean_gap_ns, feed_ns, feed_jitter_ns,
                     p_limit, p_cancel, decay, mean_trade_lots, start_ns, window):
    np.random.seed(seed)
    exch = np.zeros(n_events, dtype=np.int64)
    local = np.zeros(n_events, dtype=np.int64)
    kind = np.zeros(n_events, dtype=np.int64)
    side = np.zeros(n_events, dtype=np.int64)
    tick = np.zeros(n_events, dtype=np.int64)
    qty = np.zeros(n_events)
    lo = start_tick - window // 2
    bid = np.zeros(window)
    ask = np.zeros(window)
    b = start_tick - lo - 1  # best bid index
    a = start_tick - lo + 1  # best ask index
    t = start_ns
    last_local = start_ns
    m = 0
    # snapshot: a clear then `depth` levels per side
    exch[m] = t; local[m] = t + feed_ns; kind[m] = 5; side[m] = 0; tick[m] = 0; m += 1
    for k in range(depth):
        for s in (1, -1):
            if m >= n_events:
                break
            idx = b - k if s > 0 else a + k
            q = lot * max(1.0, np.round(np.random.lognormal(np.log(base_qty), 0.6) * (1.0 + 0.15 * k)))
            if s > 0:
                bid[idx] = q
            else:
                ask[idx] = q
            exch[m] = t; local[m] = t + feed_ns; kind[m] = 4; side[m] = s; tick[m] = idx + lo; qty[m] = q; m += 1
    last_local = t + feed_ns
    while m < n_events:
        t += 1 + int(np.random.exponential(mean_gap_ns))
        lat = feed_ns + int(np.random.exponential(feed_jitter_ns)) if feed_jitter_ns > 0 else feed_ns
        lt = max(t + lat, last_local)
        last_local = lt
        u = np.random.random()
        # mean reversion keeps the mid inside the window: aggressive side biased towards the start
        drift = ((b + a) * 0.5 - (start_tick - lo)) / (window * 0.25)
        s = 1 if np.random.random() < 0.5 - 0.4 * max(-1.0, min(1.0, drift)) else -1
        if u < p_limit:
            # limit order: distance from the opposite best ~ geometric, may improve inside the spread
            d = min(int(np.random.geometric(decay)) - 1, depth - 1)
            spread = a - b
            if s > 0:
                idx = a - 1 - d if spread > 1 else b - d
                idx = min(idx, a - 1)
                book = bid
            else:
                idx = b + 1 + d if spread > 1 else a + d
                idx = max(idx, b + 1)
                book = ask
            if idx <= 0 or idx >= window - 1:
                continue
            book[idx] += lot * max(1.0, np.round(np.random.lognormal(np.log(base_qty * 0.5), 0.8)))
            if s > 0 and idx > b:
                b = idx
            if s < 0 and idx < a:
                a = idx
            exch[m] = t; local[m] = lt; kind[m] = 3; side[m] = s; tick[m] = idx + lo; qty[m] = book[idx]; m += 1
        elif u < p_limit + p_cancel:
            # cancellation at one of the `depth` levels nearest the touch, of part of its size
            k = int(np.random.random() * depth)
            idx = b - k if s > 0 else a + k
            if idx <= 0 or idx >= window - 1:
                continue
            book = bid if s > 0 else ask
            if book[idx] <= 0.0:
                continue
            cut = lot * max(1.0, np.round(np.random.random() * book[idx] / lot))
            book[idx] = max(0.0, book[idx] - cut)
            if book[idx] < lot * 0.5:
                book[idx] = 0.0
            exch[m] = t; local[m] = lt; kind[m] = 3; side[m] = s; tick[m] = idx + lo; qty[m] = book[idx]; m += 1
            if book[idx] == 0.0:
                if s > 0 and idx == b:
                    while b > 0 and bid[b] == 0.0:
                        b -= 1
                if s < 0 and idx == a:
                    while a < window - 1 and ask[a] == 0.0:
                        a += 1
        else:
            # market order of the aggressor side s: trade rows, then the depth rows of the levels it used
            remaining = lot * max(1.0, np.round(np.random.exponential(mean_trade_lots)))
            book = ask if s > 0 else bid
            idx = a if s > 0 else b
            first = m
            while remaining > 0.0 and m + 2 < n_events:
                if book[idx] <= 0.0 or idx <= 1 or idx >= window - 2:
                    break
                take = min(remaining, book[idx])
                exch[m] = t; local[m] = lt; kind[m] = 1; side[m] = s; tick[m] = idx + lo; qty[m] = take; m += 1
                remaining -= take
                book[idx] -= take
                if book[idx] < lot * 0.5:
                    book[idx] = 0.0
                    idx = idx + 1 if s > 0 else idx - 1
            # depth rows for every level the order touched
            touched_end = idx
            j = a if s > 0 else b
            while m < n_events:
                exch[m] = t; local[m] = lt; kind[m] = 3; side[m] = -s; tick[m] = j + lo; qty[m] = book[j]; m += 1
                if j == touched_end:
                    break
                j = j + 1 if s > 0 else j - 1
            if s > 0:
                while a < window - 1 and ask[a] == 0.0:
                    a += 1
            else:
                while b > 0 and bid[b] == 0.0:
                    b -= 1
            if m == first:
                continue
        # a side with no level left near the touch is refilled one tick behind the other side's touch
        # (liquidity providers return), so the book never empties
        if (b <= a - 4 * depth or bid[max(b, 0)] == 0.0) and m < n_events and a - 2 > 0:
            b = a - 2
            bid[b] = lot * max(1.0, np.round(base_qty))
            exch[m] = t; local[m] = lt; kind[m] = 3; side[m] = 1; tick[m] = b + lo; qty[m] = bid[b]; m += 1
        if (a >= b + 4 * depth or ask[min(a, window - 1)] == 0.0) and m < n_events and b + 2 < window - 1:
            a = b + 2
            ask[a] = lot * max(1.0, np.round(base_qty))
            exch[m] = t; local[m] = lt; kind[m] = 3; side[m] = -1; tick[m] = a + lo; qty[m] = ask[a]; m += 1
    return exch[:m], local[:m], kind[:m], side[:m], tick[:m], qty[:m]


def synthetic_l2(*, n_events: int = 100_000, seed: int = 0, symbol: str = "SYNTH", start_price: float = 30_000.0,
                 tick_size: float = 0.1, lot_size: float = 0.001, depth: int = 20, base_lots: float = 400.0,
                 mean_gap_ns: int = 2_000_000, feed_latency_ns: int = 1_000_000, feed_jitter_ns: int = 200_000,
                 p_limit: float = 0.5, p_cancel: float = 0.4, decay: float = 0.35, mean_trade_lots: float = 300.0,
                 start: str = "2024-01-02T00:00:00Z") -> EventData:
    """A deterministic, seeded synthetic L2 market: a snapshot, then depth updates and trades.

    The model (a zero-intelligence order flow in the spirit of Smith, Farmer, Gillemot & Krishnamurthy
    2003, "Statistical theory of the continuous double auction"), in ticks and lots:

    * **Start**: a ``clear`` and a ``depth``-level snapshot per side around ``start_price`` (best bid
      and best ask two ticks apart), level sizes lognormal around ``base_lots`` lots, growing 15 % per
      level away from the touch.
    * **Arrivals**: events arrive as a Poisson process with mean gap ``mean_gap_ns``; each is a limit
      order (probability ``p_limit``), a cancellation (``p_cancel``) or a market order (the rest).
      Each picks the bid or ask side with probability 1/2, nudged towards the start price
      (mean reversion that keeps the price inside the book window).
    * **Limit orders** rest at a distance from the touch drawn from a geometric law (``decay``; inside
      the spread when it is wider than one tick), sizes lognormal (half of ``base_lots``).
    * **Cancellations** remove a uniform fraction of one of the ``depth`` levels nearest the touch.
    * **Market orders** (sizes exponential, mean ``mean_trade_lots``) walk the opposite side: one
      ``trade`` row per level consumed (side = aggressor), then a ``depth`` row per level touched.
    * **Refill**: a side left without a level within ``4 * depth`` ticks of the other touch gets a
      ``base_lots`` level two ticks from it (liquidity providers return; the book never empties).
    * **Clocks**: ``local_ts = exch_ts + feed_latency_ns + Exp(feed_jitter_ns)``, made non-decreasing.

    The stream always passes :func:`check_events` (never crossed, depth only after the snapshot).

    Examples
    --------
    >>> a = synthetic_l2(n_events=5_000, seed=1); b = synthetic_l2(n_events=5_000, seed=1)
    >>> bool(np.array_equal(a.price, b.price, equal_nan=True)), bool((a.local_ts >= a.exch_ts).all())
    (True, True)
    >>> sorted({MarketEventKind.name(int(k)) for k in a.kind})
    ['clear', 'depth', 'snapshot', 'trade']
    """
    from backforge._time import to_ns

    if n_events < 2 * depth + 2:
        raise DataError(f"n_events must be at least {2 * depth + 2} (a snapshot of {depth} levels per side)",
                        field="n_events")
    start_ns = int(to_ns([start])[0])
    start_tick = int(round(start_price / tick_size))
    window = max(4096, 64 * depth)
    exch, local, kind, side, tick, qty = _synthetic_l2_nb(
        int(n_events), int(seed), start_tick, int(depth), float(base_lots), float(lot_size), float(mean_gap_ns),
        int(feed_latency_ns), float(feed_jitter_ns), float(p_limit), float(p_cancel), float(decay),
        float(mean_trade_lots), start_ns, window)
    price = np.where(kind == MarketEventKind.CLEAR, np.nan, tick * tick_size)
    # rounding the lot arithmetic to the lot grid keeps quantities exact multiples of the lot
    qty = np.round(qty / lot_size) * lot_size
    return EventData(exch, local, kind, side, np.round(price, 10), qty, symbol=symbol, tick_size=tick_size,
                     lot_size=lot_size, source={"format": "synthetic_l2", "seed": int(seed), "n_events": int(n_events)})


def synthetic_quotes(*, n_ticks: int = 100_000, seed: int = 0, symbol: str = "SYNTHFX", start_price: float = 100.0,
                     tick_size: float = 0.001, mean_gap_ns: int = 250_000_000, feed_latency_ns: int = 0,
                     start: str = "2024-01-02T00:00:00Z") -> EventData:
    """A deterministic L1 quote stream: ``n_ticks`` (bid, ask) pairs, two quote rows each, sizes unknown.

    Model: the mid moves by a random ±1 tick step or stays (probabilities 0.3 / 0.3 / 0.4); the spread is
    1, 2 or 3 ticks (probabilities 0.5 / 0.35 / 0.15) around it; gaps between ticks are exponential with
    mean ``mean_gap_ns`` (at least 1 ns). Never crossed.

    Examples
    --------
    >>> q = synthetic_quotes(n_ticks=1_000, seed=3)
    >>> len(q), bool((q.price[1::2] > q.price[0::2]).all())
    (2000, True)
    """
    from backforge._time import to_ns

    rng = np.random.default_rng(seed)
    steps = rng.choice(np.array([-1, 0, 1]), size=n_ticks, p=[0.3, 0.4, 0.3])
    mid2 = 2 * int(round(start_price / tick_size)) + 2 * np.cumsum(steps)  # twice the mid, in ticks
    spread = rng.choice(np.array([1, 2, 3]), size=n_ticks, p=[0.5, 0.35, 0.15])
    bid = (mid2 - spread) // 2
    ask = bid + spread
    ts = int(to_ns([start])[0]) + np.cumsum(1 + rng.exponential(mean_gap_ns, size=n_ticks).astype(np.int64))
    exch = np.repeat(ts, 2)
    price = np.column_stack([bid, ask]).ravel() * tick_size
    return EventData(exch, exch + int(feed_latency_ns), np.full(2 * n_ticks, MarketEventKind.QUOTE, dtype=np.int64),
                     np.tile(np.array([1, -1], dtype=np.int64), n_ticks), np.round(price, 10),
                     np.full(2 * n_ticks, np.inf), symbol=symbol, tick_size=tick_size, lot_size=0.0,
                     source={"format": "synthetic_quotes", "seed": int(seed), "n_ticks": int(n_ticks)})


# ----------------------------------------------------------------------------------------------- store

class EventStore:
    """Event streams in a catalog folder: ``<root>/events/<SYMBOL>/events.parquet`` (the stored copy)
    plus an uncompressed Arrow IPC file that :meth:`load` memory-maps (zero-copy columns).

    Writes go to a temporary folder renamed into place, so a crash never leaves a half-written stream.

    Examples
    --------
    >>> import tempfile
    >>> store = EventStore(tempfile.mkdtemp())
    >>> store.write(synthetic_l2(n_events=1_000, seed=2))
    'SYNTH'
    >>> loaded = store.load("SYNTH")
    >>> len(loaded), loaded.tick_size, loaded.exch_ts.flags.writeable
    (1000, 0.1, False)
    """

    def __init__(self, root: str | os.PathLike[str] | Any) -> None:
        if not isinstance(root, (str, os.PathLike)):  # a Catalog: its folder (a Path's own .root is "/")
            root = root.root
        self.root = Path(root)

    def _folder(self, symbol: str) -> Path:
        from backforge.data.catalog import validate_symbol

        return self.root / "events" / validate_symbol(symbol)

    def symbols(self) -> list[str]:
        """Stored event symbols."""
        folder = self.root / "events"
        return sorted(p.name for p in folder.iterdir() if (p / "events.parquet").exists()) if folder.exists() else []

    def write(self, data: EventData) -> str:
        """Store (replace) ``data`` under its symbol; return the symbol."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from backforge.data.catalog import _write_ipc

        target = self._folder(data.symbol)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {"symbol": data.symbol, "tick_size": repr(data.tick_size), "lot_size": repr(data.lot_size),
                "source": json.dumps(data.source, default=str), "format": "backforge.events/1"}
        table = pa.table({name: pa.array(getattr(data, name)) for name in EVENT_COLUMNS})
        table = table.replace_schema_metadata(meta)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            pq.write_table(table, tmp / "events.parquet")
            _write_ipc(tmp / "events.arrow", table)
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return data.symbol

    def load(self, symbol: str, *, start: Any = None, end: Any = None) -> EventData:
        """Memory-map a stored stream (read-only columns); ``start``/``end`` cut by exchange time."""
        from backforge._time import to_ns
        from backforge.data.catalog import _mapped_batch, _np

        folder = self._folder(symbol)
        path = folder / "events.arrow"
        if not path.exists():
            if (folder / "events.parquet").exists():  # the cache can be rebuilt from the stored copy
                import pyarrow.parquet as pq

                from backforge.data.catalog import _write_ipc

                _write_ipc(path, pq.read_table(folder / "events.parquet"))
            else:
                known = ", ".join(self.symbols()) or "none"
                raise DataError(f"no event stream {symbol!r} in {self.root} (stored: {known})", field="symbol")
        batch = _mapped_batch(path)
        meta = {k.decode(): v.decode() for k, v in (batch.schema.metadata or {}).items()}
        columns = {name: _np(batch.column(name)) for name in EVENT_COLUMNS}
        data = EventData(**columns, symbol=meta.get("symbol", symbol), tick_size=float(meta.get("tick_size", 0.01)),
                         lot_size=float(meta.get("lot_size", 0.0)), source=json.loads(meta.get("source", "{}")))
        if start is not None or end is not None:
            lo = 0 if start is None else int(np.searchsorted(data.exch_ts, to_ns([start])[0], "left"))
            hi = len(data) if end is None else int(np.searchsorted(data.exch_ts, to_ns([end])[0], "right"))
            data = data.slice(lo, hi)
        return data
