"""Parameter searches over a strategy written as code (a :class:`~backforge.strategy.code.Strategy` or a
:func:`~backforge.strategy.compiled.compiled` class).

:func:`optimize_class` runs the class once per parameter set of a grid, scores each run with the search's
own :func:`~backforge.research.optimize.score_result`, and returns the same
:class:`~backforge.research.optimize.OptimizationResult` as a strategy file's search — ranked trials,
``best``, ``table``, ``heatmap`` and the overfitting statistics (deflated Sharpe, PBO) over every trial run.

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

__all__ = ["optimize_class"]


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
                   keep_returns: bool = True, **options: Any):
    """Grid-search the class parameters named in ``ranges`` (``{"fast": [5, 10, 20], "slow": range(20, 60,
    10)}``); ``constraints`` are comparisons as in a strategy file (``"fast < slow"``); ``options`` are the
    backtest options (costs, cash...). ``workers > 1`` runs the trials in local processes when the class
    pickles (defined at module level of an importable module); otherwise, and by default, in this process.
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
