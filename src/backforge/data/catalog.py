"""The on-disk data catalog: Parquet for storage, memory-mapped Arrow IPC for zero-copy loads.

:class:`Catalog` is the facade: it validates symbols and bar labels, checks what is written, and hands
storage to a backend — :class:`~backforge.data.parquet_store.ParquetStore` (the folder layout, atomic
writes and zero-copy loads are described there) or, for ``Catalog("lmdb:///path")``,
:class:`~backforge.data.arctic_store.ArcticStore` on an ArcticDB library (optional dependency). Both
implement :class:`~backforge.data.store._Store` (:mod:`backforge.data.store`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from backforge._time import format_duration, parse_duration
from backforge.data.arctic_store import ArcticStore
from backforge.data.market import MarketData
from backforge.data.parquet_store import (  # the cache helpers are re-exported for data/events.py
    ParquetStore, _mapped_batch, _np, _write_ipc,
)
from backforge.data.store import (
    _KIND_COLUMNS, _PRICE, SeriesInfo, WriteResult, _bar_sort_key, _bound, _conform, _market, _Store,
)
from backforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import polars as pl

    from backforge.data.fundamentals import Fundamentals
    from backforge.data.quality import QualityReport

__all__ = ["Catalog", "SeriesInfo", "WriteResult", "ImportReport", "DEFAULT_ROOT", "normalize_bar", "validate_symbol"]

DEFAULT_ROOT = "backforge-data"
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-^=]{0,63}$")
_SPECIAL_BARS = ("quote", "trade", "1mo", "3mo", "1y")


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

