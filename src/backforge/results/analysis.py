"""The analysis layer shared by a live :class:`~backforge.results.result.Result` and a
:class:`~backforge.results.saved.SavedRun`: :class:`RunAnalysis` (metrics, drawdowns, returns for
QuantStats, the HTML tear sheet) over a few abstract hooks, and the equal-weight benchmark.

Conventions of the analysis layer
---------------------------------
* **The curve starts at the starting cash.** Metrics see ``[initial_cash, equity[0], ..., equity[T-1]]``
  stamped ``[t0, t0, t1, ...]``: the total return is ``final / initial_cash - 1``, the drawdown is
  measured from the starting cash, and the ``T`` returns are exactly :attr:`RunAnalysis.returns`
  (the first is ``equity[0] / initial_cash - 1``, 0.0 unless bar 0 had costs).
* **Bars per year** come from :func:`~backforge.results.metrics.periods_per_year_for` (trading days
  of the calendar times bars per day); CAGR uses calendar time (365.25-day years).
* **Trade figures** use closed trades only; positions still open at the end are listed in
  ``trades`` (``is_open``) but not counted.
* **Defined values**: no metric is NaN (see ``docs/metrics.md``); ``+inf`` can occur (a profit factor
  with no losing trade) and is written to JSON as the string ``"inf"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from backforge._time import format_ns
from backforge.errors import ConfigError, DataError

__all__ = ["RunAnalysis", "equal_weight_benchmark", "EQUAL_WEIGHT", "CHART_BUCKETS"]

_BENCHMARK_KEYS = ("alpha", "beta", "information_ratio", "tracking_error")
_PROTECTIVE_ROLES = ("stop_loss", "take_profit", "trailing_stop")
EQUAL_WEIGHT = "equal_weight"
"""Name of the default benchmark: buy-and-hold of every asset of the run, equal weights."""
_EQUAL_WEIGHT_ALIASES = ("equal_weight", "equal-weight", "buy_and_hold", "buy-and-hold", "buy&hold")
CHART_BUCKETS = 2_000
"""Buckets of the min/max-preserving downsampling of saved chart prices and report charts."""


def _timestamp_text(ns: int) -> str:
    """``'2020-01-02 00:00:00+00:00'`` (:func:`backforge._time.format_ns`)."""
    return format_ns(ns)


def _plain(value: Any) -> Any:
    """NumPy scalars to Python numbers (metrics dicts hold plain floats and ints)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _traded_notional(bars: np.ndarray, qty: np.ndarray, price: np.ndarray, n_bars: int) -> np.ndarray:
    """Absolute notional traded per bar: ``sum(|qty * price|)`` of the fills of each bar."""
    if len(bars) == 0:
        return np.zeros(n_bars)
    weights = np.abs(np.asarray(qty, dtype=np.float64) * np.asarray(price, dtype=np.float64))
    return np.bincount(np.clip(np.asarray(bars, dtype=np.int64), 0, n_bars - 1), weights=weights, minlength=n_bars)


@njit(cache=True)
def equal_weight_benchmark_nb(close: np.ndarray, initial_cash: float) -> np.ndarray:
    """Equity ``[T]`` of an equal-weight buy-and-hold of the ``[T, A]`` closes; see
    :func:`equal_weight_benchmark`. Equivalent to ``initial_cash * mean(where(started, ffill(close) /
    first_close, 1), axis=1)`` with pandas' ``ffill`` (the slow reference in the tests)."""
    n_bars, n_assets = close.shape
    out = np.empty(n_bars)
    first = np.full(n_assets, np.nan)
    last = np.full(n_assets, np.nan)
    share = initial_cash / n_assets
    for t in range(n_bars):
        total = 0.0
        for a in range(n_assets):
            price = close[t, a]
            if np.isfinite(price) and price > 0.0:
                if np.isnan(first[a]):
                    first[a] = price
                last[a] = price
            total += share if np.isnan(first[a]) else share * last[a] / first[a]
        out[t] = total
    return out


def equal_weight_benchmark(close: np.ndarray, initial_cash: float) -> np.ndarray:
    """Equity of buying every asset with an equal share of ``initial_cash`` and holding it.

    Each asset gets ``initial_cash / A`` at its first close; before that the share stays in cash.
    Missing bars (NaN) are valued at the asset's last close (for valuation only: the data itself is
    never filled). An asset without any close stays in cash.

    Parameters
    ----------
    close
        float64 ``[T, A]`` closes, NaN where an asset has no bar.
    initial_cash
        Starting capital.

    Returns
    -------
    numpy.ndarray
        float64 ``[T]``; the first value is ``initial_cash``.

    Examples
    --------
    >>> close = np.array([[10.0, np.nan], [11.0, 20.0], [12.0, 22.0]])
    >>> equal_weight_benchmark(close, 100.0).round(6).tolist()
    [100.0, 105.0, 115.0]
    """
    prices = np.asarray(close, dtype=np.float64)
    if prices.ndim == 1:
        prices = prices[:, np.newaxis]
    if prices.ndim != 2 or prices.shape[1] == 0:
        raise DataError(f"close must be [T, A] with at least one asset, got shape {prices.shape}", field="close")
    return equal_weight_benchmark_nb(np.ascontiguousarray(prices), float(initial_cash))


class RunAnalysis(ABC):
    """Analysis shared by a live :class:`Result` and a :class:`SavedRun`.

    Subclasses provide the raw material (timestamps, equity, the tables, exposure, closed trades,
    traded notional, costs, the benchmark and chart prices: the abstract members below); this class
    turns it into metrics, drawdowns, returns and the HTML report, so there is one implementation of
    each.
    """

    # ------------------------------------------------------------------ provided by subclasses
    @property
    @abstractmethod
    def timestamps_ns(self) -> np.ndarray:
        """int64 ns UTC timestamps ``[T]``."""

    @property
    @abstractmethod
    def equity_values(self) -> np.ndarray:
        """Equity per bar, float64 ``[T]``."""

    @property
    @abstractmethod
    def initial_cash(self) -> float:
        """Starting cash."""

    @property
    @abstractmethod
    def assets(self) -> tuple[str, ...]:
        """Asset names, in column order."""

    @property
    @abstractmethod
    def equity(self) -> pl.DataFrame:
        """Per bar: timestamp, equity, cash, gross and net exposure."""

    @property
    @abstractmethod
    def trades(self) -> pl.DataFrame:
        """Closed trades followed by positions open at the end (``is_open``)."""

    @property
    @abstractmethod
    def orders(self) -> pl.DataFrame:
        """Every order with its final status."""

    @property
    @abstractmethod
    def fills(self) -> pl.DataFrame:
        """Executions."""

    @property
    @abstractmethod
    def order_log(self) -> pl.DataFrame:
        """Every state change of every order."""

    @abstractmethod
    def _exposure_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Gross and net exposure per bar, float64 ``[T]`` each."""

    @abstractmethod
    def _closed_trades(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PnL, return and duration (ns) of every closed trade."""

    @abstractmethod
    def _traded_notional(self) -> np.ndarray:
        """Absolute notional traded per bar, float64 ``[T]`` (:func:`traded_notional`)."""

    @abstractmethod
    def _equal_weight(self) -> np.ndarray | None:
        """The equal-weight buy-and-hold equity ``[T]`` (:func:`equal_weight_benchmark`), or None."""

    @abstractmethod
    def _costs(self) -> dict[str, Any]:
        """Fees, financing, slippage, order and fill counts, positions open at the end."""

    @abstractmethod
    def chart_prices(self, asset: int, buckets: int = CHART_BUCKETS) -> tuple[np.ndarray, np.ndarray] | None:
        """Timestamps and closes of one asset for charts, min/max-downsampled to ``buckets``."""

    @abstractmethod
    def config_document(self) -> dict[str, Any]:
        """The run's config: mode, sim and signal config, strategy, data source."""

    @abstractmethod
    def metadata_document(self) -> dict[str, Any]:
        """Versions, data fingerprint, seed, assets and bars."""

    # ------------------------------------------------------------------ shared analysis
    def _periods_per_year(self, calendar: str | float) -> float:
        """Bars per year of the run's timestamps under ``calendar`` (cached)."""
        from backforge.results.metrics import periods_per_year_for

        cache = self.__dict__.setdefault("_ppy_cache", {})
        if calendar not in cache:
            cache[calendar] = periods_per_year_for(np.asarray(self.timestamps_ns, dtype=np.int64), calendar)
        return cache[calendar]

    def _protective_orders(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Stop-loss, take-profit and trailing-stop orders, and the order-log rows of those orders."""
        stops = self.orders.filter(pl.col("role").is_in(list(_PROTECTIVE_ROLES)))
        return stops, self.order_log.filter(pl.col("order_id").is_in(stops["order_id"].implode()))

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Timestamps ``[T + 1]`` and equity ``[T + 1]`` starting at the starting cash (see module doc)."""
        ts = np.asarray(self.timestamps_ns, dtype=np.int64)
        equity = np.asarray(self.equity_values, dtype=np.float64)
        return np.r_[ts[:1], ts], np.r_[float(self.initial_cash), equity]

    def benchmark_equity(self, benchmark: Any = EQUAL_WEIGHT) -> tuple[str, np.ndarray] | None:
        """The benchmark as an equity curve ``[T]`` starting at the starting cash, and its name.

        ``benchmark`` is ``"equal_weight"`` (buy-and-hold of every asset of the run, equal weights,
        from the data's closes), ``None`` (no benchmark), an array of ``T`` prices or equity values
        aligned with the bars, or a pandas Series indexed by time (aligned as of each bar: the last
        value at or before it; bars before its first value take the first value). Its values must be
        finite and > 0; they are rescaled to start at the starting cash.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=2, years=1, seed=3)
        >>> result = bf.from_signals(data, data.close > data.open)
        >>> name, curve = result.benchmark_equity()
        >>> name, bool(curve[0] == result.initial_cash), curve.shape == (data.n_bars,)
        ('equal-weight buy & hold', True, True)
        """
        if benchmark is None or benchmark is False:
            return None
        n_bars = len(self.timestamps_ns)
        if isinstance(benchmark, str):
            key = benchmark.strip().lower().replace(" ", "_")
            if key in ("none", ""):
                return None
            if key not in _EQUAL_WEIGHT_ALIASES:
                from backforge.errors import did_you_mean

                raise ConfigError(f"unknown benchmark {benchmark!r}{did_you_mean(key, ['equal_weight', 'none'])}; "
                                  "use 'equal_weight', 'none', or pass a series of prices", field="benchmark")
            values = self._equal_weight()
            if values is None:
                return None
            return "equal-weight buy & hold", np.asarray(values, dtype=np.float64)
        name = "benchmark"
        if hasattr(benchmark, "index") and hasattr(benchmark, "to_numpy") and type(benchmark).__module__.startswith("pandas"):
            from backforge._time import to_ns

            name = str(benchmark.name) if getattr(benchmark, "name", None) is not None else name
            series = benchmark.dropna().sort_index()
            stamps = to_ns(series.index)
            raw = series.to_numpy(dtype=np.float64)
            if raw.size == 0:
                raise DataError("benchmark series is empty", field="benchmark")
            at = np.searchsorted(stamps, np.asarray(self.timestamps_ns), side="right") - 1
            values = raw[np.maximum(at, 0)]
        else:
            if hasattr(benchmark, "name") and isinstance(getattr(benchmark, "name"), str) and benchmark.name:
                name = benchmark.name
            values = np.asarray(benchmark.to_numpy() if hasattr(benchmark, "to_numpy") else benchmark, dtype=np.float64)
            if values.ndim != 1 or values.shape[0] != n_bars:
                raise DataError(f"benchmark must have one value per bar ({n_bars}), got shape {values.shape}; "
                                "pass a pandas Series indexed by time to align it", field="benchmark")
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"benchmark values must be finite and > 0, got {values[row]}", row=row, field="benchmark")
        return name, float(self.initial_cash) * values / values[0]

    def metrics(self, benchmark: Any = None, risk_free: float = 0.0, calendar: str | float = "auto") -> dict[str, Any]:
        """Every metric of the run: period, capital, the 23 equity metrics, benchmark-relative ones
        (with a benchmark), 16 trade statistics (closed trades), exposure and turnover, and costs.

        Computed by :mod:`backforge.results.metrics` on the equity curve starting at the starting
        cash (see the module docstring); keys and formulas are documented there and in
        ``docs/results.md``. Values are plain Python floats and ints; none is NaN.

        Parameters
        ----------
        benchmark
            ``None`` (default: no alpha/beta), ``"equal_weight"`` or a series; see
            :meth:`benchmark_equity`.
        risk_free
            Annual risk-free rate (a fraction) for Sharpe, Sortino, Omega and alpha.
        calendar
            ``"auto"``, ``"equities"``, ``"crypto"``, ``"fx"`` or trading days per year; sets the
            bars per year used to annualize.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> m = bf.from_signals(data, data.close > data.open, data.close < data.open).metrics()
        >>> m["periods_per_year"], m["n_trades"] > 0, "sortino" in m
        (252.0, True, True)
        """
        cacheable = benchmark is None or isinstance(benchmark, str)
        key = (benchmark, float(risk_free), calendar)
        cache = self.__dict__.setdefault("_metrics_cache", {})
        if cacheable and key in cache:
            return dict(cache[key])
        from backforge.results import metrics as mx

        ts_curve, curve = self._curve()
        timestamps = np.asarray(self.timestamps_ns, dtype=np.int64)
        periods = self._periods_per_year(calendar)
        resolved = self.benchmark_equity(benchmark)
        bench_curve = None if resolved is None else np.r_[float(self.initial_cash), resolved[1]]
        equity_part = mx.equity_metrics(curve, periods_per_year=periods, risk_free=risk_free,
                                        benchmark=bench_curve, timestamps_ns=ts_curve)
        pnl, trade_returns, durations = self._closed_trades()
        trade_part = mx.trade_metrics(pnl, trade_returns, durations)
        gross, _ = self._exposure_values()
        exposure_part = mx.exposure_and_turnover(gross, np.asarray(self.equity_values, dtype=np.float64),
                                                 self._traded_notional(), periods_per_year=periods)
        out: dict[str, Any] = {
            "start": _timestamp_text(timestamps[0]), "end": _timestamp_text(timestamps[-1]),
            "bars": int(len(timestamps)), "assets": len(self.assets), "periods_per_year": float(periods),
            "years": float(timestamps[-1] - timestamps[0]) / (365.25 * 86_400e9),
            "initial_cash": float(self.initial_cash), "final_equity": float(curve[-1]),
        }
        out.update({name: _plain(value) for name, value in equity_part.items()})
        out.update({name: _plain(value) for name, value in trade_part.items()})
        out.update({name: _plain(value) for name, value in exposure_part.items()})
        out.update(self._costs())
        if cacheable:
            cache[key] = dict(out)
        return out

    def benchmark_metrics(self, benchmark: Any = EQUAL_WEIGHT, risk_free: float = 0.0,
                          calendar: str | float = "auto") -> dict[str, Any] | None:
        """The equity metrics of the benchmark itself (what buy-and-hold would have scored), or None.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=2, years=1, seed=3)
        >>> bm = bf.from_signals(data, data.close > data.open).benchmark_metrics()
        >>> bm["name"], "sharpe" in bm
        ('equal-weight buy & hold', True)
        """
        from backforge.results import metrics as mx

        resolved = self.benchmark_equity(benchmark)
        if resolved is None:
            return None
        ts_curve, _ = self._curve()
        periods = self._periods_per_year(calendar)
        values = mx.equity_metrics(np.r_[float(self.initial_cash), resolved[1]], periods_per_year=periods,
                                   risk_free=risk_free, timestamps_ns=ts_curve)
        return {"name": resolved[0], "final_equity": float(resolved[1][-1]),
                **{name: _plain(value) for name, value in values.items()}}

    @property
    def returns(self):
        """Per-bar simple returns of equity as a pandas Series indexed by UTC timestamp (for QuantStats).

        ``T`` values: the first is ``equity[0] / initial_cash - 1``, then ``equity[t] / equity[t-1] - 1``
        (0.0 after an equity <= 0). These are exactly the returns the metrics use. For intraday bars,
        QuantStats (which assumes daily returns) wants daily returns:
        ``(1 + result.returns).resample("1D").prod().sub(1)``.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> r = bf.from_signals(data, data.close > data.open).returns
        >>> len(r) == data.n_bars, str(r.index.tz)
        (True, 'UTC')
        """
        import pandas as pd

        from backforge.results.metrics import returns_from_equity

        _, curve = self._curve()
        index = pd.DatetimeIndex(pd.to_datetime(np.asarray(self.timestamps_ns, dtype=np.int64), utc=True), name="timestamp")
        return pd.Series(returns_from_equity(curve), index=index, name="returns")

    @property
    def drawdowns(self) -> pl.DataFrame:
        """Every drawdown of the equity curve, deepest first: start (the peak), valley, recovery (null
        if not recovered), depth (a negative fraction), duration in bars and in time.

        See :func:`backforge.results.metrics.drawdown_periods`; the curve starts at the starting cash.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> table = bf.from_signals(data, data.close > data.open).drawdowns
        >>> table.columns
        ['start', 'valley', 'recovery', 'depth', 'duration_bars', 'duration']
        """
        from backforge.results.metrics import drawdown_periods

        ts_curve, curve = self._curve()
        return drawdown_periods(ts_curve, curve)

    def to_html(self, **options: Any) -> str:
        """The self-contained HTML tear sheet of the run (one file, works offline).

        Options are those of :func:`backforge.results.report.report_html` (``benchmark``,
        ``risk_free``, ``calendar``, ``title``, ``max_points``, ``max_assets``, ``max_rows``,
        ``max_markers``).

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> html = bf.from_signals(data, data.close > data.open).to_html()
        >>> html.startswith("<!DOCTYPE html>"), "Plotly" in html
        (True, True)
        """
        from backforge.results.report import report_html

        return report_html(self, **options)

    def write_html(self, path: str | Path, **options: Any) -> Path:
        """Write :meth:`to_html` to ``path`` (parent folders are created) and return the path.

        Examples
        --------
        >>> import backforge as bf, tempfile, pathlib
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> path = bf.from_signals(data, data.close > data.open).write_html(pathlib.Path(tempfile.mkdtemp()) / "r.html")
        >>> path.stat().st_size > 1_000_000  # plotly.js is embedded
        True
        """
        from backforge.results.report import write_report

        return write_report(self, path, **options)

    def plot(self, chart: str = "equity", **options: Any):
        """The report's interactive Plotly figure of this run (``chart``: ``"equity"`` — equity with the
        benchmark, the deepest drawdowns and risk halts shaded — or ``"drawdown"``), a
        ``plotly.graph_objects.Figure`` to show, restyle or save.

        Examples
        --------
        >>> import backforge as bf
        >>> data = bf.synth(n_assets=1, years=1, seed=3)
        >>> fig = bf.from_signals(data, data.close > data.open).plot()
        >>> type(fig).__name__, fig.data[0].name
        ('Figure', 'Strategy')
        """
        from backforge.results.report import report_figure

        return report_figure(self, chart, **options)

    def _repr_html_(self) -> str:
        from backforge.results.notebook import run_html

        return run_html(self)
