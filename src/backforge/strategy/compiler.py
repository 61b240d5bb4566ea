"""Portfolio config → compiled program → engine.

Data-only indicators and conditions are computed once each, vectorized over ``[T, A]`` (column j is the
node's value when the strategy evaluates universe asset j; a node pinned to an asset is that asset's
column broadcast). Anything that depends on position or portfolio state becomes a small postfix
program evaluated inside the compiled loop (``backforge.strategy.runtime``). Indicators are computed on
the whole data set and the backtest starts at ``start``, so warm-up bars are history, not trading bars.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from backforge._jit import frozen
from backforge._time import parse_duration
from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine.config import SimConfig
from backforge.engine.records import SizeType, TimeInForce
from backforge.engine.simulator import _run_with_capacity, new_state, prices_of
from backforge.errors import ConfigError, DataError
from backforge.strategy import indicators as ind
from backforge.strategy import runtime as rt
from backforge.strategy import schema as sc
from backforge.strategy.inputs import (Masks, is_pure, load_data, node_key as _key, require_market_data,
                                      scalar_ns as _scalar_ns, sized_strategies)

__all__ = ["expression_matrix", "CompiledPortfolio", "compile_portfolio", "run_portfolio", "load_data", "is_pure"]

_CMP = {">": rt.OP_GT, "<": rt.OP_LT, ">=": rt.OP_GE, "<=": rt.OP_LE, "==": rt.OP_EQ,
        "crosses_above": rt.OP_CROSS_ABOVE, "crosses_below": rt.OP_CROSS_BELOW}
_ARITH = {"add": rt.OP_ADD, "sub": rt.OP_SUB, "mul": rt.OP_MUL, "div": rt.OP_DIV, "min": rt.OP_MIN, "max": rt.OP_MAX}
_ACTIONS = {"buy": rt.A_BUY, "sell": rt.A_SELL, "close": rt.A_CLOSE, "rebalance": rt.A_REBALANCE, "alert": rt.A_ALERT}


def expression_matrix(expression: Any, data: MarketData, *, path: str = "risk.sizing.expression") -> np.ndarray:
    """``[T, A]`` values on ``data`` (columns in ``data.assets`` order) of a market-data indicator
    expression of the strategy language, as an allocation expression evaluates it — the sizing expression
    of :func:`backforge.from_signals`' ``risk``. Errors name ``path``."""
    inner = "strategies[0].action.allocation.expression"
    try:
        portfolio = sc.load_portfolio({"name": "sizing", "universe": list(data.assets), "strategies": [
            {"name": "size", "action": {"buy": {"allocation": {"type": "expression", "expression": expression}}}}]})
        node = portfolio.strategies[0].action.allocation.expression
        if not is_pure(node):
            raise ConfigError("a sizing expression must use market data only (no position state)", path=inner)
        return np.asarray(_Compiler(portfolio, data).value(node, inner), dtype=np.float64)
    except ConfigError as exc:
        where = exc.path or ""
        if where.startswith(inner):
            where = path + where[len(inner):]
        raise ConfigError(exc.message, path=where or path, field=exc.field) from None


@dataclass
class CompiledPortfolio:
    """Everything the runtime needs, plus the metadata to explain decisions afterwards."""

    portfolio: sc.Portfolio
    data: MarketData
    start: int
    series: np.ndarray
    series_labels: list[str]
    ops: np.ndarray
    op_values: np.ndarray
    instances: np.ndarray
    strategies: np.ndarray  # runtime.strategy_dt [S]
    schedule: np.ndarray
    rb_filter: np.ndarray
    rb_sort: np.ndarray
    rb_weight: np.ndarray
    rb_fixed: np.ndarray
    memory_init: np.ndarray
    max_depth: int
    max_leaves: int
    matrices: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    compile_seconds: float = 0.0
    risk: Any = field(repr=False, default=None)  # a lowered RiskBook over the whole data, or None
    # what each series column is: (node key, column j) and key -> (node, "value" | "condition"); the live
    # strategy step re-evaluates the same nodes bar by bar (backforge.live.step)
    series_keys: list[tuple[str, int]] = field(repr=False, default_factory=list)
    nodes: dict[str, tuple[Any, str]] = field(repr=False, default_factory=dict)


def _address(x: Any) -> int:
    """Where an array's data (or another object) lives: the compiler's cache names its inputs by it."""
    return int(x.ctypes.data) if isinstance(x, np.ndarray) else id(x)


class _Compiler:
    def __init__(self, portfolio: sc.Portfolio, data: MarketData, fundamentals: Any = None,
                 cache: dict | None = None) -> None:
        self.p = portfolio
        self.data = data
        self.assets = tuple(portfolio.universe)
        # the checks that need the data, shared with check_portfolio; the masks of fundamentals and event-only
        # indicators come from this compiler's values, reached through a weak reference (a cycle would keep every
        # matrix alive until a GC pass)
        value = weakref.WeakMethod(self.value)
        self.masks = Masks(portfolio, data, fundamentals, values=lambda node, path: value()(node, path))
        self.cols = self.masks.cols
        self.ts = data.timestamps
        self.matrices: dict[str, np.ndarray] = {}
        # an optimizer reuses indicator matrices across trials on the same data (same buffer, same bars)
        self.shared = cache
        owners = (data.timestamps, data.open, data.high, data.low, data.close, data.volume, fundamentals)
        self.prefix = (":".join(str(_address(x)) for x in owners) + f":{data.n_bars}:{','.join(self.assets)}:"
                       if cache is not None else "")
        if cache is not None:
            # the prefix names the data (its arrays' buffers) and the fundamentals table by address: the cache
            # keeps them alive, so no other data or table can take an address while matrices computed from
            # these are cached (two data sets sharing their timestamps, or one data set with two fundamentals
            # tables, are told apart)
            cache.setdefault("owner:" + self.prefix, owners)
        self.series: list[np.ndarray] = []
        self.series_index: dict[tuple[str, int], int] = {}
        self.labels: list[str] = []
        self.ops: list[tuple[int, int, int, int]] = []
        self.op_values: list[float] = []
        self.memory_init: list[float] = []  # crosses: previous difference (NaN = none yet); held_for: count, start
        self.series_keys: list[tuple[str, int]] = []
        self.nodes: dict[str, tuple[Any, str]] = {}

    # ------------------------------------------------------------------ data-only evaluation
    def field(self, name: str, asset: str | None, path: str) -> np.ndarray:
        return self._scope(self.masks.price_field(name, asset, path), asset, path)

    def _scope(self, arr: np.ndarray, asset: str | None, path: str) -> np.ndarray:
        col = self.masks.column_of(asset, path)
        if col is None:
            return np.ascontiguousarray(arr[:, self.cols])
        return np.ascontiguousarray(np.repeat(arr[:, col][:, None], len(self.assets), axis=1))

    def check_window(self, window: int | str, path: str) -> None:
        self.masks.check_window(window, path)

    def value(self, node: Any, path: str) -> np.ndarray:
        """A data-only indicator as ``[T, A]`` float64 (cached by node)."""
        return self._cached(node, path, self._value)

    def _cached(self, node: Any, path: str, compute) -> np.ndarray:
        key = _key(node)
        self.nodes[key] = (node, "condition" if compute == self._condition else "value")
        cached = self.matrices.get(key)
        if cached is None and self.shared is not None:
            cached = self.shared.get(self.prefix + key)
        if cached is not None:
            self.matrices[key] = cached
            return cached
        out = compute(node, path)
        self.matrices[key] = out
        if self.shared is not None:
            if len(self.shared) > 512:
                self.shared.clear()
                self.shared["owner:" + self.prefix] = self.data.timestamps
            self.shared[self.prefix + key] = out
        return out

    def _value(self, node: Any, path: str) -> np.ndarray:
        ts = self.ts
        if isinstance(node, sc.Price):
            return self.field(node.field, node.asset, path)
        if isinstance(node, sc.Const):
            return np.full((len(ts), len(self.assets)), float(node.value))
        if isinstance(node, sc.Fundamental):
            return self.masks.fundamental_values(node, path)
        if isinstance(node, sc.Windowed):
            self.check_window(node.window, f"{path}.window")
            x = self.value(node.of, f"{path}.of")
            self.masks.check_input(node.window, node.of, f"{path}.window", f"{path}.of")
            fn = {"sma": ind.sma, "ema": ind.ema, "wma": ind.wma, "stddev": ind.stddev, "zscore": ind.zscore,
                  "rolling_max": ind.rolling_max, "rolling_min": ind.rolling_min, "returns": ind.returns,
                  "rate_of_change": ind.rate_of_change, "lag": ind.lag, "pct_change": ind.pct_change,
                  "rsi": ind.rsi}[node.kind]
            return fn(x, ts, node.window)
        if isinstance(node, sc.VolumeAverage):
            self.check_window(node.window, f"{path}.window")
            return ind.volume_average(self.field("volume", node.asset, path), ts, node.window)
        if isinstance(node, sc.BarIndicator):
            self.check_window(node.window, f"{path}.window")
            h, l, c = (self.field(f, node.asset, path) for f in ("high", "low", "close"))
            if node.kind == "atr":
                return ind.atr(h, l, c, ts, node.window)
            return ind.vwap(h, l, c, self.field("volume", node.asset, path), ts, node.window)
        if isinstance(node, sc.MACD):
            self.check_window(node.slow, f"{path}.slow")
            res = ind.macd(self.value(node.of, f"{path}.of"), ts, node.fast, node.slow, node.signal)
            return np.ascontiguousarray({"line": res[0], "signal": res[1], "histogram": res[2]}[node.output])
        if isinstance(node, sc.Bollinger):
            self.check_window(node.window, f"{path}.window")
            res = ind.bollinger(self.value(node.of, f"{path}.of"), ts, node.window, num_std=node.num_std)
            return np.ascontiguousarray(getattr(res, node.output))
        if isinstance(node, sc.Arithmetic):
            vals = [self.value(a, f"{path}.args[{i}]") for i, a in enumerate(node.args)]
            return ind.arithmetic(node.kind, vals)
        if isinstance(node, sc.Unary):
            x = self.value(node.of, f"{path}.of")
            return np.abs(x) if node.kind == "abs" else -x
        if isinstance(node, sc.CrossSection):
            x = self.value(node.of, f"{path}.of")
            return ind.cross_sectional_rank(x) if node.kind == "rank" else ind.cross_sectional_percentile(x)
        if isinstance(node, (sc.BookImbalance, sc.TradeFlow)):
            return self.event_value(node, path)
        self.masks.not_market_data(node, path)

    def event_value(self, node: Any, path: str) -> np.ndarray:
        """Event-only indicators (book imbalance, trade flow); the event compiler
        (``backforge.engine.events.language``) computes them, bars have none."""
        self.masks.no_event_data(node, path)

    def condition(self, node: Any, path: str) -> np.ndarray:
        """A data-only condition as bool ``[T, A]`` (cached)."""
        return self._cached(node, path, self._condition)

    def _condition(self, node: Any, path: str) -> np.ndarray:
        if isinstance(node, sc.Compare):
            a = self.value(node.lhs, f"{path}.lhs")
            b = self.value(node.rhs, f"{path}.rhs")
            with np.errstate(invalid="ignore"):
                if node.op in ("crosses_above", "crosses_below"):
                    return crosses(a - b, above=node.op == "crosses_above")
                return {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal,
                        "==": np.equal}[node.op](a, b)
        if isinstance(node, sc.Logic):
            parts = [self.condition(c, f"{path}.conditions[{i}]") for i, c in enumerate(node.conditions)]
            return np.logical_and.reduce(parts) if node.kind == "all" else np.logical_or.reduce(parts)
        if isinstance(node, sc.Not):
            return ~self.condition(node.condition, f"{path}.condition")
        if isinstance(node, sc.AtLeast):
            parts = [self.condition(c, f"{path}.conditions[{i}]").astype(np.int64) for i, c in enumerate(node.conditions)]
            return np.sum(parts, axis=0) >= node.n
        if isinstance(node, sc.HeldFor):
            self.check_window(node.window, f"{path}.window")
            inner = self.condition(node.condition, f"{path}.condition")
            present = ~np.isnan(self.data.close[:, self.cols])
            bars, ns = (node.window, 0) if isinstance(node.window, int) else (0, parse_duration(node.window))
            return held_for(inner, present, self.ts, bars, ns)
        self.masks.not_a_condition(node, path)

    def schedule(self, kind: Any) -> np.ndarray:
        key = f"schedule:{kind!r}"
        if self.shared is not None and self.prefix + key in self.shared:
            return self.shared[self.prefix + key]
        mask = _schedule(kind, self.ts)
        if self.shared is not None:
            self.shared[self.prefix + key] = mask
        return mask

    # ------------------------------------------------------------------ programs
    def series_col(self, matrix: np.ndarray, key: str, j: int, label: str) -> int:
        idx = self.series_index.get((key, j))
        if idx is None:
            idx = len(self.series)
            self.series.append((matrix, j))  # stacked by stack_series: column runs of one matrix copy as blocks
            self.series_index[(key, j)] = idx
            self.series_keys.append((key, j))
            self.labels.append(label)
        return idx

    def emit(self, code: int, a: int = 0, b: int = 0, c: int = 0, value: float = 0.0) -> None:
        self.ops.append((code, a, b, c))
        self.op_values.append(value)

    def emit_value(self, node: Any, j: int, path: str) -> int:
        """Emit a value; returns the number of state leaves emitted."""
        if is_pure(node):
            if isinstance(node, sc.Const):
                self.emit(rt.OP_CONST, value=float(node.value))
                return 0
            self.masks.check_scope(node, j, path)
            col = self.series_col(self.value(node, path), _key(node), max(j, 0), f"{node.kind}@{self.assets[max(j, 0)]}")
            self.emit(rt.OP_SERIES, col)
            return 0
        if isinstance(node, sc.State):
            asset = self.masks.state_asset(node, j, path)
            self.emit(rt.OP_STATE, sc.STATE_KINDS.index(node.kind), max(asset, 0))
            return 1
        if isinstance(node, sc.Arithmetic):
            leaves = self.emit_value(node.args[0], j, f"{path}.args[0]")
            for i, arg in enumerate(node.args[1:], start=1):
                leaves += self.emit_value(arg, j, f"{path}.args[{i}]")
                self.emit(_ARITH[node.kind])
            return leaves
        if isinstance(node, sc.Unary):
            leaves = self.emit_value(node.of, j, f"{path}.of")
            self.emit(rt.OP_ABS if node.kind == "abs" else rt.OP_NEG)
            return leaves
        self.masks.not_a_program_value(node, path)

    def emit_condition(self, node: Any, j: int, path: str) -> int:
        if is_pure(node):
            self.masks.check_scope(node, j, path, condition=True)
            col = self.series_col(self.condition(node, path), _key(node), max(j, 0), f"{node.kind}@{self.assets[max(j, 0)]}")
            self.emit(rt.OP_BSERIES, col)
            return 0
        if isinstance(node, sc.Compare):
            leaves = self.emit_value(node.lhs, j, f"{path}.lhs") + self.emit_value(node.rhs, j, f"{path}.rhs")
            if node.op in ("crosses_above", "crosses_below"):
                self.emit(_CMP[node.op], len(self.memory_init))
                self.memory_init.append(np.nan)
            else:
                self.emit(_CMP[node.op])
            return leaves
        if isinstance(node, (sc.Logic, sc.AtLeast)):
            leaves = sum(self.emit_condition(c, j, f"{path}.conditions[{i}]") for i, c in enumerate(node.conditions))
            if isinstance(node, sc.AtLeast):
                self.emit(rt.OP_ATLEAST, 0, len(node.conditions), node.n)
            else:
                self.emit(rt.OP_AND if node.kind == "all" else rt.OP_OR, 0, len(node.conditions))
            return leaves
        if isinstance(node, sc.Not):
            leaves = self.emit_condition(node.condition, j, f"{path}.condition")
            self.emit(rt.OP_NOT)
            return leaves
        if isinstance(node, sc.HeldFor):
            leaves = self.emit_condition(node.condition, j, f"{path}.condition")
            bars, ns = (node.window, 0) if isinstance(node.window, int) else (0, parse_duration(node.window))
            self.emit(rt.OP_HELD, len(self.memory_init), bars, value=float(ns))
            self.memory_init.extend([0.0, 0.0])
            return leaves
        self.masks.not_a_condition(node, path)


def crosses(diff: np.ndarray, *, above: bool) -> np.ndarray:
    """True where ``diff`` turns from <= 0 (above) / >= 0 (below) on the asset's previous bar to > 0 / < 0.

    NaN rows (no bar) are skipped: the previous value is the asset's previous existing bar.
    """
    out = np.zeros(diff.shape, dtype=np.bool_)
    _crosses_nb(np.ascontiguousarray(diff), above, out)
    return out


@njit(cache=True)
def _crosses_nb(diff, above, out):
    """Compiled :func:`crosses`; equivalent to comparing each column's non-NaN values with their predecessor."""
    for j in range(diff.shape[1]):
        prev = np.nan
        for t in range(diff.shape[0]):
            v = diff[t, j]
            if np.isnan(v):
                continue
            if not np.isnan(prev):
                out[t, j] = (prev <= 0.0 < v) if above else (prev >= 0.0 > v)
            prev = v


def held_for(inner: np.ndarray, present: np.ndarray, ts: np.ndarray, bars: int, ns: int) -> np.ndarray:
    """True where ``inner`` has been true on each of the asset's last ``bars`` bars, or continuously for
    at least ``ns`` nanoseconds (since the first bar of the current run of trues)."""
    out = np.zeros(inner.shape, dtype=bool)
    for j in range(inner.shape[1]):
        rows = np.flatnonzero(present[:, j])
        v = inner[rows, j]
        run = np.zeros(len(v), dtype=np.int64)
        start = np.zeros(len(v), dtype=np.int64)
        count = 0
        begin = 0
        for i in range(len(v)):
            if v[i]:
                if count == 0:
                    begin = ts[rows[i]]
                count += 1
            else:
                count = 0
            run[i] = count
            start[i] = begin
        ok = run >= bars if bars > 0 else (run > 0) & (ts[rows] - start >= ns)
        out[rows, j] = ok
    return out


def _schedule(kind: Any, ts: np.ndarray) -> np.ndarray:
    import pandas as pd

    if isinstance(kind, sc.EveryN):
        mask = np.zeros(len(ts), dtype=bool)
        mask[:: kind.every_n_bars] = True
        return mask
    if kind == "every_bar":
        return np.ones(len(ts), dtype=bool)
    idx = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    if kind == "daily":
        key = idx.normalize().asi8
    elif kind == "weekly":
        key = (idx.normalize() - pd.to_timedelta(idx.day_of_week, unit="D")).asi8
    else:
        key = (idx.year * 12 + idx.month).to_numpy()
    first = np.ones(len(ts), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    if kind == "month_end":
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = key[:-1] != key[1:]
        return last
    return first


def compile_portfolio(portfolio: sc.Portfolio, data: MarketData, *, start: Any = None, end: Any = None,
                      fundamentals: Any = None, cache: dict | None = None,
                      start_bar: int | None = None) -> CompiledPortfolio:
    """Validate a portfolio against the data and compile it to arrays for the runtime.

    ``start``/``end`` (times: strings, datetimes or int ns) bound the backtest; bars before ``start``
    only warm indicators up. ``start_bar`` gives the first traded bar by position instead. ``cache`` (a
    dict kept by the caller) shares indicator matrices between compilations on the same data.

    Examples
    --------
    >>> import backforge as bf
    >>> from backforge.strategy.schema import load_portfolio
    >>> p = load_portfolio({"name": "x", "universe": ["AAPL"], "strategies": [{"name": "s",
    ...     "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}}, "action": {"buy": {}}}]})
    >>> cp = compile_portfolio(p, bf.synth(n_assets=1, years=1, seed=1))
    >>> cp.series.shape
    (252, 1)
    """
    started = time.perf_counter()
    if end is not None:
        data = data.slice(None, _scalar_ns(end, "end"))
    if tuple(portfolio.universe) != data.assets and set(portfolio.universe) <= set(data.assets):
        data = data.select(portfolio.universe)
    c = _Compiler(portfolio, data, fundamentals, cache)
    A = len(c.assets)
    T = data.n_bars
    if T < 2:
        raise DataError("the data has fewer than 2 bars in the requested period")
    n_s = len(portfolio.strategies)
    strategies = np.zeros(n_s, dtype=rt.strategy_dt)
    for name, (dtype, _) in rt.strategy_dt.fields.items():
        if dtype.kind == "f":
            strategies[name] = np.nan
    rb_filter = np.full((n_s, A), -1, dtype=np.int64)
    rb_sort = np.full((n_s, A), -1, dtype=np.int64)
    rb_weight = np.full((n_s, A), -1, dtype=np.int64)
    rb_fixed = np.zeros((n_s, A))
    schedule = np.zeros((T, n_s), dtype=np.bool_)
    instances: list[list[int]] = []
    max_leaves = 0
    for s, strat in enumerate(portfolio.strategies):
        path = f"strategies[{s}]"
        action = strat.action
        st = strategies[s]  # a view: writes go to the table
        st["action"] = _ACTIONS[action.kind]
        st["has_condition"] = strat.condition is not None
        st["tif"] = TimeInForce.GTC
        schedule[:, s] = c.schedule(strat.schedule)
        scope = [c.assets.index(a) for a in (strat.assets or c.assets)]
        if isinstance(action, sc.Trade):
            st["order_type"] = {"market": k.MARKET, "limit": k.LIMIT, "stop": k.STOP}[action.order_type]
            st["tif"] = TimeInForce.code(action.time_in_force)
            st["gtn_bars"] = action.gtn_bars
            alloc = action.allocation
            plain = isinstance(alloc, sc.Allocation) and alloc.type != "risk"
            # risk-based sizes are computed in the loop (engine.risk.risk_size_nb); the placeholder is unused
            st["size_type"] = SizeType.code(alloc.type) if plain else SizeType.EQUITY_FRACTION
            st["repeat"] = action.repeat
            st["size"] = alloc.value if isinstance(alloc, sc.Allocation) else 0.0
            st["limit_offset"] = action.limit_offset
            st["stop_offset"] = action.stop_offset
            for name, prefix in (("stop_loss", "sl"), ("take_profit", "tp"), ("trailing_stop", "trail")):
                dist = getattr(action, name)
                if dist is not None:
                    st[f"{prefix}_pct"] = dist.percent if dist.percent is not None else np.nan
                    st[f"{prefix}_abs"] = dist.fixed if dist.fixed is not None else np.nan
                    st[f"{prefix}_atr"] = dist.atr if dist.atr is not None else np.nan
        elif isinstance(action, sc.Close):
            st["size"] = action.fraction
        elif isinstance(action, sc.Rebalance):
            st["max_weight"] = action.max_weight
            st["min_trade"] = action.min_trade
            st["gross"] = action.gross
            st["select"] = rt.SEL_TOP if action.top else (rt.SEL_BOTTOM if action.bottom else rt.SEL_ALL)
            st["n_select"] = action.top or action.bottom or A
            apath = f"{path}.action"
            if action.weights == "equal":
                st["weighting"] = rt.W_EQUAL
            elif isinstance(action.weights, dict):
                st["weighting"] = rt.W_FIXED
                for asset, w in action.weights.items():
                    rb_fixed[s, c.masks.universe_asset(asset, f"{apath}.weights.{asset}")] = w
            else:
                st["weighting"] = rt.W_PROPORTIONAL
                node = action.weights.proportional
                require_market_data(node, f"{apath}.weights", "weights")
                m = c.value(node, f"{apath}.weights.proportional")
                key = _key(node)
                rb_weight[s] = [c.series_col(m, key, j, f"weight@{c.assets[j]}") for j in range(A)]
            if action.filter is not None:
                require_market_data(action.filter, f"{apath}.filter", "filter")
                m = c.condition(action.filter, f"{apath}.filter")
                key = _key(action.filter)
                rb_filter[s] = [c.series_col(m, key, j, f"filter@{c.assets[j]}") for j in range(A)]
            if action.sort_by is not None:
                require_market_data(action.sort_by, f"{apath}.sort_by", "sort_by")
                m = c.value(action.sort_by, f"{apath}.sort_by")
                key = _key(action.sort_by)
                rb_sort[s] = [c.series_col(m, key, j, f"sort@{c.assets[j]}") for j in range(A)]
            scope = [-1]
        st["inst_start"] = len(instances)
        for j in scope:
            start_op = len(c.ops)
            leaves = 0
            if strat.condition is not None:
                leaves = c.emit_condition(strat.condition, j, f"{path}.condition")
            atr_cols = [-1, -1, -1]
            if isinstance(action, sc.Trade):
                for n, name in enumerate(("stop_loss", "take_profit", "trailing_stop")):
                    dist = getattr(action, name)
                    if dist is not None and dist.atr is not None:
                        c.check_window(dist.atr_window, f"{path}.action.{name}.atr_window")
                        node = sc.BarIndicator(kind="atr", window=dist.atr_window)
                        atr_cols[n] = c.series_col(c.value(node, f"{path}.action.{name}"), _key(node), j, f"atr@{c.assets[j]}")
            instances.append([s, j, start_op, len(c.ops), leaves, *atr_cols])
            max_leaves = max(max_leaves, leaves)
        st["inst_end"] = len(instances)
    if start_bar is not None:
        lo = int(start_bar)
    else:
        lo = 0 if start is None else int(np.searchsorted(data.timestamps, _scalar_ns(start)))
    if lo >= T - 1:
        raise ConfigError(f"start {start!r} leaves fewer than 2 bars to trade", path="start")
    risk_book = _lower_portfolio_risk(c, portfolio)
    series = stack_series(c.series, T)
    ops = np.array(c.ops, dtype=np.int64).reshape(-1, 4) if c.ops else np.zeros((1, 4), dtype=np.int64)
    depth = max(8, len(c.ops) + 1)
    compiled = CompiledPortfolio(
        portfolio=portfolio, data=data, start=lo, series=series, series_labels=c.labels, ops=ops,
        op_values=np.array(c.op_values or [0.0]), instances=np.array(instances, dtype=np.int64).reshape(-1, rt.N_INSTANCE_FIELDS),
        strategies=strategies, schedule=schedule, rb_filter=rb_filter, rb_sort=rb_sort,
        rb_weight=rb_weight, rb_fixed=rb_fixed, memory_init=np.array(c.memory_init or [0.0]), max_depth=depth, max_leaves=max_leaves,
        matrices=c.matrices, risk=risk_book, series_keys=c.series_keys, nodes=c.nodes,
    )
    compiled.compile_seconds = time.perf_counter() - started
    return compiled


def _lower_portfolio_risk(c: _Compiler, portfolio: sc.Portfolio):
    """The risk rules of the portfolio (row 0) and its strategies (rows 1 + s) with the sizing of every
    buy/sell whose allocation is risk-based, over the whole data (sliced to the backtest when run)."""
    from backforge.engine import risk as rk
    from backforge.engine.simulator import realized_volatility

    sizings = [getattr(s.action, "allocation", None) for s in portfolio.strategies]
    sized = sized_strategies(portfolio)
    strategy_risks = [s.risk for s in portfolio.strategies]
    if not any(sized) and all(r is None or not r.active for r in [portfolio.risk, *strategy_risks]):
        return None
    book = rk.lower_risk(portfolio.risk, c.assets, c.ts, strategy_risks=strategy_risks, cash=portfolio.cash)
    columns: list[np.ndarray] = []
    for s, (strat, alloc) in enumerate(zip(portfolio.strategies, sizings)):
        if not sized[s]:
            continue
        path = f"strategies[{s}].action.allocation"
        row = 1 + s
        scope = [c.assets.index(a) for a in (strat.assets or c.assets)]
        matrix = None
        if isinstance(alloc, sc.Allocation):  # risk at the stop
            rk.set_sizing(book, row, "risk", alloc.value)
        elif isinstance(alloc, sc.VolatilityTarget):
            c.check_window(alloc.window, f"{path}.window")
            matrix = realized_volatility(c.data.close[:, c.cols], c.ts, alloc.window, alloc.periods_per_year)
            rk.set_sizing(book, row, "volatility_target", alloc.target, size_max=alloc.max)
        elif isinstance(alloc, sc.ExpressionAllocation):
            require_market_data(alloc.expression, f"{path}.expression", "allocation")
            matrix = c.value(alloc.expression, f"{path}.expression")
            rk.set_sizing(book, row, "expression", np.nan, size_min=alloc.min, size_max=alloc.max)
        else:
            rk.set_sizing(book, row, "kelly", alloc.fraction, size_max=alloc.max, min_trades=alloc.min_trades,
                          fallback=alloc.fallback)
        if matrix is not None:
            for j in scope:
                book.cols[row, j] = len(columns)
                columns.append(np.asarray(matrix[:, j], dtype=np.float64))
    if columns:
        book = rk.with_series(book, np.column_stack(columns))
    return book


def sim_config_of(portfolio: sc.Portfolio) -> SimConfig:
    """The engine settings of a portfolio (cash and costs)."""
    from pydantic import ValidationError

    from backforge.engine.config import pydantic_to_config_error

    try:
        return SimConfig(cash=portfolio.cash, **portfolio.costs.model_dump())
    except ValidationError as exc:
        raise pydantic_to_config_error(exc, prefix="costs.") from None


def stack_series(columns: list[tuple[np.ndarray, int]], n_bars: int) -> np.ndarray:
    """The ``[T, n]`` float64 series table of a program from its ``(matrix, column)`` sources: a run of
    consecutive columns of one matrix is copied as one block (a rebalance's per-asset columns), the
    same values as stacking the columns one by one.

    Examples
    --------
    >>> m = np.arange(6.0).reshape(2, 3)
    >>> stack_series([(m, 1), (m, 2), (m > 2, 0)], 2).tolist()
    [[1.0, 2.0, 0.0], [4.0, 5.0, 1.0]]
    """
    if not columns:
        return np.zeros((n_bars, 1))
    out = np.empty((n_bars, len(columns)))
    i = 0
    while i < len(columns):
        matrix, j = columns[i]
        run = 1
        while i + run < len(columns) and columns[i + run][0] is matrix and columns[i + run][1] == j + run:
            run += 1
        out[:, i:i + run] = matrix[:, j:j + run]
        i += run
    return out


def initial_capacity(n_bars: int, n_assets: int) -> int:
    """The record capacity a compiled run starts with (doubled by the engine while it overflows)."""
    return 4 * n_bars // 16 + 64 * n_assets + 256


def runtime_inputs(cp: CompiledPortfolio):
    """What :func:`run_compiled` hands the runtime: ``(sim_config, data, params, prices, program, risk)``
    for the traded bars ``cp.start:`` (indicators and the risk book sliced to them). The batched runtime
    (``backforge.strategy.batch``) builds its runs from the same call."""
    sim_cfg = sim_config_of(cp.portfolio)
    data = cp.data.rows(cp.start, cp.data.n_bars)
    lo = cp.start
    params = sim_cfg.lower(data.assets, has_quotes=data.has_quotes)
    prices = prices_of(data)
    program = rt.CompiledProgram(np.ascontiguousarray(cp.schedule[lo:]), cp.ops, cp.op_values, cp.series[lo:],
                                 cp.instances, cp.strategies, cp.rb_filter, cp.rb_sort, cp.rb_weight, cp.rb_fixed)
    book = cp.risk
    if book is not None:
        book = book._replace(day=book.day[lo:], window=np.ascontiguousarray(book.window[lo:]),
                             series=np.ascontiguousarray(book.series[lo:]))
    return sim_cfg, data, params, prices, program, book


def run_compiled(cp: CompiledPortfolio, *, audit: bool = True):
    """Run a compiled portfolio and return a :class:`~backforge.results.result.Result` with signal events
    (``audit=False`` skips building the signal-event table, for optimizers that only score runs)."""
    from backforge.results.result import Result

    sim_cfg, data, params, prices, program, book = runtime_inputs(cp)
    A = data.n_assets
    leaf_width = max(cp.max_leaves, 1)
    n_inst = cp.instances.shape[0]
    captured: list[np.ndarray] = []

    def run(cap: int):
        state = new_state(A, data.n_bars, cash=sim_cfg.cash, order_capacity=cap, record_positions=sim_cfg.record_positions,
                          risk=book)
        work = rt.Workspace(cp.memory_init.copy(), np.zeros(cp.max_depth), np.zeros(leaf_width),
                            np.full(n_inst, -1, dtype=np.int64), np.zeros(A), np.zeros(A), np.zeros(A, dtype=np.int64))
        audit = rt.Audit(np.zeros((cap, 6), dtype=np.int64), np.full((cap, 1 + leaf_width), np.nan),
                         np.zeros(2, dtype=np.int64))
        ok = rt.run_strategies_nb(state, params, frozen(data.timestamps, np.int64), prices, program, work, audit)
        n = audit.n_signals[0]
        captured[:] = [audit.signals[:n], audit.signal_leaves[:n]]
        return state, ok

    state = _run_with_capacity(run, initial_capacity(data.n_bars, A))
    result = Result(data=data, state=state, sim_config=sim_cfg, signal_config=None, mode="strategy",
                    strategy=cp.portfolio.model_dump(mode="json"))
    signals, leaves = captured
    result.signal_events = _signal_frame(cp, data, signals, leaves) if audit else None
    result.compiled = cp
    result.risk_bar_offset = cp.start
    return result


def _signal_frame(cp: CompiledPortfolio, data: MarketData, signals: np.ndarray, leaves: np.ndarray) -> pl.DataFrame:
    # names looked up by index in one gather each (a Python loop per event cost ~90 ms on 190k events)
    names = pl.Series([s.name for s in cp.portfolio.strategies], dtype=pl.String)
    by_code = {code: key for key, code in _ACTIONS.items()}
    kinds = pl.Series([by_code.get(code) for code in range(max(by_code) + 1)], dtype=pl.String)
    asset = signals[:, 3]
    assets = pl.Series(list(data.assets), dtype=pl.String).gather(np.maximum(asset, 0))
    if (asset < 0).any():
        assets = assets.scatter(np.flatnonzero(asset < 0), None)
    return pl.DataFrame({
        "timestamp": pl.Series(signals[:, 1]).cast(pl.Datetime("ns", "UTC")),
        "bar": signals[:, 0] + cp.start,
        "strategy": names.gather(signals[:, 2]),
        "asset": assets,
        "action": kinds.gather(signals[:, 4]),
        "order_id": signals[:, 5],
        "value": leaves[:, 0] if len(leaves) else np.zeros(0),
        # values of the program's state leaves, in condition order (NaN-padded to the widest program)
        "state_leaves": pl.Series(np.ascontiguousarray(leaves[:, 1:]) if len(leaves) else np.zeros((0, leaves.shape[1] - 1))),
    })


def run_portfolio(portfolio: sc.Portfolio | dict | str, data: MarketData | Any, *, start: Any = None, end: Any = None,
                  fundamentals: Any = None):
    """Validate, compile and backtest a portfolio config on ``data``, over ``start``..``end`` (default:
    the config's ``data.start``/``data.end``, as ``backforge run`` does).

    Examples
    --------
    >>> import backforge as bf
    >>> result = run_portfolio({"name": "x", "universe": ["AAPL"], "strategies": [{"name": "s",
    ...     "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_above", "rhs": {"sma": {"window": 30}}},
    ...     "action": {"buy": {}}}]}, bf.synth(n_assets=1, years=2, seed=1))
    >>> result.signal_events["action"].unique().to_list()
    ['buy']
    """
    if not isinstance(portfolio, sc.Portfolio):
        portfolio = sc.load_portfolio(portfolio)
    data = MarketData.coerce(data)  # a pandas / Polars OHLCV frame works too
    start = portfolio.data.start if start is None else start  # the file's period unless one is given
    end = portfolio.data.end if end is None else end
    return run_compiled(compile_portfolio(portfolio, data, start=start, end=end, fundamentals=fundamentals))
