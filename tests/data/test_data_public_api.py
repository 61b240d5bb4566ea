"""The public surface of backforge.data is pinned, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib

import pytest

import backforge.data as data

EXPORTS = {
    "MarketData", "Quotes",
    "read_csv", "read_file", "read_parquet", "read_bid_ask", "normalize_frame", "FileData",
    "Catalog", "SeriesInfo", "WriteResult", "ImportReport",
    "check", "apply_policy", "QualityReport",
    "trades_to_bars", "quotes_to_bars", "resample_bars", "tick_bars", "volume_bars", "dollar_bars",
    "session_bars", "Session", "SESSIONS", "align",
    "Fundamentals", "read_fundamentals",
    "gbm", "synthetic_market", "synthetic_series", "synthetic_fundamentals", "default_assets",
}


def test_exports_are_pinned() -> None:
    assert set(data.__all__) == EXPORTS
    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError):
        data.not_a_name  # noqa: B018


@pytest.mark.parametrize("module", ["importers", "catalog", "quality", "resample", "fundamentals", "synth"])
def test_every_public_function_is_documented_with_an_example(module: str) -> None:
    mod = importlib.import_module(f"backforge.data.{module}")
    missing = []
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if callable(obj) and not isinstance(obj, type(doctest)):
            doc = obj.__doc__ or ""
            if ">>>" not in doc and not name.endswith("_nb"):
                missing.append(name)
    assert not missing
