"""Apply recommendations and re-test them: every one becomes a variant, run in sample and on a held-out
period the judge never saw; the table compares each variant with the original, counting the added
trials in the deflated Sharpe ratio so the judge cannot overfit quietly.

The period of the run is split at ``1 - holdout`` of its bars: the *in-sample* part is what the judge
(rules and LLM) reviewed; the *out-of-sample* part is held out. Out-of-sample runs start trading at the
split and use the earlier bars only to warm their indicators up. ``run_test`` recommendations run their
test on the in-sample period (a hold-out test reports the original on the held-out period).

Examples
--------
>>> import backforge as bf
>>> from backforge.strategy.compiler import run_portfolio
>>> from backforge.judge.recommendations import ChangeParameter
>>> from backforge.judge.runs import open_run
>>> config = {"name": "x", "universe": ["AAPL"], "costs": {"fee_rate": 0.001}, "strategies": [
...     {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}}, "action": {"buy": {}}},
...     {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 20}}}, "action": {"close": {}}}]}
>>> view = open_run(run_portfolio(config, bf.synth(n_assets=1, years=4, seed=2)))
>>> rec = ChangeParameter(path="strategies[0].condition.rhs.window", also=["strategies[1].condition.rhs.window"],
...                       value=50, rationale="slower", expected_effect="fewer trades")
>>> report = apply_recommendations(view, [("test", rec)], holdout=0.3)
>>> report.table["variant"].to_list(), report.total_trials
(['original', 'strategies[0].condition.rhs.window = 50 (+1 more)'], 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from backforge.errors import BackforgeError
from backforge.judge.errors import JudgeError
from backforge.judge.recommendations import (
    RunTest, class_variant_of, describe_recommendation, signal_variant_of, variants_of,
)
from backforge.judge.runs import ClassRerunner, RunView, SignalRerunner, StrategyRerunner

__all__ = ["Split", "ApplyReport", "split_period", "apply_recommendations"]

_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Split:
    """The in-sample and held-out periods (int ns UTC, inclusive)."""

    is_start: int
    is_end: int
    oos_start: int
    oos_end: int
    holdout: float

    def to_dict(self) -> dict[str, Any]:
        """Dates as ISO text."""
        import datetime as dt

        def text(ns: int) -> str:
            return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).isoformat(timespec="minutes")

        return {"in_sample": [text(self.is_start), text(self.is_end)],
                "out_of_sample": [text(self.oos_start), text(self.oos_end)], "holdout": self.holdout}


def split_period(timestamps: np.ndarray, holdout: float) -> Split:
    """Split bars into in-sample (the first ``1 - holdout``) and held-out (the rest) periods.

    Examples
    --------
    >>> s = split_period(np.arange(100, dtype=np.int64), 0.3)
    >>> (s.is_start, s.is_end, s.oos_start, s.oos_end)
    (0, 69, 70, 99)
    """
    if not (isinstance(holdout, (int, float)) and 0.05 <= float(holdout) <= 0.8):
        raise JudgeError(f"holdout must be a fraction between 0.05 and 0.8 of the bars, got {holdout!r}", field="holdout")
    ts = np.asarray(timestamps, dtype=np.int64)
    n = ts.shape[0]
    cut = int(round(n * (1.0 - float(holdout))))
    if cut < 20 or n - cut < 20:
        raise JudgeError(f"the run has {n} bars: too few to hold out {holdout:.0%} and keep 20 bars on each side",
                         field="holdout")
    return Split(int(ts[0]), int(ts[cut - 1]), int(ts[cut]), int(ts[-1]), float(holdout))


@dataclass
class ApplyReport:
    """The variants, their in-sample and out-of-sample figures, and the trial count.

    Attributes
    ----------
    rows
        One dict per line of the table (the original first), including errors and tests.
    split
        The periods.
    total_trials
        Trials counted in the deflated Sharpe ratios: the run's own trials plus one per variant.
    variants
        Label -> the variant's config (strategy runs) or option changes (signal runs).
    tests
        Results of ``run_test`` recommendations.
    """

    rows: list[dict[str, Any]]
    split: Split
    total_trials: int
    variants: dict[str, Any] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def table(self) -> pl.DataFrame:
        """The comparison table (one row per variant, the original first)."""
        columns = ["variant", "source", "kind", "status", "is_sharpe", "is_total_return", "is_max_drawdown",
                   "is_trades", "oos_sharpe", "oos_total_return", "oos_max_drawdown", "oos_trades", "dsr",
                   "verdict", "error"]
        data = {c: [row.get(c) for row in self.rows] for c in columns}
        schema = {c: (pl.Float64 if c.startswith(("is_", "oos_")) or c == "dsr" else pl.String) for c in columns}
        return pl.DataFrame(data, schema=schema)

    def best(self) -> dict[str, Any] | None:
        """The variant with the best out-of-sample Sharpe ratio that beats the original there, or None."""
        original = self.rows[0] if self.rows else None
        candidates = [r for r in self.rows[1:] if r.get("status") == "ok" and r.get("oos_sharpe") is not None]
        if not original or not candidates or original.get("oos_sharpe") is None:
            return None
        top = max(candidates, key=lambda r: r["oos_sharpe"])
        return top if top["oos_sharpe"] > original["oos_sharpe"] else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        from backforge.judge.evidence import _clean

        return _clean({"split": self.split.to_dict(), "total_trials": self.total_trials, "rows": self.rows,
                       "tests": self.tests, "variants": self.variants})


def _figures(result: Any) -> dict[str, Any]:
    m = result.metrics()
    equity = np.r_[float(result.initial_cash), np.asarray(result.equity_values, dtype=np.float64)]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(equity[:-1] > 0, equity[1:] / equity[:-1] - 1.0, 0.0)
    return {"sharpe": float(m["sharpe"]), "total_return": float(m["total_return"]),
            "max_drawdown": float(m["max_drawdown"]), "trades": int(m["n_trades"]), "returns": returns,
            "periods_per_year": float(m["periods_per_year"])}


def _verdict(row: dict[str, Any], original: dict[str, Any]) -> str:
    is_gain = row["is_sharpe"] - original["is_sharpe"]
    oos_gain = row["oos_sharpe"] - original["oos_sharpe"]
    if oos_gain > 0.1 and row["oos_total_return"] >= original["oos_total_return"]:
        return "better out of sample"
    if is_gain > 0.1 and oos_gain <= 0.0:
        return "better in sample only (overfit?)"
    if oos_gain < -0.1:
        return "worse out of sample"
    return "no clear change"


def _run_pair(rerunner: Any, split: Split, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    in_sample = _figures(rerunner.run(start_ns=split.is_start, end_ns=split.is_end, **kwargs))
    out_of_sample = _figures(rerunner.run(start_ns=split.oos_start, end_ns=split.oos_end, **kwargs))
    return in_sample, out_of_sample


def _row(label: str, source: str, kind: str, is_figures: dict, oos_figures: dict) -> dict[str, Any]:
    return {"variant": label, "source": source, "kind": kind, "status": "ok",
            "is_sharpe": is_figures["sharpe"], "is_total_return": is_figures["total_return"],
            "is_max_drawdown": is_figures["max_drawdown"], "is_trades": is_figures["trades"],
            "oos_sharpe": oos_figures["sharpe"], "oos_total_return": oos_figures["total_return"],
            "oos_max_drawdown": oos_figures["max_drawdown"], "oos_trades": oos_figures["trades"]}


def _run_test(rec: RunTest, view: RunView, rerunner: Any, split: Split, original_oos: dict[str, Any], *,
              seed: int) -> dict[str, Any]:
    """Run a ``run_test`` recommendation on the in-sample period (a hold-out reports the held-out figures)."""
    out: dict[str, Any] = {"test": rec.test, "recommendation": describe_recommendation(rec)}
    try:
        if rec.test == "holdout":
            out.update({"period": "out of sample", "sharpe": original_oos["sharpe"],
                        "total_return": original_oos["total_return"], "max_drawdown": original_oos["max_drawdown"],
                        "trades": original_oos["trades"]})
        elif rec.test == "cost_stress":
            multiplier = rec.cost_multiplier or 2.0
            modelled = any((view.config.get("sim_config") or {}).get(k) for k in
                           ("fee_rate", "fee_per_unit", "fee_per_order", "slippage_bps", "spread"))
            from backforge.judge.evidence import ASSUMED_COSTS

            overrides = None if modelled else dict(ASSUMED_COSTS)
            stressed = _figures(rerunner.run(start_ns=split.is_start, end_ns=split.is_end, cost_multiplier=multiplier,
                                             cost_overrides=overrides))
            out.update({"period": "in sample", "cost_multiplier": multiplier, "assumed_costs": overrides,
                        "sharpe": stressed["sharpe"], "total_return": stressed["total_return"],
                        "trades": stressed["trades"]})
        elif rec.test == "monte_carlo":
            from backforge.judge.evidence import _Builder
            from backforge.judge.runs import open_run

            result = rerunner.run(start_ns=split.is_start, end_ns=split.is_end)
            sub = open_run(result, rerun=rerunner.restricted(split.is_start, split.is_end))
            builder = _Builder(sub, n_trials=None, trial_sharpes=None, seed=seed,
                               n_simulations=rec.n_simulations or 1000, walk_forward=False, sensitivity=False,
                               max_variant_runs=0, trials_per_window=0)
            section = builder.monte_carlo_section()
            out.update({"period": "in sample", **{k: v for k, v in section.items() if k != "seed"}})
        elif rec.test == "walk_forward":
            if not isinstance(rerunner, StrategyRerunner) or not rerunner.raw_config:
                out.update({"status": "not run", "reason": "walk-forward re-optimizes declared parameters; this "
                                                           "strategy declares none"})
            else:
                from backforge.research.optimize import LocalExecutor
                from backforge.research.walkforward import walk_forward

                data = rerunner.data.slice(None, split.is_end)
                in_sample = rec.in_sample or max(20, data.n_bars // 2)
                out_of_sample = rec.out_of_sample or max(10, data.n_bars // 6)
                wf = walk_forward(rerunner.raw_config, data, in_sample=in_sample, out_of_sample=out_of_sample,
                                  method="random", samples=12, seed=seed, executor=LocalExecutor(1),
                                  fundamentals=rerunner.fundamentals)
                summary = wf.summary()
                out.update({"period": "in sample", "efficiency": summary["walk_forward_efficiency"],
                            "oos_total_return": summary["oos_total_return"], "windows": summary["windows"],
                            "trials": summary["trials"]})
        out.setdefault("status", "ok")
        out["summary"] = _test_summary(out)
    except BackforgeError as exc:
        out.update({"status": "error", "error": str(exc).splitlines()[0]})
    return out


def _test_summary(result: dict[str, Any]) -> str:
    """One line with the figures of a test's result."""
    if result.get("status") == "not run":
        return f"not run: {result.get('reason')}"
    test = result["test"]
    if test == "holdout":
        return (f"held-out period: Sharpe {result['sharpe']:.2f}, return {result['total_return']:.1%}, max drawdown "
                f"{result['max_drawdown']:.1%}, {result['trades']} trades")
    if test == "cost_stress":
        assumed = " (on assumed costs: none were modelled)" if result.get("assumed_costs") else ""
        return (f"in sample at {result['cost_multiplier']:g}x costs{assumed}: Sharpe {result['sharpe']:.2f}, return "
                f"{result['total_return']:.1%}")
    if test == "walk_forward":
        return (f"in-sample walk-forward: efficiency {result['efficiency']:.2f}, out-of-sample return "
                f"{result['oos_total_return']:.1%} over {result['windows']} windows ({result['trials']} trials)")
    parts = []
    trades = result.get("trade_bootstrap") or {}
    if "probability_of_loss" in trades:
        parts.append(f"trade bootstrap: P(loss) {trades['probability_of_loss']:.0%}, 5% worst return "
                     f"{trades['total_return']['p5']:.1%}, 5% worst drawdown {trades['max_drawdown']['p5']:.1%}")
    bars = result.get("block_bootstrap") or {}
    if "probability_of_loss" in bars:
        parts.append(f"block bootstrap: P(loss) {bars['probability_of_loss']:.0%}, Sharpe 5-95% "
                     f"{bars['sharpe']['p5']:.2f} to {bars['sharpe']['p95']:.2f}")
    return "; ".join(parts) or "no figures"


def apply_recommendations(view: RunView, recommendations: list[tuple[str, Any]], *, holdout: float = 0.3,
                          split: Split | None = None, base_trials: int = 1, seed: int = 0) -> ApplyReport:
    """Turn every recommendation into variants, run them in sample and out of sample, and compare.

    Parameters
    ----------
    view
        The run (:func:`~backforge.judge.runs.open_run`); it must be re-runnable.
    recommendations
        ``(source, recommendation)`` pairs; the source is a rule id or ``"llm:<model>"``.
    holdout
        Fraction of the bars held out (ignored when ``split`` is given).
    split
        The periods (default: :func:`split_period` of the run's bars).
    base_trials
        Trials behind the original run (a parameter search's count); each variant adds one.
    seed
        Seed of the tests that sample.

    Returns
    -------
    ApplyReport

    Raises
    ------
    JudgeError
        The run cannot be re-run (the message says why), or the held-out period is too short.

    Examples
    --------
    >>> import backforge as bf
    >>> from backforge.judge.recommendations import ChangeRisk
    >>> from backforge.judge.runs import SignalRerunner, open_run
    >>> data = bf.synth(n_assets=1, years=3, seed=6)
    >>> entries, exits = data.close > data.open, data.close < data.open
    >>> view = open_run(bf.from_signals(data, entries, exits), rerun=SignalRerunner(data, entries, exits))
    >>> rec = ChangeRisk(stop_loss={"percent": 0.03}, rationale="big losers", expected_effect="smaller losses")
    >>> report = apply_recommendations(view, [("manual", rec)])
    >>> [row["status"] for row in report.rows], report.total_trials
    (['ok', 'ok'], 2)
    """
    from backforge.research import stats

    rerunner = view.rerunner
    if rerunner is None:
        raise JudgeError(f"cannot apply recommendations: {view.rerun_note or 'the run cannot be re-run'}",
                         path=view.name)
    split = split or split_period(np.asarray(view.analysis.timestamps_ns, dtype=np.int64), holdout)
    original_is, original_oos = _run_pair(rerunner, split)
    rows = [{**_row("original", "-", "original", original_is, original_oos), "verdict": "baseline"}]
    returns = {"original": original_is["returns"]}
    sharpes = [original_is["sharpe"]]
    variants: dict[str, Any] = {}
    tests: list[dict[str, Any]] = []
    for source, rec in recommendations:
        if isinstance(rec, RunTest):
            tests.append({"source": source, **_run_test(rec, view, rerunner, split, original_oos, seed=seed)})
            continue
        try:
            if isinstance(rerunner, ClassRerunner):
                planned = class_variant_of(rec, rerunner.parameters)
            elif isinstance(rerunner, SignalRerunner):
                candidate = signal_variant_of(rec)
                if candidate is None:
                    raise JudgeError(f"{rec.type} needs a strategy config; this run was made from signal arrays")
                planned = [(candidate[0], candidate[1])]
            else:
                planned = variants_of(rec, rerunner.config, raw_config=rerunner.raw_config)
        except BackforgeError as exc:
            rows.append({"variant": describe_recommendation(rec), "source": source, "kind": rec.type,
                         "status": "invalid",
                         "error": (f"{exc.path}: {exc.message}" if exc.path else exc.message).splitlines()[0]})
            continue
        for label, config in planned:
            unique = label
            n = 2
            while unique in variants:
                unique, n = f"{label} ({n})", n + 1
            try:
                is_figures, oos_figures = _run_pair(rerunner, split, config=config)
            except BackforgeError as exc:
                rows.append({"variant": unique, "source": source, "kind": rec.type, "status": "error",
                             "error": str(exc).splitlines()[0]})
                continue
            variants[unique] = config
            row = _row(unique, source, rec.type, is_figures, oos_figures)
            row["verdict"] = _verdict(row, rows[0])
            rows.append(row)
            returns[unique] = is_figures["returns"]
            sharpes.append(is_figures["sharpe"])
    total = max(int(base_trials), 1) + len(variants)
    periods = original_is["periods_per_year"]
    variance = float(np.var(np.asarray(sharpes) / math.sqrt(periods), ddof=1)) if len(sharpes) >= 2 else None
    for row in rows:
        if row.get("status") != "ok":
            continue
        series = returns.get(row["variant"])
        if series is None or series.shape[0] < 3 or np.std(series) <= 1e-13:
            continue
        try:
            if total > 1 and variance is not None and variance > 0:
                dsr = stats.deflated_sharpe_ratio(series, n_trials=total, sharpe_variance=variance)
            else:
                st = stats.sharpe_statistics(series)
                dsr = stats.deflated_sharpe_ratio(series, n_trials=max(total, 1),
                                                  sharpe_variance=(1.0 + 0.5 * st.sharpe ** 2) / st.n_obs)
            row["dsr"] = float(dsr.deflated_sharpe)
        except BackforgeError:
            row["dsr"] = None
        if row.get("dsr") is not None and row["dsr"] < 0.95 and row["variant"] != "original" \
                and row.get("verdict") == "better out of sample":
            row["verdict"] = f"better out of sample, not significant after {total} trials (DSR {row['dsr']:.2f})"
    return ApplyReport(rows=rows, split=split, total_trials=total, variants=variants, tests=tests)
