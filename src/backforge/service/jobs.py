"""Job kinds of ``backforge serve``: a validated config per kind, and a runner that calls the library
function the matching CLI command calls (nothing is reimplemented here).

=============  =============================================================  ==========================
kind           runs                                                          saves
=============  =============================================================  ==========================
backtest       ``compile_portfolio`` + ``run_compiled`` (``backforge run``)    a run folder
optimize       ``research.optimize.optimize`` (``backforge optimize``)         trials, summary, best runs
walk_forward   ``research.walkforward.walk_forward``                          windows, OOS equity
monte_carlo    a backtest, then ``research.montecarlo.monte_carlo``            run folder + bands
judge          ``judge.core.judge`` on a saved run                            judge.json/.html in it
report         ``SavedRun.write_html`` (``backforge report``)                  report.html in the run
data_import    ``Catalog.import_file`` (``backforge data import``)             a catalog series
=============  =============================================================  ==========================

Every new folder is written under a hidden staging name and renamed into place, so a crash never
leaves a half-written result. Validation at submission (:func:`validate_job`) checks the config, the
strategy (schema, names, parameters) and that the data exists, and raises :class:`JobValidationError`
naming the exact field path (``strategy.strategies[0].condition.rhs.window``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backforge.errors import BackforgeError, ConfigError, did_you_mean

__all__ = ["JOB_KINDS", "JobValidationError", "JobContext", "JobCancelled", "validate_job", "run_job", "resolve_run",
           "list_runs", "job_json_schemas"]

MAX_STRATEGY_CHARS = 200_000
MAX_SYNTHETIC_CELLS = 200_000_000  # bars x assets of generated data one job may ask for
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}(/best-[0-9]{1,3})?$")


class JobValidationError(BackforgeError):
    """A job config that cannot run: ``loc`` is the exact field path, as in FastAPI's 422 answers."""

    code = "BF-SERVICE"

    def __init__(self, message: str, *, loc: list[Any]) -> None:
        self.loc = list(loc)
        super().__init__(message, path=_loc_text(self.loc))


class JobCancelled(Exception):
    """Raised inside a runner when its job was cancelled (or taken from this worker)."""


def _loc_text(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _path_to_loc(path: str | None) -> list[Any]:
    """``strategies[1].condition.rhs.window`` → ``['strategies', 1, 'condition', 'rhs', 'window']``.

    Examples
    --------
    >>> _path_to_loc("strategies[1].condition.rhs.window")
    ['strategies', 1, 'condition', 'rhs', 'window']
    >>> _path_to_loc(None)
    []
    """
    if not path:
        return []
    loc: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        loc.append(int(token[1:-1]) if token.startswith("[") else token)
    return loc


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataChoice(_Config):
    """Where a strategy's bars come from: its own ``data`` spec (synthetic by default, or files inside
    the server's import roots) or the catalog (one series per universe asset, at ``bar``)."""

    source: Literal["strategy", "catalog"] = "strategy"
    bar: Optional[str] = Field(None, description="catalog bar (default: the only bar stored, else 1d)")


class _StrategyJob(_Config):
    strategy: str = Field(..., min_length=1, max_length=MAX_STRATEGY_CHARS,
                          description="the strategy file's YAML (or JSON) text")
    data: DataChoice = Field(default_factory=DataChoice)
    name: Optional[str] = Field(None, max_length=200, description="a label for the job list")


class BacktestJob(_StrategyJob):
    """``backforge run``: backtest a strategy and save the run."""

    kind: Literal["backtest"] = "backtest"
    start: Optional[str] = None
    end: Optional[str] = None
    report: bool = Field(False, description="write the tear sheet now (it is otherwise written when first opened)")


class OptimizeJob(_StrategyJob):
    """``backforge optimize``: search the strategy's parameters."""

    kind: Literal["optimize"] = "optimize"
    metric: list[str] = Field(default_factory=lambda: ["sharpe"], min_length=1, max_length=4)
    method: Literal["grid", "random", "genetic"] = "grid"
    samples: int = Field(100, ge=1, le=100_000)
    population: int = Field(40, ge=4, le=10_000)
    generations: int = Field(20, ge=1, le=1_000)
    patience: int = Field(5, ge=1, le=1_000)
    seed: int = Field(0, ge=0)
    top: int = Field(3, ge=0, le=20)


class WalkForwardJob(_StrategyJob):
    """``backforge walkforward``: optimize in sample, trade out of sample, stitch."""

    kind: Literal["walk_forward"] = "walk_forward"
    in_sample: Union[int, str] = Field(..., description="bars (504) or a duration (2y, 365d)")
    out_of_sample: Union[int, str] = Field(..., description="bars or a duration (6mo, 90d)")
    anchored: bool = False
    metric: str = "sharpe"
    method: Literal["grid", "random", "genetic"] = "grid"
    samples: int = Field(50, ge=1, le=100_000)
    seed: int = Field(0, ge=0)


class MonteCarloJob(_StrategyJob):
    """A backtest and a Monte Carlo of its trades or bar returns."""

    kind: Literal["monte_carlo"] = "monte_carlo"
    start: Optional[str] = None
    end: Optional[str] = None
    method: Literal["reshuffle", "bootstrap", "block_bootstrap"] = "bootstrap"
    n_simulations: int = Field(1000, ge=1, le=100_000)
    seed: int = Field(0, ge=0)
    ruin_drawdown: float = Field(0.5, gt=0, le=1)
    trade_model: Literal["compound", "additive"] = "compound"


class JudgeJob(_Config):
    """``backforge judge`` (rule checks; no LLM from the service) on a saved run."""

    kind: Literal["judge"] = "judge"
    run: str
    trials: Optional[int] = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    walk_forward: bool = True
    max_drawdown_days: float = Field(365.0, ge=1)


class ReportJob(_Config):
    """``backforge report``: (re)write a saved run's tear sheet."""

    kind: Literal["report"] = "report"
    run: str
    benchmark: Literal["equal_weight", "none"] = "equal_weight"
    risk_free: float = Field(0.0, ge=-1, le=1)
    title: Optional[str] = Field(None, max_length=200)


class DataImportJob(_Config):
    """``backforge data import``: a file inside the server's import roots into the catalog."""

    kind: Literal["data_import"] = "data_import"
    path: str = Field(..., min_length=1, max_length=4096)
    symbol: str = Field(..., min_length=1, max_length=64)
    format: str = "auto"
    bar: Optional[str] = None
    policy: Literal["error", "drop", "repair"] = "error"
    mode: Literal["append", "replace"] = "append"


JOB_KINDS: dict[str, type[_Config]] = {
    "backtest": BacktestJob, "optimize": OptimizeJob, "walk_forward": WalkForwardJob, "monte_carlo": MonteCarloJob,
    "judge": JudgeJob, "report": ReportJob, "data_import": DataImportJob,
}
KIND_ALIASES = {"walkforward": "walk_forward", "walk-forward": "walk_forward", "montecarlo": "monte_carlo",
                "monte-carlo": "monte_carlo", "import": "data_import", "data-import": "data_import"}


def job_json_schemas() -> dict[str, Any]:
    """The JSON Schema of every job kind's body."""
    return {kind: model.model_json_schema() for kind, model in JOB_KINDS.items()}


@dataclass
class JobContext:
    """Where a server keeps things: saved runs, the catalog, the folders data files may be read from."""

    runs_root: Path
    catalog_root: Path
    import_roots: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runs_root = Path(self.runs_root).resolve()
        self.catalog_root = Path(self.catalog_root).resolve()
        self.import_roots = tuple(Path(p).resolve() for p in self.import_roots)

    def catalog(self):
        from backforge.data.catalog import Catalog

        return Catalog(self.catalog_root)

    def to_dict(self) -> dict[str, Any]:
        return {"runs_root": str(self.runs_root), "catalog_root": str(self.catalog_root),
                "import_roots": [str(p) for p in self.import_roots]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobContext":
        return cls(Path(d["runs_root"]), Path(d["catalog_root"]), tuple(Path(p) for p in d["import_roots"]))


# ------------------------------------------------------------------------------------ validation

def validate_job(body: Any, ctx: JobContext) -> tuple[str, dict[str, Any]]:
    """Check a submitted body; return its kind and the normalized config to store.

    Raises :class:`JobValidationError` with the field path of the first problem.
    """
    if not isinstance(body, dict):
        raise JobValidationError(f"the body must be a JSON object with a 'kind', got {type(body).__name__}", loc=["body"])
    kind = body.get("kind")
    if kind is None:
        raise JobValidationError(f"missing required field 'kind' (one of: {', '.join(JOB_KINDS)})", loc=["body", "kind"])
    kind = KIND_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in JOB_KINDS:
        raise JobValidationError(f"unknown job kind {kind!r}{did_you_mean(str(kind), JOB_KINDS)} "
                                 f"(one of: {', '.join(JOB_KINDS)})", loc=["body", "kind"])
    try:
        config = JOB_KINDS[kind].model_validate({**body, "kind": kind})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in ("int", "str"))]
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
        raise JobValidationError(message, loc=["body", *loc]) from None
    if isinstance(config, _StrategyJob):
        raw = check_strategy(config.strategy, ctx, data=config.data, needs_parameters=kind in ("optimize", "walk_forward"))
        if kind == "optimize":
            from backforge.research.optimize import METRICS

            for i, name in enumerate(config.metric):
                if name not in METRICS:
                    raise JobValidationError(f"unknown metric {name!r}{did_you_mean(name, METRICS)}",
                                             loc=["body", "metric", i])
        if kind == "walk_forward":
            from backforge.research.optimize import METRICS

            if config.metric not in METRICS:
                raise JobValidationError(f"unknown metric {config.metric!r}{did_you_mean(config.metric, METRICS)}",
                                         loc=["body", "metric"])
        del raw
    elif isinstance(config, (JudgeJob, ReportJob)):
        try:
            resolve_run(config.run, ctx, saved_run=True)
        except BackforgeError as exc:
            raise JobValidationError(exc.message, loc=["body", "run"]) from None
    elif isinstance(config, DataImportJob):
        from backforge.data.catalog import validate_symbol

        try:
            validate_symbol(config.symbol)
        except BackforgeError as exc:
            raise JobValidationError(exc.message, loc=["body", "symbol"]) from None
        path = _inside_roots(config.path, ctx, loc=["body", "path"])
        if not path.is_file():
            raise JobValidationError(f"no such file: {config.path}", loc=["body", "path"])
    return kind, config.model_dump(mode="json")


def _inside_roots(text: str, ctx: JobContext, *, loc: list[Any], base: Path | None = None) -> Path:
    """A data file path resolved inside one of the server's import roots (never elsewhere)."""
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = (base or (ctx.import_roots[0] if ctx.import_roots else Path.cwd())) / candidate
    resolved = candidate.resolve()
    for root in ctx.import_roots:
        if resolved == root or root in resolved.parents:
            return resolved
    roots = ", ".join(str(r) for r in ctx.import_roots) or "none configured (start the server with --import-root DIR)"
    raise JobValidationError(f"{text} is outside the folders this server reads data from ({roots})", loc=loc)


def check_strategy(text: str, ctx: JobContext, *, data: DataChoice, needs_parameters: bool = False,
                   loc: tuple[Any, ...] = ("body", "strategy")) -> dict:
    """Parse and validate a strategy's text (schema, parameters, data availability); return the raw dict."""
    from backforge.strategy.schema import load_portfolio, read_config

    try:
        # always text (a newline makes read_config parse it, never open it as a path on the server)
        raw, _ = read_config(text + "\n")
        portfolio = load_portfolio(raw)
    except ConfigError as exc:
        raise JobValidationError(exc.message, loc=[*loc, *_path_to_loc(exc.path or exc.field)]) from None
    if needs_parameters:
        from backforge.research.params import ParameterSpace

        try:
            space = ParameterSpace.from_config(raw)
        except ConfigError as exc:
            raise JobValidationError(exc.message, loc=[*loc, *_path_to_loc(exc.path or exc.field)]) from None
        if not space:
            raise JobValidationError("the strategy declares no parameters: write e.g. window: {param: fast, range: "
                                     "[5, 50, 5]}", loc=list(loc))
    if data.source == "strategy" and portfolio.data.source == "synthetic":
        from backforge._time import parse_duration

        try:
            bar_ns = parse_duration(portfolio.data.bar)
        except (BackforgeError, ValueError):
            raise JobValidationError(f"not a bar size: {portfolio.data.bar!r}; write e.g. 1d, 1h, 15min",
                                     loc=[*loc, "data", "bar"]) from None
        cells = portfolio.data.years * 365.25 * 86_400e9 / max(bar_ns, 1) * len(portfolio.universe)
        if cells > MAX_SYNTHETIC_CELLS:
            raise JobValidationError(f"{portfolio.data.years:g} years of {portfolio.data.bar} bars for "
                                     f"{len(portfolio.universe)} assets is about {cells:,.0f} bar-assets; the service "
                                     f"generates at most {MAX_SYNTHETIC_CELLS:,}", loc=[*loc, "data", "years"])
    if data.source == "catalog":
        catalog = ctx.catalog()
        stored = {(s.symbol, s.bar) for s in catalog.list()}
        symbols = sorted({s for s, _ in stored})
        for i, asset in enumerate(portfolio.universe):
            bars = sorted(b for s, b in stored if s == asset)
            if not bars:
                raise JobValidationError(f"{asset!r} is not in the catalog{did_you_mean(asset, symbols)}; import it "
                                         "first (a data_import job)", loc=[*loc, "universe", i])
            if data.bar is not None and data.bar not in bars:
                raise JobValidationError(f"{asset!r} has no {data.bar} bars in the catalog (it has: {', '.join(bars)})",
                                         loc=["body", "data", "bar"])
        if data.bar is None:
            common = set.intersection(*({b for s, b in stored if s == a} for a in portfolio.universe))
            if not common:
                raise JobValidationError("the universe's assets share no bar size in the catalog; choose data.bar",
                                         loc=["body", "data", "bar"])
    elif portfolio.data.source == "files":
        for asset, entry in portfolio.data.paths.items():
            names = [entry] if isinstance(entry, str) else [entry.bid, entry.ask]
            for name in names:
                path = _inside_roots(name, ctx, loc=[*loc, "data", "paths", asset])
                if not path.is_file():
                    raise JobValidationError(f"no such file: {name}", loc=[*loc, "data", "paths", asset])
    return raw


# ------------------------------------------------------------------------------------ runs on disk

def resolve_run(run_id: str, ctx: JobContext, *, saved_run: bool = False) -> Path:
    """The folder of a saved result by id (``name`` or ``optimize-…/best-1``), never outside the runs
    root: anything else is "no run"."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or ".." in run_id:
        raise BackforgeError(f"no run {run_id!r}", field="run")
    folder = (ctx.runs_root / run_id).resolve()
    if ctx.runs_root not in folder.parents or not folder.is_dir():
        raise BackforgeError(f"no run {run_id!r}", field="run")
    if saved_run and not (folder / "metadata.json").is_file():
        raise BackforgeError(f"{run_id!r} is not a saved backtest run", field="run")
    return folder


def run_kind(folder: Path) -> str | None:
    """``run`` (a saved backtest), ``optimize``, ``walk_forward`` or None (not a result folder)."""
    if (folder / "metadata.json").is_file():
        return "run"
    if (folder / "trials.parquet").is_file():
        return "optimize"
    if (folder / "windows.parquet").is_file():
        return "walk_forward"
    return None


def list_runs(ctx: JobContext) -> list[dict[str, Any]]:
    """Every result folder under the runs root, newest first, with its headline figures."""
    out = []
    if not ctx.runs_root.is_dir():
        return out
    with os.scandir(ctx.runs_root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            folder = Path(entry.path)
            kind = run_kind(folder)
            if kind is None:
                continue
            item: dict[str, Any] = {"id": entry.name, "kind": kind, "modified": entry.stat().st_mtime}
            summary_file = folder / "summary.json"
            if summary_file.is_file():
                try:
                    summary = json.loads(summary_file.read_text())
                except (OSError, json.JSONDecodeError):
                    summary = {}
                if kind == "run":
                    item["summary"] = {k: summary.get(k) for k in ("start", "end", "total_return", "sharpe",
                                                                   "max_drawdown", "trades", "final_equity")}
                else:
                    item["summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
            if kind == "optimize":
                item["best_runs"] = sorted(f"{entry.name}/{p.name}" for p in folder.glob("best-*") if p.is_dir())
            out.append(item)
    out.sort(key=lambda r: r["modified"], reverse=True)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower()[:60] or "run"


def _staging(ctx: JobContext, job_id: str) -> Path:
    folder = ctx.runs_root / f".staging-{job_id}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _publish(staged: Path, final: Path) -> Path:
    """Rename a complete staged folder into place (atomic on one file system)."""
    if final.exists():
        shutil.rmtree(final)
    staged.rename(final)
    return final


def _write_json(path: Path, document: Any) -> None:
    from backforge.research.cli import _json

    path.write_text(json.dumps(document, indent=2, default=_json))


# ------------------------------------------------------------------------------------ running

Report = Callable[[float, str], None]


@dataclass
class JobRun:
    """What a runner gets: the job, the server context, and callbacks into the store."""

    job_id: str
    kind: str
    config: dict[str, Any]
    ctx: JobContext
    report: Report
    started: Callable[[], None]
    log: Callable[[str], None]


def run_job(run: JobRun) -> dict[str, Any]:
    """Run one job; return its result document (``{"run": id, ...}``)."""
    runner = _RUNNERS[run.kind]
    model = JOB_KINDS[run.kind].model_validate(run.config)
    return runner(run, model)


def _market(run: JobRun, cfg: _StrategyJob):
    """The raw strategy, its portfolio, and its market data (catalog or the strategy's data spec)."""
    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import load_portfolio

    raw = check_strategy(cfg.strategy, run.ctx, data=cfg.data)
    portfolio = load_portfolio(raw)
    run.report(0.1, "loading data")
    if cfg.data.source == "catalog":
        catalog = run.ctx.catalog()
        bar = cfg.data.bar or catalog_bar(catalog, portfolio.universe)
        market = catalog.load(list(portfolio.universe), bar=bar)
    else:
        base = run.ctx.import_roots[0] if run.ctx.import_roots else Path.cwd()
        market = load_data(portfolio, base=base)
    return raw, portfolio, market


def catalog_bar(catalog: Any, universe: list[str]) -> str:
    """The bar size to load when none is chosen: 1d if every asset has it, else the first shared one."""
    stored = [(s.symbol, s.bar) for s in catalog.list()]
    common = set.intersection(*({b for s, b in stored if s == asset} for asset in universe))
    return "1d" if "1d" in common else sorted(common)[0]


def _backtest(run: JobRun, cfg: BacktestJob | MonteCarloJob):
    from backforge.strategy.compiler import compile_portfolio, run_compiled

    run.report(0.02, "reading the strategy")
    raw, portfolio, market = _market(run, cfg)
    run.report(0.25, "compiling")
    compiled = compile_portfolio(portfolio, market, start=cfg.start or portfolio.data.start,
                                 end=cfg.end or portfolio.data.end)
    run.started()
    run.report(0.35, "backtesting")
    t0 = time.perf_counter()
    result = run_compiled(compiled)
    run.log(f"backtest of {market.n_bars} bars x {market.n_assets} assets in {(time.perf_counter() - t0) * 1000:.1f} ms")
    result.data_source = {"service_job": run.job_id, "data": cfg.data.model_dump(), "start": cfg.start, "end": cfg.end,
                          "strategy_text": cfg.strategy}
    return portfolio, result


def _run_backtest(run: JobRun, cfg: BacktestJob) -> dict[str, Any]:
    portfolio, result = _backtest(run, cfg)
    run.report(0.7, "saving the run")
    name = f"{_slug(portfolio.name)}-{run.job_id}"
    staged = _staging(run.ctx, run.job_id)
    result.save(staged / name, report=cfg.report)
    _publish(staged / name, run.ctx.runs_root / name)
    shutil.rmtree(staged, ignore_errors=True)
    summary = result.summary()
    return {"run": name, "summary": {k: summary.get(k) for k in ("total_return", "sharpe", "max_drawdown", "trades")}}


def _run_monte_carlo(run: JobRun, cfg: MonteCarloJob) -> dict[str, Any]:
    from backforge.research.montecarlo import monte_carlo

    portfolio, result = _backtest(run, cfg)
    run.report(0.6, f"{cfg.n_simulations} Monte Carlo paths ({cfg.method})")
    mc = monte_carlo(result, method=cfg.method, n_simulations=cfg.n_simulations, seed=cfg.seed,
                     ruin_drawdown=cfg.ruin_drawdown, trade_model=cfg.trade_model)
    run.report(0.85, "saving the run")
    name = f"montecarlo-{_slug(portfolio.name)}-{run.job_id}"
    staged = _staging(run.ctx, run.job_id)
    folder = result.save(staged / name)
    _write_json(folder / "montecarlo.json", mc.summary())
    mc.bands.write_parquet(folder / "montecarlo_bands.parquet")
    _publish(folder, run.ctx.runs_root / name)
    shutil.rmtree(staged, ignore_errors=True)
    return {"run": name, "probability_of_ruin": float(mc.probability_of_ruin)}


class _ProgressExecutor:
    """The optimizer's executor, reporting finished trials as job progress (and noticing a cancel)."""

    def __init__(self, inner: Any, on_trials: Callable[[int], None]) -> None:
        self.inner = inner
        self.on_trials = on_trials
        self.workers = getattr(inner, "workers", None)

    def start(self, *args: Any, **kwargs: Any) -> None:
        self.inner.start(*args, **kwargs)

    def map(self, batches: list, start: Any, end: Any, keep_returns: bool, on_done: Any = None) -> list:
        def done(n: int) -> None:
            if on_done:
                on_done(n)
            self.on_trials(n)

        return self.inner.map(batches, start, end, keep_returns, on_done=done)

    def close(self) -> None:
        self.inner.close()


def _space_size(raw: dict, cfg: OptimizeJob | WalkForwardJob) -> int:
    from backforge.research.params import ParameterSpace

    space = ParameterSpace.from_config(raw)
    if cfg.method == "grid":
        return max(1, sum(1 for _ in space.grid()))
    if cfg.method == "random":
        return cfg.samples
    return getattr(cfg, "population", 20) * getattr(cfg, "generations", 10)


def _run_optimize(run: JobRun, cfg: OptimizeJob) -> dict[str, Any]:
    from backforge.research.optimize import LocalExecutor, optimize
    from backforge.strategy.compiler import compile_portfolio, run_compiled
    from backforge.strategy.schema import load_portfolio

    run.report(0.02, "reading the strategy")
    raw, portfolio, market = _market(run, cfg)
    total = _space_size(raw, cfg)
    finished = [0]

    def on_trials(n: int) -> None:
        finished[0] += n
        run.report(0.05 + 0.8 * min(finished[0] / total, 1.0), f"{finished[0]} of ~{total} trials")

    run.started()
    pool = _ProgressExecutor(LocalExecutor(1), on_trials)
    try:
        result = optimize(raw, market, metric=cfg.metric, method=cfg.method, samples=cfg.samples,
                          population=cfg.population, generations=cfg.generations, patience=cfg.patience,
                          seed=cfg.seed, executor=pool)
    finally:
        pool.close()
    run.report(0.87, "saving the trials and the best runs")
    name = f"optimize-{_slug(portfolio.name)}-{run.job_id}"
    staged = _staging(run.ctx, run.job_id)
    folder = staged / name
    folder.mkdir()
    table = result.table
    table.write_parquet(folder / "trials.parquet")
    _write_json(folder / "summary.json", {
        "method": cfg.method, "metric": cfg.metric, "seed": cfg.seed, "trials": result.n_trials,
        "seconds": result.seconds, "best": result.best.params, "best_metrics": result.best.metrics,
        "overfitting": result.overfitting, "pareto": result.pareto, "generations": result.generations,
        "executor": "local", "strategy": raw, "parameters": list(result.space.names), "service_job": run.job_id,
    })
    best_rows = table.filter(table["error"].is_null()).head(cfg.top)
    for rank, row in enumerate(best_rows.iter_rows(named=True), start=1):
        values = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.")}
        best = run_compiled(compile_portfolio(load_portfolio(raw, parameters=values), market))
        best.data_source = {"service_job": run.job_id, "parameters": values, "trials": result.n_trials,
                            "data": cfg.data.model_dump()}
        best.save(folder / f"best-{rank}")
    _publish(folder, run.ctx.runs_root / name)
    shutil.rmtree(staged, ignore_errors=True)
    return {"run": name, "trials": result.n_trials, "best": result.best.params,
            "best_run": f"{name}/best-1" if cfg.top else None}


def _run_walk_forward(run: JobRun, cfg: WalkForwardJob) -> dict[str, Any]:
    from backforge.research.optimize import LocalExecutor
    from backforge.research.walkforward import walk_forward, windows

    run.report(0.02, "reading the strategy")
    raw, portfolio, market = _market(run, cfg)
    n_windows = len(windows(market.timestamps, cfg.in_sample, cfg.out_of_sample, anchored=cfg.anchored))
    total = max(1, _space_size(raw, cfg) * n_windows)
    finished = [0]

    def on_trials(n: int) -> None:
        finished[0] += n
        run.report(0.05 + 0.85 * min(finished[0] / total, 1.0), f"{finished[0]} of ~{total} trials, {n_windows} windows")

    run.started()
    pool = _ProgressExecutor(LocalExecutor(1), on_trials)
    try:
        wf = walk_forward(raw, market, in_sample=cfg.in_sample, out_of_sample=cfg.out_of_sample, anchored=cfg.anchored,
                          metric=cfg.metric, method=cfg.method, samples=cfg.samples, seed=cfg.seed, executor=pool)
    finally:
        pool.close()
    run.report(0.92, "saving")
    name = f"walkforward-{_slug(portfolio.name)}-{run.job_id}"
    staged = _staging(run.ctx, run.job_id)
    folder = staged / name
    folder.mkdir()
    wf.windows.write_parquet(folder / "windows.parquet")
    wf.equity.write_parquet(folder / "oos_equity.parquet")
    _write_json(folder / "summary.json", {**wf.summary(), "strategy": raw, "service_job": run.job_id})
    _publish(folder, run.ctx.runs_root / name)
    shutil.rmtree(staged, ignore_errors=True)
    return {"run": name, "walk_forward_efficiency": wf.efficiency, "windows": wf.windows.height}


def _run_judge(run: JobRun, cfg: JudgeJob) -> dict[str, Any]:
    from backforge.judge.core import judge
    from backforge.judge.report import write_judge_html
    from backforge.judge.rules import RuleSettings

    folder = resolve_run(cfg.run, run.ctx, saved_run=True)
    run.started()
    run.report(0.1, "building the evidence and checking the rules")
    result = judge(folder, n_trials=cfg.trials, seed=cfg.seed, walk_forward=cfg.walk_forward,
                   settings=RuleSettings(max_drawdown_days=cfg.max_drawdown_days))
    run.report(0.9, "saving judge.json and judge.html")
    staged = _staging(run.ctx, run.job_id)
    result.save(staged / "judge.json")
    write_judge_html(result, staged / "judge.html")
    for file in ("judge.json", "judge.html"):
        (staged / file).replace(folder / file)
    shutil.rmtree(staged, ignore_errors=True)
    return {"run": cfg.run, "findings": result.counts()}


def _run_report(run: JobRun, cfg: ReportJob) -> dict[str, Any]:
    from backforge.results.result import load_result

    folder = resolve_run(cfg.run, run.ctx, saved_run=True)
    run.started()
    run.report(0.2, "writing the tear sheet")
    path = load_result(folder).write_html(folder / "report.html", benchmark=cfg.benchmark, risk_free=cfg.risk_free,
                                          title=cfg.title)
    return {"run": cfg.run, "report": path.name, "bytes": path.stat().st_size}


def _run_data_import(run: JobRun, cfg: DataImportJob) -> dict[str, Any]:
    path = _inside_roots(cfg.path, run.ctx, loc=["path"])
    run.started()
    run.report(0.2, f"importing {path.name}")
    report = run.ctx.catalog().import_file(path, symbol=cfg.symbol, format=cfg.format, bar=cfg.bar,
                                           policy=cfg.policy, mode=cfg.mode)
    for line in report.summary().splitlines():
        run.log(line)
    return {"symbol": report.symbol, "bar": report.bar, "rows_read": report.rows_read, "rows": report.write.rows,
            "version": report.write.version}


_RUNNERS: dict[str, Callable[[JobRun, Any], dict[str, Any]]] = {
    "backtest": _run_backtest, "optimize": _run_optimize, "walk_forward": _run_walk_forward,
    "monte_carlo": _run_monte_carlo, "judge": _run_judge, "report": _run_report, "data_import": _run_data_import,
}
