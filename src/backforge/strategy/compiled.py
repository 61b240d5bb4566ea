"""Compiled strategies: the callbacks of a :class:`~backforge.strategy.code.Strategy` written as numba
functions, run inside one compiled loop with no Python per bar.

A compiled strategy is a class decorated with :func:`compiled`:

- parameters are class attributes, as for a :class:`~backforge.strategy.code.Strategy`;
- ``init(self, data)`` runs once, in Python: it computes the indicators (whole arrays, vectorized) and
  returns the tuple of arrays and scalars the bar callback receives (``user``);
- ``next_nb(state, t, ts, user)`` is a numba function (``@numba.njit``, or a plain function that
  :func:`compiled` compiles) called once per bar after the bar was processed, with the engine's
  :class:`~backforge.engine.kernels.State`, the bar index ``t`` and its timestamp ``ts``. It reads
  ``user`` only up to row ``t`` (nothing stops it reading further: the compiled variant trades the
  Python variant's look-ahead guard for speed) and places orders with the functions of this module:
  :func:`buy_nb`, :func:`sell_nb`, :func:`close_nb`, :func:`order_nb`, :func:`cancel_nb`, and reads the
  account with :func:`position_nb`, :func:`cash_nb`, :func:`equity_nb`.

The orders go through :func:`~backforge.engine.kernels.submit_order_nb` with exactly the arguments the
Python :class:`Strategy` gives (through :meth:`Simulator.submit`), and every bar is advanced by the same
compiled bar step (:func:`~backforge.engine.kernels.process_bar_nb`) as ``from_signals``, strategy files
and the Python class: the same decisions give bit-identical orders, fills and equity.

Caching: the loop is specialised for each ``next_nb`` (the call is inlined by LLVM, no function pointer
per bar). numba keys a function passed as an argument by its object, so a loop taking ``next_nb`` as
an argument would compile again in every process (about 5 s) and leave a never-read cache entry behind.
:func:`callback_loop` instead writes the loop, with ``next_nb`` as a global, into a small module of the
per-user cache folder named by a fingerprint of what the compiled code depends on: the bytecode of
``next_nb`` and of the functions it calls, the values of the globals it reads (numba freezes them into
the code), and backforge's source files. The same strategy in a later process loads its loop from
numba's disk cache; an edit to any of those gives a new fingerprint and a fresh compile. A function
reading a global numba could freeze but the fingerprint cannot describe is compiled in memory only.

Examples
--------
>>> import numba, numpy as np, backforge as bf
>>> from backforge.strategy.indicators import sma
>>> @compiled
... class SmaCrossNb:
...     fast, slow = 10, 30
...     def init(self, data):
...         return sma(data.close, data.timestamps, self.fast), sma(data.close, data.timestamps, self.slow)
...     @staticmethod
...     @numba.njit
...     def next_nb(state, t, ts, user):
...         fast, slow = user
...         if t == 0:
...             return
...         was, now = fast[t - 1, 0] - slow[t - 1, 0], fast[t, 0] - slow[t, 0]
...         if was <= 0.0 < now and position_nb(state, 0) == 0.0:
...             buy_nb(state, t, ts, 0, 1.0)
...         elif now < 0.0 <= was and position_nb(state, 0) != 0.0:
...             close_nb(state, t, ts, 0)
>>> result = backtest_compiled(bf.synth(n_assets=1, years=2, seed=4), SmaCrossNb, fast=5, fee_rate=0.001)
>>> result.summary()["trades"] > 0, result.mode
(True, 'compiled')
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import types
from pathlib import Path
from typing import Any

import numba
import numpy as np

from backforge._jit import frozen, njit
from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine import risk as rk
from backforge.engine.records import OrderType, SizeType
from backforge.errors import ConfigError

__all__ = ["backtest_compiled", "bar_step_nb", "buy_nb", "callback_loop", "cancel_nb", "cash_nb", "close_nb",
           "compiled", "equity_nb", "has_room_nb", "order_nb", "per_bar", "position_nb", "sell_nb", "submit_nb",
           "user_arrays", "window_user"]

MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
UNITS, EQUITY_FRACTION, POSITION_FRACTION = SizeType.UNITS, SizeType.EQUITY_FRACTION, SizeType.POSITION_FRACTION
GTC = 0


@njit(cache=True, _nrt=False, inline="always")
def has_room_nb(state: k.State) -> bool:
    """True when the record arrays keep the headroom :meth:`Simulator._ensure_room` keeps before a bar
    (``8 A + 3 × working orders + 16`` free orders, fills and trades, four times that many events): the
    test on the compiled side, so a loop can stop *before* a bar that might overflow and let Python grow
    the arrays (the same formula, so the growth always makes room)."""
    c = state.counters
    need = 8 * state.position.shape[0] + 3 * c[k.C_ACTIVE] + 16
    if state.orders.shape[0] - c[k.C_ORDERS] < need or state.fills.shape[0] - c[k.C_FILLS] < need \
            or state.trades.shape[0] - c[k.C_TRADES] < need or state.events.shape[0] - c[k.C_EVENTS] < 4 * need:
        return False
    book = state.risk
    return not (book.on[0] != 0 and book.events.shape[0] - book.n_events[0] < 4 * need)


@k.kernel
def bar_step_nb(state: k.State, params: k.Params, t: int, ts: int, prices: k.Prices) -> bool:
    """Advance the account over bar ``t`` of the ``[T, A]`` prices: the bar step of every backtest. False,
    with nothing done, when the record arrays lack the headroom of :func:`has_room_nb` (grow them, call again)."""
    if not has_room_nb(state):
        return False
    k.process_bar_nb(state, params, t, ts, k.bar_prices_nb(prices, t))
    return True


@njit(cache=True, _nrt=False)  # no reference counting of the state's ~50 arrays per call
def submit_nb(state, t, ts, asset, side, order_type, size_type, size, limit_price, stop_price, stop_loss,
              take_profit, trailing_stop, tif, gtn_bars):
    """:func:`order_nb` with a time in force (code of :class:`~backforge.engine.records.TimeInForce`) and
    its bar count: the one order path of both variants (the Python :class:`Strategy` calls it too)."""
    sl_abs = np.nan
    if state.risk.on[0] != 0:
        if size_type != POSITION_FRACTION:
            size_type, size, sl_abs = k.risk_entry_order_nb(state, 0, asset, t, ts, size_type, size, stop_loss, np.nan)
            if size_type < 0:
                return -1
        rk.risk_count_order_nb(state.risk, 0)
    role = k.EXIT if size_type == POSITION_FRACTION else k.ENTRY
    return k.submit_order_nb(state, t, ts, asset, side, order_type, size_type, size, limit_price, stop_price,
                             stop_loss, sl_abs, take_profit, np.nan, trailing_stop, np.nan, tif, gtn_bars, role, -1,
                             -1, 0, 0, k.R_USER)  # tag 0: the class is strategy 0 (a session's client ids name it)


@njit(cache=True, _nrt=False)
def order_nb(state, t, ts, asset, side, order_type, size_type, size, limit_price, stop_price, stop_loss,
             take_profit, trailing_stop):
    """Submit an order decided on bar ``t`` (``side`` +1 buy / -1 sell; codes of
    :class:`~backforge.engine.records.OrderType` / ``SizeType``; NaN = no price / no bracket), good till
    cancelled; returns its id. What :meth:`Simulator.submit` does, risk rules included."""
    return submit_nb(state, t, ts, asset, side, order_type, size_type, size, limit_price, stop_price, stop_loss,
                     take_profit, trailing_stop, GTC, 0)


@njit(cache=True, _nrt=False)
def buy_nb(state, t, ts, asset, size):
    """A market buy of ``size`` × equity (``Strategy.buy(size)``)."""
    return order_nb(state, t, ts, asset, 1, MARKET, EQUITY_FRACTION, size, np.nan, np.nan, np.nan, np.nan, np.nan)


@njit(cache=True, _nrt=False)
def sell_nb(state, t, ts, asset, size):
    """A market sell of ``size`` × equity (``Strategy.sell(size)``)."""
    return order_nb(state, t, ts, asset, -1, MARKET, EQUITY_FRACTION, size, np.nan, np.nan, np.nan, np.nan, np.nan)


@njit(cache=True, _nrt=False)
def close_nb(state, t, ts, asset):
    """Close the whole position of ``asset`` at the next open (``Strategy.close()``); -1 when flat."""
    pos = state.position[asset]
    if pos == 0.0:
        return -1
    return order_nb(state, t, ts, asset, -1 if pos > 0 else 1, MARKET, POSITION_FRACTION, 1.0, np.nan, np.nan,
                    np.nan, np.nan, np.nan)


@njit(cache=True, _nrt=False)
def cancel_nb(state, t, ts, order_id):
    """Cancel a working order; False when it is not working."""
    return k.cancel_order_nb(state, order_id, t, ts, k.R_USER)


@njit(cache=True, inline="always")  # no call: no reference counting of the state per read
def position_nb(state, asset):
    """Signed units held of ``asset``."""
    return state.position[asset]


@njit(cache=True, inline="always")  # no call: no reference counting of the state per read
def cash_nb(state):
    return state.cash[0]


@njit(cache=True, inline="always")  # no call: no reference counting of the state per read
def equity_nb(state):
    return k.equity_nb(state)


_LOOP_SOURCE = '''"""The compiled loop of one compiled strategy, written by backforge.strategy.compiled.callback_loop
(a cache: safe to delete)."""
from backforge._jit import njit
from backforge.engine import kernels as k
from backforge.strategy.compiled import _CALLBACKS, has_room_nb

next_nb = _CALLBACKS[{key!r}]


@njit(cache={cache}, _nrt=False)  # no reference counting of the state's arrays per call
def run_callback_nb(state, params, timestamps, prices, user, start):
    for t in range(start, timestamps.shape[0]):
        if not has_room_nb(state):
            return t
        ts = timestamps[t]
        k.process_bar_nb(state, params, t, ts, k.bar_prices_nb(prices, t))
        next_nb(state, t, ts, user)
        if state.counters[k.C_OVERFLOW] != 0:
            return -1
    return timestamps.shape[0]
'''
_CALLBACKS: dict[str, Any] = {}  # fingerprint -> the next_nb a generated loop module calls
_LOOPS: dict[str, Any] = {}  # fingerprint -> its loop, once per process
_KEEP_LOOPS = 64  # generated loop modules kept in the cache folder (the oldest go first)
_ENGINE_STAMP: list[str] = []


def callback_loop(next_nb: Any):
    """The compiled loop of a strategy: ``loop(state, params, timestamps, prices, user, start)`` runs the
    bar step, then ``next_nb(state, t, ts, user)``, for bars ``start`` on, and returns the bar it stopped
    before: ``timestamps.shape[0]`` when done; an earlier bar when the record arrays need room
    (:func:`has_room_nb`: grow them and call again from that bar); -1 when one ``next_nb`` call overflowed
    them (rerun with more capacity). The bar step is inlined, as in ``from_signals``'s loop: no per-bar call
    that copies the state's records. Cached on disk under a fingerprint of ``next_nb`` (module docstring)."""
    key = _fingerprint(next_nb)
    cached = key is not None and _loop_folder() is not None
    key = key or f"memory-{id(next_nb):x}"
    loop = _LOOPS.get(key)
    if loop is None:
        _CALLBACKS[key] = next_nb
        source = _LOOP_SOURCE.format(key=key, cache=cached)
        name = f"backforge_loop_{key.replace('-', '_')}"
        filename = _write_loop(key, source) if cached else f"<backforge compiled loop {key}>"
        module = types.ModuleType(name)
        module.__file__ = filename
        sys.modules[name] = module
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
        loop = _LOOPS[key] = module.run_callback_nb
    return loop


def _fingerprint(next_nb: Any) -> str | None:
    """A digest of what the loop compiled for ``next_nb`` depends on; None when a global it reads is not
    something the digest can describe (it is then compiled in memory, every process)."""
    if not _ENGINE_STAMP:
        root = Path(__file__).resolve().parent.parent
        files = sorted(root.rglob("*.py"))  # all of backforge: what a loop inlines, and what next_nb may call
        stamps = [f"{f.relative_to(root)}:{f.stat().st_mtime_ns}:{f.stat().st_size}" for f in files]
        _ENGINE_STAMP.append("|".join([sys.version, numba.__version__, np.__version__, _LOOP_SOURCE, *stamps]))
    digest = hashlib.sha256(_ENGINE_STAMP[0].encode())
    if not _digest_function(next_nb, digest, set()):
        return None
    return digest.hexdigest()[:32]


def _digest_function(function: Any, digest: Any, seen: set[int]) -> bool:
    func = getattr(function, "py_func", function)
    if id(func) in seen:
        return True
    seen.add(id(func))
    if func.__module__ not in sys.modules:  # a cached loop imports its callback's module when it loads
        return False
    code = func.__code__
    # marshal version 2 writes no back-references: later versions mark the objects whose reference count is
    # above one, and numba's compile holds references to the constants
    digest.update(f"{func.__module__}.{func.__qualname__}".encode() + marshal.dumps(code, 2))
    names: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        names.update(current.co_names)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    cells = [cell.cell_contents for cell in func.__closure__ or ()]
    values = [func.__globals__[n] for n in sorted(names) if n in func.__globals__]
    values += cells + list(func.__defaults__ or ())
    return all(_digest_value(value, digest, seen) for value in values)


def _digest_value(value: Any, digest: Any, seen: set[int]) -> bool:
    if isinstance(value, types.ModuleType):
        digest.update(f"module {value.__name__}".encode())
        return True
    if isinstance(value, (bool, int, float, complex, str, bytes, type(None), np.generic)):
        digest.update(f"{type(value).__qualname__} {value!r}".encode())
        return True
    if isinstance(value, tuple):
        digest.update(f"tuple {len(value)}".encode())
        return all(_digest_value(v, digest, seen) for v in value)
    if isinstance(value, np.ndarray):
        digest.update(f"array {value.dtype.str} {value.shape}".encode() + np.ascontiguousarray(value).tobytes())
        return True
    module = getattr(value, "__module__", None) or ""
    if module.split(".")[0] in ("backforge", "numba", "numpy", "math", "cmath"):
        # backforge's functions and types (in the package's stamp), numba and NumPy objects, math functions
        digest.update(f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}".encode())
        return True
    if isinstance(value, numba.core.registry.CPUDispatcher) or isinstance(value, types.FunctionType):
        return _digest_function(value, digest, seen)
    return False


def _loop_folder() -> Path | None:
    from backforge._paths import cache_dir

    folder = cache_dir() / "compiled"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _write_loop(key: str, source: str) -> str:
    """The loop module's file, written once (atomically: a concurrent writer's file is kept as it is, so the
    stamp numba's cache index recorded stays valid); the oldest beyond :data:`_KEEP_LOOPS` are removed."""
    folder = _loop_folder()
    path = folder / f"loop_{key}.py"
    if not path.exists():
        tmp = folder / f".loop_{key}.{os.getpid()}.tmp"
        tmp.write_text(source, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        modules = sorted(folder.glob("loop_*.py"), key=lambda f: f.stat().st_mtime_ns)
        for old in modules[:-_KEEP_LOOPS]:
            for f in [old, *folder.joinpath("__pycache__").glob(f"{old.stem}.*")]:
                f.unlink(missing_ok=True)
    return str(path)


def compiled(cls: type) -> type:
    """Mark a class as a compiled strategy (see the module docstring); ``next_nb`` is compiled with
    ``numba.njit`` when it is a plain function."""
    function = cls.__dict__.get("next_nb")
    if isinstance(function, staticmethod):
        function = function.__func__
    if function is None:
        raise ConfigError(f"{cls.__name__} has no next_nb(state, t, ts, user)", field="next_nb")
    if not isinstance(function, numba.core.registry.CPUDispatcher):
        function = numba.njit(function)
    cls.next_nb = staticmethod(function)
    if not callable(getattr(cls, "init", None)):
        cls.init = lambda self, data: ()
    cls.__backforge_compiled__ = True
    return cls


def backtest_compiled(data: MarketData | Any, strategy: type, *, config: Any = None, risk: Any = None,
                      start: int | None = None, end: int | None = None, **kwargs: Any):
    """Backtest a :func:`compiled` strategy class; keywords that name a parameter override it, the others
    are the options of :func:`backforge.from_signals` (cash, costs, ...; ``risk`` its rules and sizing, as
    for a :class:`~backforge.strategy.code.Strategy`). Returns a ``Result``.

    ``start`` / ``end`` (bar positions, end exclusive) bound the traded bars, as for a Python class: ``init``
    sees the bars before ``start`` too (its indicators are warm on the first traded bar), then every array
    of ``user`` with a row per bar is cut to the traded rows (:func:`window_user`), so ``next_nb``'s bar
    ``t`` is the ``t``-th traded bar and row ``t`` of those arrays its values. The result covers bars
    ``start:end``."""
    from backforge.engine.simulator import Simulator, _run_with_capacity, new_state, prices_of
    from backforge.results.result import Result
    from backforge.strategy.code import _split, risk_book, strategy_parameters

    if not getattr(strategy, "__backforge_compiled__", False):
        raise ConfigError(f"expected a class decorated with @compiled, got {strategy!r}", field="strategy")
    data = MarketData.coerce(data)
    lo = int(start or 0)
    hi = data.n_bars if end is None else min(int(end), data.n_bars)
    if not 0 <= lo < hi:
        raise ConfigError(f"start={start} / end={end} leave no bar to trade (the data has {data.n_bars})", field="start")
    params, options = _split(strategy, kwargs)
    seen = data if hi == data.n_bars else data.rows(0, hi)
    traded = seen if lo == 0 else seen.rows(lo, hi)

    sim = Simulator(data.assets, has_quotes=data.has_quotes, config=config, **options)  # validates and lowers
    book = risk_book(risk, sim, traded)
    full, data = data, traded
    prices, timestamps = prices_of(data), frozen(data.timestamps, np.int64)
    loop = callback_loop(strategy.next_nb)

    def run(capacity: int):
        # init for each attempt: a rerun with more capacity must not start from the state arrays next_nb
        # wrote in the overflowed one
        user = window_user(user_arrays(strategy, params, seen), seen.n_bars, lo)
        # a batch state (a run over every bar, which writes every history row and every record it counts:
        # nothing is cleared first); records grow when the loop stops for room
        sim._state = new_state(data.n_assets, data.n_bars, cash=sim.sim_config.cash, order_capacity=capacity,
                               record_positions=sim.sim_config.record_positions, risk=book, batch=True)
        t = 0
        while True:
            t = loop(sim._state, sim._params, timestamps, prices, user, t)
            if t < 0 or t >= data.n_bars:
                return sim._state, t >= 0
            sim._t = t - 1  # grow the records (Simulator's own growth) and go on from bar t
            sim._ensure_room()

    # room for an order every 128 asset-bars before the first growth: untouched records cost no memory
    state = _run_with_capacity(run, max(8 * data.n_assets + 256, data.n_bars * data.n_assets // 128))
    result = Result(data=data, state=state, sim_config=sim.sim_config, signal_config=sim.signal_config, mode="compiled")
    result.risk_config = sim.risk_config
    result.strategy = {"name": strategy.__name__, "class": f"{strategy.__module__}.{strategy.__qualname__}",
                       "parameters": {**strategy_parameters(strategy), **params}}
    result.class_run = {"strategy": strategy, "data": full, "parameters": result.strategy["parameters"],
                        "options": {**options, **sim.sim_config.model_dump()},  # config= resolved
                        "risk": risk}
    return result


def user_arrays(strategy: type, params: dict[str, Any], data: MarketData) -> tuple:
    """``init(data)`` of a compiled class with the parameter values ``params``, as the tuple ``next_nb``
    receives; an error raised by the strategy's own code becomes a :class:`StrategyError` naming its line."""
    from backforge.errors import BackforgeError
    from backforge.strategy.code import StrategyError, _strategy_frame

    instance = strategy.__new__(strategy)
    for name, value in params.items():
        setattr(instance, name, value)
    try:
        user = instance.init(data)
    except BackforgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: report it with its line
        raise StrategyError(f"{strategy.__name__}.init() raised {type(exc).__name__} "
                            f"({_strategy_frame(exc, strategy)}): {exc}") from exc
    return tuple(user) if isinstance(user, (tuple, list)) else (user,)


def per_bar(value: Any, n_rows: int) -> bool:
    """Whether an element of ``user`` has a row per bar of the ``n_rows`` bars ``init`` saw."""
    return isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n_rows


def window_user(user: tuple, n_rows: int, lo: int) -> tuple:
    """``user`` for bars ``lo:`` of the ``n_rows`` bars ``init`` saw: each array with a row per bar is cut to
    rows ``lo:`` (a view: C-contiguous stays C-contiguous, the compiled loop is not specialised again); the
    scalars and the other arrays (state a ``next_nb`` keeps between bars) are passed as they are."""
    if lo == 0:
        return user
    return tuple(value[lo:] if per_bar(value, n_rows) else value for value in user)
