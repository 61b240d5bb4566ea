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

import inspect
import pickle
import re
import time
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from backforge.data.market import MarketData
from backforge.errors import BackforgeError, ConfigError, did_you_mean

__all__ = ["class_space", "optimize_class", "walk_forward_class"]


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


def _attribute_line(strategy: type, name: str) -> str | None:
    """``file:line`` of the class attribute ``name`` in the class's source (the class line when not found)."""
    try:
        lines, first = inspect.getsourcelines(strategy)
        source = inspect.getsourcefile(strategy)
    except (OSError, TypeError):
        return None
    pattern = re.compile(rf"^\s*{re.escape(name)}\s*[:=]")
    line = next((first + i for i, text in enumerate(lines) if pattern.match(text)), first)
    return f"{Path(source or '?').name}:{line}"


def class_space(strategy: type, ranges: Mapping[str, Any] | None = None,
                constraints: Sequence[str] | None = None):
    """The :class:`~backforge.research.params.ParameterSpace` searched over a strategy class: ``ranges`` /
    ``constraints`` when given, else the class's own ``ranges`` and ``constraints`` attributes (the class's
    constraints go with its own ranges: with explicit ``ranges``, pass the constraints too).

    A range is a list of values, a ``range(...)``, or a strategy file's form — ``{"range": [start, stop,
    step]}`` (stop included) or ``{"choices": [...]}``; every value must have the type of the parameter's
    default (the class attribute). Errors name the class's line when the ranges are the class's own.

    >>> from backforge.strategy.code import Strategy
    >>> class S(Strategy):
    ...     fast, slow = 10, 50
    ...     ranges = {"fast": range(5, 20, 5), "slow": {"range": [20, 60, 20]}}
    ...     constraints = ["fast < slow"]
    >>> space = class_space(S)
    >>> space.names, space.size()
    (['fast', 'slow'], 9)
    >>> class_space(S, {"fast": [1.5]})
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field ranges.fast: parameter 'fast' of S is int (10), got 1.5
    """
    from backforge.research.params import MAX_VALUES_PER_PARAMETER, ParameterSpace
    from backforge.strategy.code import _split, strategy_parameters

    own = ranges is None
    if own:
        ranges = getattr(strategy, "ranges", None)
    if constraints is None:
        constraints = (getattr(strategy, "constraints", None) or ()) if own else ()
    where = _attribute_line(strategy, "ranges") if own else None
    where_constraints = _attribute_line(strategy, "constraints") if own and getattr(strategy, "constraints", None) \
        else None
    try:
        if not ranges:
            raise ConfigError(f"{strategy.__name__} declares no parameter ranges: add e.g. ranges = {{'fast': "
                              "range(5, 50, 5)} to the class (or pass ranges / --range fast=5:50:5)", field="ranges")
        if not isinstance(ranges, Mapping):
            raise ConfigError(f"ranges must map parameter names to values, got {type(ranges).__name__}", field="ranges")
        if isinstance(constraints, str) or not isinstance(constraints, (list, tuple)):
            raise ConfigError("constraints must be a list of comparisons like 'fast < slow'", field="constraints")
        declared = strategy_parameters(strategy)
        nodes = {}
        for name, spec in ranges.items():
            if name not in declared:
                raise ConfigError(f"{strategy.__name__} has no parameter {name!r}{did_you_mean(str(name), declared)}",
                                  field=f"ranges.{name}")
            if isinstance(spec, range) and len(spec) > MAX_VALUES_PER_PARAMETER:
                raise ConfigError(f"range has {len(spec):,} values, more than the {MAX_VALUES_PER_PARAMETER:,} a "
                                  "parameter may take; use a larger step", field=f"ranges.{name}")
            if isinstance(spec, Mapping):
                nodes[name] = {"param": name, **spec}
            elif isinstance(spec, (list, tuple, range, np.ndarray)):
                if len(spec) == 0:
                    raise ConfigError(f"the range of {name!r} holds no value", field=f"ranges.{name}")
                nodes[name] = {"param": name, "choices": [v.item() if isinstance(v, np.generic) else v for v in spec]}
            else:
                raise ConfigError(f"a range is a list of values, a range(...) or {{'range': [start, stop, step]}}, "
                                  f"got {spec!r}", field=f"ranges.{name}")
        space = ParameterSpace.from_config({"ranges": nodes, "constraints": [str(c) for c in constraints]})
        for p in space.parameters:
            default = declared[p.name]
            for value in p.values:
                _split(strategy, {p.name: value})  # each value has the parameter's type
                if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
                    raise ConfigError(f"parameter {p.name!r} of {strategy.__name__} is int ({default!r}), "
                                      f"got {value!r}", field=f"ranges.{p.name}")
    except ConfigError as exc:
        inside = exc.path or exc.field or ""
        line = where_constraints if where_constraints and inside.startswith("constraints") else where
        if line is None:
            raise
        raise ConfigError(exc.message, path=line, field=inside) from None
    return space


def _evaluator(data: MarketData, strategy: type, options: dict, keep_returns: bool, workers: int, progress: Any):
    """``evaluate(list of parameter dicts) -> trials``, in this process or a pool; and the pool to close."""
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and _pickles(strategy) else None

    def evaluate(items: list[dict]) -> list:
        if pool is not None and len(items) > 1:
            trials = list(pool.map(_run_one, *zip(*[(data, strategy, v, options, keep_returns) for v in items])))
        else:
            trials = [_run_one(data, strategy, v, options, keep_returns) for v in items]
        progress.advance(len(trials))
        return trials

    return evaluate, pool


def optimize_class(data: MarketData | Any, strategy: type, ranges: Mapping[str, Iterable[Any]] | None = None, *,
                   metric: str | Sequence[str] = "sharpe", constraints: Sequence[str] | None = None,
                   method: str = "grid", samples: int = 100, seed: int = 0, population: int = 40,
                   generations: int = 20, patience: int = 5, workers: int = 1, keep_returns: bool = True,
                   progress: bool = False, start: int | None = None, end: int | None = None, **options: Any):
    """Search the class parameters named in ``ranges`` (``{"fast": [5, 10, 20], "slow": range(20, 60,
    10)}``; default: the class's own ``ranges`` attribute, see :func:`class_space`); ``constraints`` are
    comparisons as in a strategy file (``"fast < slow"``; default: the class's ``constraints``). ``method``
    is ``grid`` (every allowed combination), ``random`` (``samples`` of them, drawn with ``seed``) or
    ``genetic`` (``population``, ``generations``, ``patience``), as for strategy files. ``options`` are the
    backtest options (costs, cash...); ``start`` / ``end`` (bar positions) bound the traded bars as in
    :func:`~backforge.strategy.code.backtest` (earlier bars warm up). ``workers > 1`` runs the trials in
    local processes when the class pickles (defined at module level of an importable module, or loaded
    from a file by :func:`~backforge.strategy.code.load_strategy_class`); otherwise, and by default, in
    this process.
    """
    from backforge.research.optimize import (OptimizationResult, SearchConfig, _genetic, _overfitting,
                                             _pareto_front, _Progress, check_space)
    from backforge.results.metrics import periods_per_year_for

    data = MarketData.coerce(data)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    config = SearchConfig(metric=metrics, method=method, samples=samples, seed=seed, population=population,
                          generations=generations, patience=patience)
    space = class_space(strategy, ranges, constraints)
    check_space(space, config)
    if start is not None or end is not None:
        options = {**options, "start": start, "end": end}
    started = time.perf_counter()
    bar = _Progress(progress)
    evaluate, pool = _evaluator(data, strategy, options, keep_returns, workers, bar)
    log: list[dict] = []
    try:
        if method == "genetic":
            trials, log = _genetic(space, evaluate, metrics, config.population, config.generations,
                                   config.mutation_rate, config.crossover_rate, config.elite, config.patience,
                                   config.seed, bar)
        else:
            items = list(space.grid()) if method == "grid" else space.sample(config.samples, config.seed)
            bar.total(len(items))
            trials = evaluate(items)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    unknown = [m for m in metrics if trials and trials[0].error is None and m not in trials[0].metrics]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}{did_you_mean(unknown[0], trials[0].metrics)}", field="metric")
    order = space.order_key()
    trials.sort(key=lambda t: order(t.params))
    result = OptimizationResult(space, metrics, trials, method, seed, time.perf_counter() - started, log)
    result.overfitting = _overfitting(trials, metrics[0], periods_per_year_for(data.timestamps))
    if len(metrics) > 1:
        result.pareto = [t.params for t in _pareto_front([t for t in trials if t.error is None], metrics)]
    return result


def walk_forward_class(data: MarketData | Any, strategy: type, ranges: Mapping[str, Iterable[Any]] | None = None, *,
                       in_sample: int | str, out_of_sample: int | str, anchored: bool = False,
                       metric: str = "sharpe", constraints: Sequence[str] | None = None, method: str = "grid",
                       samples: int = 50, seed: int = 0, workers: int = 1, start: int | None = None,
                       end: int | None = None, **options: Any):
    """Walk-forward analysis of a :class:`~backforge.strategy.code.Strategy` class: on each window, the grid of
    ``ranges`` is searched in-sample (:func:`optimize_class`), and the winner trades the following
    out-of-sample window; the out-of-sample equity is stitched together. Windows, warm-up (the bars before a
    window only warm indicators up, nothing is traded on them), the efficiency and the parameter stability are
    those of :func:`~backforge.research.walkforward.walk_forward` for strategy files; ``options`` are the
    backtest options, ``start`` / ``end`` bound the bars the windows cover. ``ranges`` / ``constraints``
    default to the class's own (:func:`class_space`); ``method`` / ``samples`` / ``seed`` as for
    :func:`optimize_class` (``grid`` or ``random``). A :func:`~backforge.strategy.compiled.compiled` class
    walks forward the same way: its ``init`` sees the warm-up bars, ``next_nb`` the window's
    (:func:`~backforge.strategy.compiled.backtest_compiled`'s ``start`` / ``end``).

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
    from backforge.research.walkforward import walk_forward_result, window_row, windows

    data = MarketData.coerce(data)
    if method not in ("grid", "random"):
        raise ConfigError(f"walk-forward searches each window by grid or random, got {method!r}", field="method")
    space = class_space(strategy, ranges, constraints)
    ranges = {p.name: list(p.values) for p in space.parameters}
    constraints = [c.text for c in space.constraints]
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
        res = optimize_class(data, strategy, ranges, metric=metric, constraints=constraints, method=method,
                             samples=samples, seed=seed, workers=workers, keep_returns=False, start=is_start,
                             end=oos_start, **options)
        n_trials += res.n_trials
        best = res.best
        names = list(best.params)
        oos = _backtest(data, strategy, {"start": oos_start, "end": oos_end, **best.params, **options})
        oos_metrics = score_result(oos)
        equity = np.concatenate([[oos.sim_config.cash], np.asarray(oos.equity_values, dtype=np.float64)])
        pieces.append(equity[1:] / equity[:-1] - 1.0)
        stamps.append(data.timestamps[oos_start:oos_end])
        is_returns.append(best.metrics["annual_return"])
        oos_returns.append(oos_metrics["annual_return"])
        rows.append(window_row(data, w, (is_start, oos_start, oos_end), best.params, metric, best.metrics,
                               oos_metrics, res.n_trials))
    return walk_forward_result(rows, pieces, stamps, is_returns, oos_returns, names, metric, n_trials,
                               {"anchored": anchored, "in_sample": str(in_sample), "out_of_sample": str(out_of_sample),
                                "minimize": metric in MINIMIZE, "strategy": strategy.__name__})

