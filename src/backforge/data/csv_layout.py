"""How the layout of a CSV file is sniffed: text sampled from the head and tail (gzip detected from the
content), the delimiter, whether there is a header, which known layout it is (generic, Yahoo,
backtrader, Binance klines, quote ticks), header spellings mapped to canonical column names, and the
diagnosis of a file Arrow's CSV reader refused (line number and column of the first bad value).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from backforge.data.market import PRICE_FIELDS
from backforge.data.timestamps import (
    _CLOCK_RE, _EPOCH_RE, _ISO_RE, _SAMPLE_LINES, _did_you_mean, _first_cast_failure, _line_of_row, _timestamp_error,
    _TimeSpec,
)
from backforge.errors import DataError

QUOTE_BAR_FIELDS = tuple(f"{s}_{f}" for s in ("bid", "ask") for f in PRICE_FIELDS)
_SAMPLE_BYTES = 1 << 16

# canonical name <- normalized header spellings (lower case, letters and digits only)
_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "datetime", "ts", "timestamputc", "datetimeutc", "gmttime", "localtime",
                  "date", "dateutc", "time", "index", "unnamed0", "opentime", "t"),
    "open": ("open", "o", "openprice", "first"),
    "high": ("high", "h", "highprice", "max"),
    "low": ("low", "l", "lowprice", "min"),
    "close": ("close", "c", "closeprice", "last", "lastprice"),
    "adj_close": ("adjclose", "adjustedclose", "adjclosing"),
    "volume": ("volume", "vol", "v", "tickvolume", "tickqty", "realvolume", "basevolume"),
    "open_interest": ("openinterest", "oi"),
    "bid": ("bid", "bidprice", "bestbid", "bidpx"),
    "ask": ("ask", "askprice", "bestask", "offer", "askpx"),
    "bid_size": ("bidsize", "bidvolume", "bidqty", "bidsz"),
    "ask_size": ("asksize", "askvolume", "askqty", "asksz", "offersize"),
    "price": ("price", "px", "tradeprice"),
    "size": ("size", "quantity", "qty", "amount", "tradesize"),
    "trade_id": ("tradeid", "id", "aggid", "aggtradeid"),
    "side": ("side", "buyermaker", "isbuyermaker", "ismaker", "aggressor", "aggressorside"),
    **{f"{s}_{f}": (f"{s}{f}", f"{s}{f[0]}", f"{f}{s}") for s in ("bid", "ask") for f in PRICE_FIELDS},
}
_CANONICAL = {spelling: canon for canon, spellings in _ALIASES.items() for spelling in spellings}
_BINANCE_KLINE = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                  "trades", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
_BACKTRADER = ("date", "time", "open", "high", "low", "close", "volume", "open_interest")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True)
class _Layout:
    delimiter: str
    has_header: bool
    names: tuple[str, ...]      # raw names as in the file (or generated), one per field of a data row
    fmt: str



def _open_stream(p: Path, gzipped: bool):
    import pyarrow as pa

    return pa.CompressedInputStream(pa.OSFile(str(p)), "gzip") if gzipped else pa.OSFile(str(p))



def _sample_text(p: Path, *, gzipped: bool) -> tuple[list[str], list[str]]:
    """First and (for plain files) last lines of the file, checked to be text."""
    try:
        if gzipped:
            with gzip.open(p, "rb") as fh:
                raw = fh.read(_SAMPLE_BYTES)
            tail_raw = b""
        else:
            with open(p, "rb") as fh:
                raw = fh.read(_SAMPLE_BYTES)
                size = p.stat().st_size
                tail_raw = b""
                if size > 2 * _SAMPLE_BYTES:
                    fh.seek(size - _SAMPLE_BYTES)
                    tail_raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read the file: {exc}", path=str(p)) from None
    if raw[:2] == b"PK":
        raise DataError("looks like a zip or Excel file, not CSV; unzip it or export the sheet as CSV", path=str(p))
    text = _decode(raw, p, truncated=len(raw) == _SAMPLE_BYTES)
    lines = text.splitlines()
    if len(raw) == _SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle
    lines = [ln for ln in lines if ln.strip()][:_SAMPLE_LINES]
    if not lines:
        raise DataError("empty file (no lines with data)", path=str(p))
    tail: list[str] = []
    if tail_raw:
        tail = [ln for ln in _decode(tail_raw, p, offset=p.stat().st_size - len(tail_raw), truncated=False, head_cut=True).splitlines() if ln.strip()][-_SAMPLE_LINES:]
    return lines, tail



def _decode(raw: bytes, p: Path, offset: int = 0, *, truncated: bool, head_cut: bool = False) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(f"binary content (a NUL byte at offset {offset + nul}): not a text CSV file; for Parquet use format='parquet'", path=str(p))
    if head_cut:  # a tail sample may start inside a multi-byte character
        cut = raw.find(b"\n") + 1
        raw, offset = raw[cut:], offset + cut
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(raw) - 3:  # a multi-byte character cut by the sample boundary
            return raw[: exc.start].decode("utf-8-sig")
        raise DataError(f"not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {offset + exc.start}): binary or wrongly encoded file", path=str(p)) from None



def _split(line: str, delimiter: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=delimiter))



def _detect_delimiter(lines: Sequence[str]) -> str:
    """The candidate found the same number of times on most lines (header included), most often."""
    best, best_score = ",", (-1.0, 0)
    for d in (",", ";", "\t", "|"):
        counts = [ln.count(d) for ln in lines]
        if not any(counts):
            continue
        mode = max(set(counts), key=counts.count)
        score = (counts.count(mode) / len(counts), mode)
        if mode > 0 and score > best_score:
            best, best_score = d, score
    return best



def _looks_like_value(token: str) -> bool:
    t = token.strip().strip('"')
    return bool(t) and (_NUMBER_RE.match(t) is not None or _ISO_RE.match(t) is not None or _CLOCK_RE.match(t) is not None
                        or re.match(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", t) is not None)



def _detect_layout(lines: list[str], p: Path, *, format: str, delimiter: str | None, columns: Any) -> _Layout:
    if delimiter is not None and len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}", path=str(p), field="delimiter")
    delim = delimiter or _detect_delimiter(lines)
    first = _split(lines[0], delim)
    data_row = _split(lines[1], delim) if len(lines) > 1 else first
    n_fields = len(data_row)
    first_is_header = not all(_looks_like_value(t) for t in first if t.strip()) or (first and first[0] == "" and len(first) > 1)
    explicit_names = list(columns) if columns is not None and not isinstance(columns, Mapping) else None

    fmt = "generic" if format == "auto" else format
    if (format in ("auto", "quotes") and len(first) == 4 and len(lines) > 1 and first[0] == data_row[0]
            and not _looks_like_value(first[0]) and all(_looks_like_value(t) or " " in t for t in first[1:])):
        # raw TrueFX: "USD/JPY,20130101 22:00:00.295,86.655,86.728" (instrument, time, bid, ask; no header)
        return _Layout(delim, False, ("_skip_instrument", "timestamp", "bid", "ask"), "quotes")
    if format in ("auto", "binance") and n_fields == 12 and _EPOCH_RE.match(data_row[0].strip()) and not first_is_header:
        return _Layout(delim, False, _BINANCE_KLINE, "binance")
    if format in ("auto", "binance") and first_is_header and [_norm(n) for n in first[:2]] == ["opentime", "open"]:
        return _Layout(delim, True, tuple(_BINANCE_KLINE[: len(first)]) if len(first) <= 12 else tuple(first), "binance")
    if format == "binance":
        raise DataError("not a Binance kline file: expected 12 columns starting with an epoch open time", path=str(p))
    if format == "backtrader" or (
        format == "auto" and first_is_header and len(data_row) == len(first) + 1 and _CLOCK_RE.match(data_row[1].strip())
    ):
        if len(data_row) != len(_BACKTRADER):
            raise DataError(f"backtrader rows need 8 fields (date,time,open,high,low,close,volume,openinterest), found {len(data_row)}", path=str(p))
        return _Layout(delim, first_is_header, _BACKTRADER, "backtrader")
    if explicit_names is not None:
        if len(explicit_names) != n_fields:
            raise DataError(f"{len(explicit_names)} column names given but rows have {n_fields} fields", path=str(p), field="columns")
        return _Layout(delim, first_is_header, tuple(explicit_names), fmt)
    if first_is_header:
        names = [n.strip() for n in first]
        if len(names) != n_fields:
            raise DataError(f"the header has {len(names)} name{'s' if len(names) != 1 else ''} but the first data row has {n_fields} field{'s' if n_fields != 1 else ''}"
                            + _delimiter_hint(lines, delim), path=str(p), row=2)
        names = [n if n else ("timestamp" if i == 0 else f"column_{i}") for i, n in enumerate(names)]
        seen: dict[str, int] = {}
        for i, n in enumerate(names):  # duplicate header names get a suffix so every column is addressable
            if n in seen:
                names[i] = f"{n}_{i}"
            seen[n] = i
        return _Layout(delim, True, tuple(names), fmt)
    # no header: positional layouts
    if format == "quotes" or (n_fields in (3, 4) and format == "auto"):
        names = ("timestamp", "bid", "ask", "volume")[:n_fields]
        return _Layout(delim, False, names, "quotes")
    if 5 <= n_fields <= 7:
        names = ("timestamp", "open", "high", "low", "close", "volume", "open_interest")[:n_fields]
        return _Layout(delim, False, names, fmt)
    raise DataError(f"no header line and {n_fields} fields per row: cannot tell the columns apart; pass columns=[...] "
                    "(CLI: --columns timestamp,open,high,low,close,volume)" + _delimiter_hint(lines, delim), path=str(p))



def _delimiter_hint(lines: Sequence[str], used: str) -> str:
    other = _detect_delimiter(lines)
    if other != used and any(other in ln for ln in lines[:5]):
        return f"; the file seems to use {other!r} as delimiter, not {used!r}"
    return ""



def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())



def _map_columns(
    names: Sequence[str], rename: Mapping[str, str] | None, time_column: str | None, path: str, *,
    fmt: str = "generic", delimiter: str = ",", sample: Sequence[str] = (),
) -> dict[str, str]:
    """{raw name: canonical name} for the columns that are used; raises when essentials are missing."""
    mapping: dict[str, str] = {}
    rename = dict(rename or {})
    for raw, canon in rename.items():
        if raw not in names:
            raise DataError(f"column {raw!r} given in columns= is not in the file; columns are {list(names)}{_did_you_mean(raw, names)}", path=path, field=raw)
        if canon not in _ALIASES:
            raise DataError(f"unknown canonical column {canon!r}; use one of {', '.join(_ALIASES)}{_did_you_mean(canon, list(_ALIASES))}", path=path, field=raw)
        mapping[raw] = canon
    if time_column is not None:
        if time_column not in names:
            raise DataError(f"time column {time_column!r} not found; columns are {list(names)}{_did_you_mean(time_column, names)}", path=path, field=time_column)
        mapping[time_column] = "timestamp"
    taken = set(mapping.values())
    time_rank = {s: i for i, s in enumerate(_ALIASES["timestamp"])}
    time_candidates = []
    for raw in names:
        if raw in mapping:
            continue
        canon = _CANONICAL.get(_norm(raw))
        if fmt == "binance" and raw == "close_time":
            continue
        if canon == "timestamp":
            time_candidates.append(raw)
        elif canon is not None and canon not in taken:
            mapping[raw] = canon
            taken.add(canon)
    if "timestamp" not in taken:
        if not time_candidates:
            raise DataError(f"no timestamp column found; columns are {list(names)}; name one 'timestamp' or 'date', or pass time_column="
                            + _delimiter_hint(sample, delimiter), path=path, field="timestamp")
        time_candidates.sort(key=lambda raw: time_rank[_norm(raw)])
        best = time_candidates[0]
        mapping[best] = "timestamp"
        for raw in time_candidates[1:]:
            if _norm(raw) == "time" and _norm(best) == "date":
                mapping[raw] = "time_of_day"
    canon_set = set(mapping.values())
    has_quote_bars = any(c in canon_set for c in QUOTE_BAR_FIELDS)
    if has_quote_bars:
        missing = [c for c in QUOTE_BAR_FIELDS if c.endswith("close") and c not in canon_set]
        if missing:
            raise DataError(f"quote bars need bid and ask close columns; missing {', '.join(missing)}; columns are {list(names)}", path=path, field=missing[0])
    elif not ({"close", "price"} & canon_set or {"bid", "ask"} <= canon_set):
        present = [n for n in names if n not in mapping]
        hint = ""
        for want in ("close", "price", "bid", "ask"):
            hint = hint or _did_you_mean(want, present)
        if "bid" in canon_set or "ask" in canon_set:
            side = "ask" if "bid" in canon_set else "bid"
            raise DataError(f"quote ticks need both bid and ask columns; no {side} column among {list(names)}{hint}", path=path, field=side)
        raise DataError(f"no price column found: need close (bars), bid and ask (quotes) or price (trades); columns are {list(names)}{hint}"
                        + _delimiter_hint(sample, delimiter), path=path, field="close")
    return mapping



def _date_time_pair(mapping: dict[str, str], names: list[str], head: list[str], layout: _Layout) -> tuple[str, str] | None:
    """(date column, time-of-day column) when the timestamp is split in two columns, else None."""
    tod = [raw for raw, canon in mapping.items() if canon == "time_of_day"]
    for raw in tod:
        mapping.pop(raw)
    if not tod:
        return None
    date_raw = next(raw for raw, canon in mapping.items() if canon == "timestamp")
    values = _column_samples(head, [], layout, names.index(tod[0]))
    if values and all(_CLOCK_RE.match(v) for v in values):
        return (date_raw, tod[0])
    return None



def _column_samples(head: list[str], tail: list[str], layout: _Layout, index: int) -> list[str]:
    rows = (head[1:] if layout.has_header else head) + tail
    out = []
    for line in rows:
        fields = _split(line, layout.delimiter)
        if index < len(fields):
            value = fields[index].strip()
            if value:
                out.append(value)
    return out



def _diagnose_csv(p: Path, gzipped: bool, exc: Exception, *, names: list[str], include: list[str], types: dict, layout: _Layout,
                  header_lines: int) -> DataError:
    """Turn an Arrow CSV error into a DataError with the line number and column of the first bad value."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    message = str(exc)
    if "invalid UTF8" in message:
        return _utf8_error(p, gzipped)
    if "CSV parse error" in message or "Expected" in message and "columns" in message:
        return _field_count_error(p, gzipped, layout, header_lines, message)
    try:
        table = pacsv.read_csv(
            _open_stream(p, gzipped),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_lines, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in include}, include_columns=include,
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc2:
        return _field_count_error(p, gzipped, layout, header_lines, str(exc2))
    for raw in include:
        target = types[raw]
        if target == pa.string():
            continue
        col = table.column(raw).combine_chunks()
        try:
            pc.cast(col, target)
        except pa.ArrowInvalid:
            r = _first_cast_failure(col, target)
            value = col[r].as_py()
            line = _line_of_row(p, r, header_lines)
            if pa.types.is_timestamp(target):
                return _timestamp_error(value, _TimeSpec("iso", aware=target.tz is not None), str(p), line, raw)
            what = "an integer" if pa.types.is_integer(target) else "a number"
            hint = "; decimal commas are not supported: use '.' for decimals" if re.match(r"^-?\d+,\d+$", str(value).strip()) else ""
            return DataError(f"cannot parse {value!r} as {what}{hint}", path=str(p), row=line, field=raw)
    return DataError(f"cannot read the CSV file: {message}", path=str(p))



def _utf8_error(p: Path, gzipped: bool) -> DataError:
    opener = gzip.open(p, "rb") if gzipped else open(p, "rb")
    with opener as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(f"not UTF-8 text (undecodable byte 0x{line[exc.start]:02x}): binary or wrongly encoded file", path=str(p), row=number)
    return DataError("not UTF-8 text: binary or wrongly encoded file", path=str(p))



def _field_count_error(p: Path, gzipped: bool, layout: _Layout, header_lines: int, message: str) -> DataError:
    import csv

    expected = len(layout.names)
    opener = gzip.open(p, "rt", encoding="utf-8", errors="replace", newline="") if gzipped else open(p, encoding="utf-8", errors="replace", newline="")
    with opener as fh:
        for number, fields in enumerate(csv.reader(fh, delimiter=layout.delimiter), start=1):
            if number <= header_lines or not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != expected:
                return DataError(f"expected {expected} fields, found {len(fields)}: {layout.delimiter.join(fields)[:80]!r}", path=str(p), row=number)
    return DataError(f"cannot read the CSV file: {message}", path=str(p))

