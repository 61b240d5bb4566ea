"""How the timestamps of a data file are read: the time format detected from samples (ISO, epochs in
s/ms/µs/ns, strftime patterns), parsing an Arrow column to int64 ns UTC, naive times localized in a
time zone, and the one-based file line of a bad value for the error message.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

_SAMPLE_LINES = 200

_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)
_CLOCK_RE = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?$")
_EPOCH_RE = re.compile(r"^\d{8,19}(?:\.\d+)?$")
_UNIX_FORMATS = {"unix_s": "s", "unix_ms": "ms", "unix_us": "us", "unix_ns": "ns"}
_MAX_EPOCH_NS = 9_223_372_036_854_775_807 - 1  # int64 nanoseconds: 1677-09-21 .. 2262-04-11

# strftime candidates tried (in this order) when timestamps are not ISO 8601 or epoch numbers
_FORMAT_CANDIDATES = (
    "%Y%m%d %H:%M:%S%.f", "%Y%m%d %H%M%S", "%Y%m%d %H:%M", "%Y%m%d",
    "%Y.%m.%d %H:%M:%S%.f", "%Y.%m.%d %H:%M", "%Y.%m.%d",
    "%d.%m.%Y %H:%M:%S%.f", "%d.%m.%Y %H:%M", "%d.%m.%Y",
    "%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M", "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S%.f", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
    "%d/%m/%Y %H:%M:%S%.f", "%d/%m/%Y %H:%M", "%d/%m/%Y",
    "%d-%m-%Y %H:%M:%S%.f", "%d-%m-%Y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y", "%b %d, %Y", "%Y-%m-%d %H:%M:%S %z",
)


@dataclass(frozen=True)
class _TimeSpec:
    kind: str            # "iso", "strftime", "epoch"
    aware: bool = False  # ISO values carry an offset
    fmt: str | None = None
    unit: str | None = None



def _detect_time_spec(samples: Sequence[str], time_format: str | None, *, path: str, column: str) -> _TimeSpec:
    if time_format is not None:
        if time_format in _UNIX_FORMATS:
            return _TimeSpec("epoch", unit=_UNIX_FORMATS[time_format])
        if "%" not in time_format:
            raise DataError(f"time format {time_format!r} has no % directives; write e.g. '%Y-%m-%d %H:%M:%S' or 'unix_ms'", path=path, field="time_format")
        return _TimeSpec("strftime", aware="%z" in time_format or "%#z" in time_format, fmt=time_format)
    if not samples:
        return _TimeSpec("iso")
    # score every candidate by how many sample values it reads; the full parse then reports the exact
    # line of any value the winner cannot read (a stray bad row must not hide the file's format)
    iso = [m for m in (_ISO_RE.match(s) for s in samples) if m is not None]
    epoch = [s for s in samples if _EPOCH_RE.match(s)]
    best_count = max(len(iso), len(epoch))
    if iso and len(iso) >= len(epoch) and len(iso) * 2 >= len(samples):
        return _TimeSpec("iso", aware=iso[0].group("tz") is not None)
    if epoch and len(epoch) * 2 >= len(samples):
        if len(epoch[0].split(".")[0]) == 8 and _valid_yyyymmdd(epoch):
            return _TimeSpec("strftime", fmt="%Y%m%d")
        first = float(epoch[0])
        unit = "ns" if first >= 1e17 else "us" if first >= 1e14 else "ms" if first >= 1e11 else "s"
        return _TimeSpec("epoch", unit=unit)
    import polars as pl

    series = pl.Series(samples)
    scored = []
    for fmt in _FORMAT_CANDIDATES:
        try:
            parsed = series.str.to_datetime(fmt, strict=False, time_unit="ns")
        except Exception:  # noqa: BLE001 - polars raises various errors for formats that do not apply
            continue
        count = len(parsed) - parsed.null_count()
        if count:
            scored.append((count, fmt, parsed))
    if not scored or max(c for c, _, _ in scored) < best_count:
        if iso:
            return _TimeSpec("iso", aware=iso[0].group("tz") is not None)
        bad = samples[0]
        raise DataError(f"cannot recognize the timestamp format of {bad!r}; pass time_format= (e.g. '%d/%m/%Y %H:%M') "
                        "or unix_s/unix_ms/unix_us/unix_ns", path=path, field=column)
    top = max(c for c, _, _ in scored)
    fits = [(fmt, parsed) for c, fmt, parsed in scored if c == top]
    fmt0, parsed0 = fits[0]
    for fmt, parsed in fits[1:]:
        both = parsed0.is_not_null() & parsed.is_not_null()
        if "%d" in fmt and "%m" in fmt and not parsed.filter(both).equals(parsed0.filter(both)):
            raise DataError(f"ambiguous timestamps such as {samples[0]!r}: both {fmt0!r} and {fmt!r} fit; pass time_format=",
                            path=path, field=column)
    return _TimeSpec("strftime", aware="%z" in fmt0, fmt=fmt0)



def _valid_yyyymmdd(samples: Sequence[str]) -> bool:
    for s in samples[:50]:
        y, m, d = int(s[:4]), int(s[4:6]), int(s[6:8])
        if not (1800 <= y <= 2200 and 1 <= m <= 12 and 1 <= d <= 31):
            return False
    return True



def _timestamps_from_arrow(
    arr: "pa.Array", *, time_format: str | None, timezone: str | None, path: str, column: str, header_lines: int | None,
    spec: _TimeSpec | None = None,
) -> "pa.Array":
    """Convert an Arrow array of timestamps (any type) to ``timestamp[ns, UTC]``, with precise errors."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = arr.type
    if arr.null_count:
        r = _first_null(arr)
        raise DataError("missing timestamp", path=path, row=_line(path, r, header_lines), field=column)
    if pa.types.is_timestamp(typ):
        if typ.tz is not None:
            _reject_timezone(timezone, path, column)
            return _cast_ns(arr, "UTC", path, column, header_lines) if typ.unit != "ns" or typ.tz != "UTC" else arr
        return _localize(_cast_ns(arr, None, path, column, header_lines), timezone, path, column, header_lines)
    if pa.types.is_date(typ):
        return _localize(_cast_ns(arr, None, path, column, header_lines), timezone, path, column, header_lines)
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        if spec is None or spec.kind != "epoch":
            unit = _UNIX_FORMATS.get(time_format or "", None)
            if unit is None:
                first = float(arr[0].as_py())
                if pa.types.is_integer(typ) and 1e7 <= first < 1e8:  # 20200102: a date written as a number
                    return _timestamps_from_arrow(arr.cast(pa.string()), time_format="%Y%m%d", timezone=timezone, path=path,
                                                  column=column, header_lines=header_lines)
                unit = "ns" if first >= 1e17 else "us" if first >= 1e14 else "ms" if first >= 1e11 else "s"
            spec = _TimeSpec("epoch", unit=unit)
        _reject_timezone(timezone, path, column)
        return _epoch_to_ns(arr, spec.unit or "s", path=path, column=column, header_lines=header_lines)
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)):
        raise DataError(f"timestamp column has type {typ}; expected datetimes, epoch numbers or text", path=path, field=column)
    arr = arr.cast(pa.large_string()) if not pa.types.is_large_string(typ) else arr
    if spec is None:
        n = len(arr)
        picks = sorted(set([*range(min(n, _SAMPLE_LINES)), *range(max(0, n - _SAMPLE_LINES), n)]))
        spec = _detect_time_spec([str(arr[i].as_py()).strip() for i in picks], time_format, path=path, column=column)
    if spec.kind == "epoch":
        try:
            nums = pc.cast(arr, pa.float64() if any("." in str(arr[i].as_py()) for i in range(min(len(arr), 50))) else pa.int64())
        except pa.ArrowInvalid:
            r = _first_cast_failure(arr, pa.float64())
            raise DataError(f"cannot parse {arr[r].as_py()!r} as a {spec.unit} epoch number", path=path, row=_line(path, r, header_lines), field=column) from None
        _reject_timezone(timezone, path, column)
        return _epoch_to_ns(nums, spec.unit or "s", path=path, column=column, header_lines=header_lines)
    if spec.kind == "iso":
        target = pa.timestamp("ns", "UTC" if spec.aware else None)
        try:
            out = pc.cast(pc.utf8_trim_whitespace(arr), target)
        except pa.ArrowInvalid:
            r = _first_cast_failure(pc.utf8_trim_whitespace(arr), target)
            raise _timestamp_error(arr[r].as_py(), spec, path, _line(path, r, header_lines), column) from None
        if spec.aware:
            _reject_timezone(timezone, path, column)
            return out
        return _localize(out, timezone, path, column, header_lines)
    # strftime formats are parsed by Polars (chrono), which supports %.f fractions and %z offsets
    import polars as pl

    series = pl.from_arrow(arr)
    assert isinstance(series, pl.Series)
    try:
        # microseconds first: nanoseconds would silently wrap years outside 1678-2261 around to wrong dates
        parsed = series.str.strip_chars().str.to_datetime(spec.fmt, strict=False, time_unit="us")
    except Exception as exc:  # noqa: BLE001 - polars rejects malformed format strings with several error types
        raise DataError(f"invalid time format {spec.fmt!r}: {exc}", path=path, field="time_format") from None
    bad = parsed.is_null()
    if bad.any():
        r = int(bad.arg_true()[0])
        raise _timestamp_error(series[r], spec, path, _line(path, r, header_lines), column)
    micros = parsed.dt.epoch("us")
    outside = (micros <= -_MAX_EPOCH_NS // 1000) | (micros >= _MAX_EPOCH_NS // 1000)
    if outside.any():
        r = int(outside.arg_true()[0])
        raise DataError(f"timestamp {series[r]!r} is outside the supported range 1678-2261 (64-bit nanosecond timestamps)",
                        path=path, row=_line(path, r, header_lines), field=column)
    parsed = parsed.dt.cast_time_unit("ns")
    if parsed.dtype.time_zone is not None:  # type: ignore[union-attr]
        _reject_timezone(timezone, path, column)
        return parsed.dt.convert_time_zone("UTC").to_arrow().cast(pa.timestamp("ns", "UTC"))
    return _localize(parsed.to_arrow().cast(pa.timestamp("ns")), timezone, path, column, header_lines)



def _cast_ns(arr: "pa.Array", tz: str | None, path: str, column: str, header_lines: int | None) -> "pa.Array":
    """Cast dates or timestamps of any unit to ``timestamp[ns]``, naming the first value outside 1678-2261."""
    import polars as pl
    import pyarrow as pa

    target = pa.timestamp("ns", tz)
    try:
        return arr.cast(target)
    except pa.ArrowInvalid:
        r = _first_cast_failure(arr, target)
        raise DataError(f"timestamp {arr[r].as_py()} is outside the supported range 1678-2261 (64-bit nanosecond "
                        "timestamps)", path=path, row=_line(path, r, header_lines), field=column) from None



def _timestamp_error(value: Any, spec: _TimeSpec, path: str, line: int | None, column: str) -> DataError:
    text = str(value)
    m = _ISO_RE.match(text.strip())
    if spec.kind == "iso" and m is not None:
        has_tz = m.group("tz") is not None
        if has_tz != spec.aware:
            return DataError(f"mixed time zones: {text!r} {'has' if has_tz else 'lacks'} a UTC offset while earlier timestamps "
                             f"{'do not' if has_tz else 'have one'}; give every timestamp an offset, or none", path=path, row=line, field=column)
        year = int(text.strip()[:4])
        if not 1678 <= year <= 2261:
            return DataError(f"timestamp {text!r} is outside the supported range 1678-2261 (64-bit nanosecond timestamps)",
                             path=path, row=line, field=column)
        return DataError(f"invalid timestamp {text!r} (out-of-range month, day or time?)", path=path, row=line, field=column)
    expected = "ISO 8601, e.g. 2013-01-01 22:00:00" if spec.kind == "iso" else f"format {spec.fmt!r}"
    return DataError(f"cannot parse timestamp {text!r}: expected {expected}", path=path, row=line, field=column)



def _reject_timezone(timezone: str | None, path: str, column: str) -> None:
    if timezone not in (None, "UTC", "utc"):
        raise DataError(f"the timestamps carry UTC offsets (or are epoch numbers), so timezone={timezone!r} does not apply; drop it",
                        path=path, field=column)



def _localize(arr: "pa.Array", timezone: str | None, path: str, column: str, header_lines: int | None) -> "pa.Array":
    """Naive ns timestamps taken in ``timezone`` -> UTC."""
    import polars as pl
    import pyarrow as pa

    if timezone in (None, "UTC", "utc"):
        return arr.cast(pa.timestamp("ns", "UTC"))
    import polars as pl

    _check_zone(timezone, path)
    series = pl.from_arrow(arr)
    assert isinstance(series, pl.Series)
    local = series.dt.replace_time_zone(timezone, ambiguous="null", non_existent="null")
    bad = local.is_null()
    if bad.any():
        r = int(bad.arg_true()[0])
        raise DataError(f"local time {series[r]} does not exist or is ambiguous in {timezone} (daylight-saving change); "
                        "use UTC timestamps or timestamps with offsets", path=path, row=_line(path, r, header_lines), field=column)
    return local.dt.convert_time_zone("UTC").to_arrow().cast(pa.timestamp("ns", "UTC"))



def _check_zone(timezone: str, path: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zones = sorted(zoneinfo.available_timezones())
        raise DataError(f"unknown time zone {timezone!r}{_did_you_mean(timezone, zones)}", path=path, field="timezone") from None



def _epoch_to_ns(arr: "pa.Array", unit: str, *, path: str | None = None, column: str | None = None,
                 header_lines: int | None = None) -> "pa.Array":
    """Epoch numbers in ``unit`` -> ``timestamp[ns, UTC]``, refusing values outside 1678-2261 (int64 nanoseconds)
    instead of letting them wrap around to a wrong date."""
    import polars as pl
    import pyarrow as pa

    scale = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    values = arr.to_numpy(zero_copy_only=False)
    limit = _MAX_EPOCH_NS / scale  # |value| beyond this overflows int64 nanoseconds
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values.astype(np.float64)) < limit)  # NaN counts as bad
    if bad.any():
        r = int(np.argmax(bad))
        where = {"path": path, "row": _line(path, r, header_lines) if path is not None else r, "field": column}
        raise DataError(f"epoch value {values[r].item()!r} ({unit}) is outside the supported range 1678-2261 "
                        f"(64-bit nanosecond timestamps); check the time unit (unix_s/unix_ms/unix_us/unix_ns)", **where)
    if values.dtype.kind == "f":
        ns = np.round(values * scale).astype(np.int64)
    else:
        ns = values.astype(np.int64) * scale
    return pa.array(ns, type=pa.int64()).cast(pa.timestamp("ns", "UTC"))



def _first_null(arr: "pa.Array") -> int:
    import pyarrow.compute as pc

    return int(pc.index(pc.is_null(arr), True).as_py())



def _first_cast_failure(arr: "pa.Array", target: "pa.DataType") -> int:
    """Index of the first element that does not cast to ``target`` (binary search with Arrow casts)."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(arr.slice(lo, mid - lo), target)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo



def _line(path: str, row: int, header_lines: int | None) -> int:
    if header_lines is None or not os.path.isfile(path):
        return row
    return _line_of_row(Path(path), row, header_lines)



def _line_of_row(p: Path, row: int, header_lines: int) -> int:
    """One-based line number of zero-based data row ``row``, skipping blank lines as the CSV reader does."""
    with open(p, "rb") as fh:
        opener = gzip.open(p, "rb") if fh.read(2) == b"\x1f\x8b" else open(p, "rb")
    with opener as fh:
        seen = -header_lines
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if seen == row:
                return number
            seen += 1
    return row + header_lines + 1



def _did_you_mean(name: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def utc_ns_timestamp(frame: "pl.DataFrame", **where: Any) -> "pl.DataFrame":
    """``frame`` with its ``timestamp`` column as ns UTC datetimes: int64 is taken as epoch ns, naive datetimes as
    UTC, aware ones converted. Any other type is a :class:`DataError` (``where``: its ``asset``/``row`` fields)."""
    import polars as pl

    ts = frame["timestamp"]
    if ts.dtype == pl.Int64:
        return frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC")))
    if not isinstance(ts.dtype, pl.Datetime):
        raise DataError(f"timestamp column has type {ts.dtype}; expected datetimes or int64 ns", field="timestamp", **where)
    if ts.dtype.time_zone == "UTC" and ts.dtype.time_unit == "ns":
        return frame
    col = pl.col("timestamp").dt.replace_time_zone("UTC") if ts.dtype.time_zone is None else \
        pl.col("timestamp").dt.convert_time_zone("UTC")
    return frame.with_columns(col.dt.cast_time_unit("ns"))

