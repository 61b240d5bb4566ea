"""Parameter searches over a strategy written as code (a :class:`~backforge.strategy.code.Strategy` or a
:func:`~backforge.strategy.compiled.compiled` class).

:func:`optimize_class` runs the class once per parameter set of a grid, scores each run with the search's
own :func:`~backforge.research.optimize.score_result`, and returns the same
:class:`~backforge.research.optimize.OptimizationResult` as a strategy file's search — ranked trials,
``best``, ``table``, ``heatmap`` and the overfitting statistics (deflated Sharpe, PBO) over every trial run.
:func:`walk_forward_class` runs that search on each in-sample window and trades the winner out of sample,
returning the :class:`~backforge.research.walkforward.WalkForwardResult` of a strategy file's walk-forward.

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
...             self.buy()
...         elif crossover(self.s, self.f) and self.position:
...             self.close()
>>> res = optimize_class(bf.synth(n_assets=1, years=1, seed=2), Cross, {"fast": [5, 10], "slow": [20, 30]},
...                      constraints=["fast < slow"])
>>> res.n_trials, sorted(res.best.params)
(4, ['fast', 'slow'])
"""

from __future__ import annotations

import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from backforge.data.market import MarketData
from backforge.errors import BackforgeError, ConfigError, did_you_mean

__all__ = ["optimize_class", "walk_forward_class"]


def _run_one(data: MarketData, strategy: type, values: dict, options: dict, keep_returns: bool):
    from backforge.research.optimize import Trial, score_result

    try:
        result = _backtest(data, strategy, {**values, **options})
    except BackforgeError as exc:
        return Trial(dict(values), {}, None, str(exc))
    returns = None
    if keep_returns:
        equity = np.concatenate([[result.sim_config.cash], np.asarray(result.equity_values, dtype=np.float64)])
        returns = equity[1:] / equity[:-1] - 1.0
    return Trial(dict(values), score_result(result), returns)


def _backtest(data: MarketData, strategy: type, keywords: dict):
    if getattr(strategy, "__backforge_compiled__", False):
        from backforge.strategy.compiled import backtest_compiled

        if keywords.get("start") or keywords.get("end") is not None:
            raise ConfigError(f"{strategy.__name__} is a compiled strategy: its searches run on the whole data "
                              "(start=/end= and walk-forward windows need a Strategy class)", field="start")
        keywords = {k: v for k, v in keywords.items() if k not in ("start", "end")}
        return backtest_compiled(data, strategy, **keywords)
    from backforge.strategy.code import backtest

    return backtest(data, strategy, **keywords)


def _pickles(strategy: type) -> bool:
    try:
        return pickle.loads(pickle.dumps(strategy)) is strategy
    except Exception:  # noqa: BLE001 - a class defined in a function, a notebook cell...
        return False


def optimize_class(data: MarketData | Any, strategy: type, ranges: Mapping[str, Iterable[Any]], *,
                   metric: str | Sequence[str] = "sharpe", constraints: Sequence[str] = (), workers: int = 1,
                   keep_returns: bool = True, start: int | None = None, end: int | None = None, **options: Any):
    """Grid-search the class parameters named in ``ranges`` (``{"fast": [5, 10, 20], "slow": range(20, 60,
    10)}``); ``constraints`` are comparisons as in a strategy file (``"fast < slow"``); ``options`` are the
    backtest options (costs, cash...); ``start`` / ``end`` (bar positions) bound the traded bars as in
    :func:`~backforge.strategy.code.backtest` (earlier bars warm up). ``workers > 1`` runs the trials in
    local processes when the class pickles (defined at module level of an importable module); otherwise,
    and by default, in this process.
    """
    from backforge.research.optimize import OptimizationResult, _overfitting
    from backforge.research.params import ParameterSpace
    from backforge.results.metrics import periods_per_year_for
    from backforge.strategy.code import strategy_parameters

    data = MarketData.coerce(data)
    declared = strategy_parameters(strategy)
    if not ranges:
        raise ConfigError("give at least one parameter range, e.g. {'fast': [5, 10, 20]}", field="ranges")
    for name in ranges:
        if name not in declared:
            raise ConfigError(f"{strategy.__name__} has no parameter {name!r}{did_you_mean(name, declared)}",
                              field=name)
    choices = {name: [v.item() if isinstance(v, np.generic) else v for v in values] for name, values in ranges.items()}
    raw = {"strategies": [{name: {"param": name, "choices": values} for name, values in choices.items()}],
           "constraints": list(constraints)}
    space = ParameterSpace.from_config(raw)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    items = list(space.grid())
    if start is not None or end is not None:
        options = {**options, "start": start, "end": end}
    started = time.perf_counter()
    if workers > 1 and _pickles(strategy) and len(items) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            trials = list(pool.map(_run_one, *zip(*[(data, strategy, v, options, keep_returns) for v in items])))
    else:
        trials = [_run_one(data, strategy, values, options, keep_returns) for values in items]
    unknown = [m for m in metrics if trials and trials[0].error is None and m not in trials[0].metrics]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}{did_you_mean(unknown[0], trials[0].metrics)}", field="metric")
    trials.sort(key=lambda t: tuple(str(t.params[n]) for n in space.names))
    result = OptimizationResult(space, metrics, trials, "grid", 0, time.perf_counter() - started)
    result.overfitting = _overfitting(trials, metrics[0], periods_per_year_for(data.timestamps))
    return result


def walk_forward_class(data: MarketData | Any, strategy: type, ranges: Mapping[str, Iterable[Any]], *,
                       in_sample: int | str, out_of_sample: int | str, anchored: bool = False,
                       metric: str = "sharpe", constraints: Sequence[str] = (), workers: int = 1,
                       start: int | None = None, end: int | None = None, **options: Any):
    """Walk-forward analysis of a :class:`~backforge.strategy.code.Strategy` class: on each window, the grid of
    ``ranges`` is searched in-sample (:func:`optimize_class`), and the winner trades the following
    out-of-sample window; the out-of-sample equity is stitched together. Windows, warm-up (the bars before a
    window only warm indicators up, nothing is traded on them), the efficiency and the parameter stability are
    those of :func:`~backforge.research.walkforward.walk_forward` for strategy files; ``options`` are the
    backtest options, ``start`` / ``end`` bound the bars the windows cover.

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
    ...             self.buy()
    ...         elif crossover(self.s, self.f) and self.position:
    ...             self.close()
    >>> wf = walk_forward_class(bf.synth(n_assets=1, years=3, seed=2), Cross, {"fast": [5, 10], "slow": [30]},
    ...                         in_sample=252, out_of_sample=126)
    >>> wf.windows.height, wf.n_trials
    (4, 8)
    """
    from backforge.research.optimize import MINIMIZE, score_result
    from backforge.research.walkforward import _iso, walk_forward_result, windows
    from backforge.strategy.code import backtest

    data = MarketData.coerce(data)
    if getattr(strategy, "__backforge_compiled__", False):
        raise ConfigError(f"{strategy.__name__} is a compiled strategy: walk-forward windows need a Strategy class "
                          "(its warm-up bars are seen by next() but not traded)", field="strategy")
    lo = int(start or 0)
    hi = data.n_bars if end is None else min(int(end), data.n_bars)
    if hi - lo < 2:
        raise ConfigError(f"the period (bars {lo}..{hi}) holds fewer than 2 bars", field="start")
    spans = [(a + lo, b + lo, c + lo)
             for a, b, c in windows(data.timestamps[lo:hi], in_sample, out_of_sample, anchored=anchored)]
    rows, pieces, stamps, is_returns, oos_returns = [], [], [], [], []
    n_trials = 0
    names: list[str] = list(ranges)
    for w, (is_start, oos_start, oos_end) in enumerate(spans):
        res = optimize_class(data, strategy, ranges, metric=metric, constraints=constraints, workers=workers,
                             keep_returns=False, start=is_start, end=oos_start, **options)
        n_trials += res.n_trials
        best = res.best
        names = list(best.params)
        oos = backtest(data, strategy, start=oos_start, end=oos_end, **best.params, **options)
        oos_metrics = score_result(oos)
        equity = np.concatenate([[oos.sim_config.cash], np.asarray(oos.equity_values, dtype=np.float64)])
        pieces.append(equity[1:] / equity[:-1] - 1.0)
        stamps.append(data.timestamps[oos_start:oos_end])
        is_returns.append(best.metrics["annual_return"])
        oos_returns.append(oos_metrics["annual_return"])
        rows.append({"window": w, "is_start": _iso(data, is_start), "oos_start": _iso(data, oos_start),
                     "oos_end": _iso(data, oos_end - 1), **{f"param.{k}": v for k, v in best.params.items()},
                     f"is_{metric}": best.metrics[metric], f"oos_{metric}": oos_metrics[metric],
                     "is_annual_return": best.metrics["annual_return"],
                     "oos_annual_return": oos_metrics["annual_return"], "trials": res.n_trials})
    return walk_forward_result(rows, pieces, stamps, is_returns, oos_returns, names, metric, n_trials,
                               {"anchored": anchored, "in_sample": str(in_sample), "out_of_sample": str(out_of_sample),
                                "minimize": metric in MINIMIZE, "strategy": strategy.__name__})

