"""The batched runtime: one compiled strategy program evaluated for many parameter sets in one pass.

An optimizer's trials differ only in their parameters. Most parameters either change *what is
computed* (a window: another indicator series; a ``top: N``: an integer of the program) or only
*a float of the program* (a stop level, a threshold compared in the loop, a weight). This module
tells the two apart by compiling probe combinations and diffing the compiled arrays, then:

* groups the combinations by their **structural** values and compiles each group once (indicators
  come from the optimizer's cache, computed once per distinct window for the whole batch);
* lowers the **numeric** parameters to *patches*: positions in the float arrays of the program
  (``op_values``, the float fields of ``strategies``, ``rb_fixed``) or in the integer fields of
  ``strategies`` (a ``top: N``) that receive the parameter's value, proven by probing (the value
  lands verbatim at exactly those positions, disjoint between parameters, for every value of the
  parameter used);
* runs the **column** parameters (a window, a threshold inside a data-only condition: parameters that
  change only the *contents* of some indicator columns) on one program too: the columns of each
  value (of each tuple of values, for parameters sharing columns) are appended to the group's
  series table, and each combination's references to them (``rb_filter``/``rb_sort``/``rb_weight``,
  the series operands of ``ops``, the ATR columns of ``instances``) are patched to its own. A value's
  columns come from compiling it once (the group's program with that value), proven to differ from
  the group's program in nothing but those columns. Two components' values are combined without a
  compile of the pair: that rests on the compiler computing each data-only column from its own
  expression alone (the tests check the combinations against ``run_compiled``);
* runs :func:`run_combinations_nb` — the same :func:`~backforge.strategy.runtime.run_strategies_nb`
  step as :func:`~backforge.strategy.compiler.run_compiled`, once per combination on a reset state, on
  one thread per slot (compiled, ``nogil``) — and scores each run in compiled code with the kernels of
  :mod:`backforge.results.metrics` (:func:`~backforge.results.metrics.equity_metrics_1d_nb`,
  :func:`~backforge.results.metrics.trade_pnl_sums_nb`), keeping metrics only (and, on request, the
  per-bar returns of some combinations).

Every combination is bit-identical to ``score_result(run_compiled(compile_portfolio(...)))`` with
the same parameters (tests/strategy/test_batch.py). Whatever cannot be proven (a patch whose value is
transformed, overlapping positions, a value that changes the program's shape, a run that overflows its
records, a non-finite curve) is evaluated by the caller's per-trial path instead: the batch never
silently differs.

Examples
--------
>>> import backforge as bf
>>> raw = {"name": "x", "universe": ["AAPL"], "strategies": [{"name": "in",
...     "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": {"param": "n", "choices": [10, 20]}}}},
...     "action": {"buy": {"stop_loss": {"percent": {"param": "stop", "choices": [0.02, 0.05]}}}}}]}
>>> batch = BatchEvaluator(raw, bf.synth(n_assets=1, years=1, seed=1))
>>> batch.numeric, batch.columns, batch.structural
(['stop'], ['n'], [])
>>> out = batch.evaluate([{"n": 10, "stop": 0.02}, {"n": 10, "stop": 0.05}, {"n": 20, "stop": 0.02}])
>>> [sorted(o.metrics)[:2] for o in out][0], [o.batched for o in out]
(['annual_return', 'annual_volatility'], [True, True, True])
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from backforge._jit import frozen, njit
from backforge.engine import kernels as k
from backforge.engine import risk as rk
from backforge.errors import BackforgeError
from backforge.results.metrics import (
    CAGR, ANNUAL_RETURN, ANNUAL_VOLATILITY, CALMAR, MAX_DRAWDOWN, OMEGA, RECOVERY_FACTOR, SHARPE, SORTINO,
    TOTAL_RETURN, ULCER_INDEX, equity_metrics_1d_nb, ratio_nb, trade_pnl_sums_nb,
)
from backforge.strategy import runtime as rt

__all__ = ["SCORE_METRICS", "BatchEvaluator", "BatchOutcome", "MAX_BATCH_BYTES", "run_combinations_nb"]

SCORE_METRICS = (
    "total_return", "annual_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "omega",
    "max_drawdown", "ulcer_index", "recovery_factor", "trades", "win_rate", "profit_factor", "final_equity",
)
"""The ranking metrics of a trial, in the column order of :func:`run_combinations_nb`'s output
(:func:`backforge.research.optimize.score_result` computes the same figures from a Result)."""
_EQUITY_ROWS = np.array([TOTAL_RETURN, ANNUAL_RETURN, CAGR, ANNUAL_VOLATILITY, SHARPE, SORTINO, CALMAR, OMEGA,
                         MAX_DRAWDOWN, ULCER_INDEX, RECOVERY_FACTOR], dtype=np.int64)
N_SCORES = len(SCORE_METRICS)

MAX_BATCH_BYTES = 256 * 1024**2
"""Most memory one kernel call's outputs (scores, patch values, kept returns) may take; a larger batch
is split into chunks of this size, never allocated whole. The compiled programs kept between batches,
with their tables of indicator columns, stay within the same budget."""

# patch targets: the float words of the program, then its integer words (P_STRATEGY_INT: a strategy's
# integer fields; P_OPS ... P_RB_WEIGHT: references to series columns)
P_OP_VALUES, P_STRATEGY, P_RB_FIXED, P_STRATEGY_INT = 0, 1, 2, 3
P_OPS, P_INSTANCES, P_RB_FILTER, P_RB_SORT, P_RB_WEIGHT = 4, 5, 6, 7, 8
# status of a combination after the kernel
ST_OK, ST_FALLBACK = 0, 1

_STRATEGY_FLOATS = [name for name, (dtype, _) in rt.strategy_dt.fields.items() if dtype.kind == "f"]
_STRATEGY_WIDTH = rt.strategy_dt.itemsize // 8  # every field is 8 bytes (int64 or float64)
_STATE_FIELDS = ("cash", "counters", "totals", "position", "avg_price", "mark", "realized", "entry_fees", "open_bar",
                 "open_ts", "extreme_high", "extreme_low", "last_fill_bar", "last_fill_price", "last_entry_bar",
                 "signal_order", "signal_seen", "orders", "active", "fills", "trades", "events", "equity",
                 "cash_history", "gross_exposure", "net_exposure", "positions", "risk")
"""The State fields :func:`reset_state_nb` accounts for (a test checks this is every field of State)."""


# ============================================================================================ kernels
@njit(cache=True, nogil=True)
def reset_state_nb(state, template, cash: float, work, memory_init, audit) -> None:
    """Put a used account state back to what :func:`~backforge.engine.simulator.new_state` allocates
    (records are cleared up to their counters: nothing beyond them was written), the runtime
    workspace to its initial values and the audit to empty. ``template`` is the risk book the state
    was created from."""
    counters = state.counters
    n_orders = counters[k.C_ORDERS]
    state.cash[0] = cash
    state.totals[:] = 0.0
    state.position[:] = 0.0
    state.avg_price[:] = 0.0
    state.mark[:] = np.nan
    state.realized[:] = 0.0
    state.entry_fees[:] = 0.0
    state.open_bar[:] = -1
    state.open_ts[:] = 0
    state.extreme_high[:] = 0.0
    state.extreme_low[:] = 0.0
    state.last_fill_bar[:] = -1
    state.last_fill_price[:] = np.nan
    state.last_entry_bar[:] = -1
    state.signal_order[:] = -1
    state.signal_seen[:] = -1
    _zero_records_nb(state.orders, n_orders)
    state.active[: min(n_orders, state.active.shape[0])] = 0
    _zero_records_nb(state.fills, counters[k.C_FILLS])
    _zero_records_nb(state.trades, counters[k.C_TRADES])
    _zero_records_nb(state.events, counters[k.C_EVENTS])
    # equity, cash_history, gross/net exposure and positions: every row is written by every bar of a
    # completed run (record_bar_nb), and only completed runs are scored, so they need no reset
    counters[:] = 0
    risk = state.risk
    _zero_records_nb(risk.events, min(risk.n_events[0], risk.events.shape[0]))
    risk.n_events[0] = 0
    risk.on[:] = template.on
    risk.state[:] = template.state
    risk.assets[:] = template.assets
    risk.owner[:] = template.owner
    work.memory[:] = memory_init
    work.stack[:] = 0.0
    work.leaves[:] = 0.0
    work.inst_order[:] = -1
    work.targets[:] = 0.0
    work.scores[:] = 0.0
    work.chosen[:] = 0
    audit.n_signals[:] = 0


@njit(cache=True, nogil=True)
def _zero_records_nb(records, n: int) -> None:
    """Zero the first ``n`` records of a structured array (as ``np.zeros`` left them)."""
    raw = records[:n].view(np.uint8)
    raw[:] = 0


@njit(cache=True, nogil=True)
def score_run_nb(state, cash: float, metric_args, equity_buf, pnl_buf, out) -> bool:
    """The ranking metrics (:data:`SCORE_METRICS`) of a finished run into ``out``; False when the
    curve or a trade's pnl/return is not finite (the per-trial path then reports the error).

    Equivalent to :func:`backforge.research.optimize.score_result` of the run's Result: the equity
    curve starts at the cash on the first bar and goes through
    :func:`~backforge.results.metrics.equity_metrics_1d_nb`; trades through
    :func:`~backforge.results.metrics.trade_pnl_sums_nb`.
    """
    n_bars = state.equity.shape[0]
    equity_buf[0] = cash
    for t in range(n_bars):
        value = state.equity[t]
        if not np.isfinite(value):
            return False
        equity_buf[t + 1] = value
    if not cash > 0.0 or not np.isfinite(cash):
        return False
    m = equity_metrics_1d_nb(equity_buf, metric_args[0], metric_args[1], metric_args[2], metric_args[3],
                             metric_args[4], metric_args[5], metric_args[6], False)
    for i in range(_EQUITY_ROWS.shape[0]):
        out[i] = m[_EQUITY_ROWS[i]]
    n_trades = state.counters[k.C_TRADES]
    for i in range(n_trades):
        pnl = state.trades[i]["pnl"]
        if not np.isfinite(pnl) or not np.isfinite(state.trades[i]["ret"]):
            return False
        pnl_buf[i] = pnl
    n_wins, n_losses, gross_profit, gross_loss = trade_pnl_sums_nb(pnl_buf[:n_trades])
    out[11] = float(n_trades)
    out[12] = n_wins / n_trades if n_trades > 0 else 0.0
    out[13] = ratio_nb(gross_profit, gross_loss, 1.0) if n_trades > 0 else 1.0
    out[14] = equity_buf[n_bars]
    return True


@njit(cache=True, nogil=True)
def run_combinations_nb(combos, state, work, audit, template, cash: float, params, timestamps, prices, program,
                        strategy_floats, rb_fixed_flat, strategy_ints, ops_flat, instances_flat, rb_filter_flat,
                        rb_sort_flat, rb_weight_flat, op_base, strategy_base, rb_fixed_base, memory_init,
                        patch_target, patch_pos, patch_col, values, metric_args, equity_buf, pnl_buf, scores,
                        returns, return_rows, status) -> None:
    """Backtest and score combinations ``combos`` (rows of ``values``) one after the other on one
    account slot.

    For each: the state is reset (:func:`reset_state_nb`), the program's float arrays are restored
    from the group's compiled ones (``*_base``) and patched (``values[c, patch_col[j]]`` written at
    position ``patch_pos[j]`` of the array ``patch_target[j]``: one of the float arrays, or, as an
    integer, ``strategy_ints`` / ``ops_flat`` / ... — every combination writes every integer position,
    so those need no restoring), the program runs through
    :func:`~backforge.strategy.runtime.run_strategies_nb` and is scored (:func:`score_run_nb`) into
    ``scores[c]``; ``returns[return_rows[c]]`` receives its per-bar returns (float32) when
    ``return_rows[c] >= 0``. ``status[c]`` is :data:`ST_FALLBACK` when a record array overflowed or the
    metrics could not be computed. Equivalent to ``run_compiled`` + ``score_result`` per combination.
    """
    op_values = program.op_values
    for i in range(combos.shape[0]):
        c = combos[i]
        reset_state_nb(state, template, cash, work, memory_init, audit)
        op_values[:] = op_base
        strategy_floats[:] = strategy_base
        rb_fixed_flat[:] = rb_fixed_base
        for j in range(patch_pos.shape[0]):
            value = values[c, patch_col[j]]
            target = patch_target[j]
            pos = patch_pos[j]
            if target == P_OP_VALUES:
                op_values[pos] = value
            elif target == P_STRATEGY:
                strategy_floats[pos] = value
            elif target == P_RB_FIXED:
                rb_fixed_flat[pos] = value
            elif target == P_STRATEGY_INT:
                strategy_ints[pos] = np.int64(value)
            elif target == P_OPS:
                ops_flat[pos] = np.int64(value)
            elif target == P_INSTANCES:
                instances_flat[pos] = np.int64(value)
            elif target == P_RB_FILTER:
                rb_filter_flat[pos] = np.int64(value)
            elif target == P_RB_SORT:
                rb_sort_flat[pos] = np.int64(value)
            else:
                rb_weight_flat[pos] = np.int64(value)
        ok = rt.run_strategies_nb(state, params, timestamps, prices, program, work, audit)
        if not ok or state.risk.n_events[0] > state.risk.events.shape[0]:
            status[c] = ST_FALLBACK
            continue
        if not score_run_nb(state, cash, metric_args, equity_buf, pnl_buf, scores[c]):
            status[c] = ST_FALLBACK
            continue
        status[c] = ST_OK
        row = return_rows[c]
        if row >= 0:
            for t in range(equity_buf.shape[0] - 1):
                returns[row, t] = np.float32(equity_buf[t + 1] / equity_buf[t] - 1.0)


# ============================================================================================ analysis
def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.names:
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def _words(cp) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The patchable arrays of a compiled portfolio, by patch target: op_values, the strategies table as
    float64 words, rb_fixed, and the strategies table as int64 words (the same words: which of them are
    floats is :func:`_float_word_mask`'s)."""
    table = np.ascontiguousarray(cp.strategies)
    return (np.asarray(cp.op_values, dtype=np.float64), table.view(np.float64).reshape(-1),
            np.ascontiguousarray(cp.rb_fixed).reshape(-1), table.view(np.int64).reshape(-1))


def _float_word_mask(n_strategies: int) -> np.ndarray:
    """True at the float64 words of a flattened strategies table that are float fields."""
    mask = np.zeros((n_strategies, _STRATEGY_WIDTH), dtype=bool)
    for name in _STRATEGY_FLOATS:
        mask[:, rt.strategy_dt.fields[name][1] // 8] = True
    return mask.reshape(-1)


def _words_equal(a, b) -> bool:
    """True when two compiled portfolios of the same layout hold the same patchable words."""
    return all(_same(x, y) for x, y in zip(_words(a), _words(b)))


def _patched(cp, patches: Sequence[tuple[int, int, float]]):
    """A copy of ``cp``'s patchable arrays (as :func:`_words` returns them) with ``value`` written at each
    (target, position, value): the strategies table is copied once, so its float and int views stay one table."""
    table = np.ascontiguousarray(cp.strategies).copy()
    out = (np.asarray(cp.op_values, dtype=np.float64).copy(), table.view(np.float64).reshape(-1),
           np.ascontiguousarray(cp.rb_fixed).reshape(-1).copy(), table.view(np.int64).reshape(-1))
    for target, pos, value in patches:
        out[target][pos] = value
    return out


def _risk_equal(a, b) -> bool:
    if (a is None) != (b is None):
        return False
    if a is None:
        return True
    return all(_same(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def _layout_equal(a, b, *, series: bool = True) -> bool:
    """True when two compiled portfolios differ at most in their patchable words (and, with
    ``series=False``, in the contents of their series tables, which still have one shape)."""
    from backforge.strategy.compiler import sim_config_of

    if a.start != b.start or a.max_depth != b.max_depth or a.max_leaves != b.max_leaves:
        return False
    if a.data.n_bars != b.data.n_bars or a.data.assets != b.data.assets:
        return False
    if not series and a.series.shape != b.series.shape:
        return False
    names = ("series",) * series + ("schedule", "ops", "instances", "rb_filter", "rb_sort", "rb_weight", "memory_init")
    for name in names:
        if not _same(getattr(a, name), getattr(b, name)):
            return False
    if a.op_values.shape != b.op_values.shape or a.rb_fixed.shape != b.rb_fixed.shape:
        return False
    if a.strategies.shape != b.strategies.shape:
        return False
    if not _risk_equal(a.risk, b.risk):
        return False
    return sim_config_of(a.portfolio) == sim_config_of(b.portfolio)


def _diff_positions(base, other) -> list[tuple[int, int]] | None:
    """(target, position) of the patchable words where ``other`` differs from ``base`` (None when they
    differ anywhere else)."""
    if not _layout_equal(base, other):
        return None
    floats = _float_word_mask(base.strategies.shape[0])
    out = []
    for target, (x, y) in enumerate(zip(_words(base), _words(other))):
        if target == P_STRATEGY_INT:
            differ = (x != y) & ~floats
        else:
            differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
            if target == P_STRATEGY:
                differ &= floats
        out += [(target, int(i)) for i in np.flatnonzero(differ)]
    return out


def _changed_columns(base, other) -> np.ndarray | None:
    """The series columns whose contents differ between two compiled portfolios, when nothing else
    differs (same layout, same patchable words); None otherwise."""
    if not _layout_equal(base, other, series=False) or not _words_equal(base, other):
        return None
    x, y = base.series, other.series
    differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return np.flatnonzero(differ.any(axis=0))


def _same_reads(a, b) -> bool:
    """True when two compiled portfolios read their series tables (of one shape) at the same places: the
    column references of :func:`_column_refs` are then the same."""
    return a.series.shape == b.series.shape and all(
        _same(getattr(a, name), getattr(b, name)) for name in ("ops", "instances", "rb_filter", "rb_sort", "rb_weight"))


def _column_refs(cp) -> dict[int, list[tuple[int, int]]]:
    """Every place a compiled program reads a series column, by column: (patch target, flat position) in
    ``ops`` (the operand of OP_SERIES / OP_BSERIES), ``instances`` (the ATR columns of the stops) and the
    rebalance tables — all the reads of ``program.series`` in :mod:`backforge.strategy.runtime`."""
    refs: dict[int, list[tuple[int, int]]] = {}
    ops = np.asarray(cp.ops)
    width = ops.shape[1] if ops.ndim == 2 else 4
    for i in np.flatnonzero((ops[:, 0] == rt.OP_SERIES) | (ops[:, 0] == rt.OP_BSERIES)) if ops.size else ():
        refs.setdefault(int(ops[i, 1]), []).append((P_OPS, int(i) * width + 1))
    instances = np.asarray(cp.instances)
    for field in (rt.I_SL_ATR, rt.I_TP_ATR, rt.I_TRAIL_ATR):
        if instances.size:
            for i in np.flatnonzero(instances[:, field] >= 0):
                refs.setdefault(int(instances[i, field]), []).append((P_INSTANCES, int(i) * instances.shape[1] + field))
    for target, table in ((P_RB_FILTER, cp.rb_filter), (P_RB_SORT, cp.rb_sort), (P_RB_WEIGHT, cp.rb_weight)):
        flat = np.asarray(table).reshape(-1)
        for pos in np.flatnonzero(flat >= 0):
            refs.setdefault(int(flat[pos]), []).append((target, int(pos)))
    return refs


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


@dataclass
class BatchOutcome:
    """One combination's result: its metrics, per-bar returns (when asked) and whether the batch
    computed it (``batched=False``: the caller must evaluate it on the per-trial path; ``reason`` says why)."""

    params: dict
    metrics: dict
    returns: np.ndarray | None = None
    batched: bool = True
    reason: str | None = None


@dataclass
class _Group:
    key: tuple
    compiled: Any
    patches: list[tuple[int, int, int]]  # (target, position, numeric column)
    values: dict  # the combination the group was compiled from
    columns: bool  # its column parameters are batched (it reads its series where the base program does)
    table: np.ndarray | None = None  # its series table with column blocks appended (see _table)
    width: int = 0  # columns of the table in use
    offsets: dict = field(default_factory=dict)  # (component, value) -> first column of its block in the table
    failed: set = field(default_factory=set)  # (component, value) whose columns could not be proven


@dataclass
class _Component:
    """Column parameters that change the same series columns (one parameter, or several sharing columns)."""

    names: tuple[str, ...]
    changed: frozenset  # every column of the base program they were seen to change
    columns: np.ndarray  # those of them the program reads: the block a value of the component supplies
    refs: list[tuple[int, int, int]]  # (target, position, index into columns): where the program reads them


class BatchEvaluator:
    """Evaluate many parameter combinations of one raw strategy config on one data view in batches.

    ``start``/``end`` are the bar positions of :func:`~backforge.research.optimize.evaluate_params`
    (bars ``start:end`` traded, earlier bars warm indicators up); ``cache`` the indicator cache shared
    with the per-trial path; ``threads`` the account slots run in parallel (default: numba's threads).

    The parameters are classified once, from the combination ``base`` (default: each parameter's
    default): :attr:`numeric` ones are patched into the program, :attr:`columns` ones choose the
    indicator columns the program reads (their values' columns computed once each), :attr:`structural`
    ones group the combinations (one compile per group); :attr:`reasons` says why each structural or
    column one is.
    """

    def __init__(self, raw: dict, data: Any, *, start: int | None = None, end: int | None = None,
                 fundamentals: Any = None, cache: dict | None = None, threads: int | None = None,
                 base: dict | None = None, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        from backforge.research.params import ParameterSpace

        self.raw = raw
        self.space = ParameterSpace.from_config(raw)
        self.view = data if end is None else data.rows(0, end)
        self.start = int(start) if start else None
        self.fundamentals = fundamentals
        self.cache = cache if cache is not None else {}
        self.threads = max(1, int(threads or _numba_threads()))
        self.max_batch_bytes = int(max_batch_bytes)
        self.reasons: dict[str, str] = {}
        self.numeric: list[str] = []
        self.columns: list[str] = []
        self.structural: list[str] = []
        self._components: list[_Component] = []
        self._verified: dict[tuple[str, Any], bool] = {}
        self._kept: dict[tuple, Any] = {}  # compiled groups (with their column tables), oldest first
        self._kept_bytes = 0
        self._slots: dict[tuple, list] = {}  # account slots by shape, reused by every group of that shape
        self._metric_args: dict[tuple, tuple] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._defaults = self.space.defaults()
        self._classify(base or dict(self._defaults))

    # ------------------------------------------------------------------ compile helpers
    def _compile(self, values: dict):
        from backforge.strategy.compiler import compile_portfolio
        from backforge.strategy.schema import load_portfolio

        portfolio = load_portfolio(self.space.instantiate(values))
        return compile_portfolio(portfolio, self.view, start_bar=self.start, fundamentals=self.fundamentals,
                                 cache=self.cache)

    def _try_compile(self, values: dict):
        try:
            return self._compile(values)
        except BackforgeError:
            return None

    def _alternatives(self, values: dict, name: str):
        """Allowed combinations equal to ``values`` but for parameter ``name`` (a few, extremes first)."""
        p = next(q for q in self.space.parameters if q.name == name)
        for v in (p.values[-1], p.values[0], *p.values[1:-1][:6]):
            if v != values[name]:
                candidate = {**values, name: v}
                if self.space.allowed(candidate):
                    yield candidate

    def _compiled_alternatives(self, values: dict, name: str):
        """(combination, compiled program) of the :meth:`_alternatives` that compile."""
        for alt in self._alternatives(values, name):
            other = self._try_compile(alt)
            if other is not None:
                yield alt, other

    def _positions(self, base_cp, values: dict, name: str) -> list[tuple[int, int]] | None:
        """The word positions parameter ``name`` is written to in ``base_cp`` (compiled from ``values``),
        proven by compiling another value (the first alternative that compiles); None when it is not a
        verbatim patch."""
        for alt, other in self._compiled_alternatives(values, name):
            found = _diff_positions(base_cp, other)
            if found is None:
                return None
            x, y = _words(base_cp), _words(other)
            for target, pos in found:
                if x[target][pos] != float(values[name]) or y[target][pos] != float(alt[name]):
                    return None
            return found
        return None

    def _changed_by(self, base_cp, values: dict, name: str) -> frozenset | None:
        """The series columns of ``base_cp`` (compiled from ``values``) another value of ``name`` changes,
        when that is all it changes (checked on up to three alternatives); None otherwise."""
        changed: set[int] = set()
        seen = 0
        for _, other in self._compiled_alternatives(values, name):
            found = _changed_columns(base_cp, other)
            if found is None:
                return None
            changed |= set(found.tolist())
            seen += 1
            if seen == 3:
                break
        return frozenset(changed) if seen else None

    def _classify(self, base: dict) -> None:
        if not self.space.allowed(base):
            base = self.space.sample(1, 0)[0]
        self.base = base
        base_cp = self._compile(base)  # raises the config's own error: nothing to batch
        taken: set[tuple[int, int]] = set()
        positions: dict[str, list[tuple[int, int]]] = {}
        changed: dict[str, frozenset] = {}
        for p in self.space.parameters:
            if len(p.values) < 2:
                self.structural.append(p.name)
                self.reasons[p.name] = "takes a single value"
                continue
            if not all(_is_number(v) for v in p.values):
                self.structural.append(p.name)
                self.reasons[p.name] = "not a number"
                continue
            found = self._positions(base_cp, base, p.name)
            if found is None:
                columns = self._changed_by(base_cp, base, p.name)
                if columns:
                    changed[p.name] = columns
                    continue
                self.structural.append(p.name)
                self.reasons[p.name] = "changes the compiled program beyond a constant or an indicator column"
                continue
            if taken & set(found):
                self.structural.append(p.name)
                self.reasons[p.name] = "shares program positions with another parameter"
                continue
            taken |= set(found)
            positions[p.name] = found
            self.numeric.append(p.name)
        self._base_cp = base_cp
        self._base_positions = positions
        self._counts = {p.name: len(p.values) for p in self.space.parameters}
        refs = _column_refs(base_cp)
        self._reads = set(refs)  # the series columns the program reads
        self._components = _components(changed, [p.name for p in self.space.parameters], refs)
        for comp in self._components:
            self.columns += comp.names
            for name in comp.names:
                others = [n for n in comp.names if n != name]
                self.reasons[name] = ("changes indicator columns only: one program, the columns chosen per "
                                      "combination" + (f" (with {', '.join(others)})" if others else ""))
        self.columns.sort(key=[p.name for p in self.space.parameters].index)

    # ------------------------------------------------------------------ groups
    def _key(self, values: dict, names: Sequence[str]) -> tuple:
        return tuple(values[n] for n in names)

    def _keep(self, key: tuple, item: Any) -> None:
        """Keep a compiled group for the next batches (a genetic search revisits them),
        within the byte budget: the oldest entries are dropped first (and computed again if they come back)."""
        size = _entry_bytes(item)
        self._make_room(size)
        self._kept[key] = item
        self._kept_bytes += size

    def _make_room(self, size: int, spare: Any = None) -> None:
        """Drop the oldest kept groups (but ``spare``) until ``size`` more bytes fit in the budget."""
        for key in list(self._kept):
            if self._kept_bytes + size <= self.max_batch_bytes:
                break
            if self._kept[key] is not spare:
                self._kept_bytes -= _entry_bytes(self._kept.pop(key))

    def _group(self, values: dict, names: Sequence[str], batch_columns: bool) -> _Group | None:
        key = ("group", tuple(names), self._key(values, names))
        if key in self._kept:
            return self._kept[key]
        group = None
        cp = self._try_compile(values)
        if cp is not None:
            patches = self._group_patches(cp, values)
            if patches is not None:
                group = _Group(key, cp, patches, dict(values), batch_columns and _same_reads(self._base_cp, cp))
        self._keep(key, group)
        return group

    def _group_patches(self, cp, values: dict) -> list[tuple[int, int, int]] | None:
        """The patches of a group whose representative ``values`` compiled to ``cp``: the base group's
        positions when ``cp`` has the same layout and those positions hold this combination's values,
        else probed again in this group."""
        if not self.numeric:
            return []  # nothing is patched: the group runs its own program as compiled
        by_name: dict[str, list[tuple[int, int]]] = {}
        if _layout_equal(self._base_cp, cp, series=False):
            patched = _patched(self._base_cp, [(target, pos, float(values[name]))
                                               for name, found in self._base_positions.items() for target, pos in found])
            if all(_same(a, b) for a, b in zip(patched, _words(cp))):
                by_name = dict(self._base_positions)
        if not by_name and self.numeric:
            taken: set[tuple[int, int]] = set()
            for name in self.numeric:
                found = self._positions(cp, values, name)
                if found is None or taken & set(found):
                    return None
                taken |= set(found)
                by_name[name] = found
        return [(t, pos, col) for col, name in enumerate(self.numeric) for t, pos in by_name.get(name, [])]

    def _value_ok(self, name: str, value: Any) -> bool:
        """True when ``value`` of numeric parameter ``name`` is a verbatim patch of the base program (the
        base combination with that value compiles to the base program patched with it)."""
        hit = self._verified.get((name, value))
        if hit is not None:
            return hit
        ok = _is_number(value)
        if ok and value != self.base[name]:
            candidate = {**self.base, name: value}
            cp = self._try_compile(candidate)
            ok = cp is not None and _layout_equal(self._base_cp, cp)
            if ok:
                patched = _patched(self._base_cp, [(target, pos, float(value)) for target, pos in self._base_positions[name]])
                ok = all(_same(a, b) for a, b in zip(patched, _words(cp)))
        self._verified[(name, value)] = ok
        return ok

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, combos: Sequence[dict], *, keep_returns: int = 0) -> list[BatchOutcome]:
        """Metrics of every combination (in order); the per-bar returns of the first ``keep_returns``.

        Combinations the batch cannot prove come back with ``batched=False`` (and no metrics).
        """
        combos = list(combos)
        fulls = [{**self._defaults, **values} for values in combos]
        out: list[BatchOutcome | None] = [None] * len(combos)
        by_group: dict[tuple, list[int]] = {}
        for i, full in enumerate(fulls):
            bad = next((n for n in self.numeric if not self._value_ok(n, full[n])), None)
            if bad is not None:
                out[i] = BatchOutcome(combos[i], {}, None, False, f"value {full[bad]!r} of {bad!r} changes the program")
                continue
            by_group.setdefault(self._key(full, self.structural), []).append(i)
        for members in by_group.values():
            group = self._group(fulls[members[0]], self.structural, True)
            if group is not None and (group.columns or not self.columns):
                members = self._run_group(group, members, combos, fulls, keep_returns, out)  # what it could not run
            # column values whose columns could not be proven (or a group of another layout): one program per
            # value of the column parameters
            self._run_groups(members, combos, fulls, self.structural + self.columns, keep_returns, out)
        return out  # type: ignore[return-value]

    def _run_groups(self, rows: list[int], combos: list[dict], fulls: list[dict], names: list[str],
                    keep_returns: int, out: list[BatchOutcome | None]) -> None:
        """Run ``rows`` in groups of equal ``names`` values, one program each (failures marked in ``out``)."""
        by_key: dict[tuple, list[int]] = {}
        for i in rows:
            by_key.setdefault(self._key(fulls[i], names), []).append(i)
        for members in by_key.values():
            group = self._group(fulls[members[0]], names, False)
            if group is None:
                for i in members:
                    out[i] = BatchOutcome(combos[i], {}, None, False, "this group's program does not compile or "
                                                                       "cannot be patched")
                continue
            self._run_group(group, members, combos, fulls, keep_returns, out)

    def _chunk(self, n_bars: int, keep: bool, n_cols: int) -> int:
        per = 8 * (N_SCORES + max(n_cols, 1) + 2) + (4 * n_bars if keep else 0)
        return max(1, self.max_batch_bytes // per)

    def _block(self, group: _Group, j: int, value: tuple) -> np.ndarray | None:
        """The series columns component ``j`` reads with ``value`` in ``group`` ([T, len(columns)]), from
        compiling the group's combination with that value — proven to differ from the group's program only
        in columns of the component; None when it does not compile or differs elsewhere."""
        comp = self._components[j]
        cp = self._try_compile({**group.values, **dict(zip(comp.names, value))})
        if cp is not None:
            found = _changed_columns(group.compiled, cp)
            if found is not None and set(found.tolist()) & self._reads <= set(comp.columns.tolist()):
                return cp.series[:, comp.columns]
        return None

    def _table(self, group: _Group) -> np.ndarray | None:
        """The group's series table with room for column blocks: its own columns first, then blocks appended
        as combinations need them (``group.offsets``). Sized once to every block the parameter space can
        ask for, within the byte budget (memory is touched only where blocks are written); None when not
        even one combination's blocks fit."""
        if group.table is None:
            base = group.compiled.series
            T, K = base.shape
            most = K + sum(comp.columns.size * math.prod(self._counts[n] for n in comp.names)
                           for comp in self._components)
            width = min(most, max(self.max_batch_bytes - _entry_bytes(group), 0) // (8 * T))
            if width < K + sum(comp.columns.size for comp in self._components):
                return None
            self._make_room(8 * T * width, spare=group)
            group.table = np.empty((T, width))
            group.table[:, :K] = base
            group.table.flags.writeable = base.flags.writeable
            group.width = K
            if self._kept.get(group.key) is group:  # (a group dropped meanwhile is no longer counted)
                self._kept_bytes += group.table.nbytes
        return group.table

    def _place(self, group: _Group, need: list[tuple[int, tuple]]) -> bool | None:
        """Write the blocks ``need`` (component, value) lacks into the group's table. False when one of
        them cannot be proven (nothing written for it); None when the table has no room left (the caller
        runs what it has, empties the table and asks again)."""
        table = group.table
        missing = [(j, v) for j, v in need if (j, v) not in group.offsets]
        if any(key in group.failed for key in missing):
            return False
        width = sum(self._components[j].columns.size for j, _ in missing)
        if group.width + width > table.shape[1]:
            return None
        was = table.flags.writeable
        table.flags.writeable = True
        try:
            for j, v in missing:
                block = self._block(group, j, v)
                if block is None:
                    group.failed.add((j, v))
                    return False
                at = group.width
                table[:, at:at + block.shape[1]] = block
                group.offsets[(j, v)] = at
                group.width += block.shape[1]
        finally:
            table.flags.writeable = was
        return True

    def _run_group(self, group: _Group, rows: list[int], combos: list[dict], fulls: list[dict], keep_returns: int,
                   out: list[BatchOutcome | None]) -> list[int]:
        """Run ``rows`` on ``group``'s program (column parameters patched when the group batches them);
        returns the rows whose indicator columns could not be proven (not run). ``fulls``: the combinations
        with the parameters they leave out at their defaults."""
        from backforge.engine.simulator import new_state
        from backforge.results.metrics import equity_metric_parameters, periods_per_year_for
        from backforge.strategy.compiler import initial_capacity, runtime_inputs

        columns = group.columns and bool(self._components)
        if columns and self._table(group) is None:
            return rows
        cp = group.compiled
        sim_cfg, data, params, prices, program, book = runtime_inputs(cp)
        T, A = data.n_bars, data.n_assets
        ts = frozen(data.timestamps, np.int64)
        span = (T, int(ts[0]), int(ts[-1]))
        metric_args = self._metric_args.get(span)
        if metric_args is None:  # depends on the timestamps only: once per period, not per group
            metric_args = self._metric_args[span] = equity_metric_parameters(
                T + 1, periods_per_year=periods_per_year_for(ts), timestamps_ns=np.concatenate([ts[:1], ts]))
        cap = initial_capacity(T, A)
        template = book if book is not None else rk.empty_risk_book(A)
        leaf_width = max(cp.max_leaves, 1)
        n_slots = max(1, min(self.threads, len(rows)))
        op_base, strategy_base, rb_fixed_base, _ = (np.ascontiguousarray(a) for a in _words(cp))
        # an account slot (state, workspace, audit, buffers) is reset before every run, so groups of the same
        # shape share one; a risk book is part of the state and may differ between groups: then fresh slots
        shape = (T, A, cap, float(sim_cfg.cash), bool(sim_cfg.record_positions), cp.max_depth, leaf_width,
                 cp.instances.shape[0], cp.memory_init.shape)
        accounts = self._slots.setdefault(shape, []) if book is None else []
        while len(accounts) < n_slots:
            state = new_state(A, T, cash=sim_cfg.cash, order_capacity=cap, record_positions=sim_cfg.record_positions,
                              risk=book)
            work = rt.Workspace(cp.memory_init.copy(), np.zeros(cp.max_depth), np.zeros(leaf_width),
                                np.full(cp.instances.shape[0], -1, dtype=np.int64), np.zeros(A), np.zeros(A),
                                np.zeros(A, dtype=np.int64))
            audit = rt.Audit(np.zeros((cap, 6), dtype=np.int64), np.full((cap, 1 + leaf_width), np.nan),
                             np.zeros(2, dtype=np.int64))
            accounts.append((state, work, audit, np.empty(T + 1), np.empty(cap)))
        slots = []
        series = group.table[cp.start:] if columns else program.series
        for state, work, audit, equity_buf, pnl_buf in accounts[:n_slots]:
            p = program._replace(op_values=np.asarray(cp.op_values, dtype=np.float64).copy(),
                                 strategies=cp.strategies.copy(), rb_fixed=np.ascontiguousarray(cp.rb_fixed).copy(),
                                 series=series, ops=cp.ops.copy(), instances=cp.instances.copy(),
                                 rb_filter=cp.rb_filter.copy(), rb_sort=cp.rb_sort.copy(), rb_weight=cp.rb_weight.copy())
            flats = (p.strategies.view(np.float64).reshape(-1), p.rb_fixed.reshape(-1),
                     p.strategies.view(np.int64).reshape(-1), p.ops.reshape(-1), p.instances.reshape(-1),
                     p.rb_filter.reshape(-1), p.rb_sort.reshape(-1), p.rb_weight.reshape(-1))
            slots.append((state, work, audit, p, flats, equity_buf, pnl_buf))
        # patches: the numeric parameters' positions (values columns 0..), then every read of a column block
        n_numeric = len(self.numeric)
        patches = list(group.patches)
        ref_cols = []  # per component: (values columns, index into the component's columns) of its reads
        for comp in self._components if columns else ():
            first = n_numeric + len(patches) - len(group.patches)
            patches += [(target, pos, first + r) for r, (target, pos, _) in enumerate(comp.refs)]
            ref_cols.append((np.arange(first, first + len(comp.refs)),
                             np.array([i for _, _, i in comp.refs], dtype=np.int64)))
        patch_table = np.array(patches, dtype=np.int64).reshape(-1, 3)
        patch_target, patch_pos, patch_col = (np.ascontiguousarray(patch_table[:, i]) for i in range(3))
        n_cols = max(n_numeric + len(patches) - len(group.patches), 1)
        size = self._chunk(T, any(i < keep_returns for i in rows), n_cols)

        def run_part(part: list[int], refs: list[np.ndarray]) -> None:
            # refs: per row, the column each read of a block goes to (one vector per block key, shared)
            n = len(part)
            values = np.zeros((n, n_cols))
            if n_numeric:
                values[:, :n_numeric] = [[float(fulls[i][name]) for name in self.numeric] for i in part]
            if refs:
                values[:, n_numeric:] = np.array(refs)
            return_rows = np.full(n, -1, dtype=np.int64)
            kept = [r for r, i in enumerate(part) if i < keep_returns]
            return_rows[kept] = np.arange(len(kept))
            returns = np.zeros((len(kept), T), dtype=np.float32)
            scores = np.zeros((n, N_SCORES))
            status = np.full(n, ST_FALLBACK, dtype=np.int8)
            assignment = [np.arange(s, n, n_slots, dtype=np.int64) for s in range(n_slots)]

            def run(s: int) -> None:
                state, work, audit, p, flats, equity_buf, pnl_buf = slots[s]
                run_combinations_nb(assignment[s], state, work, audit, template, float(sim_cfg.cash), params, ts,
                                    prices, p, *flats, op_base, strategy_base, rb_fixed_base, cp.memory_init,
                                    patch_target, patch_pos, patch_col, values, metric_args, equity_buf, pnl_buf,
                                    scores, returns, return_rows, status)

            if n_slots == 1:
                run(0)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="backforge-batch")
                list(self._pool.map(run, range(n_slots)))
            for r, i in enumerate(part):
                if status[r] != ST_OK:
                    out[i] = BatchOutcome(combos[i], {}, None, False, "the run overflowed or its curve is not finite")
                    continue
                metrics = dict(zip(SCORE_METRICS, scores[r].tolist()))
                out[i] = BatchOutcome(combos[i], metrics, returns[return_rows[r]].copy() if return_rows[r] >= 0 else None)

        if not columns:
            for lo in range(0, len(rows), size):
                run_part(rows[lo:lo + size], [])
            return []
        # the rows by block key — per component its value tuple, or None for the group's own value — taken key
        # by key (a kernel call then reads few blocks)
        own = [self._key(group.values, comp.names) for comp in self._components]
        by_key: dict[tuple, list[int]] = {}
        for i in rows:
            full = fulls[i]
            key = tuple(None if value == own[j] else value
                        for j, value in enumerate(tuple(full[n] for n in comp.names) for comp in self._components))
            by_key.setdefault(key, []).append(i)
        left: list[int] = []
        part: list[int] = []
        refs: list[np.ndarray] = []
        for key in sorted(by_key, key=repr):
            need = [(j, value) for j, value in enumerate(key) if value is not None]
            placed = self._place(group, need)
            if placed is None:  # the table is full: run what reads it, then start it over
                if part:
                    run_part(part, refs)
                    part, refs = [], []
                group.offsets.clear()
                group.width = group.compiled.series.shape[1]
                placed = self._place(group, need)
            if not placed:
                left += by_key[key]
                continue
            vector = np.concatenate([comp.columns[index] if key[j] is None else group.offsets[(j, key[j])] + index
                                     for j, (comp, (_, index)) in enumerate(zip(self._components, ref_cols))])
            for i in by_key[key]:
                part.append(i)
                refs.append(vector)
                if len(part) == size:
                    run_part(part, refs)
                    part, refs = [], []
        if part:
            run_part(part, refs)
        return left


def _components(changed: dict[str, frozenset], order: list[str], refs: dict[int, list]) -> list[_Component]:
    """The column parameters joined into components: parameters that change a common column share one
    (their values are taken together); each component's block is the columns it changes that the program
    reads (``refs``)."""
    groups: list[tuple[list[str], set[int]]] = []
    for name in order:
        if name not in changed:
            continue
        cols = set(changed[name])
        joined = [g for g in groups if g[1] & cols]
        names = [name]
        for g in joined:
            groups.remove(g)
            names = g[0] + names
            cols |= g[1]
        groups.append((sorted(names, key=order.index), cols))
    out = []
    for names, cols in groups:
        columns = np.array(sorted(c for c in cols if c in refs), dtype=np.int64)
        where = {c: i for i, c in enumerate(columns.tolist())}
        comp_refs = [(target, pos, where[c]) for c in columns.tolist() for target, pos in refs[c]]
        out.append(_Component(tuple(names), frozenset(cols), columns, comp_refs))
    return out


def _entry_bytes(item: Any) -> int:
    """Memory a kept group holds (its program's series and schedule tables, and its column table, dominate)."""
    if item is None:
        return 0
    cp = item.compiled
    table = item.table.nbytes if item.table is not None else 0
    return int(cp.series.nbytes + cp.schedule.nbytes + cp.ops.nbytes + cp.op_values.nbytes + table)


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())

