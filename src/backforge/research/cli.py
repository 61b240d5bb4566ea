"""`backforge optimize` and `backforge walkforward`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from backforge._cli import command_app, console, friendly_errors
from backforge._paths import check_output_folder
from backforge.errors import ConfigError

app = command_app()
"""``optimize`` and ``walkforward``, added to the main CLI by :mod:`backforge.cli`."""


@app.command()
@friendly_errors
def optimize(
    strategy: Path = typer.Argument(..., help="Strategy file with parameters ({param: name, range: [...]}), or a "
                                    "Python file defining a Strategy class (its `ranges` attribute, or --range)."),
    metric: list[str] = typer.Option(["sharpe"], "--metric", help="Objective(s); several → Pareto front (genetic)."),
    method: str = typer.Option("grid", help="grid | random | genetic"),
    samples: int = typer.Option(100, min=1, help="Random search: number of combinations."),
    population: int = typer.Option(40, min=4, help="Genetic: population size."),
    generations: int = typer.Option(20, min=1, help="Genetic: maximum generations."),
    patience: int = typer.Option(5, min=1, help="Genetic: stop after this many generations without improvement."),
    seed: int = typer.Option(0, help="Seed of random and genetic search."),
    executor: str = typer.Option("local", help="local | ray"),
    workers: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: every core)."),
    ray_address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster (default: start a local Ray)."),
    data: Optional[list[Path]] = typer.Option(None, "--data", help="Data file(s) instead of the strategy's data spec."),
    top: int = typer.Option(3, min=0, help="Save the best N runs as full results."),
    heatmap: Optional[str] = typer.Option(None, help="Two parameters 'x,y' for a heatmap HTML."),
    fundamentals: Optional[Path] = typer.Option(None, "--fundamentals", help="Point-in-time fundamentals (CSV/Parquet of "
                                                "symbol, field, published_at, value) for `fundamental` indicators."),
    out: Path = typer.Option(Path("backforge-runs"), help="Folder under which results are saved."),
    ranges: Optional[list[str]] = typer.Option(None, "--range", help="Python strategy: a parameter's values, "
                                               "NAME=START:STOP[:STEP] (stop included) or NAME=V1,V2,... "
                                               "(replaces the class's own range for NAME)."),
    strategy_class: Optional[str] = typer.Option(None, "--strategy", help="Python file with several strategy "
                                                 "classes: the one to search."),
) -> None:
    """Search a strategy's parameters (grid, random, genetic) on local cores or Ray; report overfitting."""
    from backforge.research.optimize import SearchConfig, check_space, heatmap_axes, make_executor, period_bars
    from backforge.research.optimize import optimize as run_search
    from backforge.research.params import ParameterSpace
    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import load_portfolio, read_config

    check_output_folder(out, option="--out")  # before the search, not after it
    if strategy.suffix == ".py":
        _optimize_code(strategy, strategy_class, ranges, metric=metric, method=method, samples=samples,
                       population=population, generations=generations, patience=patience, seed=seed,
                       executor=executor, workers=workers, data=data, top=top, heatmap=heatmap,
                       fundamentals=fundamentals, out=out)
        return
    _python_only(ranges, strategy_class)
    raw, _ = read_config(strategy)
    portfolio = load_portfolio(raw)  # defaults: validates the file before any work
    space = ParameterSpace.from_config(raw)
    axes = heatmap_axes(heatmap, space) if space else None  # bad --heatmap fails now, not after the search
    if portfolio.data.events is not None:
        _optimize_events(strategy, raw, portfolio, metric=metric, method=method, samples=samples,
                         population=population, generations=generations, patience=patience, seed=seed,
                         executor=executor, data=data, fundamentals=fundamentals, top=top, axes=axes, out=out)
        return
    fundamentals_table = _fundamentals(fundamentals)
    market = load_data(portfolio, base=strategy.parent, override=data or None)
    first, stop = period_bars(market, portfolio.data.start, portfolio.data.end)  # the file's period, as `run`
    search = SearchConfig(metric=metric, method=method, samples=samples, population=population,
                          generations=generations, patience=patience, seed=seed, start=first, end=stop,
                          progress=True)
    if space:
        check_space(space, search)
    pool = make_executor(executor, workers=workers, ray_address=ray_address)
    try:
        result = run_search(raw, market, search, executor=pool, fundamentals=fundamentals_table)
    finally:
        pool.close()
    _show_search(result, metric, method)
    from backforge.strategy.compiler import compile_portfolio, run_compiled

    def best_run(values: dict):
        run = run_compiled(compile_portfolio(load_portfolio(raw, parameters=values), market,
                                             start=portfolio.data.start, end=portfolio.data.end,
                                             fundamentals=fundamentals_table))
        run.data_source = {"strategy_file": str(strategy.resolve()), "data": [str(p.resolve()) for p in data or []],
                           "start": portfolio.data.start, "end": portfolio.data.end, "parameters": values,
                           "trials": result.n_trials}
        if fundamentals is not None:
            run.data_source["fundamentals"] = str(fundamentals.resolve())
        return run

    _save_search(out, f"optimize-{strategy.stem}", result, axes, top, best_run, portfolio.name, {
        "method": method, "metric": metric, "seed": seed, "executor": executor, "runtime": result.runtime,
        "runtime_detail": result.runtime_detail, "strategy_file": str(strategy.resolve()),
        "start": portfolio.data.start, "end": portfolio.data.end})


@app.command()
@friendly_errors
def walkforward(
    strategy: Path = typer.Argument(..., help="Strategy file with parameters, or a Python file defining a Strategy "
                                    "class (its `ranges` attribute, or --range)."),
    in_sample: str = typer.Option(..., "--in-sample", help="In-sample length: bars (504) or a duration (2y, 365d)."),
    out_of_sample: str = typer.Option(..., "--out-of-sample", help="Out-of-sample length: bars or a duration (6mo, 90d)."),
    anchored: bool = typer.Option(False, help="Anchored (expanding) in-sample windows instead of rolling."),
    metric: str = typer.Option("sharpe", help="Objective optimized in each in-sample window."),
    method: str = typer.Option("grid", help="grid | random | genetic"),
    samples: int = typer.Option(50, min=1),
    seed: int = typer.Option(0),
    executor: str = typer.Option("local", help="local | ray"),
    workers: Optional[int] = typer.Option(None, min=1),
    ray_address: Optional[str] = typer.Option(None),
    data: Optional[list[Path]] = typer.Option(None, "--data"),
    fundamentals: Optional[Path] = typer.Option(None, "--fundamentals", help="Point-in-time fundamentals (CSV/Parquet of "
                                                "symbol, field, published_at, value) for `fundamental` indicators."),
    out: Path = typer.Option(Path("backforge-runs")),
    ranges: Optional[list[str]] = typer.Option(None, "--range", help="Python strategy: a parameter's values, "
                                               "NAME=START:STOP[:STEP] (stop included) or NAME=V1,V2,..."),
    strategy_class: Optional[str] = typer.Option(None, "--strategy", help="Python file with several strategy "
                                                 "classes: the one to walk forward."),
) -> None:
    """Walk-forward analysis: optimize in-sample, trade out-of-sample, stitch; efficiency and stability."""
    from backforge.research.folders import ResultFolder
    from backforge.research.optimize import SearchConfig, make_executor, period_bars
    from backforge.research.walkforward import walk_forward
    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import load_portfolio, read_config

    check_output_folder(out, option="--out")
    if strategy.suffix == ".py":
        import os

        from backforge.strategy.search import walk_forward_class

        _no_fundamentals(fundamentals)
        _local_only(executor)
        cls, market, space = _load_code(strategy, strategy_class, ranges, data)
        wf = walk_forward_class(market, cls, {p.name: list(p.values) for p in space.parameters},
                                constraints=[c.text for c in space.constraints], in_sample=in_sample,
                                out_of_sample=out_of_sample, anchored=anchored, metric=metric, method=method,
                                samples=samples, seed=seed, workers=workers or os.cpu_count() or 1)
        _save_walk_forward(wf, anchored, out, strategy)
        return
    _python_only(ranges, strategy_class)
    raw, _ = read_config(strategy)
    portfolio = load_portfolio(raw)
    if portfolio.data.events is not None:  # windows of the event run's equity grid, each replayed from the start
        from backforge.research.walkforward import walk_forward_events

        _events_only_here(executor, data, fundamentals)
        wf = walk_forward_events(raw, in_sample=in_sample, out_of_sample=out_of_sample, anchored=anchored,
                                 search=SearchConfig(metric=metric, method=method, samples=samples, seed=seed),
                                 base=strategy.resolve().parent)
        _save_walk_forward(wf, anchored, out, strategy)
        return
    fundamentals_table = _fundamentals(fundamentals)
    market = load_data(portfolio, base=strategy.parent, override=data or None)
    first, stop = period_bars(market, portfolio.data.start, portfolio.data.end)
    search = SearchConfig(metric=metric, method=method, samples=samples, seed=seed)
    pool = make_executor(executor, workers=workers, ray_address=ray_address)
    try:
        wf = walk_forward(raw, market, in_sample=in_sample, out_of_sample=out_of_sample, anchored=anchored,
                          search=search, executor=pool, start=first, end=stop,
                          fundamentals=fundamentals_table)
    finally:
        pool.close()
    _save_walk_forward(wf, anchored, out, strategy)


def _save_walk_forward(wf, anchored: bool, out: Path, strategy: Path) -> None:
    """Show a walk-forward's windows and summary and save them under ``out``."""
    from backforge.research.folders import ResultFolder

    show = Table(title=f"walk-forward ({'anchored' if anchored else 'rolling'}), {wf.n_trials} trials",
                 title_justify="left")
    for col in wf.windows.columns:
        show.add_column(col.removeprefix("param."), justify="right")
    for row in wf.windows.iter_rows():
        show.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v)[:19] for v in row))
    console.print(show)
    s = wf.summary()
    console.print(f"walk-forward efficiency [bold]{s['walk_forward_efficiency']:.2f}[/], out-of-sample total "
                  f"return {s['oos_total_return']:.2%}")
    if wf.extra.get("runtime_detail"):
        console.print(f"[dim]{escape(wf.extra['runtime_detail'])}[/]")
    with ResultFolder(out, f"walkforward-{strategy.stem}") as output:
        folder = output.path
        wf.windows.write_parquet(folder / "windows.parquet")
        wf.equity.write_parquet(folder / "oos_equity.parquet")
        (folder / "summary.json").write_text(json.dumps(s, indent=2, default=_json))
        final = output.commit()
    console.print(f"[green]saved:[/] {final}")


def _show_search(result, metric: list[str], method: str) -> None:
    """The ten best trials and the overfitting table of a search."""
    table = result.table
    show = Table(title=f"{result.n_trials} trials ({method}, {result.seconds:.1f} s) — best by {metric[0]}",
                 title_justify="left")
    cols = [c for c in table.columns if c.startswith("param.")] + [m for m in dict.fromkeys([*metric, "total_return", "max_drawdown", "trades"])]
    for col in cols:
        show.add_column(col.removeprefix("param."), justify="right")
    for row in table.head(10).iter_rows(named=True):
        show.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    console.print(show)
    if getattr(result, "runtime_detail", ""):  # which runtime evaluated the trials
        console.print(f"[dim]{escape(result.runtime_detail)}[/]")
    kept = [t.returns for t in result.trials if t.error is None and t.returns is not None]
    console.print(overfitting_table(result.overfitting, track_record=len(kept[0]) if kept else None))


# ------------------------------------------------------------------------------------ Python strategy files

def parse_range(text: str):
    """One ``--range`` option: ``(name, values)``. ``NAME=START:STOP[:STEP]`` is a strategy file's inclusive
    ``range`` (``{"range": [...]}``), ``NAME=V1,V2,...`` its ``choices``; values are numbers, true/false or text.

    >>> parse_range("fast=5:20:5"), parse_range("mode=a,b"), parse_range("stop=0.02,0.05")
    (('fast', {'range': [5, 20, 5]}), ('mode', ['a', 'b']), ('stop', [0.02, 0.05]))
    >>> parse_range("fast")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field range: --range takes NAME=START:STOP[:STEP] or NAME=V1,V2,..., got 'fast'
    """
    from backforge.errors import ConfigError

    name, sep, spec = str(text).partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name.isidentifier() or not spec:
        raise ConfigError(f"--range takes NAME=START:STOP[:STEP] or NAME=V1,V2,..., got {text!r}", field="range")

    def value(part: str):
        part = part.strip()
        if part.lower() in ("true", "false"):
            return part.lower() == "true"
        for kind in (int, float):
            try:
                return kind(part)
            except ValueError:
                pass
        return part

    if ":" in spec:
        bounds = [value(p) for p in spec.split(":")]
        if len(bounds) not in (2, 3) or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
            raise ConfigError(f"--range {name}=START:STOP[:STEP] takes two or three numbers, got {spec!r}",
                              field=f"range.{name}")
        return name, {"range": bounds}
    return name, [value(p) for p in spec.split(",")]


def _python_only(ranges: Optional[list[str]], strategy_class: Optional[str]) -> None:
    from backforge.errors import ConfigError

    if ranges:
        raise ConfigError("--range applies to a Python strategy file; a strategy file declares its parameters "
                          "({param: name, range: [...]})", field="range")
    if strategy_class:
        raise ConfigError("--strategy picks a class in a Python strategy file", field="strategy")


def _no_fundamentals(fundamentals: Optional[Path]) -> None:
    from backforge.errors import ConfigError

    if fundamentals is not None:
        raise ConfigError("--fundamentals applies to strategy files (YAML/JSON); a Python strategy reads its own data",
                          field="fundamentals")


def _local_only(executor: str) -> None:
    from backforge.errors import ConfigError

    if executor != "local":
        raise ConfigError(f"a Python strategy class is searched on local cores (--workers N), not --executor "
                          f"{executor}", field="executor")


def _load_code(path: Path, name: Optional[str], ranges: Optional[list[str]], data: Optional[list[Path]]):
    """The class of a Python strategy file, its market data and the space searched (the class's own
    ``ranges`` with each ``--range`` replacing its parameter's entry); the space is checked before the data
    loads."""
    from backforge.strategy.code import class_market, load_strategy_class
    from backforge.strategy.search import class_space

    cls = load_strategy_class(path, name, compiled=True)
    given = dict(parse_range(text) for text in ranges or ())
    if given:
        own = getattr(cls, "ranges", None)
        space = class_space(cls, {**(dict(own) if isinstance(own, dict) else {}), **given},
                            getattr(cls, "constraints", None) or ())
    else:
        space = class_space(cls)
    return cls, class_market(cls, path.parent, data), space


def _events_only_here(executor: str, data: Optional[list[Path]], fundamentals: Optional[Path]) -> None:
    """The options a search of a strategy file on event data refuses: it runs in this process on the file's
    own stream."""
    if executor != "local":
        raise ConfigError("a strategy file on event data is searched in this process: --executor ray does not "
                          "apply", field="executor")
    for given, option in ((data, "--data"), (fundamentals, "--fundamentals")):
        if given:
            raise ConfigError(f"{option} does not apply to a strategy file on event data: its data.events names "
                              "the stream (`backforge events run --events` runs a stored one)", field=option)


def _optimize_events(path: Path, raw: dict, portfolio: Any, *, metric: list[str], method: str, samples: int,
                     population: int, generations: int, patience: int, seed: int, executor: str,
                     data: Optional[list[Path]], fundamentals: Optional[Path], top: int, axes: Any, out: Path) -> None:
    """`backforge optimize` of a strategy file on event data: the trials are event-engine runs in this
    process (:func:`~backforge.research.optimize.optimize_events`), shown and saved as a bar file's search."""
    from backforge.engine.events.language import run_event_portfolio
    from backforge.research.optimize import SearchConfig, optimize_events
    from backforge.strategy.schema import load_portfolio

    _events_only_here(executor, data, fundamentals)
    search = SearchConfig(metric=metric, method=method, samples=samples, population=population,
                          generations=generations, patience=patience, seed=seed, progress=True)
    base = path.resolve().parent
    result = optimize_events(raw, None, search, base=base)
    _show_search(result, metric, method)

    def best_run(values: dict):
        run = run_event_portfolio(load_portfolio(raw, parameters=values), base=base)
        run.data_source.update({"strategy_file": str(path.resolve()), "parameters": values, "trials": result.n_trials})
        return run

    _save_search(out, f"optimize-{path.stem}", result, axes, top, best_run, portfolio.name, {
        "method": method, "metric": metric, "seed": seed, "executor": "local", "runtime": result.runtime,
        "runtime_detail": result.runtime_detail, "strategy_file": str(path.resolve()), "data": "events"})


def _optimize_code(path: Path, name: Optional[str], ranges: Optional[list[str]], *, metric: list[str], method: str,
                   samples: int, population: int, generations: int, patience: int, seed: int, executor: str,
                   workers: Optional[int], data: Optional[list[Path]], top: int, heatmap: Optional[str],
                   fundamentals: Optional[Path], out: Path) -> None:
    """`backforge optimize file.py`: the class's parameter search, shown and saved as a strategy file's."""
    import os

    from backforge.research.optimize import heatmap_axes
    from backforge.strategy.search import _backtest, optimize_class

    _no_fundamentals(fundamentals)
    _local_only(executor)
    cls, market, space = _load_code(path, name, ranges, data)
    axes = heatmap_axes(heatmap, space)
    result = optimize_class(market, cls, {p.name: list(p.values) for p in space.parameters},
                            constraints=[c.text for c in space.constraints], metric=metric, method=method,
                            samples=samples, seed=seed, population=population, generations=generations,
                            patience=patience, workers=workers or os.cpu_count() or 1, progress=True)
    _show_search(result, metric, method)

    def best_run(values: dict):
        run = _backtest(market, cls, values)
        run.data_source = {"strategy_file": str(path.resolve()), "class": cls.__name__,
                           "data": [str(p.resolve()) for p in data or []], "parameters": values,
                           "trials": result.n_trials}
        return run

    _save_search(out, f"optimize-{path.stem}", result, axes, top, best_run, cls.__name__, {
        "method": method, "metric": metric, "seed": seed, "executor": executor,
        "strategy_file": str(path.resolve()), "class": cls.__name__})


def _save_search(out: Path, name: str, result: Any, axes: Any, top: int, best_run: Any, title: str,
                 summary: dict) -> None:
    """Save a parameter search under ``out/name``: its trials, ``summary.json`` (the search's own figures
    after ``summary``), the heatmap of ``axes``, and the ``top`` best trials re-run by ``best_run(values)``
    as full results with their reports; the folder appears whole or not at all."""
    from backforge.research.folders import ResultFolder

    table = result.table
    with ResultFolder(out, name) as output:
        folder = output.path
        table.write_parquet(folder / "trials.parquet")
        (folder / "summary.json").write_text(json.dumps({
            **{k: summary[k] for k in ("method", "metric", "seed")},
            "trials": result.n_trials, "seconds": result.seconds, "best": result.best.params,
            "best_metrics": result.best.metrics, "overfitting": result.overfitting, "pareto": result.pareto,
            "generations": result.generations, **summary}, indent=2, default=_json))
        if axes:
            result.heatmap(*axes).write_html(folder / "heatmap.html", include_plotlyjs=True)
        best_rows = table.filter(table["error"].is_null()).head(top)
        for rank, row in enumerate(best_rows.iter_rows(named=True), start=1):
            values = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.")}
            best_run(values).save(folder / f"best-{rank}", report=True,
                                  title=f"{title} — best {rank} of {result.n_trials}")
        final = output.commit()
    console.print(f"[green]saved:[/] {final}")


def overfitting_rows(overfitting: dict, *, track_record: int | None = None) -> list[tuple[str, str, str]]:
    """The overfitting statistics of a search (``OptimizationResult.overfitting``) as (figure, value,
    one-line interpretation) rows; ``track_record`` is the number of returns each trial was measured on.

    Examples
    --------
    >>> rows = overfitting_rows({"n_trials": 40, "pbo": {"pbo": 0.54, "degradation_slope": -0.4,
    ...     "probability_of_loss": 0.3, "combinations": 70}})
    >>> [row[0] for row in rows]
    ['Trials', 'PBO', 'Out-of-sample degradation', 'Probability of loss']
    >>> rows[1][2]
    'the in-sample winner is more likely than not to underperform (rank below the median trial) out of sample (70 CSCV splits)'
    >>> overfitting_rows({"n_trials": 6, "deflated_sharpe": {"dsr": 0.97, "psr": 0.99, "sharpe_per_period": 0.08,
    ...     "expected_max_sharpe": 0.03, "n_trials": 6}, "min_track_record_length": 420.0}, track_record=500)[-1]
    ('MinTRL', '420 bars (record: 500)', 'the 500-bar record is long enough to trust a positive Sharpe at 95% confidence')
    """
    rows: list[tuple[str, str, str]] = []
    n = overfitting.get("n_trials")
    if n is not None:
        rows.append(("Trials", f"{n:,}", f"the winner is the best of {n:,} backtests: the more trials, the more of its "
                                          "edge is luck (DSR and PBO correct for it)" if n > 1 else "a single backtest: no selection bias"))
    if overfitting.get("note"):
        rows.append(("Note", "–", str(overfitting["note"])))
    dsr = overfitting.get("deflated_sharpe")
    if isinstance(dsr, dict):
        sharpe, floor = dsr.get("sharpe_per_period"), dsr.get("expected_max_sharpe")
        if _finite(sharpe) and _finite(floor):
            rows.append(("Best Sharpe (per bar)", f"{sharpe:.3f}",
                         f"{'above' if sharpe > floor else 'not above'} the {floor:.3f} that the best of "
                         f"{dsr.get('n_trials', n)} skill-less trials would show by luck alone"))
        psr = dsr.get("psr")
        if _finite(psr):
            rows.append(("PSR", f"{psr:.2f}", f"{psr:.0%} probability that the winner's true Sharpe is above zero "
                                               "(ignores how many trials were run)"))
        value = dsr.get("dsr")
        if _finite(value):
            verdict = ("passes the usual 0.95 bar: the edge survives the number of trials" if value >= 0.95 else
                       "below the usual 0.95 bar: the edge may be a product of the search")
            rows.append(("DSR", f"{value:.2f}", f"{value:.0%} probability that the true Sharpe beats the best of "
                                                 f"{dsr.get('n_trials', n)} worthless strategies; {verdict}"))
    if overfitting.get("deflated_sharpe_error"):
        rows.append(("DSR", "–", f"not computed: {overfitting['deflated_sharpe_error']}"))
    pbo = overfitting.get("pbo")
    if isinstance(pbo, dict):
        value, splits = pbo.get("pbo"), pbo.get("combinations")
        where = f" ({splits:,} CSCV splits)" if isinstance(splits, int) else ""
        if _finite(value):
            meaning = ("the in-sample winner is more likely than not to underperform (rank below the median trial) out of sample"
                       if value > 0.5 else
                       f"the in-sample winner ranks below the median trial out of sample in {value:.0%} of the splits")
            rows.append(("PBO", f"{value:.2f}", meaning + where))
        slope = pbo.get("degradation_slope")
        if _finite(slope):
            rows.append(("Out-of-sample degradation", f"{slope:.2f}",
                         f"slope of out-of-sample on in-sample Sharpe: {'a better in-sample Sharpe predicts a better one out of sample' if slope > 0 else 'in-sample gains do not carry over (they reverse)'}"))
        loss = pbo.get("probability_of_loss")
        if _finite(loss):
            rows.append(("Probability of loss", f"{loss:.2f}", f"the in-sample winner loses money out of sample in "
                                                                f"{loss:.0%} of the splits"))
    if overfitting.get("pbo_error"):
        rows.append(("PBO", "–", f"not computed: {overfitting['pbo_error']}"))
    if "min_track_record_length" in overfitting:
        need = overfitting["min_track_record_length"]
        record = f" (record: {track_record:,})" if track_record else ""
        if not _finite(need):
            rows.append(("MinTRL", "∞", "the winner's Sharpe is not positive: no track record is long enough"))
        elif track_record:
            enough = need <= track_record
            rows.append(("MinTRL", f"{need:,.0f} bars{record}",
                         f"the {track_record:,}-bar record is {'long enough' if enough else 'too short'} to trust a "
                         f"positive Sharpe at 95% confidence" + ("" if enough else f" (needs {need / track_record:.1f}× as long)")))
        else:
            rows.append(("MinTRL", f"{need:,.0f} bars", "returns needed to trust a positive Sharpe at 95% confidence"))
    return rows


def overfitting_table(overfitting: dict, *, track_record: int | None = None) -> Table:
    """:func:`overfitting_rows` as a Rich table (figure, value, what it means)."""
    table = Table(title="Overfitting", title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    table.add_column("what it means")
    for row in overfitting_rows(overfitting, track_record=track_record):
        table.add_row(*(escape(cell) for cell in row))
    return table


def _finite(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fundamentals(path: Optional[Path]):
    """The table of ``--fundamentals FILE`` (None without one); a bad file is one DataError naming it."""
    if path is None:
        return None
    from backforge.data.fundamentals import read_fundamentals

    return read_fundamentals(path)


def _json(value):
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
