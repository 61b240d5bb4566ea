"""A Monte Carlo study saved beside its run: ``montecarlo.json`` (the distributions, settings and the
probabilities of loss and ruin) and ``montecarlo_bands.parquet`` (the fan chart), written atomically, read
back by the report.

Examples
--------
>>> import backforge as bf, tempfile, pathlib
>>> from backforge.research.montecarlo import monte_carlo
>>> data = bf.synth(n_assets=1, years=2, seed=3)
>>> folder = bf.from_signals(data, data.close > data.open, data.close < data.open).save(pathlib.Path(tempfile.mkdtemp()) / "r")
>>> summary = save_monte_carlo(folder, monte_carlo(bf.load_result(folder), n_simulations=200, seed=1))
>>> load_monte_carlo(folder)["bands"].columns[:3], 0.0 <= summary["probability_of_loss"] <= 1.0
(['step', 'p5', 'p25'], True)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["save_monte_carlo", "load_monte_carlo"]

SUMMARY_FILE = "montecarlo.json"
BANDS_FILE = "montecarlo_bands.parquet"


def _atomic_write(path: Path, write) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_monte_carlo(folder: str | Path, mc: Any) -> dict[str, Any]:
    """Write ``mc`` (a :class:`~backforge.research.montecarlo.MonteCarloResult`) into a run folder; return its
    summary with ``probability_of_loss`` (share of paths ending below the starting equity)."""
    folder = Path(folder)
    summary = mc.summary()
    summary["probability_of_loss"] = float(np.mean(mc.final_equity < mc.initial_equity))
    _atomic_write(folder / BANDS_FILE, lambda temp: mc.bands.write_parquet(temp))
    _atomic_write(folder / SUMMARY_FILE, lambda temp: Path(temp).write_text(json.dumps(summary, indent=2)))
    return summary


def load_monte_carlo(folder: str | Path) -> dict[str, Any] | None:
    """The saved study of a run folder (``summary`` and ``bands``), or None when there is none or it is damaged."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        bands = pl.read_parquet(folder / BANDS_FILE)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None
    if not isinstance(summary, dict) or "step" not in bands.columns:
        return None
    return {"summary": summary, "bands": bands}
