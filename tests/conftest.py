"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest


def shared_data_path() -> Path:
    """Folder of the shared reference data: ``$BACKFORGE_SHARED_DATA`` or ``<repo>/../shared/data`` (resolved by the
    function that resolves the data paths of strategy files)."""
    from backforge.data.paths import resolve_data_path

    return resolve_data_path("${BACKFORGE_SHARED_DATA:-../shared/data}", base=Path(__file__).resolve().parents[1])


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data folder; tests that need it are skipped when it is missing."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found at {path}; set BACKFORGE_SHARED_DATA")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``slow`` tests first, each group in its collected order: with ``-n`` the long ones start early and
    the short ones fill the workers in at the end, instead of one worker finishing a long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
