"""What every catalog backend shares: the :class:`_Store` interface, the records a catalog returns
(:class:`SeriesInfo`, :class:`WriteResult`), and the frame and array helpers both backends use
(conforming and merging frames, the cached float64 fields, aligning series into
:class:`~backforge.data.market.MarketData`). :mod:`backforge.data.catalog` is the facade over them.
"""

from __future__ import annotations

import datetime as _dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from backforge._time import parse_duration, to_ns
from backforge.data.market import MarketData, Quotes
from backforge.data.timestamps import utc_ns_timestamp
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["SeriesInfo", "WriteResult"]

_KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "bars": ("open", "high", "low", "close", "volume"),
    "quote_bars": ("bid_open", "bid_high", "bid_low", "bid_close", "ask_open", "ask_high", "ask_low", "ask_close", "volume"),
    "quotes": ("bid", "ask", "volume"),
    "trades": ("price", "size", "side"),
}
_PRICE = ("open", "high", "low", "close")
_FORMAT_VERSION = 1


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


class _Store(ABC):
    """Interface of a catalog backend: :class:`~backforge.data.parquet_store.ParquetStore` or
    :class:`~backforge.data.arctic_store.ArcticStore` (the abstract methods below)."""

    backend = "abstract"

    @abstractmethod
    def write(self, symbol: str, bar: str, frame: "pl.DataFrame", *, kind: str, mode: str, source: dict) -> WriteResult:
        """Write ``frame`` (conformed, of ``kind``) as the new version of one series; ``mode`` is append or replace."""

    @abstractmethod
    def list(self) -> list[SeriesInfo]:
        """Every stored series."""

    @abstractmethod
    def bars(self, symbol: str) -> list[str]:
        """The bar labels stored for ``symbol`` (empty when it is unknown)."""

    @abstractmethod
    def info(self, symbol: str, bar: str) -> SeriesInfo:
        """What is stored for one series."""

    @abstractmethod
    def read(self, symbol: str, bar: str, start: int | None, end: int | None) -> "pl.DataFrame":
        """One series as a frame, rows from ``start`` to ``end`` (ns, inclusive; None: unbounded)."""

    @abstractmethod
    def arrays(self, symbol: str, bar: str, start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        """One series as timestamps, its cached float64 fields and its kind."""

    def load_aligned(self, symbols: list[str], bar: str, start: int | None, end: int | None, *, cache: bool, max_cells: int) -> MarketData:
        series = [self.arrays(s, bar, start, end) for s in symbols]
        return _align_series(series, tuple(symbols))

    @abstractmethod
    def delete(self, symbol: str, bar: str) -> None:
        """Remove one series."""

    @abstractmethod
    def write_fundamentals(self, frame: "pl.DataFrame", *, mode: str) -> int:
        """Store point-in-time fundamentals; returns the rows stored."""

    @abstractmethod
    def read_fundamentals(self) -> "pl.DataFrame | None":
        """The stored fundamentals, or None."""

    def sql(self, query: str) -> "pl.DataFrame":
        raise DataError(f"SQL is available on the Parquet catalog only, not on {self.backend}")

    def clear_cache(self) -> int:
        return 0

    def sweep(self) -> int:
        """Remove what killed writers left behind (see :func:`_sweep_debris`); 0 when there is nothing to do."""
        return 0


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


def _conform(frame: "pl.DataFrame", kind: str, symbol: str) -> "pl.DataFrame":
    """Check a frame is normalized for ``kind`` and sorted; cast the timestamp to ns UTC."""
    import polars as pl

    if frame.height == 0:
        raise DataError("nothing to write: the frame has no rows", asset=symbol)
    missing = [c for c in ("timestamp", *_KIND_COLUMNS[kind]) if c not in frame.columns]
    if missing:
        raise DataError(f"{kind} need columns {', '.join(missing)}; got {frame.columns}", asset=symbol, field=missing[0])
    frame = utc_ns_timestamp(frame, asset=symbol)
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

