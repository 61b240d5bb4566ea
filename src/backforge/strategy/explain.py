"""Why did a strategy act (or not) at a given time? A slow, readable re-evaluation of the condition tree.

The run is re-created from its saved config (milliseconds), then every strategy instance's condition is
evaluated at the requested bar in plain Python: data indicators from the compiled matrices, position
state from the run's history (positions, equity, fills). It is also the slow reference the compiled
runtime is tested against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from backforge._time import format_ns, to_ns
from backforge.errors import BackforgeError, ConfigError
from backforge.strategy import schema as sc
from backforge.strategy.compiler import _key, is_pure

__all__ = ["explain_run", "explain_at", "StateView"]

NS_PER_DAY = 86_400_000_000_000


class StateView:
    """Position and portfolio state after bar ``t`` of a result, rebuilt from its history."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.positions = result.state.positions
        self.equity = result.state.equity
        self.close = result.data.close
        self.ts = result.data.timestamps
        self.fills = result.fill_records

    def _mark(self, a: int, t: int) -> float:
        col = self.close[: t + 1, a]
        valid = col[~np.isnan(col)]
        return float(valid[-1]) if valid.size else float("nan")

    def value(self, kind: str, a: int, t: int) -> float:
        if kind == "portfolio_value":
            return float(self.equity[t])
        if kind == "drawdown":
            peak = float(np.max(self.equity[: t + 1]))
            return float(self.equity[t]) / peak - 1.0 if peak > 0 else 0.0
        pos = float(self.positions[t, a])
        if kind == "position_qty":
            return pos
        if kind == "position_weight":
            return pos * self._mark(a, t) / float(self.equity[t]) if self.equity[t] else 0.0
        fills = self.fills[(self.fills["asset"] == a) & (self.fills["bar"] <= t)]
        if kind == "last_order_price":
            return float(fills["price"][-1]) if len(fills) else float("nan")
        if kind in ("bars_since_order", "days_since_order"):
            if not len(fills):
                return float("inf")
            last = int(fills["bar"][-1])
            return float(t - last) if kind.startswith("bars") else (self.ts[t] - self.ts[last]) / NS_PER_DAY
        if kind in ("bars_since_entry", "days_since_entry"):
            before = fills["position_after"] - fills["qty"]
            entries = fills[np.abs(fills["position_after"]) > np.abs(before) + 1e-12]
            if not len(entries):
                return float("inf")
            last = int(entries["bar"][-1])
            return float(t - last) if kind.startswith("bars") else (self.ts[t] - self.ts[last]) / NS_PER_DAY
        if kind == "unrealized_pnl_pct":
            if pos == 0:
                return 0.0
            held, avg = 0.0, 0.0
            for f in fills:
                qty, price = float(f["qty"]), float(f["price"])
                if held == 0 or held * qty > 0:
                    avg = (avg * abs(held) + price * abs(qty)) / (abs(held) + abs(qty))
                    held += qty
                else:
                    closed = min(abs(qty), abs(held))
                    held += np.sign(qty) * closed
                    if abs(held) < 1e-12:
                        held, avg = 0.0, 0.0
                    opened = abs(qty) - closed
                    if opened > 0:
                        held, avg = np.sign(qty) * opened, price
            return float(np.sign(pos) * (self._mark(a, t) / avg - 1.0)) if avg else 0.0
        raise ConfigError(f"unknown state indicator {kind!r}")


def _label(node: Any) -> str:
    if isinstance(node, sc.Const):
        return f"{node.value:g}"
    if isinstance(node, sc.Price):
        return f"{node.field}" + (f"[{node.asset}]" if node.asset else "")
    params = []
    for name in ("window", "fast", "slow", "signal", "num_std", "output", "field"):
        value = getattr(node, name, None)
        if value is not None and name in type(node).model_fields:
            params.append(f"{value}")
    inner = getattr(node, "of", None)
    if inner is not None and not (isinstance(inner, sc.Price) and inner.field == "close" and inner.asset is None):
        params.insert(0, _label(inner))
    if isinstance(node, sc.Arithmetic):
        params = [_label(a) for a in node.args]
    asset = getattr(node, "asset", None)
    return f"{node.kind}({', '.join(params)})" + (f"[{asset}]" if asset else "")


def explain_at(compiled: Any, result: Any, bar: int) -> list[str]:
    """Lines explaining every strategy instance at ``bar`` (an index into the compiled data)."""
    view = StateView(result)
    run_bar = bar - compiled.start
    if run_bar < 0:
        raise ConfigError("the time is in the warm-up period, before the backtest starts", field="at")
    events = result.signal_events
    fired_here = events.filter(events["bar"] == bar) if events is not None else None
    assets = compiled.portfolio.universe
    lines: list[str] = []

    def value(node: Any, j: int) -> float:
        if isinstance(node, sc.Const):
            return float(node.value)
        if is_pure(node):
            matrix = compiled.matrices.get(_key(node))
            if matrix is None:
                return float("nan")
            return float(matrix[bar, max(j, 0)])
        if isinstance(node, sc.State):
            a = j if node.asset is None else assets.index(node.asset)
            return view.value(node.kind, max(a, 0), run_bar)
        if isinstance(node, sc.Arithmetic):
            vals = [value(a, j) for a in node.args]
            out = vals[0]
            for v in vals[1:]:
                out = {"add": out + v, "sub": out - v, "mul": out * v, "div": out / v if v else float("nan"),
                       "min": min(out, v), "max": max(out, v)}[node.kind]
            return out
        if isinstance(node, sc.Unary):
            v = value(node.of, j)
            return abs(v) if node.kind == "abs" else -v
        raise ConfigError(f"cannot evaluate {node.kind!r}")

    def condition(node: Any, j: int, depth: int) -> bool:
        pad = "    " * depth
        result_ = None
        if is_pure(node):
            matrix = compiled.matrices.get(_key(node))
            if matrix is not None:
                result_ = bool(matrix[bar, max(j, 0)])
        if isinstance(node, sc.Compare):
            lhs, rhs = value(node.lhs, j), value(node.rhs, j)
            if result_ is None:
                if node.op in ("crosses_above", "crosses_below"):
                    result_ = False  # state crossings depend on the previous evaluation; see the audit events
                else:
                    result_ = {">": lhs > rhs, "<": lhs < rhs, ">=": lhs >= rhs, "<=": lhs <= rhs, "==": lhs == rhs}[node.op]
            mark = "[green]✓[/]" if result_ else "[red]✗[/]"
            lines.append(f"{pad}{mark} {_label(node.lhs)} = {lhs:.6g}  {node.op}  {_label(node.rhs)} = {rhs:.6g}")
            return result_
        mark_line = len(lines)
        lines.append("")
        if isinstance(node, (sc.Logic, sc.AtLeast)):
            parts = [condition(c, j, depth + 1) for c in node.conditions]
            if result_ is None:
                result_ = all(parts) if getattr(node, "kind", "") == "all" else (
                    any(parts) if node.kind == "any" else sum(parts) >= node.n)
            title = node.kind if not isinstance(node, sc.AtLeast) else f"at least {node.n} of {len(parts)}"
        elif isinstance(node, sc.Not):
            inner = condition(node.condition, j, depth + 1)
            result_ = (not inner) if result_ is None else result_
            title = "not"
        else:  # held_for
            condition(node.condition, j, depth + 1)
            result_ = bool(result_)
            title = f"held for {node.window}"
        lines[mark_line] = f"{pad}{'[green]✓[/]' if result_ else '[red]✗[/]'} {title}"
        return result_

    lines.append(f"[bold]{format_ns(int(compiled.data.timestamps[bar]))}[/] (bar {bar})")
    for s, strat in enumerate(compiled.portfolio.strategies):
        scheduled = bool(compiled.schedule[bar, s])
        lines.append(f"[bold cyan]strategy {strat.name!r}[/] → {strat.action.kind}"
                     + ("" if scheduled else " [yellow](not scheduled at this bar)[/]"))
        scope = [-1] if strat.action.kind == "rebalance" else [assets.index(a) for a in (strat.assets or assets)]
        for j in scope:
            name = assets[j] if j >= 0 else "portfolio"
            if j >= 0 and np.isnan(compiled.data.close[bar, compiled.data.assets.index(name)]):
                lines.append(f"  {name}: no bar at this time")
                continue
            fired = fired_here is not None and fired_here.filter(
                (fired_here["strategy"] == strat.name) & ((fired_here["asset"] == name) if j >= 0 else True)).height > 0
            lines.append(f"  {name}: action {'[green]FIRED[/]' if fired else 'did not fire'}")
            if strat.condition is None:
                lines.append("    (no condition: fires on every scheduled bar)")
            else:
                condition(strat.condition, j, 2)
    lines.extend(risk_lines(result, bar))
    return lines


def risk_lines(result: Any, bar: int) -> list[str]:
    """What the risk rules did at ``bar`` (entries blocked or scaled, fills reduced, halts) and any halt
    in force there, as explain lines (none for runs without risk rules)."""
    risk = getattr(result, "risk_events", None)
    if risk is None or risk.height == 0:
        return []
    lines: list[str] = []
    before = risk.filter(risk["bar"] <= bar)
    for scope in dict.fromkeys(before["scope"].to_list()):
        changes = before.filter((before["scope"] == scope) & before["event"].is_in(["halted", "resumed"]))
        for rule in dict.fromkeys(changes["rule"].to_list()):
            last = changes.filter(changes["rule"] == rule).row(-1, named=True)
            if last["event"] == "halted" and last["bar"] < bar:
                lines.append(f"  [red]{scope}: {last['message']}[/] (since {last['timestamp']}, bar {last['bar']})")
    here = risk.filter(risk["bar"] == bar)
    for row in here.iter_rows(named=True):
        who = row["scope"] + (f" {row['asset']}" if row["asset"] else "")
        colour = "red" if row["event"] in ("blocked", "halted") else "yellow"
        lines.append(f"  [{colour}]{who}: {row['message']}[/]")
    return (["[bold magenta]risk rules[/]"] + lines) if lines else []


def explain_run(folder: str | Path, at: str) -> list[str]:
    """Re-create a saved strategy run and explain every strategy at time ``at`` (the last bar <= ``at``)."""
    from backforge.strategy.compiler import compile_portfolio, load_data, run_compiled

    from backforge.results.result import load_result

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise BackforgeError("not a saved run (config.json missing)", path=str(folder))
    at_ns = parse_at(at)
    saved = load_result(folder)  # refuses damaged folders, naming the file
    config, meta = saved.config, saved.metadata
    if not config.get("strategy"):
        raise BackforgeError("this run was not made from a strategy file (nothing to explain)", path=str(folder))
    portfolio = sc.load_portfolio(config["strategy"])
    source = config.get("data_source") or {}
    base = Path(source["strategy_file"]).parent if source.get("strategy_file") else None
    data = load_data(portfolio, base=base, override=[Path(p) for p in source.get("data") or []] or None)
    compiled = compile_portfolio(portfolio, data, start=source.get("start") or portfolio.data.start,
                                 end=source.get("end") or portfolio.data.end)
    result = run_compiled(compiled)
    if result.data.fingerprint() != meta.get("data_fingerprint"):
        raise BackforgeError("the data this run was made on has changed; re-run the strategy first", path=str(folder))
    return explain_at(compiled, result, bar_at(compiled.data.timestamps, at, at_ns))


def parse_at(at: Any) -> int:
    """The time ``--at`` names, in int ns UTC; a clear error for anything that is not a date/time.

    Examples
    --------
    >>> parse_at("2020-03-16")
    1584316800000000000
    >>> parse_at("2020-03-16T25:00")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field at: not a date/time: '2020-03-16T25:00'; write e.g. 2020-03-16 or 2020-03-16T14:30
    """
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        return int(at)
    try:
        value = int(to_ns([str(at).strip()])[0])
    except (ValueError, TypeError, OverflowError):
        value = None
    if value is None or value == np.iinfo(np.int64).min:  # NaT
        raise ConfigError(f"not a date/time: {at!r}; write e.g. 2020-03-16 or 2020-03-16T14:30", field="at")
    return value


def bar_at(ts: np.ndarray, at: Any, at_ns: int | None = None) -> int:
    """The last bar at or before ``at`` (a date means the end of that day); refuses times before the first
    bar or after the last one (the run says nothing about them).

    Examples
    --------
    >>> ts = np.array([parse_at("2020-01-02T21:00"), parse_at("2020-01-03T21:00")])
    >>> bar_at(ts, "2020-01-03"), bar_at(ts, "2020-01-02T22:00")
    (1, 0)
    >>> bar_at(ts, "2099-01-01")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field at: 2099-01-01 is after the last bar of the run (2020-01-03 21:00:00+00:00)
    """
    import pandas as pd

    def format_ns(ns: int) -> str:
        return str(pd.Timestamp(ns, tz="UTC"))

    at_ns = parse_at(at) if at_ns is None else at_ns
    date_only = isinstance(at, str) and len(at.strip()) <= 10
    if at_ns > int(ts[-1]):
        raise ConfigError(f"{at} is after the last bar of the run ({format_ns(int(ts[-1]))})", field="at")
    target = at_ns + (NS_PER_DAY - 1 if date_only else 0)
    bar = int(np.searchsorted(ts, target, side="right")) - 1
    if bar < 0:
        raise ConfigError(f"{at} is before the first bar of the run ({format_ns(int(ts[0]))})", field="at")
    return bar
