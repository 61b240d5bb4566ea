"""Resampling with Polars: ticks to time, tick, volume and dollar bars; quotes to bid/ask/mid bars;
minute bars to coarser bars and to daily bars that respect trading sessions; multi-asset alignment.

Conventions (the same as the rest of backforge):

* Inputs are normalized frames (see :mod:`backforge.data.importers`), sorted by ``timestamp``.
* A bar is stamped at its **close** (``label="right"``): a 1-minute bar stamped 09:31 holds the ticks
  of [09:30, 09:31) and is known at 09:31, so using it at its timestamp never looks ahead.
  ``label="left"`` stamps bars at their open instead.
* Intervals without ticks produce no bar: nothing is forward-filled.
* Time buckets are aligned to the Unix epoch (a 5-minute bar closes at :00, :05, ...; a 1-day bar at
  00:00 UTC). Use :func:`session_bars` for days that follow an exchange's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np
from numba import njit

from backforge._time import NS_PER, parse_duration
from backforge._validate import positive
from backforge.data.timestamps import utc_ns_timestamp
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from backforge.data.market import MarketData

__all__ = [
    "trades_to_bars", "quotes_to_bars", "resample_bars", "tick_bars", "volume_bars", "dollar_bars",
    "session_bars", "Session", "SESSIONS", "align", "threshold_bar_ids_nb",
]

_PRICE = ("open", "high", "low", "close")
Label = Literal["right", "left"]


# ====================================================================== time bars

def trades_to_bars(frame: "pl.DataFrame", every: str = "1min", *, label: Label = "right") -> "pl.DataFrame":
    """Trade ticks (``timestamp, price, size``) to OHLCV time bars, plus ``trades`` (count) and ``vwap``.

    Parameters
    ----------
    frame
        Trades sorted by time (ties allowed).
    every
        Bar length: ``"1s"``, ``"1min"``, ``"15min"``, ``"1h"``, ``"1d"``...
    label
        ``"right"`` stamps each bar at its close (default), ``"left"`` at its open.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"timestamp": [0, 20, 70, 80], "price": [10.0, 11.0, 9.0, 9.5],
    ...                   "size": [1.0, 1.0, 2.0, 2.0]}).with_columns(pl.col("timestamp") * 10**9)
    >>> bars = trades_to_bars(t, "1min")
    >>> bars.select("open", "high", "low", "close", "volume", "trades").rows()
    [(10.0, 11.0, 10.0, 11.0, 2.0, 2), (9.0, 9.5, 9.0, 9.5, 4.0, 2)]
    >>> bars["timestamp"].dt.epoch("s").to_list()
    [60, 120]
    """
    import polars as pl

    frame = _prepare(frame, ("price",))
    size = pl.col("size") if "size" in frame.columns else pl.lit(float("nan"))
    frame = frame.select("timestamp", "price", size.alias("_size"), (pl.col("price") * size).alias("_notional"))
    aggs = [
        pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
        pl.col("_size").sum().alias("volume"), pl.len().alias("trades"),
        (pl.col("_notional").sum() / pl.col("_size").sum()).alias("vwap"),
    ]
    return _time_group(frame, every, label, aggs, closed="left")


def quotes_to_bars(
    frame: "pl.DataFrame", every: str = "1min", *, side: Literal["both", "mid", "bid", "ask"] = "both", label: Label = "right",
) -> "pl.DataFrame":
    """Quote ticks (``timestamp, bid, ask[, volume]``) to time bars.

    ``side="both"`` gives quote bars (``bid_open … ask_close``, ``volume``, ``ticks``), the input of
    bid/ask fills; ``"mid"``, ``"bid"`` or ``"ask"`` give plain OHLC bars of that price.

    Examples
    --------
    >>> import polars as pl
    >>> q = pl.DataFrame({"timestamp": [0, 30, 61], "bid": [1.0, 1.2, 1.1], "ask": [1.1, 1.3, 1.2],
    ...                   "volume": [1.0, 1.0, 1.0]}).with_columns(pl.col("timestamp") * 10**9)
    >>> quotes_to_bars(q, "1min").select("bid_high", "ask_close", "ticks").rows()
    [(1.2, 1.3, 2), (1.1, 1.2, 1)]
    >>> quotes_to_bars(q, "1min", side="mid")["close"].to_list()
    [1.25, 1.15]
    """
    import polars as pl

    frame = _prepare(frame, ("bid", "ask"))
    volume = (pl.col("volume") if "volume" in frame.columns else pl.lit(float("nan"))).sum().alias("volume")
    if side == "both":
        aggs = [*_ohlc(pl.col("bid"), "bid_"), *_ohlc(pl.col("ask"), "ask_"), volume, pl.len().alias("ticks")]
    elif side in ("mid", "bid", "ask"):
        price = (pl.col("bid") + pl.col("ask")) / 2 if side == "mid" else pl.col(side)
        frame = frame.select("timestamp", price.alias("_price"), *(["volume"] if "volume" in frame.columns else []))
        aggs = [*_ohlc(pl.col("_price"), ""), volume, pl.len().alias("ticks")]
    else:
        raise DataError(f"unknown side {side!r}; use 'both', 'mid', 'bid' or 'ask'", field="side")
    return _time_group(frame, every, label, aggs, closed="left")


def resample_bars(frame: "pl.DataFrame", every: str, *, label: Label = "right") -> "pl.DataFrame":
    """Bars (or quote bars) to longer bars: first open, max high, min low, last close, summed volume.

    Input bars are stamped at their close, so a 5-minute bar stamped 09:35 aggregates the 1-minute
    bars stamped 09:31 … 09:35 (windows closed on the right). For days that follow an exchange
    session use :func:`session_bars`.

    Examples
    --------
    >>> import polars as pl
    >>> m = pl.DataFrame({"timestamp": [60, 120, 180, 240, 300, 360], "open": [1.0, 2, 3, 4, 5, 6],
    ...                   "high": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5], "low": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
    ...                   "close": [1.2, 2.2, 3.2, 4.2, 5.2, 6.2], "volume": [1.0] * 6})
    >>> m = m.with_columns(pl.col("timestamp") * 10**9)
    >>> five = resample_bars(m, "5min")
    >>> five.select("open", "high", "close", "volume").rows()
    [(1.0, 5.5, 5.2, 5.0), (6.0, 6.5, 6.2, 1.0)]
    >>> five["timestamp"].dt.epoch("s").to_list()
    [300, 600]
    """
    frame = _prepare(frame, ())
    return _time_group(frame, every, label, _bar_aggs(frame), closed="right")


# ====================================================================== activity bars

def tick_bars(frame: "pl.DataFrame", ticks: int, *, keep_partial: bool = False) -> "pl.DataFrame":
    """One bar every ``ticks`` trades (or quotes, on the mid price), stamped at its last tick.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"timestamp": [1, 2, 3, 4, 5], "price": [1.0, 2, 3, 4, 5], "size": [1.0] * 5})
    >>> tick_bars(t, 2).select("open", "close", "ticks").rows()
    [(1.0, 2.0, 2), (3.0, 4.0, 2)]
    """
    if not isinstance(ticks, (int, np.integer)) or ticks < 1:
        raise DataError(f"ticks must be a whole number >= 1, got {ticks!r}", field="ticks")
    frame, price, size = _activity_input(frame)
    ids = np.arange(frame.height, dtype=np.int64) // int(ticks)
    complete = frame.height // int(ticks)
    return _activity_group(frame, price, size, ids, complete, keep_partial)


def volume_bars(frame: "pl.DataFrame", volume: float, *, keep_partial: bool = False) -> "pl.DataFrame":
    """A bar closes at the tick that brings its traded size to at least ``volume`` (then starts afresh).

    The overshoot of the closing tick stays in its bar (bars are never split mid-tick), as in
    López de Prado's definition; the incomplete last bar is dropped unless ``keep_partial``.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"timestamp": [1, 2, 3, 4, 5], "price": [1.0, 2, 3, 4, 5], "size": [4.0, 4, 4, 15, 1]})
    >>> volume_bars(t, 10).select("open", "close", "volume").rows()
    [(1.0, 3.0, 12.0), (4.0, 4.0, 15.0)]
    """
    positive(volume, "volume", error=DataError)
    frame, price, size = _activity_input(frame)
    amounts = frame.select(size).to_series().to_numpy().astype(np.float64)
    ids, complete = threshold_bar_ids_nb(amounts, float(volume))
    return _activity_group(frame, price, size, ids, int(complete), keep_partial)


def dollar_bars(frame: "pl.DataFrame", dollars: float, *, keep_partial: bool = False) -> "pl.DataFrame":
    """A bar closes when its traded value (price × size) reaches ``dollars``; see :func:`volume_bars`.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"timestamp": [1, 2, 3, 4], "price": [10.0, 10, 20, 20], "size": [1.0, 1, 1, 1]})
    >>> dollar_bars(t, 20).select("close", "volume").rows()
    [(10.0, 2.0), (20.0, 1.0), (20.0, 1.0)]
    """
    positive(dollars, "dollars", error=DataError)
    frame, price, size = _activity_input(frame)
    amounts = frame.select(price * size).to_series().to_numpy().astype(np.float64)
    ids, complete = threshold_bar_ids_nb(amounts, float(dollars))
    return _activity_group(frame, price, size, ids, int(complete), keep_partial)


def _threshold_bar_ids_py(amount: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Slow reference of :func:`threshold_bar_ids_nb` (used by the tests)."""
    ids = np.empty(len(amount), dtype=np.int64)
    bar, acc = 0, 0.0
    for i, a in enumerate(amount):
        ids[i] = bar
        if a == a:
            acc += a
        if acc >= threshold:
            bar += 1
            acc = 0.0
    return ids, bar


@njit(cache=True, nogil=True)
def threshold_bar_ids_nb(amount: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """Bar id of each tick; a bar closes at the tick that lifts its summed ``amount`` to ``>= threshold``.

    Returns ``(ids, n_complete)``; NaN amounts count as zero. Slow reference: ``_threshold_bar_ids_py``
    (a plain Python loop), compared in the tests.

    Examples
    --------
    >>> ids, complete = threshold_bar_ids_nb(np.array([4.0, 4.0, 4.0, 15.0, 1.0]), 10.0)
    >>> ids.tolist(), complete
    ([0, 0, 0, 1, 2], 2)
    """
    n = amount.shape[0]
    ids = np.empty(n, dtype=np.int64)
    bar = 0
    acc = 0.0
    for i in range(n):
        ids[i] = bar
        a = amount[i]
        if a == a:
            acc += a
        if acc >= threshold:
            bar += 1
            acc = 0.0
    return ids, bar


# ====================================================================== sessions

@dataclass(frozen=True)
class Session:
    """A trading session in local time: bars whose close falls in (open, close] belong to it.

    ``open >= close`` describes a session that starts the evening before (FX 17:00–17:00 New York,
    CME Globex 17:00–16:00 Chicago); it is labelled with the date on which it closes.

    Examples
    --------
    >>> Session("America/New_York", "09:30", "16:00").open_ns // 60_000_000_000
    570
    """

    timezone: str
    open: str = "00:00"
    close: str = "00:00"

    @property
    def open_ns(self) -> int:
        """Session open as nanoseconds after local midnight."""
        return _clock_ns(self.open, "open")

    @property
    def close_ns(self) -> int:
        """Session close as nanoseconds after local midnight."""
        return _clock_ns(self.close, "close")


SESSIONS: dict[str, Session] = {
    "us_equities": Session("America/New_York", "09:30", "16:00"),
    "fx": Session("America/New_York", "17:00", "17:00"),
    "cme_globex": Session("America/Chicago", "17:00", "16:00"),
    "utc": Session("UTC", "00:00", "00:00"),
}


def session_bars(frame: "pl.DataFrame", session: Session | str = "utc") -> "pl.DataFrame":
    """Intraday bars (or quote bars) to one bar per trading session, stamped at the session close (UTC).

    Bars outside the session (pre-market, after-hours, a maintenance break) are left out. Daylight
    saving is handled by the session's time zone: a US equity day closes at 21:00 UTC in winter and
    20:00 UTC in summer.

    Parameters
    ----------
    frame
        Bars stamped at their close, sorted by time.
    session
        A :class:`Session` or a name in :data:`SESSIONS` (``us_equities``, ``fx``, ``cme_globex``, ``utc``).

    Examples
    --------
    >>> import polars as pl
    >>> ts = pl.Series(["2024-01-02 14:31", "2024-01-02 21:00", "2024-01-02 21:01"]).str.to_datetime(time_zone="UTC")
    >>> m = pl.DataFrame({"timestamp": ts, "open": [1.0, 2, 3], "high": [1.0, 2, 3], "low": [1.0, 2, 3],
    ...                   "close": [1.0, 2, 3], "volume": [1.0, 1, 1]})
    >>> d = session_bars(m, "us_equities")
    >>> d.select("open", "close", "volume").rows(), str(d["timestamp"][0])
    ([(1.0, 2.0, 2.0)], '2024-01-02 21:00:00+00:00')
    """
    import polars as pl

    if isinstance(session, str):
        if session not in SESSIONS:
            raise DataError(f"unknown session {session!r}; use one of {', '.join(SESSIONS)} or a Session(...)", field="session")
        session = SESSIONS[session]
    _check_zone(session.timezone)
    frame = _prepare(frame, ())
    open_ns, close_ns = session.open_ns, session.close_ns
    local = pl.col("timestamp").dt.convert_time_zone(session.timezone).dt.replace_time_zone(None)
    tod = (local - local.dt.truncate("1d")).dt.total_nanoseconds()
    date = local.dt.date()
    if open_ns < close_ns:
        inside = (tod > open_ns) & (tod <= close_ns)
        label = date
    else:
        inside = (tod > open_ns) | (tod <= close_ns) if open_ns != close_ns else pl.lit(True)
        label = pl.when(tod > open_ns).then(date + pl.duration(days=1)).otherwise(date)
    tagged = frame.with_columns(_session=label, _inside=inside).filter(pl.col("_inside"))
    out = tagged.group_by("_session", maintain_order=True).agg(_bar_aggs(frame, skip_timestamp=True))
    stamp = (pl.col("_session").cast(pl.Datetime("ns")) + pl.duration(nanoseconds=close_ns))
    stamp = stamp.dt.replace_time_zone(session.timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    out = out.with_columns(stamp.alias("timestamp")).drop("_session")
    return out.select("timestamp", *(c for c in out.columns if c != "timestamp"))


# ====================================================================== alignment

def align(frames: Mapping[str, Any]) -> "MarketData":
    """Align per-symbol bar frames on the union of their timestamps (NaN where a symbol has no bar).

    Nothing is forward-filled: a symbol without a bar at a timestamp has NaN prices there.

    Examples
    --------
    >>> import polars as pl
    >>> a = pl.DataFrame({"timestamp": [1, 2], "close": [1.0, 2.0]})
    >>> b = pl.DataFrame({"timestamp": [2, 3], "close": [5.0, 6.0]})
    >>> md = align({"A": a, "B": b})
    >>> md.close.tolist()
    [[1.0, nan], [2.0, 5.0], [nan, 6.0]]
    """
    from backforge.data.market import MarketData

    return MarketData.from_frames(frames)


# ====================================================================== internals

def _prepare(frame: "pl.DataFrame", needed: tuple[str, ...]) -> "pl.DataFrame":
    import polars as pl

    if not isinstance(frame, pl.DataFrame):
        raise DataError(f"expected a Polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("timestamp", *needed) if c not in frame.columns]
    if missing:
        raise DataError(f"missing column {missing[0]!r}; columns are {frame.columns}", field=missing[0])
    frame = utc_ns_timestamp(frame)
    if frame.height and not frame["timestamp"].is_sorted():
        raise DataError("timestamps are not sorted; sort the frame (or import it with policy='repair') first", field="timestamp")
    return frame.with_columns(pl.col("timestamp").set_sorted())


def _time_group(frame: "pl.DataFrame", every: str, label: Label, aggs: list, *, closed: Literal["left", "right"]) -> "pl.DataFrame":
    if label not in ("right", "left"):
        raise DataError(f"label must be 'right' (bar close) or 'left' (bar open), got {label!r}", field="label")
    every_ns = parse_duration(every)
    if frame.height == 0:
        return frame.group_by_dynamic("timestamp", every=f"{every_ns}ns").agg(aggs)
    return frame.group_by_dynamic("timestamp", every=f"{every_ns}ns", closed=closed, label=label).agg(aggs)


def _ohlc(price: Any, prefix: str) -> list:
    return [price.first().alias(f"{prefix}open"), price.max().alias(f"{prefix}high"),
            price.min().alias(f"{prefix}low"), price.last().alias(f"{prefix}close")]


def _bar_aggs(frame: "pl.DataFrame", *, skip_timestamp: bool = False) -> list:
    import polars as pl

    cols = set(frame.columns)
    aggs: list = []
    for prefix in ("", "bid_", "ask_"):
        if f"{prefix}close" in cols:
            aggs += [pl.col(f"{prefix}open").first(), pl.col(f"{prefix}high").max(),
                     pl.col(f"{prefix}low").min(), pl.col(f"{prefix}close").last()]
    if not aggs:
        raise DataError(f"no bar columns (close or bid_close/ask_close); columns are {frame.columns}", field="close")
    for summed in ("volume", "trades", "ticks"):
        if summed in cols:
            aggs.append(pl.col(summed).sum())
    if "adj_close" in cols:
        aggs.append(pl.col("adj_close").last())
    if "open_interest" in cols:
        aggs.append(pl.col("open_interest").last())
    return aggs


def _activity_input(frame: "pl.DataFrame") -> tuple["pl.DataFrame", Any, Any]:
    import polars as pl

    if "price" in frame.columns:
        frame = _prepare(frame, ("price",))
        price = pl.col("price")
        size = pl.col("size") if "size" in frame.columns else pl.lit(1.0)
    elif "bid" in frame.columns and "ask" in frame.columns:
        frame = _prepare(frame, ("bid", "ask"))
        price = (pl.col("bid") + pl.col("ask")) / 2
        size = pl.col("volume") if "volume" in frame.columns else pl.lit(1.0)
    else:
        raise DataError(f"activity bars need trades (price, size) or quotes (bid, ask); columns are {frame.columns}", field="price")
    return frame, price, size


def _activity_group(frame: "pl.DataFrame", price: Any, size: Any, ids: np.ndarray, complete: int, keep_partial: bool) -> "pl.DataFrame":
    import polars as pl

    grouped = frame.with_columns(_bar=pl.Series(ids).set_sorted()).group_by("_bar", maintain_order=True).agg(
        pl.col("timestamp").last(), *_ohlc(price, ""), size.sum().alias("volume"), pl.len().alias("ticks"))
    if not keep_partial:
        grouped = grouped.filter(pl.col("_bar") < complete)
    return grouped.drop("_bar")


def _clock_ns(text: str, name: str) -> int:
    parts = str(text).split(":")
    try:
        hours, minutes = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        seconds = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise DataError(f"session {name} must look like '09:30', got {text!r}", field=name) from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60 and 0 <= seconds < 60) or (hours == 24 and (minutes or seconds)):
        raise DataError(f"session {name} {text!r} is not a time of day", field=name)
    return hours * NS_PER["h"] + minutes * NS_PER["min"] + seconds * NS_PER["s"]


def _check_zone(timezone: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise DataError(f"unknown time zone {timezone!r}", field="timezone") from None
