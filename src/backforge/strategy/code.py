"""Strategies as code: a Python class with per-bar callbacks, driven over the engine's compiled bar step.

A :class:`Strategy` declares its parameters as class attributes, computes indicators once in
:meth:`Strategy.init` (whole arrays, vectorized, through the compiled indicator kernels), and decides in
:meth:`Strategy.next`, called once per bar after the bar was processed. Inside ``next`` every array it
can see — ``self.data.close``, an indicator from :meth:`Strategy.I` — is a read-only view truncated to
the current bar, so reading the next bar is an ``IndexError``, never a value (look-ahead is impossible
by construction, as in backtesting.py). Orders go through the same compiled kernels as ``from_signals``
and strategy files (the order path of :meth:`~backforge.engine.simulator.Simulator.submit`, compiled as
:func:`~backforge.strategy.compiled.submit_nb`): a decision on bar t fills on bar t + 1 or later, with the
same fill rules, costs, brackets, sizing and risk rules.

Speed: the driver (:class:`CodeDriver`) calls the compiled bar step and the order kernel through their
compiled entry points (:func:`compiled_entry`), not numba's dispatcher, whose per-call type resolution
over the engine's ``State`` record costs more than the bar step itself; ``next`` is the only Python per bar.
The same driver runs a class in a paper/live session (:mod:`backforge.live.code_step`).

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

import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from backforge.data.market import MarketData
from backforge.engine.records import OrderType, SizeType, TimeInForce
from backforge.errors import BackforgeError, ConfigError, SimulationError, did_you_mean

__all__ = ["CodeDriver", "Strategy", "StrategyError", "backtest", "class_market", "compiled_entry", "crossover",
           "load_strategy_class", "strategy_parameters"]


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

    __slots__ = ("_run", "_full", "_flat")

    def __init__(self, run: "_Run", full: np.ndarray) -> None:
        self._run = run
        self._set(full)

    def _set(self, full: Any) -> None:
        view = np.asarray(full).view()
        view.flags.writeable = False
        self._full = view
        self._flat = view.ndim == 1 and view.dtype == np.float64  # crossover's two-element fast path applies

    @property
    def values(self) -> np.ndarray:
        t = self._run.t
        return self._full if t is None else self._full[: t + 1]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return self.values[key]

    def __len__(self) -> int:
        t = self._run.t
        return self._full.shape[0] if t is None else t + 1

    def __repr__(self) -> str:
        return f"Series({self.values!r})"


class _Bars:
    """``self.data``: the market data up to the current bar (all of it inside :meth:`Strategy.init`).

    One asset: ``close`` and the other fields are ``[t + 1]`` arrays; several: ``[t + 1, A]``, and
    ``self.data["AAPL"].close`` is one asset's column.
    """

    __slots__ = ("_run", "_column")

    def __init__(self, run: "_Run", column: int | None = None) -> None:
        self._run = run
        self._column = column

    @property
    def open(self) -> _Series:
        return self._run.field("open", self._column)

    @property
    def high(self) -> _Series:
        return self._run.field("high", self._column)

    @property
    def low(self) -> _Series:
        return self._run.field("low", self._column)

    @property
    def close(self) -> _Series:
        return self._run.field("close", self._column)

    @property
    def volume(self) -> _Series:
        return self._run.field("volume", self._column)

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
        return float(self._run.state.position[self._asset])

    @property
    def avg_price(self) -> float:
        return float(self._run.state.avg_price[self._asset]) if self.size else float("nan")

    @property
    def pl(self) -> float:
        s = self._run.state
        size = self.size
        return float(size * (s.mark[self._asset] - s.avg_price[self._asset])) if size else 0.0

    @property
    def is_long(self) -> bool:
        return self.size > 0

    @property
    def is_short(self) -> bool:
        return self.size < 0

    def __bool__(self) -> bool:
        return bool(self._run.state.position[self._asset] != 0.0)

    def __repr__(self) -> str:
        return f"Position(size={self.size:g}, avg_price={self.avg_price:g})"


class Strategy:
    """Base class of strategies written as code. Override :meth:`init` and :meth:`next`; optionally
    :meth:`on_fill` and :meth:`on_order`. Parameters are class attributes (plain numbers, strings,
    booleans); :func:`backtest` overrides them by keyword.

    ``universe`` and ``data_spec`` (the ``data:`` mapping of a strategy file) tell ``backforge run
    file.py`` what to run on when no ``--data`` is given. ``ranges`` (``{"fast": range(5, 50, 5), "slow":
    [50, 100, 200]}``, or a strategy file's ``{"range": [start, stop, step]}``) and ``constraints``
    (``["fast < slow"]``) are what ``backforge optimize`` / ``walkforward file.py`` search.
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
        as whole arrays. (A paper/live session extends each declared indicator to every new bar — streamed,
        in constant time, for the kernels of :mod:`backforge.strategy.indicators`; other functions are
        recomputed on the bars so far: pass ``self.data`` fields and indicators themselves, not arrays made
        from them.)"""
        if self._run.t is not None:
            raise StrategyError("declare indicators in init(), not in next(): next() sees only the past")
        return self._run.declare(function, args, kwargs)

    @property
    def bar(self) -> int:
        """Index of the current bar (in ``self.data``: warm-up bars before a ``start`` count)."""
        return self._run.t if self._run.t is not None else -1

    @property
    def time(self) -> int:
        """Timestamp (int ns UTC) of the current bar."""
        return self._run.ts

    # ------------------------------------------------------------------ account
    @property
    def position(self) -> _Position:
        """The position of the only asset (with several assets use :meth:`position_of`)."""
        return self._run.only_position()

    def position_of(self, asset: str) -> _Position:
        return self._run.positions[self._run.asset_index(asset)]

    @property
    def equity(self) -> float:
        return self._run.equity()

    @property
    def cash(self) -> float:
        return float(self._run.state.cash[0])

    # ------------------------------------------------------------------ orders
    def buy(self, size: float = 1.0, **order: Any) -> int:
        """Buy (go long, add, or cover a short). ``size`` is in ``size_type`` units (default
        ``"equity_fraction"``: 1.0 = all equity); ``limit`` / ``stop`` prices make a limit, stop or
        stop-limit order; ``stop_loss`` / ``take_profit`` / ``trailing_stop`` are bracket distances as
        fractions of the fill price; ``asset`` names the asset when there are several. Returns the
        order id (-1 when a risk rule blocked it)."""
        return self._run.order(1, size, **order)

    def sell(self, size: float = 1.0, **order: Any) -> int:
        """Sell (go short, or reduce a long); the options of :meth:`buy`."""
        return self._run.order(-1, size, **order)

    def close(self, fraction: float = 1.0, *, asset: str | None = None) -> int:
        """Close ``fraction`` of the position at the next bar's open (-1 when there is none)."""
        run = self._run
        a = run.asset_index(asset) if asset is not None else run.default_asset()
        pos = float(run.state.position[a])
        if pos == 0.0:
            return -1
        return run.submit(a, -1 if pos > 0 else 1, _MARKET, _POSITION_FRACTION, float(fraction), _NAN, _NAN, _NAN,
                          _NAN, _NAN, _GTC, 0)

    def cancel(self, order_id: int) -> bool:
        """Cancel a working order; False when it is not working."""
        return self._run.cancel(int(order_id))


def crossover(a: Any, b: Any) -> bool:
    """True when ``a`` crossed above ``b`` on the current bar: ``a[-2] <= b[-2]`` and ``a[-1] > b[-1]``
    (``b`` may be a number) — the rule of the strategy language's ``crosses_above``.

    >>> crossover(np.array([1.0, 3.0]), np.array([2.0, 2.0])), crossover(np.array([3.0, 4.0]), 2.0)
    (True, False)
    """
    if a.__class__ is _Series and a._flat and a._run.t is not None:
        t = a._run.t  # the fast path of next(): two elements of the whole array, no truncated copies
        if t < 1:
            return False
        full = a._full
        if b.__class__ is _Series and b._flat:
            other = b._full
            return bool(full[t - 1] - other[t - 1] <= 0.0 < full[t] - other[t])
        if isinstance(b, (int, float)):
            level = np.float64(b)
            return bool(full[t - 1] - level <= 0.0 < full[t] - level)
    a_values = np.asarray(a, dtype=np.float64)
    b_values = np.asarray(b, dtype=np.float64)
    if a_values.shape[0] < 2:
        return False
    b_prev, b_now = (b_values[-2], b_values[-1]) if b_values.ndim and b_values.shape[0] >= 2 else (b_values, b_values)
    prev, now = a_values[-2] - b_prev, a_values[-1] - b_now
    return bool(prev <= 0.0 < now)


_NOT_PARAMETERS = ("universe", "data_spec", "ranges", "constraints")


def strategy_parameters(cls: type[Strategy]) -> dict[str, Any]:
    """The parameters a strategy class declares: its public class attributes that are plain values
    (not ``universe``, ``data_spec``, nor the search's ``ranges`` and ``constraints``).

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
            if not name.startswith("_") and name not in _NOT_PARAMETERS and \
                    isinstance(value, (int, float, str, bool)) and not callable(value):
                out[name] = value
    return dict(sorted(out.items()))


_NAN = float("nan")
_MARKET, _LIMIT, _STOP, _STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
_POSITION_FRACTION, _GTC = SizeType.POSITION_FRACTION, TimeInForce.GTC
_SIZE_TYPES = {name: SizeType.code(name) for name in SizeType.names()}
_TIFS = {name: TimeInForce.code(name) for name in TimeInForce.names()}


def _price(value: float | None) -> float:
    return _NAN if value is None else float(value)


def _type_key(value: Any) -> Any:
    """What numba's type of ``value`` depends on, cheaply (None: not an argument kind cached here)."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable, flags.aligned)
    if isinstance(value, tuple):
        keys = tuple(_type_key(v) for v in value)
        return None if None in keys else (type(value), keys)
    if isinstance(value, (bool, int, float, np.generic)):
        return type(value)
    return None


_ENTRIES: dict[tuple, Callable[..., Any]] = {}


def compiled_entry(dispatcher: Any, *args: Any) -> Callable[..., Any]:
    """The compiled function behind a numba ``dispatcher`` for the types of ``args`` (compiled, or loaded
    from numba's cache, now).

    Calling it runs the same machine code as calling the dispatcher, without the dispatcher's per-call
    type resolution — which, for the engine's ``State`` record of some forty arrays, costs tens of
    microseconds per call: more than a whole bar step. The caller must keep passing arguments of these
    exact types (the driver's state keeps its dtypes and layouts when it grows).
    """
    import numba

    key = (dispatcher, tuple(_type_key(a) for a in args))
    entry = _ENTRIES.get(key) if None not in key[1] else None
    if entry is None:
        entry = dispatcher.compile(tuple(numba.typeof(a) for a in args))
        if None not in key[1]:
            _ENTRIES[key] = entry
    return entry


class _Run:
    """One run of one strategy instance: the clock, the views, the engine state and its compiled calls.

    ``data`` is what the strategy sees (warm-up bars included); engine bar ``i`` is view row ``offset + i``.
    """

    def __init__(self, data: MarketData, sim: Any, offset: int = 0) -> None:
        self.data = data
        self.sim = sim
        self.state = sim._state
        self.offset = offset
        self.t: int | None = None
        self.ts = 0
        self.bars = _Bars(self)
        self.positions = [_Position(self, a) for a in range(data.n_assets)]
        self.assets = tuple(data.assets)
        self._fields: dict[tuple[str, int | None], _Series] = {}
        self.declared: list[tuple[_Series, Callable[..., Any], tuple, dict]] = []
        self._submit: Callable[..., int] | None = None
        self._equity: Callable[..., float] | None = None

    # ---------------------------------------------------------------- views
    def _column(self, name: str, column: int | None) -> np.ndarray:
        full = getattr(self.data, name)
        if name != "timestamps":
            if column is not None:
                full = full[:, column]
            elif self.data.n_assets == 1:
                full = full[:, 0]
        return full

    def field(self, name: str, column: int | None) -> _Series:
        key = (name, column)
        series = self._fields.get(key)
        if series is None:
            series = self._fields[key] = _Series(self, self._column(name, column))
        return series

    def declare(self, function: Callable[..., Any], args: tuple, kwargs: dict) -> _Series:
        """An indicator of :meth:`Strategy.I`: computed now, kept with its recipe for :meth:`rebind`."""
        series = _Series(self, self._evaluate(function, args, kwargs))
        self.declared.append((series, function, args, kwargs))
        return series

    @staticmethod
    def _evaluate(function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        full = lambda v: v._full if isinstance(v, _Series) else v  # noqa: E731
        return function(*(full(a) for a in args), **{k: full(v) for k, v in kwargs.items()})

    def rebind(self, data: MarketData) -> None:
        """See ``data`` (a longer history: the bars received so far) from now on: every data view is
        re-pointed and every declared indicator recomputed on it, in declaration order."""
        self.data = data
        for (name, column), series in self._fields.items():
            series._set(self._column(name, column))
        for series, function, args, kwargs in self.declared:
            series._set(self._evaluate(function, args, kwargs))

    # ---------------------------------------------------------------- account
    def asset_index(self, asset: str | None) -> int:
        if asset is None:
            return self.default_asset()
        try:
            return self.assets.index(asset)
        except ValueError:
            raise ConfigError(f"unknown asset {asset!r}{did_you_mean(str(asset), self.assets)}", field="asset") from None

    def default_asset(self) -> int:
        if len(self.assets) != 1:
            raise StrategyError(f"the data has {len(self.assets)} assets: name one (asset=..., position_of(...))")
        return 0

    def only_position(self) -> _Position:
        if len(self.positions) != 1:
            self.default_asset()
        return self.positions[0]

    def equity(self) -> float:
        from backforge.engine import kernels as k

        if self._equity is None:
            self._equity = compiled_entry(k.equity_nb, self.state)
        return float(self._equity(self.state))

    # ---------------------------------------------------------------- orders
    def grow(self, bar: int) -> None:
        """Room in the record arrays for engine bar ``bar`` and what may be decided on it (the
        Simulator's own growth rule)."""
        sim = self.sim
        sim._state, sim._t = self.state, bar - 1
        sim._ensure_room()
        self.state = sim._state

    def submit(self, asset: int, side: int, order_type: int, size_type: int, size: float, limit: float, stop: float,
               stop_loss: float, take_profit: float, trailing_stop: float, tif: int, gtn_bars: int) -> int:
        """An order decided on the current bar, through the compiled variant's own order path
        (:func:`~backforge.strategy.compiled.submit_nb`: the risk rules' entry checks, then the kernel)."""
        if self.t is None:
            raise StrategyError("orders are placed in next(), not in init()")
        from backforge.strategy.compiled import submit_nb

        bar = self.t - self.offset
        self.grow(bar)  # one next() may submit many orders: never let the records overflow
        args = (self.state, bar, self.ts, asset, side, order_type, size_type, float(size), limit, stop, stop_loss,
                take_profit, trailing_stop, tif, gtn_bars)
        if self._submit is None:
            self._submit = compiled_entry(submit_nb, *args)
        return int(self._submit(*args))

    def order(self, side: int, size: float, *, asset: str | None = None, size_type: str = "equity_fraction",
              limit: float | None = None, stop: float | None = None, stop_loss: float | None = None,
              take_profit: float | None = None, trailing_stop: float | None = None, time_in_force: str = "gtc",
              gtn_bars: int = 0) -> int:
        kind = _STOP_LIMIT if limit is not None and stop is not None else _LIMIT if limit is not None \
            else _STOP if stop is not None else _MARKET
        st = _SIZE_TYPES.get(size_type)
        if st is None:
            st = SizeType.code(size_type)  # normalises the spelling, or the error with its choices
        tif = _TIFS.get(time_in_force)
        if tif is None:
            tif = TimeInForce.code(time_in_force)
        return self.submit(self.asset_index(asset), side, kind, st, size, _price(limit), _price(stop),
                           _price(stop_loss), _price(take_profit), _price(trailing_stop), tif, int(gtn_bars))

    def cancel(self, order_id: int) -> bool:
        from backforge.engine import kernels as k

        if self.t is None:
            raise StrategyError("orders are cancelled in next(), not in init()")
        return bool(k.cancel_order_nb(self.state, order_id, self.t - self.offset, self.ts, k.R_USER))


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
    source = os.path.realpath(inspect.getsourcefile(cls) or "")  # absolute; a loaded file's frames are as typed
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.realpath(f.filename) == source] or frames[-1:]
    return f"{Path(mine[-1].filename).name}:{mine[-1].lineno}" if mine else "?"


class CodeDriver:
    """A :class:`Strategy` instance on the engine's compiled bar step, one bar at a time: the driver of
    :func:`backtest` and of the paper/live adapter (:class:`backforge.live.code_step.CodeStep`).

    ``data`` is what the strategy sees (``init`` runs on it); ``sim`` a
    :class:`~backforge.engine.simulator.Simulator` holding the validated options, lowered parameters and the
    state; engine bar ``i`` is data row ``offset + i``. :meth:`advance` processes one bar and calls the
    strategy's hooks and ``next``.
    """

    def __init__(self, strategy: type[Strategy], params: dict[str, Any], data: MarketData, sim: Any, *,
                 offset: int = 0) -> None:
        self.strategy = strategy
        self.name = strategy.__name__
        self.run = run = _Run(data, sim, offset)
        self.instance = instance = strategy.__new__(strategy)
        for name, value in params.items():
            setattr(instance, name, value)
        instance._run = run
        self._on_fill = instance.on_fill if type(instance).on_fill is not Strategy.on_fill else None
        self._on_order = instance.on_order if type(instance).on_order is not Strategy.on_order else None
        self._next = instance.next
        self.seen_fills = self.seen_events = 0
        self._step: Callable[..., bool] | None = None

    def init(self) -> None:
        """The strategy's ``init`` on the data; its errors become a :class:`StrategyError` with its line."""
        try:
            self.instance.init()
        except BackforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: report it with its line
            raise StrategyError(f"{self.name}.init() raised {type(exc).__name__} "
                                f"({_strategy_frame(exc, self.strategy)}): {exc}") from exc

    def advance(self, bar: int, ts: int, prices: Any, params: Any) -> None:
        """Engine bar ``bar`` (row ``bar`` of ``prices``, timestamp ``ts``), then the hooks and ``next``."""
        from backforge.strategy.compiled import bar_step_nb

        run = self.run
        run.t = None  # the bar is processed on the engine's arrays; the strategy sees it truncated below
        step = self._step
        if step is None:
            run.grow(bar)
            step = self._step = compiled_entry(bar_step_nb, run.state, params, bar, ts, prices)
        if not step(run.state, params, bar, ts, prices):
            run.grow(bar)
            if not step(run.state, params, bar, ts, prices):
                raise SimulationError("the record arrays could not be grown for the bar (this is a bug)")
        run.t = bar + run.offset
        run.ts = ts
        try:
            if self._on_fill is not None or self._on_order is not None:
                self._hooks()
            self._next()
        except BackforgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: report it with its bar and line
            from backforge._time import format_ns

            raise StrategyError(f"{self.name}.next() raised {type(exc).__name__} at bar {run.t} ({format_ns(ts)}, "
                                f"{_strategy_frame(exc, self.strategy)}): {exc}") from exc

    def _hooks(self) -> None:
        from backforge.engine import kernels as k
        from backforge.engine.records import EventKind, OrderRole, Reason

        state, run = self.run.state, self.run
        if self._on_fill is not None:
            n = int(state.counters[k.C_FILLS])
            for row in state.fills[self.seen_fills:n]:
                self._on_fill(FillInfo(int(row["order_id"]), run.assets[int(row["asset"])], float(row["qty"]),
                                       float(row["price"]), float(row["fee"]), OrderRole.name(row["role"]),
                                       int(row["bar"]) + run.offset))
            self.seen_fills = n
        if self._on_order is not None:
            n = int(state.counters[k.C_EVENTS])
            for row in state.events[self.seen_events:n]:
                self._on_order(OrderInfo(int(row["order_id"]), EventKind.name(row["kind"]),
                                         Reason.name(row["reason"]), int(row["bar"]) + run.offset))
            self.seen_events = n


def risk_book(risk: Any, sim: Any, data: MarketData) -> Any:
    """``risk=`` of a backtest of a class (Python or compiled), lowered on the traded bars as for
    ``from_signals`` (sizing series, sessions and trading windows need the history, which a backtest has);
    None without rules. Each entry gives its own stop (``buy(stop_loss=...)``), so from_signals' check for
    a signal-level stop does not apply. Sets ``sim.risk_config``."""
    from backforge.engine import risk as rk
    from backforge.engine.simulator import signal_risk_book

    risk_cfg = rk.as_risk_config(risk)
    signal_cfg = sim.signal_config if sim.signal_config.stop_loss is not None else \
        sim.signal_config.model_copy(update={"stop_loss": 1.0})
    sim.risk_config = risk_cfg
    return signal_risk_book(risk_cfg, signal_cfg, data, cash=sim.sim_config.cash)


def backtest(data: MarketData | Any, strategy: type[Strategy], *, config: Any = None, risk: Any = None,
             start: int | None = None, end: int | None = None, **kwargs: Any):
    """Backtest a :class:`Strategy` subclass on ``data`` and return a :class:`~backforge.results.result.Result`.

    Keywords that name a parameter of the class override it; the others are the options of
    :func:`backforge.from_signals` (cash, costs, lot size, leverage...; ``risk`` a
    :class:`~backforge.engine.risk.RiskConfig`, its ``sizing`` included: each entry's own ``stop_loss`` is the
    stop risk sizing divides by). ``start`` / ``end`` (bar positions, end exclusive) bound
    the traded bars: the bars before ``start`` are warm-up only (``init`` and ``next`` see them, no bar is
    traded and ``next`` is first called on bar ``start``), as in walk-forward windows and paper sessions;
    the result covers bars ``start:end``. Errors raised by the strategy's own code become a
    :class:`StrategyError` naming the bar, its time and the strategy's line; nothing half-made is returned.
    """
    from backforge.engine.simulator import Simulator, new_state, prices_of

    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise ConfigError(f"expected a Strategy subclass, got {strategy!r}", field="strategy")
    data = MarketData.coerce(data)
    lo = int(start or 0)
    hi = data.n_bars if end is None else min(int(end), data.n_bars)
    if not 0 <= lo < hi:
        raise ConfigError(f"start={start} / end={end} leave no bar to trade (the data has {data.n_bars})", field="start")
    seen = data if hi == data.n_bars else data.rows(0, hi)
    traded = seen if lo == 0 else seen.rows(lo, hi)
    params, options = _split(strategy, kwargs)
    sim = Simulator(data.assets, has_quotes=data.has_quotes, config=config, **options)
    book = risk_book(risk, sim, traded)
    # The state is preallocated for every traded bar and each bar is advanced by the compiled bar step over
    # the [T, A] arrays (no per-bar row conversions); orders go through the compiled variant's submit_nb,
    # the Simulator's order path in compiled form: what Simulator.on_bar / submit would give, bit for bit.
    sim._state = new_state(data.n_assets, traded.n_bars, cash=sim.sim_config.cash, order_capacity=256,
                           record_positions=sim.sim_config.record_positions, risk=book)
    driver = CodeDriver(strategy, params, seen, sim, offset=lo)
    driver.init()
    prices = prices_of(traded)
    engine_params = sim._params
    advance = driver.advance
    for bar, ts in enumerate(traded.timestamps.tolist()):
        advance(bar, ts, prices, engine_params)
    driver.run.t = None
    from backforge.results.result import Result

    result = Result(data=traded, state=driver.run.state, sim_config=sim.sim_config, signal_config=sim.signal_config,
                    mode="code")
    result.risk_config = sim.risk_config
    result.strategy = {"name": strategy.__name__, "class": f"{strategy.__module__}.{strategy.__qualname__}",
                       "parameters": {**strategy_parameters(strategy), **params}}
    result.class_run = {"strategy": strategy, "data": data, "parameters": result.strategy["parameters"],
                        "options": {**options, **sim.sim_config.model_dump()},  # config= resolved
                        "risk": risk}
    return result


def load_strategy_class(path: str | Path, name: str | None = None, *, compiled: bool = False) -> type[Strategy]:
    """The :class:`Strategy` subclass defined in a Python file (``name`` picks one when there are several);
    one clear line when the file has none, several, or does not import. ``compiled``: a
    :func:`~backforge.strategy.compiled.compiled` class defined in the file counts too (searches run both)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("strategy file not found", path=str(path))
    # the same name in every process (a compiled loop cached on disk names its callback's module)
    module_name = f"backforge_user_strategy_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot load this file as Python", path=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        # compiled from the source every time, not through the import system's bytecode cache: that writes
        # __pycache__ into the user's folder and trusts a cached file whose source has the same size and
        # modification second — an edit saved within the second of the last run would run the old code
        exec(compile(path.read_bytes(), str(path), "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:  # noqa: BLE001 - the user's file
        sys.modules.pop(module_name, None)
        raise ConfigError(f"the file does not import: {type(exc).__name__} ({_where(exc, path)}): {exc}",
                          path=str(path)) from None
    found = {n: obj for n, obj in vars(module).items()
             if isinstance(obj, type) and obj.__module__ == module_name and (
                 (issubclass(obj, Strategy) and obj is not Strategy)
                 or (compiled and getattr(obj, "__backforge_compiled__", False)))}
    if name is not None:
        if name not in found:
            raise ConfigError(f"no Strategy subclass {name!r} in the file{did_you_mean(name, found)}"
                              + (f" (it defines {', '.join(found)})" if found else ""), path=str(path))
        return found[name]
    if not found:
        only = [n for n, obj in vars(module).items() if isinstance(obj, type) and obj.__module__ == module_name
                and getattr(obj, "__backforge_compiled__", False)]
        if only:
            raise ConfigError(f"the file defines only compiled strategies ({', '.join(only)}): this command runs a "
                              "Strategy class (class MyStrategy(backforge.Strategy): ...)", path=str(path))
        raise ConfigError("the file defines no Strategy subclass (class MyStrategy(backforge.Strategy): ...)",
                          path=str(path))
    if len(found) > 1:
        raise ConfigError(f"the file defines several strategies ({', '.join(found)}): pick one with --strategy",
                          path=str(path))
    return next(iter(found.values()))


def class_market(strategy: type, base: Path, data: Any = None, start: Any = None, end: Any = None) -> MarketData:
    """The market data a class runs on from the command line: ``data`` (files) when given, else the class's
    ``data_spec`` for its ``universe`` (validated like a strategy file's ``data:``, files relative to
    ``base``), cut to ``start`` / ``end`` or the data spec's own period."""
    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import load_portfolio

    spec = {"name": strategy.__name__, "universe": list(getattr(strategy, "universe", Strategy.universe)),
            "data": dict(getattr(strategy, "data_spec", None) or {}),
            "strategies": [{"name": "data", "action": {"kind": "alert"}}]}
    portfolio = load_portfolio(spec)
    files = [data] if isinstance(data, (str, Path)) else list(data) if data else None
    market = load_data(portfolio, base=base, override=[Path(f) for f in files] if files else None)
    if start or end or portfolio.data.start or portfolio.data.end:
        market = market.slice(start or portfolio.data.start, end or portfolio.data.end)
    return market


def _where(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path.name}:{exc.lineno}"
    return f"{path.name}:{frames[-1].lineno}" if frames else path.name
