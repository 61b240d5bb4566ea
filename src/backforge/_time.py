"""Time helpers shared by data, engine and strategy code: durations, timestamp conversion, and indicator
windows lowered to the ``(bars, ns)`` pair the kernels take.

All timestamps inside backforge are int64 nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import datetime as _dt
import re

import numpy as np

from backforge.errors import ConfigError

__all__ = ["NS_PER", "parse_duration", "lower_window", "lower_macd_windows", "format_duration", "format_ns", "to_ns",
           "median_bar_ns", "periods_per_year"]

NS_PER = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}
_ALIASES = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "min", "mins": "min", "minute": "min", "minutes": "min", "t": "min",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "day": "d", "days": "d",
    "wk": "w", "week": "w", "weeks": "w",
    "millis": "ms", "micros": "us",
}
_MAX_WINDOW_NS = 2**62  # about 146 years
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(text: str) -> int:
    """Parse a duration such as ``"30d"``, ``"4h"``, ``"15min"`` or ``"500ms"`` into nanoseconds.

    ``m`` means minutes (months are not fixed durations and are not accepted).

    Examples
    --------
    >>> parse_duration("15min")
    900000000000
    >>> parse_duration("1d") == 86_400 * 10**9
    True
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(
            f"not a duration: {text!r}; write a number and a unit, e.g. '30d', '4h', '15min', '10s'",
            field="duration", code="BF-CONFIG-DURATION",
        )
    value, unit = float(match.group(1)), match.group(2).lower()
    unit = _ALIASES.get(unit, unit)
    if unit not in NS_PER:
        raise ConfigError(
            f"unknown duration unit {match.group(2)!r} in {text!r}; use one of ns, us, ms, s, min, h, d, w",
            field="duration", code="BF-CONFIG-DURATION",
        )
    ns = int(round(value * NS_PER[unit]))
    if ns <= 0:
        raise ConfigError(f"duration must be > 0, got {text!r}", field="duration", code="BF-CONFIG-DURATION")
    return ns


_EPOCH = None


def format_ns(ns: int, precision: str = "auto", *, offset: bool = True) -> str:
    """Text of an int64 ns UTC timestamp, computed exactly from the integer (no float, no pandas).

    ``precision``: ``"auto"`` gives seconds, plus the fraction when there is one (6 digits for whole
    microseconds, else 9) — the text ``str(pandas.Timestamp(ns, tz="UTC"))`` prints; ``"second"``,
    ``"minute"`` and ``"day"`` cut it there. ``offset`` appends ``+00:00`` (not with ``"day"``).

    Examples
    --------
    >>> format_ns(1_577_923_200_000_000_000)
    '2020-01-02 00:00:00+00:00'
    >>> format_ns(60, offset=False)
    '1970-01-01 00:00:00.000000060'
    >>> format_ns(1_577_923_260_500_000_000, "minute", offset=False), format_ns(0, "day")
    ('2020-01-02 00:01', '1970-01-01')
    """
    import datetime as dt

    global _EPOCH
    if _EPOCH is None:
        _EPOCH = dt.datetime(1970, 1, 1)
    seconds, fraction = divmod(int(ns), 1_000_000_000)
    moment = _EPOCH + dt.timedelta(seconds=seconds)
    if precision == "day":
        return moment.strftime("%Y-%m-%d")
    if precision == "minute":
        text = moment.strftime("%Y-%m-%d %H:%M")
    else:
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
        if precision == "auto" and fraction:
            text += f".{fraction // 1000:06d}" if fraction % 1000 == 0 else f".{fraction:09d}"
        elif precision not in ("auto", "second"):
            raise ConfigError(f"precision must be auto, second, minute or day, got {precision!r}", field="precision")
    return text + "+00:00" if offset else text


def format_duration(ns: int) -> str:
    """Format nanoseconds as the largest whole unit, e.g. ``86400000000000 -> '1d'``.

    Examples
    --------
    >>> format_duration(900_000_000_000)
    '15min'
    """
    for unit in ("w", "d", "h", "min", "s", "ms", "us"):
        size = NS_PER[unit]
        if ns >= size and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def to_ns(values) -> np.ndarray:
    """Convert timestamps (numpy datetime64, pandas/Polars datetimes, ISO strings, int ns) to int64 ns UTC.

    Naive datetimes are taken as UTC; time-zone-aware ones are converted to UTC.

    Examples
    --------
    >>> to_ns(["2020-01-01", "2020-01-02"]).tolist()
    [1577836800000000000, 1577923200000000000]
    """
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    import pandas as pd  # only for the conversions (imported lazily: it costs ~0.3 s)

    if hasattr(values, "dtype") and type(values).__module__.startswith("polars"):
        import polars as pl

        series = values
        if series.dtype == pl.Datetime or isinstance(series.dtype, pl.Datetime):
            if series.dtype.time_zone is not None:
                series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            return series.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
        if series.dtype == pl.Date:
            return series.cast(pl.Datetime("ns")).cast(pl.Int64).to_numpy()
        values = series.to_list()
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.as_unit("ns").asi8.astype(np.int64, copy=False)


def median_bar_ns(timestamps: np.ndarray) -> int:
    """Median spacing of a timestamp array in nanoseconds (0 for fewer than two bars).

    Examples
    --------
    >>> median_bar_ns(np.array([0, 60, 120, 300], dtype=np.int64))
    60
    """
    if len(timestamps) < 2:
        return 0
    return int(np.median(np.diff(timestamps)))


def periods_per_year(timestamps: np.ndarray, *, days_per_year: float | None = None) -> float:
    """Number of bars per year implied by the data, used to annualize returns and volatility.

    Intraday and daily data are counted from the timestamps themselves (bars actually present per
    year of calendar time), so sessions, weekends and gaps are respected. ``days_per_year`` lets the
    caller impose a calendar (252 for equities, 365 for crypto, 260 for FX) for daily bars.

    Examples
    --------
    >>> ts = np.arange(0, 365 * 86_400 * 10**9, 86_400 * 10**9, dtype=np.int64)
    >>> round(periods_per_year(ts))
    365
    """
    if len(timestamps) < 2:
        return 252.0
    bar = median_bar_ns(timestamps)
    if days_per_year is not None and bar >= NS_PER["d"]:
        return float(days_per_year) * NS_PER["d"] / bar
    span_years = (int(timestamps[-1]) - int(timestamps[0])) / (365.25 * NS_PER["d"])
    if span_years <= 0:
        return 252.0
    return (len(timestamps) - 1) / span_years


def lower_window(window: object, name: str, *, min_bars: int = 1) -> tuple[int, int]:
    """A window (a bar count, a duration string, a ``timedelta`` or ``timedelta64``) lowered to the
    ``(window_bars, window_ns)`` pair the indicator kernels take, exactly one of them > 0; errors name
    ``name``.

    Examples
    --------
    >>> lower_window(20, "window"), lower_window("1h", "window")
    ((20, 0), (0, 3600000000000))
    """
    hint = f"pass a number of bars such as {name}=20 or a duration such as {name}='30d' / '4h' / '15min'"
    if isinstance(window, (bool, np.bool_)):
        raise ConfigError(f"{name} must be a bar count or a duration, got {window!r}; {hint}", field=name)
    if isinstance(window, (int, np.integer)) and not isinstance(window, np.timedelta64):
        bars = int(window)
        if bars < min_bars:
            raise ConfigError(
                f"{name} must be at least {min_bars} bar{'s' if min_bars > 1 else ''}, got {bars}; "
                f"use {name}={max(min_bars, 20)} or a duration such as '30d'",
                field=name,
            )
        return bars, 0
    if isinstance(window, str):
        try:
            ns = parse_duration(window)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc.message}", field=name) from None
    elif isinstance(window, np.timedelta64):
        if np.isnat(window):
            raise ConfigError(f"{name} must be a duration > 0, got NaT; {hint}", field=name)
        ns = int(window.astype("timedelta64[ns]").astype(np.int64))
    elif isinstance(window, _dt.timedelta):
        ns = (window.days * 86_400 + window.seconds) * 10**9 + window.microseconds * 1_000
        ns += int(getattr(window, "nanoseconds", 0))
    else:
        raise ConfigError(f"{name} must be a bar count or a duration, got {window!r}; {hint}", field=name)
    if ns <= 0:
        raise ConfigError(f"{name} must be a duration > 0, got {window!r}; {hint}", field=name)
    if ns > _MAX_WINDOW_NS:
        raise ConfigError(f"{name} is too long ({window!r}); use a duration below 146 years", field=name)
    return 0, ns


def lower_macd_windows(fast: object, slow: object, signal: object) -> tuple[tuple[int, int], ...]:
    """MACD's three windows lowered (:func:`lower_window`): all bar counts or all durations, fast shorter
    than slow."""
    lowered = (lower_window(fast, "fast"), lower_window(slow, "slow"), lower_window(signal, "signal"))
    (fast_bars, fast_ns), (slow_bars, slow_ns), (signal_bars, _) = lowered
    if len({fast_bars > 0, slow_bars > 0, signal_bars > 0}) > 1:
        raise ConfigError(
            f"fast, slow and signal must all be bar counts or all durations, got fast={fast!r}, "
            f"slow={slow!r}, signal={signal!r}; e.g. 12/26/9 or '12d'/'26d'/'9d'",
            field="fast",
        )
    if (fast_bars or fast_ns) >= (slow_bars or slow_ns):
        raise ConfigError(
            f"fast must be shorter than slow, got fast={fast!r} and slow={slow!r}; swap them, e.g. "
            "fast=12, slow=26",
            field="fast",
        )
    return lowered
