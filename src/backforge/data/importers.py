"""Read market data files into normalized Polars frames (and :class:`MarketData`).

Every reader returns a :class:`FileData`: a Polars DataFrame whose ``timestamp`` column is
``Datetime("ns", "UTC")`` and whose price and size columns are float64, plus the *kind* of data it
holds:

=============  ======================================================================================
kind           columns
=============  ======================================================================================
``bars``       ``open, high, low, close, volume`` (+ ``adj_close``, ``open_interest`` when the file has them)
``quote_bars`` ``bid_open … bid_close, ask_open … ask_close, volume``
``quotes``     ``bid, ask, volume`` (+ ``bid_size``, ``ask_size``) — top-of-book ticks
``trades``     ``price, size, side`` (+ ``trade_id``); ``side`` is +1 buyer-initiated, -1 seller-initiated, 0 unknown
=============  ======================================================================================

Supported files: generic OHLCV CSV (columns, delimiter, header and timestamp format detected, each
overridable), Yahoo CSV (``Adj Close``), backtrader CSV (separate date and time columns, header one
name short), Binance kline CSV (with or without header, ms or µs epochs), FX quote ticks
(``timestamp,bid,ask[,volume]``), separate bid and ask bar files (:func:`read_bid_ask`), gzip-compressed
CSV (detected from the content, not the name) and Parquet. Naive timestamps are taken in ``timezone``
(UTC by default) and converted to UTC.

Reading never modifies anything; a malformed file raises :class:`~backforge.errors.DataError` naming the
file, the one-based line number and the column of the first problem.

The readers are here; CSV layout sniffing is :mod:`backforge.data.csv_layout` and the reading of
timestamps :mod:`backforge.data.timestamps`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from backforge._time import NS_PER, format_duration
from backforge.data.csv_layout import (
    QUOTE_BAR_FIELDS, _column_samples, _date_time_pair, _detect_layout, _diagnose_csv, _map_columns, _open_stream,
    _sample_text,
)
from backforge.data.market import PRICE_FIELDS
from backforge.data.timestamps import (
    _detect_time_spec, _did_you_mean, _first_cast_failure, _line, _line_of_row, _timestamps_from_arrow,
)
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from backforge.data.market import MarketData

__all__ = [
    "FileData", "FORMATS", "KINDS", "read_file", "read_csv", "read_parquet", "read_bid_ask",
    "infer_bar", "normalize_frame", "frame_to_market",
]

KINDS = ("bars", "quote_bars", "quotes", "trades")
FORMATS = ("auto", "generic", "yahoo", "backtrader", "binance", "quotes", "parquet")
Kind = Literal["bars", "quote_bars", "quotes", "trades"]
Policy = Literal["error", "drop", "repair"]


@dataclass(frozen=True)
class FileData:
    """A data file read into a normalized Polars frame.

    Attributes
    ----------
    frame
        Polars DataFrame, ``timestamp`` as ``Datetime("ns", "UTC")`` first, float64 prices (see the
        module docstring for the columns of each kind). Rows are in file order (not yet checked).
    kind
        ``"bars"``, ``"quote_bars"``, ``"quotes"`` or ``"trades"``.
    bar
        Bar label for the catalog: a duration (``"1min"``, ``"1h"``, ``"1d"``), ``"1mo"``, or
        ``"quote"``/``"trade"`` for ticks.
    path
        The file read (``"bid.csv+ask.csv"`` for merged bid/ask files).
    format
        The layout used (``"generic"``, ``"yahoo"``, ``"backtrader"``, ``"binance"``, ``"quotes"``,
        ``"parquet"``, ``"bid-ask"``).
    header_lines
        Lines before the first data row (used to turn row indices into file line numbers); ``None``
        for files without lines (Parquet), where rows are zero-based indices.
    notes
        What the reader did that the user should know (columns ignored, fields filled...).

    Examples
    --------
    >>> import polars as pl
    >>> fd = FileData(pl.DataFrame({"timestamp": [0], "close": [1.0]}), "bars", "1d", "x.csv", "generic")
    >>> fd.kind, fd.bar
    ('bars', '1d')
    """

    frame: "pl.DataFrame"
    kind: str
    bar: str
    path: str
    format: str
    header_lines: int | None = 1
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rows(self) -> int:
        """Number of rows read."""
        return self.frame.height

    def line_of(self, row: int) -> int:
        """The one-based file line of zero-based data row ``row`` (the row itself for Parquet).

        Blank lines, which CSV readers skip, are counted by re-reading the file (error path only).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
        >>> _ = p.write_text("date,close\\n2020-01-02,1\\n\\n2020-01-03,2\\n")
        >>> read_file(p).line_of(1)
        4
        """
        if self.header_lines is None or "+" in self.path:
            return row
        return _line_of_row(Path(self.path), row, self.header_lines)



def read_file(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    delimiter: str | None = None,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    time_column: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    bar: str | None = None,
    adjust: bool = False,
) -> FileData:
    """Read a CSV (plain or gzip) or Parquet file of bars, quotes or trades into a :class:`FileData`.

    Parameters
    ----------
    path
        The file. Gzip and Parquet are recognized from the content, whatever the name.
    format
        ``"auto"`` (default: detect), ``"generic"``, ``"yahoo"``, ``"backtrader"``, ``"binance"``
        (kline CSV), ``"quotes"`` (FX ticks ``timestamp,bid,ask[,volume]``) or ``"parquet"``.
    delimiter
        Field separator; detected among ``, ; tab |`` when omitted.
    columns
        Column names for a file without a header (a list), or a mapping ``{file column: canonical name}``
        to rename columns that are not recognized (canonical names: ``timestamp, open, high, low, close,
        volume, adj_close, bid, ask, price, size, ...``).
    time_column
        The timestamp column, when it is not one of ``timestamp/datetime/date/time/...``.
    time_format
        A strftime format (``"%d/%m/%Y %H:%M"``) or ``unix_s``/``unix_ms``/``unix_us``/``unix_ns``;
        detected when omitted (ISO 8601 with or without offset, epoch numbers, common layouts).
    timezone
        IANA zone of naive timestamps (``"America/New_York"``); they are converted to UTC. Default UTC.
        Timestamps that carry an offset are always converted from it.
    bar
        Bar label to use instead of the one inferred from the timestamps.
    adjust
        Yahoo files: scale open/high/low/close by ``Adj Close / Close`` (and volume inversely), giving
        split- and dividend-adjusted bars.

    Returns
    -------
    FileData
        The normalized frame, its kind and bar label.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_text("Date;Close\\n2020-01-02;10.5\\n2020-01-03;10.7\\n")
    >>> fd = read_file(p)
    >>> fd.kind, fd.bar, fd.frame["close"].to_list()
    ('bars', '1d', [10.5, 10.7])
    """
    p = Path(path)
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}{_did_you_mean(format, FORMATS)}", path=str(p), field="format")
    if not p.exists():
        raise DataError("file not found", path=str(p))
    if p.is_dir():
        raise DataError("is a directory, not a data file", path=str(p))
    if not p.is_file():  # reading a FIFO would block, a device never end
        raise DataError("not a regular file (a FIFO, device or socket); give a data file", path=str(p))
    if p.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path=str(p))
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1" or format == "parquet":
        if magic != b"PAR1":
            raise DataError("not a Parquet file (no PAR1 magic bytes)", path=str(p))
        return read_parquet(p, columns=columns, time_column=time_column, time_format=time_format, timezone=timezone, bar=bar, adjust=adjust)
    fd = _read_csv_file(
        p, format=format, delimiter=delimiter, columns=columns, time_column=time_column, time_format=time_format,
        timezone=timezone, bar=bar, adjust=adjust, gzipped=magic[:2] == b"\x1f\x8b",
    )
    expected = {"quotes": "quotes", "yahoo": "bars", "backtrader": "bars", "binance": "bars"}.get(format)
    if expected is not None and fd.kind != expected:
        raise DataError(f"format {format!r} expects {expected}, but the columns {fd.frame.columns[1:]} describe {fd.kind}; "
                        "use format='auto'", path=str(p), field="format")
    return fd



def read_csv(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    format: str = "auto",
    delimiter: str | None = None,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    time_column: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    adjust: bool = False,
    policy: Policy = "error",
) -> "MarketData":
    """Read one file straight into a single-asset :class:`MarketData` (no catalog involved).

    The file is read by :func:`read_file`, checked by :func:`backforge.data.quality.apply_policy` with
    ``policy`` (``"error"`` raises on the first problem, ``"drop"`` removes bad rows, ``"repair"`` fixes
    what can be fixed), then aligned. Quote ticks sharing a timestamp collapse to the last one (the
    book at that instant); trade ticks must be resampled first (:mod:`backforge.data.resample`).

    Parameters
    ----------
    path, format, delimiter, columns, time_column, time_format, timezone, adjust
        As in :func:`read_file`.
    symbol
        Asset name; defaults to the file name up to the first dot (``GOOG.csv`` -> ``GOOG``).
    policy
        What to do with bad rows: ``"error"`` (default), ``"drop"`` or ``"repair"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "GOOG.csv"
    >>> _ = p.write_text(",Open,High,Low,Close,Volume\\n2004-08-19,100,104.06,95.96,100.34,22351900\\n")
    >>> md = read_csv(p)
    >>> md.assets, float(md.close[0, 0])
    (('GOOG',), 100.34)
    """
    from backforge.data.quality import apply_policy

    fd = read_file(path, format=format, delimiter=delimiter, columns=columns, time_column=time_column,
                   time_format=time_format, timezone=timezone, adjust=adjust)
    name = symbol or Path(path).name.split(".")[0]
    frame, _ = apply_policy(fd, policy=policy, symbol=name)
    return frame_to_market({name: frame}, kind=fd.kind)



def read_parquet(
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    time_column: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    bar: str | None = None,
    adjust: bool = False,
) -> FileData:
    """Read a Parquet file of bars, quotes or trades (column names recognized as for CSV).

    Timestamp columns may be Arrow timestamps of any unit (naive ones are taken in ``timezone``),
    dates, epoch integers (unit from their magnitude) or strings.

    Examples
    --------
    >>> import tempfile, pathlib, polars as pl
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
    >>> pl.DataFrame({"ts": [1_600_000_000_000, 1_600_000_000_500], "price": [10.0, 10.5],
    ...               "qty": [1.0, 2.0]}).write_parquet(p)
    >>> fd = read_parquet(p)
    >>> fd.kind, fd.frame.columns
    ('trades', ['timestamp', 'price', 'size', 'side'])
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet file: {exc}", path=str(p)) from None
    if table.num_rows == 0:
        raise DataError("no data rows in the Parquet file", path=str(p))
    names = list(table.column_names)
    if isinstance(columns, Sequence) and not isinstance(columns, str):
        if len(columns) != len(names):
            raise DataError(f"{len(columns)} column names given for {len(names)} columns", path=str(p), field="columns")
        table = table.rename_columns(list(columns))
        names = list(columns)
    mapping = _map_columns(names, columns if isinstance(columns, Mapping) else None, time_column, str(p))
    arrays: dict[str, pa.Array] = {}
    for raw, canon in mapping.items():
        if canon in arrays:
            continue
        arrays[canon] = table.column(raw).combine_chunks()
    time_raw = next(raw for raw, canon in mapping.items() if canon == "timestamp")
    arrays["timestamp"] = _timestamps_from_arrow(arrays["timestamp"], time_format=time_format, timezone=timezone,
                                                 path=str(p), column=time_raw, header_lines=None)
    ignored = [n for n in names if n not in mapping]
    return _finish(arrays, path=str(p), fmt="parquet", header_lines=None, bar=bar, adjust=adjust, ignored=ignored, source_names=mapping)



def read_bid_ask(
    bid_path: str | os.PathLike[str],
    ask_path: str | os.PathLike[str],
    *,
    delimiter: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    bar: str | None = None,
) -> FileData:
    """Merge a file of bid bars and a file of ask bars into one quote-bar series.

    Rows are matched on their timestamps (an outer join): a timestamp present in only one file leaves
    the other side NaN, which the quality check reports as a one-sided quote (``policy="drop"`` removes
    it). The volume column, when present, is taken from the bid file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "bid.csv").write_text("timestamp,open,high,low,close\\n2013-02-01 00:00:00+00:00,1,1.2,0.9,1.1\\n")
    >>> _ = (d / "ask.csv").write_text("timestamp,open,high,low,close\\n2013-02-01 00:00:00+00:00,1.1,1.3,1,1.2\\n")
    >>> fd = read_bid_ask(d / "bid.csv", d / "ask.csv")
    >>> fd.kind, fd.frame["ask_close"].to_list()
    ('quote_bars', [1.2])
    """
    import polars as pl

    sides = {}
    for side, path in (("bid", bid_path), ("ask", ask_path)):
        fd = read_file(path, delimiter=delimiter, time_format=time_format, timezone=timezone)
        if fd.kind != "bars":
            raise DataError(f"the {side} file must hold OHLC bars, found {fd.kind}", path=str(path))
        sides[side] = fd
    bid = sides["bid"].frame.select("timestamp", *(pl.col(f).alias(f"bid_{f}") for f in PRICE_FIELDS), "volume")
    ask = sides["ask"].frame.select("timestamp", *(pl.col(f).alias(f"ask_{f}") for f in PRICE_FIELDS))
    for side, frame in (("bid", bid), ("ask", ask)):
        dup = frame["timestamp"].is_duplicated()
        if dup.any():
            r = int(dup.arg_true()[0])
            raise DataError(f"duplicate timestamp {frame['timestamp'][r]} in the {side} file; deduplicate it before merging",
                            path=str(sides[side].path), row=sides[side].line_of(r), field="timestamp")
    merged = bid.join(ask, on="timestamp", how="full", coalesce=True)
    merged = merged.sort("timestamp", maintain_order=True)
    merged = merged.with_columns(pl.col(c).fill_null(float("nan")) for c in (*QUOTE_BAR_FIELDS, "volume"))
    frame = merged.select("timestamp", *QUOTE_BAR_FIELDS, "volume")
    label = bar or infer_bar(frame["timestamp"])
    notes = [f"merged {sides['bid'].rows} bid and {sides['ask'].rows} ask bars into {frame.height} quote bars"]
    return FileData(frame, "quote_bars", label, f"{bid_path}+{ask_path}", "bid-ask", None, tuple(notes))



def infer_bar(timestamps: Any) -> str:
    """Bar label from the median spacing of timestamps: ``"1min"``, ``"1h"``, ``"1d"``, ``"1w"``, ``"1mo"``...

    Examples
    --------
    >>> import numpy as np
    >>> infer_bar(np.array([0, 60, 120], dtype=np.int64) * 10**9)
    '1min'
    >>> infer_bar(np.array([0, 31, 59, 90], dtype=np.int64) * 86_400 * 10**9)
    '1mo'
    """
    ts = _as_int_ns(timestamps)
    if len(ts) < 2:
        return "1d"
    if len(ts) > 200_001:  # the median of an evenly spaced sample of steps is enough for a label
        idx = np.linspace(0, len(ts) - 2, 200_000).astype(np.int64)
        steps = ts[idx + 1] - ts[idx]
    else:
        steps = np.diff(ts)
    steps = steps[steps > 0]
    if steps.size == 0:
        return "1d"
    median = int(np.median(steps))
    day = NS_PER["d"]
    for months, (lo, hi) in ((1, (27, 32)), (3, (85, 95)), (12, (360, 370))):
        if lo * day <= median <= hi * day:
            return "1y" if months == 12 else f"{months}mo"
    if median >= NS_PER["s"]:
        median = int(round(median / NS_PER["s"])) * NS_PER["s"]
    return format_duration(median)



def normalize_frame(frame: Any, *, kind: str | None = None, timezone: str | None = None) -> FileData:
    """Normalize an in-memory pandas or Polars DataFrame like a file (column names, types, kind).

    Examples
    --------
    >>> import polars as pl
    >>> fd = normalize_frame(pl.DataFrame({"Date": ["2020-01-02", "2020-01-03"], "Close": [1.0, 2.0]}))
    >>> fd.kind, fd.frame.columns
    ('bars', ['timestamp', 'open', 'high', 'low', 'close', 'volume'])
    """
    import pandas as pd
    import polars as pl

    if isinstance(frame, pd.DataFrame):
        if isinstance(frame.index, pd.DatetimeIndex):
            frame = frame.reset_index(names="timestamp")
        frame = pl.from_pandas(frame)
    if not isinstance(frame, pl.DataFrame):
        raise DataError(f"expected a pandas or Polars DataFrame, got {type(frame).__name__}")
    if frame.height == 0:
        raise DataError("no data rows")
    table = frame.to_arrow()
    mapping = _map_columns(list(table.column_names), None, None, "<frame>")
    arrays = {}
    for raw, canon in mapping.items():
        if canon not in arrays:
            arrays[canon] = table.column(raw).combine_chunks()
    time_raw = next(raw for raw, canon in mapping.items() if canon == "timestamp")
    arrays["timestamp"] = _timestamps_from_arrow(arrays["timestamp"], time_format=None, timezone=timezone, path="<frame>", column=time_raw, header_lines=None)
    fd = _finish(arrays, path="<frame>", fmt="frame", header_lines=None, bar=None, adjust=False, ignored=[], source_names=mapping)
    if kind is not None and fd.kind != kind:
        raise DataError(f"expected {kind} data, the columns describe {fd.kind}")
    return fd



def frame_to_market(frames: Mapping[str, "pl.DataFrame"], *, kind: str) -> "MarketData":
    """Align normalized frames (one per symbol, all of one ``kind``) into a :class:`MarketData`.

    Quote ticks sharing a timestamp keep the last quote; trade ticks are refused (resample them).

    Examples
    --------
    >>> import polars as pl
    >>> f = normalize_frame(pl.DataFrame({"timestamp": [1_577_836_800_000_000_000, 1_577_836_860_000_000_000],
    ...                                   "close": [1.0, 2.0]})).frame  # 2020-01-01 00:00 and 00:01 in ns
    >>> frame_to_market({"A": f}, kind="bars").n_bars
    2
    """
    import polars as pl

    from backforge.data.market import MarketData

    if kind == "trades":
        raise DataError("trade ticks are not bars: resample them first, e.g. backforge.data.resample.trades_to_bars(frame, '1min')", field="kind")
    prepared = {}
    for name, frame in frames.items():
        if kind == "quotes":
            frame = frame.unique(subset="timestamp", keep="last", maintain_order=True)
        cols = [c for c in frame.columns if c in ("timestamp", *PRICE_FIELDS, "volume", "bid", "ask", *QUOTE_BAR_FIELDS)]
        prepared[name] = frame.select(cols).with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    return MarketData.from_frames(prepared)



def _read_csv_file(
    p: Path, *, format: str, delimiter: str | None, columns: Any, time_column: str | None, time_format: str | None,
    timezone: str | None, bar: str | None, adjust: bool, gzipped: bool,
) -> FileData:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    head, tail = _sample_text(p, gzipped=gzipped)
    layout = _detect_layout(head, p, format=format, delimiter=delimiter, columns=columns)
    header_lines = 1 if layout.has_header else 0
    names = list(layout.names)
    mapping = _map_columns(names, columns if isinstance(columns, Mapping) else None, time_column, str(p), fmt=layout.fmt,
                           delimiter=layout.delimiter, sample=head)
    date_time = _date_time_pair(mapping, names, head, layout)  # drops the time-of-day column from mapping
    canon_of = dict(mapping)
    time_raw = list(date_time) if date_time else [raw for raw, canon in mapping.items() if canon == "timestamp"]

    # decide how the time column is read: ISO is parsed by Arrow while reading, epochs as numbers, the rest as text
    sample_times = _column_samples(head, tail, layout, names.index(time_raw[0]))
    if date_time:
        clock = _column_samples(head, tail, layout, names.index(date_time[1]))
        sample_times = [f"{d} {t}" for d, t in zip(sample_times, clock)]
    spec = _detect_time_spec(sample_times, time_format, path=str(p), column=time_raw[0])
    include = [raw for raw in names if raw in canon_of or raw in time_raw or (layout.fmt == "binance" and raw == "close_time")]
    types: dict[str, pa.DataType] = {}
    for raw in include:
        canon = canon_of.get(raw)
        if raw in time_raw:
            if date_time:
                types[raw] = pa.string()
            elif spec.kind == "iso":
                types[raw] = pa.timestamp("ns", "UTC" if spec.aware else None)
            elif spec.kind == "epoch":
                types[raw] = pa.float64() if any("." in v for v in sample_times) else pa.int64()
            else:
                types[raw] = pa.string()
        elif canon == "side":
            types[raw] = pa.string()
        elif canon == "trade_id" or raw == "close_time":
            types[raw] = pa.int64()
        else:
            types[raw] = pa.float64()

    read_options = pacsv.ReadOptions(column_names=names, skip_rows=header_lines, block_size=1 << 24)
    parse_options = pacsv.ParseOptions(delimiter=layout.delimiter)
    convert = pacsv.ConvertOptions(column_types=types, include_columns=include, strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        table = pacsv.read_csv(_open_stream(p, gzipped), read_options=read_options, parse_options=parse_options, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _diagnose_csv(p, gzipped, exc, names=names, include=include, types=types, layout=layout, header_lines=header_lines) from None
    if table.num_rows == 0:
        raise DataError("no data rows (the file has only a header)", path=str(p))

    arrays: dict[str, pa.Array] = {}
    for raw in include:
        if raw in time_raw or raw not in canon_of:
            continue
        canon = canon_of[raw]
        if canon not in arrays:
            arrays[canon] = table.column(raw).combine_chunks()
    if date_time:
        import pyarrow.compute as pc

        d, t = (table.column(c).combine_chunks() for c in date_time)
        text = pc.binary_join_element_wise(d, t, " ")
    else:
        text = table.column(time_raw[0]).combine_chunks()
    arrays["timestamp"] = _timestamps_from_arrow(text, time_format=time_format, timezone=timezone, path=str(p), column=time_raw[0],
                                                 header_lines=header_lines, spec=spec)
    ignored = [n for n in names if n not in canon_of and n not in time_raw and not n.startswith("_skip")]
    if layout.fmt == "binance":
        return _finish_binance(arrays, table, p, bar=bar, header_lines=header_lines)
    return _finish(arrays, path=str(p), fmt=layout.fmt, header_lines=header_lines, bar=bar, adjust=adjust, ignored=ignored, source_names=mapping)



def _finish(
    arrays: dict[str, "pa.Array"], *, path: str, fmt: str, header_lines: int | None, bar: str | None, adjust: bool,
    ignored: Sequence[str], source_names: Mapping[str, str],
) -> FileData:
    """Assemble the canonical frame for the detected kind."""
    import pyarrow as pa
    import polars as pl

    notes: list[str] = []
    if ignored:
        notes.append(f"ignored columns: {', '.join(ignored)}")
    n = len(arrays["timestamp"])

    def f64(name: str) -> pa.Array:
        arr = arrays[name]
        if not pa.types.is_floating(arr.type) or arr.type != pa.float64():
            try:
                arr = arr.cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raw = next((r for r, c in source_names.items() if c == name), name)
                r = _first_cast_failure(arr, pa.float64())
                raise DataError(f"cannot parse {arr[r].as_py()!r} as a number", path=path, row=_line(path, r, header_lines), field=raw) from None
        return arr.fill_null(float("nan")) if arr.null_count else arr

    cols: dict[str, Any] = {"timestamp": arrays["timestamp"]}
    present = set(arrays)
    if any(c in present for c in QUOTE_BAR_FIELDS):
        kind = "quote_bars"
        for side in ("bid", "ask"):
            close = f64(f"{side}_close")
            for f in PRICE_FIELDS:
                cols[f"{side}_{f}"] = f64(f"{side}_{f}") if f"{side}_{f}" in present else close
        cols["volume"] = f64("volume") if "volume" in present else pa.nulls(n, pa.float64()).fill_null(float("nan"))
    elif "close" in present:
        kind = "bars"
        close = f64("close")
        cols["open"] = f64("open") if "open" in present else close
        cols["high"] = f64("high") if "high" in present else None
        cols["low"] = f64("low") if "low" in present else None
        cols["close"] = close
        cols["volume"] = f64("volume") if "volume" in present else None
        missing = [f for f in ("open", "high", "low") if f not in present]
        if missing:
            notes.append(f"no {'/'.join(missing)} column: filled from open and close")
        for extra in ("adj_close", "open_interest"):
            if extra in present:
                cols[extra] = f64(extra)
    elif "bid" in present and "ask" in present:
        kind = "quotes"
        cols["bid"], cols["ask"] = f64("bid"), f64("ask")
        cols["volume"] = f64("volume") if "volume" in present else (f64("size") if "size" in present else None)
        for extra in ("bid_size", "ask_size"):
            if extra in present:
                cols[extra] = f64(extra)
    else:
        kind = "trades"
        cols["price"] = f64("price")
        cols["size"] = f64("size") if "size" in present else (f64("volume") if "volume" in present else None)
        cols["side"] = _side(arrays["side"], path) if "side" in present else pa.array(np.zeros(n, dtype=np.int8))
        if "trade_id" in present:
            cols["trade_id"] = arrays["trade_id"].cast(pa.int64())
    frame = pl.DataFrame({k: pl.from_arrow(v) if v is not None else None for k, v in cols.items() if v is not None})
    if kind == "bars":
        fill = []
        if "high" not in frame.columns:
            fill.append(pl.max_horizontal("open", "close").alias("high"))
        if "low" not in frame.columns:
            fill.append(pl.min_horizontal("open", "close").alias("low"))
        if "volume" not in frame.columns:
            fill.append(pl.lit(float("nan")).alias("volume"))
        if fill:
            frame = frame.with_columns(fill)
        if adjust:
            if "adj_close" not in frame.columns:
                raise DataError("adjust=True needs an 'Adj Close' column (Yahoo format)", path=path, field="adj_close")
            ratio = pl.col("adj_close") / pl.col("close")
            frame = frame.with_columns(*(pl.col(f) * ratio for f in PRICE_FIELDS), pl.col("volume") / ratio)
            notes.append("prices adjusted by Adj Close / Close")
        order = ["timestamp", *PRICE_FIELDS, "volume", *(c for c in ("adj_close", "open_interest") if c in frame.columns)]
        frame = frame.select(order)
        if fmt == "generic" and "adj_close" in frame.columns:
            fmt = "yahoo"
    elif kind == "quotes":
        if "volume" not in frame.columns:
            frame = frame.with_columns(pl.lit(float("nan")).alias("volume"))
        frame = frame.select("timestamp", "bid", "ask", "volume", *(c for c in ("bid_size", "ask_size") if c in frame.columns))
        fmt = "quotes" if fmt == "generic" else fmt
    elif kind == "trades":
        if "size" not in frame.columns:
            frame = frame.with_columns(pl.lit(float("nan")).alias("size"))
        frame = frame.select("timestamp", "price", "size", "side", *(["trade_id"] if "trade_id" in frame.columns else []))
    if fmt == "yahoo" and "adj_close" not in frame.columns:
        raise DataError("a Yahoo file needs an 'Adj Close' column; use format='generic' for other files", path=path, field="adj_close")
    label = bar or ({"quotes": "quote", "trades": "trade"}.get(kind) or infer_bar(frame["timestamp"]))
    return FileData(frame, kind, label, path, fmt, header_lines, tuple(notes))



def _finish_binance(arrays: dict[str, "pa.Array"], table: "pa.Table", p: Path, *, bar: str | None, header_lines: int) -> FileData:
    """Binance klines: stamp each bar at its close (open_time + interval), so a bar is never seen early."""
    import pyarrow as pa

    open_ns = arrays["timestamp"].cast(pa.int64()).to_numpy()
    if "close_time" in table.column_names:
        close_raw = table.column("close_time").combine_chunks().to_numpy(zero_copy_only=False)
        unit = 1_000 if close_raw[0] >= 1e14 else 1_000_000  # microsecond files (2025 on) or milliseconds
        stamps = close_raw.astype(np.int64) * unit + unit  # close_time is the last ms/us inside the bar
    else:
        step = int(np.median(np.diff(open_ns))) if len(open_ns) > 1 else NS_PER["min"]
        stamps = open_ns + step
    arrays = dict(arrays)
    arrays["timestamp"] = pa.array(stamps, type=pa.int64()).cast(pa.timestamp("ns", "UTC"))
    fd = _finish(arrays, path=str(p), fmt="binance", header_lines=header_lines, bar=bar, adjust=False,
                 ignored=["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "ignore"], source_names={})
    return replace(fd, notes=(*fd.notes, "bars stamped at their close time (open_time + interval)"))



def _side(arr: "pa.Array", path: str) -> "pa.Array":
    """Trade aggressor side as int8: +1 buyer-initiated, -1 seller-initiated, 0 unknown."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(arr.type):  # Binance buyer_maker: True means the seller was the aggressor
        out = np.where(arr.to_numpy(zero_copy_only=False), -1, 1).astype(np.int8)
        return pa.array(out)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return pa.array(np.sign(arr.to_numpy(zero_copy_only=False)).astype(np.int8))
    text = pc.utf8_lower(pc.utf8_trim_whitespace(arr.cast(pa.string()))).fill_null("")
    table = {"true": -1, "false": 1, "buy": 1, "b": 1, "sell": -1, "s": -1, "": 0, "none": 0, "unknown": 0}
    values, inverse = np.unique(text.to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    codes = np.zeros(len(values), dtype=np.int8)
    for k, value in enumerate(values):
        if value not in table:
            r = int(np.flatnonzero(inverse == k)[0])
            raise DataError(f"unknown trade side {value!r}; expected buy/sell or true/false (buyer is maker)", path=path, row=r, field="side")
        codes[k] = table[value]
    return pa.array(codes[inverse])



def _as_int_ns(timestamps: Any) -> np.ndarray:
    if isinstance(timestamps, np.ndarray) and timestamps.dtype == np.int64:
        return timestamps
    if hasattr(timestamps, "dt") and type(timestamps).__module__.startswith("polars"):
        import polars as pl

        return timestamps.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    from backforge._time import to_ns

    return to_ns(timestamps)

