"""Parameter search over strategy configs: grid, random and genetic (single- or multi-objective), run
on local worker processes or on Ray, with the overfitting statistics every search must report.

A *trial* is one instantiation of the strategy's parameters, backtested and scored. Workers receive
the market data once (local processes memory-map it from a temporary folder; Ray holds it in its
object store) and evaluate batches of trials. Results are keyed by parameters, so the same seed gives
the same table whatever the number of workers or the executor.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backforge.data.market import MarketData, Quotes
from backforge.errors import BackforgeError, ConfigError, did_you_mean
from backforge.research.params import MAX_SCAN, ParameterSpace

__all__ = ["Trial", "OptimizationResult", "SearchConfig", "evaluate_params", "optimize", "optimize_events", "LocalExecutor",
           "RayExecutor", "make_executor", "heatmap_axes", "heatmap_grid", "period_bars", "METRICS", "MINIMIZE",
           "MAX_GRID_COMBINATIONS"]

METRICS = (
    "total_return", "annual_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "omega",
    "max_drawdown", "ulcer_index", "recovery_factor", "trades", "win_rate", "profit_factor", "final_equity",
)
MINIMIZE = {"annual_volatility", "ulcer_index"}
METHODS = ("grid", "random", "genetic")
MAX_GRID_COMBINATIONS = 1_000_000
"""Largest grid searched (counted arithmetically before anything is built): every combination is a full
backtest, so larger spaces are sampled (random) or evolved (genetic) instead."""
MAX_SAMPLES = 1_000_000


class SearchConfig(BaseModel):
    """How a parameter search runs: frozen, keyword-only, unknown options refused.

    ``method``: ``grid`` (every allowed combination, at most ``max_combinations``), ``random``
    (``samples`` distinct combinations) or ``genetic`` (``population``, ``generations``,
    ``mutation_rate``, ``crossover_rate``, ``elite``, early stop after ``patience`` generations without
    improvement). ``start``/``end`` are the bar positions searched (earlier bars warm indicators up);
    per-bar returns of up to ``keep_returns`` trials (the first evaluated) are kept for PBO.
    ``batched`` (default) evaluates trials with the batched runtime (:mod:`backforge.strategy.batch`)
    wherever it applies; ``False`` forces one backtest per trial.

    Examples
    --------
    >>> SearchConfig(method="random", samples=20, seed=3).metric
    ('sharpe',)
    >>> SearchConfig(metod="grid")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field metod: unknown search option 'metod'; did you mean 'method'?
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    metric: tuple[str, ...] = ("sharpe",)
    method: str = "grid"
    samples: int = Field(100, ge=1, le=MAX_SAMPLES)
    population: int = Field(40, ge=1, le=MAX_SAMPLES)
    generations: int = Field(20, ge=0, le=100_000)
    mutation_rate: float = Field(0.2, ge=0, le=1)
    crossover_rate: float = Field(0.9, ge=0, le=1)
    elite: int = Field(2, ge=0)
    patience: int = Field(5, ge=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=1)
    keep_returns: int = Field(2000, ge=0)
    progress: bool = False
    max_combinations: int = Field(MAX_GRID_COMBINATIONS, ge=1)
    batched: bool = True

    def __init__(self, **options: Any) -> None:
        unknown = [name for name in options if name not in type(self).model_fields]
        if unknown:
            raise ConfigError(f"unknown search option {unknown[0]!r}{did_you_mean(unknown[0], list(type(self).model_fields))}",
                              field=unknown[0])
        try:
            super().__init__(**options)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(part) for part in err["loc"]) or "search"
            message = err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{message}, got {err.get('input')!r}" if "got" not in message else message,
                              field=name) from None

    @field_validator("metric", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> tuple[str, ...]:
        names = (value,) if isinstance(value, str) else tuple(value)
        if not names:
            raise ValueError("give at least one metric")
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}{did_you_mean(str(name), METRICS)} (one of: {', '.join(METRICS)})")
        return names

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}{did_you_mean(value, list(METHODS))} (one of: {', '.join(METHODS)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SearchConfig":
        if self.method == "genetic" and (self.population < 4 or self.generations < 1):
            raise ValueError(f"genetic search needs population >= 4 and generations >= 1, got population "
                             f"{self.population} and generations {self.generations}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start bar {self.start} must be before end bar {self.end}")
        return self


# ----------------------------------------------------------------------------------------- trials

def score_result(result: Any, *, from_ns: int | None = None) -> dict[str, float]:
    """The metrics of one backtest used to rank trials (a subset of the full metrics, cheap to compute).

    Every figure comes from :mod:`backforge.results.metrics` (one implementation): the curve starts at the
    starting cash on the first bar's timestamp, CAGR uses calendar years, and the trade figures are
    :func:`~backforge.results.metrics.trade_metrics` of the closed trades. ``from_ns``: only the bars from
    that time on, and the trades entered from then (a run that traded nothing before it, as a
    walk-forward window on event data).
    """
    from backforge.results.metrics import equity_metrics, periods_per_year_for, trade_metrics

    values, ts = np.asarray(result.equity_values), np.asarray(result.data.timestamps)
    trades = result.trade_records
    if from_ns is not None:
        first = int(np.searchsorted(ts, int(from_ns), "left"))
        values, ts = values[first:], ts[first:]
        trades = trades[trades["entry_ts"] >= int(from_ns)]
    eq = np.concatenate([[result.sim_config.cash], values])
    m = equity_metrics(eq, periods_per_year=periods_per_year_for(ts), timestamps_ns=np.concatenate([ts[:1], ts]))
    t = trade_metrics(trades["pnl"], trades["ret"], trades["exit_ts"] - trades["entry_ts"])
    out = {name: float(m[name]) for name in ("total_return", "annual_return", "cagr", "annual_volatility", "sharpe",
                                             "sortino", "calmar", "omega", "max_drawdown", "ulcer_index",
                                             "recovery_factor")}
    out["trades"] = float(t["n_trades"])
    out["win_rate"] = float(t["win_rate"])
    out["profit_factor"] = float(t["profit_factor"])
    out["final_equity"] = float(eq[-1])
    return out


_INDICATOR_CACHE: dict[str, np.ndarray] = {}  # per process: indicator matrices shared by the trials


def evaluate_params(raw: dict, values: dict, data: MarketData, *, start: int | None = None, end: int | None = None,
                    fundamentals: Any = None, keep_returns: bool = False) -> tuple[dict, np.ndarray | None]:
    """Backtest one parameter set on bars ``start:end`` (earlier bars warm indicators up).

    Returns the metrics and, with ``keep_returns``, the per-bar returns (float32).
    """
    from backforge.strategy.compiler import compile_portfolio, run_compiled
    from backforge.strategy.schema import load_portfolio

    portfolio = load_portfolio(ParameterSpace.from_config(raw).instantiate(values) if values else raw)
    view = data if end is None else data.rows(0, end)
    compiled = compile_portfolio(portfolio, view, start_bar=int(start) if start else None, fundamentals=fundamentals,
                                 cache=_INDICATOR_CACHE)
    result = run_compiled(compiled, audit=False)
    metrics = score_result(result)
    rets = None
    if keep_returns:
        eq = np.concatenate([[result.sim_config.cash], result.equity_values])
        rets = (eq[1:] / eq[:-1] - 1.0).astype(np.float32)
    return metrics, rets


@dataclass
class Trial:
    """One evaluated parameter set."""

    params: dict
    metrics: dict
    returns: np.ndarray | None = None
    error: str | None = None
    runtime: str = "per-trial"  # "batched" when the batched runtime computed it


# ------------------------------------------------------------------------------------- executors

_WORKER: dict[str, Any] = {}


def _share(data: MarketData) -> str:
    """Write the arrays to a temporary folder as .npy files that workers memory-map (no copy per worker)."""
    folder = tempfile.mkdtemp(prefix="backforge-shared-")
    arrays = {"timestamps": data.timestamps, **{f: getattr(data, f) for f in ("open", "high", "low", "close", "volume")}}
    if data.has_quotes:
        for side, q in (("bid", data.bid), ("ask", data.ask)):
            for f in ("open", "high", "low", "close"):
                arrays[f"{side}_{f}"] = getattr(q, f)
    for name, arr in arrays.items():
        np.save(Path(folder) / f"{name}.npy", np.ascontiguousarray(arr))
    (Path(folder) / "assets.txt").write_text("\n".join(data.assets))
    return folder


def _attach(folder: str) -> MarketData:
    load = lambda name: _mapped(Path(folder) / f"{name}.npy")  # noqa: E731
    assets = tuple((Path(folder) / "assets.txt").read_text().split("\n"))
    quotes = (Path(folder) / "bid_open.npy").exists()
    bid = Quotes(*(load(f"bid_{f}") for f in ("open", "high", "low", "close"))) if quotes else None
    ask = Quotes(*(load(f"ask_{f}") for f in ("open", "high", "low", "close"))) if quotes else None
    return MarketData(load("timestamps"), load("open"), load("high"), load("low"), load("close"), load("volume"),
                      assets, bid, ask)


def _mapped(path: Path) -> np.ndarray:
    """A .npy file memory-mapped read-only, its pages faulted in once, in order.

    Measured, not explained: when the kernels' own reads fault the pages in, the mapping stays slower to read
    for the life of the process. A batch of 300 rebalance backtests over 100 memory-mapped assets took 0.19 s
    against 0.11 s on the same arrays in private memory, run after run (one numba signature for both; a plain
    summing loop showed no difference). Touching one byte per page in order first made them equal (0.11 s
    both). Nothing is copied: the workers still share the file's pages."""
    array = np.asarray(np.load(path, mmap_mode="r"))
    if array.size:
        int(array.reshape(-1).view(np.uint8)[::4096].sum())
    return array


def _watch_parent(parent: int, folder: str) -> None:
    """Runs in a worker thread: when the parent process is gone (killed with SIGKILL, say) the worker
    removes the shared data folder and exits, instead of living on with its memory."""
    while True:
        time.sleep(0.25)
        if os.getppid() != parent:
            shutil.rmtree(folder, ignore_errors=True)
            os._exit(1)


def _init_worker(folder: str, raw: dict, fundamentals: Any, parent: int | None = None) -> None:
    if parent is not None:
        import threading

        threading.Thread(target=_watch_parent, args=(parent, folder), name="backforge-parent-watch", daemon=True).start()
    _WORKER["data"] = _attach(folder)
    _WORKER["raw"] = raw
    _WORKER["fundamentals"] = fundamentals
    _WORKER["threads"] = 1  # the pool's processes are the parallelism: one account slot each


def _run_batch(batch: list[dict], start: int | None, end: int | None, keep_returns: bool,
               data: MarketData | None = None, raw: dict | None = None, fundamentals: Any = None,
               batched: bool = True, threads: int | None = None) -> list[Trial]:
    """Evaluate a batch of trials: with the batched runtime where it applies (``batched``), else one
    backtest per trial; the trials it cannot prove are run one by one too."""
    data = data if data is not None else _WORKER["data"]
    raw = raw if raw is not None else _WORKER["raw"]
    fundamentals = fundamentals if fundamentals is not None else _WORKER.get("fundamentals")
    threads = threads if threads is not None else _WORKER.get("threads")
    outcomes = None
    if batched and batch:
        evaluator = _evaluator(raw, data, start, end, fundamentals, threads)
        if evaluator is not None:
            outcomes = evaluator.evaluate(batch, keep_returns=len(batch) if keep_returns else 0)
    out = []
    for i, values in enumerate(batch):
        if outcomes is not None and outcomes[i].batched:
            out.append(Trial(values, outcomes[i].metrics, outcomes[i].returns, runtime="batched"))
            continue
        try:
            metrics, rets = evaluate_params(raw, values, data, start=start, end=end, fundamentals=fundamentals,
                                            keep_returns=keep_returns)
            out.append(Trial(values, metrics, rets))
        except BackforgeError as exc:
            out.append(Trial(values, {}, None, error=str(exc)))
    return out


_EVALUATORS: dict[tuple, tuple] = {}  # per process: (data, fundamentals, batch evaluator) by config and period


def _evaluator(raw: dict, data: MarketData, start: int | None, end: int | None, fundamentals: Any,
               threads: int | None):
    """The process's :class:`~backforge.strategy.batch.BatchEvaluator` of a config on a period (built
    once: it classifies the parameters by compiling probes), or None when the config cannot be batched
    (its defaults do not compile: every trial then reports its own error on the per-trial path)."""
    import json

    from backforge.strategy.batch import BatchEvaluator

    key = (json.dumps(raw, sort_keys=True, default=str), id(data), id(fundamentals), start, end, threads)
    hit = _EVALUATORS.get(key)
    if hit is not None and hit[0] is data and hit[1] is fundamentals:  # the very objects, not a reused id
        return hit[2]
    if len(_EVALUATORS) >= 16:
        _EVALUATORS.clear()
    try:
        evaluator = BatchEvaluator(raw, data, start=start, end=end, fundamentals=fundamentals, cache=_INDICATOR_CACHE,
                                   threads=threads)
    except BackforgeError:
        evaluator = None
    _EVALUATORS[key] = (data, fundamentals, evaluator)
    return evaluator


class LocalExecutor:
    """Batches of trials on a pool of local processes that memory-map the shared data.

    ``workers=1`` evaluates in this process (no pool), which is also the reference for determinism.
    A crashed worker's batch is retried once in a fresh pool; if it crashes again its trials are
    reported as failed and the finished results are kept.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._folder: str | None = None
        self._context: tuple | None = None
        self._batched = True

    def start(self, data: MarketData, raw: dict, fundamentals: Any = None, *, batched: bool = True) -> None:
        """Share the data with the workers; a pool already serving the same data and config is kept.
        ``batched=False`` runs one backtest per trial instead of the batched runtime."""
        self._batched = batched
        if self._context is not None and self._context[0] is data and self._context[1] is raw \
                and self._context[2] is fundamentals and (self._pool is not None or self.workers == 1):
            return
        self.close()
        self._context = (data, raw, fundamentals)
        if self.workers > 1:
            self._folder = _share(data)
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing as mp

        data, raw, fundamentals = self._context
        return ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(self._folder, raw, fundamentals, os.getpid()))

    def map(self, batches: list[list[dict]], start: int | None, end: int | None, keep_returns: bool,
            on_done: Callable[[int], None] | None = None) -> list[Trial]:
        data, raw, fundamentals = self._context
        results: list[list[Trial] | None] = [None] * len(batches)
        if self._pool is None:
            for i, batch in enumerate(batches):
                results[i] = _run_batch(batch, start, end, keep_returns, data, raw, fundamentals, self._batched, 1)
                if on_done:
                    on_done(len(batch))
        else:
            futures = {self._pool.submit(_run_batch, b, start, end, keep_returns, None, None, None, self._batched): i
                       for i, b in enumerate(batches)}
            failed = []
            for future, i in futures.items():
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    failed.append(i)
                if on_done and results[i] is not None:
                    on_done(len(batches[i]))
            if failed:
                self._pool.shutdown(cancel_futures=True)
                self._pool = self._new_pool()
                for i in failed:
                    try:
                        results[i] = self._pool.submit(_run_batch, batches[i], start, end, keep_returns, None, None,
                                                       None, self._batched).result()
                    except BrokenProcessPool:
                        self._pool = self._new_pool()
                        results[i] = [Trial(v, {}, None, error="worker crashed twice on this batch") for v in batches[i]]
                    if on_done:
                        on_done(len(batches[i]))
        return [t for r in results for t in (r or [])]

    def close(self) -> None:
        """Stop the workers and remove the shared data folder."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._context = None

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RayExecutor:
    """Batches of trials on a Ray cluster (``address``) or a local Ray started on demand.

    The data is put once in Ray's object store; workers read it without copying (NumPy arrays are
    zero-copy there).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        self._started = False
        self._refs: Any = None

    def start(self, data: MarketData, raw: dict, fundamentals: Any = None, *, batched: bool = True) -> None:
        self._batched = batched
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'backforge[ray]'", field="executor") from None
        if self.address and self.address != "auto":
            _check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as exc:
                raise ConfigError(f"cannot connect to Ray at {self.address or 'a local instance'}: {exc}", field="ray_address") from None
            self._started = True
        arrays = {"timestamps": data.timestamps, "assets": data.assets,
                  **{f: getattr(data, f) for f in ("open", "high", "low", "close", "volume")},
                  "bid": tuple(data.bid) if data.bid else None, "ask": tuple(data.ask) if data.ask else None}
        self._refs = (ray.put(arrays), ray.put(raw), ray.put(fundamentals))
        self._remote = ray.remote(_ray_batch)

    def map(self, batches: list[list[dict]], start: int | None, end: int | None, keep_returns: bool,
            on_done: Callable[[int], None] | None = None) -> list[Trial]:
        import ray

        data_ref, raw_ref, fund_ref = self._refs
        # the refs travel inside a list, unresolved: a worker fetches them once and keeps the objects for
        # the following batches (its batch evaluator and indicator cache are keyed by them)
        pending = {self._remote.options(max_retries=1, retry_exceptions=False).remote(
            [data_ref, raw_ref, fund_ref], b, start, end, keep_returns, getattr(self, "_batched", True)): i
            for i, b in enumerate(batches)}
        results: list[list[Trial] | None] = [None] * len(batches)
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for ref in done:
                i = pending[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost worker: keep going, report the trials
                    results[i] = [Trial(v, {}, None, error=f"worker failed: {type(exc).__name__}") for v in batches[i]]
                if on_done:
                    on_done(len(batches[i]))
        return [t for r in results for t in (r or [])]

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


_RAY_CONTEXT: dict[tuple, tuple] = {}  # per Ray worker: (data, raw, fundamentals) by the object refs' ids


def _ray_batch(refs: list, batch: list[dict], start, end, keep_returns, batched: bool = True) -> list[Trial]:
    """A batch on a Ray worker: the data comes from the object store (zero-copy arrays), fetched on the
    worker's first batch of a search and reused by the next ones."""
    key = tuple(ref.hex() for ref in refs)
    context = _RAY_CONTEXT.get(key)
    if context is None:
        import ray

        arrays, raw, fundamentals = ray.get(refs)
        bid = Quotes(*arrays["bid"]) if arrays["bid"] else None
        ask = Quotes(*arrays["ask"]) if arrays["ask"] else None
        data = MarketData(arrays["timestamps"], arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                          arrays["volume"], tuple(arrays["assets"]), bid, ask)
        _RAY_CONTEXT.clear()  # one search at a time per worker: release the previous one's objects
        context = _RAY_CONTEXT[key] = (data, raw, fundamentals)
    data, raw, fundamentals = context
    return _run_batch(batch, start, end, keep_returns, data, raw, fundamentals, batched, 1)  # one Ray CPU: one slot


def _check_reachable(address: str) -> None:
    import socket

    host, _, port = address.replace("ray://", "").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=3):
            pass
    except (OSError, ValueError):
        raise ConfigError(f"the Ray address {address} does not answer; start a cluster with `ray start --head` "
                          "or omit --ray-address to start a local Ray", field="ray_address") from None


def make_executor(name: str, *, workers: int | None = None, ray_address: str | None = None):
    """``"local"`` (default) or ``"ray"``."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(ray_address, workers)
    raise ConfigError(f"unknown executor {name!r}{did_you_mean(name, ['local', 'ray'])}", field="executor")


# ------------------------------------------------------------------------------------- searching

@dataclass
class OptimizationResult:
    """All trials of a search, ranked, with the overfitting statistics of the best one."""

    space: ParameterSpace
    metric: list[str]
    trials: list[Trial]
    method: str
    seed: int
    seconds: float
    generations: list[dict] = field(default_factory=list)
    overfitting: dict = field(default_factory=dict)
    pareto: list[dict] = field(default_factory=list)
    runtime: str = "per-trial"  # "batched", "per-trial" or "mixed": how the trials were evaluated
    runtime_detail: str = ""  # one line: which parameters were patched, compiled per group, run per trial

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    def _repr_html_(self) -> str:
        from backforge.results.notebook import optimization_html

        return optimization_html(self)

    @property
    def table(self) -> pl.DataFrame:
        """One row per trial: parameters, metrics (and error), best first by the first metric."""
        rows = []
        for t in self.trials:
            row = {**{f"param.{k}": v for k, v in t.params.items()}, **t.metrics}
            row["error"] = t.error
            rows.append(row)
        df = pl.DataFrame(rows, infer_schema_length=None)
        primary = self.metric[0]
        if primary in df.columns:
            df = df.sort(primary, descending=primary not in MINIMIZE, nulls_last=True)
        return df

    @property
    def best(self) -> Trial:
        ok = [t for t in self.trials if t.error is None and np.isfinite(t.metrics.get(self.metric[0], np.nan))]
        if not ok:
            raise BackforgeError("no trial succeeded; see the error column of the table")
        sign = -1 if self.metric[0] in MINIMIZE else 1
        return max(ok, key=lambda t: (sign * t.metrics[self.metric[0]], _tiebreak(t.params)))

    def heatmap(self, x: str, y: str, *, metric: str | None = None):
        """A Plotly heatmap of ``metric`` (default: the objective) over two parameters (best over the others)."""
        import plotly.graph_objects as go

        metric = metric or self.metric[0]
        for name in (x, y):
            if name not in self.space.names:
                raise ConfigError(f"unknown parameter {name!r}{did_you_mean(name, self.space.names)}", field="heatmap")
        xs, ys, grid = heatmap_grid(self.table, x, y, metric)
        fig = go.Figure(go.Heatmap(z=grid, x=xs, y=ys, colorscale="RdYlGn", colorbar={"title": metric}))
        fig.update_layout(title=f"{metric} by {x} and {y}", xaxis_title=x, yaxis_title=y, template="plotly_white")
        return fig


def heatmap_grid(table: pl.DataFrame, x: str, y: str, metric: str) -> tuple[list, list, np.ndarray]:
    """``(x values, y values, grid[len(y), len(x)])``: the best ``metric`` over every other parameter for
    each pair of values of parameters ``x`` and ``y`` in a trials table (``param.*`` columns, an ``error``
    column); NaN where no trial ran. Best is the minimum for metrics minimized, else the maximum.

    Examples
    --------
    >>> t = pl.DataFrame({"param.a": [1, 1, 2, 2], "param.b": [5, 5, 5, 6], "param.c": [0, 1, 0, 0],
    ...                   "sharpe": [0.1, 0.4, 0.2, 0.3], "error": [None, None, None, None]})
    >>> xs, ys, grid = heatmap_grid(t, "a", "b", "sharpe")
    >>> xs, ys, grid.tolist()
    ([1, 2], [5, 6], [[0.4, 0.2], [nan, 0.3]])
    """
    df = table.filter(pl.col("error").is_null()) if "error" in table.columns else table
    agg = df.group_by(f"param.{x}", f"param.{y}").agg(
        pl.col(metric).min() if metric in MINIMIZE else pl.col(metric).max()).sort(f"param.{x}", f"param.{y}")
    xs = sorted(agg[f"param.{x}"].unique().to_list())
    ys = sorted(agg[f"param.{y}"].unique().to_list())
    grid = np.full((len(ys), len(xs)), np.nan)
    for row in agg.iter_rows():
        grid[ys.index(row[1]), xs.index(row[0])] = row[2]
    return xs, ys, grid


def _tiebreak(params: dict) -> tuple:
    return tuple((-v if isinstance(v, (int, float)) else 0) for v in params.values())


def _batches(items: list[dict], workers: int, size: int | None = None) -> list[list[dict]]:
    if not items:
        return []
    size = size or max(1, min(64, math.ceil(len(items) / (workers * 4))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _overfitting(trials: list[Trial], metric: str, periods_per_year: float) -> dict:
    """Deflated Sharpe ratio of the best trial (counting every trial actually run), its minimum track
    record length, and the probability of backtest overfitting by CSCV over the trials' kept returns."""
    from backforge.research import stats

    ok = [t for t in trials if t.error is None and t.returns is not None and len(t.returns) > 2]
    out: dict[str, Any] = {"n_trials": len(trials)}
    if len(ok) < 2:
        out["note"] = "fewer than two trials with returns: no overfitting statistics"
        return out
    matrix = np.column_stack([t.returns.astype(np.float64) for t in ok])
    sd = matrix.std(axis=0, ddof=1)
    sharpes = np.where(sd > 0, matrix.mean(axis=0) / np.where(sd > 0, sd, 1.0), 0.0)
    best = int(np.argmax(sharpes))
    try:
        dsr = stats.deflated_sharpe_ratio(matrix[:, best], n_trials=len(trials), trial_sharpes=sharpes)
        out["deflated_sharpe"] = {"dsr": dsr.deflated_sharpe, "psr": dsr.probabilistic_sharpe,
                                  "sharpe_per_period": dsr.sharpe, "expected_max_sharpe": dsr.benchmark_sharpe,
                                  "n_trials": dsr.n_trials}
        out["min_track_record_length"] = float(stats.minimum_track_record_length(dsr.sharpe, dsr.skew, dsr.kurtosis))
    except BackforgeError as exc:
        out["deflated_sharpe_error"] = str(exc)
    if matrix.shape[0] >= 32:
        try:
            pbo = stats.probability_of_backtest_overfitting(matrix, n_splits=16 if matrix.shape[0] >= 64 else 8)
            out["pbo"] = {"pbo": pbo.pbo, "degradation_slope": pbo.degradation_slope,
                          "probability_of_loss": pbo.probability_of_loss, "combinations": pbo.n_combinations}
        except BackforgeError as exc:
            out["pbo_error"] = str(exc)
    return out


_CLASS_SEARCH = ("metric", "method", "samples", "seed", "population", "generations", "patience", "start", "end",
                 "progress")
"""The search options :func:`~backforge.strategy.search.optimize_class` takes."""


def optimize(raw: dict, data: MarketData, config: SearchConfig | None = None, *, executor: Any = None,
             fundamentals: Any = None, **options: Any) -> OptimizationResult:
    """Search the parameters declared in a raw strategy config.

    ``config`` is a :class:`SearchConfig`; its options may also be given as keywords (``method="random",
    samples=50``), alone or overriding ``config``. ``executor`` (default: local processes on every core)
    and ``fundamentals`` are the resources the search uses. Grids larger than
    ``config.max_combinations`` are refused, counted arithmetically before anything is built.

    Examples
    --------
    >>> import backforge as bf
    >>> raw = {"name": "x", "universe": ["AAPL"], "constraints": ["fast < slow"], "strategies": [
    ...   {"name": "in", "condition": {"lhs": {"sma": {"window": {"param": "fast", "range": [5, 15, 5]}}},
    ...    "op": "crosses_above", "rhs": {"sma": {"window": {"param": "slow", "choices": [20, 40]}}}},
    ...    "action": {"buy": {}}}]}
    >>> res = optimize(raw, bf.synth(n_assets=1, years=2, seed=1), method="grid", executor=LocalExecutor(1))
    >>> res.n_trials, sorted(res.best.params)
    (6, ['fast', 'slow'])

    A strategy file on event data (``data.events``) is searched by :func:`optimize_events` (``data``: its
    event stream, or None for the file's own source).

    ``raw`` may also be a strategy class (:class:`backforge.Strategy` or compiled): the search is
    :func:`backforge.strategy.search.optimize_class` (``ranges=`` / ``constraints=`` default to the class's
    own; the other keywords that are not search options are backtest options).
    """
    if isinstance(raw, type):
        from backforge.strategy.search import optimize_class

        chosen = {k: v for k, v in (config.model_dump() if config is not None else {}).items() if k in _CLASS_SEARCH}
        chosen.update({k: options.pop(k) for k in list(options) if k in _CLASS_SEARCH})
        return optimize_class(data, raw, options.pop("ranges", None), constraints=options.pop("constraints", None),
                              workers=getattr(executor, "workers", None) or 1, **chosen, **options)
    if _event_file(raw):
        return optimize_events(raw, None if isinstance(data, MarketData) else data, config, **options)
    if config is None:
        config = SearchConfig(**options)
    elif options:
        config = SearchConfig(**{**config.model_dump(), **options})
    metrics = list(config.metric)
    method, seed, start, end = config.method, config.seed, config.start, config.end
    space = ParameterSpace.from_config(raw)
    if not space:
        raise ConfigError("the strategy declares no parameters: write e.g. window: {param: fast, range: [5, 50, 5]}", field="parameters")
    check_space(space, config)
    if end is not None and end > data.n_bars:
        raise ConfigError(f"end bar {end} is past the data ({data.n_bars} bars)", field="end")
    if fundamentals is not None:
        from backforge.data.fundamentals import Fundamentals

        if not isinstance(fundamentals, Fundamentals):  # index the table once, not once per trial
            fundamentals = Fundamentals.from_frame(fundamentals)
    # validate the corners of the space against the data before any work starts
    from backforge.strategy.compiler import compile_portfolio
    from backforge.strategy.schema import load_portfolio

    view = data if end is None else data.rows(0, end)
    for probe in _probes(space):
        compile_portfolio(load_portfolio(space.instantiate(probe)), view, start_bar=start, fundamentals=fundamentals,
                          cache=_INDICATOR_CACHE)
    own_executor = executor is None
    executor = executor or LocalExecutor()
    started = time.perf_counter()
    kept = 0
    keep_returns = config.keep_returns
    batched = config.batched
    planner = _evaluator(raw, data, start, end, fundamentals, 1) if batched else None
    executor.start(data, raw, fundamentals, **({} if batched else {"batched": False}))
    try:
        progress_bar = _Progress(config.progress)
        workers = getattr(executor, "workers", None) or 2

        def evaluate(items: list[dict]) -> list[Trial]:
            nonlocal kept
            n_keep = max(0, min(len(items), keep_returns - kept))  # returns of the first keep_returns trials only
            kept += n_keep
            trials: list[Trial] = []
            for part, keep in ((items[:n_keep], True), (items[n_keep:], False)):
                if not part:
                    continue
                if planner is not None:  # one group of structural values per batch where possible
                    part = sorted(part, key=space.order_key(planner.structural + planner.columns))
                    batches = _batches(part, workers, max(1, min(2048, math.ceil(len(part) / (workers * 4)))))
                else:
                    batches = _batches(part, workers)
                trials += executor.map(batches, start, end, keep, on_done=progress_bar.advance)
            return trials

        generations_log: list[dict] = []
        if method == "grid":
            items = list(space.grid())
            progress_bar.total(len(items))
            trials = evaluate(items)
        elif method == "random":
            items = space.sample(config.samples, seed)
            progress_bar.total(len(items))
            trials = evaluate(items)
        else:
            trials, generations_log = _genetic(space, evaluate, metrics, config.population, config.generations,
                                               config.mutation_rate, config.crossover_rate, config.elite,
                                               config.patience, seed, progress_bar)
        progress_bar.close()
    finally:
        if own_executor:
            executor.close()
    order = space.order_key()
    trials.sort(key=lambda t: order(t.params))
    from backforge.results.metrics import periods_per_year_for

    result = OptimizationResult(space, metrics, trials, method, seed, time.perf_counter() - started, generations_log)
    result.runtime, result.runtime_detail = _runtime_summary(trials, planner, batched)
    result.overfitting = _overfitting(trials, metrics[0], periods_per_year_for(data.timestamps))
    if len(metrics) > 1:
        result.pareto = [t.params for t in _pareto_front([t for t in trials if t.error is None], metrics)]
    return result


def _event_file(raw: Any) -> bool:
    """Whether a raw strategy config runs on event data (``data.events``)."""
    return isinstance(raw, dict) and isinstance(raw.get("data"), dict) and raw["data"].get("events") is not None


def optimize_events(raw: dict, data: Any = None, config: SearchConfig | None = None, *, base: Any = None,
                    trade_from_ns: int | None = None, until_ns: int | None = None, **options: Any) -> OptimizationResult:
    """Search the parameters of a strategy file on event data (``data.events``): every trial is one
    event-engine run of the file with those values (:func:`~backforge.engine.events.language.run_event_portfolio`,
    its book, latency, queue and fee models), scored by :func:`score_result` on its equity grid like every
    search, with the same grid / random / genetic methods and overfitting statistics. ``data`` is the event
    stream (default: the file's own source, loaded once, relative to ``base``). The trials run one after
    another in this process: an event run is one compiled loop over the stream, and the stream is not
    copied into worker processes. ``start`` / ``end`` (bar positions) do not apply: the file's
    ``data.events`` says which part of the stream to run; ``trade_from_ns`` / ``until_ns`` bound a
    window (the rows before it warm the book and the indicators up, nothing trades on them; the trials
    are scored on the window: :func:`score_result` ``from_ns``), as
    :func:`~backforge.research.walkforward.walk_forward_events` searches each in-sample window.

    Examples
    --------
    >>> raw = {"name": "taker", "universe": ["SYNTH"], "data": {"events": {"source": "synthetic_l2",
    ...        "n_events": 20000, "seed": 3, "evaluate": {"grid": "1s"}}},
    ...        "strategies": [{"name": "in", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": ">",
    ...        "rhs": {"param": "level", "choices": [0.2, 0.4]}}, "action": {"buy": {"allocation": {"units": 0.1}}}},
    ...        {"name": "out", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": "<", "rhs": -0.2},
    ...        "action": {"close": {}}}]}
    >>> res = optimize_events(raw)
    >>> res.n_trials, sorted(res.best.params)
    (2, ['level'])
    """
    from backforge.engine.events.language import load_event_data, run_event_portfolio
    from backforge.results.metrics import periods_per_year_for
    from backforge.strategy.schema import load_portfolio

    if config is None:
        config = SearchConfig(**options)
    elif options:
        config = SearchConfig(**{**config.model_dump(), **options})
    if config.start or config.end is not None:
        raise ConfigError("start/end bars do not apply to a strategy file on event data: its data.events "
                          "start/end cut the stream", field="start")
    metrics = list(config.metric)
    space = ParameterSpace.from_config(raw)
    if not space:
        raise ConfigError("the strategy declares no parameters: write e.g. levels: {param: depth, range: [1, 5, 1]}",
                          field="parameters")
    check_space(space, config)
    portfolio = load_portfolio(raw)
    if data is None:
        data = load_event_data(portfolio.data.events, base=base)
    for probe in _probes(space):  # the corners of the space, validated before the search
        load_portfolio(space.instantiate(probe))
    started = time.perf_counter()
    progress_bar = _Progress(config.progress)
    kept = 0
    grid_stamps: list[np.ndarray] = []

    def run_one(values: dict, keep: bool) -> Trial:
        try:
            result = run_event_portfolio(space.instantiate(values), data, base=base, trade_from_ns=trade_from_ns,
                                         until_ns=until_ns)
        except BackforgeError as exc:
            return Trial(dict(values), {}, None, str(exc))
        stamps = np.asarray(result.data.timestamps)
        first = 0 if trade_from_ns is None else int(np.searchsorted(stamps, int(trade_from_ns), "left"))
        if not grid_stamps:
            grid_stamps.append(stamps[first:])
        returns = None
        if keep:
            equity = np.concatenate([[result.sim_config.cash], np.asarray(result.equity_values, dtype=np.float64)[first:]])
            returns = equity[1:] / equity[:-1] - 1.0
        return Trial(dict(values), score_result(result, from_ns=trade_from_ns), returns)

    def evaluate(items: list[dict]) -> list[Trial]:
        nonlocal kept
        trials = []
        for values in items:
            keep = kept < config.keep_returns
            kept += keep
            trials.append(run_one(values, keep))
            progress_bar.advance(1)
        return trials

    generations_log: list[dict] = []
    try:
        if config.method in ("grid", "random"):
            items = list(space.grid()) if config.method == "grid" else space.sample(config.samples, config.seed)
            progress_bar.total(len(items))
            trials = evaluate(items)
        else:
            trials, generations_log = _genetic(space, evaluate, metrics, config.population, config.generations,
                                               config.mutation_rate, config.crossover_rate, config.elite,
                                               config.patience, config.seed, progress_bar)
    finally:
        progress_bar.close()
    order = space.order_key()
    trials.sort(key=lambda t: order(t.params))
    result = OptimizationResult(space, metrics, trials, config.method, config.seed, time.perf_counter() - started,
                                generations_log)
    result.runtime = "per-trial"
    result.runtime_detail = f"per-trial runtime: {len(trials):,} event-engine runs one by one"
    stamps = grid_stamps[0] if grid_stamps else np.zeros(0, dtype=np.int64)
    result.overfitting = _overfitting(trials, metrics[0], periods_per_year_for(stamps) if len(stamps) > 2 else 252.0)
    if len(metrics) > 1:
        result.pareto = [t.params for t in _pareto_front([t for t in trials if t.error is None], metrics)]
    return result


def _runtime_summary(trials: list[Trial], planner: Any, batched: bool) -> tuple[str, str]:
    """("batched" | "per-trial" | "mixed", one line saying how the trials were evaluated)."""
    n = len(trials)
    fast = sum(1 for t in trials if t.runtime == "batched")
    if not batched:
        return "per-trial", f"per-trial runtime: {n:,} backtests one by one (batched runtime switched off)"
    if planner is None:
        return "per-trial", (f"per-trial runtime: {n:,} backtests one by one (the batched runtime does not apply: "
                             "the strategy's default parameters do not compile)")
    parts = []
    if planner.numeric:
        parts.append(f"patched: {', '.join(planner.numeric)}")
    if planner.columns:
        parts.append(f"indicator columns chosen per trial: {', '.join(planner.columns)}")
    if planner.structural:
        parts.append(f"compiled once per value of: {', '.join(planner.structural)}")
    how = "; ".join(parts) or "no parameter"
    if fast == n:
        return "batched", f"batched runtime: {n:,} trials ({how})"
    kind = "mixed" if fast else "per-trial"
    return kind, f"batched runtime: {fast:,} of {n:,} trials, {n - fast:,} one by one ({how})"


def check_space(space: ParameterSpace, config: SearchConfig) -> None:
    """Refuse a grid search over more than ``config.max_combinations`` combinations, from the count
    alone (the product of the parameters' value counts), before any combination is built.

    Examples
    --------
    >>> space = ParameterSpace.from_config({"a": {"param": "x", "range": [1, 100000]},
    ...                                     "b": {"param": "y", "range": [1, 100000]}})
    >>> check_space(space, SearchConfig(method="grid"))
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field method: a grid search over 10,000,000,000 combinations is more than the limit of 1,000,000; use method random (--method random --samples N) or genetic, or coarser ranges
    >>> check_space(space, SearchConfig(method="random"))  # sampled without enumerating: fine
    """
    total = space.total()
    if config.method == "grid" and total > config.max_combinations:
        raise ConfigError(f"a grid search over {total:,} combinations is more than the limit of "
                          f"{config.max_combinations:,}; use method random (--method random --samples N) or genetic, "
                          "or coarser ranges", field="method")


def heatmap_axes(text: str | None, space: ParameterSpace) -> tuple[str, str] | None:
    """The two parameters of a ``--heatmap x,y`` request, checked against the space (before a search runs).

    Examples
    --------
    >>> space = ParameterSpace.from_config({"a": {"param": "fast", "range": [1, 3]}, "b": {"param": "slow", "range": [4, 5]}})
    >>> heatmap_axes("fast, slow", space)
    ('fast', 'slow')
    >>> heatmap_axes("fast,slwo", space)
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field heatmap: unknown parameter 'slwo'; did you mean 'slow'? (parameters: fast, slow)
    """
    if text is None:
        return None
    parts = [part.strip() for part in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--heatmap takes two parameters separated by a comma, e.g. 'fast,slow'; got {text!r}",
                          field="heatmap")
    for name in parts:
        if name not in space.names:
            raise ConfigError(f"unknown parameter {name!r}{did_you_mean(name, space.names)} (parameters: "
                              f"{', '.join(space.names)})", field="heatmap")
    if parts[0] == parts[1]:
        raise ConfigError(f"--heatmap needs two different parameters, got {parts[0]!r} twice", field="heatmap")
    return parts[0], parts[1]


def period_bars(data: MarketData, start: Any = None, end: Any = None) -> tuple[int | None, int | None]:
    """The bar positions ``(start, end)`` (end exclusive) of the period ``start``..``end`` (times, as a
    strategy's ``data.start``/``data.end``), as :func:`~backforge.strategy.compiler.compile_portfolio`
    bounds a run: the search and its saved best runs trade the same bars as ``backforge run``.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=1)
    >>> period_bars(data, "2015-03-02", "2015-06-30")
    (41, 127)
    >>> period_bars(data)
    (None, None)
    """
    from backforge.strategy.compiler import _scalar_ns

    ts = data.timestamps
    hi = None
    if end is not None:
        hi = int(np.searchsorted(ts, _scalar_ns(end, "end"), side="right"))
    lo = None
    if start is not None:
        lo = int(np.searchsorted(ts, _scalar_ns(start, "start"))) or None
    if (hi if hi is not None else len(ts)) - (lo or 0) < 2:
        raise ConfigError(f"the period {start or 'first bar'} .. {end or 'last bar'} holds fewer than 2 bars of the "
                          "data", field="start")
    return lo, hi


def _probes(space: ParameterSpace) -> list[dict]:
    """Allowed combinations that include each parameter's smallest and largest value: compiling them
    before the search catches windows longer than the data and other invalid corners up front.

    Built from the corners (the other parameters at their first, then last values), then a bounded
    number of seeded random draws, and a scan only of spaces small enough to enumerate: never a walk
    over the whole grid per parameter.
    """
    probes: list[dict] = []
    rng = np.random.default_rng(0)
    for p in space.parameters:
        for extreme in (p.values[0], p.values[-1]):
            found = None
            for corner in (0, -1):
                candidate = {q.name: (extreme if q.name == p.name else q.values[corner]) for q in space.parameters}
                if space.allowed(candidate):
                    found = candidate
                    break
            for _ in range(0 if found else 200):
                candidate = {**space.draw(rng), p.name: extreme}
                if space.allowed(candidate):
                    found = candidate
                    break
            if found is None and space.total() <= MAX_SCAN:
                found = next((combo for combo in space.grid() if combo[p.name] == extreme), None)
            if found is not None and found not in probes:
                probes.append(found)
    if not probes:
        first = next(iter(space.grid()), None) if space.total() <= MAX_SCAN else None
        if first is None:
            sample = space.sample(1, 0)
            first = sample[0]
        probes.append(first)
    return probes


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from backforge._cli import progress_bar

            self.bar = progress_bar(transient=False)
            self.bar.start()
            self.task = self.bar.add_task("backtests", total=None)

    def total(self, n: int) -> None:
        if self.bar:
            self.bar.update(self.task, total=n)

    def grow(self, n: int) -> None:
        if self.bar:
            task = self.bar.tasks[0]
            self.bar.update(self.task, total=(task.total or 0) + n)

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


# ------------------------------------------------------------------------------------ genetic

def _objectives(t: Trial, metrics: list[str]) -> tuple[float, ...]:
    """Values to maximize (failed trials rank last)."""
    if t.error is not None:
        return tuple(-math.inf for _ in metrics)
    out = []
    for m in metrics:
        v = t.metrics.get(m, math.nan)
        v = -math.inf if not np.isfinite(v) and not (v == math.inf) else v
        out.append(-v if m in MINIMIZE else v)
    return tuple(out)


def _dominates(a: tuple, b: tuple) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def _pareto_front(trials: list[Trial], metrics: list[str]) -> list[Trial]:
    objs = [_objectives(t, metrics) for t in trials]
    return [t for i, t in enumerate(trials) if not any(_dominates(objs[j], objs[i]) for j in range(len(trials)) if j != i)]


def _rank(trials: list[Trial], metrics: list[str]) -> list[tuple]:
    """Sort keys (higher is better): single objective → the value; several → (−front, crowding)."""
    objs = [_objectives(t, metrics) for t in trials]
    if len(metrics) == 1:
        return [(o[0], _tiebreak(t.params)) for o, t in zip(objs, trials)]
    n = len(trials)
    front = [0] * n
    remaining = set(range(n))
    level = 0
    while remaining:
        current = {i for i in remaining if not any(_dominates(objs[j], objs[i]) for j in remaining if j != i)}
        for i in current:
            front[i] = level
        remaining -= current
        level += 1
    crowd = [0.0] * n
    for lvl in range(level):
        members = [i for i in range(n) if front[i] == lvl]
        for m in range(len(metrics)):
            members.sort(key=lambda i: objs[i][m])
            crowd[members[0]] = crowd[members[-1]] = math.inf
            span = objs[members[-1]][m] - objs[members[0]][m]
            if span > 0 and math.isfinite(span):
                for a, i in enumerate(members[1:-1], start=1):
                    crowd[i] += (objs[members[a + 1]][m] - objs[members[a - 1]][m]) / span
    return [(-front[i], crowd[i], _tiebreak(trials[i].params)) for i in range(n)]


def _genetic(space: ParameterSpace, evaluate: Callable[[list[dict]], list[Trial]], metrics: list[str], population: int,
             generations: int, mutation_rate: float, crossover_rate: float, elite: int, patience: int, seed: int,
             progress: _Progress) -> tuple[list[Trial], list[dict]]:
    rng = np.random.default_rng(seed)
    params = space.parameters
    cache: dict[tuple, Trial] = {}

    def key(values: dict) -> tuple:
        return tuple(values[p.name] for p in params)

    def from_genes(genes: Sequence[int]) -> dict:
        return {p.name: p.values[g] for p, g in zip(params, genes)}

    def genes_of(values: dict) -> list[int]:
        return [p.values.index(values[p.name]) for p in params]

    def repair(genes: list[int]) -> dict | None:
        values = from_genes(genes)
        if space.allowed(values):
            return values
        for _ in range(20):
            genes = [int(rng.integers(len(p.values))) if rng.random() < 0.5 else g for p, g in zip(params, genes)]
            values = from_genes(genes)
            if space.allowed(values):
                return values
        return None

    def run(candidates: list[dict]) -> None:
        fresh, seen = [], set()
        for c in candidates:
            k = key(c)
            if k not in cache and k not in seen:
                fresh.append(c)
                seen.add(k)
        if fresh:
            progress.grow(len(fresh))
            for trial in evaluate(fresh):
                cache[key(trial.params)] = trial

    pop = space.sample(population, seed)
    run(pop)
    log = []
    best_value = -math.inf
    stale = 0
    for gen in range(generations):
        trials = [cache[key(v)] for v in pop]
        ranks = _rank(trials, metrics)
        order = sorted(range(len(pop)), key=lambda i: ranks[i], reverse=True)
        leader = trials[order[0]]
        value = _objectives(leader, metrics)[0]
        log.append({"generation": gen, "best": leader.params, "best_value": leader.metrics.get(metrics[0]),
                    "evaluated": len(cache)})
        if value > best_value + 1e-12:
            best_value, stale = value, 0
        else:
            stale += 1
            if stale >= patience:
                break
        if gen == generations - 1:
            break
        children = [pop[i] for i in order[:elite]]

        def tournament() -> dict:
            picks = rng.choice(len(pop), size=min(3, len(pop)), replace=False)
            return pop[max(picks, key=lambda i: ranks[i])]

        attempts = 0
        while len(children) < population and attempts < population * 20:
            attempts += 1
            a, b = genes_of(tournament()), genes_of(tournament())
            if rng.random() < crossover_rate:
                mask = rng.random(len(params)) < 0.5
                child = [x if m else y for x, y, m in zip(a, b, mask)]
            else:
                child = list(a)
            for i, p in enumerate(params):
                if rng.random() < mutation_rate:
                    step = int(rng.integers(1, 3)) * (1 if rng.random() < 0.5 else -1)
                    child[i] = int(np.clip(child[i] + step, 0, len(p.values) - 1))
            values = repair(child)
            if values is not None:
                children.append(values)
        pop = children
        run(pop)
    return list(cache.values()), log
