"""`Result`: what a backtest produced, as Polars DataFrames at the edge.

The core writes record arrays; this module is the one place that turns them into tables with
timestamps, asset names and readable codes. Tables are built lazily and cached. The analysis they
share with a saved run (metrics, drawdowns, returns, the report) is :class:`RunAnalysis`
(:mod:`backforge.results.analysis`); saved runs are :mod:`backforge.results.saved`. Both are
re-exported here, so ``from backforge.results.result import SavedRun, load_result`` keeps working.
"""

from __future__ import annotations

import platform
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine.config import SignalConfig, SimConfig
from backforge.engine.records import EventKind, OrderRole, OrderStatus, OrderType, Reason, SizeType, TimeInForce
from backforge.errors import BackforgeError
from backforge.results.analysis import (
    _PROTECTIVE_ROLES, CHART_BUCKETS, EQUAL_WEIGHT, RunAnalysis, _timestamp_text, _traded_notional,
    equal_weight_benchmark, equal_weight_benchmark_nb,
)
from backforge.results.saved import (  # SavedRun, load_result, compare_runs, MissingRunFile: re-exported
    MissingRunFile, SavedRun, _swap_into_place, _write_json, compare_runs, load_result,
)

__all__ = ["Result", "SavedRun", "RunAnalysis", "load_result", "compare_runs", "equal_weight_benchmark", "EQUAL_WEIGHT"]

_UTC = pl.Datetime("ns", "UTC")


def _codes(values: np.ndarray, table) -> pl.Series:
    """Integer codes to their names (an unknown code becomes its number as text), vectorized."""
    names = {str(code): name for code, (name, _) in table._descriptions.items()}
    return pl.Series(np.asarray(values, dtype=np.int64)).cast(pl.String).replace(names)


class Result(RunAnalysis):
    """The outcome of a backtest: equity, cash, exposure, positions, orders, the order log, fills,
    trades and a summary.

    Every table is a Polars DataFrame (call ``.to_pandas()`` for pandas). Timestamps are UTC.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    >>> result.equity.columns
    ['timestamp', 'equity', 'cash', 'gross_exposure', 'net_exposure']
    """

    def __init__(self, *, data: MarketData, state: k.State, sim_config: SimConfig,
                 signal_config: SignalConfig | None, mode: str, strategy: dict | None = None) -> None:
        self.data = data
        self._state = state  # a k.State, or independent accounts' MergedState (fields merged when first read)
        self.sim_config = sim_config
        self.signal_config = signal_config
        self.mode = mode
        self.strategy = strategy
        self.signal_events: pl.DataFrame | None = None
        self.data_source: dict | None = None
        self.risk_config: Any = None  # the RiskConfig of from_signals/simulate runs (strategy runs: in strategy)
        self.risk_bar_offset = 0  # bars of warm-up before the run (risk-event bars index the compiled data)
        self.class_run: dict | None = None  # a Strategy class's run: what the judge re-runs it with (in memory only)

    @property
    def risk_events(self) -> pl.DataFrame:
        """What the risk rules did: every entry blocked or scaled, every fill reduced, every halt and
        resume, with a ``message`` naming the rule and the values (empty without risk rules)."""
        from backforge.engine.risk import risk_events_frame

        names = tuple(s.get("name", "") for s in (self.strategy or {}).get("strategies", []))
        return risk_events_frame(self._state.risk, self.risk_bar_offset, assets=self.data.assets, strategies=names)

    # ------------------------------------------------------------------ raw arrays
    @property
    def equity_values(self) -> np.ndarray:
        """Equity per bar, float64 ``[T]``."""
        return self._state.equity

    @property
    def state(self) -> k.State:
        """The final core state (record arrays and counters)."""
        if not isinstance(self._state, k.State):  # independent accounts' MergedState: every field merged now
            self._state = self._state.state()
        return self._state

    def _records(self, name: str, counter: int) -> np.ndarray:
        return getattr(self._state, name)[: int(self._state.counters[counter])]

    @property
    def order_records(self) -> np.ndarray:
        return self._records("orders", k.C_ORDERS)

    @property
    def fill_records(self) -> np.ndarray:
        return self._records("fills", k.C_FILLS)

    @property
    def trade_records(self) -> np.ndarray:
        return self._records("trades", k.C_TRADES)

    @property
    def event_records(self) -> np.ndarray:
        return self._records("events", k.C_EVENTS)

    # ------------------------------------------------------------------ tables
    def _time(self, ns: np.ndarray) -> pl.Series:
        return pl.Series(np.asarray(ns, dtype=np.int64)).cast(_UTC)

    def _asset_names(self, idx: np.ndarray) -> pl.Series:
        assets = list(self.data.assets)
        return pl.Series(np.asarray(idx, dtype=np.int64)).replace_strict(
            list(range(len(assets))), assets, default=None, return_dtype=pl.String)

    @cached_property
    def equity(self) -> pl.DataFrame:
        """Per bar: timestamp, equity, cash, gross and net exposure (position values at the close)."""
        s = self._state
        return pl.DataFrame({
            "timestamp": self._time(self.data.timestamps),
            "equity": s.equity, "cash": s.cash_history,
            "gross_exposure": s.gross_exposure, "net_exposure": s.net_exposure,
        })

    @cached_property
    def positions(self) -> pl.DataFrame:
        """Per bar: the signed position in units of every asset (one column per asset)."""
        if self._state.positions.shape[0] == 0:
            raise BackforgeError("positions were not recorded (record_positions=False)", field="positions")
        cols = {"timestamp": self._time(self.data.timestamps)}
        for j, name in enumerate(self.data.assets):
            cols[name] = self._state.positions[:, j]
        return pl.DataFrame(cols)

    @cached_property
    def exposure(self) -> pl.DataFrame:
        """Per bar: gross and net exposure as fractions of equity."""
        s = self._state
        with np.errstate(divide="ignore", invalid="ignore"):
            gross = np.where(s.equity != 0, s.gross_exposure / s.equity, 0.0)
            net = np.where(s.equity != 0, s.net_exposure / s.equity, 0.0)
        return pl.DataFrame({"timestamp": self._time(self.data.timestamps), "gross": gross, "net": net})

    @cached_property
    def orders(self) -> pl.DataFrame:
        """Every order with its final status, reason, fill and bracket links."""
        return self._orders_frame(self.order_records)

    def _orders_frame(self, r: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({
            "order_id": r["id"], "created": self._time(r["created_ts"]), "created_bar": r["created_bar"],
            "asset": self._asset_names(r["asset"]), "side": np.where(r["side"] > 0, "buy", "sell"),
            "order_type": _codes(r["order_type"], OrderType), "role": _codes(r["role"], OrderRole),
            "size_type": _codes(r["size_type"], SizeType), "size": r["size"],
            "limit_price": r["limit_price"], "stop_price": r["stop_price"],
            "time_in_force": _codes(r["tif"], TimeInForce), "status": _codes(r["status"], OrderStatus),
            "reason": _codes(r["reason"], Reason), "parent_id": r["parent_id"],
            "filled": self._time(r["fill_ts"]), "fill_bar": r["fill_bar"], "fill_price": r["fill_price"],
            "filled_qty": r["filled_qty"], "fee": r["fee"],
        }).with_columns(pl.when(pl.col("fill_bar") >= 0).then(pl.col("filled")).alias("filled"))

    @cached_property
    def order_log(self) -> pl.DataFrame:
        """Every state change of every order (submitted, triggered, filled, cancelled...) with its reason."""
        return self._order_log_frame(self.event_records)

    def _order_log_frame(self, r: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({
            "timestamp": self._time(r["ts"]), "bar": r["bar"], "order_id": r["order_id"],
            "event": _codes(r["kind"], EventKind), "reason": _codes(r["reason"], Reason),
            "price": r["price"], "qty": r["qty"],
        })

    def _protective_orders(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        # filter the records before building tables: minute runs have millions of orders
        orders = self.order_records
        stops = orders[np.isin(orders["role"], [OrderRole.code(role) for role in _PROTECTIVE_ROLES])]
        events = self.event_records
        return self._orders_frame(stops), self._order_log_frame(events[np.isin(events["order_id"], stops["id"])])

    @cached_property
    def fills(self) -> pl.DataFrame:
        """Executions: signed quantity, price paid, the bar price the rules chose, slippage, fee."""
        r = self.fill_records
        return pl.DataFrame({
            "timestamp": self._time(r["ts"]), "bar": r["bar"], "order_id": r["order_id"],
            "asset": self._asset_names(r["asset"]), "qty": r["qty"], "price": r["price"],
            "quote_price": r["quote_price"], "slippage": r["slippage"], "fee": r["fee"],
            "role": _codes(r["role"], OrderRole), "position_after": r["position_after"], "cash_after": r["cash_after"],
        })

    def _open_trade_records(self) -> np.ndarray:
        """Positions still open at the end, valued at the last mark (``is_open = 1``)."""
        s = self._state
        from backforge.engine.records import trade_dt

        rows = []
        n_bars = int(s.counters[k.C_BARS])
        last_ts = int(self.data.timestamps[n_bars - 1]) if n_bars else 0
        for a in np.flatnonzero(s.position != 0.0):
            pos = float(s.position[a])
            direction = 1 if pos > 0 else -1
            entry, exit_ = float(s.avg_price[a]), float(s.mark[a])
            qty = abs(pos)
            fees = float(s.entry_fees[a])
            pnl = direction * (exit_ - entry) * qty - fees
            hi, lo = max(float(s.extreme_high[a]), exit_), min(float(s.extreme_low[a]), exit_)
            mae = lo / entry - 1 if direction > 0 else 1 - hi / entry
            mfe = hi / entry - 1 if direction > 0 else 1 - lo / entry
            rows.append((a, direction, qty, s.open_bar[a], s.open_ts[a], entry, n_bars - 1, last_ts, exit_, fees, pnl,
                         pnl / (entry * qty) if entry * qty else 0.0, mae, mfe, OrderRole.END_OF_DATA, 1))
        return np.array(rows, dtype=trade_dt) if rows else np.zeros(0, dtype=trade_dt)

    @cached_property
    def trades(self) -> pl.DataFrame:
        """Closed trades (one per reducing fill) followed by positions still open at the end (``is_open``).

        Columns: asset, direction (long/short), qty, entry/exit time, bar and price, fees, pnl (net of
        fees), return (pnl / entry value), mae and mfe (fractions of the entry price), duration, bars
        held, exit reason.
        """
        r = np.concatenate([self.trade_records, self._open_trade_records()])
        return pl.DataFrame({
            "asset": self._asset_names(r["asset"]), "direction": np.where(r["direction"] > 0, "long", "short"),
            "qty": r["qty"], "entry_time": self._time(r["entry_ts"]), "entry_bar": r["entry_bar"],
            "entry_price": r["entry_price"], "exit_time": self._time(r["exit_ts"]), "exit_bar": r["exit_bar"],
            "exit_price": r["exit_price"], "fees": r["fees"], "pnl": r["pnl"], "return": r["ret"],
            "mae": r["mae"], "mfe": r["mfe"],
            "duration": pl.Series(r["exit_ts"] - r["entry_ts"]).cast(pl.Duration("ns")),
            "bars": r["exit_bar"] - r["entry_bar"], "exit_reason": _codes(r["exit_role"], OrderRole),
            "is_open": r["is_open"].astype(bool),
        })

    # ------------------------------------------------------------------ analysis inputs
    @property
    def timestamps_ns(self) -> np.ndarray:
        """int64 ns UTC timestamps ``[T]`` of the bars."""
        return self.data.timestamps

    @property
    def initial_cash(self) -> float:
        """Starting cash."""
        return float(self.sim_config.cash)

    @property
    def assets(self) -> tuple[str, ...]:
        """Asset names, in column order."""
        return tuple(self.data.assets)

    def _exposure_values(self) -> tuple[np.ndarray, np.ndarray]:
        return self._state.gross_exposure, self._state.net_exposure

    def _closed_trades(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.trade_records
        return r["pnl"], r["ret"], r["exit_ts"] - r["entry_ts"]

    def _traded_notional(self) -> np.ndarray:
        fills = self.fill_records
        return _traded_notional(fills["bar"], fills["qty"], fills["price"], len(self.data.timestamps))

    def _equal_weight(self) -> np.ndarray | None:
        if "_equal_weight_curve" not in self.__dict__:
            self.__dict__["_equal_weight_curve"] = equal_weight_benchmark(self.data.close, self.initial_cash)
        return self.__dict__["_equal_weight_curve"]

    def _costs(self) -> dict[str, Any]:
        s = self._state
        return {
            "fees": float(s.totals[k.T_FEES]), "financing": float(s.totals[k.T_FINANCING]),
            "slippage": float(s.totals[k.T_SLIPPAGE]), "orders": int(s.counters[k.C_ORDERS]),
            "fills": int(s.counters[k.C_FILLS]), "open_positions": int(np.count_nonzero(s.position)),
        }

    def chart_prices(self, asset: int, buckets: int = CHART_BUCKETS) -> tuple[np.ndarray, np.ndarray] | None:
        """Timestamps and closes of asset number ``asset`` (bars it trades on), keeping the minimum
        and maximum of every one of ``buckets`` buckets (:func:`backforge.results.report.minmax_indices`).

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=10, seed=3)
        >>> ts, close = bf.from_signals(data, data.close > data.open).chart_prices(0, buckets=100)
        >>> len(close) <= 202, bool(close.max() == data.close.max())
        (True, True)
        """
        from backforge.results.report import minmax_indices

        close = self.data.close[:, asset]
        present = np.flatnonzero(np.isfinite(close))
        keep = present[minmax_indices(close[present], buckets)]
        return self.data.timestamps[keep], close[keep]

    def config_document(self) -> dict[str, Any]:
        """The run's config as saved in ``config.json``: mode, sim and signal config, strategy, data source."""
        return {
            "mode": self.mode,
            "sim_config": self.sim_config.model_dump(mode="json"),
            "signal_config": self.signal_config.model_dump(mode="json") if self.signal_config else None,
            "strategy": self.strategy,
            "data_source": self.data_source,
        } | ({"risk_config": self.risk_config.model_dump(mode="json")} if self.risk_config is not None else {})

    def metadata_document(self) -> dict[str, Any]:
        """Versions, data fingerprint, seed, run id, assets and bars, as saved in ``metadata.json``."""
        from backforge import __version__
        from backforge._time import format_duration, median_bar_ns
        from backforge.engine.config import config_hash

        import importlib.metadata as importlib_metadata

        versions = {"python": platform.python_version()}
        for package in ("numpy", "numba", "polars", "pyarrow", "pandas", "pydantic", "plotly"):
            try:
                versions[package] = importlib_metadata.version(package)
            except importlib_metadata.PackageNotFoundError:
                versions[package] = None
        if "_fingerprint" not in self.__dict__:
            self.__dict__["_fingerprint"] = self.data.fingerprint()
        fingerprint = self.__dict__["_fingerprint"]
        models = [self.sim_config] + ([self.signal_config] if self.signal_config else [])
        ts = self.data.timestamps
        if "_bar_ns" not in self.__dict__:
            self.__dict__["_bar_ns"] = median_bar_ns(ts)
        bar = self.__dict__["_bar_ns"]
        return {
            "backforge_version": __version__,
            "versions": versions,
            "platform": platform.platform(),
            "run_id": config_hash(*models, extra={"strategy": self.strategy, "data": fingerprint}),
            "mode": self.mode,
            "assets": list(self.data.assets), "bars": self.data.n_bars,
            "start": _timestamp_text(ts[0]), "end": _timestamp_text(ts[-1]),
            "bar": format_duration(bar) if bar > 0 else None,
            "data_fingerprint": fingerprint, "has_quotes": self.data.has_quotes,
            "seed": _seed_of(self.data_source, self.strategy),
        }

    def summary(self) -> dict[str, Any]:
        """Headline figures: total return, CAGR, Sharpe, max drawdown, trade count, win rate, and costs.

        The figures come from :meth:`metrics` (one implementation): the curve starts at the starting
        cash, CAGR uses calendar time (365.25-day years), Sharpe is annualized with the bars per
        year of :func:`~backforge.results.metrics.periods_per_year_for` (risk-free rate 0), and the
        trade figures count closed trades only (a win rate of 0.0 when there are none).

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> s = bf.from_signals(data, data.close > data.open, data.close < data.open).summary()
        >>> s["bars"], s["trades"] > 0, s["total_return"] == s["final_equity"] / s["initial_cash"] - 1
        (252, True, True)
        """
        return _summary_of(self.metrics())

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Result({s['bars']} bars × {s['assets']} assets, total return {s['total_return']:.2%}, "
                f"Sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%}, {s['trades']} trades)")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, report: bool = False, title: str | None = None) -> Path:
        """Write the run to a folder and return the folder.

        Contents: Parquet tables (``equity``, ``fills``, ``trades``, ``orders``, ``order_log``,
        ``positions``, ``signal_events`` for strategy runs, ``benchmark``: the equal-weight
        buy-and-hold equity per bar, ``chart_prices``: each asset's closes min/max-downsampled for
        charts) and JSON documents (``config``: everything needed to re-run; ``summary``;
        ``metrics``: :meth:`metrics` against the equal-weight benchmark plus the benchmark's own
        metrics; ``metadata``: versions, data fingerprint, seed, run id). With ``report=True`` the
        HTML tear sheet (titled ``title``) is written as ``report.html`` too, inside the folder before
        it is put in place. :func:`load_result` reads it back.

        The folder is written to a temporary sibling and swapped into place atomically (Linux
        ``renameat2(RENAME_EXCHANGE)``), so a crash never leaves a half-written run and concurrent saves
        to the same folder never collide: readers see the old run or the new one, never a mix or nothing.

        Examples
        --------
        >>> import backforge as bf, tempfile, pathlib
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
        >>> folder = result.save(pathlib.Path(tempfile.mkdtemp()) / "run")
        >>> sorted(p.name for p in folder.iterdir())[:4]
        ['benchmark.parquet', 'chart_prices.parquet', 'config.json', 'equity.parquet']
        """
        import shutil
        import tempfile

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.equity.write_parquet(tmp / "equity.parquet")
            self.fills.write_parquet(tmp / "fills.parquet")
            self.trades.write_parquet(tmp / "trades.parquet")
            self.orders.write_parquet(tmp / "orders.parquet")
            self.order_log.write_parquet(tmp / "order_log.parquet")
            if self._state.positions.shape[0]:
                self.positions.write_parquet(tmp / "positions.parquet")
            if self.signal_events is not None:
                self.signal_events.write_parquet(tmp / "signal_events.parquet")
            if int(self._state.risk.on[0]):
                self.risk_events.write_parquet(tmp / "risk_events.parquet")
            pl.DataFrame({EQUAL_WEIGHT: self._equal_weight()}).write_parquet(tmp / "benchmark.parquet")
            self._chart_price_table().write_parquet(tmp / "chart_prices.parquet")
            _write_json(tmp / "config.json", self.config_document(), sort_keys=True)
            _write_json(tmp / "summary.json", self.summary())
            _write_json(tmp / "metrics.json", {
                "options": {"benchmark": EQUAL_WEIGHT, "risk_free": 0.0, "calendar": "auto"},
                "metrics": self.metrics(benchmark=EQUAL_WEIGHT),
                "benchmark": self.benchmark_metrics(EQUAL_WEIGHT),
            })
            from datetime import datetime, timezone

            _write_json(tmp / "metadata.json", {**self.metadata_document(),
                                                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            if report:
                self.write_html(tmp / "report.html", run_folder=target, **({"title": title} if title else {}))
            _swap_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _chart_price_table(self) -> pl.DataFrame:
        parts = []
        for j, name in enumerate(self.data.assets):
            ts, close = self.chart_prices(j)
            parts.append(pl.DataFrame({
                "asset": pl.Series([name] * len(ts), dtype=pl.String),
                "timestamp": pl.Series(np.asarray(ts, dtype=np.int64)).cast(_UTC),
                "close": pl.Series(close, dtype=pl.Float64),
            }))
        return pl.concat(parts)


def _seed_of(data_source: dict | None, strategy: dict | None) -> int | None:
    """The seed of the data when it was generated (the demo, a strategy's synthetic data spec)."""
    if data_source and data_source.get("seed") is not None:
        return data_source["seed"]
    synthetic = (data_source or {}).get("synthetic")
    if isinstance(synthetic, dict) and synthetic.get("seed") is not None:
        return synthetic["seed"]
    spec = (strategy or {}).get("data") or {}
    if isinstance(spec, dict) and spec.get("source", "synthetic") == "synthetic" and not (data_source or {}).get("data"):
        return spec.get("seed")
    return None


_SUMMARY_KEYS = ("start", "end", "bars", "assets", "initial_cash", "final_equity", "total_return", "cagr", "sharpe",
                 "max_drawdown", "trades", "win_rate", "open_positions", "fees", "financing", "slippage", "orders", "fills")


def _summary_of(m: dict[str, Any]) -> dict[str, Any]:
    """The headline subset of a metrics dict, under the summary's historical key names."""
    return {key: m["n_trades"] if key == "trades" else m[key] for key in _SUMMARY_KEYS}
