"""A :class:`~backforge.strategy.code.Strategy` class in a paper/live session: the adapter the runner steps.

:class:`CodeStep` has the interface of :class:`~backforge.live.step.StrategyStep` (``step``, ``state``,
``snapshot``, ``restore``...) and drives the strategy with the backtest's own driver
(:class:`~backforge.strategy.code.CodeDriver`): per bar, the compiled bar step, then the hooks and ``next``;
orders through the same compiled order path. What differs from :func:`~backforge.strategy.code.backtest` is
where the data comes from: the strategy sees the bars received so far (warm-up history, then live bars),
and every indicator it declared with ``self.I(...)`` is extended to the new bar. An indicator of
:mod:`backforge.strategy.indicators` (``sma``, ``ema``, ``wma``, ``rsi``, ``stddev``, ``zscore``, ``rolling_max`` /
``rolling_min``, ``rolling_sum``, ``lag``, ``returns`` / ``rate_of_change`` / ``pct_change``, ``volume_average``,
``atr``, ``vwap``) whose inputs are data fields or other declared indicators is advanced by its streaming
kernel (:class:`backforge.strategy.streaming.WindowStream`, when that module is installed): constant work
per bar, values bit-identical to the batch kernel (checked once against the batch values at start). Any
other function is recomputed on the bars so far at each bar (O(bars so far): the kernels stream forward,
row ``t`` depends on rows ``<= t`` only, so the values still equal the backtest's and nothing can look
ahead). Replaying a data set through a session therefore gives the orders, fills and equity of
``backtest(data, MyStrategy, start=s)``; :attr:`CodeStep.streamed` says which indicators stream.

Persistence: each snapshot holds the engine state and the strategy's own attributes (pickled, with its
indicator and data views saved as references and re-attached on restore); the strategy's attributes must
pickle. The snapshot is read back from the session's own state folder only.

Examples
--------
>>> import backforge as bf, tempfile
>>> from backforge.strategy.code import Strategy, crossover
>>> from backforge.strategy.indicators import sma
>>> class Cross(Strategy):
...     fast, slow = 5, 20
...     def init(self):
...         self.f = self.I(sma, self.data.close, self.data.timestamps, self.fast)
...         self.s = self.I(sma, self.data.close, self.data.timestamps, self.slow)
...     def next(self):
...         if crossover(self.f, self.s) and not self.position:
...             self.buy(0.5)
...         elif crossover(self.s, self.f) and self.position:
...             self.close()
>>> data = bf.synth(n_assets=1, years=1, seed=3)
>>> with tempfile.TemporaryDirectory() as folder:
...     runner = run_paper_class(Cross, data, state=folder, start=100)
...     paper = float(runner.step.state.equity[runner.step.t])
>>> paper == float(bf.backtest(data, Cross, start=100).equity_values[-1])
True
"""

from __future__ import annotations

import hashlib
import inspect
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from backforge.data.market import MarketData, Quotes
from backforge.engine import kernels as k
from backforge.engine.simulator import Simulator, frozen_prices, new_state
from backforge.engine.risk import as_risk_config
from backforge.errors import ConfigError, DataError, did_you_mean
from backforge.live.broker import BarEvent
from backforge.live.step import StepOutput
from backforge.strategy.code import CodeDriver, Strategy, _Bars, _Position, _Series, _split, strategy_parameters

__all__ = ["CodePortfolio", "CodeStep", "CompiledStep", "open_code_replay", "run_paper_class"]

_FIELDS = ("open", "high", "low", "close", "volume")
_QUOTE_FIELDS = tuple(f"{side}_{f}" for side in ("bid", "ask") for f in ("open", "high", "low", "close"))


class CodePortfolio:
    """What a :class:`~backforge.live.runner.PaperRunner` needs to know of a session's strategy, for a
    :class:`Strategy` class: its name, universe, the spec hashed into the session id (class, parameters,
    options and the class's source: a changed strategy needs ``--force`` to continue a session), and the
    step it runs (:class:`CodeStep`)."""

    strategies: tuple = ()  # no per-strategy risk rows: the class is one strategy

    def __init__(self, strategy: type[Strategy], universe: tuple[str, ...], **kwargs: Any) -> None:
        self.compiled = bool(getattr(strategy, "__backforge_compiled__", False))
        if not (isinstance(strategy, type) and (self.compiled or issubclass(strategy, Strategy))):
            raise ConfigError(f"expected a Strategy subclass or a compiled strategy class, got {strategy!r}",
                              field="strategy")
        self.strategy = strategy
        self.name = strategy.__name__
        self.universe = tuple(universe)
        self.params, self.options = _split(strategy, kwargs)
        # validates the options now (unknown keys, bad values) and lowers them once
        self.simulator = Simulator(self.universe, **self.options)
        self.sim_config = self.simulator.sim_config
        self.risk = as_risk_config(self.options.get("risk"))  # the paper venue's fill-time caps
        try:
            source = inspect.getsource(strategy)
        except (OSError, TypeError):
            source = strategy.__qualname__
        self._spec = {"name": self.name, "class": f"{strategy.__module__}.{strategy.__qualname__}",
                      "parameters": {**strategy_parameters(strategy), **self.params},
                      "options": {k: v for k, v in self.options.items()},
                      "source_sha256": hashlib.sha256(source.encode()).hexdigest()}

    def model_dump(self, mode: str = "json") -> dict:
        return dict(self._spec)

    def step_class(self, portfolio: "CodePortfolio", history: MarketData, *, reference: Any = None,
                   fundamentals: Any = None, feed_symbols: tuple[str, ...] | None = None) -> "CodeStep":
        """The runner's step factory (the signature of :class:`~backforge.live.step.StrategyStep`)."""
        if fundamentals is not None:
            raise ConfigError("fundamentals apply to strategy files; a Strategy class reads its own data",
                              field="fundamentals")
        return (CompiledStep if self.compiled else CodeStep)(portfolio, history, feed_symbols=feed_symbols)


class _Pickler(pickle.Pickler):
    """Pickles a strategy's attributes; its views (indicators, data, positions) become references."""

    def __init__(self, file: Any, run: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._series = {id(s): i for i, (s, *_) in enumerate(run.declared)}
        self._fields = {id(s): key for key, s in run._fields.items()}
        self._run = run

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Series):
            if id(obj) in self._series:
                return ("indicator", self._series[id(obj)])
            if id(obj) in self._fields:
                return ("field", self._fields[id(obj)])
        if isinstance(obj, _Bars):
            return ("bars", obj._column)
        if isinstance(obj, _Position):
            return ("position", obj._asset)
        if obj is self._run:
            return ("run",)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, run: Any) -> None:
        super().__init__(file)
        self._run = run

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "indicator":
            return self._run.declared[pid[1]][0]
        if kind == "field":
            return self._run.field(*pid[1])
        if kind == "bars":
            return _Bars(self._run, pid[1])
        if kind == "position":
            return self._run.positions[pid[1]]
        return self._run


def _stream_kinds() -> dict:
    """Indicator function -> (streaming kind, its input argument names)."""
    from backforge.strategy import indicators as ind

    one = ("values",)
    return {ind.sma: ("sma", one), ind.rolling_sum: ("rolling_sum", one), ind.ema: ("ema", one),
            ind.wma: ("wma", one), ind.rsi: ("rsi", one), ind.stddev: ("stddev", one), ind.zscore: ("zscore", one),
            ind.rolling_max: ("rolling_max", one), ind.rolling_min: ("rolling_min", one), ind.lag: ("lag", one),
            ind.returns: ("returns", one), ind.rate_of_change: ("returns", one), ind.pct_change: ("returns", one),
            ind.volume_average: ("volume_average", ("volume",)), ind.atr: ("atr", ("high", "low", "close")),
            ind.vwap: ("vwap", ("high", "low", "close", "volume"))}


class _IndicatorStream:
    """One declared indicator advanced by a streaming kernel: its values live in a growing buffer and its
    series views rows ``:n`` of it."""

    def __init__(self, series: _Series, stream: Any, inputs: list[_Series], one_d: bool) -> None:
        self.series, self.stream, self.inputs, self.one_d = series, stream, inputs, one_d
        self.n = 0
        self.buffer = np.zeros((0,) + series._full.shape[1:])

    @classmethod
    def build(cls, series: _Series, function: Any, args: tuple, kwargs: dict) -> "_IndicatorStream | None":
        """The stream of ``function(*args, **kwargs)``, or None when it has none (another function, inputs
        that are not data fields or declared indicators, or no streaming module)."""
        try:
            from backforge.strategy.streaming import WindowStream
        except ImportError:
            return None
        from backforge.strategy import indicators as ind

        plan = _stream_kinds().get(function)
        if plan is None:
            return None
        kind, names = plan
        try:
            bound = inspect.signature(function).bind(*args, **kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        values = bound.arguments
        inputs = [values.get(name) for name in names]
        if not all(isinstance(x, _Series) and x._full.dtype == np.float64 and x._full.ndim in (1, 2) for x in inputs):
            return None
        stamps = values.get("timestamps")
        if stamps is not None and not isinstance(stamps, _Series):
            return None
        shape = inputs[0]._full.shape
        if any(x._full.shape != shape for x in inputs) or series._full.shape != shape:
            return None
        try:
            bars, ns = ind._window(values.get("window"), "window")
        except Exception:  # noqa: BLE001 - the batch call accepted it: only a form this adapter does not lower
            return None
        stream = WindowStream(kind, bars if ns == 0 else 0, 1 if len(shape) == 1 else shape[1])
        stream.params = (bars, ns)
        return cls(series, stream, inputs, len(shape) == 1)

    def advance(self, n: int, timestamps: np.ndarray) -> None:
        """Extend the values to rows ``:n`` (the inputs already reach row ``n - 1``)."""
        lo = self.n
        if n <= lo:
            return
        if n > self.buffer.shape[0]:
            grown = np.zeros((max(2 * self.buffer.shape[0], n + 256),) + self.buffer.shape[1:])
            grown[:lo] = self.buffer[:lo]
            self.buffer = grown
        rows = [x._full[lo:n] for x in self.inputs]
        if self.one_d:
            rows = [r[:, None] for r in rows]
        out = self.stream.push(np.ascontiguousarray(rows[0]), np.ascontiguousarray(timestamps[lo:n]),
                               *(np.ascontiguousarray(r) for r in rows[1:]))
        self.buffer[lo:n] = out[:, 0] if self.one_d else out
        self.n = n
        self.series._set(self.buffer[:n])


class CodeStep:
    """A :class:`Strategy` class stepped one bar at a time (see the module docstring); ``history`` holds the
    warm-up bars (seen by ``init`` and ``next``, never traded), ``feed_symbols`` names the columns of the bars
    passed to :meth:`step` (default: the universe)."""

    def __init__(self, portfolio: CodePortfolio, history: MarketData, *,
                 feed_symbols: tuple[str, ...] | None = None) -> None:
        self.portfolio = portfolio
        self.assets = portfolio.universe
        symbols = tuple(feed_symbols) if feed_symbols is not None else tuple(history.assets)
        missing = [a for a in self.assets if a not in symbols]
        if missing:
            raise ConfigError(f"the feed has no data for {missing[0]!r}{did_you_mean(missing[0], symbols)} "
                              f"(feed symbols: {', '.join(symbols[:12])})", path="universe")
        self._cols = np.array([symbols.index(a) for a in self.assets], dtype=np.int64)
        self.has_quotes = bool(history.has_quotes)
        self.sim = sim = Simulator(self.assets, has_quotes=self.has_quotes, **portfolio.options)
        self.sim_config, self.params = sim.sim_config, sim._params
        book = sim._state.risk
        sim._state = new_state(len(self.assets), 1024, cash=sim.sim_config.cash, order_capacity=256,
                               record_positions=sim.sim_config.record_positions, risk=book if book.on[0] != 0 else None)
        self.n = 0
        self._cap = 0
        self._ts = np.zeros(0, dtype=np.int64)
        self._buffer: dict[str, np.ndarray] = {}
        hist = history.select(self.assets) if tuple(history.assets) != self.assets else history
        self._append(hist.timestamps, [getattr(hist, f) for f in _FIELDS],
                     [getattr(q, f) for q in (hist.bid, hist.ask) for f in ("open", "high", "low", "close")]
                     if self.has_quotes else None)
        self.n_warm = self.n
        self.t = -1
        self._prices: k.Prices | None = None
        self._streams: dict[int, _IndicatorStream] = {}
        self._started = False
        self._attach()
        if self.n_warm:
            self._start()

    def _attach(self) -> None:
        """The strategy's driver on the engine state."""
        self.driver = CodeDriver(self.portfolio.strategy, self.portfolio.params, self.history(), self.sim,
                                 offset=self.n_warm)

    # ------------------------------------------------------------------ bar buffer
    def _append(self, ts: np.ndarray, rows: list[np.ndarray], quotes: list[np.ndarray] | None) -> None:
        m = len(ts)
        if self.n + m > self._cap or not self._buffer:
            cap = max(2 * self._cap, self.n + m + 256, 1024)
            A = len(self.assets)
            grown = np.zeros(cap, dtype=np.int64)
            grown[: self.n] = self._ts[: self.n]
            self._ts = grown
            for name in _FIELDS + (_QUOTE_FIELDS if self.has_quotes else ()):
                new = np.full((cap, A), np.nan)
                old = self._buffer.get(name)
                if old is not None:
                    new[: self.n] = old[: self.n]
                self._buffer[name] = new
            self._cap = cap
            self._prices = None  # the engine's price views move with the buffer
        lo, hi = self.n, self.n + m
        self._ts[lo:hi] = ts
        for name, values in zip(_FIELDS, rows):
            self._buffer[name][lo:hi] = values
        if self.has_quotes:
            if quotes is None:
                raise DataError("the session trades on bid/ask quotes but a bar has none", field="bid")
            for name, values in zip(_QUOTE_FIELDS, quotes):
                self._buffer[name][lo:hi] = values
        self.n = hi

    def history(self) -> MarketData:
        """The bars received so far (warm-up and live) as ``MarketData`` (views, no copy)."""
        n, b = self.n, self._buffer
        bid = ask = None
        if self.has_quotes:
            bid, ask = (Quotes(*(b[f"{side}_{x}"][:n] for x in ("open", "high", "low", "close"))) for side in ("bid", "ask"))
        return MarketData(self._ts[:n], *(b[f][:n] for f in _FIELDS), self.assets, bid, ask)

    @property
    def last_ts(self) -> int | None:
        return int(self._ts[self.n - 1]) if self.n else None

    @property
    def state(self) -> k.State:
        return self.driver.run.state

    @state.setter
    def state(self, value: k.State) -> None:
        self.driver.run.state = value

    @property
    def streamed(self) -> list[bool]:
        """For each indicator declared in ``init`` (in order): whether it streams (constant work per bar) or
        is recomputed on the bars so far at each bar."""
        return [i in self._streams for i in range(len(self.driver.run.declared))]

    def _start(self) -> None:
        run = self.driver.run
        run.rebind(self.history())
        self.driver.init()
        self._streams = {}
        for i, (series, function, args, kwargs) in enumerate(run.declared):
            stream = _IndicatorStream.build(series, function, args, kwargs)
            if stream is None:
                continue
            batch = series._full
            stream.advance(self.n, self._ts)  # the warm-up through the stream: its state, checked against batch
            if np.array_equal(series._full, batch, equal_nan=True):
                self._streams[i] = stream
            else:
                series._set(batch)
        self._started = True

    def _rebind(self) -> None:
        """Point the strategy's views at the bars received so far and extend every declared indicator to
        the last one (streamed, or recomputed), in declaration order."""
        run = self.driver.run
        run.data = self.history()
        for (name, column), series in run._fields.items():
            series._set(run._column(name, column))
        streams, n, ts = self._streams, self.n, self._ts
        for i, (series, function, args, kwargs) in enumerate(run.declared):
            stream = streams.get(i)
            if stream is not None:
                stream.advance(n, ts)
            else:
                series._set(run._evaluate(function, args, kwargs))

    def _engine_prices(self) -> k.Prices:
        """Rows ``n_warm:`` of the buffer: engine bar ``i`` reads row ``i`` (views of the buffer)."""
        if self._prices is None:
            w, b = self.n_warm, self._buffer
            ohlc = tuple(b[f][w:] for f in ("open", "high", "low", "close"))
            quotes = tuple(b[f][w:] for f in _QUOTE_FIELDS) if self.has_quotes else ohlc + ohlc
            self._prices = frozen_prices(*ohlc, *quotes)
        return self._prices

    # ------------------------------------------------------------------ one bar
    def step(self, bar: BarEvent, *, next_ts: int | None = None) -> StepOutput:
        """Advance over one closed bar (``next_ts`` is not needed by a class: accepted for the runner)."""
        last = self.last_ts
        if last is not None and bar.ts_ns <= last:
            raise DataError(f"bar at {bar.ts_ns} is not after the previous bar at {last}", field="timestamp")
        cols = self._cols
        pick = lambda a: np.asarray(a, dtype=np.float64)[cols][None]  # noqa: E731
        rows = [pick(bar.open), pick(bar.high), pick(bar.low), pick(bar.close),
                pick(bar.volume) if bar.volume is not None else np.full((1, len(cols)), np.nan)]
        quotes = None
        if self.has_quotes:
            if bar.bid is None or bar.ask is None:
                raise DataError("the session trades on bid/ask quotes but the bar has none", field="bid")
            quotes = [pick(x) for q in (bar.bid, bar.ask) for x in q]
        self._append(np.array([bar.ts_ns], dtype=np.int64), rows, quotes)
        if not self._started:
            self._start()
        else:
            self._rebind()
        t = self.t + 1
        state = self.state
        orders_from, fills_from = int(state.counters[k.C_ORDERS]), int(state.counters[k.C_FILLS])
        self._advance(t, int(bar.ts_ns))
        self.t = t
        state = self.state
        return StepOutput(t, int(bar.ts_ns), orders_from, int(state.counters[k.C_ORDERS]), fills_from,
                          int(state.counters[k.C_FILLS]), np.zeros((0, 6), dtype=np.int64), np.zeros((0, 2)))

    def _advance(self, t: int, ts: int) -> None:
        """Engine bar ``t``, then the strategy's hooks and ``next``."""
        self.driver.advance(t, ts, self._engine_prices(), self.params)
        self.driver.run.t = None

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[str, np.ndarray]:
        """The engine state after the last bar and the strategy's attributes, as arrays."""
        from backforge.live._engine import state_arrays

        out = state_arrays(self.state, bars=self.t + 1)
        out.update({"strategy": np.frombuffer(self._dump(), dtype=np.uint8).copy(),
                    "meta": np.array([self.t, self.n_warm, self.n], dtype=np.int64)})
        return out

    def _dump(self) -> bytes:
        """The strategy's own state (its attributes; views saved as references)."""
        run = self.driver.run
        attributes = {k: v for k, v in vars(self.driver.instance).items() if k != "_run"}
        buffer = io.BytesIO()
        try:
            _Pickler(buffer, run).dump(attributes)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.portfolio.name}'s attributes must pickle to be saved with the session: {exc}",
                              field="strategy") from None
        return buffer.getvalue()

    def restore(self, arrays: dict[str, np.ndarray], history: MarketData) -> None:
        """Load a snapshot; ``history`` holds every bar received up to the snapshot's bar (warm-up included)."""
        from backforge.live._engine import grow_state, state_from_arrays

        t, n_warm, n = (int(x) for x in arrays["meta"])
        if history.n_bars != n:
            raise DataError(f"the feed's history has {history.n_bars} bars up to the snapshot, the session had {n}; "
                            "the data source changed", field="history")
        hist = history.select(self.assets) if tuple(history.assets) != self.assets else history
        self.n = 0
        self._append(hist.timestamps, [getattr(hist, f) for f in _FIELDS],
                     [getattr(q, f) for q in (hist.bid, hist.ask) for f in ("open", "high", "low", "close")]
                     if self.has_quotes else None)
        if n_warm != self.n_warm:
            raise DataError(f"the snapshot has {n_warm} warm-up bars, the feed's history {self.n_warm}", field="history")
        self._prices = None
        if not self._started:
            self._start()
        else:
            self._rebind()
        self.state = grow_state(state_from_arrays(arrays), t + 1)
        self.t = t
        self._load(arrays["strategy"].tobytes())

    def _load(self, saved: bytes) -> None:
        """The strategy's own state from a snapshot, the engine state already restored."""
        attributes = _Unpickler(io.BytesIO(saved), self.driver.run).load()
        vars(self.driver.instance).update(attributes)
        self.driver.seen_fills = int(self.state.counters[k.C_FILLS])
        self.driver.seen_events = int(self.state.counters[k.C_EVENTS])


class CompiledStep(CodeStep):
    """A :func:`~backforge.strategy.compiled.compiled` class stepped one bar at a time: per bar, its own
    compiled loop (:func:`~backforge.strategy.compiled.callback_loop`) over that one bar — the bar step, then
    ``next_nb`` — so the orders go through the code of :func:`~backforge.strategy.compiled.backtest_compiled`.

    ``init`` runs again on the bars received so far at each bar (as the recomputed indicators of a Python
    class: O(bars so far), exact for the causal kernels), and its arrays with a row per bar are cut to the
    traded bars (:func:`~backforge.strategy.compiled.window_user`), as in ``backtest_compiled(data, cls,
    start=s)``. What ``next_nb`` wrote is carried from bar to bar: the rows before the new bar of the
    per-bar arrays, and every other element of ``user`` (scalars, state arrays) as it is after the previous
    bar (``init``'s new value of those is not used). ``user`` is saved with each snapshot."""

    @property
    def streamed(self) -> list[bool]:
        return []  # no self.I(...) declarations: init computes the arrays

    def _attach(self) -> None:
        from backforge.strategy.compiled import callback_loop

        self._loop = callback_loop(self.portfolio.strategy.next_nb)
        self._engine_state = self.sim._state
        self._user: tuple = ()

    @property
    def state(self) -> k.State:
        return self._engine_state

    @state.setter
    def state(self, value: k.State) -> None:
        self._engine_state = value

    def _fresh(self) -> tuple:
        """``init`` on the bars so far, cut to the traded rows."""
        from backforge.strategy.compiled import user_arrays, window_user

        portfolio = self.portfolio
        return window_user(user_arrays(portfolio.strategy, portfolio.params, self.history()), self.n, self.n_warm)

    def _carry(self, fresh: tuple, previous: tuple) -> tuple:
        """``fresh`` with what ``next_nb`` wrote in ``previous`` (the class docstring)."""
        from backforge.strategy.compiled import per_bar

        if not previous:
            return fresh
        if len(previous) != len(fresh):
            raise ConfigError(f"{self.portfolio.name}.init returned {len(fresh)} values, {len(previous)} before",
                              field="init")
        rows = self.n - self.n_warm
        out = []
        for new, old in zip(fresh, previous):
            if not per_bar(new, rows):
                out.append(old)
                continue
            if isinstance(old, np.ndarray) and old.shape[1:] == new.shape[1:] and old.shape[0] <= rows:
                new = np.array(new)  # init's own arrays stay as they were
                new[: old.shape[0]] = old
            out.append(new)
        return tuple(out)

    def _start(self) -> None:
        self._user = self._carry(self._fresh(), self._user)
        self._started = True

    def _rebind(self) -> None:
        self._user = self._carry(self._fresh(), self._user)

    def _advance(self, t: int, ts: int) -> None:
        from backforge.errors import SimulationError

        sim = self.sim
        sim._state, sim._t = self._engine_state, t - 1
        sim._ensure_room()  # the loop's own room test then always passes
        self._engine_state = sim._state
        done = self._loop(self._engine_state, self.params, self._ts[self.n_warm: self.n], self._engine_prices(),
                          self._user, t)
        if done != t + 1:
            raise SimulationError(f"{self.portfolio.name}.next_nb placed more orders on one bar than the record "
                                  f"arrays have room for (bar {t})")

    def _dump(self) -> bytes:
        return pickle.dumps(self._user, protocol=pickle.HIGHEST_PROTOCOL)

    def _load(self, saved: bytes) -> None:
        # the snapshot comes from the session's own state folder (the module docstring)
        self._user = self._carry(self._fresh(), pickle.loads(saved))


def open_code_replay(strategy: type[Strategy] | str | Path, *, data: Any = None, start: Any = None,
                     speed: float | str | None = None, name: str | None = None, **kwargs: Any):
    """``(CodePortfolio, ReplayFeed)`` for a :class:`Strategy` class (or a ``.py`` file defining one: its
    ``universe`` and ``data_spec`` say what to replay without ``data``, as for ``backforge run file.py``).
    ``kwargs`` are the class's parameters and the backtest options."""
    from backforge.live.feeds import ReplayFeed
    from backforge.strategy.code import load_strategy_class

    base = None
    if isinstance(strategy, (str, Path)):
        base = Path(strategy).parent
        strategy = load_strategy_class(strategy, name, compiled=True)
    if data is None or isinstance(data, (str, Path, list, tuple)):
        from backforge.strategy.compiler import load_data
        from backforge.strategy.schema import load_portfolio

        spec = {"name": strategy.__name__, "universe": list(getattr(strategy, "universe", Strategy.universe)),
                "data": dict(getattr(strategy, "data_spec", None) or {}),
                "strategies": [{"name": "data", "action": {"kind": "alert"}}]}
        files = [data] if isinstance(data, (str, Path)) else list(data) if data is not None else None
        market = load_data(load_portfolio(spec), base=base or Path.cwd(), override=[Path(f) for f in files] if files else None)
    else:
        market = MarketData.coerce(data)
    portfolio = CodePortfolio(strategy, tuple(market.assets), **kwargs)
    return portfolio, ReplayFeed(market, start=start if start is not None else 0, speed=speed)


def run_paper_class(strategy: type[Strategy] | str | Path, data: Any = None, *, state: str | Path,
                    start: Any = None, speed: float | str | None = None, broker: Any = None, config: Any = None,
                    force: bool = False, max_bars: int | None = None, **kwargs: Any):
    """Replay ``data`` through a paper session of a :class:`Strategy` class (an in-process
    :class:`~backforge.live.paper.PaperBroker` unless ``broker`` is given) and return the finished (closed)
    runner; ``kwargs`` are the class's parameters and the backtest options. The bars before ``start`` warm
    the strategy up, as ``backtest(data, strategy, start=start)``."""
    from backforge.live.paper import PaperBroker
    from backforge.live.runner import PaperRunner

    portfolio, feed = open_code_replay(strategy, data=data, start=start, speed=speed, **kwargs)
    if broker is None:
        broker = PaperBroker.for_portfolio(portfolio, feed.symbols, has_quotes=feed.has_quotes)
    runner = PaperRunner(portfolio, feed, broker, state, config=config, force=force, reference=feed.data)
    try:
        runner.run(max_bars=max_bars)
    finally:
        runner.close()
    return runner
