"""Market data for backforge: the :class:`MarketData` contract, importers, the catalog, resampling,
quality checks, point-in-time fundamentals and deterministic synthetic data.

Quick tour::

    from backforge.data import Catalog, read_csv, gbm
    md = read_csv("GOOG.csv")                              # one file -> MarketData
    cat = Catalog()                                        # ./backforge-data (or $BACKFORGE_DATA)
    cat.import_file("GOOG.csv", symbol="GOOG")             # checked, stored atomically
    md = cat.load(["GOOG", "ORCL"], "2010", "2012", bar="1d")  # memory-mapped, aligned, NaN gaps

Every name loads its module (NumPy, Polars, PyArrow) on first use, so ``import backforge.data`` is cheap
(the ``backforge`` command imports it to list ``backforge data`` commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backforge._lazy import lazy_exports

if TYPE_CHECKING:
    from backforge.data.market import MarketData, Quotes
    from backforge.data.synth import default_assets, gbm, synthetic_fundamentals, synthetic_market, synthetic_series
    from backforge.data.catalog import Catalog, ImportReport, SeriesInfo, WriteResult
    from backforge.data.fundamentals import Fundamentals, read_fundamentals
    from backforge.data.importers import FileData, normalize_frame, read_bid_ask, read_csv, read_file, read_parquet
    from backforge.data.quality import QualityReport, apply_policy, check
    from backforge.data.resample import (
        SESSIONS, Session, align, dollar_bars, quotes_to_bars, resample_bars, session_bars, tick_bars,
        trades_to_bars, volume_bars,
    )

__all__ = [
    # the contract
    "MarketData", "Quotes",
    # importers
    "read_csv", "read_file", "read_parquet", "read_bid_ask", "normalize_frame", "FileData",
    # catalog
    "Catalog", "SeriesInfo", "WriteResult", "ImportReport",
    # quality
    "check", "apply_policy", "QualityReport",
    # resampling
    "trades_to_bars", "quotes_to_bars", "resample_bars", "tick_bars", "volume_bars", "dollar_bars",
    "session_bars", "Session", "SESSIONS", "align",
    # fundamentals
    "Fundamentals", "read_fundamentals",
    # synthetic data
    "gbm", "synthetic_market", "synthetic_series", "synthetic_fundamentals", "default_assets",
]

_LAZY = {
    "MarketData": "market", "Quotes": "market",
    "gbm": "synth", "synthetic_market": "synth", "synthetic_series": "synth", "synthetic_fundamentals": "synth",
    "default_assets": "synth",
    "read_csv": "importers", "read_file": "importers", "read_parquet": "importers", "read_bid_ask": "importers",
    "normalize_frame": "importers", "FileData": "importers",
    "Catalog": "catalog", "SeriesInfo": "catalog", "WriteResult": "catalog", "ImportReport": "catalog",
    "check": "quality", "apply_policy": "quality", "QualityReport": "quality",
    "trades_to_bars": "resample", "quotes_to_bars": "resample", "resample_bars": "resample", "tick_bars": "resample",
    "volume_bars": "resample", "dollar_bars": "resample", "session_bars": "resample", "Session": "resample",
    "SESSIONS": "resample", "align": "resample",
    "Fundamentals": "fundamentals", "read_fundamentals": "fundamentals",
}

__getattr__, __dir__ = lazy_exports(__name__, {name: f"backforge.data.{module}" for name, module in _LAZY.items()},
                                    eager=globals())
