"""One strategy step: the compiled strategy runtime advanced one bar at a time.

Per bar, :class:`StrategyStep` does exactly what one iteration of
:func:`backforge.strategy.runtime.run_strategies_nb` does — :func:`~backforge.engine.kernels.process_bar_nb`
(fills, marks, margin, equity) then :func:`~backforge.strategy.runtime.decide_strategies_nb` (conditions,
actions, signal events) — in one compiled call (:func:`step_bar_nb`), on the same arrays. Replaying a data
set bar by bar therefore gives bit-identical orders, fills, equity and signal events to ``backforge run``.

What differs from the backtest is where the per-bar inputs come from:

* **Data-only series** (indicators and data-only conditions, the ``series`` columns of the compiled
  program, and the risk layer's per-bar inputs) stream: :class:`~backforge.strategy.streaming.StreamingEvaluator`
  keeps one state per node (running sums, recursive smoothers, monotonic deques, ring buffers holding the
  window only) and advances it by the new bar — constant work and bounded memory per bar, duration windows
  included, with values bit-identical to the batch kernels (``tests/strategy/test_streaming.py``). Warm-up
  pushes the feed's history through the same states in one block. Nothing can look ahead: a state only ever
  sees the bars received so far.
* **Schedules** are decided from the timestamps received so far; ``month_end`` needs the *next* bar's
  timestamp (the calendar, not its prices), which the feed supplies (:meth:`ReplayFeed.peek_ts`); without
  one the bar counts as the last of its month, as the batch schedule treats the data's last bar.

Examples
--------
>>> import backforge as bf
>>> from backforge.strategy.schema import load_portfolio
>>> p = load_portfolio({"name": "x", "universe": ["AAPL"], "strategies": [{"name": "s",
...     "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 5}}}, "action": {"buy": {}}}]})
>>> data = bf.synth(n_assets=1, years=1, seed=1, assets=("AAPL",))
>>> step = StrategyStep(p, data.rows(0, 20), reference=data)
>>> out = [step.step(bar_event(data, i)) for i in range(20, 30)]
>>> step.t, int(step.state.counters[0]) >= 1
(9, True)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from backforge._jit import njit
from backforge.data.market import MarketData, Quotes
from backforge.engine import kernels as k
from backforge.engine.simulator import frozen_prices
from backforge.errors import ConfigError, DataError, SimulationError, did_you_mean
from backforge.live._engine import (
    VIRTUAL_BARS,
    bounded_history,
    compact_history,
    fresh_state,
    grow_state,
    state_arrays,
    state_from_arrays,
)
from backforge.live.broker import BarEvent
from backforge.strategy import runtime as rt
from backforge.strategy import schema as sc
from backforge.strategy.compiler import compile_portfolio, is_pure, sim_config_of
from backforge.strategy.streaming import STREAMING_KINDS, StreamingEvaluator, WindowStream

__all__ = ["STREAMING_KINDS", "StepOutput", "StrategyStep", "bar_event", "schedule_due", "step_bar_nb"]

_kernel = njit(cache=True, _nrt=False)
NS_PER_DAY = 86_400_000_000_000


@_kernel
def step_bar_nb(state, params, t, ts, bar, timestamps, program, work, audit, peak) -> bool:
    """One iteration of :func:`~backforge.strategy.runtime.run_strategies_nb` at bar ``t`` (``bar``: the bar's
    :class:`~backforge.engine.kernels.Prices` rows; ``program`` / ``work`` / ``audit`` the runtime's bundles;
    ``peak`` is a 1-element array carried between calls). False when a record array overflowed."""
    k.process_bar_nb(state, params, t, ts, bar)
    peak[0] = max(peak[0], state.equity[t])
    rt.decide_strategies_nb(state, t, ts, bar.close, timestamps, program, work, audit, peak[0])
    return state.counters[k.C_OVERFLOW] == 0 and audit.n_signals[1] == 0


def bar_event(data: MarketData, i: int) -> BarEvent:
    """Row ``i`` of ``data`` as a :class:`BarEvent` (copies)."""
    quote = lambda q: tuple(np.array(a[i]) for a in q) if q is not None else None
    return BarEvent(int(data.timestamps[i]), data.open[i].copy(), data.high[i].copy(), data.low[i].copy(),
                    data.close[i].copy(), data.volume[i].copy(), quote(data.bid), quote(data.ask))


def _period_key(kind: str, ts: int) -> int:
    day = ts // NS_PER_DAY
    if kind == "daily":
        return day
    if kind == "weekly":
        return day - (day + 3) % 7  # Monday of the week (1970-01-01 was a Thursday)
    return int(np.datetime64(ts, "ns").astype("datetime64[M]").astype(np.int64))


def schedule_due(kind: Any, index: int, ts: int, prev_ts: int | None, next_ts: int | None) -> bool:
    """Whether a strategy on schedule ``kind`` runs at the bar ``index`` (counted from the first bar of the
    data, warm-up included) stamped ``ts`` — the same answer as the batch schedule of the compiler.

    >>> day = NS_PER_DAY
    >>> schedule_due("month_start", 5, 31 * day, 30 * day, 32 * day), schedule_due("month_end", 5, 30 * day, 29 * day, 31 * day)
    (True, True)
    """
    if isinstance(kind, sc.EveryN):
        return index % kind.every_n_bars == 0
    if kind == "every_bar":
        return True
    if kind == "month_end":
        return next_ts is None or _period_key("month", ts) != _period_key("month", next_ts)
    if prev_ts is None:
        return True
    period = "month" if kind == "month_start" else kind
    return _period_key(period, ts) != _period_key(period, prev_ts)


@dataclass
class StepOutput:
    """What one bar produced: engine order ids created (``orders_from <= id < orders_to``; decided orders
    and bracket children alike), fills ``fills_from <= i < fills_to``, and signal-event rows."""

    t: int
    ts: int
    orders_from: int
    orders_to: int
    fills_from: int
    fills_to: int
    signals: np.ndarray
    signal_leaves: np.ndarray


class StrategyStep:
    """A compiled portfolio stepped one bar at a time (see the module docstring).

    ``history`` holds the warm-up bars (indicators only, no trading); ``reference`` is the data the program is
    compiled against for validation (defaults to ``history``; a replay passes the whole data set — only the
    program's *shape* is taken from it, never a value). ``feed_symbols`` names the columns of the bars passed to
    :meth:`step` (default: the universe).
    """

    def __init__(self, portfolio: sc.Portfolio, history: MarketData, *, reference: MarketData | None = None,
                 fundamentals: Any = None, feed_symbols: tuple[str, ...] | None = None) -> None:
        self.portfolio = portfolio
        self.fundamentals = fundamentals
        reference = reference if reference is not None else history
        if reference.n_bars < 2:
            raise DataError("the strategy step needs at least 2 bars of history (or a replay's data) to compile against")
        self.compiled = cp = compile_portfolio(portfolio, reference, start_bar=0, fundamentals=fundamentals)
        self.assets = tuple(portfolio.universe)
        symbols = tuple(feed_symbols) if feed_symbols is not None else tuple(history.assets)
        missing = [a for a in self.assets if a not in symbols]
        if missing:
            raise ConfigError(f"the feed has no data for {missing[0]!r}{did_you_mean(missing[0], symbols)} "
                              f"(feed symbols: {', '.join(symbols[:12])})", path="universe")
        self.feed_symbols = symbols
        self._cols = np.array([symbols.index(a) for a in self.assets], dtype=np.int64)
        self.sim_config = sim_config_of(portfolio)
        self.has_quotes = bool(reference.has_quotes)
        self.params = self.sim_config.lower(self.assets, has_quotes=self.has_quotes)
        A = len(self.assets)
        self._schedules = [s.schedule for s in portfolio.strategies]
        self.stream = StreamingEvaluator(self.assets, self.assets, fundamentals=fundamentals)
        self._risk_inputs = _risk_inputs(portfolio, cp, reference)
        self.n = 0  # bars received (warm-up and live)
        self._last_ts: int | None = None
        self._prev_ts: int | None = None
        # engine arrays
        self.state = bounded_history(fresh_state(A, cash=self.sim_config.cash,
                                                 record_positions=self.sim_config.record_positions, risk=cp.risk), 0)
        self.memory = cp.memory_init.copy()
        self.inst_order = np.full(cp.instances.shape[0], -1, dtype=np.int64)
        self.peak = np.zeros(1)
        self.t = -1
        # bar timestamps: the kernels read the current bar's only, unless a condition counts days since an order
        # or an entry (then every bar's is kept: 8 bytes a bar)
        self._all_ts = _reads_past_timestamps(cp.ops)
        self._live_ts = np.zeros(1024 if self._all_ts else 1, dtype=np.int64)
        S = cp.series.shape[1]
        self._series_row = np.zeros(S)
        self._schedule_row = np.zeros(len(portfolio.strategies), dtype=np.bool_)
        # every row of these views aliases the one current row: the kernels read row t only
        self._series_view = _aliased(self._series_row)
        self._schedule_view = _aliased(self._schedule_row)
        self._ts_view = _aliased(self._live_ts, cell=True)
        self._stack = np.zeros(cp.max_depth)
        leaf_width = max(cp.max_leaves, 1)
        self._leaves = np.zeros(leaf_width)
        cap = cp.instances.shape[0] + (A + 2) * len(portfolio.strategies) + 16
        self._signals = np.zeros((cap, 6), dtype=np.int64)
        self._signal_leaves = np.full((cap, 1 + leaf_width), np.nan)
        self._n_signals = np.zeros(2, dtype=np.int64)
        self._scratch = (np.zeros(A), np.zeros(A), np.zeros(A, dtype=np.int64))
        self.warm_up(history)
        self.n_warm = self.n

    # ------------------------------------------------------------------ streaming inputs
    def _fields_of(self, data: MarketData) -> dict[str, np.ndarray]:
        hist = data.select(self.assets) if tuple(data.assets) != self.assets else data
        f = {name: np.ascontiguousarray(getattr(hist, name), dtype=np.float64)
             for name in ("open", "high", "low", "close", "volume")}
        if self.has_quotes:
            if hist.bid is None or hist.ask is None:
                raise DataError("the strategy was compiled with bid/ask quotes but the history has none", field="bid")
            f["bid"], f["ask"] = np.ascontiguousarray(hist.bid.close), np.ascontiguousarray(hist.ask.close)
        return f

    def warm_up(self, history: MarketData) -> None:
        """Push warm-up bars (indicators only, no trading) through the streaming states in one block."""
        if history.n_bars == 0:
            return
        ts = np.ascontiguousarray(history.timestamps, dtype=np.int64)
        if self._last_ts is not None and ts[0] <= self._last_ts:
            raise DataError("warm-up history must come after the bars already received", field="timestamp")
        self._push(ts, self._fields_of(history))
        self.n += len(ts)
        self._prev_ts = int(ts[-2]) if len(ts) > 1 else self._last_ts
        self._last_ts = int(ts[-1])

    def _push(self, ts: np.ndarray, fields: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Advance every data-only node (and the risk layer's inputs) over a block; returns the series columns'
        node rows and the risk series rows."""
        ev = self.stream
        ev.push(ts, fields)
        cp = self.compiled
        rows = []
        for key, j in cp.series_keys:
            node, kind = cp.nodes[key]
            rows.append(ev.value(node, key) if kind == "value" else ev.condition(node, key))
        risk_rows = [fn(ev, ts, fields) for fn in self._risk_inputs]
        return rows, risk_rows

    @property
    def last_ts(self) -> int | None:
        return self._last_ts

    # ------------------------------------------------------------------ one bar
    def _evaluate_series(self, t: int, ts: int, fields: dict[str, np.ndarray]) -> None:
        rows, risk_rows = self._push(np.array([ts], dtype=np.int64), fields)
        row = self._series_row
        for i, ((key, j), matrix) in enumerate(zip(self.compiled.series_keys, rows)):
            row[i] = matrix[-1, j]
        if self.compiled.risk is not None:
            book = self.state.risk
            book.day[t] = _session_day(self.portfolio, ts)
            book.window[t] = _trading_window(self.portfolio, ts)
            if risk_rows:
                book.series[t] = np.concatenate([r[-1] for r in risk_rows])

    def _evaluate_schedule(self, next_ts: int | None) -> None:
        g = self.n - 1
        ts, prev = self._last_ts, self._prev_ts
        for s, kind in enumerate(self._schedules):
            self._schedule_row[s] = schedule_due(kind, g, ts, prev, next_ts)

    def _rows(self, bar: BarEvent) -> tuple[np.ndarray, ...]:
        cols = self._cols
        pick = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float64)[cols])
        o, h, l, c = pick(bar.open), pick(bar.high), pick(bar.low), pick(bar.close)
        v = pick(bar.volume) if bar.volume is not None else np.full(len(cols), np.nan)
        if self.has_quotes:
            if bar.bid is None or bar.ask is None:
                raise DataError("the strategy trades on bid/ask quotes but the bar has none", field="bid")
            bid = tuple(pick(x) for x in bar.bid)
            ask = tuple(pick(x) for x in bar.ask)
        else:
            bid = ask = None
        return o, h, l, c, v, bid, ask

    def step(self, bar: BarEvent, *, next_ts: int | None = None) -> StepOutput:
        """Advance over one closed bar (``next_ts``: the next bar's timestamp when the calendar knows it)."""
        last = self.last_ts
        if last is not None and bar.ts_ns <= last:
            raise DataError(f"bar at {bar.ts_ns} is not after the previous bar at {last}", field="timestamp")
        o, h, l, c, v, bid, ask = self._rows(bar)
        fields = {"open": o[None], "high": h[None], "low": l[None], "close": c[None], "volume": v[None]}
        if bid:
            fields["bid"], fields["ask"] = bid[3][None], ask[3][None]
        t = self.t + 1
        if self._all_ts:
            if t >= self._live_ts.shape[0]:
                grown = np.zeros(2 * self._live_ts.shape[0], dtype=np.int64)
                grown[: t] = self._live_ts[: t]
                self._live_ts = grown
            self._live_ts[t] = bar.ts_ns
            timestamps = self._live_ts[: t + 1]
        else:
            self._live_ts[0] = bar.ts_ns
            timestamps = self._ts_view
        self.state = state = grow_state(self.state, t)
        self.n += 1
        self._prev_ts, self._last_ts = self._last_ts, int(bar.ts_ns)
        self._evaluate_series(t, int(bar.ts_ns), fields)
        self._evaluate_schedule(next_ts)
        cp = self.compiled
        series, schedule = self._series_view, self._schedule_view
        quotes = (*bid, *ask) if bid else (o, h, l, c, o, h, l, c)
        orders_from, fills_from = int(state.counters[k.C_ORDERS]), int(state.counters[k.C_FILLS])
        self._n_signals[:] = 0
        targets, scores, chosen = self._scratch
        program = rt.CompiledProgram(schedule, cp.ops, cp.op_values, series, cp.instances, cp.strategies, cp.rb_filter,
                                     cp.rb_sort, cp.rb_weight, cp.rb_fixed)
        work = rt.Workspace(self.memory, self._stack, self._leaves, self.inst_order, targets, scores, chosen)
        audit = rt.Audit(self._signals, self._signal_leaves, self._n_signals)
        ok = step_bar_nb(state, self.params, t, bar.ts_ns, frozen_prices(o, h, l, c, *quotes), timestamps,
                         program, work, audit, self.peak)
        if not ok:
            raise SimulationError("a record array overflowed inside the strategy step (this is a bug)")
        self.t = t
        n_sig = int(self._n_signals[0])
        return StepOutput(t, bar.ts_ns, orders_from, int(state.counters[k.C_ORDERS]), fills_from,
                          int(state.counters[k.C_FILLS]), self._signals[:n_sig].copy(), self._signal_leaves[:n_sig].copy())

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[str, np.ndarray]:
        """The engine state and every indicator's streaming state after the last bar, as arrays."""
        t = self.t
        out = state_arrays(compact_history(self.state), bars=1)  # per-bar history: the store's bars table
        out.update(self.stream.state_arrays())
        last = self._last_ts if self._last_ts is not None else np.iinfo(np.int64).min
        prev = self._prev_ts if self._prev_ts is not None else np.iinfo(np.int64).min
        out.update({"memory": self.memory, "inst_order": self.inst_order, "peak": self.peak,
                    "live_ts": self._live_ts[: t + 1] if self._all_ts else self._live_ts.copy(),
                    "meta": np.array([t, self.n_warm, self.n, last, prev], dtype=np.int64)})
        return out

    def restore(self, arrays: dict[str, np.ndarray], history: MarketData | None = None) -> None:
        """Load a snapshot. ``history`` (every bar received up to the snapshot's bar, warm-up included), when
        given, is checked against the snapshot's bar count: a different count means the data source changed."""
        t, n_warm, n, last, prev = (int(x) for x in arrays["meta"])
        if history is not None and history.n_bars != n:
            raise DataError(f"the feed's history has {history.n_bars} bars up to the snapshot, the session had {n}; "
                            "the data source changed", field="history")
        none = np.iinfo(np.int64).min
        empty = {name: np.zeros((0, len(self.assets))) for name in ("open", "high", "low", "close", "volume")}
        if self.has_quotes:
            empty["bid"] = empty["ask"] = np.zeros((0, len(self.assets)))
        self.stream.restore(arrays, lambda: self._push(np.zeros(0, dtype=np.int64), empty))
        self.n, self.n_warm = n, n_warm
        self._last_ts = None if last == none else last
        self._prev_ts = None if prev == none else prev
        self.state = grow_state(bounded_history(state_from_arrays(arrays), 0), t + 1)  # room before the next step
        self.memory = arrays["memory"].copy()
        self.inst_order = arrays["inst_order"].copy()
        self.peak = arrays["peak"].copy()
        self.t = t
        live = arrays["live_ts"]
        if self._all_ts:
            self._live_ts = np.zeros(max(1024, 2 * len(live)), dtype=np.int64)
            self._live_ts[: len(live)] = live
        else:  # the current bar's only (an older snapshot holds them all: its last)
            self._live_ts[0] = live[-1] if len(live) else 0


def _aliased(row: np.ndarray, *, cell: bool = False) -> np.ndarray:
    """A read-only view of ``VIRTUAL_BARS`` rows that all alias ``row`` (``cell``: ``row`` is one value, the
    view 1-D). Built once: the kernels index it by the bar and read row ``t`` only."""
    shape, strides = ((VIRTUAL_BARS,), (0,)) if cell else ((VIRTUAL_BARS, row.shape[0]), (0, row.strides[0]))
    return np.lib.stride_tricks.as_strided(row, shape=shape, strides=strides, writeable=False)


def _reads_past_timestamps(ops: np.ndarray) -> bool:
    """Whether a compiled program reads the timestamp of a bar before the current one (``days_since_order``,
    ``days_since_entry``: the bar of the last fill or entry)."""
    if ops.shape[0] == 0:
        return False
    state = ops[:, 0] == rt.OP_STATE
    return bool(np.any(state & np.isin(ops[:, 1], (rt.S_DAYS_SINCE_ORDER, rt.S_DAYS_SINCE_ENTRY))))


# ---------------------------------------------------------------------------------------- the risk layer's inputs
def _session_day(portfolio: sc.Portfolio, ts: int) -> int:
    """:func:`~backforge.engine.risk.session_keys` of one timestamp (the batch lowering's ``day``)."""
    from backforge.engine.risk import session_keys

    session = portfolio.risk.session if portfolio.risk is not None else None
    return int(session_keys(np.array([ts], dtype=np.int64), session)[0])


def _trading_window(portfolio: sc.Portfolio, ts: int) -> np.ndarray:
    """:func:`~backforge.engine.risk.window_mask` of one timestamp for every rules row (portfolio, strategies)."""
    from backforge.engine.risk import window_mask

    cfgs = [portfolio.risk, *(s.risk for s in portfolio.strategies)]
    row = np.ones(len(cfgs), dtype=np.uint8)
    for r, cfg in enumerate(cfgs):
        if cfg is not None and cfg.trading_window is not None:
            row[r] = window_mask(np.array([ts], dtype=np.int64), cfg.trading_window)[0]
    return row


def _risk_inputs(portfolio: sc.Portfolio, cp: Any, reference: MarketData) -> list:
    """The sizing-indicator columns of the risk book, in the order of ``compiler._lower_portfolio_risk``, as
    functions ``(evaluator, ts, fields) -> rows [m, k]`` that stream. Volatility targets annualize with the
    bars per year of the compiled data's calendar (``reference``), as the batch lowering does."""
    if cp.risk is None:
        return []
    from backforge._time import periods_per_year
    from backforge.engine import risk as rk

    trailing = hasattr(rk, "trailing_periods_per_year")  # the causal annualization of simulator.realized_volatility
    inputs = []
    for s, strat in enumerate(portfolio.strategies):
        alloc = getattr(strat.action, "allocation", None)
        scope = [cp.portfolio.universe.index(a) for a in (strat.assets or cp.portfolio.universe)]
        if isinstance(alloc, sc.VolatilityTarget):
            fixed = alloc.periods_per_year

            def vol(ev, ts, fields, s=s, window=alloc.window, fixed=fixed, scope=scope):
                close = fields["close"]
                returns = ev._window_state(f"risk:{s}:returns", "pct_change", 1).push(np.ascontiguousarray(close), ts)
                std = ev._window_state(f"risk:{s}:stddev", "stddev", window).push(returns, ts)
                if fixed:
                    scale = np.sqrt(float(fixed))
                elif trailing:
                    scale = np.sqrt(_trailing_ppy(ev, ts))[:, None]
                else:
                    scale = np.sqrt(periods_per_year(reference.timestamps))
                return (std * scale)[:, scope]

            inputs.append(vol)
        elif isinstance(alloc, sc.ExpressionAllocation) and is_pure(alloc.expression):
            inputs.append(lambda ev, ts, fields, node=alloc.expression, scope=scope: ev.value(node)[:, scope])
    return inputs


def _trailing_ppy(ev: StreamingEvaluator, ts: np.ndarray) -> np.ndarray:
    """Streaming :func:`backforge.engine.risk.trailing_periods_per_year` over the bars received (the trailing
    year's timestamps in a deque: bounded by a year of bars)."""
    from backforge.engine.risk import YEAR_NS

    window = ev._states.get("risk:trailing_year")
    if not isinstance(window, _TsDeque):  # new, or an array after a restore (snapshots hold arrays)
        window = ev._states["risk:trailing_year"] = _TsDeque([] if window is None else window.tolist())
    if ev._block.get("risk:trailing_year") is not None:
        return ev._block["risk:trailing_year"]
    out = np.empty(len(ts))
    for i, now in enumerate(ts.tolist()):
        window.append(now)
        while window[0] <= now - YEAR_NS:
            window.popleft()
        span = float(now - window[0])
        out[i] = (len(window) - 1) * float(YEAR_NS) / span if span > 0.0 else np.nan
    ev._block["risk:trailing_year"] = out
    return out


class _TsDeque(deque):
    """A deque of timestamps that snapshots as an int64 array."""

    def __array__(self, dtype=None, copy=None):
        return np.array(list(self), dtype=np.int64)
