"""Opening a run for judgement, and re-running it with changes (costs, parameters, periods, lags).

A run reaches the judge as a saved folder, a :class:`~backforge.results.result.SavedRun` or a live
:class:`~backforge.results.result.Result`. :func:`open_run` turns any of them into a :class:`RunView`:
the run's tables and metrics (never recomputed when saved), its strategy config, and — when the
run can be re-created — a *rerunner*:

* :class:`StrategyRerunner` re-runs a strategy config (runs made by ``backforge run`` save the config
  and the data source, so the judge reloads the same data and compiles variants of the config);
* :class:`SignalRerunner` re-runs :func:`backforge.from_signals` with the same signal arrays (which a
  saved run does not hold: pass one explicitly), optionally lagged by extra bars — the look-ahead test.
* :class:`ClassRerunner` re-runs a :class:`~backforge.strategy.code.Strategy` class (or a compiled one)
  with other values of its parameters (a live result keeps its class; a run saved by ``backforge run
  file.py`` reloads the file, when it is unchanged).

Runs made from signal arrays without a rerunner are still reviewed from their saved tables; what
needs a re-run (cost and parameter sensitivity, walk-forward, applying recommendations) is reported
as unavailable, with the reason.

Examples
--------
>>> import backforge as bf
>>> data = bf.synth(n_assets=1, years=2, seed=3)
>>> entries, exits = data.close > data.open, data.close < data.open
>>> view = open_run(bf.from_signals(data, entries, exits, fee_rate=0.001))
>>> view.rerunner is None, "signal arrays" in view.rerun_note
(True, True)
>>> view = open_run(bf.from_signals(data, entries, exits, fee_rate=0.001),
...                 rerun=SignalRerunner(data, entries, exits, fee_rate=0.001))
>>> result = view.rerunner.run(cost_multiplier=2.0)
>>> result.sim_config.fee_rate
0.002
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backforge.data.market import MarketData
from backforge.errors import BackforgeError, ConfigError
from backforge.judge.errors import JudgeError
from backforge.results.result import Result, RunAnalysis, SavedRun, load_result

__all__ = [
    "COST_FIELDS",
    "ClassRerunner",
    "RunView",
    "StrategyRerunner",
    "SignalRerunner",
    "open_run",
    "scale_costs",
    "scale_quoted_spread",
]

COST_FIELDS: tuple[str, ...] = (
    "fee_rate", "fee_per_unit", "fee_per_order", "fee_min", "slippage_bps", "slippage_range", "spread",
    "borrow_rate", "financing_rate",
)
"""Cost fields scaled by a cost multiplier (scalars or per-asset mappings)."""

_UTC = pl.Datetime("ns", "UTC")


def scale_costs(costs: dict[str, Any], multiplier: float) -> dict[str, Any]:
    """A copy of a costs mapping with every cost field multiplied by ``multiplier``.

    Fields that are not costs (leverage, lot size, margin...) are kept as they are; per-asset mappings
    are scaled asset by asset.

    Parameters
    ----------
    costs
        A strategy's ``costs`` mapping or :func:`backforge.from_signals` options.
    multiplier
        Factor, >= 0 (2.0 doubles fees, slippage, spread, borrow and financing).

    Returns
    -------
    dict

    Examples
    --------
    >>> scale_costs({"fee_rate": 0.001, "slippage_bps": {"A": 2.0}, "leverage": 2.0}, 2.0)
    {'fee_rate': 0.002, 'slippage_bps': {'A': 4.0}, 'leverage': 2.0}
    """
    if not (isinstance(multiplier, (int, float)) and math.isfinite(multiplier) and multiplier >= 0):
        raise ConfigError(f"cost multiplier must be a number >= 0, got {multiplier!r}", field="cost_multiplier")
    out = dict(costs)
    for name in COST_FIELDS:
        value = out.get(name)
        if isinstance(value, dict):
            out[name] = {asset: float(v) * multiplier for asset, v in value.items()}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value) * multiplier
    return out


def scale_quoted_spread(data: MarketData, multiplier: float) -> MarketData:
    """The data with every bid/ask spread multiplied by ``multiplier`` around the unchanged mid.

    On quote data the spread is a cost the data carries, not a cost field: a cost stress must widen
    it there (``bid = mid - k * half_spread``, ``ask = mid + k * half_spread``, field by field). Data
    without quotes is returned unchanged; its spread is the ``spread`` cost field.

    Examples
    --------
    >>> import numpy as np
    >>> from backforge.data.market import MarketData, Quotes
    >>> bid = Quotes(*[np.array([[99.0]])] * 4)
    >>> ask = Quotes(*[np.array([[101.0]])] * 4)
    >>> md = MarketData.from_arrays(np.array([0]), close=np.array([[100.0]]), assets=["X"], bid=bid, ask=ask)
    >>> wide = scale_quoted_spread(md, 2.0)
    >>> float(wide.bid.close[0, 0]), float(wide.ask.close[0, 0])
    (98.0, 102.0)
    """
    if data.bid is None or data.ask is None or multiplier == 1.0:
        return data
    bids, asks = [], []
    for b, a in zip(data.bid, data.ask):
        mid = 0.5 * (b + a)
        half = 0.5 * (a - b) * multiplier
        bids.append(mid - half)
        asks.append(mid + half)
    return MarketData(data.timestamps, data.open, data.high, data.low, data.close, data.volume, data.assets,
                      type(data.bid)(*bids), type(data.ask)(*asks))


def _timestamp(ns: int) -> Any:
    import pandas as pd

    return pd.Timestamp(int(ns), tz="UTC")


class _Period:
    """What every rerunner shares: its traded period ``[start_ns, end_ns]`` (inclusive, int ns UTC)."""

    start_ns: int
    end_ns: int

    def restricted(self, start_ns: int | None = None, end_ns: int | None = None):
        """The same rerunner with a narrower traded period (the in-sample part, for instance)."""
        other = copy.copy(self)
        other.start_ns = self.start_ns if start_ns is None else int(start_ns)
        other.end_ns = self.end_ns if end_ns is None else int(end_ns)
        return other

    def _rows(self, timestamps: np.ndarray, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
        """Rows ``lo:hi`` of ``timestamps`` in the period (the rerunner's own unless given); at least 2."""
        lo = int(np.searchsorted(timestamps, self.start_ns if start_ns is None else int(start_ns), side="left"))
        hi = int(np.searchsorted(timestamps, self.end_ns if end_ns is None else int(end_ns), side="right"))
        if hi - lo < 2:
            raise JudgeError("the requested period holds fewer than 2 bars", field="period")
        return lo, hi


class StrategyRerunner(_Period):
    """Re-runs a strategy config on the data of the original run.

    Parameters
    ----------
    config
        The run's strategy config (resolved: parameters replaced by their values).
    data
        Market data covering the run (earlier bars warm indicators up).
    start_ns, end_ns
        The traded period of the original run (inclusive, int ns UTC).
    raw_config
        The strategy file's config with its declared parameters (``{param: ...}`` nodes), when known.
    fundamentals
        Point-in-time fundamentals, when the strategy uses them.

    Examples
    --------
    >>> import backforge as bf
    >>> from backforge.strategy.compiler import run_portfolio
    >>> config = {"name": "x", "universe": ["AAPL"], "strategies": [{"name": "s",
    ...     "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}}, "action": {"buy": {}}}]}
    >>> view = open_run(run_portfolio(config, bf.synth(n_assets=1, years=2, seed=1)))
    >>> type(view.rerunner).__name__, view.rerunner.run(cost_multiplier=5.0).sim_config.fee_rate
    ('StrategyRerunner', 0.0)
    """

    kind = "strategy"

    def __init__(self, config: dict[str, Any], data: MarketData, *, start_ns: int, end_ns: int,
                 raw_config: dict[str, Any] | None = None, fundamentals: Any = None) -> None:
        self.config = config
        self.data = data
        self.start_ns = int(start_ns)
        self.end_ns = int(end_ns)
        self.raw_config = raw_config
        self.fundamentals = fundamentals
        self._cache: dict[str, np.ndarray] = {}

    def run(self, *, config: dict[str, Any] | None = None, cost_multiplier: float = 1.0,
            cost_overrides: dict[str, Any] | None = None, start_ns: int | None = None, end_ns: int | None = None,
            lag: int = 0) -> Result:
        """Run ``config`` (default: the original) on ``[start_ns, end_ns]`` (default: the original period).

        ``cost_multiplier`` scales every cost; ``cost_overrides`` sets cost fields first (used to
        price a run that modelled no costs). ``lag`` is not available for strategy configs: their
        indicators cannot see the future by construction.
        """
        from backforge.strategy.compiler import compile_portfolio, run_compiled
        from backforge.strategy.schema import load_portfolio

        if lag:
            raise JudgeError("a strategy config cannot be lagged: its indicators only see past bars by construction",
                             field="lag")
        raw = copy.deepcopy(config if config is not None else self.config)
        if cost_overrides or cost_multiplier != 1.0:
            costs = {**(raw.get("costs") or {}), **(cost_overrides or {})}
            raw["costs"] = scale_costs(costs, cost_multiplier)
        portfolio = load_portfolio(raw)
        start = self.start_ns if start_ns is None else int(start_ns)
        end = self.end_ns if end_ns is None else int(end_ns)
        data = scale_quoted_spread(self.data, cost_multiplier)
        compiled = compile_portfolio(portfolio, data, start=_timestamp(start), end=_timestamp(end),
                                     fundamentals=self.fundamentals, cache=self._cache if data is self.data else None)
        return run_compiled(compiled)


class SignalRerunner(_Period):
    """Re-runs :func:`backforge.from_signals` with the same signal arrays and options.

    Parameters
    ----------
    data
        The market data the signals were computed on.
    entries, exits, short_entries, short_exits
        The signal arrays, as given to :func:`backforge.from_signals`.
    **options
        The options of the original run (costs, sizing, stops...).

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> rerun = SignalRerunner(data, data.close > data.open, data.close < data.open)
    >>> rerun.run(lag=1).summary()["bars"] == data.n_bars
    True
    """

    kind = "signals"

    def __init__(self, data: MarketData, entries: Any, exits: Any = None, short_entries: Any = None,
                 short_exits: Any = None, **options: Any) -> None:
        from backforge.engine.simulator import _check_data, _signal_array

        self.data = _check_data(data)
        self.signals = {name: None if value is None else _signal_array(value, self.data, name)
                        for name, value in (("entries", entries), ("exits", exits), ("short_entries", short_entries),
                                            ("short_exits", short_exits))}
        self.config = dict(options)
        self.raw_config = None
        self.start_ns = int(self.data.timestamps[0])
        self.end_ns = int(self.data.timestamps[-1])

    def run(self, *, config: dict[str, Any] | None = None, cost_multiplier: float = 1.0,
            cost_overrides: dict[str, Any] | None = None, start_ns: int | None = None, end_ns: int | None = None,
            lag: int = 0) -> Result:
        """Run with option changes ``config`` (e.g. ``{"stop_loss": 0.05}``), scaled costs, a narrower
        period, and the signals delayed by ``lag`` more bars (a signal of bar t acts at t + lag)."""
        from backforge.engine.simulator import from_signals

        options = {**self.config, **(config or {}), **(cost_overrides or {})}
        if cost_multiplier != 1.0:
            options = scale_costs(options, cost_multiplier)
        lo, hi = self._rows(self.data.timestamps, start_ns, end_ns)
        arrays = {}
        for name, signal in self.signals.items():
            if signal is None:
                arrays[name] = None
                continue
            shifted = signal
            if lag:
                shifted = np.zeros_like(signal)
                shifted[lag:] = signal[:-lag]
            arrays[name] = np.ascontiguousarray(shifted[lo:hi])
        return from_signals(scale_quoted_spread(self.data, cost_multiplier).rows(lo, hi), arrays["entries"], arrays["exits"], arrays["short_entries"],
                            arrays["short_exits"], **options)


class ClassRerunner(_Period):
    """Re-runs a :class:`~backforge.strategy.code.Strategy` class, or a
    :func:`~backforge.strategy.compiled.compiled` one, with other parameter values, scaled costs or a
    narrower period.

    ``config`` of :meth:`run` maps parameter names of the class to new values (the judge's
    ``change_parameter`` on a class). The bars before the period are warm-up, as in walk-forward windows:
    a Python class's ``init`` and ``next`` run on them, a compiled class's ``init`` sees them (nothing is
    traded on them).

    Examples
    --------
    >>> import backforge as bf
    >>> from backforge.strategy.code import Strategy, crossover
    >>> from backforge.strategy.indicators import sma
    >>> class Cross(Strategy):
    ...     fast, slow = 10, 30
    ...     def init(self):
    ...         self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
    ...         self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)
    ...     def next(self):
    ...         if crossover(self.f, self.s) and not self.position:
    ...             self.buy(0.5)
    ...         elif crossover(self.s, self.f) and self.position:
    ...             self.close()
    >>> data = bf.synth(n_assets=1, years=2, seed=3)
    >>> view = open_run(bf.backtest(data, Cross, fee_rate=0.001))
    >>> type(view.rerunner).__name__, view.rerunner.run(config={"fast": 5}, cost_multiplier=2.0).sim_config.fee_rate
    ('ClassRerunner', 0.002)
    """

    kind = "code"

    def __init__(self, strategy: type, data: MarketData, *, parameters: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None, risk: Any = None, start_ns: int | None = None,
                 end_ns: int | None = None) -> None:
        from backforge.strategy.code import strategy_parameters

        self.strategy = strategy
        self.compiled = bool(getattr(strategy, "__backforge_compiled__", False))
        self.data = data
        self.parameters = {**strategy_parameters(strategy), **(parameters or {})}
        self.config = dict(options or {})  # the engine options of the original run (costs, cash, ...)
        self.risk = risk
        self.raw_config = None
        self.start_ns = int(data.timestamps[0]) if start_ns is None else int(start_ns)
        self.end_ns = int(data.timestamps[-1]) if end_ns is None else int(end_ns)

    def run(self, *, config: dict[str, Any] | None = None, cost_multiplier: float = 1.0,
            cost_overrides: dict[str, Any] | None = None, start_ns: int | None = None, end_ns: int | None = None,
            lag: int = 0) -> Result:
        """The class with the parameter changes ``config`` on ``[start_ns, end_ns]``, costs scaled by
        ``cost_multiplier`` (after ``cost_overrides``). ``lag`` is refused: ``next`` sees the bars up to
        its own and nothing later, by construction."""
        from backforge.errors import did_you_mean
        from backforge.strategy.code import backtest
        from backforge.strategy.compiled import backtest_compiled

        if lag:
            raise JudgeError("a Strategy class cannot be lagged: next() only sees the bars up to its own by "
                             "construction", field="lag")
        changes = dict(config or {})
        for name in changes:
            if name not in self.parameters:
                raise JudgeError(f"{self.strategy.__name__} has no parameter {name!r}"
                                 f"{did_you_mean(name, self.parameters)}", field=name)
        options = {**self.config, **(cost_overrides or {})}
        if cost_multiplier != 1.0:
            options = scale_costs(options, cost_multiplier)
        data = scale_quoted_spread(self.data, cost_multiplier)
        lo, hi = self._rows(data.timestamps, start_ns, end_ns)
        params = {**self.parameters, **changes}
        run = backtest_compiled if self.compiled else backtest
        return run(data, self.strategy, risk=self.risk, start=lo, end=hi, **params, **options)


Rerunner = StrategyRerunner | SignalRerunner | ClassRerunner


@dataclass
class RunView:
    """A run ready for judgement: its analysis object, config, optional data and rerunner.

    Attributes
    ----------
    analysis
        The :class:`~backforge.results.result.Result` or :class:`~backforge.results.result.SavedRun`.
    name
        The run's folder name (or ``"run"`` for a live result).
    mode
        ``"strategy"``, ``"signals"`` or another engine mode.
    strategy
        The resolved strategy config (None for runs made from signal arrays).
    config
        The run's ``config.json`` document (mode, sim and signal config, strategy, data source).
    data
        Market data of the traded period, when available (live results, re-runnable saved runs).
    rerunner
        A :class:`StrategyRerunner` or :class:`SignalRerunner`, or None.
    rerun_note
        Why there is no rerunner (or what to know about it).
    optimization
        When the run is the winner of a saved parameter search (``backforge optimize``): the search's
        summary (``trials``, ``overfitting``...) and its trials table.
    notes
        Other facts worth telling the reviewer (data changed since the run...).
    """

    analysis: RunAnalysis
    name: str
    mode: str
    strategy: dict[str, Any] | None
    config: dict[str, Any]
    data: MarketData | None = None
    rerunner: Rerunner | None = None
    rerun_note: str = ""
    optimization: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ shared views
    def metrics(self) -> dict[str, Any]:
        """Every metric against the equal-weight benchmark (the saved ``metrics.json`` when saved)."""
        try:
            return self.analysis.metrics(benchmark="equal_weight")
        except BackforgeError:
            return self.analysis.metrics()

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Timestamps ``[T + 1]`` and equity ``[T + 1]`` starting at the starting cash."""
        return self.analysis._curve()

    def returns(self) -> np.ndarray:
        """The ``T`` per-bar simple returns the metrics use."""
        from backforge.results.metrics import returns_from_equity

        return returns_from_equity(self.curve()[1])

    def closed_trades(self) -> pl.DataFrame:
        """Closed trades, in closing order."""
        return self.analysis.trades.filter(~pl.col("is_open"))

    def benchmark_curve(self) -> np.ndarray | None:
        """Equal-weight buy-and-hold equity ``[T]`` (None when unknown)."""
        values = self.analysis._equal_weight()
        return None if values is None else np.asarray(values, dtype=np.float64)

    def asset_prices(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per asset, the timestamps and closes of its bars (full data when known, saved chart prices otherwise)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.data is not None:
            for j, asset in enumerate(self.data.assets):
                close = self.data.close[:, j]
                present = np.isfinite(close)
                out[asset] = (self.data.timestamps[present], close[present])
            return out
        for j, asset in enumerate(self.analysis.assets):
            got = self.analysis.chart_prices(j)  # saved already downsampled, keeping first, last and extremes
            if got is not None:
                out[asset] = (np.asarray(got[0], dtype=np.int64), np.asarray(got[1], dtype=np.float64))
        return out

    @property
    def can_rerun(self) -> bool:
        """True when variants of the run can be re-run."""
        return self.rerunner is not None


def _check_tables(run: SavedRun) -> None:
    """Read every table the judge needs now, so a damaged folder fails before any work starts."""
    for name in ("equity", "trades", "fills", "orders"):
        if name not in run:
            raise JudgeError(f"saved run is incomplete: {name}.parquet is missing; re-run the backtest to recreate it",
                             path=str(run.path))
    for name in list(run):
        if name != "positions":  # the judge never reads the (large) per-bar positions
            run[name]  # noqa: B018 - reading every table it uses now is the check
    equity = run.equity
    for column in ("timestamp", "equity", "gross_exposure"):
        if column not in equity.columns:
            raise JudgeError(f"equity.parquet has no {column!r} column: not a backforge run or a damaged one",
                             path=str(run.path))
    if equity.height < 2:
        raise JudgeError("the run has fewer than 2 bars: nothing to judge", path=str(run.path))


def _load_saved(path: Path) -> SavedRun:
    try:
        run = load_result(path)
        _check_tables(run)
        for key in ("sim_config",):
            if key not in run.config:
                raise JudgeError(f"config.json has no {key!r}: not a backforge run or a damaged one", path=str(path))
        run.metrics()
    except JudgeError:
        raise
    except BackforgeError as exc:
        message = exc.message.splitlines()[0] if exc.message else str(exc)
        advice = "" if "re-run" in message else ("; pass a folder written by `backforge run` or Result.save (re-run "
                                                 "the backtest if it is damaged)")
        raise JudgeError(f"cannot read the run: {message}{advice}", path=exc.path or str(path)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise JudgeError(f"cannot read the run: a saved document is damaged ({type(exc).__name__}: {exc}); re-run "
                         "the backtest to recreate it", path=str(path)) from None
    return run


def _optimization_of(folder: Path) -> dict[str, Any] | None:
    """The saved parameter search a ``best-N`` run folder belongs to (``backforge optimize``)."""
    parent = folder.parent
    summary_file = parent / "summary.json"
    if not folder.name.startswith("best-") or not summary_file.exists():
        return None
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(summary, dict) or "trials" not in summary:
        return None
    trials = summary.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, (int, float)) or not math.isfinite(trials) or trials < 0:
        return None  # a damaged search summary: judge the run on its own
    table = None
    if (parent / "trials.parquet").exists():
        try:
            table = pl.read_parquet(parent / "trials.parquet")
        except Exception:  # noqa: BLE001 - a damaged table only loses the trial Sharpe ratios
            table = None
    return {"summary": summary, "trials": int(summary.get("trials") or 0), "table": table,
            "source": f"parameter search in {parent.name} ({summary.get('method', '?')}, {summary.get('trials')} trials)"}


def _class_rerunner(analysis: Any, config: dict[str, Any], period: tuple[int, int]) -> tuple[ClassRerunner | None, str]:
    """A rerunner for a run of a Strategy class: a live result's own class, or the class reloaded from the
    file a saved run names (refused when the file changed since the run); None and the reason otherwise."""
    import hashlib

    spec = getattr(analysis, "class_run", None)
    if spec is not None:  # a live result of backtest / backtest_compiled
        return ClassRerunner(spec["strategy"], spec["data"], parameters=spec["parameters"], options=spec["options"],
                             risk=spec["risk"], start_ns=period[0], end_ns=period[1]), ""
    source = config.get("data_source") or {}
    path = source.get("strategy_file")
    if not path:
        return None, "cannot re-run: the run does not record its strategy file (pass rerun=ClassRerunner(...))"
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot re-run: its strategy file cannot be read ({path}: {exc.strerror})"
    if source.get("source_sha256") and hashlib.sha256(text).hexdigest() != source["source_sha256"]:
        return None, f"cannot re-run: the strategy file changed since the run ({path})"
    from backforge.strategy.code import class_market, load_strategy_class

    try:
        cls = load_strategy_class(path, source.get("class"), compiled=True)
        data = class_market(cls, Path(path).parent, [Path(p) for p in source.get("data") or []] or None,
                            source.get("start"), source.get("end"))
    except BackforgeError as exc:
        return None, f"cannot re-run: {exc}"
    parameters = (config.get("strategy") or {}).get("parameters") or {}
    return ClassRerunner(cls, data, parameters=parameters, start_ns=period[0], end_ns=period[1]), ""


def _strategy_rerunner(config: dict[str, Any], period: tuple[int, int], *, data_source: dict[str, Any] | None,
                       metadata: dict[str, Any] | None) -> tuple[StrategyRerunner | None, str, list[str]]:
    """A rerunner for a saved strategy run, or None and the reason."""
    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import load_portfolio, read_config

    notes: list[str] = []
    strategy = config.get("strategy")
    source = data_source or {}
    strategy_file = source.get("strategy_file")
    base = Path(strategy_file).parent if strategy_file else None
    raw_params = None
    if strategy_file and Path(strategy_file).is_file():
        try:
            raw, _ = read_config(Path(strategy_file))
            # a search's winner ran with its own parameter values, not the file's defaults
            values = source.get("parameters") or None
            if load_portfolio(raw, parameters=values).model_dump(mode="json") == strategy:
                from backforge.research.params import ParameterSpace

                if ParameterSpace.from_config(raw):
                    raw_params = _with_defaults(raw, values) if values else raw
            else:
                notes.append("the strategy file changed since the run; the saved config is used")
        except BackforgeError:
            notes.append("the strategy file no longer loads; the saved config is used")
    try:
        portfolio = load_portfolio(strategy)
        override = [Path(p) for p in source.get("data") or []] or None
        data = load_data(portfolio, base=base, override=override)
        fundamentals = None
        if source.get("fundamentals"):  # `--fundamentals FILE` of run/optimize: the re-runs read the same table
            from backforge.data.fundamentals import read_fundamentals

            fundamentals = read_fundamentals(source["fundamentals"])
    except BackforgeError as exc:
        return None, f"cannot re-run: its data cannot be loaded ({exc})", notes
    except (OSError, ValueError) as exc:
        return None, f"cannot re-run: its data cannot be loaded ({type(exc).__name__}: {exc})", notes
    if not source and portfolio.data.source != "synthetic":
        notes.append("the run did not record where its data files were; they were resolved from the current folder")
    rerunner = StrategyRerunner(strategy, data, start_ns=period[0], end_ns=period[1], raw_config=raw_params,
                                fundamentals=fundamentals)
    fingerprint = (metadata or {}).get("data_fingerprint")
    if fingerprint:
        try:
            traded = data.slice(None, period[1]).select(portfolio.universe).slice(period[0], None)
            if traded.fingerprint() != fingerprint:
                notes.append("the data differs from the data of the run (files changed?); re-runs use the current data")
        except BackforgeError:
            pass
    return rerunner, "", notes


def _with_defaults(raw: Any, values: dict[str, Any]) -> Any:
    """A copy of a raw config whose ``{param: ...}`` nodes default to ``values`` (a search winner's values):
    the judge's neighbours are then the winner's neighbours, and walk-forward still searches the space.

    >>> _with_defaults({"w": {"param": "n", "range": [5, 20, 5], "default": 5}}, {"n": 15})
    {'w': {'param': 'n', 'range': [5, 20, 5], 'default': 15}}
    """
    if isinstance(raw, dict):
        if "param" in raw and raw["param"] in values:
            return {**raw, "default": values[raw["param"]]}
        return {k: _with_defaults(v, values) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_with_defaults(v, values) for v in raw]
    return raw


def open_run(source: str | Path | RunAnalysis, *, rerun: Rerunner | None = None) -> RunView:
    """Open a run for judgement: a saved run folder, a :class:`SavedRun` or a :class:`Result`.

    Parameters
    ----------
    source
        The run.
    rerun
        A rerunner to use instead of the one the judge would build (required to re-run runs made
        from signal arrays: :class:`SignalRerunner`).

    Returns
    -------
    RunView

    Raises
    ------
    JudgeError
        The folder is missing, is not a run, or a file of it is damaged (the message names it).

    Examples
    --------
    >>> import backforge as bf, tempfile, pathlib
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> folder = bf.from_signals(data, data.close > data.open).save(pathlib.Path(tempfile.mkdtemp()) / "r")
    >>> view = open_run(folder)
    >>> view.name, view.mode, view.can_rerun
    ('r', 'signals', False)
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.exists():
            raise JudgeError("no run folder here; pass a folder written by `backforge run` (see backforge-runs/)",
                             path=str(folder))
        analysis: RunAnalysis = _load_saved(folder)
    elif isinstance(source, RunAnalysis):
        analysis = source
    else:
        raise JudgeError(f"cannot judge a {type(source).__name__}: pass a run folder, a SavedRun or a Result",
                         field="run")

    config = analysis.config_document()
    mode = str(config.get("mode") or "unknown")
    strategy = config.get("strategy")
    timestamps = np.asarray(analysis.timestamps_ns, dtype=np.int64)
    period = (int(timestamps[0]), int(timestamps[-1]))
    view = RunView(analysis=analysis, name=getattr(analysis, "name", None) or "run", mode=mode, strategy=strategy,
                   config=config)
    if isinstance(analysis, SavedRun):
        view.optimization = _optimization_of(analysis.path)
    if isinstance(analysis, Result):
        view.data = analysis.data

    if rerun is not None:
        view.rerunner = rerun.restricted(*period) if isinstance(rerun, _Period) else rerun
        if view.data is None:
            view.data = rerun.data.slice(period[0], period[1]) if hasattr(rerun, "data") else None
        return view
    if mode == "strategy" and strategy:
        compiled = getattr(analysis, "compiled", None)
        if compiled is not None:
            view.rerunner = StrategyRerunner(strategy, compiled.data, start_ns=period[0], end_ns=period[1])
            return view
        rerunner, note, notes = _strategy_rerunner(config, period, data_source=config.get("data_source"),
                                                   metadata=analysis.metadata_document())
        view.rerunner, view.rerun_note = rerunner, note
        view.notes.extend(notes)
        if rerunner is not None:
            view.data = rerunner.data.slice(period[0], period[1]).select(
                [a for a in analysis.assets if a in rerunner.data.assets])
        return view
    if mode in ("code", "compiled"):
        view.rerunner, view.rerun_note = _class_rerunner(analysis, config, period)
        if view.rerunner is not None and view.data is None:
            view.data = view.rerunner.data.slice(period[0], period[1])
        return view
    if mode == "signals":
        view.rerun_note = ("cannot re-run: the run was made from signal arrays, which a run does not store; pass "
                           "rerun=SignalRerunner(data, entries, exits, ...) from Python to test variants")
    else:
        view.rerun_note = f"cannot re-run: runs of mode {mode!r} carry no strategy config"
    return view
