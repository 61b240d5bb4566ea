"""Strategies as code: a Python class with per-bar callbacks, driven over the engine's compiled bar step.

A :class:`Strategy` declares its parameters as class attributes, computes indicators once in
:meth:`Strategy.init` (whole arrays, vectorized, through the compiled indicator kernels), and decides in
:meth:`Strategy.next`, called once per bar after the bar was processed. Inside ``next`` every array it
can see — ``self.data.close``, an indicator from :meth:`Strategy.I` — is a read-only view truncated to
the current bar, so reading the next bar is an ``IndexError``, never a value (look-ahead is impossible
by construction, as in backtesting.py). Orders go through the same compiled kernels as ``from_signals``
and strategy files (:class:`~backforge.engine.simulator.Simulator`): a decision on bar t fills on bar
t + 1 or later, with the same fill rules, costs, brackets, sizing and risk rules.

Examples
--------
>>> import backforge as bf
>>> from backforge.strategy.indicators import sma
>>> class SmaCross(Strategy):
...     fast, slow = 10, 30
...     def init(self):
...         self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
...         self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)
...     def next(self):
...         if crossover(self.f, self.s) and not self.position:
...             self.buy()
...         elif crossover(self.s, self.f) and self.position:
...             self.close()
>>> result = backtest(bf.synth(n_assets=1, years=2, seed=4), SmaCross, fast=5, fee_rate=0.001)
>>> result.summary()["trades"] > 0
True
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from backforge.data.market import MarketData
from backforge.errors import BackforgeError, ConfigError, did_you_mean

__all__ = ["Strategy", "StrategyError", "backtest", "crossover", "load_strategy_class", "strategy_parameters"]


class StrategyError(BackforgeError):
    """A strategy's own code raised: the message names the bar, its time and the line of the strategy."""

    code = "BF-STRATEGY"


class FillInfo(NamedTuple):
    """One execution, as :meth:`Strategy.on_fill` receives it (``qty`` signed: + bought, − sold)."""

    order_id: int
    asset: str
    qty: float
    price: float
    fee: float
    role: str
    bar: int


class OrderInfo(NamedTuple):
    """One order-state change, as :meth:`Strategy.on_order` receives it."""

    order_id: int
    event: str
    reason: str
    bar: int


class _Series:
    """A precomputed array seen through the driver's clock: truncated to the current bar in ``next``."""

    __slots__ = ("_run", "_full")

    def __init__(self, run: "_Run", full: np.ndarray) -> None:
        self._run = run
        full = np.asarray(full)
        view = full.view()
        view.flags.writeable = False
        self._full = view

    @property
    def values(self) -> np.ndarray:
        t = self._run.t
        return self._full if t is None else self._full[: t + 1]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return self.values[key]

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Series({self.values!r})"


class _Bars:
    """``self.data``: the market data up to the current bar (all of it inside :meth:`Strategy.init`).

    One asset: ``close`` and the other fields are ``[t + 1]`` arrays; several: ``[t + 1, A]``, and
    ``self.data["AAPL"].close`` is one asset's column.
    """

    def __init__(self, run: "_Run", column: int | None = None) -> None:
        self._run = run
        self._column = column

    def _field(self, name: str) -> _Series:
        return self._run.field(name, self._column)

    @property
    def open(self) -> _Series:
        return self._field("open")

    @property
    def high(self) -> _Series:
        return self._field("high")

    @property
    def low(self) -> _Series:
        return self._field("low")

    @property
    def close(self) -> _Series:
        return self._field("close")

    @property
    def volume(self) -> _Series:
        return self._field("volume")

    @property
    def timestamps(self) -> _Series:
        return self._run.field("timestamps", None)

    @property
    def assets(self) -> tuple[str, ...]:
        return self._run.data.assets

    def __getitem__(self, asset: str) -> "_Bars":
        return _Bars(self._run, self._run.asset_index(asset))

    def __len__(self) -> int:
        t = self._run.t
        return self._run.data.n_bars if t is None else t + 1


class _Position:
    """A position as ``next`` sees it: ``size`` (signed units), ``avg_price``, ``pl`` (unrealized, account
    currency), truthy while open."""

    __slots__ = ("_run", "_asset")

    def __init__(self, run: "_Run", asset: int) -> None:
        self._run = run
        self._asset = asset

    @property
    def size(self) -> float:
        return float(self._run.sim._state.position[self._asset])

    @property
    def avg_price(self) -> float:
        return float(self._run.sim._state.avg_price[self._asset]) if self.size else float("nan")

    @property
    def pl(self) -> float:
        s = self._run.sim._state
        size = self.size
        return float(size * (s.mark[self._asset] - s.avg_price[self._asset])) if size else 0.0

    @property
    def is_long(self) -> bool:
        return self.size > 0

    @property
    def is_short(self) -> bool:
        return self.size < 0

    def __bool__(self) -> bool:
        return self.size != 0.0

    def __repr__(self) -> str:
        return f"Position(size={self.size:g}, avg_price={self.avg_price:g})"


class Strategy:
    """Base class of strategies written as code. Override :meth:`init` and :meth:`next`; optionally
    :meth:`on_fill` and :meth:`on_order`. Parameters are class attributes (plain numbers, strings,
    booleans); :func:`backtest` overrides them by keyword.

    ``universe`` and ``data_spec`` (the ``data:`` mapping of a strategy file) tell ``backforge run
    file.py`` what to run on when no ``--data`` is given.
    """

    universe: tuple[str, ...] = ("AAPL",)
    data_spec: dict[str, Any] = {}

    _run: "_Run"

    # ------------------------------------------------------------------ callbacks
    def init(self) -> None:
        """Declare indicators (``self.I(...)``); ``self.data`` holds the whole history here."""

    def next(self) -> None:
        """Decide on the bar just processed."""

    def on_fill(self, fill: FillInfo) -> None:
        """Called for each execution, before :meth:`next` of the bar it happened on."""

    def on_order(self, order: OrderInfo) -> None:
        """Called for each order-state change (submitted, filled, cancelled, rejected, expired...)."""

    # ------------------------------------------------------------------ data
    @property
    def data(self) -> _Bars:
        return self._run.bars

    def I(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> _Series:  # noqa: E743 - backtesting.py's name
        """Compute an indicator once over the whole history (call it in :meth:`init`); in :meth:`next` it is
        truncated to the current bar like the data. Arguments that are data or other indicators are passed
        as whole arrays."""
        if self._run.t is not None:
            raise StrategyError("declare indicators in init(), not in next(): next() sees only the past")

        def full(value: Any) -> Any:
            return value._full if isinstance(value, _Series) else value

        return _Series(self._run, function(*(full(a) for a in args), **{k: full(v) for k, v in kwargs.items()}))

    @property
    def bar(self) -> int:
        """Index of the current bar."""
        return self._run.t if self._run.t is not None else -1

    @property
    def time(self) -> int:
        """Timestamp (int ns UTC) of the current bar."""
        return int(self._run.data.timestamps[self.bar])

    # ------------------------------------------------------------------ account
    @property
    def position(self) -> _Position:
        """The position of the only asset (with several assets use :meth:`position_of`)."""
        return _Position(self._run, self._run.default_asset())

    def position_of(self, asset: str) -> _Position:
        return _Position(self._run, self._run.asset_index(asset))

    @property
    def equity(self) -> float:
        return self._run.sim.equity

    @property
    def cash(self) -> float:
        return self._run.sim.cash

    # ------------------------------------------------------------------ orders
    def buy(self, size: float = 1.0, **order: Any) -> int:
        """Buy (go long, add, or cover a short). ``size`` is in ``size_type`` units (default
        ``"equity_fraction"``: 1.0 = all equity); ``limit`` / ``stop`` prices make a limit, stop or
        stop-limit order; ``stop_loss`` / ``take_profit`` / ``trailing_stop`` are bracket distances as
        fractions of the fill price; ``asset`` names the asset when there are several. Returns the
        order id (-1 when a risk rule blocked it)."""
        return self._run.order("buy", size, **order)

    def sell(self, size: float = 1.0, **order: Any) -> int:
        """Sell (go short, or reduce a long); the options of :meth:`buy`."""
        return self._run.order("sell", size, **order)

    def close(self, fraction: float = 1.0, *, asset: str | None = None) -> int:
        """Close ``fraction`` of the position at the next bar's open (-1 when there is none)."""
        a = self._run.asset_index(asset) if asset is not None else self._run.default_asset()
        pos = float(self._run.sim._state.position[a])
        if pos == 0.0:
            return -1
        return self._run.sim.submit(a, "sell" if pos > 0 else "buy", float(fraction), size_type="position_fraction")

    def cancel(self, order_id: int) -> bool:
        """Cancel a working order; False when it is not working."""
        return self._run.sim.cancel(order_id)


def crossover(a: Any, b: Any) -> bool:
    """True when ``a`` crossed above ``b`` on the current bar: ``a[-2] <= b[-2]`` and ``a[-1] > b[-1]``
    (``b`` may be a number) — the rule of the strategy language's ``crosses_above``.

    >>> crossover(np.array([1.0, 3.0]), np.array([2.0, 2.0])), crossover(np.array([3.0, 4.0]), 2.0)
    (True, False)
    """
    if isinstance(a, _Series) and a._full.ndim == 1 and a._full.dtype == np.float64 and a._run.t is not None:
        t = a._run.t  # the fast path of next(): two elements of the whole array, no truncated copies
        if t < 1:
            return False
        if isinstance(b, _Series) and b._full.ndim == 1 and b._full.dtype == np.float64:
            b_prev, b_now = b._full[t - 1], b._full[t]
        elif isinstance(b, (int, float)):
            b_prev = b_now = np.float64(b)
        else:
            b_prev = b_now = None
        if b_prev is not None:
            return bool(a._full[t - 1] - b_prev <= 0.0 < a._full[t] - b_now)
    a_values = np.asarray(a, dtype=np.float64)
    b_values = np.asarray(b, dtype=np.float64)
    if a_values.shape[0] < 2:
        return False
    b_prev, b_now = (b_values[-2], b_values[-1]) if b_values.ndim and b_values.shape[0] >= 2 else (b_values, b_values)
    prev, now = a_values[-2] - b_prev, a_values[-1] - b_now
    return bool(prev <= 0.0 < now)


def strategy_parameters(cls: type[Strategy]) -> dict[str, Any]:
    """The parameters a strategy class declares: its public class attributes that are plain values.

    >>> class S(Strategy):
    ...     window = 20
    ...     label = "x"
    >>> strategy_parameters(S)
    {'label': 'x', 'window': 20}
    """
    out = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, Strategy):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and name not in ("universe", "data_spec") and \
                    isinstance(value, (int, float, str, bool)) and not callable(value):
                out[name] = value
    return dict(sorted(out.items()))


class _Run:
    """One backtest of one strategy instance: the clock, the views, the Simulator underneath."""

    def __init__(self, data: MarketData, sim: Any) -> None:
        self.data = data
        self.sim = sim
        self.t: int | None = None
        self.bars = _Bars(self)
        self._fields: dict[tuple[str, int | None], _Series] = {}

    def field(self, name: str, column: int | None) -> _Series:
        key = (name, column)
        series = self._fields.get(key)
        if series is None:
            full = getattr(self.data, name)
            if name != "timestamps":
                if column is not None:
                    full = full[:, column]
                elif self.data.n_assets == 1:
                    full = full[:, 0]
            series = self._fields[key] = _Series(self, full)
        return series

    def asset_index(self, asset: str | None) -> int:
        if asset is None:
            return self.default_asset()
        if asset not in self.data.assets:
            raise ConfigError(f"unknown asset {asset!r}{did_you_mean(str(asset), self.data.assets)}", field="asset")
        return self.data.assets.index(asset)

    def default_asset(self) -> int:
        if self.data.n_assets != 1:
            raise StrategyError(f"the data has {self.data.n_assets} assets: name one (asset=..., position_of(...))")
        return 0

    def order(self, side: str, size: float, *, asset: str | None = None, size_type: str = "equity_fraction",
              limit: float | None = None, stop: float | None = None, stop_loss: float | None = None,
              take_profit: float | None = None, trailing_stop: float | None = None, time_in_force: str = "gtc",
              gtn_bars: int = 0) -> int:
        if self.t is None:
            raise StrategyError("orders are placed in next(), not in init()")
        kind = "stop_limit" if limit is not None and stop is not None else "limit" if limit is not None \
            else "stop" if stop is not None else "market"
        return self.sim.submit(self.asset_index(asset), side, size, size_type=size_type, order_type=kind,
                               limit_price=limit, stop_price=stop, stop_loss=stop_loss, take_profit=take_profit,
                               trailing_stop=trailing_stop, time_in_force=time_in_force, gtn_bars=gtn_bars)


def _split(cls: type[Strategy], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    params = strategy_parameters(cls)
    chosen = {k: v for k, v in kwargs.items() if k in params}
    options = {k: v for k, v in kwargs.items() if k not in params}
    for name, value in chosen.items():
        default = params[name]
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float)) and not isinstance(value, (int, float))):
            raise ConfigError(f"parameter {name!r} of {cls.__name__} is {type(default).__name__} "
                              f"({default!r}), got {value!r}", field=name)
    return chosen, options


def _strategy_frame(exc: BaseException, cls: type) -> str:
    """``file:line`` of the innermost traceback frame in the strategy's own source file."""
    source = inspect.getsourcefile(cls) or ""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename == source] or frames[-1:]
    return f"{Path(mine[-1].filename).name}:{mine[-1].lineno}" if mine else "?"


def backtest(data: MarketData | Any, strategy: type[Strategy], *, config: Any = None, risk: Any = None,
             **kwargs: Any):
    """Backtest a :class:`Strategy` subclass on ``data`` and return a :class:`~backforge.results.result.Result`.

    Keywords that name a parameter of the class override it; the others are the options of
    :func:`backforge.from_signals` (cash, costs, lot size, leverage...; ``risk`` a
    :class:`~backforge.engine.risk.RiskConfig`). Errors raised by the strategy's own code become a
    :class:`StrategyError` naming the bar, its time and the strategy's line; nothing half-made is returned.
    """
    from backforge._time import format_ns
    from backforge.engine.simulator import Simulator

    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise ConfigError(f"expected a Strategy subclass, got {strategy!r}", field="strategy")
    data = MarketData.coerce(data)
    params, options = _split(strategy, kwargs)
    sim = Simulator(data.assets, has_quotes=data.has_quotes, config=config, risk=risk, **options)
    run = _Run(data, sim)
    instance = strategy.__new__(strategy)
    for name, value in params.items():
        setattr(instance, name, value)
    instance._run = run
    hooks_fill = type(instance).on_fill is not Strategy.on_fill
    hooks_order = type(instance).on_order is not Strategy.on_order
    name = strategy.__name__
    try:
        instance.init()
    except BackforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: report it with its line
        raise StrategyError(f"{name}.init() raised {type(exc).__name__} ({_strategy_frame(exc, strategy)}): {exc}") from exc
    # The lean driver: the Simulator's state is preallocated for every bar of the data and each bar is
    # advanced by the compiled bar step over the [T, A] arrays (no per-bar row conversions); orders still
    # go through Simulator.submit, so everything stays what Simulator.on_bar would give, bit for bit.
    from backforge.engine import kernels as k
    from backforge.engine.records import EventKind, OrderRole, Reason
    from backforge.engine.simulator import new_state, prices_of
    from backforge.strategy.compiled import bar_step_nb

    ts = np.ascontiguousarray(data.timestamps, dtype=np.int64)
    book = sim._state.risk
    sim._state = new_state(data.n_assets, data.n_bars, cash=sim.sim_config.cash, order_capacity=256,
                           record_positions=sim.sim_config.record_positions, risk=book if book.on[0] != 0 else None)
    sim._timestamps = ts.copy()
    prices = prices_of(data)
    engine_params = sim._params
    state = sim._state
    seen_fills = seen_events = 0

    for t in range(data.n_bars):
        run.t = None  # the bar is processed with the whole arrays; the strategy sees it truncated below
        sim._t = t - 1
        sim._ensure_room()  # grows the order/fill records (Python side) when they run short
        sim._t = t
        bar_step_nb(sim._state, engine_params, t, int(ts[t]), prices)
        state = sim._state
        run.t = t
        try:
            if hooks_fill:
                n = int(state.counters[k.C_FILLS])
                for row in state.fills[seen_fills:n]:
                    instance.on_fill(FillInfo(int(row["order_id"]), data.assets[int(row["asset"])], float(row["qty"]),
                                              float(row["price"]), float(row["fee"]), OrderRole.name(row["role"]),
                                              int(row["bar"])))
                seen_fills = n
            if hooks_order:
                n = int(state.counters[k.C_EVENTS])
                for row in state.events[seen_events:n]:
                    instance.on_order(OrderInfo(int(row["order_id"]), EventKind.name(row["kind"]),
                                                Reason.name(row["reason"]), int(row["bar"])))
                seen_events = n
            instance.next()
        except BackforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: report it with its bar and line
            raise StrategyError(f"{name}.next() raised {type(exc).__name__} at bar {t} ({format_ns(int(ts[t]))}, "
                                f"{_strategy_frame(exc, strategy)}): {exc}") from exc
    run.t = None
    from backforge.results.result import Result

    result = Result(data=data, state=sim._state, sim_config=sim.sim_config, signal_config=sim.signal_config, mode="code")
    result.risk_config = sim.risk_config
    result.mode = "code"
    result.strategy = {"name": name, "class": f"{strategy.__module__}.{strategy.__qualname__}",
                       "parameters": {**strategy_parameters(strategy), **params}}
    return result


def load_strategy_class(path: str | Path, name: str | None = None) -> type[Strategy]:
    """The :class:`Strategy` subclass defined in a Python file (``name`` picks one when there are several);
    one clear line when the file has none, several, or does not import."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("strategy file not found", path=str(path))
    module_name = f"backforge_user_strategy_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot load this file as Python", path=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file
        sys.modules.pop(module_name, None)
        raise ConfigError(f"the file does not import: {type(exc).__name__} ({_where(exc, path)}): {exc}",
                          path=str(path)) from None
    found = {n: obj for n, obj in vars(module).items()
             if isinstance(obj, type) and issubclass(obj, Strategy) and obj is not Strategy
             and obj.__module__ == module_name}
    if name is not None:
        if name not in found:
            raise ConfigError(f"no Strategy subclass {name!r} in the file{did_you_mean(name, found)}"
                              + (f" (it defines {', '.join(found)})" if found else ""), path=str(path))
        return found[name]
    if not found:
        raise ConfigError("the file defines no Strategy subclass (class MyStrategy(backforge.Strategy): ...)",
                          path=str(path))
    if len(found) > 1:
        raise ConfigError(f"the file defines several strategies ({', '.join(found)}): pick one with --strategy",
                          path=str(path))
    return next(iter(found.values()))


def _where(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path.name}:{exc.lineno}"
    return f"{path.name}:{frames[-1].lineno}" if frames else path.name
