"""An optional catalog backend on an ArcticDB library (``Catalog("lmdb:///path")``, ``pip install arcticdb``)
for tick-scale history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backforge.data.store import (
    _FORMAT_VERSION, SeriesInfo, WriteResult, _cache_fields, _fundamental_key, _merge, _now, _ns, _Store, _utc_columns,
)
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["ArcticStore"]


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

