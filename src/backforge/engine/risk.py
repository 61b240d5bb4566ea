"""Risk rules inside the compiled loop: sizing multipliers, limits, halts — the live circuit breakers.

Three layers, like the rest of the engine:

* :class:`RiskConfig` — a frozen, validated description of the rules (the ``risk:`` section of a
  strategy file at portfolio level and per strategy, or ``risk=`` of :func:`backforge.from_signals` /
  :func:`backforge.simulate`). Every bad value is a :class:`~backforge.errors.ConfigError` naming the
  exact path, raised at validation, before any data is loaded.
* :func:`lower_risk` — the rules lowered to record arrays (``risk_rules_dt`` per row, ``risk_asset_dt``
  per row and asset) plus the per-bar session keys and trading-window masks computed on the Python side
  from the data's timestamps (time-zone arithmetic never happens in compiled code). Row 0 holds the
  portfolio rules; row ``1 + s`` the rules of strategy ``s``.
* kernels — :func:`risk_entry_nb` (may this entry go out, and at what size: halts, daily loss, orders
  per day, trading windows, cooldowns, open-position count, the drawdown and losing-streak
  multipliers), :func:`risk_size_nb` (risk at the stop, volatility target, expression, capped Kelly),
  :func:`risk_cap_nb` (caps that must hold at the fill: weight per asset, gross and net exposure,
  quantity and notional per asset) and :func:`risk_update_nb` (after every bar: equity peak, session
  day, closed trades → losing streak, Kelly statistics and cooldowns, drawdown halts and their resume).

The whole mutable state is one plain :class:`RiskBook` of record arrays, so a live runner can snapshot
it (``book.state.copy()``) and restore it, and :func:`risk_halt_nb` / :func:`risk_resume_nb` halt and
resume by hand. Every order a rule shrinks, delays or blocks leaves a ``risk_event_dt`` record naming the
rule and the values; :func:`describe_risk_event` renders it ("blocked: drawdown 21.3 % ≥ max_drawdown
20 %").

Examples
--------
>>> cfg = RiskConfig(max_drawdown=0.2, losing_streak={"losses": 3, "multiplier": 0.5})
>>> cfg.max_drawdown, cfg.losing_streak.multiplier
(0.2, 0.5)
>>> round(drawdown_multiplier(0.15, 0.1, 0.2), 12)
0.5
"""

from __future__ import annotations

import math

import numpy as np

from backforge._jit import njit
from backforge.engine.risk_rules import (  # noqa: F401 (re-exported: the rules as data live there)
    C_OVERFLOW, EV_BLOCKED, EV_HALTED, EV_REDUCED, EV_RESUMED, EV_SCALED, FILL_CAPS, NS_PER_DAY, RESUME_MANUAL,
    RESUME_NEXT_DAY, RESUME_RECOVERED, RULE_KELLY, RULE_NO_SIZE, SZ_EXPRESSION, SZ_KELLY, SZ_NONE, SZ_RISK,
    SZ_VOLATILITY, YEAR_NS, DrawdownScaling, LosingStreak, PerAsset, ResumeMode, RiskBook, RiskConfig, RiskEventKind,
    RiskRule, RiskSizing, Session, Sizing, TradingWindow, as_risk_config, empty_risk_book, lower_fill_caps, lower_risk,
    risk_asset_dt, risk_config_error, risk_event_dt, risk_rules_dt, risk_state_dt, session_keys, set_sizing,
    trailing_periods_per_year, window_mask, with_series)

__all__ = [
    "RiskConfig", "TradingWindow", "Session", "DrawdownScaling", "LosingStreak", "RiskSizing", "RiskBook",
    "RiskRule", "RiskEventKind", "ResumeMode", "Sizing", "lower_risk", "empty_risk_book", "risk_events_frame",
    "describe_risk_event", "drawdown_multiplier", "kelly_fraction", "risk_rules_dt", "risk_state_dt",
    "risk_asset_dt", "risk_event_dt", "halt", "resume", "session_keys", "window_mask", "trailing_periods_per_year", "lower_fill_caps", "FILL_CAPS",
]

kernel = njit(_nrt=False)
inline_kernel = njit(_nrt=False, inline="always")

# ------------------------------------------------------------------------------------ pure helpers

@inline_kernel
def drawdown_multiplier(drawdown: float, start: float, end: float) -> float:
    """1 up to ``start``, linear down to 0 at ``end``, 0 beyond (``drawdown`` >= 0, a fraction).

    Examples
    --------
    >>> drawdown_multiplier(0.05, 0.1, 0.2), drawdown_multiplier(0.25, 0.1, 0.2)
    (1.0, 0.0)
    """
    if not (drawdown > start):
        return 1.0
    if drawdown >= end:
        return 0.0
    return (end - drawdown) / (end - start)


@inline_kernel
def kelly_fraction(wins: int, losses: int, sum_win: float, sum_loss: float) -> float:
    """Kelly fraction ``W - (1 - W) / R`` of closed trades (W win rate, R average win ÷ average loss,
    from trade returns); 1 with no loss yet, 0 with no win, never below 0.

    Examples
    --------
    >>> round(kelly_fraction(6, 4, 6 * 0.10, 4 * 0.05), 12)  # W = 0.6, R = 2 → 0.6 - 0.4 / 2
    0.4
    """
    n = wins + losses
    if n == 0 or wins == 0:
        return 0.0
    if losses == 0 or sum_loss <= 0.0:
        return 1.0
    w = wins / n
    ratio = (sum_win / wins) / (sum_loss / losses)
    f = w - (1.0 - w) / ratio
    return f if f > 0.0 else 0.0


# ------------------------------------------------------------------------------------------ kernels

@kernel
def record_risk_event_nb(risk: RiskBook, t: int, ts: int, row: int, asset: int, order_id: int, kind: int, rule: int,
                         value: float, limit: float, requested: float, allowed: float) -> None:
    """Append one risk event (flags the engine overflow when the array is full: the run is retried)."""
    n = risk.n_events[0]
    if n >= risk.events.shape[0]:
        risk.n_events[0] = n + 1  # counted: the Python side sees the overflow and retries larger
        return
    ev = risk.events[n]
    ev["bar"] = t
    ev["ts"] = ts
    ev["row"] = row
    ev["asset"] = asset
    ev["order_id"] = order_id
    ev["kind"] = kind
    ev["rule"] = rule
    ev["value"] = value
    ev["limit"] = limit
    ev["requested"] = requested
    ev["allowed"] = allowed
    risk.n_events[0] = n + 1


@inline_kernel
def risk_overflowed_nb(risk: RiskBook) -> bool:
    """True when more events happened than the event array holds."""
    return risk.n_events[0] > risk.events.shape[0]


@kernel
def _block_nb(risk: RiskBook, t: int, ts: int, row: int, a: int, rule: int, value: float, limit: float,
              requested: float) -> float:
    """Record a blocked entry (once per run of consecutive blocked bars of one rule) and return -1."""
    if a >= 0:
        cell = risk.assets[row, a]
        repeat = cell["block_rule"] == rule and cell["block_bar"] >= t - 1
        cell["block_rule"] = rule
        cell["block_bar"] = t
        if repeat:
            return -1.0
    record_risk_event_nb(risk, t, ts, row, a, -1, EV_BLOCKED, rule, value, limit, requested, 0.0)
    return -1.0


@inline_kernel
def _open_positions_nb(risk: RiskBook, position, orders, active, n_active: int, row: int, a: int) -> int:
    """Assets (other than ``a``) with a position, or flat with a working entry; for a strategy row only
    those the strategy opened or placed."""
    count = 0
    for b in range(position.shape[0]):
        if b == a:
            continue
        if position[b] != 0.0:
            if row == 0 or risk.owner[b] == row - 1:
                count += 1
            continue
        for i in range(n_active):
            order = orders[active[i]]
            if order["asset"] == b and order["role"] == 0 and (order["status"] == 0 or order["status"] == 5) \
                    and (row == 0 or order["tag"] == row - 1):
                count += 1
                break
    return count


@kernel
def risk_entry_nb(risk: RiskBook, position, orders, active, n_active: int, equity: float, row: int, a: int, t: int,
                  ts: int, size: float) -> float:
    """May an entry of rules row ``row`` (0 for signals; the portfolio row always applies too) in asset
    ``a`` go out after bar ``t``, and at what size? Returns ``size`` times the drawdown and losing-streak
    multipliers, or -1 when a rule blocks it (a ``risk_event_dt`` record names the rule and values).

    Equivalent slow reference: the checks of ``tests/engine/test_risk.py::reference_entry``.
    """
    multiplier = 1.0
    for pass_ in range(2):
        r = 0 if pass_ == 0 else row
        if pass_ == 1 and row == 0:
            break
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        st = risk.state[r]
        if st["halt"] != 0:
            return _block_nb(risk, t, ts, r, a, st["halt"], st["halt_value"],
                             rules["max_drawdown"] if st["halt"] == 1 else np.nan, size)
        if st["day_block"] != 0:
            return _block_nb(risk, t, ts, r, a, 2, st["day_block_value"], rules["daily_loss"], size)
        if rules["max_orders"] >= 0 and st["orders_today"] >= rules["max_orders"]:
            return _block_nb(risk, t, ts, r, a, 3, float(st["orders_today"]), float(rules["max_orders"]), size)
        if rules["has_window"] != 0 and t < risk.window.shape[0] and risk.window[t, r] == 0:
            return _block_nb(risk, t, ts, r, a, 4, np.nan, np.nan, size)
        cell = risk.assets[r, a]
        if t < cell["cooldown_bar"] or ts < cell["cooldown_ts"]:
            return _block_nb(risk, t, ts, r, a, 5, np.nan, np.nan, size)
        if rules["max_positions"] >= 0 and position[a] == 0.0:
            count = _open_positions_nb(risk, position, orders, active, n_active, r, a)
            if count >= rules["max_positions"]:
                return _block_nb(risk, t, ts, r, a, 6, float(count), float(rules["max_positions"]), size)
        if np.isfinite(rules["dd_start"]):
            peak = st["peak"]
            dd = 1.0 - equity / peak if peak > 0.0 else 0.0
            m = drawdown_multiplier(dd, rules["dd_start"], rules["dd_end"])
            if m < 1.0:
                if m <= 0.0:
                    return _block_nb(risk, t, ts, r, a, 14, dd, rules["dd_end"], size)
                record_risk_event_nb(risk, t, ts, r, a, -1, EV_SCALED, 14, dd, rules["dd_start"], size,
                                     size * multiplier * m)
                multiplier *= m
        if rules["streak_losses"] > 0 and st["streak"] >= rules["streak_losses"]:
            m = rules["streak_multiplier"]
            if m <= 0.0:
                return _block_nb(risk, t, ts, r, a, 15, float(st["streak"]), float(rules["streak_losses"]), size)
            record_risk_event_nb(risk, t, ts, r, a, -1, EV_SCALED, 15, float(st["streak"]),
                                 float(rules["streak_losses"]), size, size * multiplier * m)
            multiplier *= m
    risk.assets[0, a]["block_rule"] = 0
    risk.assets[row, a]["block_rule"] = 0
    return size * multiplier


@kernel
def risk_count_order_nb(risk: RiskBook, row: int) -> None:
    """Count one decision order toward today's limit of the portfolio row and of ``row``."""
    risk.state[0]["orders_today"] += 1
    if row > 0:
        risk.state[row]["orders_today"] += 1


@kernel
def risk_size_nb(risk: RiskBook, row: int, a: int, t: int, equity: float, close: float, sl_pct: float,
                 sl_abs: float):
    """The (size type, size) of an entry of rules row ``row`` under its sizing mode, from data of the
    decision bar ``t`` only. Returns size type -1 when the rule has no size (NaN indicator, Kelly 0):
    the caller then sends nothing. Size types are the engine's: 0 units, 2 equity fraction.

    * risk: units = equity × risk ÷ distance, distance = ``sl_abs`` when finite, else ``close × sl_pct``;
    * volatility target: equity fraction = min(max, target ÷ volatility);
    * expression: equity fraction = clamp(value, min, max);
    * Kelly: equity fraction = min(max, multiple × Kelly fraction), ``fallback`` before ``min_trades``.
    """
    rules = risk.rules[row]
    mode = rules["sizing"]
    if mode == SZ_RISK:
        distance = sl_abs if np.isfinite(sl_abs) else close * sl_pct
        if not (distance > 0.0) or not (equity > 0.0):
            return -1, 0.0
        return 0, equity * rules["size_value"] / distance
    if mode == SZ_VOLATILITY or mode == SZ_EXPRESSION:
        col = risk.cols[row, a]
        value = risk.series[t, col] if col >= 0 and t < risk.series.shape[0] else np.nan
        if mode == SZ_VOLATILITY:
            if not (value > 0.0):
                return -1, 0.0
            weight = min(rules["size_value"] / value, rules["size_max"])
        else:
            if np.isnan(value):
                return -1, 0.0
            weight = min(max(value, rules["size_min"]), rules["size_max"])
        if not (weight > 0.0):
            return -1, 0.0
        return 2, weight
    if mode == SZ_KELLY:
        st = risk.state[row]
        if st["wins"] + st["losses"] < rules["kelly_min_trades"]:
            weight = rules["kelly_fallback"]
        else:
            weight = min(rules["size_value"] * kelly_fraction(st["wins"], st["losses"], st["sum_win"], st["sum_loss"]),
                         rules["size_max"])
        if not (weight > 0.0):
            return -1, 0.0
        return 2, weight
    return -2, 0.0


@inline_kernel
def cap_needs_equity_nb(risk: RiskBook, tag: int, a: int) -> bool:
    """True when the fill-time caps of the order's rows need equity and exposure (weight, gross, net)."""
    for pass_ in range(2):
        r = 0 if pass_ == 0 else tag + 1
        if pass_ == 1 and (tag < 0 or tag + 1 >= risk.rules.shape[0]):
            break
        if risk.rules[r]["enabled"] == 0:
            continue
        if np.isfinite(risk.assets[r, a]["max_weight"]) or np.isfinite(risk.rules[r]["max_gross"]) \
                or np.isfinite(risk.rules[r]["max_net"]):
            return True
    return False


@kernel
def risk_cap_nb(risk: RiskBook, tag: int, a: int, t: int, ts: int, oid: int, base: float, opening: float,
                side: int, price: float, equity: float, gross_other: float, net_other: float) -> float:
    """The largest opening quantity (>= 0) an entry may fill: ``base`` is the signed position after the
    order's closing part, ``gross_other``/``net_other`` the exposure of the other assets, all valued at
    the fill. Caps: max_weight, max_qty, max_notional per asset, max_gross, max_net. Below min_qty /
    min_notional the opening part is refused (0). Every cut leaves a risk event."""
    allowed = opening
    rule = 0
    value = np.nan
    limit = np.nan
    for pass_ in range(2):
        r = 0 if pass_ == 0 else tag + 1
        if pass_ == 1 and (tag < 0 or tag + 1 >= risk.rules.shape[0]):
            break
        cell = risk.assets[r, a]
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        room = np.inf
        cap_rule = 0
        cap_limit = np.nan
        if np.isfinite(cell["max_weight"]) and equity > 0.0:
            q = cell["max_weight"] * equity / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 7, cell["max_weight"]
        if np.isfinite(cell["max_qty"]):
            q = cell["max_qty"] - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 10, cell["max_qty"]
        if np.isfinite(cell["max_notional"]):
            q = cell["max_notional"] / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 11, cell["max_notional"]
        if np.isfinite(rules["max_gross"]) and equity > 0.0:
            q = (rules["max_gross"] * equity - gross_other) / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 8, rules["max_gross"]
        if np.isfinite(rules["max_net"]) and equity > 0.0:
            # |net_other + (base + side q) price| <= max_net equity
            q = ((rules["max_net"] * equity - side * net_other) / price - side * base)
            if q < room:
                room, cap_rule, cap_limit = q, 9, rules["max_net"]
        if room < 0.0:
            room = 0.0
        if room < allowed:
            allowed = room
            rule = cap_rule
            limit = cap_limit
        if allowed > 0.0:
            if np.isfinite(cell["min_qty"]) and allowed < cell["min_qty"]:
                rule, limit, allowed = 12, cell["min_qty"], 0.0
            elif np.isfinite(cell["min_notional"]) and allowed * price < cell["min_notional"]:
                rule, limit, allowed = 13, cell["min_notional"], 0.0
    if rule != 0:
        if rule == 7:
            value = (abs(base) + opening) * price / equity
        elif rule == 8:
            value = (gross_other + (abs(base) + opening) * price) / equity
        elif rule == 9:
            value = abs(net_other + (base + side * opening) * price) / equity
        elif rule == 10 or rule == 12:
            value = abs(base) + opening if rule == 10 else opening
        else:
            value = (abs(base) + opening) * price if rule == 11 else opening * price
        record_risk_event_nb(risk, t, ts, 0 if tag < 0 or tag + 1 >= risk.rules.shape[0] else tag + 1, a, oid,
                             EV_REDUCED if allowed > 0.0 else EV_BLOCKED, rule, value, limit,
                             opening, allowed)
    return allowed


@kernel
def risk_halt_nb(risk: RiskBook, row: int, rule: int, t: int, ts: int, value: float, manual: bool) -> None:
    """Halt new entries of rules row ``row`` (0: everything) with a reason code; ``manual``: only
    :func:`risk_resume_nb` lifts it."""
    st = risk.state[row]
    if st["halt"] != 0:
        return
    st["halt"] = rule
    st["halt_bar"] = t
    st["halt_ts"] = ts
    st["halt_value"] = value
    st["manual"] = 1 if manual else 0
    limit = risk.rules[row]["max_drawdown"] if rule == 1 else np.nan
    record_risk_event_nb(risk, t, ts, row, -1, -1, EV_HALTED, rule, value, limit, np.nan, np.nan)


@kernel
def risk_resume_nb(risk: RiskBook, row: int, t: int, ts: int, equity: float) -> bool:
    """Lift the halt of ``row`` (drawdown is measured from ``equity`` from now on). False when not halted."""
    st = risk.state[row]
    if st["halt"] == 0:
        return False
    rule = st["halt"]
    st["halt"] = 0
    st["manual"] = 0
    if rule == 1 and risk.rules[row]["resume"] != RESUME_RECOVERED:
        st["peak"] = equity
    dd = 0.0
    record_risk_event_nb(risk, t, ts, row, -1, -1, EV_RESUMED, rule, dd, np.nan, np.nan, np.nan)
    return True


@kernel
def _on_trade_nb(risk: RiskBook, r: int, pnl: float, ret: float) -> None:
    st = risk.state[r]
    if pnl < 0.0:
        st["streak"] += 1
        st["losses"] += 1
        st["sum_loss"] += -ret
    elif pnl > 0.0:
        st["streak"] = 0
        st["wins"] += 1
        st["sum_win"] += ret


@inline_kernel
def risk_update_nb(risk: RiskBook, fills, n_fills: int, orders, trades, n_trades: int, t: int, ts: int,
                   equity: float) -> bool:
    """Update the risk state after bar ``t`` closed at ``equity``: new session day (day-start equity,
    order count, daily block, next-day resume), closed trades (losing streak, Kelly statistics, position
    owner, cooldown after a stop-out), the equity peak, drawdown halts and recovered resumes, the daily
    loss limit. Returns True when a halt fired at this bar in any row: the caller then cancels the working
    entries the halt covers (:func:`risk_halts_order_nb`) and closes the positions of rules that flatten
    (:func:`risk_flattens_nb`)."""
    n_rows = risk.rules.shape[0]
    # ---- session day
    day = risk.day[t] if t < risk.day.shape[0] else ts // NS_PER_DAY
    for r in range(n_rows):
        if risk.rules[r]["enabled"] == 0:  # a row without rules (sizing only): nothing reads its day or peak
            continue
        st = risk.state[r]
        if st["day_key"] != day:
            first = st["day_key"] == np.iinfo(np.int64).min
            st["day_key"] = day
            st["day_start"] = st["prev_equity"]
            st["orders_today"] = 0
            if st["day_block"] != 0 and not first:
                st["day_block"] = 0
                record_risk_event_nb(risk, t, ts, r, -1, -1, EV_RESUMED, 2, np.nan, np.nan, np.nan, np.nan)
            if st["halt"] == 1 and st["manual"] == 0 and risk.rules[r]["resume"] == RESUME_NEXT_DAY and not first:
                risk_resume_nb(risk, r, t, ts, st["prev_equity"])
    # ---- fills and the trades they closed (a call only on bars with new fills: this function is inlined into
    # every bar step, where a call costs more than the loops above and below)
    if n_fills > risk.state[0]["seen_fills"]:
        _risk_fills_nb(risk, fills, n_fills, orders, trades, n_trades, t, ts)
    # ---- peak, halts, daily loss
    fired = False
    for r in range(n_rows):
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        st = risk.state[r]
        if equity > st["peak"]:
            st["peak"] = equity
        dd = 1.0 - equity / st["peak"] if st["peak"] > 0.0 else 0.0
        if np.isfinite(rules["max_drawdown"]):
            if st["halt"] == 0 and dd >= rules["max_drawdown"]:
                risk_halt_nb(risk, r, 1, t, ts, dd, rules["resume"] == RESUME_MANUAL)
                fired = True
            elif st["halt"] == 1 and st["manual"] == 0 and rules["resume"] == RESUME_RECOVERED \
                    and dd <= rules["resume_drawdown"]:
                risk_resume_nb(risk, r, t, ts, equity)
        if np.isfinite(rules["daily_loss"]) and st["day_block"] == 0 and st["day_start"] > 0.0:
            loss = 1.0 - equity / st["day_start"]
            if loss >= rules["daily_loss"]:
                st["day_block"] = 2
                st["day_block_value"] = loss
                record_risk_event_nb(risk, t, ts, r, -1, -1, EV_HALTED, 2, loss, rules["daily_loss"],
                                     np.nan, np.nan)
        st["prev_equity"] = equity
    return fired


@kernel
def _risk_fills_nb(risk: RiskBook, fills, n_fills: int, orders, trades, n_trades: int, t: int, ts: int) -> None:
    """The fills since the last bar and the trades they closed: losing streak, Kelly statistics, position owner,
    cooldown after a stop-out (part of :func:`risk_update_nb`)."""
    n_rows = risk.rules.shape[0]
    st0 = risk.state[0]
    k = st0["seen_trades"]
    for i in range(st0["seen_fills"], n_fills):
        fill = fills[i]
        a = fill["asset"]
        qty = fill["qty"]
        after = fill["position_after"]
        before = after - qty
        tag = orders[fill["order_id"]]["tag"]
        if before != 0.0 and before * qty < 0.0 and k < n_trades:
            tr = trades[k]
            k += 1
            owner = risk.owner[a]
            _on_trade_nb(risk, 0, tr["pnl"], tr["ret"])
            if owner >= 0 and owner + 1 < n_rows:
                _on_trade_nb(risk, owner + 1, tr["pnl"], tr["ret"])
            role = tr["exit_role"]
            if role == 2 or role == 4:  # stop-loss / trailing stop: cooldown
                for r in range(n_rows):
                    if r > 0 and owner + 1 != r:
                        continue
                    rules = risk.rules[r]
                    cell = risk.assets[r, a]
                    if rules["cooldown_bars"] > 0:
                        cell["cooldown_bar"] = t + rules["cooldown_bars"] + 1
                    if rules["cooldown_ns"] > 0:
                        cell["cooldown_ts"] = ts + rules["cooldown_ns"]
        if after != 0.0 and (before == 0.0 or before * after < 0.0 or abs(after) > abs(before)):
            if before == 0.0 or before * after < 0.0:
                risk.owner[a] = tag
    st0["seen_fills"] = n_fills
    st0["seen_trades"] = k


@inline_kernel
def _halted_at_nb(risk: RiskBook, row: int, t: int) -> bool:
    st = risk.state[row]
    return st["halt"] != 0 and st["halt_bar"] == t


@inline_kernel
def risk_halts_order_nb(risk: RiskBook, tag: int, t: int) -> bool:
    """True when a halt that fired at bar ``t`` covers a working entry of order tag ``tag``: the portfolio
    row's halt covers every entry, strategy ``s``'s halt (row ``1 + s``) the entries that strategy placed."""
    if _halted_at_nb(risk, 0, t):
        return True
    return tag >= 0 and tag + 1 < risk.rules.shape[0] and _halted_at_nb(risk, tag + 1, t)


@inline_kernel
def risk_flattens_nb(risk: RiskBook, a: int, t: int) -> bool:
    """True when a drawdown halt with ``flatten_on_halt`` fired at bar ``t`` over the position in asset
    ``a``: the portfolio row's flattens every position, strategy ``s``'s the positions it opened."""
    if _halted_at_nb(risk, 0, t) and risk.rules[0]["flatten"] != 0 and risk.state[0]["halt"] == 1:
        return True
    r = risk.owner[a] + 1
    return 0 < r < risk.rules.shape[0] and _halted_at_nb(risk, r, t) and risk.rules[r]["flatten"] != 0 \
        and risk.state[r]["halt"] == 1


# ------------------------------------------------------------------------------ Python-side helpers

def halt(book: RiskBook, *, bar: int, timestamp: int, reason: str = "manual", value: float = float("nan"),
         row: int = 0) -> None:
    """Halt entries by hand (the live runner's kill switch); only :func:`resume` lifts it.

    Examples
    --------
    >>> book = lower_risk(RiskConfig(max_drawdown=0.2), ("A",), np.zeros(1, dtype=np.int64), cash=1.0)
    >>> halt(book, bar=0, timestamp=0)
    >>> int(book.state[0]["halt"]), int(book.state[0]["manual"])
    (16, 1)
    """
    book.on[0] = 1
    book.rules[row]["enabled"] = 1
    risk_halt_nb(book, row, RiskRule.code(reason), int(bar), int(timestamp), float(value), True)


def resume(book: RiskBook, *, bar: int, timestamp: int, equity: float, row: int = 0) -> bool:
    """Lift a halt by hand; drawdown is measured from ``equity`` from then on. False when not halted."""
    return bool(risk_resume_nb(book, row, int(bar), int(timestamp), float(equity)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %".replace(".0 %", " %")


def describe_risk_event(kind: int, rule: int, value: float, limit: float, requested: float, allowed: float) -> str:
    """One line saying what a rule did and why.

    Examples
    --------
    >>> describe_risk_event(RiskEventKind.BLOCKED, RiskRule.MAX_DRAWDOWN, 0.213, 0.2, 10.0, 0.0)
    'blocked: drawdown 21.3 % ≥ max_drawdown 20 %'
    >>> describe_risk_event(RiskEventKind.REDUCED, RiskRule.MAX_WEIGHT, 0.3, 0.25, 30.0, 25.0)
    'reduced 30 → 25: weight 30 % > max_weight 25 %'
    """
    verb = RiskEventKind.name(kind)
    name = RiskRule.name(rule)
    if rule == RiskRule.MAX_DRAWDOWN:
        why = f"drawdown {_pct(value)} ≥ max_drawdown {_pct(limit)}" if math.isfinite(limit) else f"drawdown {_pct(value)}"
    elif rule == RiskRule.DAILY_LOSS:
        why = f"loss today {_pct(value)} ≥ daily_loss_limit {_pct(limit)}" if math.isfinite(value) else "new day"
    elif rule == RiskRule.ORDERS_PER_DAY:
        why = f"{int(value)} orders today ≥ max_orders_per_day {int(limit)}"
    elif rule == RiskRule.MAX_POSITIONS:
        why = f"{int(value)} open positions ≥ max_positions {int(limit)}"
    elif rule == RiskRule.DRAWDOWN_SCALING:
        why = f"drawdown {_pct(value)} > {_pct(limit)}" if kind == RiskEventKind.SCALED else \
            f"drawdown {_pct(value)} ≥ drawdown_scaling.end {_pct(limit)}"
    elif rule == RiskRule.LOSING_STREAK:
        why = f"{int(value)} losing trades in a row ≥ {int(limit)}"
    elif rule in (RiskRule.MAX_WEIGHT, RiskRule.MAX_GROSS, RiskRule.MAX_NET):
        label = {7: "weight", 8: "gross exposure", 9: "net exposure"}[rule]
        why = f"{label} {_pct(value)} > {name} {_pct(limit)}"
    elif rule in (RiskRule.MAX_QTY, RiskRule.MAX_NOTIONAL):
        why = f"{'position' if rule == 10 else 'notional'} {value:g} > {name} {limit:g}"
    elif rule in (RiskRule.MIN_QTY, RiskRule.MIN_NOTIONAL):
        why = f"{'quantity' if rule == 12 else 'notional'} {value:g} < {name} {limit:g}"
    else:
        why = RiskRule.describe(rule)
    if kind == RiskEventKind.REDUCED or kind == RiskEventKind.SCALED:
        return f"{verb} {requested:.6g} → {allowed:.6g}: {why}"
    if kind == RiskEventKind.RESUMED:
        return f"resumed after {name}" if rule != RiskRule.DAILY_LOSS else "resumed: new day (daily_loss_limit)"
    if kind == RiskEventKind.HALTED:
        return f"halted: {why}"
    return f"{verb}: {why}"


def risk_events_frame(book: RiskBook, timestamps_offset_bar: int = 0, *, assets: tuple[str, ...] = (),
                      strategies: tuple[str, ...] = ()):
    """The risk events of a run as a Polars DataFrame with a ``message`` column."""
    import polars as pl

    n = min(int(book.n_events[0]), book.events.shape[0])
    ev = book.events[:n]
    rows = ev["row"]
    return pl.DataFrame({
        "timestamp": pl.Series(ev["ts"]).cast(pl.Datetime("ns", "UTC")),
        "bar": ev["bar"] + timestamps_offset_bar,
        "scope": pl.Series([
            "portfolio" if r == 0 else (strategies[r - 1] if r - 1 < len(strategies) else f"strategy {r - 1}")
            for r in rows], dtype=pl.String),
        "asset": pl.Series([assets[a] if 0 <= a < len(assets) else None for a in ev["asset"]], dtype=pl.String),
        "order_id": ev["order_id"],
        "event": pl.Series([RiskEventKind.name(k) for k in ev["kind"]], dtype=pl.String),
        "rule": pl.Series([RiskRule.name(r) for r in ev["rule"]], dtype=pl.String),
        "value": ev["value"],
        "limit": ev["limit"],
        "requested": ev["requested"],
        "allowed": ev["allowed"],
        "message": pl.Series([describe_risk_event(*x) for x in zip(ev["kind"], ev["rule"], ev["value"], ev["limit"],
                                                                    ev["requested"], ev["allowed"])], dtype=pl.String),
    })
