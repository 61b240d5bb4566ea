"""Walk-forward analysis: optimize on an in-sample window, trade the winner on the following
out-of-sample window, move on; stitch the out-of-sample equity together.

Windows are measured on timestamps (a bar count or a duration for each part). ``anchored`` windows
keep their in-sample start at the first bar (expanding); rolling windows slide. Out-of-sample runs
use the data before their start as indicator warm-up only, so nothing from the future leaks in.

Walk-forward efficiency (WFE) is the mean annualized out-of-sample return over the mean annualized
in-sample return of the chosen parameters (Pardo): near 1 means the in-sample edge carried over;
below 0.5 suggests the optimization fitted noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from backforge._time import format_ns, parse_duration
from backforge.data.market import MarketData
from backforge.errors import ConfigError
from backforge.research.optimize import MINIMIZE, LocalExecutor, SearchConfig, evaluate_params, optimize
from backforge.research.params import ParameterSpace

__all__ = ["WalkForwardResult", "walk_forward", "walk_forward_events", "walk_forward_result", "window_row", "windows"]


def _span(value: int | str, name: str) -> tuple[int, int]:
    """(bars, ns): exactly one is > 0."""
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
        bars = int(value)
        if bars <= 0:
            raise ConfigError(f"{name} must be > 0 bars, got {bars}", field=name)
        return bars, 0
    text = str(value).strip().lower()
    if text.endswith("y") and text[:-1].replace(".", "", 1).isdigit():
        ns = float(text[:-1]) * 365.25 * 86_400e9
    elif text.endswith("mo") and text[:-2].replace(".", "", 1).isdigit():
        ns = float(text[:-2]) * 30.44 * 86_400e9
    else:
        ns = float(parse_duration(text))
    if not 0 < ns <= _MAX_SPAN_NS:
        raise ConfigError(f"{name} {value!r} must be a duration between 1 ns and 200 years", field=name)
    return 0, int(ns)


_MAX_SPAN_NS = 200 * 365.25 * 86_400e9  # any longer span overflows int64 nanoseconds next to real timestamps


def windows(timestamps: np.ndarray, in_sample: int | str, out_of_sample: int | str, *,
            anchored: bool = False) -> list[tuple[int, int, int]]:
    """Bar indices ``(is_start, oos_start, oos_end)`` of each window (``oos_end`` exclusive).

    Durations accept ``d``, ``w``, ``h``... plus ``y`` (365.25 days) and ``mo`` (30.44 days).

    Examples
    --------
    >>> ts = np.arange(100, dtype=np.int64)
    >>> windows(ts, 40, 20)
    [(0, 40, 60), (20, 60, 80), (40, 80, 100)]
    >>> windows(ts, 40, 20, anchored=True)[-1]
    (0, 80, 100)
    """
    T = len(timestamps)
    is_bars, is_ns = _span(in_sample, "in_sample")
    oos_bars, oos_ns = _span(out_of_sample, "out_of_sample")
    out = []
    if is_bars:
        oos_start = is_bars
    else:
        oos_start = int(np.searchsorted(timestamps, timestamps[0] + is_ns))
    while oos_start < T:
        if oos_bars:
            oos_end = min(T, oos_start + oos_bars)
        else:
            oos_end = int(np.searchsorted(timestamps, timestamps[oos_start] + oos_ns))
            oos_end = min(T, max(oos_end, oos_start + 1))
        if is_bars:
            is_start = 0 if anchored else max(0, oos_start - is_bars)
        else:
            is_start = 0 if anchored else int(np.searchsorted(timestamps, timestamps[oos_start] - is_ns))
        if oos_end - oos_start < 2:
            break
        out.append((is_start, oos_start, oos_end))
        oos_start = oos_end
    if not out:
        raise ConfigError(f"the data ({T} bars) is too short for an in-sample window of {in_sample} followed by "
                          f"an out-of-sample window of {out_of_sample}", field="in_sample")
    return out


@dataclass
class WalkForwardResult:
    """Per-window choices and performance, the stitched out-of-sample equity, WFE and stability."""

    windows: pl.DataFrame
    equity: pl.DataFrame
    efficiency: float
    stability: dict[str, dict[str, float]]
    metric: str
    n_trials: int
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        eq = self.equity["equity"].to_numpy()
        return {
            "windows": self.windows.height, "metric": self.metric, "walk_forward_efficiency": self.efficiency,
            "oos_total_return": float(eq[-1] / eq[0] - 1) if len(eq) else 0.0, "trials": self.n_trials,
            "parameter_stability": self.stability, "runtime": self.extra.get("runtime"),
            "runtime_detail": self.extra.get("runtime_detail"),
        }


def walk_forward(raw: dict, data: MarketData, *, in_sample: int | str, out_of_sample: int | str,
                 anchored: bool = False, search: SearchConfig | None = None, executor: Any = None,
                 fundamentals: Any = None, start: int | None = None, end: int | None = None,
                 **options: Any) -> WalkForwardResult:
    """Run a walk-forward analysis of a parameterised strategy config.

    ``search`` is the :class:`~backforge.research.optimize.SearchConfig` of each in-sample search (its
    options may be given as keywords: ``metric``, ``method``, ``samples``, ``seed``...; defaults: 50
    samples, population 20, 10 generations); window ``w`` uses seed ``seed + w``. ``start``/``end``
    (bar positions, end exclusive) bound the bars the windows cover.

    Examples
    --------
    >>> import backforge as bf
    >>> raw = {"name": "x", "universe": ["AAPL"], "strategies": [
    ...   {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": {"param": "n", "choices": [10, 20]}}}},
    ...    "action": {"buy": {}}},
    ...   {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": {"param": "n", "choices": [10, 20]}}}},
    ...    "action": {"close": {}}}]}
    >>> wf = walk_forward(raw, bf.synth(n_assets=1, years=3, seed=2), in_sample=252, out_of_sample=126,
    ...                   executor=LocalExecutor(1))
    >>> wf.windows.height
    4

    ``raw`` may also be a :class:`backforge.Strategy` class: the analysis is
    :func:`backforge.strategy.search.walk_forward_class` (``ranges=`` / ``constraints=`` default to the
    class's own; keywords other than ``metric``, ``method``, ``samples``, ``seed`` are backtest options).
    """
    if isinstance(raw, type):
        from backforge.strategy.search import walk_forward_class

        chosen = {k: v for k, v in (search.model_dump() if search is not None else {}).items()
                  if k in ("method", "samples", "seed")}
        if search is not None:
            chosen["metric"] = search.metric[0]
        return walk_forward_class(data, raw, options.pop("ranges", None), constraints=options.pop("constraints", None),
                                  in_sample=in_sample, out_of_sample=out_of_sample, anchored=anchored, start=start,
                                  end=end, workers=getattr(executor, "workers", None) or 1, **chosen, **options)
    defaults = {"samples": 50, "population": 20, "generations": 10}
    if search is None:
        search = SearchConfig(**{**defaults, **options})
    elif options:
        search = SearchConfig(**{**search.model_dump(), **options})
    if search.start is not None or search.end is not None:
        raise ConfigError("give the walk-forward period as start=/end= of walk_forward, not of the search config",
                          field="start")
    metric = search.metric[0]
    space = ParameterSpace.from_config(raw)
    if not space:
        raise ConfigError("the strategy declares no parameters to optimize", field="parameters")
    lo = int(start or 0)
    hi = data.n_bars if end is None else min(int(end), data.n_bars)
    if hi - lo < 2:
        raise ConfigError(f"the period (bars {lo}..{hi}) holds fewer than 2 bars", field="start")
    spans = [(a + lo, b + lo, c + lo)
             for a, b, c in windows(data.timestamps[lo:hi], in_sample, out_of_sample, anchored=anchored)]
    own = executor is None
    executor = executor or LocalExecutor()
    rows = []
    pieces: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    n_trials = 0
    is_returns, oos_returns = [], []
    runtimes: list[tuple[str, str]] = []
    try:
        for w, (is_start, oos_start, oos_end) in enumerate(spans):
            res = optimize(raw, data, search, seed=search.seed + w, start=is_start or None, end=oos_start,
                           keep_returns=0, executor=executor, fundamentals=fundamentals)
            n_trials += res.n_trials
            runtimes.append((res.runtime, res.runtime_detail))
            best = res.best
            oos_metrics, rets = evaluate_params(raw, best.params, data, start=oos_start, end=oos_end,
                                                fundamentals=fundamentals, keep_returns=True)
            pieces.append(rets.astype(np.float64))
            stamps.append(data.timestamps[oos_start:oos_end])
            is_returns.append(best.metrics["annual_return"])
            oos_returns.append(oos_metrics["annual_return"])
            rows.append(window_row(data, w, (is_start, oos_start, oos_end), best.params, metric, best.metrics,
                                   oos_metrics, res.n_trials))
    finally:
        if own:
            executor.close()
    return walk_forward_result(rows, pieces, stamps, is_returns, oos_returns, space.names, metric, n_trials,
                               {"anchored": anchored, "in_sample": str(in_sample), "out_of_sample": str(out_of_sample),
                                "minimize": metric in MINIMIZE, **_runtime(runtimes, n_trials)})


def walk_forward_events(raw: dict, data: Any = None, *, in_sample: int | str, out_of_sample: int | str,
                        anchored: bool = False, search: SearchConfig | None = None, base: Any = None,
                        **options: Any) -> WalkForwardResult:
    """Walk-forward analysis of a strategy file on event data (``data.events``; ``data``: its event stream,
    default the file's own source). The windows are cut from the equity grid of the file's run
    (``sample_every``): ``in_sample`` / ``out_of_sample`` count its rows or give durations. Each window
    replays the stream from its start — the rows before the window build the order book and warm the
    indicators up, no action fires on them — and stops before the window's end: the in-sample search is
    :func:`~backforge.research.optimize.optimize_events` on the in-sample window, the winner then trades
    the out-of-sample window; the out-of-sample equity is stitched together. ``search`` as for
    :func:`walk_forward` (window ``w`` uses seed ``seed + w``).

    Examples
    --------
    >>> raw = {"name": "taker", "universe": ["SYNTH"], "data": {"events": {"source": "synthetic_l2",
    ...        "n_events": 30000, "seed": 3, "evaluate": {"grid": "1s"}, "engine": {"sample_every": "1s"}}},
    ...        "strategies": [{"name": "in", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": ">",
    ...        "rhs": {"param": "level", "choices": [0.2, 0.4]}}, "action": {"buy": {"allocation": {"units": 0.1}}}},
    ...        {"name": "out", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": "<", "rhs": -0.2},
    ...        "action": {"close": {}}}]}
    >>> wf = walk_forward_events(raw, in_sample="20s", out_of_sample="10s", search=SearchConfig(method="grid"))
    >>> wf.windows.height > 1, wf.n_trials == 2 * wf.windows.height
    (True, True)
    """
    from backforge.engine.events.language import load_event_data, run_event_portfolio
    from backforge.research.optimize import optimize_events, score_result
    from backforge.strategy.schema import load_portfolio

    defaults = {"samples": 50, "population": 20, "generations": 10}
    if search is None:
        search = SearchConfig(**{**defaults, **options})
    elif options:
        search = SearchConfig(**{**search.model_dump(), **options})
    metric = search.metric[0]
    space = ParameterSpace.from_config(raw)
    if not space:
        raise ConfigError("the strategy declares no parameters to optimize", field="parameters")
    portfolio = load_portfolio(raw)
    if data is None:
        data = load_event_data(portfolio.data.events, base=base, symbol=portfolio.universe[0])
    grid = np.asarray(run_event_portfolio(portfolio, data, base=base).data.timestamps)
    if len(grid) < 3:
        raise ConfigError(f"the run's equity grid has {len(grid)} rows: choose a finer engine.sample_every",
                          field="data.events.engine.sample_every")
    clock = MarketData.from_arrays(grid, close=np.ones((len(grid), 1)), assets=list(portfolio.universe[:1]))
    rows: list[dict] = []
    pieces: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    is_returns, oos_returns = [], []
    n_trials = 0
    end_ns = int(data.exch_ts[-1]) + 1
    for w, (is_start, oos_start, oos_end) in enumerate(windows(grid, in_sample, out_of_sample, anchored=anchored)):
        lo, mid = int(grid[is_start]), int(grid[oos_start])
        hi = int(grid[oos_end]) if oos_end < len(grid) else end_ns
        res = optimize_events(raw, data, search.model_copy(update={"seed": search.seed + w, "keep_returns": 0}),
                              base=base, trade_from_ns=lo if is_start else None, until_ns=mid)
        n_trials += res.n_trials
        best = res.best
        oos = run_event_portfolio(load_portfolio(space.instantiate(best.params)), data, base=base, trade_from_ns=mid,
                                  until_ns=hi)
        oos_metrics = score_result(oos, from_ns=mid)
        ts = np.asarray(oos.data.timestamps)
        first = int(np.searchsorted(ts, mid, "left"))
        equity = np.concatenate([[oos.sim_config.cash], np.asarray(oos.equity_values, dtype=np.float64)[first:]])
        pieces.append(equity[1:] / equity[:-1] - 1.0)
        stamps.append(ts[first:])
        is_returns.append(best.metrics["annual_return"])
        oos_returns.append(oos_metrics["annual_return"])
        rows.append(window_row(clock, w, (is_start, oos_start, oos_end), best.params, metric, best.metrics,
                               oos_metrics, res.n_trials))
    return walk_forward_result(rows, pieces, stamps, is_returns, oos_returns, space.names, metric, n_trials,
                               {"anchored": anchored, "in_sample": str(in_sample), "out_of_sample": str(out_of_sample),
                                "minimize": metric in MINIMIZE, "runtime": "per-trial",
                                "runtime_detail": f"per-trial runtime: {n_trials:,} event-engine runs one by one"})


def window_row(data, w: int, span: tuple[int, int, int], params: dict, metric: str, is_metrics: dict,
               oos_metrics: dict, trials: int) -> dict:
    """One window's row of a walk-forward table: its dates, the chosen ``params`` (``param.NAME``), the
    search metric and the annual return in and out of sample, and the number of trials searched."""
    is_start, oos_start, oos_end = span
    return {"window": w, "is_start": _iso(data, is_start), "oos_start": _iso(data, oos_start),
            "oos_end": _iso(data, oos_end - 1), **{f"param.{k}": v for k, v in params.items()},
            f"is_{metric}": is_metrics[metric], f"oos_{metric}": oos_metrics[metric],
            "is_annual_return": is_metrics["annual_return"], "oos_annual_return": oos_metrics["annual_return"],
            "trials": trials}


def walk_forward_result(rows: list[dict], pieces: list[np.ndarray], stamps: list[np.ndarray], is_returns: list[float],
                        oos_returns: list[float], names: list[str], metric: str, n_trials: int,
                        extra: dict) -> WalkForwardResult:
    """Assemble a :class:`WalkForwardResult` from its windows: ``rows`` (one per window, with a
    ``param.NAME`` column per parameter in ``names``), each window's out-of-sample per-bar returns and
    timestamps, and the chosen parameters' in- and out-of-sample annual returns (for the efficiency)."""
    rets = np.concatenate(pieces)
    equity = np.cumprod(1.0 + rets)
    mean_is = float(np.mean(is_returns))
    efficiency = float(np.mean(oos_returns) / mean_is) if mean_is != 0 else 0.0
    table = pl.DataFrame(rows)
    stability = {}
    for name in names:
        values = np.array(table[f"param.{name}"].to_list(), dtype=float)
        changes = int(np.sum(values[1:] != values[:-1])) if len(values) > 1 else 0
        mean = float(np.mean(values))
        stability[name] = {"mean": mean, "std": float(np.std(values)), "changes": changes,
                           "cv": float(np.std(values) / abs(mean)) if mean else 0.0}
    equity_frame = pl.DataFrame({"timestamp": pl.Series(np.concatenate(stamps)).cast(pl.Datetime("ns", "UTC")),
                                 "equity": equity})
    return WalkForwardResult(table, equity_frame, efficiency, stability, metric, n_trials, extra)


def _runtime(runtimes: list[tuple[str, str]], n_trials: int) -> dict[str, str]:
    """How the windows' searches evaluated their trials: ``runtime`` ("batched", "per-trial" or "mixed")
    and a one-line ``runtime_detail`` (the first window's, which names the patched parameters)."""
    kinds = {kind for kind, _ in runtimes}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    detail = runtimes[0][1] if runtimes else ""
    if len(runtimes) > 1 and detail:
        detail = f"{kind} over {len(runtimes)} windows ({n_trials:,} trials); window 0: {detail}"
    return {"runtime": kind, "runtime_detail": detail}


def _iso(data: MarketData, i: int) -> str:
    return format_ns(int(data.timestamps[i]))
