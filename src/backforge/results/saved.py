"""Saved runs: the folder a :meth:`~backforge.results.result.Result.save` writes (JSON documents that
survive infinities, an atomic swap into place) and :class:`SavedRun`, the folder read back, with
:func:`load_result` and :func:`compare_runs`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl

from backforge.errors import BackforgeError, ConfigError
from backforge.results.analysis import (
    _BENCHMARK_KEYS, _PROTECTIVE_ROLES, CHART_BUCKETS, EQUAL_WEIGHT, RunAnalysis, _plain, _traded_notional,
)

__all__ = ["SavedRun", "MissingRunFile", "load_result", "compare_runs"]


def _exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unavailable or
    when ``b`` does not exist."""
    import ctypes
    import errno
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target``, replacing a previous run there atomically.

    A missing target is a plain rename; an existing one is exchanged with ``tmp`` in one system call
    (then ``tmp`` holds the old run and is removed). Where exchange is unavailable the old run is
    renamed aside first (readers may then briefly find no folder, never a half one). Concurrent saves
    retry until one of these succeeds.
    """
    import errno
    import os
    import secrets
    import shutil

    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BackforgeError("exists and is not a run folder; choose another output name", path=str(target))
    for _ in range(1000):
        if _exchange_paths(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if not target.exists():
            try:
                os.rename(tmp, target)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
                continue  # another save got there first: exchange with it
        aside = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, target)
        except OSError:
            continue
        finally:
            shutil.rmtree(aside, ignore_errors=True)
        return
    raise BackforgeError("could not put the run folder in place (too many concurrent saves)", path=str(target))


# ---------------------------------------------------------------------------------------- JSON
def _json_safe(value: Any) -> Any:
    """JSON without NaN/Infinity literals: ``inf`` -> ``"inf"``, NaN -> null; NumPy -> Python."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    value = _plain(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _json_restore(value: Any) -> Any:
    """Inverse of :func:`_json_safe` for numbers: ``"inf"``/``"-inf"`` back to floats."""
    if isinstance(value, dict):
        return {key: _json_restore(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_restore(item) for item in value]
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    return value


def _write_json(path: Path, document: Any, *, sort_keys: bool = False) -> None:
    path.write_text(json.dumps(_json_safe(document), indent=2, sort_keys=sort_keys, allow_nan=False))


# ---------------------------------------------------------------------------------------- saved runs
_REQUIRED_JSON = ("config", "summary", "metadata")
_REQUIRED_TABLES = ("equity",)


class MissingRunFile(BackforgeError, KeyError):
    """A file every saved run has is missing (also a ``KeyError``, as a mapping lookup would raise)."""

    __str__ = BackforgeError.__str__


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _check_saved_run(folder: Path, documents: dict[str, Any], tables: dict[str, Path]) -> None:
    """Refuse a damaged run folder up front, naming the file: what every reader of a saved run
    (report, compare, judge, explain) relies on must be there and have the right shape."""
    for name in _REQUIRED_TABLES:
        if name not in tables:
            raise BackforgeError(f"saved run is incomplete: {name}.parquet is missing; re-run the backtest to "
                                 "recreate it", path=str(folder / f"{name}.parquet"))
    config_file = str(folder / "config.json")
    sim = documents["config"].get("sim_config")
    if not isinstance(sim, dict):
        raise BackforgeError("config.json has no sim_config object: not a backforge run or a damaged one; re-run "
                             "the backtest to recreate it", path=config_file)
    cash = sim.get("cash")
    if isinstance(cash, bool) or not isinstance(cash, (int, float)) or not math.isfinite(cash) or cash <= 0:
        raise BackforgeError(f"config.json: sim_config.cash must be a positive number, got {cash!r}", path=config_file)
    assets = documents["metadata"].get("assets")
    if not isinstance(assets, list) or not all(isinstance(a, str) for a in assets):
        raise BackforgeError("metadata.json has no list of assets: a damaged run; re-run the backtest to recreate it",
                             path=str(folder / "metadata.json"))
    summary = documents["summary"]
    for key in ("start", "end"):
        if not isinstance(summary.get(key), str):
            raise BackforgeError(f"summary.json has no {key!r} date: a damaged run; re-run the backtest to recreate it",
                                 path=str(folder / "summary.json"))
    metrics = documents.get("metrics")
    if metrics is not None:
        if not isinstance(metrics.get("metrics"), dict):
            raise BackforgeError("metrics.json has no 'metrics' object: a damaged run; re-run the backtest to "
                                 "recreate it", path=str(folder / "metrics.json"))
        for key in ("options", "benchmark"):
            if metrics.get(key) is not None and not isinstance(metrics[key], dict):
                raise BackforgeError(f"metrics.json: {key!r} must be an object, got a {_json_kind(metrics[key])}",
                                     path=str(folder / "metrics.json"))


class SavedRun(RunAnalysis, Mapping):
    """A saved run folder read back: tables (Polars, read lazily) and JSON documents.

    It offers what a :class:`Result` offers for reporting and comparing without re-running:
    :meth:`metrics`, :meth:`summary`, :attr:`returns`, :attr:`drawdowns`, :meth:`to_html`,
    :meth:`write_html`, the tables (``equity``, ``trades``, ``orders``, ``order_log``, ``fills``,
    ``positions``, ``signal_events``) and ``config``/``metadata``. It is also a read-only mapping
    from file stem to content (``run["trades"]``, ``run["config"]``), as ``load_result`` returned
    before. :meth:`metrics` with the saved options returns the saved ``metrics.json`` unchanged.

    Examples
    --------
    >>> import backforge as bf, tempfile, pathlib
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    >>> run = bf.load_result(result.save(pathlib.Path(tempfile.mkdtemp()) / "r"))
    >>> run.metrics()["sharpe"] == result.metrics()["sharpe"], run.trades.height == result.trades.height
    (True, True)
    """

    def __init__(self, path: str | Path) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise BackforgeError("no saved run here (not a folder)", path=str(folder))
        self.path = folder
        self.name = folder.name
        self._documents: dict[str, Any] = {}
        for name in _REQUIRED_JSON:
            if not (folder / f"{name}.json").exists():
                raise BackforgeError(f"saved run is incomplete: {name}.json is missing", path=str(folder))
        for file in sorted(folder.glob("*.json")):
            try:
                document = json.loads(file.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
                raise BackforgeError(f"{file.name} is corrupted: {reason}{where}", path=str(file)) from None
            except OSError as exc:
                raise BackforgeError(f"{file.name} cannot be read: {exc.strerror}", path=str(file)) from None
            if not isinstance(document, dict):
                raise BackforgeError(f"{file.name} is damaged: it holds a JSON {_json_kind(document)}, not an object; "
                                     "re-run the backtest to recreate it", path=str(file))
            self._documents[file.stem] = _json_restore(document)
        self._tables = {file.stem: file for file in sorted(folder.glob("*.parquet"))}
        self._loaded: dict[str, pl.DataFrame] = {}
        _check_saved_run(folder, self._documents, self._tables)

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, key: str) -> Any:
        if key in self._documents:
            return self._documents[key]
        if key in self._tables:
            if key not in self._loaded:
                file = self._tables[key]
                try:
                    self._loaded[key] = pl.read_parquet(file)
                except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupted file
                    raise BackforgeError(f"{file.name} cannot be read: {exc}", path=str(file)) from None
            return self._loaded[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._documents, *self._tables}))

    def __len__(self) -> int:
        return len({*self._documents, *self._tables})

    def __repr__(self) -> str:
        s = self.summary()
        return (f"SavedRun({str(self.path)!r}: {s['bars']} bars × {s['assets']} assets, total return "
                f"{s['total_return']:.2%}, {s['trades']} trades)")

    def _table(self, name: str) -> pl.DataFrame | None:
        return self[name] if name in self._tables else None

    def _required(self, name: str) -> pl.DataFrame:
        """A table every saved run has: a clear error naming the file when it is missing."""
        if name not in self._tables:
            raise MissingRunFile(f"saved run is incomplete: {name}.parquet is missing; re-run the backtest to "
                                 "recreate it", path=str(self.path / f"{name}.parquet"))
        return self[name]

    # ------------------------------------------------------------------ documents and tables
    @property
    def config(self) -> dict[str, Any]:
        """``config.json``: mode, sim and signal config, strategy, data source."""
        return self._documents["config"]

    @property
    def metadata(self) -> dict[str, Any]:
        """``metadata.json``: versions, data fingerprint, seed, run id, assets, bars."""
        return self._documents["metadata"]

    @property
    def equity(self) -> pl.DataFrame:
        """Per bar: timestamp, equity, cash, gross and net exposure."""
        return self._required("equity")

    @property
    def trades(self) -> pl.DataFrame:
        """Closed trades followed by positions open at the end (``is_open``)."""
        return self._required("trades")

    @property
    def orders(self) -> pl.DataFrame:
        """Every order with its final status."""
        return self._required("orders")

    @property
    def order_log(self) -> pl.DataFrame:
        """Every state change of every order."""
        return self._required("order_log")

    @property
    def fills(self) -> pl.DataFrame:
        """Executions."""
        return self._required("fills")

    @property
    def positions(self) -> pl.DataFrame | None:
        """Per-bar positions, or None when they were not recorded."""
        return self._table("positions")

    @property
    def signal_events(self) -> pl.DataFrame | None:
        """The strategy's signal-event audit, or None for runs not made from a strategy."""
        return self._table("signal_events")

    @property
    def risk_events(self) -> pl.DataFrame | None:
        """What the risk rules did (see :attr:`Result.risk_events`), or None for runs without rules."""
        return self._table("risk_events")

    # ------------------------------------------------------------------ analysis inputs
    @cached_property
    def timestamps_ns(self) -> np.ndarray:
        """int64 ns UTC timestamps ``[T]``."""
        return self.equity["timestamp"].cast(pl.Int64).to_numpy()

    @cached_property
    def equity_values(self) -> np.ndarray:
        """Equity per bar, float64 ``[T]``."""
        return self.equity["equity"].to_numpy().astype(np.float64)

    @property
    def initial_cash(self) -> float:
        """Starting cash (``config.sim_config.cash``)."""
        return float(self.config["sim_config"]["cash"])

    @property
    def assets(self) -> tuple[str, ...]:
        """Asset names."""
        return tuple(self.metadata["assets"])

    def _exposure_values(self) -> tuple[np.ndarray, np.ndarray]:
        frame = self.equity
        return frame["gross_exposure"].to_numpy().astype(np.float64), frame["net_exposure"].to_numpy().astype(np.float64)

    def _closed_trades(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        closed = self.trades.filter(~pl.col("is_open"))
        durations = (closed["exit_time"].cast(pl.Int64) - closed["entry_time"].cast(pl.Int64)).to_numpy()
        return (closed["pnl"].to_numpy().astype(np.float64), closed["return"].to_numpy().astype(np.float64),
                durations.astype(np.int64))

    def _traded_notional(self) -> np.ndarray:
        fills = self.fills
        return _traded_notional(fills["bar"].to_numpy(), fills["qty"].to_numpy(), fills["price"].to_numpy(),
                                len(self.timestamps_ns))

    def _equal_weight(self) -> np.ndarray | None:
        table = self._table("benchmark")
        if table is None or EQUAL_WEIGHT not in table.columns:
            return None
        return table[EQUAL_WEIGHT].to_numpy().astype(np.float64)

    def _protective_orders(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        # read only the rows needed (orders and order logs of minute runs hold millions of rows)
        try:
            stops = pl.scan_parquet(self._tables["orders"]).filter(pl.col("role").is_in(list(_PROTECTIVE_ROLES))).collect()
            log = pl.scan_parquet(self._tables["order_log"]).filter(
                pl.col("order_id").is_in(stops["order_id"].implode())).collect()
        except KeyError as exc:
            raise BackforgeError(f"saved run is incomplete: {exc.args[0]}.parquet is missing", path=str(self.path)) from None
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupted file
            raise BackforgeError(f"orders cannot be read: {exc}", path=str(self.path)) from None
        return stops, log

    def _costs(self) -> dict[str, Any]:
        s = self._documents["summary"]
        return {key: s.get(key) for key in ("fees", "financing", "slippage", "orders", "fills", "open_positions")}

    def chart_prices(self, asset: int, buckets: int = CHART_BUCKETS) -> tuple[np.ndarray, np.ndarray] | None:
        """The saved chart closes of asset number ``asset`` (``chart_prices.parquet``; None for runs
        saved without it), downsampled further when ``buckets`` is smaller than at saving."""
        from backforge.results.report import minmax_indices

        table = self._table("chart_prices")
        if table is None:
            return None
        part = table.filter(pl.col("asset") == self.assets[asset])
        ts = part["timestamp"].cast(pl.Int64).to_numpy()
        close = part["close"].to_numpy().astype(np.float64)
        keep = minmax_indices(close, buckets)
        return ts[keep], close[keep]

    def config_document(self) -> dict[str, Any]:
        """The saved ``config.json``."""
        return self.config

    def metadata_document(self) -> dict[str, Any]:
        """The saved ``metadata.json``."""
        return self.metadata

    # ------------------------------------------------------------------ figures
    def summary(self) -> dict[str, Any]:
        """The saved ``summary.json`` (the headline figures of :meth:`Result.summary`)."""
        return dict(self._documents["summary"])

    def metrics(self, benchmark: Any = None, risk_free: float = 0.0, calendar: str | float = "auto") -> dict[str, Any]:
        """Every metric of the run; see :meth:`RunAnalysis.metrics`.

        With the options ``metrics.json`` was saved with (risk-free 0, calendar ``"auto"``, and no
        benchmark or the equal-weight one) the saved values are returned as they are; otherwise
        they are recomputed from the saved tables with the same code.
        """
        saved = self._documents.get("metrics")
        if saved and isinstance(benchmark, (str, type(None))):
            options = saved.get("options", {})
            same = float(risk_free) == float(options.get("risk_free", 0.0)) and calendar == options.get("calendar")
            if same and (benchmark is None or benchmark == options.get("benchmark")):
                values = dict(saved["metrics"])
                if benchmark is None:
                    for key in _BENCHMARK_KEYS:
                        values.pop(key, None)
                return values
        return super().metrics(benchmark, risk_free, calendar)

    def benchmark_metrics(self, benchmark: Any = EQUAL_WEIGHT, risk_free: float = 0.0,
                          calendar: str | float = "auto") -> dict[str, Any] | None:
        """The benchmark's own equity metrics; the saved ones when the options match."""
        saved = self._documents.get("metrics")
        if saved and saved.get("benchmark") and benchmark == saved.get("options", {}).get("benchmark") \
                and float(risk_free) == 0.0 and calendar == "auto":
            return dict(saved["benchmark"])
        return super().benchmark_metrics(benchmark, risk_free, calendar)


def load_result(path: str | Path) -> SavedRun:
    """Read a saved run folder back as a :class:`SavedRun`: tables (Polars, read when first used),
    JSON documents, metrics, and the HTML report, without re-running anything.

    Raises :class:`~backforge.errors.BackforgeError` naming the file when the folder is not a run, a
    JSON document is missing or corrupted, or a table cannot be read.

    Examples
    --------
    >>> import backforge as bf, tempfile, pathlib
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> folder = bf.from_signals(data, data.close > data.open).save(pathlib.Path(tempfile.mkdtemp()) / "r")
    >>> run = bf.load_result(folder)
    >>> sorted(run)[:4]
    ['benchmark', 'chart_prices', 'config', 'equity']
    >>> run["summary"]["bars"], run.trades.columns[:2]
    (252, ['asset', 'direction'])
    """
    return SavedRun(path)


def compare_runs(runs: Any, *, keys: Any = None, benchmark: Any = EQUAL_WEIGHT) -> pl.DataFrame:
    """Metrics of several runs side by side: one row per metric, one Float64 column per run.

    Parameters
    ----------
    runs
        Saved run folders (paths), :class:`SavedRun` or :class:`Result` objects. Saved runs are
        read from their ``metrics.json`` (nothing is re-run).
    keys
        Metric keys to list, in order (default: every numeric key of the first run, then any other).
    benchmark
        Benchmark for alpha/beta (see :meth:`RunAnalysis.benchmark_equity`).

    Returns
    -------
    polars.DataFrame
        Column ``metric`` then one column per run, named after its folder (``run 1``... for live
        results; duplicates get a suffix); null where a run lacks a metric.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> a = bf.from_signals(data, data.close > data.open, data.close < data.open)
    >>> b = bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.01)
    >>> table = compare_runs([a, b], keys=["total_return", "fees"])
    >>> table.columns, table["metric"].to_list()
    (['metric', 'run 1', 'run 2'], ['total_return', 'fees'])
    """
    loaded = [run if isinstance(run, RunAnalysis) else load_result(run) for run in runs]
    if not loaded:
        raise ConfigError("compare needs at least one run", field="runs")
    labels: list[str] = []
    for i, run in enumerate(loaded):
        label = getattr(run, "name", None) or f"run {i + 1}"
        base, n = label, 2
        while label in labels:
            label, n = f"{base} ({n})", n + 1
        labels.append(label)
    values = [run.metrics(benchmark=benchmark) for run in loaded]
    if keys is None:
        keys = []
        for figures in values:
            keys += [key for key, value in figures.items()
                     if key not in keys and isinstance(value, (int, float)) and not isinstance(value, bool)]
    columns: dict[str, Any] = {"metric": pl.Series(list(keys), dtype=pl.String)}
    for label, figures in zip(labels, values):
        cells = []
        for key in keys:
            value = figures.get(key)
            cells.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
        columns[label] = pl.Series(cells, dtype=pl.Float64)
    return pl.DataFrame(columns)
