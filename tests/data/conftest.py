"""Shared fixtures of the data tests: the real sample files in ../shared/data and temporary catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest


def _shared_data() -> Path:
    from backforge.data.paths import resolve_data_path

    return resolve_data_path("${BACKFORGE_SHARED_DATA:-../shared/data}", base=Path(__file__).resolve().parents[2])


SHARED = _shared_data()


@pytest.fixture(scope="session")
def shared() -> Path:
    """Folder of the real sample files (override with $BACKFORGE_SHARED_DATA)."""
    if not (SHARED / "GOOG.csv").is_file():
        pytest.skip(f"shared sample data not found at {SHARED}; set BACKFORGE_SHARED_DATA")
    return SHARED


@pytest.fixture()
def catalog(tmp_path: Path):
    """An empty Parquet catalog in a temporary folder."""
    from backforge.data.catalog import Catalog

    return Catalog(tmp_path / "catalog")


def _catalog_state(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture()
def snapshot():
    """``snapshot(root)``: every file of a catalog folder with its bytes, to prove an operation changed nothing."""
    return _catalog_state
