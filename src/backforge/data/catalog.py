"""The on-disk data catalog: Parquet for storage, memory-mapped Arrow IPC for zero-copy loads.

Layout of a catalog folder (default ``./backforge-data``, or ``$BACKFORGE_DATA``)::

    <root>/<SYMBOL>/<bar>/CURRENT             name of the live version, e.g. "v000003"
    <root>/<SYMBOL>/<bar>/v000003/meta.json   kind, rows, range, columns, import history
    <root>/<SYMBOL>/<bar>/v000003/data.parquet          (or year=2013.parquet, ... for large series)
    <root>/<SYMBOL>/<bar>/v000003/cache.arrow  uncompressed Arrow IPC: timestamp + float64 columns
    <root>/_fundamentals/all/...               point-in-time fundamentals (same versioning)
    <root>/_aligned/<key>.arrow                aligned [T, A] blocks of multi-symbol loads

**Atomic writes.** A write builds a complete new version in a temporary folder next to the live one
(unchanged yearly Parquet partitions are hard-linked, not copied), fsyncs it, renames it into place and
only then replaces ``CURRENT`` (itself written to a temporary file and renamed). A crash at any point
leaves ``CURRENT`` naming the previous complete version; the debris is removed by the next write.
Writers of one series serialize on a lock file; readers take no lock. The previous version is kept
when a new one is published, so a reader that resolved ``CURRENT`` just before a write still finds
its files (and files already opened or memory-mapped stay valid even after deletion on POSIX).

**Loads.** :meth:`Catalog.load` memory-maps each series' ``cache.arrow`` and builds
:class:`~backforge.data.market.MarketData` on top of it: a single symbol is zero-copy (read-only
arrays backed by the page cache); several symbols are aligned once on the union of their timestamps
(NaN where a symbol has no bar — never forward-filled) and the aligned block is itself cached as an
Arrow IPC file of fixed-size lists, so the next load of the same symbols is zero-copy too.

``Catalog("lmdb:///path")`` gives the same interface on an ArcticDB library (optional dependency).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence

import numpy as np

from backforge._time import parse_duration, format_duration, to_ns
from backforge.data.market import MarketData, Quotes
from backforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from backforge.data.fundamentals import Fundamentals
    from backforge.data.quality import QualityReport

__all__ = ["Catalog", "SeriesInfo", "WriteResult", "ImportReport", "DEFAULT_ROOT", "normalize_bar", "validate_symbol"]

DEFAULT_ROOT = "backforge-data"
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-^=]{0,63}$")
_SPECIAL_BARS = ("quote", "trade", "1mo", "3mo", "1y")
_KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "bars": ("open", "high", "low", "close", "volume"),
    "quote_bars": ("bid_open", "bid_high", "bid_low", "bid_close", "ask_open", "ask_high", "ask_low", "ask_close", "volume"),
    "quotes": ("bid", "ask", "volume"),
    "trades": ("price", "size", "side"),
}
_PRICE = ("open", "high", "low", "close")
_FORMAT_VERSION = 1
_MAX_ALIGNED_FILES = 16
_PENDING = ".pending"


# ====================================================================== small public helpers

def normalize_bar(bar: str) -> str:
    """Canonical bar label: durations in their largest whole unit, ``quote``/``trade`` for ticks.

    Examples
    --------
    >>> normalize_bar("60min"), normalize_bar("1m"), normalize_bar("1D"), normalize_bar("quote")
    ('1h', '1min', '1d', 'quote')
    """
    text = str(bar).strip()
    if text.lower() in _SPECIAL_BARS:
        return text.lower()
    if text.lower() in ("tick", "ticks", "quotes"):
        return "quote"
    if text.lower() in ("trades",):
        return "trade"
    try:
        return format_duration(parse_duration(text))
    except ConfigError:  # parse_duration's error, re-raised as a data error naming the bar
        raise DataError(f"not a bar size: {bar!r}; use a duration such as '1min', '1h', '1d', or 1mo, quote, trade", field="bar") from None


def _check_bar_label(label: str, timestamps: Any, symbol: str) -> None:
    """Refuse a bar label the data contradicts: ``--bar 5h`` on bars a day apart, ``--bar 1w`` on daily bars.

    The median spacing of the bars must be between the label and 2.5 times it (gaps, weekends and halts
    make some spacings longer, never the median shorter than the bar).

    >>> import numpy as np
    >>> _check_bar_label("1d", np.arange(5) * 86_400 * 10**9, "X")
    >>> _check_bar_label("5h", np.arange(5) * 86_400 * 10**9, "X")
    Traceback (most recent call last):
    ...
    backforge.errors.DataError: asset X, field bar: the bars are 1d apart (median spacing) but --bar says 5h; give --bar 1d, or resample the data first
    """
    from backforge.data.importers import infer_bar

    ts = np.asarray(timestamps.to_numpy() if hasattr(timestamps, "to_numpy") else timestamps)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[ns]")
    ts = ts.astype(np.int64)
    if label in _SPECIAL_BARS or ts.shape[0] < 3:
        return
    seen = infer_bar(ts)
    if seen in _SPECIAL_BARS:
        raise DataError(f"the bars are {seen} apart (median spacing) but --bar says {label}; give --bar {seen}",
                        asset=symbol, field="bar")
    ratio = parse_duration(seen) / parse_duration(label)
    if not 0.99 <= ratio <= 2.5:
        raise DataError(f"the bars are {seen} apart (median spacing) but --bar says {label}; give --bar {seen}, or "
                        "resample the data first", asset=symbol, field="bar")


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a valid catalog name, else raise :class:`DataError` saying why.

    Examples
    --------
    >>> validate_symbol("BRK.B")
    'BRK.B'
    """
    if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
        bad = next((c for c in str(symbol) if not (c.isalnum() or c in "._-^=")), None)
        why = f"contains {bad!r}" if bad else "must start with a letter or digit and have at most 64 characters"
        hint = f"; e.g. {re.sub(r'[^A-Za-z0-9._^=-]', '', str(symbol))!r}" if bad else ""
        raise DataError(f"invalid symbol {symbol!r}: {why}; use letters, digits and . _ - ^ ={hint}", field="symbol")
    return symbol


# ====================================================================== result records

@dataclass(frozen=True)
class SeriesInfo:
    """What the catalog holds for one (symbol, bar) series.

    Examples
    --------
    >>> info = SeriesInfo("GOOG", "1d", "bars", 2148, 0, 1, 3, 1000, ("open",))
    >>> info.symbol, info.rows
    ('GOOG', 2148)
    """

    symbol: str
    bar: str
    kind: str
    rows: int
    start: int
    end: int
    version: int
    bytes: int
    columns: tuple[str, ...]
    history: tuple[dict[str, Any], ...] = ()
    partitioned: bool = False

    @property
    def start_iso(self) -> str:
        """First timestamp as ISO text (UTC)."""
        return _iso(self.start)

    @property
    def end_iso(self) -> str:
        """Last timestamp as ISO text (UTC)."""
        return _iso(self.end)


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one catalog write: rows added, rows replaced (same timestamp/span), total after.

    Examples
    --------
    >>> WriteResult("GOOG", "1d", "bars", 3, 10, 0, 10).summary()
    'GOOG 1d: 10 rows added, 0 replaced; 10 rows stored (version 3)'
    """

    symbol: str
    bar: str
    kind: str
    version: int
    added: int
    replaced: int
    rows: int

    def summary(self) -> str:
        """One readable line."""
        return f"{self.symbol} {self.bar}: {self.added:,} rows added, {self.replaced:,} replaced; {self.rows:,} rows stored (version {self.version})"


@dataclass(frozen=True)
class ImportReport:
    """Everything an import did: file read, quality issues and actions, rows written.

    Examples
    --------
    >>> from backforge.data.quality import QualityReport
    >>> r = ImportReport("X", "1d", "bars", "x.csv", "generic", 2, QualityReport("bars", 2),
    ...                  WriteResult("X", "1d", "bars", 1, 2, 0, 2))
    >>> print(r.summary().splitlines()[0])
    x.csv (generic, bars): 2 rows read
    """

    symbol: str
    bar: str
    kind: str
    path: str
    format: str
    rows_read: int
    quality: "QualityReport"
    write: WriteResult
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """Readable multi-line summary, as printed by ``backforge data import``."""
        lines = [f"{self.path} ({self.format}, {self.kind}): {self.rows_read:,} rows read"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += ["  quality: " + ln.strip() if i == 0 else "    " + ln for i, ln in enumerate(self.quality.summary().splitlines())]
        lines.append("  " + self.write.summary())
        return "\n".join(lines)


# ====================================================================== the catalog

class Catalog:
    """A folder of market data series, or an ArcticDB library, behind one interface.

    Parameters
    ----------
    root
        Folder of the catalog (created on first write). Defaults to ``$BACKFORGE_DATA`` or
        ``./backforge-data``. An ``lmdb://...`` URI selects the ArcticDB backend (``pip install arcticdb``).
    partition_rows
        Series longer than this are stored as one Parquet file per year (appends then rewrite only
        the years they touch).
    cache_aligned
        Cache the aligned ``[T, A]`` block of multi-symbol loads for zero-copy reloads.
    aligned_cache_max_cells
        Largest aligned block (timestamps × symbols) that is cached.
    library
        ArcticDB library name (ArcticDB backend only).

    Examples
    --------
    >>> import tempfile
    >>> from backforge.data.synth import gbm
    >>> cat = Catalog(tempfile.mkdtemp())
    >>> _ = cat.write_market(gbm(2, 1, bar="1d", seed=1))
    >>> [(s.symbol, s.bar, s.rows) for s in cat.list()]
    [('AAPL', '1d', 252), ('MSFT', '1d', 252)]
    >>> cat.load(["AAPL", "MSFT"], bar="1d").close.shape
    (252, 2)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        partition_rows: int = 250_000,
        cache_aligned: bool = True,
        aligned_cache_max_cells: int = 60_000_000,
        library: str = "backforge",
    ) -> None:
        if root is None:
            root = os.environ.get("BACKFORGE_DATA") or DEFAULT_ROOT
        text = str(root)
        self.partition_rows = int(partition_rows)
        self.cache_aligned = bool(cache_aligned)
        self.aligned_cache_max_cells = int(aligned_cache_max_cells)
        if text.startswith("lmdb://"):
            self._store: _Store = ArcticStore(text, library=library)
            self.root: Path | None = None
            self.uri = text
        else:
            self.root = Path(text)
            self.uri = str(self.root)
            try:
                is_file = self.root.exists() and not self.root.is_dir()
            except OSError as exc:  # a symbolic link loop, a path through a file...
                raise DataError(f"catalog path cannot be used: {exc.strerror}", path=str(self.root)) from None
            if is_file:
                raise DataError("catalog path exists and is not a folder", path=str(self.root))
            self._store = ParquetStore(self.root, partition_rows=self.partition_rows)
            self._store.sweep()

    def __repr__(self) -> str:
        return f"Catalog({self.uri!r}, backend={self.backend!r})"

    @property
    def backend(self) -> str:
        """``"parquet"`` or ``"arcticdb"``."""
        return self._store.backend

    # ------------------------------------------------------------------ writing
    def write(
        self,
        symbol: str,
        frame: "pl.DataFrame",
        *,
        kind: str,
        bar: str | None = None,
        mode: Literal["append", "replace"] = "append",
        source: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """Store a normalized, checked frame as series (``symbol``, ``bar``), atomically.

        ``mode="append"`` merges with what is stored: bars with a timestamp already stored replace
        it (a re-download corrects the past); ticks (quotes, trades) replace the stored ticks in the
        time span they cover. ``mode="replace"`` discards what was stored.

        Parameters
        ----------
        symbol
            Catalog name (letters, digits and ``. _ - ^ =``).
        frame
            Normalized frame (see :mod:`backforge.data.importers`), sorted, without bad rows
            (run :func:`backforge.data.quality.apply_policy` first).
        kind
            ``"bars"``, ``"quote_bars"``, ``"quotes"`` or ``"trades"``.
        bar
            Bar label; inferred from the timestamps (bars) or ``quote``/``trade`` (ticks) if omitted.
        mode
            ``"append"`` (default) or ``"replace"``.
        source
            Free-form provenance stored in the series history (file, format, policy...).

        Examples
        --------
        >>> import tempfile, polars as pl
        >>> from backforge.data.importers import normalize_frame
        >>> fd = normalize_frame(pl.DataFrame({"date": ["2020-01-02", "2020-01-03"], "close": [1.0, 2.0]}))
        >>> Catalog(tempfile.mkdtemp()).write("X", fd.frame, kind=fd.kind).rows
        2
        """
        from backforge.data.importers import infer_bar

        validate_symbol(symbol)
        if mode not in ("append", "replace"):
            raise DataError(f"unknown mode {mode!r}; use 'append' or 'replace'", field="mode")
        if kind not in _KIND_COLUMNS:
            raise DataError(f"unknown kind {kind!r}; use one of {', '.join(_KIND_COLUMNS)}", field="kind")
        label = normalize_bar(bar) if bar is not None else ({"quotes": "quote", "trades": "trade"}.get(kind) or infer_bar(frame["timestamp"]))
        if bar is not None and kind in ("bars", "quote_bars"):
            _check_bar_label(label, frame["timestamp"], symbol)
        frame = _conform(frame, kind, symbol)
        result = self._store.write(symbol, label, frame, kind=kind, mode=mode, source=dict(source or {}))
        return result

    def write_market(self, market: MarketData, *, bar: str | None = None, mode: Literal["append", "replace"] = "append") -> list[WriteResult]:
        """Store every asset of a :class:`MarketData` as its own series (bars, or quote bars with bid/ask).

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> [r.symbol for r in Catalog(tempfile.mkdtemp()).write_market(gbm(2, 1, seed=3))]
        ['AAPL', 'MSFT']
        """
        import polars as pl

        label = normalize_bar(bar) if bar is not None else None
        results = []
        for j, name in enumerate(market.assets):
            present = ~np.isnan(market.close[:, j])
            cols: dict[str, Any] = {"timestamp": pl.Series(market.timestamps[present]).cast(pl.Datetime("ns", "UTC"))}
            if market.bid is not None and market.ask is not None:
                kind = "quote_bars"
                for side, q in (("bid", market.bid), ("ask", market.ask)):
                    for f in _PRICE:
                        cols[f"{side}_{f}"] = getattr(q, f)[present, j]
            else:
                kind = "bars"
                for f in _PRICE:
                    cols[f] = getattr(market, f)[present, j]
            cols["volume"] = market.volume[present, j]
            frame = pl.DataFrame(cols)
            results.append(self.write(name, frame, kind=kind, bar=label, mode=mode, source={"from": "MarketData"}))
        return results

    def import_file(
        self,
        path: str | os.PathLike[str],
        *,
        symbol: str,
        format: str = "auto",
        ask: str | os.PathLike[str] | None = None,
        bar: str | None = None,
        policy: str = "error",
        mode: Literal["append", "replace"] = "append",
        delimiter: str | None = None,
        columns: Sequence[str] | Mapping[str, str] | None = None,
        time_column: str | None = None,
        time_format: str | None = None,
        timezone: str | None = None,
        adjust: bool = False,
    ) -> ImportReport:
        """Read a file, check it with ``policy``, and store it — all or nothing.

        Parameters
        ----------
        path
            The data file (CSV, gzip CSV or Parquet). With ``ask``, the file of **bid** bars.
        symbol
            Catalog name of the series.
        ask
            File of ask bars to merge with the bid bars in ``path`` into one quote-bar series.
        policy
            ``"error"`` (default: refuse a file with bad rows, naming the first), ``"drop"`` or ``"repair"``.
        mode
            ``"append"`` (default) or ``"replace"``; see :meth:`write`.
        format, bar, delimiter, columns, time_column, time_format, timezone, adjust
            As in :func:`backforge.data.importers.read_file`.

        Returns
        -------
        ImportReport
            What was read, what the quality policy did (and to how many rows), what was written.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "x.csv").write_text("date,close\\n2020-01-02,1.5\\n2020-01-03,1.6\\n")
        >>> Catalog(d / "cat").import_file(d / "x.csv", symbol="X").write.rows
        2
        """
        from backforge.data.importers import read_bid_ask, read_file
        from backforge.data.quality import apply_policy

        validate_symbol(symbol)
        self.check_writable()  # before reading a large file
        self._store.sweep()
        if ask is not None:
            fd = read_bid_ask(path, ask, delimiter=delimiter, time_format=time_format, timezone=timezone, bar=bar)
        else:
            fd = read_file(path, format=format, delimiter=delimiter, columns=columns, time_column=time_column,
                           time_format=time_format, timezone=timezone, bar=bar, adjust=adjust)
        frame, quality = apply_policy(fd, policy=policy, symbol=symbol)
        source = {"path": str(fd.path), "format": fd.format, "policy": policy, "rows_read": fd.rows,
                  "actions": [str(a) for a in quality.actions]}
        result = self.write(symbol, frame, kind=fd.kind, bar=bar or fd.bar, mode=mode, source=source)
        return ImportReport(symbol, result.bar, fd.kind, str(fd.path), fd.format, fd.rows, quality, result, fd.notes)

    def check_writable(self) -> None:
        """Raise a :class:`DataError` naming the catalog when it cannot be written (a read-only folder, a file or
        a symbolic link loop in its place); nothing is created.

        Examples
        --------
        >>> import tempfile
        >>> Catalog(tempfile.mkdtemp()).check_writable()
        """
        checker = getattr(self._store, "_check_writable", None)
        if checker is not None:
            checker()

    def import_fundamentals(self, path: str | os.PathLike[str], *, mode: Literal["append", "replace"] = "append") -> int:
        """Read a fundamentals file (CSV, gzip CSV or Parquet) and store it; returns the rows stored.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "f.csv").write_text("symbol,field,published_at,value\\nA,eps,2020-02-01,1.5\\n")
        >>> Catalog(d / "cat").import_fundamentals(d / "f.csv")
        1
        """
        from backforge.data.fundamentals import read_fundamentals

        return self.write_fundamentals(read_fundamentals(path), mode=mode)

    # ------------------------------------------------------------------ reading
    def list(self) -> list[SeriesInfo]:
        """Every series, sorted by symbol then bar.

        Examples
        --------
        >>> import tempfile
        >>> Catalog(tempfile.mkdtemp()).list()
        []
        """
        return sorted(self._store.list(), key=lambda s: (s.symbol, _bar_sort_key(s.bar)))

    def symbols(self) -> list[str]:
        """Symbols with at least one series.

        Examples
        --------
        >>> import tempfile
        >>> Catalog(tempfile.mkdtemp()).symbols()
        []
        """
        return sorted({s.symbol for s in self.list()})

    def info(self, symbol: str, bar: str | None = None) -> SeriesInfo:
        """Description of one series; ``bar`` may be omitted when the symbol has only one.

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(1, 1, seed=1))
        >>> cat.info("AAPL").bar
        '1d'
        """
        return self._store.info(symbol, self._resolve_bar(symbol, bar))

    def read(self, symbol: str, *, bar: str | None = None, start: Any = None, end: Any = None) -> "pl.DataFrame":
        """The stored rows of one series as a Polars frame (all stored columns), ``start <= t <= end``.

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(1, 1, seed=1))
        >>> cat.read("AAPL", start="2015-06-01").height < 252
        True
        """
        label = self._resolve_bar(symbol, bar)
        return self._store.read(symbol, label, _bound(start), _bound(end))

    def scan(self, symbol: str, *, bar: str | None = None) -> "pl.LazyFrame":
        """A lazy Polars scan of one series' Parquet files (filters and projections are pushed down).

        Examples
        --------
        >>> import tempfile, polars as pl
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(1, 1, seed=1))
        >>> cat.scan("AAPL").filter(pl.col("close") > 0).select(pl.len()).collect().item()
        252
        """
        label = self._resolve_bar(symbol, bar)
        if isinstance(self._store, ParquetStore):
            return self._store.scan(symbol, label)
        return self._store.read(symbol, label, None, None).lazy()

    def load(
        self,
        symbols: str | Sequence[str],
        start: Any = None,
        end: Any = None,
        *,
        bar: str = "1min",
    ) -> MarketData:
        """Load series into :class:`MarketData`, aligned on the union of their timestamps.

        With the Parquet backend the arrays are memory-mapped from the Arrow IPC caches: one symbol
        is zero-copy; several are aligned once, cached, and zero-copy from then on. The arrays are
        read-only. Missing bars are NaN (never forward-filled). Quote bars and quote ticks come with
        bid/ask :class:`~backforge.data.market.Quotes` (mid prices in open/high/low/close); quote
        ticks that share a timestamp are collapsed to the last one.

        Parameters
        ----------
        symbols
            One symbol or a list (the column order of the result).
        start, end
            Inclusive bounds (ISO strings, datetimes or int ns); omitted means unbounded.
        bar
            Bar label (``"1min"``, ``"1d"``, ``"quote"``...). Default ``"1min"``.

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(3, 1, bar="1h", seed=2))
        >>> md = cat.load(["GOOG", "AAPL"], "2015-03-01", "2015-03-31", bar="1h")
        >>> md.assets, md.close.flags.writeable
        (('GOOG', 'AAPL'), False)
        """
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        if not names:
            raise DataError("no symbols given", field="symbols")
        dup = {s for s in names if names.count(s) > 1}
        if dup:
            raise DataError(f"symbol listed twice: {sorted(dup)[0]}", field="symbols")
        label = normalize_bar(bar)
        for name in names:
            self._require(name, label)
        lo, hi = _bound(start), _bound(end)
        if len(names) == 1:
            ts, fields, kind = self._store.arrays(names[0], label, lo, hi)
            return _market(ts, {k: v.reshape(-1, 1) for k, v in fields.items()}, tuple(names), kind)
        return self._store.load_aligned(names, label, lo, hi, cache=self.cache_aligned, max_cells=self.aligned_cache_max_cells)

    def delete(self, symbol: str, bar: str | None = None) -> int:
        """Delete one series (``bar`` given) or every series of ``symbol``; returns how many.

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(1, 1, seed=1))
        >>> cat.delete("AAPL"), cat.list()
        (1, [])
        """
        validate_symbol(symbol)
        bars = [self._resolve_bar(symbol, bar)] if bar is not None else [s.bar for s in self.list() if s.symbol == symbol]
        if not bars:
            raise self._unknown(symbol)
        for label in bars:
            self._store.delete(symbol, label)
        return len(bars)

    # ------------------------------------------------------------------ fundamentals
    def write_fundamentals(self, table: Any, *, mode: Literal["append", "replace"] = "append") -> int:
        """Store point-in-time fundamentals (symbol, field, published_at, value); returns rows stored.

        In append mode a row with the same (symbol, field, published_at) replaces the stored one.

        Examples
        --------
        >>> import tempfile, polars as pl
        >>> t = pl.DataFrame({"symbol": ["A"], "field": ["eps"], "published_at": ["2020-02-01"], "value": [1.2]})
        >>> Catalog(tempfile.mkdtemp()).write_fundamentals(t)
        1
        """
        from backforge.data.fundamentals import Fundamentals

        fundamentals = table if isinstance(table, Fundamentals) else Fundamentals.from_frame(table)
        return self._store.write_fundamentals(fundamentals.frame, mode=mode)

    def fundamentals(self, symbols: Sequence[str] | None = None, fields: Sequence[str] | None = None) -> "Fundamentals":
        """Stored fundamentals, optionally restricted to ``symbols`` and ``fields``.

        Examples
        --------
        >>> import tempfile, polars as pl
        >>> cat = Catalog(tempfile.mkdtemp())
        >>> _ = cat.write_fundamentals(pl.DataFrame({"symbol": ["A"], "field": ["eps"],
        ...                                          "published_at": ["2020-02-01"], "value": [1.2]}))
        >>> cat.fundamentals().fields
        ('eps',)
        """
        import polars as pl

        from backforge.data.fundamentals import Fundamentals

        frame = self._store.read_fundamentals()
        if frame is None:
            raise DataError("the catalog has no fundamentals; import some with backforge data import FILE --format fundamentals")
        if symbols is not None:
            frame = frame.filter(pl.col("symbol").is_in(list(symbols)))
        if fields is not None:
            frame = frame.filter(pl.col("field").is_in(list(fields)))
        return Fundamentals(frame)

    # ------------------------------------------------------------------ SQL and maintenance
    def sql(self, query: str) -> "pl.DataFrame":
        """Run DuckDB SQL over the catalog (``pip install duckdb``); returns a Polars frame.

        Views: ``bars`` (bars and quote bars, with ``symbol`` and ``bar`` columns), ``quotes``,
        ``trades``, ``fundamentals`` and ``series`` (one row per stored series). Each view reads the
        Parquet files of the current versions, so a query sees one consistent snapshot.

        Examples
        --------
        >>> import tempfile
        >>> from backforge.data.synth import gbm
        >>> cat = Catalog(tempfile.mkdtemp()); _ = cat.write_market(gbm(2, 1, seed=1))
        >>> cat.sql("SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol").rows()
        [('AAPL', 252), ('MSFT', 252)]
        """
        return self._store.sql(query)

    def clear_cache(self) -> int:
        """Delete cached aligned multi-symbol blocks; returns the number of files removed.

        Examples
        --------
        >>> import tempfile
        >>> Catalog(tempfile.mkdtemp()).clear_cache()
        0
        """
        return self._store.clear_cache()

    # ------------------------------------------------------------------ helpers
    def _resolve_bar(self, symbol: str, bar: str | None) -> str:
        validate_symbol(symbol)
        if bar is not None:
            label = normalize_bar(bar)
            self._require(symbol, label)
            return label
        bars = self._store.bars(symbol)
        if not bars:
            raise self._unknown(symbol)
        if len(bars) > 1:
            raise DataError(f"{symbol} has several bar sizes ({', '.join(sorted(bars, key=_bar_sort_key))}); pick one with bar= (CLI: --bar)", asset=symbol, field="bar")
        return bars[0]

    def _require(self, symbol: str, bar: str) -> None:
        validate_symbol(symbol)
        bars = self._store.bars(symbol)
        if not bars:
            raise self._unknown(symbol)
        if bar not in bars:
            raise DataError(f"{symbol} has no {bar} data; stored: {', '.join(sorted(bars, key=_bar_sort_key))}", asset=symbol, field="bar")

    def _unknown(self, symbol: str) -> DataError:
        import difflib

        known = self.symbols()
        close = difflib.get_close_matches(symbol, known, n=1) or [k for k in known if k.lower() == symbol.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else (f"; the catalog holds {len(known)} symbols" if known else "; the catalog is empty")
        return DataError(f"no data for symbol {symbol!r} in {self.uri}{hint}", asset=symbol)


# ====================================================================== storage backends

class _Store:
    """Interface of a catalog backend."""

    backend = "abstract"

    def write(self, symbol: str, bar: str, frame: "pl.DataFrame", *, kind: str, mode: str, source: dict) -> WriteResult:
        raise NotImplementedError

    def list(self) -> list[SeriesInfo]:
        raise NotImplementedError

    def bars(self, symbol: str) -> list[str]:
        raise NotImplementedError

    def info(self, symbol: str, bar: str) -> SeriesInfo:
        raise NotImplementedError

    def read(self, symbol: str, bar: str, start: int | None, end: int | None) -> "pl.DataFrame":
        raise NotImplementedError

    def arrays(self, symbol: str, bar: str, start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        raise NotImplementedError

    def load_aligned(self, symbols: list[str], bar: str, start: int | None, end: int | None, *, cache: bool, max_cells: int) -> MarketData:
        series = [self.arrays(s, bar, start, end) for s in symbols]
        return _align_series(series, tuple(symbols))

    def delete(self, symbol: str, bar: str) -> None:
        raise NotImplementedError

    def write_fundamentals(self, frame: "pl.DataFrame", *, mode: str) -> int:
        raise NotImplementedError

    def read_fundamentals(self) -> "pl.DataFrame | None":
        raise NotImplementedError

    def sql(self, query: str) -> "pl.DataFrame":
        raise DataError(f"SQL is available on the Parquet catalog only, not on {self.backend}")

    def clear_cache(self) -> int:
        return 0

    def sweep(self) -> int:
        """Remove what killed writers left behind (see :func:`_sweep_debris`); 0 when there is nothing to do."""
        return 0


class _Versioned:
    """A folder whose content is published atomically as numbered versions behind a CURRENT file.

    With ``root``, each temporary version folder is announced by a marker in ``<root>/.pending`` (naming the
    folder and the lock its writer holds) from before it is created until it is published or discarded, so
    :func:`_sweep_debris` can find and remove the folder of a writer that was killed — without walking the
    catalog, and without touching the folder of a writer that is still alive (it holds the lock).
    """

    def __init__(self, path: Path, *, root: Path | None = None) -> None:
        self.path = path
        self.root = root
        self._markers: dict[Path, Path] = {}

    def current(self) -> Path | None:
        try:
            name = (self.path / "CURRENT").read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self.path / name

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - Windows: writers are not serialized
                pass
            yield
        finally:
            os.close(fd)

    def new_version(self) -> tuple[Path, str]:
        """A fresh temporary folder and the version name it will be published as (call under lock)."""
        for debris in self.path.glob(".tmp-*"):  # left by a crashed writer: we hold the lock, so no one else is writing
            shutil.rmtree(debris, ignore_errors=True)
        for pointer in self.path.glob(".CURRENT-*"):  # a pointer written but never renamed over CURRENT
            with contextlib.suppress(FileNotFoundError):
                pointer.unlink()
        numbers = [int(p.name[1:]) for p in self.path.glob("v[0-9]*") if p.name[1:].isdigit()]
        name = f"v{max(numbers, default=0) + 1:06d}"
        token = uuid.uuid4().hex
        tmp = self.path / f".tmp-{token}"
        if self.root is not None:
            pending = self.root / _PENDING
            pending.mkdir(exist_ok=True)
            marker = pending / token
            marker.write_text(json.dumps({"tmp": str(tmp.relative_to(self.root)),
                                          "lock": str((self.path / ".lock").relative_to(self.root)), "pid": os.getpid()}))
            self._markers[tmp] = marker
        tmp.mkdir()
        return tmp, name

    def discard(self, tmp: Path) -> None:
        """Remove an unpublished temporary version (call under lock)."""
        shutil.rmtree(tmp, ignore_errors=True)
        self._forget(tmp)

    def _forget(self, tmp: Path) -> None:
        marker = self._markers.pop(tmp, None)
        if marker is not None:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def publish(self, tmp: Path, name: str, *, keep: int = 2) -> None:
        for f in tmp.iterdir():
            _fsync_file(f)
        final = self.path / name
        _publish_step(tmp, final)
        self._forget(tmp)
        _fsync_dir(self.path)
        pointer = self.path / f".CURRENT-{uuid.uuid4().hex}"
        with open(pointer, "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, self.path / "CURRENT")
        _fsync_dir(self.path)
        versions = sorted((p for p in self.path.glob("v[0-9]*") if p.name[1:].isdigit()), key=lambda p: int(p.name[1:]))
        for old in versions[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _publish_step(tmp: Path, final: Path) -> None:
    """Rename a finished temporary version into place (a separate function so tests can simulate crashes)."""
    os.rename(tmp, final)


def _sweep_debris(root: Path) -> int:
    """Remove what killed writers left behind; returns the number of items removed.

    * temporary version folders announced in ``<root>/.pending`` whose writer no longer holds its lock
      (the lock is taken without waiting: a live writer keeps its folder);
    * folders in ``<root>/.trash`` (deleted series whose removal was interrupted; nothing refers to them);
    * temporary aligned-cache files whose writing process is gone.
    """
    removed = 0
    pending = root / _PENDING
    try:
        markers = list(os.scandir(pending))
    except (FileNotFoundError, NotADirectoryError):
        markers = []
    for entry in markers:
        marker = Path(entry.path)
        try:
            info = json.loads(marker.read_text())
            tmp, lock = root / info["tmp"], root / info["lock"]
        except (OSError, ValueError, KeyError, TypeError):  # being written right now, or damaged
            if time.time() - entry.stat().st_mtime > 3600:
                with contextlib.suppress(OSError):
                    marker.unlink()
            continue
        if not tmp.name.startswith(".tmp-") or ".." in Path(info["tmp"]).parts or ".." in Path(info["lock"]).parts:
            continue  # never remove anything a marker did not create
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            fd = None  # no lock file: no writer can be holding it
        except OSError:
            continue
        try:
            if fd is not None:
                import fcntl

                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live writer of this series: its folder (or its turn) is not debris
                    continue
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        except ImportError:  # pragma: no cover - no fcntl (Windows): writers are not serialized, leave it
            continue
        finally:
            if fd is not None:
                os.close(fd)
    for folder in _list_dir(root / ".trash"):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    for path in _list_dir(root / "_aligned"):
        match = re.match(r"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp$", path.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _list_dir(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class ParquetStore(_Store):
    """The default backend: a folder of versioned Parquet files plus Arrow IPC caches."""

    backend = "parquet"

    def __init__(self, root: Path, *, partition_rows: int) -> None:
        self.root = root
        self.partition_rows = partition_rows
        self._writable = False

    def sweep(self) -> int:
        try:
            return _sweep_debris(self.root)
        except OSError:  # a read-only catalog: nothing can (or needs to) be removed by this process
            return 0

    def _check_writable(self) -> None:
        """Refuse (one DataError naming the catalog) a catalog folder that cannot be written, before any work."""
        if self._writable:
            return
        from backforge._paths import check_output_folder
        from backforge.errors import ConfigError

        try:
            check_output_folder(self.root, option="catalog")
        except ConfigError as exc:
            raise DataError(exc.message, path=str(self.root)) from None
        self._writable = True

    # ------------------------------------------------------------------ paths
    def _series(self, symbol: str, bar: str) -> _Versioned:
        return _Versioned(self.root / symbol / bar, root=self.root)

    def _current(self, symbol: str, bar: str) -> tuple[Path, dict[str, Any]]:
        """Current version folder and its meta, retrying if a concurrent write just replaced it."""
        series = self._series(symbol, bar)
        for attempt in range(5):
            folder = series.current()
            if folder is None:
                raise DataError(f"no {bar} data for {symbol}", asset=symbol, field="bar")
            try:
                return folder, json.loads((folder / "meta.json").read_text())
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))
        raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)

    # ------------------------------------------------------------------ listing
    def bars(self, symbol: str) -> list[str]:
        folder = self.root / symbol
        if not folder.is_dir():
            return []
        return [p.name for p in folder.iterdir() if p.is_dir() and (p / "CURRENT").exists()]

    def list(self) -> list[SeriesInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for sym_dir in self.root.iterdir():
            if not sym_dir.is_dir() or sym_dir.name.startswith(("_", ".")):
                continue
            for bar in self.bars(sym_dir.name):
                with contextlib.suppress(DataError):
                    out.append(self.info(sym_dir.name, bar))
        return out

    def info(self, symbol: str, bar: str) -> SeriesInfo:
        folder, meta = self._current(symbol, bar)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        return SeriesInfo(symbol, bar, meta["kind"], meta["rows"], meta["start"], meta["end"], meta["version"], size,
                          tuple(meta["columns"]), tuple(meta.get("history", ())), bool(meta.get("partitioned")))

    # ------------------------------------------------------------------ reading
    def _files(self, folder: Path, meta: dict[str, Any], start: int | None = None, end: int | None = None) -> list[Path]:
        files = [folder / f for f in meta["files"]]
        if meta.get("partitioned") and (start is not None or end is not None):
            lo = _year(start) if start is not None else -1
            hi = _year(end) if end is not None else 10_000
            files = [f for f in files if lo <= int(f.stem.split("=")[1]) <= hi]
        return files

    def read(self, symbol: str, bar: str, start: int | None, end: int | None) -> "pl.DataFrame":
        import polars as pl
        import pyarrow.parquet as pq

        import pyarrow as pa

        for attempt in range(5):
            folder, meta = self._current(symbol, bar)
            files = self._files(folder, meta, start, end)
            if not files:
                return _empty_frame(meta)
            try:
                tables = [pq.read_table(f) for f in files]
                break
            except FileNotFoundError:  # replaced by concurrent writes: read CURRENT again
                time.sleep(0.01 * (attempt + 1))
        else:
            raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)
        frame = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(frame, pl.DataFrame)
        return _filter_time(frame, start, end)

    def scan(self, symbol: str, bar: str) -> "pl.LazyFrame":
        import polars as pl

        folder, meta = self._current(symbol, bar)
        return pl.scan_parquet([str(f) for f in self._files(folder, meta)])

    def arrays(self, symbol: str, bar: str, start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        for attempt in range(5):
            folder, meta = self._current(symbol, bar)
            if meta["kind"] == "trades":
                raise DataError(f"{symbol} {bar} holds trade ticks, which are not bars: resample them first "
                                "(backforge.data.resample.trades_to_bars) and store the bars", asset=symbol, field="bar")
            try:
                ts, fields = _map_cache(folder / "cache.arrow")
                break
            except FileNotFoundError:  # two writes replaced this version since CURRENT was read: read it again
                time.sleep(0.01 * (attempt + 1))
        else:
            raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)
        lo, hi = _bounds_index(ts, start, end)
        return ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, meta["kind"]

    def load_aligned(self, symbols: list[str], bar: str, start: int | None, end: int | None, *, cache: bool, max_cells: int) -> MarketData:
        metas = [self._current(s, bar) for s in symbols]
        key_src = json.dumps([bar, symbols, [m["version"] for _, m in metas], [str(f) for f, _ in metas], _FORMAT_VERSION])
        key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
        path = self.root / "_aligned" / f"{bar}-{key}.arrow"
        if cache and path.exists():
            with contextlib.suppress(FileNotFoundError):
                ts, fields, kind = _map_aligned(path)
                lo, hi = _bounds_index(ts, start, end)
                with contextlib.suppress(OSError):  # a read-only catalog still loads
                    os.utime(path)  # recently used: kept by the size cap
                return _market(ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, tuple(symbols), kind)
        full = [self.arrays(s, bar, None, None) for s in symbols]
        if not cache or max(len(ts) for ts, _, _ in full) * len(symbols) > max_cells:  # too big to keep a second copy on disk
            return _align_series([_cut(s, start, end) for s in full], tuple(symbols))
        market = _align_series(full, tuple(symbols))
        try:
            _write_aligned(path, market, symbols=symbols, versions=[m["version"] for _, m in metas])
            self._trim_aligned()
            ts, fields, kind = _map_aligned(path)  # serve from the page cache: no private copy kept
        except OSError:  # read-only catalog or full disk: the in-memory alignment is still right
            return market.slice(start, end) if (start is not None or end is not None) else market
        del market
        lo, hi = _bounds_index(ts, start, end)
        return _market(ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, tuple(symbols), kind)

    def _trim_aligned(self) -> None:
        files = sorted((self.root / "_aligned").glob("*.arrow"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[_MAX_ALIGNED_FILES:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def clear_cache(self) -> int:
        folder = self.root / "_aligned"
        if not folder.is_dir():
            return 0
        n = 0
        for f in folder.glob("*.arrow"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                n += 1
        return n

    # ------------------------------------------------------------------ writing
    def write(self, symbol: str, bar: str, frame: "pl.DataFrame", *, kind: str, mode: str, source: dict) -> WriteResult:
        series = self._series(symbol, bar)
        self._check_writable()
        self.root.mkdir(parents=True, exist_ok=True)
        with series.lock():
            old_folder = series.current()
            old_meta = json.loads((old_folder / "meta.json").read_text()) if old_folder is not None else None
            if old_meta is not None and mode == "append" and old_meta["kind"] != kind:
                raise DataError(f"{symbol} {bar} holds {old_meta['kind']}, cannot append {kind}; use mode='replace' or another bar label",
                                asset=symbol, field="kind")
            added, replaced = frame.height, 0
            touched_years: set[int] | None = None
            if old_meta is not None and mode == "append":
                old = self.read(symbol, bar, None, None)
                frame, added, replaced, touched_years = _merge(old, frame, kind)
            history = list(old_meta.get("history", [])) if old_meta is not None and mode == "append" else []
            history.append({"at": _now(), "mode": mode, "added": added, "replaced": replaced, **source})
            tmp, name = series.new_version()
            try:
                files, partitioned = self._write_parquet(tmp, frame, old_folder if mode == "append" else None, old_meta, touched_years)
                _write_cache(tmp / "cache.arrow", frame, kind, meta={"symbol": symbol, "bar": bar, "kind": kind})
                ts = frame["timestamp"]
                meta = {
                    "format_version": _FORMAT_VERSION, "symbol": symbol, "bar": bar, "kind": kind, "version": int(name[1:]),
                    "rows": frame.height, "start": _ns(ts, 0), "end": _ns(ts, -1),
                    "columns": frame.columns, "files": files, "partitioned": partitioned, "history": history[-50:],
                }
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
                series.publish(tmp, name)
            except BaseException:
                series.discard(tmp)
                raise
            self._drop_aligned(symbol, bar)
        return WriteResult(symbol, bar, kind, int(name[1:]), added, replaced, frame.height)

    def _write_parquet(self, tmp: Path, frame: "pl.DataFrame", old_folder: Path | None, old_meta: dict | None,
                       touched_years: set[int] | None) -> tuple[list[str], bool]:
        if frame.height <= self.partition_rows:
            frame.write_parquet(tmp / "data.parquet", compression="zstd", compression_level=1, statistics=True)
            return ["data.parquet"], False
        ns = frame["timestamp"].dt.epoch("ns").to_numpy()
        first, last = _year(int(ns[0])), _year(int(ns[-1]))
        edges = [int(np.datetime64(f"{y}-01-01", "ns").astype(np.int64)) for y in range(first + 1, last + 1)]
        cuts = [0, *np.searchsorted(ns, edges, side="left").tolist(), len(ns)]  # rows are sorted: a year is a slice
        files = []
        reuse = (old_folder is not None and old_meta is not None and old_meta.get("partitioned") and touched_years is not None
                 and list(old_meta["columns"]) == frame.columns)  # same schema: an untouched year file is still exact
        for year, lo, hi in zip(range(first, last + 1), cuts[:-1], cuts[1:]):
            if hi <= lo:
                continue
            name = f"year={year}.parquet"
            files.append(name)
            if reuse and year not in touched_years and (old_folder / name).exists():  # type: ignore[operator]
                try:
                    os.link(old_folder / name, tmp / name)  # type: ignore[operator]
                    continue
                except OSError:
                    pass
            frame.slice(lo, hi - lo).write_parquet(tmp / name, compression="zstd", compression_level=1, statistics=True)
        return files, True

    def _drop_aligned(self, symbol: str, bar: str) -> None:
        """Remove aligned caches that include this series (they are keyed by version and would never match again)."""
        folder = self.root / "_aligned"
        if not folder.is_dir():
            return
        for path in folder.glob(f"{bar}-*.arrow"):
            with contextlib.suppress(Exception):
                import pyarrow as pa

                with pa.memory_map(str(path)) as source:
                    meta = pa.ipc.open_file(source).schema.metadata or {}
                if symbol in json.loads(meta.get(b"symbols", b"[]")):
                    path.unlink()

    def delete(self, symbol: str, bar: str) -> None:
        series = self._series(symbol, bar)
        self._check_writable()
        with series.lock():
            trash = self.root / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(series.path, trash)  # one atomic step: readers see the series or nothing
        shutil.rmtree(trash, ignore_errors=True)
        self._drop_aligned(symbol, bar)
        sym_dir = self.root / symbol
        with contextlib.suppress(OSError):
            sym_dir.rmdir()

    # ------------------------------------------------------------------ fundamentals
    def write_fundamentals(self, frame: "pl.DataFrame", *, mode: str) -> int:
        import polars as pl

        store = _Versioned(self.root / "_fundamentals" / "all", root=self.root)
        self._check_writable()
        self.root.mkdir(parents=True, exist_ok=True)
        with store.lock():
            current = store.current()
            if current is not None and mode == "append":
                old = pl.read_parquet(current / "fundamentals.parquet")
                frame = pl.concat([old, frame], how="diagonal_relaxed")
                frame = frame.unique(subset=_fundamental_key(frame), keep="last", maintain_order=True)
            frame = frame.sort(_fundamental_key(frame), maintain_order=True)
            tmp, name = store.new_version()
            try:
                frame.write_parquet(tmp / "fundamentals.parquet", compression="zstd")
                store.publish(tmp, name)
            except BaseException:
                store.discard(tmp)
                raise
        return frame.height

    def read_fundamentals(self) -> "pl.DataFrame | None":
        import polars as pl

        store = _Versioned(self.root / "_fundamentals" / "all")
        for attempt in range(5):
            current = store.current()
            if current is None:
                return None
            try:
                return pl.read_parquet(current / "fundamentals.parquet")
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))
        return None

    # ------------------------------------------------------------------ SQL
    def sql(self, query: str) -> "pl.DataFrame":
        """Run ``query`` in a sandbox: an in-memory DuckDB whose only data are read-only views over Arrow datasets
        of the current Parquet files (opened by Arrow, not by DuckDB), with external access disabled, Python
        replacement scans and extension loading off, and the configuration locked once the views exist — so
        no statement can read, write or attach a file (``COPY ... TO``, ``read_csv('/etc/passwd')``,
        ``ATTACH``) or turn that back on."""
        try:
            import duckdb
        except ImportError:
            raise DataError("SQL needs DuckDB: pip install duckdb") from None
        import pyarrow as pa
        import pyarrow.dataset as ds

        con = duckdb.connect(":memory:", config={
            "enable_external_access": False, "python_enable_replacements": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "allow_community_extensions": False, "allow_persistent_secrets": False,
        })
        try:
            views: dict[str, list[str]] = {"bars": [], "quotes": [], "trades": []}
            rows = []
            for number, info in enumerate(self.list()):
                folder, meta = self._current(info.symbol, info.bar)
                name = f"_series_{number}"
                dataset = ds.dataset([str(f) for f in self._files(folder, meta)], format="parquet")
                con.register(name, dataset)
                view = {"bars": "bars", "quote_bars": "bars", "quotes": "quotes", "trades": "trades"}[info.kind]
                views[view].append(f"SELECT {_sql_str(info.symbol)} AS symbol, {_sql_str(info.bar)} AS bar, "
                                   f"{_sql_columns(dataset.schema)} FROM {name}")
                rows.append((info.symbol, info.bar, info.kind, info.rows, _iso(info.start), _iso(info.end), info.version))
            for view, selects in views.items():
                if selects:
                    con.execute(f"CREATE VIEW {view} AS " + " UNION ALL BY NAME ".join(selects))
            columns = {"symbol": pa.string(), "bar": pa.string(), "kind": pa.string(), "rows": pa.int64(),
                       "start_time": pa.string(), "end_time": pa.string(), "version": pa.int32()}
            con.register("_series", pa.table({c: pa.array([r[i] for r in rows], type=t) for i, (c, t) in enumerate(columns.items())}))
            con.execute("CREATE VIEW series AS SELECT * FROM _series")
            current = _Versioned(self.root / "_fundamentals" / "all").current()
            if current is not None:
                dataset = ds.dataset([str(current / "fundamentals.parquet")], format="parquet")
                con.register("_fundamentals", dataset)
                con.execute(f"CREATE VIEW fundamentals AS SELECT {_sql_columns(dataset.schema)} FROM _fundamentals")
            con.execute("SET lock_configuration = true")
            try:
                relation = con.sql(query)
                if relation is None:
                    import polars as pl

                    return pl.DataFrame()
                return relation.pl()
            except duckdb.Error as exc:
                tables = ", ".join(v for v, s in views.items() if s) or "none yet"
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in first or "configuration has been locked" in first:
                    raise DataError(f"SQL may only read the catalog's views ({tables}, series"
                                    f"{', fundamentals' if current is not None else ''}): files, ATTACH, extensions and "
                                    f"settings are off; write results with --output. DuckDB said: {first}", field="query") from None
                raise DataError(f"SQL error: {first} (views: {tables}, series"
                                f"{', fundamentals' if current is not None else ''})", field="query") from None
        finally:
            con.close()


class ArcticStore(_Store):
    """Optional backend on an ArcticDB library (``lmdb://`` local folder) for tick-scale history.

    Each (symbol, bar) is one ArcticDB symbol ``"SYMBOL::bar"`` indexed by timestamp, with the series
    description in its metadata; every write is an ArcticDB version (atomic, concurrent readers are
    safe). Appends have the same meaning as in the Parquet store: bars upsert by timestamp (the
    overlapping span is read, merged and written back with ``update``), ticks replace their span.
    Loads read the requested date range and align in memory (no memory map).
    """

    backend = "arcticdb"
    _FUNDAMENTALS = "__fundamentals__"

    def __init__(self, uri: str, *, library: str) -> None:
        try:
            import arcticdb
        except ImportError:
            raise DataError("an lmdb:// catalog needs ArcticDB: pip install arcticdb") from None
        folder = uri[len("lmdb://"):].split("?")[0]
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            self._arctic = arcticdb.Arctic(uri)
            self._lib = self._arctic.get_library(library, create_if_missing=True)
        except Exception as exc:  # noqa: BLE001 - ArcticDB raises its own error hierarchy
            raise DataError(f"cannot open ArcticDB library {library!r} at {uri}: {exc}", path=uri) from None

    @staticmethod
    def _key(symbol: str, bar: str) -> str:
        return f"{symbol}::{bar}"

    def _keys(self) -> list[str]:
        return [k for k in self._lib.list_symbols() if "::" in k]

    def bars(self, symbol: str) -> list[str]:
        return [k.split("::", 1)[1] for k in self._keys() if k.split("::", 1)[0] == symbol]

    def list(self) -> list[SeriesInfo]:
        return [self.info(*k.split("::", 1)) for k in self._keys()]

    def _meta(self, symbol: str, bar: str) -> tuple[dict[str, Any], int]:
        item = self._lib.read_metadata(self._key(symbol, bar))
        return dict(item.metadata or {}), int(item.version)

    def info(self, symbol: str, bar: str) -> SeriesInfo:
        meta, version = self._meta(symbol, bar)
        return SeriesInfo(symbol, bar, meta["kind"], meta["rows"], meta["start"], meta["end"], version, 0,
                          tuple(meta["columns"]), tuple(meta.get("history", ())), False)

    def _read_arrow(self, key: str, start: int | None = None, end: int | None = None) -> "pl.DataFrame":
        """Read as Arrow (no pandas round trip), datetimes as ns UTC."""
        import pandas as pd
        import polars as pl

        rng = None
        if start is not None or end is not None:  # the index is stored as naive UTC
            rng = (pd.Timestamp(start) if start is not None else None, pd.Timestamp(end) if end is not None else None)
        try:
            frame = pl.from_arrow(self._lib.read(key, date_range=rng, output_format="pyarrow").data)
        except TypeError:  # ArcticDB before Arrow output formats: read through pandas
            data = self._lib.read(key, date_range=rng).data
            frame = pl.from_pandas(data.reset_index() if data.index.name else data.reset_index(drop=True))
        assert isinstance(frame, pl.DataFrame)
        if "__index__" in frame.columns:
            frame = frame.rename({"__index__": "timestamp"})
        return _utc_columns(frame)

    def read(self, symbol: str, bar: str, start: int | None, end: int | None) -> "pl.DataFrame":
        return self._read_arrow(self._key(symbol, bar), start, end)

    def arrays(self, symbol: str, bar: str, start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        meta, _ = self._meta(symbol, bar)
        if meta["kind"] == "trades":
            raise DataError(f"{symbol} {bar} holds trade ticks, which are not bars: resample them first", asset=symbol, field="bar")
        frame = self.read(symbol, bar, start, end)
        ts, fields = _cache_fields(frame, meta["kind"])
        return ts, fields, meta["kind"]

    @staticmethod
    def _to_pandas(frame: "pl.DataFrame", *, index: bool = True) -> Any:
        """Pandas frame with naive-UTC datetimes (ArcticDB normalizes those without deprecated pandas paths)."""
        import polars as pl

        naive = frame.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
                                   for c in frame.columns if isinstance(frame[c].dtype, pl.Datetime) and frame[c].dtype.time_zone)
        pdf = naive.to_pandas()
        return pdf.set_index("timestamp") if index else pdf

    def write(self, symbol: str, bar: str, frame: "pl.DataFrame", *, kind: str, mode: str, source: dict) -> WriteResult:
        key = self._key(symbol, bar)
        exists = key in self._lib.list_symbols()
        old_meta = self._meta(symbol, bar)[0] if exists else None
        if old_meta is not None and mode == "append" and old_meta["kind"] != kind:
            raise DataError(f"{symbol} {bar} holds {old_meta['kind']}, cannot append {kind}; use mode='replace'", asset=symbol, field="kind")
        lo, hi = _ns(frame["timestamp"], 0), _ns(frame["timestamp"], -1)
        added, replaced = frame.height, 0
        history = list(old_meta.get("history", [])) if old_meta is not None and mode == "append" else []
        if old_meta is not None and mode == "append":
            span = self.read(symbol, bar, lo, hi)
            merged, added, replaced, _ = _merge(span, frame, kind) if span.height else (frame, frame.height, 0, set())
            rows = old_meta["rows"] + added
            start, end = min(old_meta["start"], lo), max(old_meta["end"], hi)
            history.append({"at": _now(), "mode": mode, "added": added, "replaced": replaced, **source})
            meta = {**old_meta, "rows": rows, "start": start, "end": end, "history": history[-50:]}
            self._lib.update(key, self._to_pandas(merged), metadata=meta, prune_previous_versions=True)
        else:
            history.append({"at": _now(), "mode": mode, "added": added, "replaced": replaced, **source})
            meta = {"format_version": _FORMAT_VERSION, "symbol": symbol, "bar": bar, "kind": kind, "rows": frame.height,
                    "start": lo, "end": hi, "columns": frame.columns, "history": history}
            self._lib.write(key, self._to_pandas(frame), metadata=meta, prune_previous_versions=True)
        version = self._meta(symbol, bar)[1]
        return WriteResult(symbol, bar, kind, version, added, replaced, meta["rows"])

    def delete(self, symbol: str, bar: str) -> None:
        self._lib.delete(self._key(symbol, bar))

    def write_fundamentals(self, frame: "pl.DataFrame", *, mode: str) -> int:
        import polars as pl

        if mode == "append":
            old = self.read_fundamentals()
            if old is not None:
                frame = pl.concat([old, frame], how="diagonal_relaxed")
                frame = frame.unique(subset=_fundamental_key(frame), keep="last", maintain_order=True)
        frame = frame.sort(_fundamental_key(frame), maintain_order=True)
        self._lib.write(self._FUNDAMENTALS, self._to_pandas(frame, index=False), prune_previous_versions=True)
        return frame.height

    def read_fundamentals(self) -> "pl.DataFrame | None":
        import polars as pl

        if self._FUNDAMENTALS not in self._lib.list_symbols():
            return None
        frame = self._read_arrow(self._FUNDAMENTALS)
        return frame.drop([c for c in frame.columns if c.startswith("__index")])


def _utc_columns(frame: "pl.DataFrame") -> "pl.DataFrame":
    """Datetime columns as ns UTC (naive ones are taken as UTC)."""
    import polars as pl

    fixes = []
    for c in frame.columns:
        dtype = frame[c].dtype
        if isinstance(dtype, pl.Datetime):
            col = pl.col(c).dt.replace_time_zone("UTC") if dtype.time_zone is None else pl.col(c).dt.convert_time_zone("UTC")
            fixes.append(col.dt.cast_time_unit("ns"))
    return frame.with_columns(fixes) if fixes else frame


# ====================================================================== merging and cache files

def _conform(frame: "pl.DataFrame", kind: str, symbol: str) -> "pl.DataFrame":
    """Check a frame is normalized for ``kind`` and sorted; cast the timestamp to ns UTC."""
    import polars as pl

    if frame.height == 0:
        raise DataError("nothing to write: the frame has no rows", asset=symbol)
    missing = [c for c in ("timestamp", *_KIND_COLUMNS[kind]) if c not in frame.columns]
    if missing:
        raise DataError(f"{kind} need columns {', '.join(missing)}; got {frame.columns}", asset=symbol, field=missing[0])
    ts = frame["timestamp"]
    if ts.dtype == pl.Int64:
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ns", "UTC")))
    elif isinstance(ts.dtype, pl.Datetime):
        if ts.dtype.time_zone is None:
            frame = frame.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
        frame = frame.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("ns"))
    else:
        raise DataError(f"timestamp column has type {ts.dtype}; expected datetimes or int64 ns", asset=symbol, field="timestamp")
    ns = frame["timestamp"].dt.epoch("ns").to_numpy()
    steps = np.diff(ns)
    strict = kind in ("bars", "quote_bars")
    bad = np.flatnonzero(steps <= 0) if strict else np.flatnonzero(steps < 0)
    if bad.size:
        r = int(bad[0]) + 1
        what = "duplicate" if steps[bad[0]] == 0 else "out-of-order"
        raise DataError(f"{what} timestamp {_iso(ns[r])}; run backforge.data.quality.apply_policy before writing", asset=symbol, row=r, field="timestamp")
    casts = {c: pl.Float64 for c in frame.columns if c not in ("timestamp", "side", "trade_id") and frame[c].dtype != pl.Float64}
    if casts:
        frame = frame.with_columns(pl.col(c).cast(t) for c, t in casts.items())
    return frame


def _merge(old: "pl.DataFrame", new: "pl.DataFrame", kind: str) -> tuple["pl.DataFrame", int, int, set[int]]:
    """Append ``new`` to ``old``: bars upsert by timestamp, ticks replace the span they cover."""
    import polars as pl

    new_years = set(new["timestamp"].dt.year().unique().to_list())
    if kind in ("bars", "quote_bars"):
        existing = new.join(old.select("timestamp"), on="timestamp", how="semi").height
        kept = old.join(new.select("timestamp"), on="timestamp", how="anti")
        merged = pl.concat([kept, new], how="diagonal_relaxed").sort("timestamp", maintain_order=True)
        return merged, new.height - existing, existing, new_years
    lo, hi = _ns(new["timestamp"], 0), _ns(new["timestamp"], -1)
    span = pl.col("timestamp").dt.epoch("ns").is_between(lo, hi)
    inside = old.filter(span).height
    kept = old.filter(~span)
    merged = pl.concat([kept, new], how="diagonal_relaxed").sort("timestamp", maintain_order=True)
    years = new_years | set(range(_year(lo), _year(hi) + 1))
    return merged, new.height, inside, years


def _cache_fields(frame: "pl.DataFrame", kind: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The float64 arrays kept in the Arrow cache for ``kind`` (mid prices for quotes)."""
    ts = frame["timestamp"].dt.epoch("ns").to_numpy()
    get = lambda c: frame[c].to_numpy().astype(np.float64, copy=False)  # noqa: E731
    if kind == "bars":
        return ts, {f: get(f) for f in (*_PRICE, "volume")}
    if kind == "quote_bars":
        fields = {f"{s}_{f}": get(f"{s}_{f}") for s in ("bid", "ask") for f in _PRICE}
        mids = {f: (fields[f"bid_{f}"] + fields[f"ask_{f}"]) / 2.0 for f in _PRICE}
        return ts, {**mids, "volume": get("volume"), **fields}
    if kind == "quotes":
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = ts[1:] != ts[:-1]  # the book at an instant is its last update
        bid, ask = get("bid")[last], get("ask")[last]
        return ts[last], {"close": (bid + ask) / 2.0, "volume": get("volume")[last], "bid": bid, "ask": ask}
    return ts, {"price": get("price"), "size": get("size")}


def _write_cache(path: Path, frame: "pl.DataFrame", kind: str, *, meta: dict[str, str]) -> None:
    import pyarrow as pa

    ts, fields = _cache_fields(frame, kind)
    columns = {"timestamp": pa.array(ts, type=pa.int64()).view(pa.timestamp("ns", "UTC"))}
    columns.update({k: pa.array(v, type=pa.float64()) for k, v in fields.items()})
    table = pa.table(columns).replace_schema_metadata({**meta, "format_version": str(_FORMAT_VERSION)})
    _write_ipc(path, table)


def _write_ipc(path: Path, table: "pa.Table") -> None:
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression=None)
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table.combine_chunks(), max_chunksize=max(table.num_rows, 1))


def _map_cache(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Memory-map a series cache: zero-copy, read-only numpy views of each column."""
    batch = _mapped_batch(path)
    ts = _np(batch.column(0))
    return ts, {name: _np(batch.column(i)) for i, name in enumerate(batch.schema.names) if i > 0}


def _mapped_batch(path: Path) -> "pa.RecordBatch":
    import pyarrow as pa

    source = pa.memory_map(str(path), "r")
    reader = pa.ipc.open_file(source)
    if reader.num_record_batches == 1:
        return reader.get_batch(0)
    return reader.read_all().combine_chunks().to_batches()[0]


def _np(arr: "pa.Array") -> np.ndarray:
    """Zero-copy numpy view of a null-free fixed-width Arrow array (read-only when memory-mapped)."""
    import pyarrow as pa

    if arr.null_count:
        raise DataError("corrupt catalog cache: unexpected nulls; delete and re-import the series")
    dtype = np.int64 if pa.types.is_timestamp(arr.type) or pa.types.is_integer(arr.type) else np.float64
    buf = arr.buffers()[1]
    return np.frombuffer(buf, dtype=dtype, count=len(arr), offset=arr.offset * 8)


def _write_aligned(path: Path, market: MarketData, *, symbols: Sequence[str], versions: Sequence[int]) -> None:
    import pyarrow as pa

    a = market.n_assets
    fields: dict[str, np.ndarray] = {f: getattr(market, f) for f in (*_PRICE, "volume")}
    if market.bid is not None and market.ask is not None:
        fields.update({f"bid_{f}": getattr(market.bid, f) for f in _PRICE})
        fields.update({f"ask_{f}": getattr(market.ask, f) for f in _PRICE})
    columns = {"timestamp": pa.array(market.timestamps, type=pa.int64()).view(pa.timestamp("ns", "UTC"))}
    for name, arr in fields.items():
        flat = pa.array(np.ascontiguousarray(arr).reshape(-1), type=pa.float64())
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, a)
    kind = "quote_bars" if market.bid is not None else "bars"
    table = pa.table(columns).replace_schema_metadata(
        {"symbols": json.dumps(list(symbols)), "versions": json.dumps(list(versions)), "kind": kind, "format_version": str(_FORMAT_VERSION)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # the pid lets _sweep_debris tell debris
    try:
        _write_ipc(tmp, table)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _map_aligned(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Memory-map an aligned block: each fixed-size-list column is a C-contiguous [T, A] view."""
    batch = _mapped_batch(path)
    meta = batch.schema.metadata or {}
    n_assets = len(json.loads(meta[b"symbols"]))
    ts = _np(batch.column(0))
    fields = {}
    for i, name in enumerate(batch.schema.names):
        if i == 0:
            continue
        col = batch.column(i)
        values = _np(col.values)
        fields[name] = values[col.offset * n_assets:(col.offset + len(col)) * n_assets].reshape(len(col), n_assets)
    return ts, fields, meta[b"kind"].decode()


def _market(ts: np.ndarray, fields: dict[str, np.ndarray], assets: tuple[str, ...], kind: str) -> MarketData:
    """MarketData over existing [T, A] arrays (no copy, no re-validation: the catalog validated on write)."""
    if kind == "quotes":
        mid = fields["close"]
        bid, ask = fields["bid"], fields["ask"]
        return MarketData(ts, mid, mid, mid, mid, fields["volume"], assets, Quotes(bid, bid, bid, bid), Quotes(ask, ask, ask, ask))
    quotes = kind == "quote_bars" and "bid_close" in fields
    bid = Quotes(*(fields[f"bid_{f}"] for f in _PRICE)) if quotes else None
    ask = Quotes(*(fields[f"ask_{f}"] for f in _PRICE)) if quotes else None
    return MarketData(ts, fields["open"], fields["high"], fields["low"], fields["close"], fields["volume"], assets, bid, ask)


def _as_bar_fields(fields: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    if kind == "quotes":
        mid = fields["close"]
        return {"open": mid, "high": mid, "low": mid, "close": mid, "volume": fields["volume"],
                **{f"{s}_{f}": fields[s] for s in ("bid", "ask") for f in _PRICE}}
    return fields


def _align_series(series: Sequence[tuple[np.ndarray, dict[str, np.ndarray], str]], assets: tuple[str, ...]) -> MarketData:
    """Align per-symbol arrays on the union of timestamps (one copy into [T, A]; NaN where absent)."""
    kinds = {kind for _, _, kind in series}
    with_quotes = kinds <= {"quote_bars", "quotes"}
    names = [*_PRICE, "volume"] + ([f"{s}_{f}" for s in ("bid", "ask") for f in _PRICE] if with_quotes else [])
    stamps = [ts for ts, _, _ in series]
    same = all(len(ts) == len(stamps[0]) for ts in stamps) and all(np.array_equal(ts, stamps[0]) for ts in stamps[1:])
    union = np.array(stamps[0]) if same else np.unique(np.concatenate(stamps))
    t, a = len(union), len(series)
    out = {name: (np.empty((t, a)) if same else np.full((t, a), np.nan)) for name in names}
    for j, (ts, fields, kind) in enumerate(series):
        fields = _as_bar_fields(fields, kind)
        if same:
            for name in names:
                out[name][:, j] = fields[name]
        else:
            rows = np.searchsorted(union, ts)
            for name in names:
                out[name][rows, j] = fields[name]
    kind = "quote_bars" if with_quotes else "bars"
    return _market(union, out, assets, kind)


def _cut(series: tuple[np.ndarray, dict[str, np.ndarray], str], start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    ts, fields, kind = series
    lo, hi = _bounds_index(ts, start, end)
    return ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, kind


# ====================================================================== helpers

def _bounds_index(ts: np.ndarray, start: int | None, end: int | None) -> tuple[int, int]:
    lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, end, side="right"))
    return lo, max(lo, hi)


def _bound(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        return int(to_ns([value])[0])
    except Exception:  # noqa: BLE001 - pandas raises several error types for unparsable dates
        raise DataError(f"not a date or time: {value!r}; use e.g. '2020-01-31' or '2020-01-31 15:30'", field="start/end") from None


def _filter_time(frame: "pl.DataFrame", start: int | None, end: int | None) -> "pl.DataFrame":
    import polars as pl

    if start is None and end is None:
        return frame
    ns = pl.col("timestamp").dt.epoch("ns")
    cond = pl.lit(True)
    if start is not None:
        cond = cond & (ns >= start)
    if end is not None:
        cond = cond & (ns <= end)
    return frame.filter(cond)


def _empty_frame(meta: dict[str, Any]) -> "pl.DataFrame":
    import polars as pl

    schema = {c: (pl.Datetime("ns", "UTC") if c == "timestamp" else pl.Int8 if c == "side" else pl.Int64 if c == "trade_id" else pl.Float64)
              for c in meta["columns"]}
    return pl.DataFrame(schema=schema)


def _ns(ts: "pl.Series", i: int) -> int:
    import polars as pl

    return int(ts.slice(i if i >= 0 else len(ts) + i, 1).dt.epoch("ns").cast(pl.Int64)[0])


def _year(ns: int) -> int:
    return int(np.datetime64(int(ns), "ns").astype("datetime64[Y]").astype(int)) + 1970


def _iso(ns: int) -> str:
    text = str(np.datetime64(int(ns), "ns")).replace("T", " ")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.removesuffix(" 00:00:00").removesuffix(":00") if text.endswith(":00") else text


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fundamental_key(frame: "pl.DataFrame") -> list[str]:
    return ["symbol", "field", "published_at", *(["period_end"] if "period_end" in frame.columns else [])]


def _sql_columns(schema: "pa.Schema") -> str:
    """``*`` with nanosecond timestamps cast to DuckDB's TIMESTAMPTZ (what ``read_parquet`` gives, and what every
    date function accepts)."""
    import pyarrow as pa

    casts = [f'CAST("{f.name}" AS {"TIMESTAMPTZ" if f.type.tz else "TIMESTAMP"}) AS "{f.name}"'
             for f in schema if pa.types.is_timestamp(f.type)]
    return f"* REPLACE ({', '.join(casts)})" if casts else "*"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bar_sort_key(bar: str) -> tuple[int, int, str]:
    if bar in ("quote", "trade"):
        return (0, 0, bar)
    if bar.endswith("mo"):
        return (2, int(bar[:-2]) * 31, bar)
    if bar == "1y":
        return (2, 366, bar)
    try:
        return (1, parse_duration(bar), bar)
    except Exception:  # noqa: BLE001
        return (3, 0, bar)
