"""One strategy step: the compiled strategy runtime advanced one bar at a time.

Per bar, :class:`StrategyStep` does exactly what one iteration of
:func:`backforge.strategy.runtime.run_strategies_nb` does — :func:`~backforge.engine.kernels.process_bar_nb`
(fills, marks, margin, equity) then :func:`~backforge.strategy.runtime.decide_strategies_nb` (conditions,
actions, signal events) — in one compiled call (:func:`step_bar_nb`), on the same arrays. Replaying a data
set bar by bar therefore gives bit-identical orders, fills, equity and signal events to ``backforge run``.

What differs from the backtest is where the per-bar inputs come from:

* **Data-only series** (indicators and data-only conditions, the ``series`` columns of the compiled
  program) are evaluated at each bar by the compiler's own evaluation code on the bars received so far
  (warm-up history plus live bars) and the last row is taken. Every batch kernel streams forward, so its
  row ``t`` depends only on rows ``<= t``: the value equals the batch value bit for bit, and nothing can
  look ahead. The cost is O(bars so far) per bar, not O(1): the indicator kernels keep their loop state
  in local variables, so they cannot yet be resumed. See :data:`STREAMING_KINDS`.
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

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from backforge.data.market import MarketData, Quotes
from backforge.engine import kernels as k
from backforge.errors import ConfigError, DataError, SimulationError, did_you_mean
from backforge.live._engine import (
    fresh_state,
    grow_state,
    state_arrays,
    state_from_arrays,
)
from backforge.live.broker import BarEvent
from backforge.strategy import runtime as rt
from backforge.strategy import schema as sc
from backforge.strategy.compiler import _Compiler, compile_portfolio, sim_config_of

__all__ = ["STREAMING_KINDS", "StepOutput", "StrategyStep", "bar_event", "schedule_due", "step_bar_nb"]

STREAMING_KINDS: dict[str, str] = {}
"""Indicator kinds evaluated in O(1) per bar (empty: every data-only series is re-evaluated over the bars
received so far, O(bars) per bar, exact)."""

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


class _LiveCompiler(_Compiler):
    """The compiler's data-only evaluation on the bars received so far. Window-length checks are skipped:
    a window longer than the bars so far is simply not ready yet (NaN), as in the batch warm-up."""

    def check_window(self, window: int | str, path: str) -> None:
        return None


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
        # bar buffer (warm-up + live bars), grown by doubling
        self._cap = 0
        self.n = 0
        self._ts = np.zeros(0, dtype=np.int64)
        self._fields: dict[str, np.ndarray] = {}
        self._grow_buffer(max(1024, history.n_bars + 256))
        hist = history.select(self.assets) if tuple(history.assets) != self.assets else history
        self._append_rows(hist.timestamps, hist.open, hist.high, hist.low, hist.close, hist.volume,
                          hist.bid, hist.ask)
        self.n_warm = self.n
        # engine arrays
        self.state = fresh_state(A, cash=self.sim_config.cash, record_positions=self.sim_config.record_positions,
                                 risk=cp.risk)
        self.memory = cp.memory_init.copy()
        self.inst_order = np.full(cp.instances.shape[0], -1, dtype=np.int64)
        self.peak = np.zeros(1)
        self.t = -1
        self._live_ts = np.zeros(1024, dtype=np.int64)
        S = cp.series.shape[1]
        self._series_row = np.zeros(S)
        self._schedule_row = np.zeros(len(portfolio.strategies), dtype=np.bool_)
        self._stack = np.zeros(cp.max_depth)
        leaf_width = max(cp.max_leaves, 1)
        self._leaves = np.zeros(leaf_width)
        cap = cp.instances.shape[0] + (A + 2) * len(portfolio.strategies) + 16
        self._signals = np.zeros((cap, 6), dtype=np.int64)
        self._signal_leaves = np.full((cap, 1 + leaf_width), np.nan)
        self._n_signals = np.zeros(2, dtype=np.int64)
        self._scratch = (np.zeros(A), np.zeros(A), np.zeros(A, dtype=np.int64))

    # ------------------------------------------------------------------ bar buffer
    def _grow_buffer(self, cap: int) -> None:
        A = len(self.assets)
        names = ["open", "high", "low", "close", "volume"]
        if self.has_quotes:
            names += [f"{side}_{f}" for side in ("bid", "ask") for f in ("open", "high", "low", "close")]
        ts = np.zeros(cap, dtype=np.int64)
        ts[: self.n] = self._ts[: self.n]
        self._ts = ts
        for name in names:
            new = np.full((cap, A), np.nan)
            old = self._fields.get(name)
            if old is not None:
                new[: self.n] = old[: self.n]
            self._fields[name] = new
        self._cap = cap

    def _append_rows(self, ts, o, h, l, c, v, bid, ask) -> None:
        m = len(ts)
        if self.n + m > self._cap:
            self._grow_buffer(max(2 * self._cap, self.n + m + 256))
        lo, hi = self.n, self.n + m
        self._ts[lo:hi] = ts
        f = self._fields
        for name, arr in (("open", o), ("high", h), ("low", l), ("close", c), ("volume", v)):
            f[name][lo:hi] = arr
        if self.has_quotes:
            if bid is None or ask is None:
                raise DataError("the strategy was compiled with bid/ask quotes but a bar has none", field="bid")
            for side, q in (("bid", bid), ("ask", ask)):
                for name, arr in zip(("open", "high", "low", "close"), q):
                    f[f"{side}_{name}"][lo:hi] = arr
        self.n = hi

    def history(self) -> MarketData:
        """The bars received so far (warm-up and live) as ``MarketData`` (views, no copy)."""
        n, f = self.n, self._fields
        bid = ask = None
        if self.has_quotes:
            bid, ask = (Quotes(*(f[f"{side}_{x}"][:n] for x in ("open", "high", "low", "close"))) for side in ("bid", "ask"))
        return MarketData(self._ts[:n], f["open"][:n], f["high"][:n], f["low"][:n], f["close"][:n], f["volume"][:n],
                          self.assets, bid, ask)

    @property
    def last_ts(self) -> int | None:
        return int(self._ts[self.n - 1]) if self.n else None

    # ------------------------------------------------------------------ one bar
    def _evaluate_series(self, t: int) -> None:
        cp = self.compiled
        if not cp.series_keys and cp.risk is None:
            return
        evaluator = _LiveCompiler(self.portfolio, self.history(), self.fundamentals)
        if cp.risk is not None:
            # the risk layer's per-bar inputs (session day, trading window, sizing indicators), lowered by the
            # compiler's own code on the bars so far; row t is the last one
            from backforge.strategy.compiler import _lower_portfolio_risk

            now = _lower_portfolio_risk(evaluator, self.portfolio)
            book = self.state.risk
            book.day[t] = now.day[-1]
            book.window[t] = now.window[-1]
            if now.series.shape[0]:
                book.series[t] = now.series[-1]
        row = self._series_row
        for i, (key, j) in enumerate(cp.series_keys):
            node, kind = cp.nodes[key]
            matrix = evaluator.value(node, key) if kind == "value" else evaluator.condition(node, key)
            row[i] = matrix[-1, j]

    def _evaluate_schedule(self, next_ts: int | None) -> None:
        g = self.n - 1
        ts = int(self._ts[g])
        prev = int(self._ts[g - 1]) if g > 0 else None
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
        self._append_rows(np.array([bar.ts_ns]), o[None], h[None], l[None], c[None], v[None],
                          tuple(x[None] for x in bid) if bid else None, tuple(x[None] for x in ask) if ask else None)
        t = self.t + 1
        if t >= self._live_ts.shape[0]:
            grown = np.zeros(2 * self._live_ts.shape[0], dtype=np.int64)
            grown[: t] = self._live_ts[: t]
            self._live_ts = grown
        self._live_ts[t] = bar.ts_ns
        self.state = state = grow_state(self.state, t)
        self._evaluate_series(t)
        self._evaluate_schedule(next_ts)
        cp = self.compiled
        # every row of these views aliases the one current row: the kernels read row t only
        series = np.lib.stride_tricks.as_strided(self._series_row, shape=(t + 1, self._series_row.shape[0]),
                                                 strides=(0, 8), writeable=False)
        schedule = np.lib.stride_tricks.as_strided(self._schedule_row, shape=(t + 1, self._schedule_row.shape[0]),
                                                   strides=(0, 1), writeable=False)
        quotes = (*bid, *ask) if bid else (o, h, l, c, o, h, l, c)
        orders_from, fills_from = int(state.counters[k.C_ORDERS]), int(state.counters[k.C_FILLS])
        self._n_signals[:] = 0
        targets, scores, chosen = self._scratch
        program = rt.CompiledProgram(schedule, cp.ops, cp.op_values, series, cp.instances, cp.strategies, cp.rb_filter,
                                     cp.rb_sort, cp.rb_weight, cp.rb_fixed)
        work = rt.Workspace(self.memory, self._stack, self._leaves, self.inst_order, targets, scores, chosen)
        audit = rt.Audit(self._signals, self._signal_leaves, self._n_signals)
        ok = step_bar_nb(state, self.params, t, bar.ts_ns, k.Prices(o, h, l, c, *quotes), self._live_ts[: t + 1],
                         program, work, audit, self.peak)
        if not ok:
            raise SimulationError("a record array overflowed inside the strategy step (this is a bug)")
        self.t = t
        n_sig = int(self._n_signals[0])
        return StepOutput(t, bar.ts_ns, orders_from, int(state.counters[k.C_ORDERS]), fills_from,
                          int(state.counters[k.C_FILLS]), self._signals[:n_sig].copy(), self._signal_leaves[:n_sig].copy())

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[str, np.ndarray]:
        """The engine state after the last bar, as arrays (the bar buffer is not included: it is rebuilt from
        the feed's history on recovery)."""
        t = self.t
        out = state_arrays(self.state, bars=t + 1)
        out.update({"memory": self.memory, "inst_order": self.inst_order, "peak": self.peak,
                    "live_ts": self._live_ts[: t + 1], "meta": np.array([t, self.n_warm, self.n], dtype=np.int64)})
        return out

    def restore(self, arrays: dict[str, np.ndarray], history: MarketData) -> None:
        """Load a snapshot; ``history`` holds every bar received up to the snapshot's bar (warm-up included)."""
        t, n_warm, n = (int(x) for x in arrays["meta"])
        if history.n_bars != n:
            raise DataError(f"the feed's history has {history.n_bars} bars up to the snapshot, the session had {n}; "
                            "the data source changed", field="history")
        self.n = 0
        hist = history.select(self.assets) if tuple(history.assets) != self.assets else history
        self._append_rows(hist.timestamps, hist.open, hist.high, hist.low, hist.close, hist.volume, hist.bid, hist.ask)
        self.n_warm = n_warm
        self.state = grow_state(state_from_arrays(arrays), t + 1)  # room for kernels called before the next step
        self.memory = arrays["memory"].copy()
        self.inst_order = arrays["inst_order"].copy()
        self.peak = arrays["peak"].copy()
        self.t = t
        live = arrays["live_ts"]
        self._live_ts = np.zeros(max(1024, 2 * len(live)), dtype=np.int64)
        self._live_ts[: len(live)] = live
