"""Compiled evaluation of strategy programs inside the simulation loop.

The compiler (``backforge.strategy.compiler``) turns a validated portfolio into arrays:

* ``series`` ``[T, S]`` float64 — every data-only indicator and condition, computed once, vectorized
  (conditions stored as 1.0 / 0.0);
* ``ops`` ``[N, 4]`` int64 + ``op_values`` ``[N]`` float64 — postfix programs for the conditions that
  depend on position/portfolio state, one per (strategy, asset) *instance*;
* ``instances`` ``[I, K]`` int64 and ``strategies`` (a :data:`strategy_dt` record per strategy) — what
  to do when a program is true.

They travel as three bundles: :class:`CompiledProgram` (read-only), :class:`Workspace` (scratch) and
:class:`Audit` (the signal-event records), next to the engine's ``State``, ``Params`` and ``Prices``.

Each bar, after the account step, :func:`decide_strategies_nb` evaluates every scheduled instance
and submits orders through the engine's ``submit_order_nb``; every firing leaves a signal-event record
with the values of the program's state leaves (the audit trail).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from backforge._jit import njit
from backforge.engine import kernels as k
from backforge.engine import risk as rk

kernel = njit(_nrt=False)
inline_kernel = njit(_nrt=False, inline="always")

# opcodes
OP_SERIES, OP_CONST, OP_STATE = 0, 1, 2
OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MIN, OP_MAX, OP_ABS, OP_NEG = 3, 4, 5, 6, 7, 8, 9, 10
OP_GT, OP_LT, OP_GE, OP_LE, OP_EQ, OP_CROSS_ABOVE, OP_CROSS_BELOW = 11, 12, 13, 14, 15, 16, 17
OP_AND, OP_OR, OP_NOT, OP_ATLEAST, OP_HELD, OP_BSERIES = 18, 19, 20, 21, 22, 23

# state kinds (order of schema.STATE_KINDS)
S_POSITION_QTY, S_POSITION_WEIGHT, S_UNREALIZED, S_LAST_ORDER_PRICE, S_BARS_SINCE_ORDER = 0, 1, 2, 3, 4
S_DAYS_SINCE_ORDER, S_BARS_SINCE_ENTRY, S_DAYS_SINCE_ENTRY, S_PORTFOLIO_VALUE, S_DRAWDOWN = 5, 6, 7, 8, 9

# instances[i, ...]
I_STRATEGY, I_ASSET, I_PROG_START, I_PROG_END, I_LEAF_COUNT, I_SL_ATR, I_TP_ATR, I_TRAIL_ATR = 0, 1, 2, 3, 4, 5, 6, 7
N_INSTANCE_FIELDS = 8
# strategy actions (strategy_dt["action"])
A_BUY, A_SELL, A_CLOSE, A_REBALANCE, A_ALERT = 0, 1, 2, 3, 4
# rebalance weighting / selection
W_EQUAL, W_FIXED, W_PROPORTIONAL = 0, 1, 2
SEL_ALL, SEL_TOP, SEL_BOTTOM = 0, 1, 2

NS_PER_DAY = 86_400_000_000_000.0

strategy_dt = np.dtype(
    [
        ("action", np.int64),  # A_BUY, A_SELL, A_CLOSE, A_REBALANCE, A_ALERT
        ("order_type", np.int64),  # engine order type of a buy/sell (market, limit, stop)
        ("tif", np.int64),
        ("gtn_bars", np.int64),
        ("size_type", np.int64),
        ("repeat", np.int64),  # 1: act again while already positioned that way
        ("inst_start", np.int64),  # the strategy's instances are rows inst_start..inst_end - 1
        ("inst_end", np.int64),
        ("has_condition", np.int64),
        ("select", np.int64),  # rebalance: SEL_ALL, SEL_TOP, SEL_BOTTOM
        ("n_select", np.int64),
        ("weighting", np.int64),  # rebalance: W_EQUAL, W_FIXED, W_PROPORTIONAL
        ("size", np.float64),  # allocation value (buy/sell), fraction (close)
        ("limit_offset", np.float64),
        ("stop_offset", np.float64),
        ("sl_pct", np.float64),
        ("sl_abs", np.float64),
        ("sl_atr", np.float64),
        ("tp_pct", np.float64),
        ("tp_abs", np.float64),
        ("tp_atr", np.float64),
        ("trail_pct", np.float64),
        ("trail_abs", np.float64),
        ("trail_atr", np.float64),
        ("max_weight", np.float64),  # rebalance
        ("min_trade", np.float64),
        ("gross", np.float64),
    ],
    align=True,
)
"""One compiled strategy: what to do when its condition is true (written by
:func:`backforge.strategy.compiler.compile_portfolio`; unused float fields are NaN, unused ints 0)."""


class CompiledProgram(NamedTuple):
    """The read-only arrays of a compiled portfolio, as the kernels take them (``T`` bars from the
    start bar, ``S`` strategies, ``I`` instances, ``A`` assets)."""

    schedule: np.ndarray  # bool [T, S]: strategy s is evaluated at bar t
    ops: np.ndarray  # int64 [N, 4]: postfix programs (opcode, operand, extra, extra)
    op_values: np.ndarray  # float64 [N]: constants of OP_CONST / OP_HELD
    series: np.ndarray  # float64 [T, K]: data-only indicators and conditions
    instances: np.ndarray  # int64 [I, N_INSTANCE_FIELDS]: (strategy, asset) programs
    strategies: np.ndarray  # strategy_dt [S]
    rb_filter: np.ndarray  # int64 [S, A]: series column of the rebalance filter (-1: none)
    rb_sort: np.ndarray  # int64 [S, A]: series column of the rebalance score (-1: none)
    rb_weight: np.ndarray  # int64 [S, A]: series column of proportional weights (-1: none)
    rb_fixed: np.ndarray  # float64 [S, A]: fixed rebalance weights


class Workspace(NamedTuple):
    """Scratch arrays the runtime mutates (allocated per run, never inside a kernel)."""

    memory: np.ndarray  # float64: crossing / held-for memory of the programs
    stack: np.ndarray  # float64 [max depth]: evaluation stack
    leaves: np.ndarray  # float64 [leaf width]: state-leaf values of the last evaluation
    inst_order: np.ndarray  # int64 [I]: last order of each instance (-1: none)
    targets: np.ndarray  # float64 [A]: rebalance target weights
    scores: np.ndarray  # float64 [A]: rebalance scores
    chosen: np.ndarray  # int64 [A]: rebalance selection


class Audit(NamedTuple):
    """The signal-event records: one row per firing (or rebalance order)."""

    signals: np.ndarray  # int64 [capacity, 6]: bar, ts, strategy, asset (-1 portfolio), action, order id
    signal_leaves: np.ndarray  # float64 [capacity, 1 + leaf width]: value, then the state leaves
    n_signals: np.ndarray  # int64 [2]: rows written, overflow flag


@inline_kernel
def state_value_nb(state, kind: int, a: int, t: int, timestamps, peak: float) -> float:
    """The value of a state indicator for asset ``a`` after bar ``t`` was processed."""
    if kind == S_PORTFOLIO_VALUE or kind == S_DRAWDOWN or kind == S_POSITION_WEIGHT:
        equity = state.equity[t]
        if kind == S_PORTFOLIO_VALUE:
            return equity
        if kind == S_DRAWDOWN:
            return equity / peak - 1.0 if peak > 0.0 else 0.0
        return state.position[a] * state.mark[a] / equity if equity != 0.0 else 0.0
    if kind == S_POSITION_QTY:
        return state.position[a]
    if kind == S_UNREALIZED:
        pos = state.position[a]
        if pos == 0.0:
            return 0.0
        sign = 1.0 if pos > 0.0 else -1.0
        return sign * (state.mark[a] / state.avg_price[a] - 1.0)
    if kind == S_LAST_ORDER_PRICE:
        return state.last_fill_price[a]
    if kind == S_BARS_SINCE_ORDER or kind == S_DAYS_SINCE_ORDER:
        last = state.last_fill_bar[a]
    else:
        last = state.last_entry_bar[a]
    if last < 0:
        return np.inf
    if kind == S_BARS_SINCE_ORDER or kind == S_BARS_SINCE_ENTRY:
        return float(t - last)
    return (timestamps[t] - timestamps[last]) / NS_PER_DAY


@inline_kernel
def evaluate_nb(state, ops, op_values, series, memory, stack, leaves, start: int, end: int, t: int,
                timestamps, peak: float) -> bool:
    """Run the postfix program ``ops[start:end]`` at bar ``t``; state leaves are written to ``leaves``."""
    sp = 0
    n_leaf = 0
    for i in range(start, end):
        code = ops[i, 0]
        x = ops[i, 1]
        if code == OP_SERIES:
            stack[sp] = series[t, x]
            sp += 1
        elif code == OP_BSERIES:
            stack[sp] = 1.0 if series[t, x] == 1.0 else 0.0
            sp += 1
        elif code == OP_CONST:
            stack[sp] = op_values[i]
            sp += 1
        elif code == OP_STATE:
            value = state_value_nb(state, x, ops[i, 2], t, timestamps, peak)
            stack[sp] = value
            leaves[n_leaf] = value
            n_leaf += 1
            sp += 1
        elif code <= OP_MAX:
            b = stack[sp - 1]
            a = stack[sp - 2]
            sp -= 1
            if code == OP_ADD:
                r = a + b
            elif code == OP_SUB:
                r = a - b
            elif code == OP_MUL:
                r = a * b
            elif code == OP_DIV:
                r = a / b if b != 0.0 else np.nan
            elif code == OP_MIN:
                r = min(a, b)
            else:
                r = max(a, b)
            stack[sp - 1] = r
        elif code == OP_ABS:
            stack[sp - 1] = abs(stack[sp - 1])
        elif code == OP_NEG:
            stack[sp - 1] = -stack[sp - 1]
        elif code <= OP_EQ:
            b = stack[sp - 1]
            a = stack[sp - 2]
            sp -= 1
            if code == OP_GT:
                r = a > b
            elif code == OP_LT:
                r = a < b
            elif code == OP_GE:
                r = a >= b
            elif code == OP_LE:
                r = a <= b
            else:
                r = a == b
            stack[sp - 1] = 1.0 if r else 0.0
        elif code == OP_CROSS_ABOVE or code == OP_CROSS_BELOW:
            b = stack[sp - 1]
            a = stack[sp - 2]
            sp -= 1
            diff = a - b
            prev = memory[x]
            fired = False
            if not np.isnan(diff) and not np.isnan(prev):
                fired = (prev <= 0.0 < diff) if code == OP_CROSS_ABOVE else (prev >= 0.0 > diff)
            if not np.isnan(diff):
                memory[x] = diff
            stack[sp - 1] = 1.0 if fired else 0.0
        elif code == OP_AND or code == OP_OR:
            n = ops[i, 2]
            count = 0
            for j in range(n):
                if stack[sp - 1 - j] == 1.0:
                    count += 1
            sp -= n - 1
            if code == OP_AND:
                stack[sp - 1] = 1.0 if count == n else 0.0
            else:
                stack[sp - 1] = 1.0 if count > 0 else 0.0
        elif code == OP_NOT:
            stack[sp - 1] = 0.0 if stack[sp - 1] == 1.0 else 1.0
        elif code == OP_ATLEAST:
            n = ops[i, 2]
            need = ops[i, 3]
            count = 0
            for j in range(n):
                if stack[sp - 1 - j] == 1.0:
                    count += 1
            sp -= n - 1
            stack[sp - 1] = 1.0 if count >= need else 0.0
        elif code == OP_HELD:
            # memory[x]: consecutive true evaluations; memory[x + 1]: timestamp the run started
            if stack[sp - 1] == 1.0:
                if memory[x] == 0.0:
                    memory[x + 1] = timestamps[t]
                memory[x] += 1.0
                bars = ops[i, 2]
                if bars > 0:
                    ok = memory[x] >= bars
                else:
                    ok = timestamps[t] - memory[x + 1] >= op_values[i]
                stack[sp - 1] = 1.0 if ok else 0.0
            else:
                memory[x] = 0.0
                stack[sp - 1] = 0.0
    return stack[0] == 1.0


@kernel
def record_signal_nb(audit: Audit, t: int, ts: int, strategy: int, asset: int, action: int, order_id: int,
                     value: float, leaves, n_leaves: int) -> None:
    """Append one signal event (and its state-leaf values) to the audit arrays."""
    signals = audit.signals
    signal_leaves = audit.signal_leaves
    n = audit.n_signals[0]
    if n >= signals.shape[0]:
        audit.n_signals[1] = 1  # overflow
        return
    signals[n, 0] = t
    signals[n, 1] = ts
    signals[n, 2] = strategy
    signals[n, 3] = asset
    signals[n, 4] = action
    signals[n, 5] = order_id
    signal_leaves[n, 0] = value
    leaf_width = signal_leaves.shape[1] - 1
    for j in range(min(n_leaves, leaf_width)):
        signal_leaves[n, 1 + j] = leaves[j]
    audit.n_signals[0] = n + 1


@kernel
def trade_nb(state, s: int, inst: int, a: int, t: int, ts: int, close: float, strategies, instances, series,
             inst_order) -> int:
    """Submit the buy/sell/close order of instance ``inst``; returns the order id (-1 when skipped)."""
    strategy = strategies[s]
    action = strategy["action"]
    pos = state.position[a]
    if action == A_CLOSE:
        if pos == 0.0:
            return -1
        if state.risk.on[0] != 0:
            rk.risk_count_order_nb(state.risk, s + 1)
        return k.submit_order_nb(state, t, ts, a, -1 if pos > 0.0 else 1, k.MARKET, k.POSITION_FRACTION,
                                 strategy["size"], np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan,
                                 np.nan, strategy["tif"], strategy["gtn_bars"], k.EXIT, -1, -1, 0, s, k.R_SIGNAL)
    side = 1 if action == A_BUY else -1
    if strategy["repeat"] == 0:
        if pos * side > 0.0:
            return -1
        working = inst_order[inst]
        if working >= 0:
            status = state.orders[working]["status"]
            if status == k.PENDING or status == k.TRIGGERED:
                return -1
    order_type = strategy["order_type"]
    limit = np.nan
    stop = np.nan
    if order_type == k.LIMIT:
        limit = close * (1.0 - side * strategy["limit_offset"])
    elif order_type == k.STOP:
        stop = close * (1.0 + side * strategy["stop_offset"])
    sl_abs = strategy["sl_abs"]
    if instances[inst, I_SL_ATR] >= 0:
        sl_abs = strategy["sl_atr"] * series[t, instances[inst, I_SL_ATR]]
    tp_abs = strategy["tp_abs"]
    if instances[inst, I_TP_ATR] >= 0:
        tp_abs = strategy["tp_atr"] * series[t, instances[inst, I_TP_ATR]]
    trail_abs = strategy["trail_abs"]
    if instances[inst, I_TRAIL_ATR] >= 0:
        trail_abs = strategy["trail_atr"] * series[t, instances[inst, I_TRAIL_ATR]]
    size_type = strategy["size_type"]
    size = strategy["size"]
    if state.risk.on[0] != 0:
        size_type, size, sl_abs = k.risk_entry_order_nb(state, s + 1, a, t, ts, size_type, size, strategy["sl_pct"],
                                                        sl_abs)
        if size_type < 0:
            if pos * side >= 0.0:
                return -1
            # blocked while holding the other way: only the closing part goes out
            rk.risk_count_order_nb(state.risk, s + 1)
            oid = k.submit_order_nb(state, t, ts, a, side, k.MARKET, k.POSITION_FRACTION, 1.0, np.nan, np.nan, np.nan,
                                    np.nan, np.nan, np.nan, np.nan, np.nan, strategy["tif"], strategy["gtn_bars"],
                                    k.EXIT, -1, -1, 0, s, k.R_RISK)
            inst_order[inst] = oid
            return oid
        rk.risk_count_order_nb(state.risk, s + 1)
    oid = k.submit_order_nb(state, t, ts, a, side, order_type, size_type, size,
                            limit, stop, strategy["sl_pct"], sl_abs, strategy["tp_pct"], tp_abs,
                            strategy["trail_pct"], trail_abs, strategy["tif"], strategy["gtn_bars"],
                            k.ENTRY, -1, -1, 0, s, k.R_SIGNAL)
    inst_order[inst] = oid
    return oid


@kernel
def rebalance_nb(state, s: int, t: int, ts: int, c, program: CompiledProgram, work: Workspace, audit: Audit) -> None:
    """Compute target weights for the universe and submit target-fraction orders (sells first)."""
    strategy = program.strategies[s]
    series = program.series
    rb_filter = program.rb_filter
    rb_sort = program.rb_sort
    rb_weight = program.rb_weight
    rb_fixed = program.rb_fixed
    targets = work.targets
    scores = work.scores
    chosen = work.chosen
    n_assets = c.shape[0]
    selection = strategy["select"]
    n_select = strategy["n_select"]
    weighting = strategy["weighting"]
    count = 0
    for a in range(n_assets):
        chosen[a] = 0
        targets[a] = 0.0
        ok = not np.isnan(c[a])
        if ok and rb_filter[s, a] >= 0:
            ok = series[t, rb_filter[s, a]] == 1.0
        if ok and weighting == W_FIXED and not (rb_fixed[s, a] > 0.0):
            ok = False
        score = series[t, rb_sort[s, a]] if rb_sort[s, a] >= 0 else 0.0
        if ok and selection != SEL_ALL and np.isnan(score):
            ok = False
        scores[a] = score
        if ok:
            chosen[a] = 1
            count += 1
    if selection != SEL_ALL and count > n_select:
        # keep the n_select best scores (ties broken by asset order: deterministic)
        for _ in range(count - n_select):
            worst = -1
            for a in range(n_assets):
                if chosen[a] == 0:
                    continue
                if worst < 0:
                    worst = a
                elif selection == SEL_TOP and scores[a] < scores[worst]:
                    worst = a
                elif selection == SEL_BOTTOM and scores[a] > scores[worst]:
                    worst = a
            chosen[worst] = 0
        count = n_select
    total = 0.0
    for a in range(n_assets):
        if chosen[a] == 0:
            continue
        if weighting == W_EQUAL:
            w = 1.0
        elif weighting == W_FIXED:
            w = rb_fixed[s, a]
        else:
            w = series[t, rb_weight[s, a]] if rb_weight[s, a] >= 0 else 0.0
            if not (w > 0.0):
                w = 0.0
        targets[a] = w
        total += w
    gross = strategy["gross"]
    cap = strategy["max_weight"]
    if total > 0.0:
        for a in range(n_assets):
            targets[a] = targets[a] / total * gross if weighting != W_FIXED else targets[a]
        # cap, spreading the excess over the uncapped names (water-filling)
        for _ in range(n_assets):
            excess = 0.0
            free = 0.0
            for a in range(n_assets):
                if targets[a] > cap:
                    excess += targets[a] - cap
                    targets[a] = cap
                elif targets[a] > 0.0 and targets[a] < cap:
                    free += targets[a]
            if excess <= 1e-15 or free <= 0.0:
                break
            for a in range(n_assets):
                if targets[a] > 0.0 and targets[a] < cap:
                    targets[a] += excess * targets[a] / free
    equity = state.equity[t]
    min_trade = strategy["min_trade"]
    for phase in range(2):  # 0: reductions (free cash first), 1: increases
        for a in range(n_assets):
            if np.isnan(c[a]) and state.position[a] == 0.0:
                continue
            current = state.position[a] * state.mark[a] / equity if equity > 0.0 else 0.0
            diff = targets[a] - current
            if abs(diff) < min_trade or diff == 0.0:
                continue
            if abs(diff) < 1e-12:
                continue
            reducing = abs(targets[a]) < abs(current) or targets[a] * current < 0.0
            if (phase == 0) != reducing:
                continue
            target = targets[a]
            if state.risk.on[0] != 0:
                if phase == 1:
                    # an increase is an entry: the risk rules may block or scale it
                    st_, scaled, _ = k.risk_entry_order_nb(state, s + 1, a, t, ts, k.TARGET_FRACTION, target,
                                                           np.nan, np.nan)
                    if st_ < 0 or abs(scaled) <= abs(current) + 1e-12:
                        continue
                    target = scaled
                rk.risk_count_order_nb(state.risk, s + 1)
            side = 1 if diff > 0.0 else -1
            role = k.EXIT if target == 0.0 else k.ENTRY
            oid = k.submit_order_nb(state, t, ts, a, side, k.MARKET, k.TARGET_FRACTION, target, np.nan, np.nan,
                                    np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, strategy["tif"],
                                    strategy["gtn_bars"], role, -1, -1, 0, s, k.R_SIGNAL)
            record_signal_nb(audit, t, ts, s, a, A_REBALANCE, oid, target, targets, 0)


@inline_kernel
def decide_strategies_nb(state, t: int, ts: int, c, timestamps, program: CompiledProgram, work: Workspace,
                         audit: Audit, peak: float) -> None:
    """Evaluate every strategy scheduled at bar ``t`` in order and act on the instances that are true."""
    strategies = program.strategies
    instances = program.instances
    ops = program.ops
    series = program.series
    leaves = work.leaves
    for s in range(strategies.shape[0]):
        if not program.schedule[t, s]:
            continue
        strategy = strategies[s]
        action = strategy["action"]
        for inst in range(strategy["inst_start"], strategy["inst_end"]):
            a = instances[inst, I_ASSET]
            if a >= 0 and np.isnan(c[a]):
                continue
            fired = True
            if strategy["has_condition"] != 0:
                start = instances[inst, I_PROG_START]
                if instances[inst, I_PROG_END] - start == 1 and ops[start, 0] == OP_BSERIES:
                    fired = series[t, ops[start, 1]] == 1.0  # a data-only condition: one lookup
                else:
                    fired = evaluate_nb(state, ops, program.op_values, series, work.memory, work.stack, leaves, start,
                                        instances[inst, I_PROG_END], t, timestamps, peak)
            if not fired:
                continue
            n_leaves = instances[inst, I_LEAF_COUNT]
            if action == A_REBALANCE:
                record_signal_nb(audit, t, ts, s, -1, action, -1, np.nan, leaves, n_leaves)
                rebalance_nb(state, s, t, ts, c, program, work, audit)
            elif action == A_ALERT:
                record_signal_nb(audit, t, ts, s, a, action, -1, np.nan, leaves, n_leaves)
            else:
                oid = trade_nb(state, s, inst, a, t, ts, c[a], strategies, instances, series, work.inst_order)
                if oid >= 0:
                    record_signal_nb(audit, t, ts, s, a, action, oid, state.orders[oid]["size"], leaves, n_leaves)


@kernel
def run_strategies_nb(state, params, timestamps, prices, program: CompiledProgram, work: Workspace,
                      audit: Audit) -> bool:
    """Backtest compiled strategies over all bars. False when a record array overflowed.

    ``state`` / ``params`` are the engine's (:class:`~backforge.engine.kernels.State`,
    :class:`~backforge.engine.kernels.Params`), ``prices`` its ``[T, A]``
    :class:`~backforge.engine.kernels.Prices`.
    """
    peak = 0.0
    for t in range(timestamps.shape[0]):
        ts = timestamps[t]
        bar = k.bar_prices_nb(prices, t)
        k.process_bar_nb(state, params, t, ts, bar)
        if state.equity[t] > peak:
            peak = state.equity[t]
        decide_strategies_nb(state, t, ts, bar.close, timestamps, program, work, audit, peak)
        if state.counters[k.C_OVERFLOW] != 0 or audit.n_signals[1] != 0:
            return False
    return True
