"""The evidence pack: every number a reviewer needs about a run, computed by the system.

:func:`build_evidence` reads a run (and re-runs it when it can) and assembles JSON-ready sections:

=====================  ================================================================================
section                what it holds
=====================  ================================================================================
run                    name, mode, period, bars, whether variants can be re-run (and why not)
strategy               the strategy config (compact: defaults left out) or the signal settings
data                   symbols, period, bar size, per-asset span, missing bars and buy-and-hold, gaps
metrics                every metric of the run (:meth:`~backforge.results.result.RunAnalysis.metrics`)
yearly_returns         compounded return of each calendar year, with the benchmark's
monthly_returns        compounded return of each month
drawdowns              the five deepest drawdowns, time under water, the longest drawdown in days
trades                 statistics, per asset, exit reasons, the best, worst and most recent trades
concentration          share of P&L from the top 1/5/10 trades, P&L without them, per asset, per year
cost_sensitivity       the same run at 2x and 5x costs (and at assumed costs when none were modelled)
parameter_sensitivity  neighbours of the chosen parameters: declared, from the search, or the config's numbers
monte_carlo            trade bootstrap/reshuffle and block bootstrap of bar returns (research.montecarlo)
walk_forward           walk-forward efficiency over declared parameters (when there are any)
stability              first vs second half, thirds, recent year(s)
overfitting            PSR, DSR with the number of trials actually run, MinTRL, PBO (and their sources)
benchmark              the equal-weight buy-and-hold's own figures, alpha, beta, correlation
regimes                the strategy in up/down trends and high/low volatility of the benchmark
exposure               leverage, margin headroom, liquidations
lookahead              fills at or before their decision bar; the signals lagged one more bar
=====================  ================================================================================

The pack is *sized to fit a model's context*: :meth:`EvidencePack.for_model` estimates its tokens
(``ceil(characters / 3.5)`` of the compact JSON) and, over the budget, shortens lists and then drops
whole sections, least important first (:data:`TRIM_ORDER`), recording what went in ``budget.trimmed``.
The rule-based reviewer always reads the full pack.

Everything is deterministic: the Monte Carlo and the walk-forward sampling take ``seed``.

Examples
--------
>>> import backforge as bf
>>> data = bf.synth(n_assets=2, years=3, seed=3)
>>> pack = build_evidence(bf.from_signals(data, data.close > data.open, data.close < data.open))
>>> sorted(pack.sections)[:4]
['benchmark', 'concentration', 'cost_sensitivity', 'data']
>>> small = pack.for_model(budget_tokens=1500)
>>> small["budget"]["tokens"] <= 1500, "monthly_returns" in small["budget"]["trimmed"]
(True, True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backforge._time import format_duration, format_ns, median_bar_ns
from backforge.errors import BackforgeError
from backforge.judge.budget import DEFAULT_BUDGET_TOKENS
from backforge.judge.runs import COST_FIELDS, ClassRerunner, RunView, SignalRerunner, StrategyRerunner, open_run
from backforge.results.metrics import max_drawdown, sharpe_ratio, skewness
from backforge.results.result import RunAnalysis

__all__ = [
    "DEFAULT_BUDGET_TOKENS",
    "ASSUMED_COSTS",
    "TRIM_ORDER",
    "EvidencePack",
    "build_evidence",
    "estimate_tokens",
]

ASSUMED_COSTS: dict[str, float] = {"fee_rate": 0.0005, "slippage_bps": 2.0}
_DECISION_ROLES = ("entry", "exit")
"""Order roles that carry a strategy's decision (the others are created by the engine: brackets, liquidations)."""
"""Costs assumed to price a run that modelled none: 5 bps commission and 2 bps slippage per fill."""

TRIM_ORDER: tuple[str, ...] = (
    "monthly_returns", "regimes", "drawdowns", "benchmark", "monte_carlo", "yearly_returns", "stability",
    "lookahead", "exposure", "data", "walk_forward", "parameter_sensitivity", "cost_sensitivity", "concentration",
    "trades", "strategy", "overfitting", "metrics", "run",
)
"""Sections in the order they are dropped when the pack is over its budget (least important first)."""

_CHARS_PER_TOKEN = 3.5
_NS_PER_DAY = 86_400 * 10**9
_NS_PER_YEAR = 365.25 * _NS_PER_DAY
_DROPPED_METRIC_KEYS = ("avg_trade_duration_ns", "max_trade_duration_ns")


# ============================================================================================ helpers
def estimate_tokens(document: Any) -> int:
    """Estimated tokens of a document as compact JSON: ``ceil(characters / 3.5)``.

    Examples
    --------
    >>> estimate_tokens({"sharpe": 1.25})
    5
    """
    text = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return int(math.ceil(len(text) / _CHARS_PER_TOKEN))


def _clean(value: Any, digits: int = 4) -> Any:
    """JSON-ready copy: floats to ``digits`` significant digits, inf as text, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, digits) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        if number == 0.0:
            return 0.0
        return float(f"{number:.{digits}g}")
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _number(value: Any) -> float | None:
    """A metric value as a float (``"inf"`` text back to inf), None when missing."""
    if value is None:
        return None
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _stamp(ns: int, intraday: bool) -> str:
    return format_ns(ns, "minute" if intraday else "day", offset=False)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.05, 0.5, 0.95]) if values.size else np.zeros(3)
    return {"p5": float(q[0]), "p50": float(q[1]), "p95": float(q[2])}


def _headline(result: Any) -> dict[str, Any]:
    """The figures of a re-run compared in the sensitivity tables."""
    m = result.metrics()
    return {"total_return": m["total_return"], "cagr": m["cagr"], "sharpe": m["sharpe"],
            "max_drawdown": m["max_drawdown"], "n_trades": m["n_trades"], "costs_paid": m["fees"] + m["slippage"]}


# ========================================================================================= the pack
@dataclass
class EvidencePack:
    """The evidence about one run: JSON-ready sections (see the module docstring).

    Attributes
    ----------
    sections
        Section name -> content (plain JSON types; floats rounded to 4 significant digits).
    run_name
        The run's name.
    extras
        Numbers kept for the judge's own use and not shown to a model (per-bar returns of the
        variants run for the sensitivity tables, used by PBO).
    """

    sections: dict[str, Any]
    run_name: str
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The full pack (every section, nothing trimmed)."""
        return {"version": 1, "run": self.run_name, **self.sections}

    def for_model(self, budget_tokens: int | None = DEFAULT_BUDGET_TOKENS) -> dict[str, Any]:
        """The pack trimmed to ``budget_tokens`` (estimated), least important parts first.

        Lists are shortened first (months to the last 24, then 12; trades to 3 each; drawdowns to 3;
        parameter neighbours to their summary), then whole sections are dropped in
        :data:`TRIM_ORDER`. ``budget`` says what was trimmed; when even the core does not fit it
        says so (``over_budget``).

        Parameters
        ----------
        budget_tokens
            The budget, or None for no limit.

        Returns
        -------
        dict
        """
        pack = json.loads(json.dumps(self.to_dict()))
        trimmed: list[str] = []

        def size() -> int:
            return estimate_tokens({**pack, "budget": {"tokens": 99999, "budget": budget_tokens, "trimmed": trimmed,
                                                       "note": _BUDGET_NOTE}})

        if budget_tokens is not None:
            for label, shrink in _SHRINKERS:
                if size() <= budget_tokens:
                    break
                if shrink(pack):
                    trimmed.append(label)
            for name in TRIM_ORDER:
                if size() <= budget_tokens:
                    break
                if name in pack and name not in ("run",):
                    del pack[name]
                    trimmed.append(name)
        tokens = size()
        pack["budget"] = {"tokens": tokens, "budget": budget_tokens, "trimmed": trimmed, "note": _BUDGET_NOTE}
        if budget_tokens is not None and tokens > budget_tokens:
            pack["budget"]["over_budget"] = True
        return pack

    def to_json(self, budget_tokens: int | None = None, *, indent: int | None = 2) -> str:
        """The pack as JSON (trimmed to ``budget_tokens`` when given)."""
        document = self.to_dict() if budget_tokens is None else self.for_model(budget_tokens)
        return json.dumps(document, indent=indent, allow_nan=False)

    def get(self, dotted: str, default: Any = None) -> Any:
        """A value by dotted path (``"metrics.sharpe"``), or ``default``.

        Examples
        --------
        >>> EvidencePack({"metrics": {"sharpe": 1.5}}, "r").get("metrics.sharpe")
        1.5
        """
        node: Any = self.sections
        for part in dotted.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return default
        return node


_BUDGET_NOTE = ("token estimate = ceil(characters of compact JSON / 3.5); over the budget, lists are shortened and "
                "then sections dropped, least important first")


def _shrink_months(keep: int):
    def shrink(pack: dict) -> bool:
        months = pack.get("monthly_returns")
        if isinstance(months, list) and len(months) > keep:
            pack["monthly_returns"] = months[-keep:]
            return True
        return False
    return shrink


def _shrink_trades(keep: int):
    def shrink(pack: dict) -> bool:
        trades = pack.get("trades")
        changed = False
        if isinstance(trades, dict):
            for key in ("best", "worst", "recent"):
                if isinstance(trades.get(key), list) and len(trades[key]) > keep:
                    trades[key] = trades[key][:keep]
                    changed = True
            per_asset = trades.get("per_asset")
            if isinstance(per_asset, list) and len(per_asset) > 10:
                trades["per_asset"] = per_asset[:10]
                changed = True
        return changed
    return shrink


def _shrink_list(section: str, key: str | None, keep: int):
    def shrink(pack: dict) -> bool:
        node = pack.get(section)
        if key is not None:
            if not isinstance(node, dict):
                return False
            holder, name = node, key
        else:
            holder, name = pack, section
        values = holder.get(name)
        if isinstance(values, list) and len(values) > keep:
            holder[name] = values[:keep]
            return True
        return False
    return shrink


def _shrink_neighbours(pack: dict) -> bool:
    node = pack.get("parameter_sensitivity")
    changed = False
    if isinstance(node, dict):
        for knob in node.get("knobs") or []:
            if isinstance(knob, dict) and "neighbours" in knob:
                knob["neighbours"] = [{k: n.get(k) for k in ("value", "sharpe", "total_return")}
                                      for n in knob["neighbours"]]
                knob.pop("paths", None)
                changed = True
    return changed


_SHRINKERS = (
    ("monthly_returns (last 24 months kept)", _shrink_months(24)),
    ("trades (3 best, worst and recent kept)", _shrink_trades(3)),
    ("data.per_asset (first 10 kept)", _shrink_list("data", "per_asset", 10)),
    ("concentration.per_asset (top 10 kept)", _shrink_list("concentration", "per_asset", 10)),
    ("monthly_returns (last 12 months kept)", _shrink_months(12)),
    ("drawdowns.deepest (3 kept)", _shrink_list("drawdowns", "deepest", 3)),
    ("walk_forward.windows (3 kept)", _shrink_list("walk_forward", "windows", 3)),
    ("parameter_sensitivity (neighbour details)", _shrink_neighbours),
)


# ===================================================================================== the builder
class _Builder:
    def __init__(self, view: RunView, *, n_trials: int | None, trial_sharpes: Any, seed: int, n_simulations: int,
                 walk_forward: bool, sensitivity: bool, max_variant_runs: int, trials_per_window: int) -> None:
        self.view = view
        self.seed = int(seed)
        self.n_simulations = int(n_simulations)
        self.do_walk_forward = walk_forward
        self.do_sensitivity = sensitivity
        self.max_variant_runs = int(max_variant_runs)
        self.trials_per_window = int(trials_per_window)
        self.explicit_trials = n_trials
        self.explicit_trial_sharpes = None if trial_sharpes is None else np.asarray(trial_sharpes, dtype=np.float64)
        self.analysis: RunAnalysis = view.analysis
        self.metrics = view.metrics()
        self.ts_curve, self.curve = view.curve()
        self.ts = np.asarray(self.analysis.timestamps_ns, dtype=np.int64)
        self.returns = view.returns()
        self.periods = float(self.metrics.get("periods_per_year") or 252.0)
        self.bar_ns = median_bar_ns(self.ts)
        self.intraday = 0 < self.bar_ns < _NS_PER_DAY
        self.trades = view.closed_trades()
        self.all_trades = self.analysis.trades
        self.cash = float(self.analysis.initial_cash)
        self.sim_config = view.config.get("sim_config") or {}
        self.has_quotes = _has_quotes(view)
        self.costs = self._costs_modelled(view)
        self.variant_returns: dict[str, np.ndarray] = {}
        self.variant_sharpes: list[float] = []
        self.sensitivity_runs = 0

    def _costs_modelled(self, view: RunView) -> dict[str, Any]:
        """The costs the run charged: the bar engine's cost options; an event-engine run's maker and taker
        fees (its orders cross the book's spread in their fill prices)."""
        costs = {k: self.sim_config.get(k) for k in COST_FIELDS if self.sim_config.get(k)}
        source = view.config.get("data_source") or {}
        events = source.get("event_config") if isinstance(source, dict) and source.get("kind") == "events" else None
        if events:
            costs.update({k: events[k] for k in ("maker_fee", "taker_fee") if events.get(k)})
            costs["spread"] = "the order book's (paid in the fill prices of the orders that take liquidity)"
        return costs

    # ------------------------------------------------------------------ sections
    def run_section(self) -> dict[str, Any]:
        view = self.view
        strategy = view.strategy or {}
        source = view.config.get("data_source") or {}
        synthetic = None
        if view.mode == "strategy" and view.config.get("data_source"):
            synthetic = (strategy.get("data") or {}).get("source", "synthetic") == "synthetic" and not source.get("data")
        elif isinstance(source, dict) and "synthetic" in source:
            synthetic = True
        out = {
            "name": view.name, "mode": view.mode, "start": _stamp(self.ts[0], self.intraday),
            "end": _stamp(self.ts[-1], self.intraday), "years": self.metrics.get("years"),
            "bars": int(self.ts.shape[0]), "bar": format_duration(self.bar_ns) if self.bar_ns > 0 else None,
            "assets": list(self.analysis.assets), "initial_cash": self.cash, "can_rerun": view.can_rerun,
            "synthetic_data": synthetic,
        }
        if not view.can_rerun:
            out["rerun_note"] = view.rerun_note
        if view.notes:
            out["notes"] = list(view.notes)
        if view.optimization:
            out["from_parameter_search"] = view.optimization["source"]
        return out

    def strategy_section(self) -> dict[str, Any]:
        view = self.view
        if view.strategy:
            out: dict[str, Any] = {"config": _compact_strategy(view.strategy)}
            raw = getattr(view.rerunner, "raw_config", None)
            if raw:
                from backforge.research.params import ParameterSpace

                space = ParameterSpace.from_config(raw)
                out["declared_parameters"] = [
                    {"name": p.name, "value": p.default, "values": _value_summary(p.values), "paths": list(p.paths)}
                    for p in space.parameters]
                if space.constraints:
                    out["constraints"] = [c.text for c in space.constraints]
            return out
        signal = view.config.get("signal_config") or {}
        return {"signals": "entry/exit arrays given by the user (from_signals): decisions on a bar's close fill at "
                           "the next bar's open",
                "signal_config": {k: v for k, v in signal.items() if v not in (None, False, 0, 0.0, "gtc")},
                "costs": dict(self.costs)}

    def data_section(self) -> dict[str, Any]:
        prices = self.view.asset_prices()
        end_ns = int(self.ts[-1])
        start_ns = int(self.ts[0])
        per_asset = []
        alive = 0
        data = self.view.data
        for asset, (stamps, close) in prices.items():
            if close.size == 0:
                per_asset.append({"asset": asset, "bars": 0})
                continue
            row: dict[str, Any] = {
                "asset": asset, "first": _stamp(stamps[0], self.intraday), "last": _stamp(stamps[-1], self.intraday),
                "buy_and_hold_return": float(close[-1] / close[0] - 1.0) if close[0] > 0 else None,
            }
            if data is not None and asset in data.assets:
                column = data.close[:, data.assets.index(asset)]
                present = np.flatnonzero(np.isfinite(column))
                if present.size:
                    span = column[present[0]:present[-1] + 1]
                    missing = int(np.count_nonzero(~np.isfinite(span)))
                    row["bars"] = int(present.size)
                    row["missing_bars"] = missing
                    row["missing_share"] = missing / max(span.shape[0], 1)
            # alive: trades until the last bar (within five bars of the end)
            tolerance = 5 * max(self.bar_ns, 1)
            row["trades_to_end"] = bool(stamps[-1] >= end_ns - tolerance)
            row["listed_from_start"] = bool(stamps[0] <= start_ns + tolerance)
            alive += row["trades_to_end"]
            per_asset.append(row)
        gaps = np.diff(self.ts)
        week = 7 * _NS_PER_DAY
        long_gaps = np.flatnonzero((gaps > week) & (gaps > 5 * max(self.bar_ns, 1)))
        longest = sorted(long_gaps.tolist(), key=lambda i: -int(gaps[i]))[:3]
        positive = [r["buy_and_hold_return"] for r in per_asset if r.get("buy_and_hold_return") is not None]
        return {
            "symbols": list(self.analysis.assets), "start": _stamp(start_ns, self.intraday),
            "end": _stamp(end_ns, self.intraday), "years": self.metrics.get("years"), "bars": int(self.ts.shape[0]),
            "bar": format_duration(self.bar_ns) if self.bar_ns > 0 else None,
            "assets_trading_to_end": int(alive), "assets_with_positive_buy_and_hold": int(sum(v > 0 for v in positive)),
            "full_data_available": data is not None,
            "gaps": {"longer_than_a_week": int(long_gaps.size),
                     "longest": [{"from": _stamp(self.ts[i], self.intraday), "to": _stamp(self.ts[i + 1], self.intraday),
                                  "days": float(gaps[i] / _NS_PER_DAY)} for i in longest]},
            "per_asset": per_asset,
        }

    def metrics_section(self) -> dict[str, Any]:
        out = {k: v for k, v in self.metrics.items() if k not in _DROPPED_METRIC_KEYS and k not in ("start", "end")}
        out["avg_trade_duration_days"] = float(self.metrics.get("avg_trade_duration_ns") or 0) / _NS_PER_DAY
        out["max_trade_duration_days"] = float(self.metrics.get("max_trade_duration_ns") or 0) / _NS_PER_DAY
        out["max_drawdown_duration_days"] = float(self.metrics.get("max_drawdown_duration") or 0) * self.bar_ns / _NS_PER_DAY
        return out

    def period_sections(self) -> tuple[list[dict], list[dict]]:
        from backforge.results.metrics import period_returns

        yearly = period_returns(self.ts_curve, self.curve, "year")
        bench = self.view.benchmark_curve()
        bench_years: dict[int, float] = {}
        if bench is not None:
            table = period_returns(self.ts_curve, np.r_[self.cash, bench], "year")
            bench_years = dict(zip(table["year"].to_list(), table["return"].to_list()))
        years = [{"year": int(y), "return": float(r), "bars": int(n), "benchmark": bench_years.get(int(y))}
                 for y, r, n in zip(yearly["year"], yearly["return"], yearly["n_bars"])]
        monthly = period_returns(self.ts_curve, self.curve, "month")
        months = [{"month": f"{int(y)}-{int(m):02d}", "return": float(r)}
                  for y, m, r in zip(monthly["year"], monthly["month"], monthly["return"])]
        return years, months

    def drawdown_section(self) -> dict[str, Any]:
        table = self.analysis.drawdowns
        deepest = []
        for row in table.head(5).iter_rows(named=True):
            deepest.append({
                "start": _stamp(_ns(row["start"]), self.intraday), "valley": _stamp(_ns(row["valley"]), self.intraday),
                "recovery": None if row["recovery"] is None else _stamp(_ns(row["recovery"]), self.intraday),
                "depth": row["depth"], "bars": row["duration_bars"],
                "days": row["duration"].total_seconds() / 86_400 if row["duration"] is not None else None,
            })
        durations = table["duration"].cast(pl.Int64).to_numpy() if table.height else np.zeros(0)
        peaks = np.maximum.accumulate(self.curve)
        under = float(np.mean(self.curve[1:] < peaks[1:] * (1 - 1e-12))) if self.curve.size > 1 else 0.0
        return {
            "deepest": deepest, "count": int(table.height),
            "longest_days": float(durations.max() / _NS_PER_DAY) if durations.size else 0.0,
            "time_under_water": under,
            "recovered_from_deepest": bool(deepest and deepest[0]["recovery"] is not None),
        }

    def trade_section(self) -> dict[str, Any]:
        trades = self.trades
        m = self.metrics
        keys = ("n_trades", "win_rate", "profit_factor", "expectancy", "expectancy_pct", "avg_win", "avg_loss",
                "payoff_ratio", "kelly", "sqn", "best_trade", "worst_trade", "longest_win_streak", "longest_loss_streak")
        stats = {k: m.get(k) for k in keys}
        stats["avg_trade_duration_days"] = float(m.get("avg_trade_duration_ns") or 0) / _NS_PER_DAY
        out: dict[str, Any] = {"statistics": stats}
        if trades.height:
            rets = trades["return"].to_numpy().astype(np.float64)
            stats["long_trades"] = int((trades["direction"] == "long").sum())
            stats["short_trades"] = int((trades["direction"] == "short").sum())
            stats["avg_bars_held"] = float(trades["bars"].mean())
            stats["max_bars_held"] = int(trades["bars"].max())
            stats["max_bars_held_share_of_period"] = float(trades["bars"].max()) / max(len(self.ts) - 1, 1)
            stats["trade_return_skew"] = skewness(rets)
            stats["median_trade_return"] = float(np.median(rets))
            reasons = trades.group_by("exit_reason").agg(pl.len().alias("n")).sort("n", "exit_reason", descending=[True, False])
            out["exit_reasons"] = {r["exit_reason"]: int(r["n"]) for r in reasons.iter_rows(named=True)}
            per_asset = (trades.group_by("asset").agg(pl.len().alias("trades"), pl.col("pnl").sum().alias("pnl"),
                                                      (pl.col("pnl") > 0).mean().alias("win_rate"))
                         .sort("pnl", "asset", descending=[True, False]))
            out["per_asset"] = [dict(r) for r in per_asset.iter_rows(named=True)]
            ordered = trades.with_row_index("n")
            best = ordered.sort("return", "n", descending=[True, False]).head(5)
            worst = ordered.sort("return", "n").head(5)
            recent = ordered.sort("exit_bar", "n", descending=[True, True]).head(5)
            out["best"] = [self._trade_row(r) for r in best.iter_rows(named=True)]
            out["worst"] = [self._trade_row(r) for r in worst.iter_rows(named=True)]
            out["recent"] = [self._trade_row(r) for r in recent.iter_rows(named=True)]
        if self.all_trades.height:
            # the longest holding counts positions still open at the end: a buy-and-hold never closes
            longest = float(self.all_trades["bars"].max())
            stats["max_bars_held_share_of_period"] = longest / max(len(self.ts) - 1, 1)
        open_trades = self.all_trades.filter(pl.col("is_open"))
        out["open_at_end"] = {"positions": int(open_trades.height),
                              "unrealized_pnl": float(open_trades["pnl"].sum()) if open_trades.height else 0.0}
        return out

    def _trade_row(self, row: dict) -> dict[str, Any]:
        return {"asset": row["asset"], "direction": row["direction"],
                "entry": _stamp(_ns(row["entry_time"]), self.intraday), "exit": _stamp(_ns(row["exit_time"]), self.intraday),
                "return": row["return"], "pnl": row["pnl"], "bars": row["bars"], "exit_reason": row["exit_reason"]}

    def concentration_section(self) -> dict[str, Any]:
        trades = self.trades
        if trades.height == 0:
            return {"n_trades": 0}
        pnl = trades["pnl"].to_numpy().astype(np.float64)
        net = float(pnl.sum())
        ordered = np.sort(pnl)[::-1]
        out: dict[str, Any] = {"n_trades": int(pnl.size), "net_pnl": net, "gross_profit": float(pnl[pnl > 0].sum()),
                               "gross_loss": float(pnl[pnl < 0].sum())}
        for k in (1, 5, 10):
            top = float(ordered[:k].sum())
            out[f"top_{k}_share"] = top / net if net > 0 else None
            out[f"pnl_without_top_{k}"] = net - top
        asset_pnl = trades.group_by("asset").agg(pl.col("pnl").sum()).sort("pnl", "asset", descending=[True, False])
        out["per_asset"] = [{"asset": r["asset"], "pnl": r["pnl"], "share": r["pnl"] / net if net > 0 else None}
                            for r in asset_pnl.iter_rows(named=True)]
        years = (trades.with_columns(pl.col("exit_time").dt.year().alias("year")).group_by("year")
                 .agg(pl.col("pnl").sum()).sort("year"))
        out["per_year"] = [{"year": int(r["year"]), "pnl": r["pnl"], "share": r["pnl"] / net if net > 0 else None}
                           for r in years.iter_rows(named=True)]
        return out

    def cost_section(self) -> dict[str, Any]:
        m = self.metrics
        modelled = dict(self.costs)
        if self.has_quotes:
            # buys filled at the ask and sells at the bid: the spread is paid through the prices
            modelled["spread"] = "bid/ask quotes in the data (paid in the fill prices, not itemised)"
        paid = float((m.get("fees") or 0.0) + (m.get("slippage") or 0.0))
        net = float(self.curve[-1] - self.cash)
        gross = net + paid
        out: dict[str, Any] = {
            "costs_modelled": modelled, "costs_paid": paid, "net_pnl": net, "gross_pnl_before_costs": gross,
            "cost_share_of_gross_pnl": paid / gross if gross > 0 else None,
            "annual_turnover": m.get("annual_turnover"), "spread_from_quotes": self.has_quotes,
        }
        base = {"multiplier": 1.0, "total_return": m["total_return"], "cagr": m["cagr"], "sharpe": m["sharpe"],
                "max_drawdown": m["max_drawdown"], "n_trades": m["n_trades"], "costs_paid": paid}
        rerun = self.view.rerunner
        rows = [base]
        if rerun is not None:
            out["method"] = "rerun"
            for k in (2.0, 5.0):
                try:
                    rows.append({"multiplier": k, **_headline(rerun.run(cost_multiplier=k))})
                except BackforgeError as exc:
                    rows.append({"multiplier": k, "error": str(exc)})
            if not modelled:
                out["assumed_costs"] = dict(ASSUMED_COSTS)
                assumed = []
                for k in (1.0, 2.0):
                    try:
                        assumed.append({"multiplier": k, **_headline(rerun.run(cost_multiplier=k,
                                                                               cost_overrides=ASSUMED_COSTS))})
                    except BackforgeError as exc:
                        assumed.append({"multiplier": k, "error": str(exc)})
                out["at_assumed_costs"] = assumed
        else:
            out["method"] = "estimate"
            out["note"] = ("not re-run: P&L at k x costs estimated as net P&L - (k - 1) x costs paid; "
                           + (self.view.rerun_note or ""))
            for k in (2.0, 5.0):
                estimated = net - (k - 1.0) * paid
                rows.append({"multiplier": k, "total_return": estimated / self.cash, "estimated": True})
        out["runs"] = rows
        returns = [(r["multiplier"], r.get("total_return")) for r in rows if r.get("total_return") is not None]
        out["breakeven_multiplier"] = _breakeven(returns) if modelled else None
        return out

    def sensitivity_section(self) -> dict[str, Any]:
        view = self.view
        if view.optimization and view.optimization.get("table") is not None:
            table_result = self._search_neighbours(view.optimization)
            if table_result is not None:
                return table_result
        rerun = view.rerunner
        if not self.do_sensitivity:
            return {"method": "skipped"}
        if rerun is None:
            return {"method": "unavailable", "note": view.rerun_note}
        if isinstance(rerun, SignalRerunner):
            return self._signal_neighbours(rerun)
        if isinstance(rerun, ClassRerunner):
            return self._class_neighbours(rerun)
        if rerun.raw_config:
            return self._declared_neighbours(rerun)
        return self._knob_neighbours(rerun)

    def _base_point(self) -> dict[str, Any]:
        m = self.metrics
        return {"sharpe": m["sharpe"], "total_return": m["total_return"], "max_drawdown": m["max_drawdown"],
                "n_trades": m["n_trades"]}

    def _run_variant(self, label: str, **kwargs: Any) -> dict[str, Any]:
        self.sensitivity_runs += 1
        try:
            result = self.view.rerunner.run(**kwargs)
        except BackforgeError as exc:
            return {"error": str(exc).splitlines()[0]}
        headline = _headline(result)
        equity = np.r_[float(result.initial_cash), np.asarray(result.equity_values, dtype=np.float64)]
        with np.errstate(divide="ignore", invalid="ignore"):
            rets = np.where(equity[:-1] > 0, equity[1:] / equity[:-1] - 1.0, 0.0)
        if rets.shape[0] == self.returns.shape[0]:
            self.variant_returns[label] = rets
        self.variant_sharpes.append(float(headline["sharpe"]))
        return {k: headline[k] for k in ("sharpe", "total_return", "max_drawdown", "n_trades")}

    def _summarise_knobs(self, method: str, knobs: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        base = self._base_point()
        chosen = float(base["sharpe"])
        worst_drop = 0.0
        worst_label = None
        cliff = False
        neighbour_sharpes = []
        for knob in knobs:
            drops = []
            for n in knob["neighbours"]:
                if n.get("sharpe") is None:
                    continue
                neighbour_sharpes.append(float(n["sharpe"]))
                drop = (chosen - float(n["sharpe"])) / abs(chosen) if abs(chosen) > 1e-9 else 0.0
                drops.append(drop)
                sign_flip = base["total_return"] > 0 and (n.get("total_return") or 0.0) <= 0
                if (chosen > 0.2 and drop > 0.5) or (sign_flip and chosen > 0.2):
                    knob["cliff"] = True
                    cliff = True
            knob["worst_relative_sharpe_drop"] = max(drops) if drops else None
            if drops and max(drops) > worst_drop:
                worst_drop, worst_label = max(drops), knob["name"]
            knob.setdefault("cliff", False)
        isolated = bool(neighbour_sharpes) and chosen > 0.2 and chosen >= max(neighbour_sharpes) and \
            (chosen - float(np.median(neighbour_sharpes))) > 0.5 * abs(chosen)
        out = {"method": method, "chosen": base, "knobs": knobs,
               "summary": {"neighbours_run": len(neighbour_sharpes), "worst_relative_sharpe_drop": worst_drop,
                           "worst_knob": worst_label, "cliff": cliff, "isolated_peak": isolated,
                           "median_neighbour_sharpe": float(np.median(neighbour_sharpes)) if neighbour_sharpes else None}}
        if extra:
            out.update(extra)
        return out

    def _search_neighbours(self, optimization: dict[str, Any]) -> dict[str, Any] | None:
        table: pl.DataFrame = optimization["table"]
        params = [c for c in table.columns if c.startswith("param.")]
        if not params or "sharpe" not in table.columns:
            return None
        ok = table.filter(pl.col("error").is_null()) if "error" in table.columns else table
        rank = 1
        name = self.view.name
        if name.startswith("best-") and name[5:].isdigit():
            rank = int(name[5:])
        metric = (optimization["summary"].get("metric") or ["sharpe"])[0]
        if metric in ok.columns:
            descending = metric not in ("annual_volatility", "ulcer_index")
            ok = ok.sort(metric, descending=descending, maintain_order=True)
        if rank > ok.height:
            return None
        chosen = ok.row(rank - 1, named=True)
        knobs = []
        for column in params:
            values = sorted(v for v in ok[column].unique().to_list() if v is not None)
            if chosen[column] not in values:
                continue
            i = values.index(chosen[column])
            neighbours = []
            for j in (i - 1, i + 1):
                if not 0 <= j < len(values):
                    continue
                same = ok
                for other in params:
                    target = values[j] if other == column else chosen[other]
                    same = same.filter(pl.col(other) == target)
                if same.height:
                    row = same.row(0, named=True)
                    neighbours.append({"value": values[j], "sharpe": row.get("sharpe"),
                                       "total_return": row.get("total_return"), "n_trades": row.get("trades")})
                    self.variant_sharpes.append(float(row.get("sharpe") or 0.0))
            knobs.append({"name": column.removeprefix("param."), "value": chosen[column], "neighbours": neighbours})
        return self._summarise_knobs("parameter_search_trials", knobs,
                                     {"note": "neighbours read from the search's trials table (full period)"})

    def _declared_neighbours(self, rerun: StrategyRerunner) -> dict[str, Any]:
        from backforge.research.params import ParameterSpace

        space = ParameterSpace.from_config(rerun.raw_config)
        chosen = space.defaults()
        knobs = []
        budget = self.max_variant_runs
        for p in space.parameters:
            values = list(p.values)
            if chosen[p.name] not in values:
                continue
            i = values.index(chosen[p.name])
            neighbours = []
            for j in (i - 1, i + 1):
                if not 0 <= j < len(values) or budget <= 0:
                    continue
                candidate = {**chosen, p.name: values[j]}
                if not space.allowed(candidate):
                    neighbours.append({"value": values[j], "skipped": "excluded by the constraints"})
                    continue
                budget -= 1
                config = _resolved(space.instantiate(candidate))
                neighbours.append({"value": values[j], **self._run_variant(f"{p.name}={values[j]}", config=config)})
            knobs.append({"name": p.name, "value": chosen[p.name], "paths": list(p.paths), "neighbours": neighbours})
        return self._summarise_knobs("declared_parameters", knobs)

    def _knob_neighbours(self, rerun: StrategyRerunner) -> dict[str, Any]:
        from backforge.judge.configpath import find_knobs, neighbour_values, set_path

        config = rerun.config
        knobs = []
        budget = self.max_variant_runs
        for knob in find_knobs(config, limit=max(1, self.max_variant_runs // 2)):
            neighbours = []
            for value in neighbour_values(knob.value, integer=knob.integer):
                if budget <= 0:
                    break
                budget -= 1
                variant = config
                for path in knob.paths:
                    variant = set_path(variant, path, value)
                neighbours.append({"value": value, **self._run_variant(f"{knob.label}->{value}", config=variant)})
            knobs.append({"name": knob.label, "value": knob.value, "paths": list(knob.paths), "neighbours": neighbours})
        return self._summarise_knobs("config_numbers", knobs,
                                     {"note": "the strategy declares no parameters: its windows, thresholds and stop "
                                              "distances were moved 20% either way"})

    def _signal_neighbours(self, rerun: SignalRerunner) -> dict[str, Any]:
        knobs = []
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = rerun.config.get(name)
            if isinstance(value, (int, float)) and value > 0:
                from backforge.judge.configpath import neighbour_values

                neighbours = [{"value": v, **self._run_variant(f"{name}={v}", config={name: v})}
                              for v in neighbour_values(float(value), integer=False)]
                knobs.append({"name": name, "value": value, "neighbours": neighbours})
        if not knobs:
            return {"method": "unavailable", "note": "signals come from user arrays; only stop distances can be moved "
                                                     "and this run has none"}
        return self._summarise_knobs("signal_stops", knobs)

    def _class_neighbours(self, rerun: ClassRerunner) -> dict[str, Any]:
        """Each numeric parameter of a Strategy class moved 20 % down and up, the others kept."""
        from backforge.judge.configpath import neighbour_values

        knobs = []
        for name, value in rerun.parameters.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                continue
            neighbours = [{"value": v, **self._run_variant(f"{name}={v}", config={name: v})}
                          for v in neighbour_values(value, integer=isinstance(value, int))]
            knobs.append({"name": name, "value": value, "neighbours": neighbours})
        if not knobs:
            return {"method": "unavailable", "note": "the class has no positive numeric parameter to move"}
        return self._summarise_knobs("class_parameters", knobs)

    def monte_carlo_section(self) -> dict[str, Any]:
        """Trade bootstrap and reshuffle, and a stationary block bootstrap of bar returns, by
        :func:`backforge.research.montecarlo.monte_carlo` (seeded: the same run gives the same bands)."""
        from backforge.research.montecarlo import monte_carlo

        out: dict[str, Any] = {"seed": self.seed, "n_simulations": self.n_simulations, "ruin_drawdown": 0.5}
        realized = {"total_return": float(self.curve[-1] / self.cash - 1.0), "max_drawdown": max_drawdown(self.curve),
                    "sharpe": float(self.metrics.get("sharpe") or 0.0)}
        out["realized"] = realized
        values = self._trade_values()
        if values is not None and values.size >= 5:
            years = float(self.metrics.get("years") or 0.0)
            per_year = values.size / years if years > 0 else 1.0
            try:
                boot = monte_carlo(values, method="bootstrap", n_simulations=self.n_simulations, seed=self.seed,
                                   periods_per_year=per_year)
                shuffle = monte_carlo(values, method="reshuffle", n_simulations=self.n_simulations, seed=self.seed)
            except BackforgeError as exc:
                out["trade_bootstrap"] = {"error": str(exc).splitlines()[0]}
            else:
                finals = boot.final_equity / boot.initial_equity - 1.0
                trade_dd = float(shuffle.original["max_drawdown"])
                out["trade_bootstrap"] = {
                    "n_simulations": boot.n_simulations, "n_trades": int(values.size),
                    "model": "closed trades' returns on equity, drawn with replacement, compounded",
                    "total_return": _quantiles(finals), "max_drawdown": _quantiles(boot.max_drawdown),
                    "sharpe_per_year_of_trades": _quantiles(boot.sharpe),
                    "probability_of_loss": float(np.mean(finals < 0.0)),
                    "probability_of_ruin": float(boot.probability_of_ruin),
                }
                out["trade_reshuffle"] = {
                    "max_drawdown": _quantiles(shuffle.max_drawdown), "realized_trade_sequence_drawdown": trade_dd,
                    "share_of_orders_with_deeper_drawdown": float(np.mean(shuffle.max_drawdown < trade_dd - 1e-12)),
                }
        returns, periods = self._daily_returns()
        if returns.size >= 20:
            try:
                block = monte_carlo(returns, method="block_bootstrap", n_simulations=self.n_simulations, seed=self.seed,
                                    periods_per_year=periods)
            except BackforgeError as exc:
                out["block_bootstrap"] = {"error": str(exc).splitlines()[0]}
            else:
                finals = block.final_equity / block.initial_equity - 1.0
                steps = np.unique(np.linspace(0, block.n_steps, 9).round().astype(np.int64))
                fan = block.bands.filter(pl.col("step").is_in(steps.tolist()))
                out["block_bootstrap_fan"] = {
                    "note": "cumulative return at evenly spaced steps: 5/50/95% of the simulated paths and the run",
                    "rows": [{"step": int(row["step"]), "p5": row["p5"] / block.initial_equity - 1.0,
                              "p50": row["p50"] / block.initial_equity - 1.0,
                              "p95": row["p95"] / block.initial_equity - 1.0,
                              "run": row["original"] / block.initial_equity - 1.0}
                             for row in fan.iter_rows(named=True)]}
                out["block_bootstrap"] = {
                    "n_simulations": block.n_simulations, "block_length": block.block_length,
                    "returns": "daily" if periods != self.periods else "per bar",
                    "total_return": _quantiles(finals), "max_drawdown": _quantiles(block.max_drawdown),
                    "sharpe": _quantiles(block.sharpe), "probability_of_loss": float(np.mean(finals < 0.0)),
                    "probability_of_ruin": float(block.probability_of_ruin),
                }
        return out

    def _trade_values(self) -> np.ndarray | None:
        trades = self.trades
        if trades.height == 0:
            return None
        equity = np.asarray(self.analysis.equity_values, dtype=np.float64)
        entry = trades["entry_bar"].to_numpy().astype(np.int64)
        before = np.where(entry >= 1, equity[np.clip(entry - 1, 0, equity.shape[0] - 1)], self.cash)
        if (before <= 0).any():
            return None
        values = trades["pnl"].to_numpy().astype(np.float64) / before
        return values[np.isfinite(values)]

    def _daily_returns(self) -> tuple[np.ndarray, float]:
        if self.returns.shape[0] <= 5000 or not self.intraday:
            return self.returns.astype(np.float64), self.periods
        days = self.ts // _NS_PER_DAY
        firsts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        growth = np.multiply.reduceat(1.0 + self.returns, firsts) - 1.0
        per_day = self.periods / max(np.mean(np.diff(np.r_[firsts, days.shape[0]])), 1.0)
        return growth, per_day

    def walk_forward_section(self) -> dict[str, Any]:
        rerun = self.view.rerunner
        if not self.do_walk_forward:
            return {"status": "skipped"}
        if not isinstance(rerun, StrategyRerunner):
            return {"status": "not_run", "reason": self.view.rerun_note or
                    "walk-forward needs a strategy config with declared parameters"}
        if not rerun.raw_config:
            return {"status": "not_run", "reason": "the strategy declares no parameters ({param: name, range: [...]}); "
                                                   "walk-forward re-optimizes declared parameters in each window"}
        from backforge.research.optimize import LocalExecutor
        from backforge.research.params import ParameterSpace
        from backforge.research.walkforward import walk_forward

        data = rerun.data.slice(None, rerun.end_ns)
        n_bars = data.n_bars
        in_sample, out_of_sample = n_bars // 2, max(2, n_bars // 6)
        space = ParameterSpace.from_config(rerun.raw_config)
        size = space.size()
        method = "grid" if size <= self.trials_per_window else "random"
        try:
            wf = walk_forward(rerun.raw_config, data, in_sample=in_sample, out_of_sample=out_of_sample, method=method,
                              samples=self.trials_per_window, seed=self.seed, executor=LocalExecutor(1),
                              fundamentals=rerun.fundamentals)
        except BackforgeError as exc:
            return {"status": "failed", "reason": str(exc).splitlines()[0]}
        summary = wf.summary()
        windows = []
        for row in wf.windows.iter_rows(named=True):
            windows.append({k: v for k, v in row.items() if k not in ("is_start",)})
        return {"status": "run", "method": method, "in_sample_bars": in_sample, "out_of_sample_bars": out_of_sample,
                "efficiency": summary["walk_forward_efficiency"], "oos_total_return": summary["oos_total_return"],
                "trials": summary["trials"], "windows": windows, "parameter_stability": summary["parameter_stability"],
                "runtime": summary["runtime"]}

    def stability_section(self) -> dict[str, Any]:
        r = self.returns
        t = r.shape[0]
        out: dict[str, Any] = {}
        if t >= 20:
            parts = []
            for name, pieces in (("halves", 2), ("thirds", 3)):
                rows = []
                for chunk in np.array_split(r, pieces):
                    rows.append({"sharpe": sharpe_ratio(chunk, self.periods),
                                 "annual_return": float(np.prod(1.0 + chunk) ** (self.periods / max(chunk.size, 1)) - 1.0)
                                 if np.prod(1.0 + chunk) > 0 else -1.0})
                out[name] = rows
                parts.append(rows)
        end = int(self.ts[-1])
        for years in (1, 2):
            cut = end - int(years * _NS_PER_YEAR)
            if self.ts[0] < cut:
                i = int(np.searchsorted(self.ts_curve, cut, side="right")) - 1
                out[f"last_{years}y_return"] = float(self.curve[-1] / self.curve[max(i, 0)] - 1.0)
                before_years = (cut - int(self.ts[0])) / _NS_PER_YEAR
                growth = self.curve[max(i, 0)] / self.cash
                out[f"before_last_{years}y_annual_return"] = float(growth ** (1.0 / before_years) - 1.0) \
                    if before_years > 0.25 and growth > 0 else None
        return out

    def overfitting_section(self) -> dict[str, Any]:
        from backforge.research import stats

        view = self.view
        trial_sharpes = None
        if self.explicit_trials is not None:
            n_trials, source = int(self.explicit_trials), "given by the caller"
        elif view.optimization:
            n_trials, source = int(view.optimization["trials"]), view.optimization["source"]
        else:
            n_trials, source = 1, "a single backtest (no search recorded; pass the number of trials tried if there was one)"
        n_trials = max(n_trials, 1)
        variance_source = None
        if self.explicit_trial_sharpes is not None and self.explicit_trial_sharpes.size >= 2:
            trial_sharpes = self.explicit_trial_sharpes / math.sqrt(self.periods)
            variance_source = "the trials' Sharpe ratios given by the caller"
        elif view.optimization and view.optimization.get("table") is not None and "sharpe" in view.optimization["table"].columns:
            column = view.optimization["table"]["sharpe"].drop_nulls().to_numpy().astype(np.float64)
            column = column[np.isfinite(column)]
            if column.size >= 2:
                trial_sharpes = column / math.sqrt(self.periods)
                variance_source = "the Sharpe ratios of the search's trials"
        elif len(self.variant_sharpes) >= 2:
            trial_sharpes = np.r_[self.metrics["sharpe"], self.variant_sharpes] / math.sqrt(self.periods)
            variance_source = "the Sharpe ratios of the parameter neighbours"
        out: dict[str, Any] = {"n_trials": n_trials, "trials_source": source}
        r = self.returns
        if r.shape[0] < 3 or np.std(r) <= 1e-13:
            out["note"] = "no return dispersion: no Sharpe statistics"
            return out
        try:
            st = stats.sharpe_statistics(r)
            out["sharpe_per_period"] = st.sharpe
            out["skew"] = st.skew
            out["kurtosis"] = st.kurtosis
            out["n_obs"] = st.n_obs
            out["psr"] = float(stats.probabilistic_sharpe_ratio(st.sharpe, st.n_obs, st.skew, st.kurtosis))
            if n_trials > 1:
                if trial_sharpes is not None:
                    variance = float(np.var(trial_sharpes, ddof=1))
                else:
                    variance = (1.0 + 0.5 * st.sharpe ** 2) / st.n_obs
                    variance_source = "assumed: the estimation noise of a Sharpe ratio over this many returns"
                dsr = stats.deflated_sharpe_ratio(sharpe=st.sharpe, n_obs=st.n_obs, skew=st.skew, kurtosis=st.kurtosis,
                                                  n_trials=n_trials, sharpe_variance=variance)
                out["dsr"] = dsr.deflated_sharpe
                out["expected_max_sharpe_per_period"] = dsr.benchmark_sharpe
                out["expected_max_sharpe_annual"] = dsr.benchmark_sharpe * math.sqrt(self.periods)
                out["sharpe_variance_source"] = variance_source
            else:
                out["dsr"] = out["psr"]
                out["dsr_note"] = "one trial: the deflated Sharpe ratio equals the probabilistic Sharpe ratio"
            mintrl = float(stats.minimum_track_record_length(st.sharpe, st.skew, st.kurtosis))
            out["min_track_record_bars"] = mintrl if math.isfinite(mintrl) else "inf"
            out["min_track_record_years"] = mintrl / self.periods if math.isfinite(mintrl) else "inf"
            out["track_record_years"] = st.n_obs / self.periods
        except BackforgeError as exc:
            out["note"] = str(exc).splitlines()[0]
        pbo = None
        if view.optimization:
            saved = (view.optimization["summary"].get("overfitting") or {}).get("pbo")
            if isinstance(saved, dict) and "pbo" in saved:
                pbo = {"value": saved["pbo"], "source": view.optimization["source"],
                       "probability_of_loss": saved.get("probability_of_loss")}
        if pbo is None and len(self.variant_returns) >= 3:
            matrix = np.column_stack([r, *self.variant_returns.values()])
            rows = matrix.shape[0]
            splits = 16 if rows >= 320 else 8 if rows >= 64 else 0
            if splits:
                try:
                    result = stats.probability_of_backtest_overfitting(matrix, n_splits=splits)
                    pbo = {"value": result.pbo, "source": f"the chosen parameters and {matrix.shape[1] - 1} neighbours "
                           f"(CSCV, {splits} blocks)", "probability_of_loss": result.probability_of_loss}
                except BackforgeError:
                    pbo = None
        out["pbo"] = pbo
        return out

    def benchmark_section(self) -> dict[str, Any]:
        bench = self.view.benchmark_curve()
        if bench is None:
            return {"available": False}
        try:
            own = self.analysis.benchmark_metrics("equal_weight")
        except BackforgeError:
            own = None
        b_curve = np.r_[self.cash, bench]
        with np.errstate(divide="ignore", invalid="ignore"):
            b_returns = np.where(b_curve[:-1] > 0, b_curve[1:] / b_curve[:-1] - 1.0, 0.0)
        r = self.returns
        correlation = float(np.corrcoef(r, b_returns)[0, 1]) if r.size > 2 and np.std(r) > 0 and np.std(b_returns) > 0 else 0.0
        m = self.metrics
        out = {"name": (own or {}).get("name", "equal-weight buy & hold"), "correlation": correlation}
        for key in ("alpha", "beta", "information_ratio", "tracking_error"):
            if key in m:
                out[key] = m[key]
        if own:
            out.update({f"benchmark_{k}": own.get(k) for k in ("total_return", "cagr", "sharpe", "max_drawdown",
                                                               "annual_volatility")})
        out.update({f"strategy_{k}": m.get(k) for k in ("total_return", "cagr", "sharpe", "max_drawdown")})
        return out

    def regime_section(self) -> dict[str, Any]:
        bench = self.view.benchmark_curve()
        r = self.returns
        t = r.shape[0]
        if bench is None or t < 60:
            return {"available": False}
        b_curve = np.r_[self.cash, bench]
        with np.errstate(divide="ignore", invalid="ignore"):
            b_returns = np.where(b_curve[:-1] > 0, b_curve[1:] / b_curve[:-1] - 1.0, 0.0)
        window = int(min(max(round(self.periods / 4), 5), t // 4))
        trailing = np.full(t, np.nan)
        trailing[window:] = b_curve[window:t] / b_curve[:t - window] - 1.0  # known at the previous bar's close
        cumsum = np.cumsum(np.r_[0.0, b_returns])
        cumsq = np.cumsum(np.r_[0.0, b_returns ** 2])
        vol = np.full(t, np.nan)
        idx = np.arange(window, t)
        mean = (cumsum[idx] - cumsum[idx - window]) / window
        vol[window:] = np.sqrt(np.maximum((cumsq[idx] - cumsq[idx - window]) / window - mean ** 2, 0.0))
        known = np.isfinite(trailing) & np.isfinite(vol)
        median_vol = float(np.median(vol[known])) if known.any() else 0.0
        masks = {"trend_up": known & (trailing > 0), "trend_down": known & (trailing <= 0),
                 "high_volatility": known & (vol > median_vol), "low_volatility": known & (vol <= median_vol)}
        rows = []
        for name, mask in masks.items():
            if mask.sum() < 5:
                continue
            part, bpart = r[mask], b_returns[mask]
            rows.append({"regime": name, "bar_share": float(mask.mean()),
                         "strategy_annual_return": float(part.mean() * self.periods),
                         "strategy_sharpe": sharpe_ratio(part, self.periods),
                         "strategy_growth": float(np.prod(1.0 + part) - 1.0),
                         "benchmark_annual_return": float(bpart.mean() * self.periods)})
        return {"available": True, "window_bars": window,
                "method": f"benchmark's trailing {window}-bar return (trend) and volatility vs its median (volatility), "
                          "known before each bar", "regimes": rows}

    def exposure_section(self) -> dict[str, Any]:
        equity_table = self.analysis.equity
        equity = equity_table["equity"].to_numpy().astype(np.float64)
        gross = equity_table["gross_exposure"].to_numpy().astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            leverage = np.where(equity > 0, gross / equity, np.where(gross > 0, np.inf, 0.0))
        limit = float(self.sim_config.get("leverage") or 1.0)
        margin = float(self.sim_config.get("maintenance_margin") or 0.0)
        finite = leverage[np.isfinite(leverage)]
        out: dict[str, Any] = {
            "exposure_time": self.metrics.get("exposure_time"), "avg_gross_leverage": self.metrics.get("avg_gross_leverage"),
            "max_gross_leverage": float(finite.max()) if finite.size else 0.0,
            "p95_gross_leverage": float(np.quantile(finite, 0.95)) if finite.size else 0.0,
            "leverage_limit": limit, "maintenance_margin": margin,
            "liquidations": int((self.all_trades["exit_reason"] == "liquidation").sum()) if self.all_trades.height else 0,
            "equity_ever_non_positive": bool((equity <= 0).any()),
        }
        if margin > 0:
            invested = gross > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                headroom = np.where(invested, equity / (margin * gross), np.inf)
            out["min_margin_headroom"] = float(headroom.min()) if invested.any() else None
            out["bars_within_1_5x_of_margin_call"] = int(np.count_nonzero(headroom < 1.5))
        return out

    def lookahead_section(self) -> dict[str, Any]:
        fills = self.analysis.fills
        orders = self.analysis.orders
        out: dict[str, Any] = {"fills": int(fills.height)}
        if fills.height and orders.height and "created_bar" in orders.columns:
            # A decision (entry or exit) decided on bar t may fill from bar t + 1 on. Orders the engine
            # creates itself are not decisions: bracket children are born when their entry fills and may
            # fill in that same bar (the fill rules allow it), liquidations and end-of-data closes fill on
            # the bar that triggers them. For those, only a fill before their creation bar is early.
            joined = fills.join(orders.select("order_id", "created_bar", "order_type",
                                              pl.col("role").alias("order_role")), on="order_id", how="left")
            decision = pl.col("order_role").is_in(list(_DECISION_ROLES))
            early = joined.filter(pl.when(decision).then(pl.col("bar") <= pl.col("created_bar"))
                                  .otherwise(pl.col("bar") < pl.col("created_bar")))
            out["fills_at_or_before_decision_bar"] = int(early.height)
            out["engine_orders_filled_on_their_creation_bar"] = int(
                joined.filter(~decision & (pl.col("bar") == pl.col("created_bar"))).height)
        m = self.metrics
        out["annual_sharpe"] = m.get("sharpe")
        out["win_rate"] = m.get("win_rate")
        rerun = self.view.rerunner
        if isinstance(rerun, SignalRerunner):
            try:
                lagged = _headline(rerun.run(lag=1))
                base = float(m.get("sharpe") or 0.0)
                out["lag_test"] = {"status": "run", "sharpe": base, "lagged_sharpe": lagged["sharpe"],
                                   "total_return": m.get("total_return"), "lagged_total_return": lagged["total_return"],
                                   "sharpe_retained": lagged["sharpe"] / base if abs(base) > 1e-9 else None,
                                   "note": "signals delayed one more bar: an honest edge fades a little, a peek at "
                                           "the next bar collapses"}
            except BackforgeError as exc:
                out["lag_test"] = {"status": "failed", "reason": str(exc).splitlines()[0]}
        elif isinstance(rerun, StrategyRerunner):
            out["lag_test"] = {"status": "not_needed", "reason": "strategy configs only see past bars by construction; "
                                                                 "orders fill on later bars"}
        elif isinstance(rerun, ClassRerunner):
            out["lag_test"] = {"status": "not_needed", "reason": "a Strategy class's next() only sees the bars up to "
                                                                 "its own by construction; orders fill on later bars"}
        else:
            out["lag_test"] = {"status": "not_run", "reason": self.view.rerun_note}
        return out


def _has_quotes(view: RunView) -> bool:
    """True when the run filled against bid/ask quotes (from its data, else from its saved metadata)."""
    data = view.data if view.data is not None else getattr(view.analysis, "data", None)
    if data is not None:
        return bool(data.has_quotes)
    try:
        return bool((view.analysis.metadata_document() or {}).get("has_quotes"))
    except (BackforgeError, OSError, ValueError, TypeError):
        return False


def _ns(value: Any) -> int:
    """A Python datetime (from Polars) to int ns UTC."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    return int(value)


def _breakeven(points: list[tuple[float, float]]) -> float | str | None:
    """The cost multiplier at which the total return crosses zero (linear between the runs)."""
    points = sorted(points)
    if not points:
        return None
    if points[0][1] <= 0:
        return points[0][0] if points[0][0] <= 1.0 else None
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 > 0 >= y1:
            return x0 + (x1 - x0) * y0 / (y0 - y1)
    return f">{points[-1][0]:g}"


def _value_summary(values: tuple) -> Any:
    if len(values) <= 8:
        return list(values)
    return {"from": values[0], "to": values[-1], "count": len(values)}


def _resolved(raw: dict[str, Any]) -> dict[str, Any]:
    from backforge.strategy.schema import load_portfolio

    return load_portfolio(raw).model_dump(mode="json")


def _compact_strategy(config: dict[str, Any]) -> dict[str, Any]:
    """The strategy config without default-valued fields (``kind`` kept everywhere), to save tokens."""
    from backforge.strategy.schema import Portfolio

    try:
        compact = Portfolio.model_validate(config).model_dump(mode="json", exclude_defaults=True)
    except Exception:  # noqa: BLE001 - a config that no longer validates is shown as saved
        return config
    return _keep_kinds(config, compact)


def _keep_kinds(full: Any, compact: Any) -> Any:
    if isinstance(full, dict) and isinstance(compact, dict):
        out = {}
        if "kind" in full:
            out["kind"] = full["kind"]
        for key, value in compact.items():
            out[key] = _keep_kinds(full.get(key), value)
        return out
    if isinstance(full, list) and isinstance(compact, list) and len(full) == len(compact):
        return [_keep_kinds(f, c) for f, c in zip(full, compact)]
    return compact


def build_evidence(
    run: str | Path | RunAnalysis | RunView,
    *,
    rerun: Any = None,
    n_trials: int | None = None,
    trial_sharpes: Any = None,
    seed: int = 0,
    n_simulations: int = 1000,
    walk_forward: bool = True,
    sensitivity: bool = True,
    max_variant_runs: int = 12,
    trials_per_window: int = 12,
) -> EvidencePack:
    """Build the evidence pack of a run (see the module docstring for the sections).

    Parameters
    ----------
    run
        A saved run folder, a :class:`~backforge.results.result.SavedRun`, a
        :class:`~backforge.results.result.Result`, or a :class:`~backforge.judge.runs.RunView`.
    rerun
        A rerunner for runs the judge cannot re-create itself (signal arrays: a
        :class:`~backforge.judge.runs.SignalRerunner`).
    n_trials
        How many backtests the search that produced this run actually tried (default: read from the
        parameter search the run comes from, else 1).
    trial_sharpes
        The annualized Sharpe ratios of those trials (their variance deflates the Sharpe ratio).
    seed
        Seed of the Monte Carlo and of the walk-forward sampling.
    n_simulations
        Monte Carlo paths.
    walk_forward
        Run a walk-forward analysis when the strategy declares parameters.
    sensitivity
        Re-run parameter neighbours (and cost multiples, always when re-runnable).
    max_variant_runs
        At most this many parameter-neighbour runs.
    trials_per_window
        Walk-forward: parameter sets tried per in-sample window (a random sample when the grid is larger).

    Returns
    -------
    EvidencePack

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=2, seed=5)
    >>> pack = build_evidence(bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.001))
    >>> pack.get("cost_sensitivity.method"), pack.get("overfitting.n_trials")
    ('estimate', 1)
    """
    view = run if isinstance(run, RunView) else open_run(run, rerun=rerun)
    builder = _Builder(view, n_trials=n_trials, trial_sharpes=trial_sharpes, seed=seed, n_simulations=n_simulations,
                       walk_forward=walk_forward, sensitivity=sensitivity, max_variant_runs=max_variant_runs,
                       trials_per_window=trials_per_window)
    yearly, monthly = builder.period_sections()
    sensitivity_section = builder.sensitivity_section()
    sections: dict[str, Any] = {
        "run": builder.run_section(),
        "strategy": builder.strategy_section(),
        "data": builder.data_section(),
        "metrics": builder.metrics_section(),
        "yearly_returns": yearly,
        "monthly_returns": monthly,
        "drawdowns": builder.drawdown_section(),
        "trades": builder.trade_section(),
        "concentration": builder.concentration_section(),
        "cost_sensitivity": builder.cost_section(),
        "parameter_sensitivity": sensitivity_section,
        "monte_carlo": builder.monte_carlo_section(),
        "walk_forward": builder.walk_forward_section(),
        "stability": builder.stability_section(),
        "overfitting": builder.overfitting_section(),
        "benchmark": builder.benchmark_section(),
        "regimes": builder.regime_section(),
        "exposure": builder.exposure_section(),
        "lookahead": builder.lookahead_section(),
    }
    pack = EvidencePack(sections=_clean(sections), run_name=view.name,
                        extras={"variant_returns": builder.variant_returns, "view": view,
                                "sensitivity_runs": builder.sensitivity_runs})
    return pack
