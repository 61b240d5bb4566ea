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
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from backforge._time import NS_PER, format_duration
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

PRICE_FIELDS = ("open", "high", "low", "close")
QUOTE_BAR_FIELDS = tuple(f"{s}_{f}" for s in ("bid", "ask") for f in PRICE_FIELDS)
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 200

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

_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)
_CLOCK_RE = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
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


# ====================================================================== public readers

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


# ====================================================================== CSV internals

@dataclass(frozen=True)
class _Layout:
    delimiter: str
    has_header: bool
    names: tuple[str, ...]      # raw names as in the file (or generated), one per field of a data row
    fmt: str


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


# ---------------------------------------------------------------------- timestamps

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


# ---------------------------------------------------------------------- CSV error diagnosis

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


# ====================================================================== normalization

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


# ====================================================================== small helpers

def _as_int_ns(timestamps: Any) -> np.ndarray:
    if isinstance(timestamps, np.ndarray) and timestamps.dtype == np.int64:
        return timestamps
    if hasattr(timestamps, "dt") and type(timestamps).__module__.startswith("polars"):
        import polars as pl

        return timestamps.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()
    from backforge._time import to_ns

    return to_ns(timestamps)


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""

