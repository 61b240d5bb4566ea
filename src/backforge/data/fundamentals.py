"""Point-in-time fundamentals and custom data: a (symbol, field, published_at, value) table joined as-of.

A backtest at time ``t`` may only see values **published at or before** ``t``. :class:`Fundamentals`
holds the table (any numeric field: ``eps``, ``revenue``, a sentiment score...) and
:meth:`Fundamentals.as_of` turns one field into a ``[T, A]`` float64 array aligned to bar timestamps —
the array behind the strategy language's ``Fundamental(...)`` indicator. Before a symbol's first
publication the value is NaN; a restatement (the same period published again later) takes effect
when it is published, never earlier. When two values of one field are published at the same instant,
the one with the later ``period_end`` (when the table has that column) wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from backforge.data.market import MarketData

__all__ = ["Fundamentals", "read_fundamentals", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("symbol", "field", "published_at", "value")
_ALIASES = {
    "symbol": ("symbol", "ticker", "asset", "code"),
    "field": ("field", "metric", "name", "item", "variable"),
    "published_at": ("published_at", "publishedat", "published", "available_at", "asof", "as_of", "filing_date", "filed", "release_date", "timestamp"),
    "value": ("value", "val", "amount"),
    "period_end": ("period_end", "periodend", "period", "fiscal_period_end", "report_date"),
}


class Fundamentals:
    """A validated point-in-time table, sorted by symbol, field, publication time (and period end).

    Build it with :meth:`from_frame`, :func:`read_fundamentals` or
    :func:`backforge.data.synth.synthetic_fundamentals`; store it with
    :meth:`backforge.data.catalog.Catalog.write_fundamentals`.

    Examples
    --------
    >>> import polars as pl
    >>> f = Fundamentals.from_frame(pl.DataFrame({
    ...     "symbol": ["A", "A"], "field": ["eps", "eps"],
    ...     "published_at": ["2020-02-01", "2020-05-01"], "value": [1.0, 1.5]}))
    >>> ts = np.array(["2020-01-15", "2020-02-01", "2020-06-01"], dtype="datetime64[ns]").astype(np.int64)
    >>> f.as_of(ts, ["A"], "eps")[:, 0].tolist()
    [nan, 1.0, 1.5]
    """

    def __init__(self, frame: "pl.DataFrame") -> None:
        self.frame = frame
        self._index: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # field -> symbol -> (published ns, values)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(cls, frame: Any) -> "Fundamentals":
        """Validate and normalize a pandas/Polars frame with symbol, field, published_at, value columns.

        ``published_at`` may be datetimes (naive = UTC), ISO strings or dates; ``value`` must be
        numeric. Identical duplicate rows are dropped; two different values for the same symbol,
        field and publication time (and period end) are an error.

        Examples
        --------
        >>> import polars as pl
        >>> Fundamentals.from_frame(pl.DataFrame({"Ticker": ["A"], "Metric": ["pe"],
        ...     "published_at": ["2021-01-04T21:30:00Z"], "Value": [12]})).fields
        ('pe',)
        """
        import pandas as pd
        import polars as pl

        if isinstance(frame, pd.DataFrame):
            frame = pl.from_pandas(frame.reset_index() if frame.index.name else frame)
        if not isinstance(frame, pl.DataFrame):
            raise DataError(f"expected a pandas or Polars DataFrame, got {type(frame).__name__}")
        rename = _map_columns(frame.columns)
        frame = frame.rename(rename).select([c for c in (*REQUIRED_COLUMNS, "period_end") if c in rename.values()])
        if frame.height == 0:
            raise DataError("the fundamentals table has no rows")
        for col in ("symbol", "field"):
            nulls = frame[col].is_null()
            if nulls.any():
                raise DataError(f"missing {col}", row=int(nulls.arg_true()[0]), field=col)
        frame = frame.with_columns(pl.col("symbol").cast(pl.String), pl.col("field").cast(pl.String))
        frame = frame.with_columns(_to_utc(frame["published_at"], "published_at"))
        if "period_end" in frame.columns:
            frame = frame.with_columns(_to_utc(frame["period_end"], "period_end"))
        try:
            value = frame["value"].cast(pl.Float64, strict=True)
        except Exception:  # noqa: BLE001 - polars raises InvalidOperationError or ComputeError by version
            bad = frame["value"].cast(pl.Float64, strict=False).is_null() & frame["value"].is_not_null()
            r = int(bad.arg_true()[0])
            raise DataError(f"value {frame['value'][r]!r} is not a number", row=r, field="value") from None
        frame = frame.with_columns(value.fill_null(float("nan")))
        key = ["symbol", "field", "published_at", *(["period_end"] if "period_end" in frame.columns else [])]
        frame = frame.unique(maintain_order=True)
        dup = frame.select(key).is_duplicated()
        if dup.any():
            r = int(dup.arg_true()[0])
            row = frame.row(r, named=True)
            raise DataError(f"two different values of {row['field']} for {row['symbol']} published at {row['published_at']}; "
                            "keep one (or add a period_end column to tell periods apart)", row=r, field="value")
        return cls(frame.sort(key, maintain_order=True))

    # ------------------------------------------------------------------ properties
    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols present, sorted."""
        return tuple(sorted(self.frame["symbol"].unique().to_list()))

    @property
    def fields(self) -> tuple[str, ...]:
        """Fields present, sorted."""
        return tuple(sorted(self.frame["field"].unique().to_list()))

    def __len__(self) -> int:
        return self.frame.height

    def __repr__(self) -> str:
        return f"Fundamentals({self.frame.height} rows, {len(self.symbols)} symbols, fields {list(self.fields)[:6]})"

    # ------------------------------------------------------------------ point-in-time access
    def as_of(self, timestamps: Any, symbols: Sequence[str], field: str) -> np.ndarray:
        """Latest value of ``field`` published at or before each timestamp, for each symbol.

        Parameters
        ----------
        timestamps
            int64 ns UTC timestamps (``MarketData.timestamps``), sorted ascending.
        symbols
            Columns of the result.
        field
            The field to look up (unknown fields raise with a suggestion; a symbol without the field
            gives an all-NaN column).

        Returns
        -------
        numpy.ndarray
            float64 ``[T, A]``; NaN before a symbol's first publication.

        Examples
        --------
        >>> import polars as pl
        >>> f = Fundamentals.from_frame(pl.DataFrame({"symbol": ["A"], "field": ["eps"],
        ...     "published_at": [1_000], "value": [2.0]}).with_columns(pl.col("published_at").cast(pl.Datetime("ns"))))
        >>> f.as_of(np.array([999, 1_000], dtype=np.int64), ["A", "B"], "eps").tolist()
        [[nan, nan], [2.0, nan]]
        """
        from backforge._time import to_ns

        ts = timestamps if isinstance(timestamps, np.ndarray) and timestamps.dtype == np.int64 else to_ns(timestamps)
        if field not in self.fields:
            import difflib

            close = difflib.get_close_matches(field, self.fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; fields are {', '.join(self.fields)}"
            raise DataError(f"unknown fundamental field {field!r}{hint}", field=field)
        out = np.full((len(ts), len(symbols)), np.nan)
        index = self._field_index(field)
        for j, symbol in enumerate(symbols):
            if symbol not in index:
                continue
            published, values = index[symbol]
            idx = np.searchsorted(published, ts, side="right") - 1  # published <= t: never a later value
            seen = idx >= 0
            out[seen, j] = values[idx[seen]]
        return out

    def _field_index(self, field: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-symbol sorted publication times and values of one field (built once, then reused)."""
        import polars as pl

        if field not in self._index:
            order = ["published_at", *(["period_end"] if "period_end" in self.frame.columns else [])]
            sub = self.frame.filter(pl.col("field") == field)
            self._index[field] = {
                str(key[0]): (part.sort(order)["published_at"].dt.epoch("ns").to_numpy(), part.sort(order)["value"].to_numpy())
                for key, part in sub.group_by("symbol")
            }
        return self._index[field]

    def align(self, market: "MarketData", field: str) -> np.ndarray:
        """:meth:`as_of` on a :class:`MarketData`'s timestamps and assets: a ``[T, A]`` array.

        Examples
        --------
        >>> from backforge.data.synth import gbm, synthetic_fundamentals
        >>> md = gbm(2, 1, seed=1)
        >>> eps = Fundamentals.from_frame(synthetic_fundamentals(md.assets, 1, seed=1)).align(md, "eps")
        >>> eps.shape, bool(np.isnan(eps[0]).all())
        ((252, 2), True)
        """
        return self.as_of(market.timestamps, market.assets, field)

    def history(self, symbol: str, field: str) -> "pl.DataFrame":
        """Every publication of one symbol's field, in publication order.

        Examples
        --------
        >>> from backforge.data.synth import synthetic_fundamentals
        >>> Fundamentals.from_frame(synthetic_fundamentals(1, 1, seed=1)).history("AAPL", "eps").height
        4
        """
        import polars as pl

        return self.frame.filter((pl.col("symbol") == symbol) & (pl.col("field") == field))


def read_fundamentals(path: str | os.PathLike[str]) -> Fundamentals:
    """Read a CSV (plain or gzip) or Parquet file of symbol, field, published_at, value[, period_end].

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.csv"
    >>> _ = p.write_text("symbol,field,published_at,value\\nA,eps,2020-02-01T21:30:00Z,1.25\\n")
    >>> read_fundamentals(p).frame["value"].to_list()
    [1.25]
    """
    import polars as pl

    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=str(p))
    if p.is_dir():
        raise DataError("a folder, not a fundamentals file", path=str(p))
    if p.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path=str(p))
    with open(p, "rb") as fh:
        magic = fh.read(4)
    try:
        if magic == b"PAR1":
            frame = pl.read_parquet(p)
        else:
            import gzip

            raw = gzip.open(p, "rb").read() if magic[:2] == b"\x1f\x8b" else p.read_bytes()
            if b"\x00" in raw[:65536]:
                raise DataError("binary content: not a CSV file", path=str(p))
            frame = pl.read_csv(raw, infer_schema=False)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - polars/arrow parse errors
        raise DataError(f"cannot read fundamentals: {str(exc).splitlines()[0]}", path=str(p)) from None
    try:
        return Fundamentals.from_frame(frame)
    except DataError as exc:
        line = exc.row + 2 if exc.row is not None and magic != b"PAR1" else exc.row
        raise DataError(exc.message, path=str(p), row=line, field=exc.field) from None


# ---------------------------------------------------------------------- helpers

def _map_columns(columns: Sequence[str]) -> dict[str, str]:
    norm = {c.strip().lower().replace(" ", "_"): c for c in columns}
    rename: dict[str, str] = {}
    for canon, spellings in _ALIASES.items():
        for spelling in spellings:
            if spelling in norm and norm[spelling] not in rename:
                rename[norm[spelling]] = canon
                break
    missing = [c for c in REQUIRED_COLUMNS if c not in rename.values()]
    if missing:
        import difflib

        hint = difflib.get_close_matches(missing[0], list(columns), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise DataError(f"fundamentals need columns symbol, field, published_at, value; missing {', '.join(missing)}; "
                        f"columns are {list(columns)}{extra}", field=missing[0])
    return rename


def _to_utc(series: "pl.Series", name: str) -> "pl.Series":
    import polars as pl

    if isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:
            series = series.dt.replace_time_zone("UTC")
        return series.dt.convert_time_zone("UTC").dt.cast_time_unit("ns").alias(name)
    if series.dtype == pl.Date:
        return series.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").alias(name)
    nulls = series.is_null()
    if nulls.any():
        raise DataError(f"missing {name}", row=int(nulls.arg_true()[0]), field=name)
    if series.dtype.is_integer():
        return series.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").alias(name)
    import pandas as pd

    values = series.cast(pl.String).str.strip_chars().to_list()
    for fmt in ("ISO8601", "mixed"):
        try:
            index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format=fmt))
            return pl.Series(name, index.as_unit("ns").asi8).cast(pl.Datetime("ns", "UTC"))
        except (ValueError, TypeError, OverflowError):
            continue
    for i, value in enumerate(values):
        try:
            pd.to_datetime([value], utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            raise DataError(f"cannot parse {name} {value!r} as a date/time", row=i, field=name) from None
    raise DataError(f"cannot parse {name} as dates/times", field=name)
