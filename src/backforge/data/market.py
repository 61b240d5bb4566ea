"""`MarketData`: the columnar market data every backforge component consumes.

Shape conventions (see VISION.md): ``timestamps`` is int64 ns UTC ``[T]``; price and volume fields are
float64 ``[T, A]`` C-contiguous arrays on the *union* of all assets' timestamps, with NaN where an asset
has no bar (never forward-filled). FX data may carry bid and ask OHLC arrays of the same shape; when it
does, ``open/high/low/close`` hold the mid prices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np

from backforge._time import format_ns, median_bar_ns, to_ns
from backforge.errors import DataError, did_you_mean

__all__ = ["MarketData", "Quotes"]

PRICE_FIELDS = ("open", "high", "low", "close")
_COLUMN_ALIASES = {
    "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vol": "volume",
    "time": "timestamp", "date": "timestamp", "datetime": "timestamp", "ts": "timestamp",
    "timestamp_utc": "timestamp", "": "timestamp", "index": "timestamp", "__index_level_0__": "timestamp",
    "symbol": "symbol", "asset": "symbol", "ticker": "symbol",
}


class Quotes(NamedTuple):
    """Bid or ask OHLC arrays, each float64 ``[T, A]``."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


@dataclass(frozen=True, eq=False)
class MarketData:
    """Aligned multi-asset bars (optionally with bid/ask quote bars).

    Build it with :meth:`from_arrays`, :meth:`from_frames` (one DataFrame per asset), :meth:`from_long`
    (one long DataFrame with a symbol column), :func:`backforge.data.read_csv` for files, or
    :func:`backforge.data.synth.gbm` for deterministic synthetic data. Construction validates the data
    and raises :class:`~backforge.errors.DataError` naming the asset, row and field of the first problem.

    Examples
    --------
    >>> import numpy as np
    >>> md = MarketData.from_arrays(
    ...     timestamps=np.array([0, 60_000_000_000], dtype=np.int64),
    ...     close=np.array([[10.0], [11.0]]), assets=["X"])
    >>> md.n_bars, md.n_assets, md.assets
    (2, 1, ('X',))
    """

    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    assets: tuple[str, ...]
    bid: Quotes | None = None
    ask: Quotes | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        timestamps: Any,
        *,
        close: Any,
        assets: Iterable[str],
        open: Any = None,
        high: Any = None,
        low: Any = None,
        volume: Any = None,
        bid: Mapping[str, Any] | Quotes | None = None,
        ask: Mapping[str, Any] | Quotes | None = None,
        validate: bool = True,
    ) -> "MarketData":
        """Build from arrays already aligned on ``timestamps``.

        ``open``, ``high`` and ``low`` default to ``close`` (close-only data); ``volume`` defaults to NaN.
        ``bid``/``ask`` are mappings with ``open/high/low/close`` arrays; when both are given and
        ``close`` is None, the OHLC fields are the mid prices.

        Examples
        --------
        >>> md = MarketData.from_arrays([0, 1], close=[[1.0, 2.0], [1.5, 2.5]], assets=["A", "B"])
        >>> md.close.shape
        (2, 2)
        """
        assets = tuple(str(a) for a in assets)
        ts = to_ns(np.asarray(timestamps)) if not isinstance(timestamps, np.ndarray) or timestamps.dtype != np.int64 else timestamps
        n_assets = len(assets)

        def as_2d(values: Any, name: str) -> np.ndarray:
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim == 1 and n_assets == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2 or arr.shape != (len(ts), n_assets):
                raise DataError(
                    f"expected shape ({len(ts)}, {n_assets}) = (timestamps, assets), got {arr.shape}",
                    field=name,
                )
            return np.ascontiguousarray(arr)

        def as_quotes(q: Any, name: str) -> Quotes | None:
            if q is None:
                return None
            getter = (lambda f: getattr(q, f)) if isinstance(q, Quotes) else (lambda f: q[f])
            try:
                return Quotes(*(as_2d(getter(f), f"{name}.{f}") for f in PRICE_FIELDS))
            except (KeyError, AttributeError) as exc:
                raise DataError(f"{name} quotes need open, high, low and close arrays (missing {exc})", field=name) from None

        bid_q, ask_q = as_quotes(bid, "bid"), as_quotes(ask, "ask")
        if (bid_q is None) != (ask_q is None):
            raise DataError("bid and ask must be given together", field="bid" if bid_q is None else "ask")
        if close is None:
            if bid_q is None:
                raise DataError("close prices are required (or bid and ask quotes)", field="close")
            open_, high_, low_, close_ = ((b + a) / 2.0 for b, a in zip(bid_q, ask_q))
        else:
            close_ = as_2d(close, "close")
            open_ = as_2d(open, "open") if open is not None else close_.copy()
            high_ = as_2d(high, "high") if high is not None else np.fmax(open_, close_)
            low_ = as_2d(low, "low") if low is not None else np.fmin(open_, close_)
        volume_ = as_2d(volume, "volume") if volume is not None else np.full_like(close_, np.nan)
        md = cls(ts, open_, high_, low_, close_, volume_, assets, bid_q, ask_q)
        if validate:
            md.validate()
        return md

    @classmethod
    def from_frames(cls, frames: Mapping[str, Any], *, validate: bool = True) -> "MarketData":
        """Build from one pandas or Polars DataFrame per asset, aligned on the union of timestamps.

        Each frame needs a time column (``timestamp``/``date``/``time``/``datetime``, or a pandas
        DatetimeIndex) and ``close``; ``open/high/low/volume`` and ``bid_*``/``ask_*`` OHLC columns are
        optional. Column names are case-insensitive. Missing bars become NaN — nothing is forward-filled.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"close": [1.0, 2.0]}, index=pd.to_datetime(["2020-01-01", "2020-01-02"]))
        >>> MarketData.from_frames({"X": df}).n_bars
        2
        """
        if not frames:
            raise DataError("no data: at least one asset is required")
        columns_by_asset = {str(name): _frame_columns(frame, str(name)) for name, frame in frames.items()}
        return _align(columns_by_asset, validate=validate)

    @classmethod
    def coerce(cls, data: Any, *, asset: str = "asset") -> "MarketData":
        """``data`` as MarketData: itself, or a pandas / Polars OHLCV frame converted — a long frame with a
        ``symbol`` column by :meth:`from_long`, else one asset named ``asset`` by :meth:`from_frames`.
        The one place where the engine's entry points (``from_signals``, ``simulate``, ``run_portfolio``)
        accept frames.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"Open": [1.0, 2.0], "High": [1.5, 2.5], "Low": [0.5, 1.5], "Close": [1.2, 2.2]},
        ...                   index=pd.to_datetime(["2020-01-01", "2020-01-02"]))
        >>> MarketData.coerce(df).assets
        ('asset',)
        """
        if isinstance(data, MarketData):
            return data
        module = type(data).__module__
        if not (module.startswith(("pandas", "polars")) and hasattr(data, "columns")):
            raise DataError(f"expected MarketData or a pandas/Polars OHLCV DataFrame, got {type(data).__name__}; build "
                            "one with MarketData.from_frames(...) or backforge.data.read_csv(...)")
        columns = [str(c).strip().lower() for c in data.columns]
        if any(_COLUMN_ALIASES.get(c) == "symbol" for c in columns):
            symbol = next(str(c) for c in data.columns if _COLUMN_ALIASES.get(str(c).strip().lower()) == "symbol")
            return cls.from_long(data, symbol=symbol)
        return cls.from_frames({asset: data})

    @classmethod
    def from_long(
        cls, frame: Any, *, symbol: str = "symbol", time: str | None = None, validate: bool = True
    ) -> "MarketData":
        """Build from one long DataFrame (pandas or Polars) with a symbol column.

        Examples
        --------
        >>> import polars as pl
        >>> df = pl.DataFrame({"symbol": ["A", "B", "A"], "timestamp": [0, 0, 60_000_000_000],
        ...                    "close": [1.0, 5.0, 1.1]})
        >>> md = MarketData.from_long(df)
        >>> md.assets, md.n_bars
        (('A', 'B'), 2)
        """
        import polars as pl

        df = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame.reset_index() if _has_named_index(frame) else frame)
        lower = {c.lower(): c for c in df.columns}
        if symbol.lower() not in lower:
            raise DataError(f"long-format data needs a {symbol!r} column; columns are {df.columns}", field=symbol)
        sym_col = lower[symbol.lower()]
        frames = {}
        for name in sorted(df[sym_col].unique().to_list(), key=str):
            part = df.filter(pl.col(sym_col) == name).drop(sym_col)
            if time is not None:
                part = part.rename({time: "timestamp"})
            frames[str(name)] = part
        return cls.from_frames(frames, validate=validate)

    # ------------------------------------------------------------------ properties
    @property
    def n_bars(self) -> int:
        """Number of timestamps ``T``."""
        return int(self.timestamps.shape[0])

    @property
    def n_assets(self) -> int:
        """Number of assets ``A``."""
        return len(self.assets)

    @property
    def has_quotes(self) -> bool:
        """True when bid and ask arrays are present."""
        return self.bid is not None

    @property
    def bar_ns(self) -> int:
        """Median bar spacing in nanoseconds."""
        return median_bar_ns(self.timestamps)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        total = self.timestamps.nbytes + sum(getattr(self, f).nbytes for f in (*PRICE_FIELDS, "volume"))
        for q in (self.bid, self.ask):
            if q is not None:
                total += sum(a.nbytes for a in q)
        return total

    def asset_index(self, asset: str) -> int:
        """Column index of ``asset``; raises :class:`DataError` with a suggestion for unknown names."""
        try:
            return self.assets.index(asset)
        except ValueError:
            hint = did_you_mean(asset, self.assets) or f"; known assets: {', '.join(self.assets)}"
            raise DataError(f"unknown asset {asset!r}{hint}", asset=asset, code="BF-DATA-UNKNOWN-ASSET") from None

    # ------------------------------------------------------------------ transforms
    def select(self, assets: Iterable[str]) -> "MarketData":
        """A copy restricted to ``assets`` (in that order); rows where none of them trade are dropped.

        Examples
        --------
        >>> md = MarketData.from_arrays([0, 1], close=[[1.0, 2.0], [1.5, 2.5]], assets=["A", "B"])
        >>> md.select(["B"]).assets
        ('B',)
        """
        idx = [self.asset_index(a) for a in assets]
        pick = lambda a: np.ascontiguousarray(a[:, idx])  # noqa: E731
        close = pick(self.close)
        keep = ~np.all(np.isnan(close), axis=1)
        sub = lambda a: np.ascontiguousarray(a[keep])  # noqa: E731
        quotes = lambda q: None if q is None else Quotes(*(sub(pick(x)) for x in q))  # noqa: E731
        return MarketData(
            sub(self.timestamps), sub(pick(self.open)), sub(pick(self.high)), sub(pick(self.low)), sub(close),
            sub(pick(self.volume)), tuple(self.assets[i] for i in idx), quotes(self.bid), quotes(self.ask),
        )

    def slice(self, start: Any = None, end: Any = None) -> "MarketData":
        """Bars with ``start <= timestamp <= end`` (either bound optional; strings, datetimes or int ns).

        Examples
        --------
        >>> md = MarketData.from_arrays([0, 1, 2], close=[[1.0], [2.0], [3.0]], assets=["A"])
        >>> md.slice(1, None).n_bars
        2
        """
        lo = 0 if start is None else int(np.searchsorted(self.timestamps, _scalar_ns(start), side="left"))
        hi = self.n_bars if end is None else int(np.searchsorted(self.timestamps, _scalar_ns(end), side="right"))
        return self.rows(lo, hi)

    def rows(self, lo: int, hi: int) -> "MarketData":
        """Bars ``lo:hi`` by position (views, no copy)."""
        cut = lambda a: a[lo:hi]  # noqa: E731
        quotes = lambda q: None if q is None else Quotes(*(cut(x) for x in q))  # noqa: E731
        return MarketData(
            cut(self.timestamps), cut(self.open), cut(self.high), cut(self.low), cut(self.close),
            cut(self.volume), self.assets, quotes(self.bid), quotes(self.ask),
        )

    def to_polars(self, asset: str | None = None):
        """Long-format Polars DataFrame (timestamp, symbol, OHLCV [, bid/ask OHLC]), bars that exist only.

        Examples
        --------
        >>> md = MarketData.from_arrays([0, 1], close=[[1.0], [2.0]], assets=["A"])
        >>> md.to_polars().columns[:3]
        ['timestamp', 'symbol', 'open']
        """
        import polars as pl

        assets = self.assets if asset is None else (asset,)
        parts = []
        for name in assets:
            j = self.asset_index(name)
            present = ~np.isnan(self.close[:, j])
            cols: dict[str, Any] = {
                "timestamp": pl.Series(self.timestamps[present]).cast(pl.Datetime("ns", "UTC")),
                "symbol": pl.Series([name] * int(present.sum()), dtype=pl.String),
            }
            for field in (*PRICE_FIELDS, "volume"):
                cols[field] = getattr(self, field)[present, j]
            for side, q in (("bid", self.bid), ("ask", self.ask)):
                if q is not None:
                    for field in PRICE_FIELDS:
                        cols[f"{side}_{field}"] = getattr(q, field)[present, j]
            parts.append(pl.DataFrame(cols))
        return pl.concat(parts) if parts else pl.DataFrame()

    def fingerprint(self) -> str:
        """SHA-256 of the timestamps, asset names and every array: identifies the exact data of a run.

        Examples
        --------
        >>> md = MarketData.from_arrays([0, 1], close=[[1.0], [2.0]], assets=["A"])
        >>> len(md.fingerprint())
        64
        """
        h = hashlib.sha256()
        h.update("\x1f".join(self.assets).encode())
        h.update(np.ascontiguousarray(self.timestamps).tobytes())
        for field in (*PRICE_FIELDS, "volume"):
            h.update(np.ascontiguousarray(getattr(self, field)).tobytes())
        for q in (self.bid, self.ask):
            if q is not None:
                for a in q:
                    h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        if self.n_bars:
            # numpy, not pandas: a repr must not cost an import
            first, last = (np.datetime_as_string(np.datetime64(int(x), "ns"), unit="s").replace("T", " ") + "+00:00"
                           for x in self.timestamps[[0, -1]])
            span = f"{first} → {last}"
        else:
            span = "empty"
        quotes = ", bid/ask" if self.has_quotes else ""
        return f"MarketData({self.n_bars} bars × {self.n_assets} assets {list(self.assets)[:8]}, {span}{quotes})"

    def _repr_html_(self) -> str:
        from backforge.results.notebook import market_html

        return market_html(self)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every invariant; raise :class:`DataError` naming asset, row and field of the first violation.

        Rules: timestamps strictly increasing; on each row an asset either has no bar (open, high, low
        and close all NaN) or finite prices > 0 with ``low <= open, close <= high``; volume finite and
        >= 0 or NaN; bid <= ask when quotes are present.
        """
        ts = self.timestamps
        if ts.ndim != 1:
            raise DataError(f"timestamps must be one-dimensional, got shape {ts.shape}", field="timestamp")
        if len(ts) > 1:
            steps = np.diff(ts)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                r = int(bad[0]) + 1
                kind = "duplicate" if steps[bad[0]] == 0 else "out-of-order (unsorted)"
                raise DataError(f"{kind} timestamp {_fmt_ts(ts[r])} after {_fmt_ts(ts[r - 1])}; sort and deduplicate the data", row=r, field="timestamp", code="BF-DATA-UNSORTED")
        for field in (*PRICE_FIELDS, "volume"):
            arr = getattr(self, field)
            if arr.shape != (len(ts), self.n_assets):
                raise DataError(f"expected shape ({len(ts)}, {self.n_assets}), got {arr.shape}", field=field, code="BF-DATA-SHAPE")
        missing = np.isnan(self.close)
        for field in PRICE_FIELDS:
            self._check_prices(getattr(self, field), field, missing)
        self._check_order(self.low, "low", self.high, "high", blame="high")
        self._check_order(self.low, "low", self.open, "open", blame="open")
        self._check_order(self.open, "open", self.high, "high", blame="open")
        self._check_order(self.low, "low", self.close, "close", blame="close")
        self._check_order(self.close, "close", self.high, "high", blame="close")
        vol = self.volume
        bad = np.isinf(vol) | (vol < 0)
        if bad.any():
            r, j = np.argwhere(bad)[0]
            raise DataError(f"volume must be finite and >= 0, got {vol[r, j]}", asset=self.assets[j], row=int(r), field="volume",
                            code="BF-DATA-BAD-VOLUME")
        if self.bid is not None and self.ask is not None:
            for side, q in (("bid", self.bid), ("ask", self.ask)):
                for field in PRICE_FIELDS:
                    self._check_prices(getattr(q, field), f"{side}_{field}", missing)
                self._check_order(q.low, f"{side}_low", q.high, f"{side}_high", blame=f"{side}_high")
            crossed = self.bid.close > self.ask.close
            if crossed.any():
                r, j = np.argwhere(crossed)[0]
                raise DataError(f"bid {self.bid.close[r, j]} is above ask {self.ask.close[r, j]}", asset=self.assets[j], row=int(r), field="bid_close",
                                code="BF-DATA-CROSSED-QUOTE")

    def _check_prices(self, arr: np.ndarray, field: str, missing: np.ndarray) -> None:
        nan = np.isnan(arr)
        bad_nan = nan != missing
        if bad_nan.any():
            r, j = np.argwhere(bad_nan)[0]
            what = "NaN while close is present" if nan[r, j] else "present while close is NaN (no bar)"
            raise DataError(f"price is {what}; a bar needs all of open, high, low and close", asset=self.assets[j], row=int(r), field=field,
                            code="BF-DATA-NAN-PRICE")
        bad = ~nan & ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            r, j = np.argwhere(bad)[0]
            raise DataError(f"price must be finite and > 0, got {arr[r, j]}", asset=self.assets[j], row=int(r), field=field,
                            code="BF-DATA-BAD-PRICE")

    def _check_order(self, lower: np.ndarray, lower_name: str, upper: np.ndarray, upper_name: str, *, blame: str) -> None:
        """Require ``lower <= upper`` (a relative tolerance of 1e-12 absorbs float rounding)."""
        with np.errstate(invalid="ignore"):
            bad = lower > upper * (1 + 1e-12)
        if bad.any():
            r, j = np.argwhere(bad)[0]
            raise DataError(
                f"{lower_name} {lower[r, j]} is above {upper_name} {upper[r, j]}; a bar needs low <= open, close <= high",
                asset=self.assets[j], row=int(r), field=blame, code="BF-DATA-OHLC-ORDER",
            )


# ---------------------------------------------------------------------- helpers

def _fmt_ts(ns: int) -> str:
    return format_ns(ns)


def _scalar_ns(value: Any) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    return int(to_ns([value])[0])


def _has_named_index(frame: Any) -> bool:
    import pandas as pd

    return isinstance(frame, pd.DataFrame) and isinstance(frame.index, pd.DatetimeIndex)


def _frame_columns(frame: Any, asset: str) -> dict[str, np.ndarray]:
    """Normalise one asset's DataFrame to {'timestamp': int64 ns, 'open': f64, ...}."""
    import pandas as pd
    import polars as pl

    if isinstance(frame, pd.DataFrame):
        if isinstance(frame.index, pd.DatetimeIndex):
            frame = frame.reset_index(names="timestamp")
        frame = pl.from_pandas(frame)
    elif not isinstance(frame, pl.DataFrame):
        raise DataError(f"expected a pandas or Polars DataFrame, got {type(frame).__name__}", asset=asset)
    out: dict[str, np.ndarray] = {}
    for col in frame.columns:
        key = col.strip().lower().replace(" ", "_")
        key = _COLUMN_ALIASES.get(key, key)
        if key == "timestamp":
            out["timestamp"] = to_ns(frame[col])
        elif key in (*PRICE_FIELDS, "volume") or key.startswith(("bid_", "ask_")) or key in ("bid", "ask"):
            try:
                out[key] = frame[col].cast(pl.Float64).to_numpy()
            except Exception:
                raise DataError(f"column {col!r} is not numeric", asset=asset, field=col) from None
    if "timestamp" not in out:
        raise DataError(f"no time column found; columns are {frame.columns}; name one 'timestamp' or 'date'", asset=asset, field="timestamp",
                        code="BF-DATA-NO-COLUMN")
    if "close" not in out and "bid_close" not in out and "bid" not in out:
        raise DataError(f"no close column found; columns are {frame.columns}", asset=asset, field="close", code="BF-DATA-NO-COLUMN")
    ts = out["timestamp"]
    if len(ts) > 1:
        steps = np.diff(ts)
        bad = np.flatnonzero(steps <= 0)
        if bad.size:
            r = int(bad[0]) + 1
            kind = "duplicate" if steps[bad[0]] == 0 else "out-of-order (unsorted)"
            raise DataError(f"{kind} timestamp {_fmt_ts(ts[r])} after {_fmt_ts(ts[r - 1])}; sort and deduplicate the data", asset=asset, row=r, field="timestamp", code="BF-DATA-UNSORTED")
    return out


def _align(columns_by_asset: dict[str, dict[str, np.ndarray]], *, validate: bool) -> MarketData:
    assets = tuple(columns_by_asset)
    stamps = [cols["timestamp"] for cols in columns_by_asset.values()]
    union = stamps[0] if len(stamps) == 1 else np.unique(np.concatenate(stamps))
    T, A = len(union), len(assets)
    fields = {f: np.full((T, A), np.nan) for f in (*PRICE_FIELDS, "volume")}
    has_quotes = all(("bid_close" in c or "bid" in c) for c in columns_by_asset.values())
    quotes = {f"{s}_{f}": np.full((T, A), np.nan) for s in ("bid", "ask") for f in PRICE_FIELDS} if has_quotes else {}
    for j, (asset, cols) in enumerate(columns_by_asset.items()):
        rows = np.searchsorted(union, cols["timestamp"])
        if has_quotes:
            for s in ("bid", "ask"):
                if f"{s}_close" not in cols:  # tick-style single bid/ask column
                    if s not in cols:
                        raise DataError(f"{s} quotes missing while other assets have them", asset=asset, field=s)
                    for f in PRICE_FIELDS:
                        cols[f"{s}_{f}"] = cols[s]
                for f in PRICE_FIELDS:
                    if f"{s}_{f}" not in cols:
                        cols[f"{s}_{f}"] = cols[f"{s}_close"]
                    quotes[f"{s}_{f}"][rows, j] = cols[f"{s}_{f}"]
        if "close" not in cols:
            for f in PRICE_FIELDS:
                if f == "high":
                    cols[f] = (cols["bid_high"] + cols["ask_high"]) / 2
                elif f == "low":
                    cols[f] = (cols["bid_low"] + cols["ask_low"]) / 2
                else:
                    cols[f] = (cols[f"bid_{f}"] + cols[f"ask_{f}"]) / 2
        for f in PRICE_FIELDS:
            fields[f][rows, j] = cols.get(f, cols["close"])
        if "high" not in cols:
            fields["high"][rows, j] = np.fmax(fields["open"][rows, j], fields["close"][rows, j])
        if "low" not in cols:
            fields["low"][rows, j] = np.fmin(fields["open"][rows, j], fields["close"][rows, j])
        if "volume" in cols:
            fields["volume"][rows, j] = cols["volume"]
    bid = Quotes(*(quotes[f"bid_{f}"] for f in PRICE_FIELDS)) if has_quotes else None
    ask = Quotes(*(quotes[f"ask_{f}"] for f in PRICE_FIELDS)) if has_quotes else None
    md = MarketData(union.astype(np.int64, copy=False), fields["open"], fields["high"], fields["low"], fields["close"], fields["volume"], assets, bid, ask)
    if validate:
        md.validate()
    return md
