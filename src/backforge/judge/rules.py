"""The rule-based reviewer: deterministic checks over an evidence pack, no network.

Each rule has a stable id (``category.name``), a default severity, and a check that reads numbers of
the :class:`~backforge.judge.evidence.EvidencePack`. A rule that fires gives a :class:`Finding`: the
numbers that triggered it, a message, a concrete fix and, where one exists, a typed recommendation
that ``backforge judge RUN --apply`` turns into a variant and re-tests. The same pack always gives the
same findings, in the same order (severity, then id).

Thresholds live in :class:`RuleSettings` (``max_drawdown_days`` is how long a drawdown you can sit
through, for instance). :data:`RULES` lists every rule; ``docs/judge.md`` documents them.

Examples
--------
>>> from backforge.judge.evidence import EvidencePack
>>> pack = EvidencePack({"metrics": {"n_trades": 8, "sharpe": 2.4, "years": 3.0}}, "r")
>>> [f.id for f in review(pack)]
['stats.few_trades_for_sharpe']
>>> len(RULES) >= 40
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from backforge.judge.errors import JudgeError
from backforge.judge.evidence import ASSUMED_COSTS, EvidencePack, _number
from backforge.judge.recommendations import AddFilter, ChangeParameter, ChangeRisk, Recommendation, RunTest

__all__ = ["Severity", "Finding", "RuleSettings", "Rule", "RULES", "rule_ids", "review", "SEVERITY_ORDER"]

Severity = Literal["critical", "warning", "info"]
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


class Finding(BaseModel):
    """One rule that fired: what it found (with the numbers), why it matters and what to do.

    Attributes
    ----------
    id
        The rule's stable id, e.g. ``"costs.edge_vanishes_2x"``.
    severity
        ``"critical"`` (do not trade this), ``"warning"`` (fix or test before trading), ``"info"``.
    title
        The rule's one-line name.
    message
        What was found, with the numbers.
    numbers
        The numbers that triggered the rule.
    fix
        A concrete suggested fix.
    recommendation
        A typed recommendation the judge can apply and re-test, when there is one.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    severity: Severity
    title: str
    message: str
    numbers: dict[str, Any]
    fix: str
    recommendation: Recommendation | None = None


class RuleSettings(BaseModel):
    """Thresholds of the rules (fractions, years, days; see each field).

    Examples
    --------
    >>> RuleSettings(max_drawdown_days=180).max_drawdown_days
    180.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_trades: int = Field(30, ge=1, description="trades needed before a Sharpe ratio above 1 means much")
    dsr_threshold: float = Field(0.95, gt=0, lt=1, description="deflated Sharpe ratio below this is not significant")
    psr_threshold: float = Field(0.9, gt=0, lt=1, description="probabilistic Sharpe ratio below this: Sharpe may be 0")
    pbo_threshold: float = Field(0.5, gt=0, lt=1, description="probability of backtest overfitting above this")
    wfe_threshold: float = Field(0.5, description="walk-forward efficiency below this")
    max_drawdown_days: float = Field(365.0, gt=0, description="the longest drawdown you could sit through, in days")
    max_drawdown_depth: float = Field(0.30, gt=0, lt=1, description="the deepest drawdown you could sit through")
    min_exposure: float = Field(0.10, ge=0, lt=1, description="share of bars invested below which the strategy barely acts")
    min_leverage: float = Field(0.25, ge=0, description="average gross leverage below which capital sits idle")
    implausible_sharpe: float = Field(3.0, gt=0, description="annual Sharpe above this on daily or slower bars")
    implausible_win_rate: float = Field(0.80, gt=0, lt=1, description="win rate above this over many trades")
    top_trade_share: float = Field(0.50, gt=0, description="share of net P&L from the best trade")
    single_asset_share: float = Field(0.70, gt=0, description="share of net P&L from one asset")
    single_year_share: float = Field(0.60, gt=0, description="share of net P&L from one calendar year")
    max_cost_share: float = Field(0.50, gt=0, lt=1, description="share of gross P&L eaten by costs")
    max_annual_turnover: float = Field(50.0, gt=0, description="traded notional per year over mean equity")
    loss_streak: int = Field(10, ge=2, description="consecutive losing trades")
    min_years: float = Field(2.0, gt=0, description="years of history below which any result is anecdotal")


@dataclass(frozen=True)
class Hit:
    """What a check returns when its rule fires."""

    message: str
    numbers: dict[str, Any]
    fix: str
    severity: Severity | None = None
    recommendation: Any = None


@dataclass(frozen=True)
class Rule:
    """A check with a stable id, a default severity and a title."""

    id: str
    severity: Severity
    title: str
    check: Callable[["Facts", RuleSettings], Hit | None]


class Facts:
    """Read-only access to an evidence pack's numbers for the checks."""

    def __init__(self, pack: EvidencePack) -> None:
        self.pack = pack

    def get(self, dotted: str, default: Any = None) -> Any:
        return self.pack.get(dotted, default)

    def num(self, dotted: str) -> float | None:
        return _number(self.pack.get(dotted))

    @property
    def mode(self) -> str:
        return self.get("run.mode", "unknown")

    @property
    def is_strategy(self) -> bool:
        return self.mode == "strategy" and isinstance(self.get("strategy.config"), dict)

    def trade_strategies(self) -> list[dict[str, Any]]:
        config = self.get("strategy.config") or {}
        return [s for s in config.get("strategies", []) if (s.get("action") or {}).get("kind") in ("buy", "sell")]

    def has_stops(self) -> bool:
        if self.is_strategy:
            return any((s.get("action") or {}).get(k) for s in self.trade_strategies()
                       for k in ("stop_loss", "trailing_stop"))
        signal = self.get("strategy.signal_config") or {}
        return bool(signal.get("stop_loss") or signal.get("trailing_stop"))

    def allocation(self) -> float | None:
        if self.is_strategy:
            values = [((s.get("action") or {}).get("allocation") or {}) for s in self.trade_strategies()]
            fractions = [v.get("value", 1.0) for v in values if v.get("type", "equity_fraction") == "equity_fraction"]
            return max(fractions) if fractions else (1.0 if not values else None)
        signal = self.get("strategy.signal_config") or {}
        if signal.get("size_type", "equity_fraction") == "equity_fraction":
            return float(signal.get("size", 1.0))
        return None


RULES: list[Rule] = []


def rule(id: str, severity: Severity, title: str) -> Callable[[Callable[[Facts, RuleSettings], Hit | None]], Callable]:
    """Register a check as a rule (the registry is :data:`RULES`, in definition order)."""

    def register(check: Callable[[Facts, RuleSettings], Hit | None]) -> Callable:
        if any(r.id == id for r in RULES):
            raise ValueError(f"duplicate rule id {id!r}")
        RULES.append(Rule(id, severity, title, check))
        return check

    return register


def rule_ids() -> list[str]:
    """Every rule id, in definition order.

    Examples
    --------
    >>> rule_ids()[0]
    'stats.few_trades_for_sharpe'
    """
    return [r.id for r in RULES]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _bars_are_daily_or_slower(f: Facts) -> bool:
    periods = f.num("metrics.periods_per_year")
    return periods is not None and periods <= 370


# ====================================================================== statistics and overfitting
@rule("stats.few_trades_for_sharpe", "warning", "Too few independent trades to establish an edge")
def _few_trades(f: Facts, s: RuleSettings) -> Hit | None:
    # Judged whatever the Sharpe ratio: a 2-trade decade is anecdote at Sharpe 0.6 as much as at 2.
    # Positions still open at the end are bets too (a buy-and-hold is one bet).
    closed, sharpe = f.num("metrics.n_trades"), f.num("metrics.sharpe")
    still_open = f.num("trades.open_at_end.positions") or 0
    if closed is None or sharpe is None:
        return None
    n = closed + still_open
    if n == 0 or n >= s.min_trades:
        return None
    bets = f"{int(closed)} closed trade(s)" + (f" and {int(still_open)} open position(s)" if still_open else "")
    return Hit(f"a Sharpe ratio of {sharpe:.2f} and a total return of {_pct(f.num('metrics.total_return'))} rest on "
               f"{bets} (fewer than {s.min_trades} independent outcomes): a handful of bets cannot establish an edge, "
               "whatever the ratio says",
               {"n_trades": closed, "open_positions": still_open, "sharpe": sharpe, "min_trades": s.min_trades},
               "test on more history or more assets until there are at least 30 trades; treat the Sharpe ratio as anecdotal",
               severity="critical" if n < 10 and sharpe >= 1.0 else None,
               recommendation=RunTest(test="monte_carlo", method="bootstrap", n_simulations=5000,
                                      rationale=f"only {int(n)} trades behind Sharpe {sharpe:.2f}",
                                      expected_effect="a wide band of outcomes shows how much is luck"))


@rule("stats.short_track_record", "warning", "Track record shorter than the minimum track record length")
def _short_record(f: Facts, s: RuleSettings) -> Hit | None:
    need, have = f.num("overfitting.min_track_record_years"), f.num("overfitting.track_record_years")
    sharpe = f.num("metrics.sharpe")
    if need is None or have is None or sharpe is None or sharpe <= 0 or need <= have:
        return None
    shown = "an infinite" if math.isinf(need) else f"{need:.1f} years of"
    return Hit(f"at this Sharpe ratio, skew and kurtosis, 95% confidence that the true Sharpe is above 0 needs "
               f"{shown} track record; the backtest covers {have:.1f} years",
               {"min_track_record_years": need, "track_record_years": have, "sharpe": sharpe},
               "extend the test period (older data, more assets) or accept that the edge is not yet demonstrated")


@rule("stats.dsr_low", "warning", "Deflated Sharpe ratio below 0.95")
def _dsr_low(f: Facts, s: RuleSettings) -> Hit | None:
    dsr, trials = f.num("overfitting.dsr"), f.num("overfitting.n_trials")
    if dsr is None or dsr >= s.dsr_threshold:
        return None
    severity = "critical" if (trials or 1) > 1 and dsr < 0.5 else None
    return Hit(f"the deflated Sharpe ratio is {dsr:.3f} over {int(trials or 1)} trial(s): the probability that the true "
               f"Sharpe beats what the best of the trials would show by luck is below {s.dsr_threshold:.2f}",
               {"dsr": dsr, "n_trials": trials, "psr": f.num("overfitting.psr"),
                "expected_max_sharpe_annual": f.num("overfitting.expected_max_sharpe_annual")},
               "count every variant you tried, then confirm on data the search never saw (walk-forward or a hold-out)",
               severity=severity,
               recommendation=RunTest(test="holdout", rationale=f"DSR {dsr:.2f} < {s.dsr_threshold}",
                                      expected_effect="out-of-sample Sharpe close to in-sample if the edge is real"))


@rule("stats.psr_low", "info", "No evidence that the Sharpe ratio is above zero")
def _psr_low(f: Facts, s: RuleSettings) -> Hit | None:
    psr = f.num("overfitting.psr")
    if psr is None or psr >= s.psr_threshold:
        return None
    return Hit(f"the probabilistic Sharpe ratio is {psr:.2f}: there is a {1 - psr:.0%} chance that the true Sharpe "
               "ratio is zero or negative",
               {"psr": psr, "sharpe": f.num("metrics.sharpe"), "n_obs": f.num("overfitting.n_obs")},
               "do not size this strategy up; look for a stronger signal or a longer history")


@rule("stats.pbo_high", "warning", "Probability of backtest overfitting above 0.5")
def _pbo_high(f: Facts, s: RuleSettings) -> Hit | None:
    pbo = f.num("overfitting.pbo.value")
    if pbo is None or pbo <= s.pbo_threshold:
        return None
    source = f.get("overfitting.pbo.source", "")
    from_search = "search" in str(source)
    if from_search:
        text = (f"PBO is {pbo:.2f} ({source}): picking the in-sample best of these variants lands in the bottom "
                "half out of sample more often than not")
    else:
        # no search was run: the figure is computed over the run and its parameter neighbours, so it says how
        # much the choice among neighbours carries out of sample, not that a search overfitted
        text = (f"no parameter search was recorded; over {source}, PBO is {pbo:.2f}: had one picked the in-sample "
                "best among these variants, it would land in the bottom half out of sample more often than not, "
                "so the choice between nearby parameters is not supported by the data")
    return Hit(text,
               {"pbo": pbo, "source": source, "probability_of_loss": f.num("overfitting.pbo.probability_of_loss")},
               "reduce the number of free parameters, prefer the middle of a stable region over the best point, and "
               "validate with walk-forward",
               severity="critical" if from_search else "info",
               recommendation=RunTest(test="walk_forward", rationale=f"PBO {pbo:.2f}",
                                      expected_effect="walk-forward efficiency above 0.5 if selection carries over"))


@rule("stats.implausible_sharpe", "critical", "Sharpe ratio beyond plausibility (look-ahead smell)")
def _implausible_sharpe(f: Facts, s: RuleSettings) -> Hit | None:
    sharpe = f.num("metrics.sharpe")
    if sharpe is None or not _bars_are_daily_or_slower(f) or sharpe <= s.implausible_sharpe:
        return None
    n = f.num("metrics.n_trades") or 0
    if n < 10:
        return None
    return Hit(f"an annual Sharpe ratio of {sharpe:.2f} on {f.get('run.bar', 'daily')} bars over {int(n)} trades is "
               "beyond what real strategies reach; the usual cause is information from the future (signals computed "
               "with the bar being traded, or later data)",
               {"sharpe": sharpe, "n_trades": n, "threshold": s.implausible_sharpe},
               "check that every signal at bar t uses data up to t only (shift signals by one bar and re-run); check "
               "the data for survivorship and adjusted prices")


@rule("stats.implausible_win_rate", "critical", "Win rate beyond plausibility (look-ahead smell)")
def _implausible_win_rate(f: Facts, s: RuleSettings) -> Hit | None:
    win, n, pf = f.num("metrics.win_rate"), f.num("metrics.n_trades"), f.num("metrics.profit_factor")
    if win is None or n is None or n < s.min_trades or win <= s.implausible_win_rate:
        return None
    payoff = f.num("metrics.payoff_ratio")
    if payoff is not None and payoff < 0.5:
        return None  # a high win rate with small wins and big losses is the negative-skew rule's business
    return Hit(f"{win:.0%} of {int(n)} trades win with a payoff ratio of {_f(payoff)} and a profit factor of {_f(pf)}: "
               "winning that often without giving it back in rare big losses usually means the signal sees the future",
               {"win_rate": win, "n_trades": n, "payoff_ratio": payoff, "profit_factor": pf},
               "re-run with the signals lagged one bar; if the edge collapses, the signal peeks ahead")


@rule("lookahead.lag_collapse", "critical", "Edge collapses when the signals are delayed one bar")
def _lag_collapse(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("lookahead.lag_test.status") != "run":
        return None
    base, lagged = f.num("lookahead.lag_test.sharpe"), f.num("lookahead.lag_test.lagged_sharpe")
    if base is None or lagged is None or base < 1.0:
        return None
    if lagged > 0.3 * base:
        return None
    return Hit(f"delaying every signal by one bar takes the Sharpe ratio from {base:.2f} to {lagged:.2f}: an edge "
               "that lives only in the exact bar of the decision is almost always a peek at data not yet known",
               {"sharpe": base, "lagged_sharpe": lagged, "total_return": f.num("lookahead.lag_test.total_return"),
                "lagged_total_return": f.num("lookahead.lag_test.lagged_total_return")},
               "recompute the signals with data up to the decision bar only (e.g. use close.shift(1), never shift(-1))")


@rule("lookahead.fill_on_decision_bar", "critical", "Fills at or before the bar that decided them")
def _fill_on_decision(f: Facts, s: RuleSettings) -> Hit | None:
    early = f.num("lookahead.fills_at_or_before_decision_bar")
    if not early:
        return None
    return Hit(f"{int(early)} fills happened on or before the bar whose close decided them: the run traded at a "
               "price known only after the decision",
               {"fills_at_or_before_decision_bar": early, "fills": f.num("lookahead.fills")},
               "fill orders on the next bar (backforge's engine does); re-create this run with backforge")


# =========================================================================== robustness over time
@rule("robust.wfe_low", "warning", "Walk-forward efficiency below 0.5")
def _wfe_low(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("walk_forward.status") != "run":
        return None
    wfe = f.num("walk_forward.efficiency")
    if wfe is None or wfe >= s.wfe_threshold:
        return None
    return Hit(f"walk-forward efficiency is {wfe:.2f}: out of sample the re-optimized strategy earned "
               f"{'less than half of' if wfe > 0 else 'nothing like'} its in-sample annual return",
               {"walk_forward_efficiency": wfe, "oos_total_return": f.num("walk_forward.oos_total_return"),
                "trials": f.num("walk_forward.trials")},
               "widen parameter ranges' steps, drop parameters that do not matter, and prefer rules that work across "
               "the whole range", severity="critical" if wfe <= 0 else None)


@rule("robust.wf_oos_loss", "warning", "Walk-forward loses money out of sample")
def _wf_oos_loss(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("walk_forward.status") != "run":
        return None
    oos = f.num("walk_forward.oos_total_return")
    if oos is None or oos > 0:
        return None
    return Hit(f"the stitched out-of-sample windows return {oos:.1%}", {"oos_total_return": oos},
               "the in-sample optimum does not carry forward: simplify the strategy before trading it")


@rule("robust.param_cliff", "warning", "A parameter cliff next to the chosen parameters")
def _param_cliff(f: Facts, s: RuleSettings) -> Hit | None:
    if not f.get("parameter_sensitivity.summary.cliff"):
        return None
    knobs = f.get("parameter_sensitivity.knobs") or []
    chosen = f.num("parameter_sensitivity.chosen.sharpe")
    worst = None
    for knob in knobs:
        if knob.get("cliff"):
            worst = knob
            break
    if worst is None:
        return None
    neighbours = [n for n in worst.get("neighbours", []) if _number(n.get("sharpe")) is not None]
    numbers = {"knob": worst.get("name"), "chosen_value": worst.get("value"), "chosen_sharpe": chosen,
               "neighbours": {str(n.get("value")): _number(n.get("sharpe")) for n in neighbours}}
    recommendation = None
    if f.is_strategy and neighbours and worst.get("paths"):
        best = max(neighbours, key=lambda n: _number(n.get("sharpe")) or -math.inf)
        low = min(neighbours, key=lambda n: _number(n.get("sharpe")) or math.inf)
        # step away from the cliff: towards the better neighbour, whose own neighbourhood is flatter
        if best is not low:
            paths = list(worst["paths"])
            recommendation = ChangeParameter(
                path=paths[0], also=paths[1:], value=best["value"],
                rationale=f"{worst.get('name')}: Sharpe {_f(chosen)} here, {_f(_number(low.get('sharpe')))} at "
                          f"{low.get('value')}, {_f(_number(best.get('sharpe')))} at {best.get('value')}",
                expected_effect="a parameter set in a flatter region: similar Sharpe, less sensitivity")
    return Hit(f"moving {worst.get('name')} one step changes the Sharpe ratio from {_f(chosen)} to "
               + ", ".join(f"{_f(_number(n.get('sharpe')))} ({n.get('value')})" for n in neighbours)
               + ": the result depends on an exact parameter value",
               numbers, "choose parameters in the middle of a plateau, where neighbours perform alike",
               recommendation=recommendation)


@rule("robust.isolated_peak", "warning", "Chosen parameters are an isolated peak")
def _isolated_peak(f: Facts, s: RuleSettings) -> Hit | None:
    if not f.get("parameter_sensitivity.summary.isolated_peak"):
        return None
    chosen = f.num("parameter_sensitivity.chosen.sharpe")
    median = f.num("parameter_sensitivity.summary.median_neighbour_sharpe")
    return Hit(f"the chosen parameters reach Sharpe {_f(chosen)} while their neighbours' median is {_f(median)}: "
               "a lone peak is what a search finds in noise",
               {"chosen_sharpe": chosen, "median_neighbour_sharpe": median,
                "method": f.get("parameter_sensitivity.method")},
               "pick the parameters whose neighbourhood is best on average, not the single best point",
               recommendation=RunTest(test="walk_forward", rationale="isolated peak in parameter space",
                                      expected_effect="stable parameter choices across windows if the edge is real"))


@rule("robust.unstable_parameters", "info", "Walk-forward picks different parameters in every window")
def _unstable(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("walk_forward.status") != "run":
        return None
    stability = f.get("walk_forward.parameter_stability") or {}
    windows = len(f.get("walk_forward.windows") or [])
    unstable = {name: v for name, v in stability.items()
                if isinstance(v, dict) and (_number(v.get("cv")) or 0) > 0.5 and windows >= 2}
    if not unstable:
        return None
    return Hit("the best parameters jump from window to window: " + ", ".join(
        f"{name} (coefficient of variation {_number(v.get('cv')):.2f})" for name, v in unstable.items()),
        {name: v for name, v in unstable.items()},
        "fix the unstable parameters at a robust middle value and optimize fewer of them")


@rule("robust.performance_decay", "warning", "Performance decays over time")
def _decay(f: Facts, s: RuleSettings) -> Hit | None:
    halves = f.get("stability.halves") or []
    if len(halves) != 2:
        return None
    first, second = _number(halves[0].get("sharpe")), _number(halves[1].get("sharpe"))
    if first is None or second is None or first < 0.5 or second > first / 3:
        return None
    return Hit(f"the Sharpe ratio falls from {first:.2f} in the first half to {second:.2f} in the second: the edge "
               "may be decaying or may have been fitted to the early years",
               {"first_half_sharpe": first, "second_half_sharpe": second},
               "check what changed (regime, costs, crowding); give more weight to recent performance",
               recommendation=RunTest(test="walk_forward", rationale=f"Sharpe {first:.2f} then {second:.2f}",
                                      expected_effect="shows whether recent windows still earn"))


@rule("robust.recent_flat", "warning", "Recent years flat or losing")
def _recent_flat(f: Facts, s: RuleSettings) -> Hit | None:
    recent, before = f.num("stability.last_2y_return"), f.num("stability.before_last_2y_annual_return")
    years = f.num("metrics.years") or 0
    if recent is None or before is None or years < 4:
        return None
    if before <= 0.02 or recent > 0.02:
        return None
    return Hit(f"the last two years returned {recent:.1%} after {before:.1%} a year before them",
               {"last_2y_return": recent, "before_last_2y_annual_return": before,
                "last_1y_return": f.num("stability.last_1y_return")},
               "find out whether the market changed; paper-trade before committing capital",
               recommendation=RunTest(test="holdout", rationale="recent years flat",
                                      expected_effect="the most recent data shows whether the edge is still there"))


@rule("robust.no_out_of_sample", "info", "No out-of-sample evidence")
def _no_oos(f: Facts, s: RuleSettings) -> Hit | None:
    status = f.get("walk_forward.status")
    if status in (None, "run", "skipped"):
        return None
    reason = f.get("walk_forward.reason", "")
    return Hit("everything here is in-sample: no walk-forward or hold-out test backs the result"
               + (f" ({reason})" if reason else ""),
               {"walk_forward": f.get("walk_forward.status")},
               "declare the tuned numbers as parameters and run `backforge walkforward`, or keep the last 30% of the "
               "data as a hold-out (`backforge judge RUN --apply`)",
               recommendation=RunTest(test="holdout", rationale="no out-of-sample test",
                                      expected_effect="out-of-sample figures close to in-sample ones"))


@rule("robust.mc_loss_probability", "warning", "Monte Carlo: a real chance of losing money")
def _mc_loss(f: Facts, s: RuleSettings) -> Hit | None:
    p = f.num("monte_carlo.trade_bootstrap.probability_of_loss")
    if p is None:
        p = f.num("monte_carlo.block_bootstrap.probability_of_loss")
    realized = f.num("monte_carlo.realized.total_return")
    if p is None or p <= 0.25 or realized is None or realized <= 0:
        return None
    return Hit(f"resampling the run, {p:.0%} of the simulated histories end with a loss although the backtest made "
               f"{realized:.1%}", {"probability_of_loss": p, "realized_total_return": realized,
                                   "total_return_p5": f.num("monte_carlo.trade_bootstrap.total_return.p5")},
               "the result is within the range of luck: collect more evidence (longer history, more assets)")


@rule("robust.mc_drawdown_lucky", "warning", "Realized drawdown was lucky")
def _mc_dd_lucky(f: Facts, s: RuleSettings) -> Hit | None:
    p5 = f.num("monte_carlo.block_bootstrap.max_drawdown.p5")
    realized = f.num("monte_carlo.realized.max_drawdown")
    if p5 is None or realized is None or realized >= -0.01:
        return None
    if p5 > 1.5 * realized:  # both negative: p5 deeper than 1.5 x realized means p5 < 1.5 * realized
        return None
    return Hit(f"the backtest's maximum drawdown was {realized:.1%}, but one simulated history in twenty goes below "
               f"{p5:.1%}: plan for the deeper one",
               {"realized_max_drawdown": realized, "simulated_max_drawdown_p5": p5},
               "size positions so that the simulated 5% drawdown is bearable",
               recommendation=ChangeRisk(allocation={"type": "equity_fraction",
                                                     "value": round(max(0.05, (f.allocation() or 1.0) * 0.5), 4)},
                                         rationale=f"simulated 5% worst drawdown {p5:.1%} vs realized {realized:.1%}",
                                         expected_effect="drawdowns about half as deep")
               if f.allocation() else None)


@rule("robust.mc_ruin", "warning", "Monte Carlo: risk of ruin")
def _mc_ruin(f: Facts, s: RuleSettings) -> Hit | None:
    p = max(f.num("monte_carlo.trade_bootstrap.probability_of_ruin") or 0.0,
            f.num("monte_carlo.block_bootstrap.probability_of_ruin") or 0.0)
    if p <= 0.05:
        return None
    allocation = f.allocation()
    return Hit(f"{p:.0%} of simulated histories lose half of the account from a peak",
               {"probability_of_ruin": p, "ruin_drawdown": f.num("monte_carlo.ruin_drawdown")},
               "cut position size until the probability of a 50% drawdown is below 5%",
               severity="critical" if p > 0.15 else None,
               recommendation=ChangeRisk(allocation={"type": "equity_fraction", "value": round(max(0.05, allocation * 0.5), 4)},
                                         rationale=f"probability of ruin {p:.0%}",
                                         expected_effect="probability of a 50% drawdown below 5%")
               if allocation else None)


# ================================================================================= concentration
@rule("concentration.top_trade", "critical", "P&L concentrated in one trade")
def _top_trade(f: Facts, s: RuleSettings) -> Hit | None:
    share, without = f.num("concentration.top_1_share"), f.num("concentration.pnl_without_top_1")
    n = f.num("concentration.n_trades") or 0
    if share is None or n < 3 or share <= s.top_trade_share:
        return None
    best = (f.get("trades.best") or [{}])[0]
    return Hit(f"the best trade ({best.get('asset', '?')} {best.get('entry', '')} → {best.get('exit', '')}, "
               f"{_pct(_number(best.get('return')))}) made {share:.0%} of the net P&L; without it the strategy "
               f"{'loses' if (without or 0) < 0 else 'makes'} {abs(without or 0):,.0f}",
               {"top_1_share": share, "pnl_without_top_1": without, "n_trades": n},
               "judge the strategy without its luckiest trade; look for an edge that repeats",
               severity="critical" if (without or 0) <= 0 else "warning")


@rule("concentration.few_trades_carry", "warning", "P&L carried by a few trades")
def _few_carry(f: Facts, s: RuleSettings) -> Hit | None:
    without, net = f.num("concentration.pnl_without_top_5"), f.num("concentration.net_pnl")
    n = f.num("concentration.n_trades") or 0
    if without is None or net is None or net <= 0 or n < 15 or without > 0:
        return None
    top1 = f.num("concentration.top_1_share")
    if top1 is not None and top1 > s.top_trade_share:
        return None  # the top-trade rule already says it
    return Hit(f"the five best of {int(n)} trades make more than the whole net P&L ({f.num('concentration.top_5_share'):.0%} "
               f"of it); the other {int(n) - 5} lose {abs(without):,.0f} together",
               {"top_5_share": f.num("concentration.top_5_share"), "pnl_without_top_5": without, "n_trades": n},
               "an outlier-driven strategy needs many more trades to be trusted; cut the losers' cost (tighter stops, "
               "filters) so the typical trade stops bleeding",
               recommendation=ChangeRisk(stop_loss={"atr": 2.0, "atr_window": 14}, rationale="the typical trade loses",
                                         expected_effect="smaller typical losses; the big winners remain")
               if f.is_strategy and not f.has_stops() else None)


@rule("concentration.single_asset", "warning", "P&L concentrated in one asset")
def _single_asset(f: Facts, s: RuleSettings) -> Hit | None:
    per_asset = f.get("concentration.per_asset") or []
    if len(per_asset) < 2:
        return None
    top = per_asset[0]
    share = _number(top.get("share"))
    if share is None or share <= s.single_asset_share:
        return None
    return Hit(f"{top['asset']} made {share:.0%} of the net P&L of {len(per_asset)} assets",
               {"asset": top["asset"], "share": share, "assets": len(per_asset)},
               "the 'portfolio' is one bet; check that the rule works on the other assets, or trade only what it works on")


@rule("concentration.single_year", "warning", "P&L concentrated in one year")
def _single_year(f: Facts, s: RuleSettings) -> Hit | None:
    per_year = f.get("concentration.per_year") or []
    if len(per_year) < 3:
        return None
    top = max(per_year, key=lambda y: _number(y.get("share")) or -math.inf)
    share = _number(top.get("share"))
    if share is None or share <= s.single_year_share:
        return None
    return Hit(f"{top['year']} made {share:.0%} of the net P&L of {len(per_year)} years",
               {"year": top["year"], "share": share, "years": len(per_year)},
               "find what was special about that year; judge the strategy on the others")


@rule("concentration.losing_assets", "info", "Most assets lose money")
def _losing_assets(f: Facts, s: RuleSettings) -> Hit | None:
    per_asset = f.get("concentration.per_asset") or []
    if len(per_asset) < 3:
        return None
    losers = [a["asset"] for a in per_asset if (_number(a.get("pnl")) or 0) < 0]
    if len(losers) * 2 <= len(per_asset):
        return None
    return Hit(f"{len(losers)} of {len(per_asset)} assets lose money: {', '.join(losers[:8])}",
               {"losing_assets": len(losers), "assets": len(per_asset)},
               "a rule that loses on most assets is unlikely to be an edge on the rest")


# ========================================================================================= costs
@rule("costs.none_modelled", "warning", "No trading costs modelled")
def _no_costs(f: Facts, s: RuleSettings) -> Hit | None:
    modelled = f.get("cost_sensitivity.costs_modelled")
    if modelled is None or modelled:
        return None
    turnover = f.num("metrics.annual_turnover")
    return Hit(f"the run pays no commission, slippage or spread while turning the book over {_f(turnover, 1)} times "
               "a year", {"annual_turnover": turnover, "n_trades": f.num("metrics.n_trades")},
               f"set realistic costs (e.g. costs: {{fee_rate: {ASSUMED_COSTS['fee_rate']}, slippage_bps: "
               f"{ASSUMED_COSTS['slippage_bps']:g}}} for liquid equities, a spread for FX) and re-run",
               recommendation=RunTest(test="cost_stress", rationale="no costs modelled",
                                      expected_effect="the edge survives realistic costs"))


@rule("costs.edge_vanishes_2x", "critical", "Edge vanishes at 2x costs")
def _vanish_2x(f: Facts, s: RuleSettings) -> Hit | None:
    runs = f.get("cost_sensitivity.runs") or []
    base = next((r for r in runs if r.get("multiplier") == 1.0), None)
    double = next((r for r in runs if r.get("multiplier") == 2.0), None)
    if not base or not double or not f.get("cost_sensitivity.costs_modelled"):
        return None
    r1, r2 = _number(base.get("total_return")), _number(double.get("total_return"))
    if r1 is None or r2 is None or r1 <= 0 or r2 > 0:
        return None
    recommendation = _turnover_filter(f, "edge vanishes at 2x costs")
    return Hit(f"total return goes from {r1:.1%} to {r2:.1%} when costs double"
               + (" (estimated from the costs paid)" if double.get("estimated") else ""),
               {"total_return_1x": r1, "total_return_2x": r2, "sharpe_2x": _number(double.get("sharpe")),
                "costs_paid": f.num("cost_sensitivity.costs_paid"), "annual_turnover": f.num("metrics.annual_turnover")},
               "trade less: confirm signals over more bars, lengthen windows, or add a minimum holding period",
               recommendation=recommendation)


@rule("costs.fragile_5x", "warning", "Edge does not survive 5x costs")
def _fragile_5x(f: Facts, s: RuleSettings) -> Hit | None:
    runs = f.get("cost_sensitivity.runs") or []
    base = next((r for r in runs if r.get("multiplier") == 1.0), None)
    double = next((r for r in runs if r.get("multiplier") == 2.0), None)
    five = next((r for r in runs if r.get("multiplier") == 5.0), None)
    if not base or not five or not f.get("cost_sensitivity.costs_modelled"):
        return None
    r1, r5 = _number(base.get("total_return")), _number(five.get("total_return"))
    r2 = _number(double.get("total_return")) if double else None
    if r1 is None or r5 is None or r1 <= 0 or r5 > 0 or (r2 is not None and r2 <= 0):
        return None
    return Hit(f"total return {r1:.1%} at the modelled costs, {r5:.1%} at 5x: little margin for worse fills",
               {"total_return_1x": r1, "total_return_5x": r5,
                "breakeven_multiplier": f.get("cost_sensitivity.breakeven_multiplier")},
               "check the cost assumptions against your broker's actual fills; prefer liquid instruments")


@rule("costs.realistic_kills_edge", "critical", "Only works without costs")
def _realistic(f: Facts, s: RuleSettings) -> Hit | None:
    rows = f.get("cost_sensitivity.at_assumed_costs") or []
    base = f.num("metrics.total_return")
    first = next((r for r in rows if r.get("multiplier") == 1.0), None)
    if not first or base is None or base <= 0:
        return None
    priced = _number(first.get("total_return"))
    if priced is None or priced > 0:
        return None
    return Hit(f"without costs the run makes {base:.1%}; with {ASSUMED_COSTS['fee_rate'] * 1e4:.0f} bps commission and "
               f"{ASSUMED_COSTS['slippage_bps']:g} bps slippage it makes {priced:.1%}",
               {"total_return_without_costs": base, "total_return_with_assumed_costs": priced,
                "assumed_costs": dict(ASSUMED_COSTS), "n_trades": f.num("metrics.n_trades")},
               "the edge is smaller than the cost of trading it: trade far less often or find a larger edge",
               recommendation=_turnover_filter(f, "only works without costs"))


@rule("costs.high_drag", "warning", "Costs eat most of the gross profit")
def _high_drag(f: Facts, s: RuleSettings) -> Hit | None:
    share = f.num("cost_sensitivity.cost_share_of_gross_pnl")
    if share is None or share <= s.max_cost_share:
        return None
    return Hit(f"costs take {share:.0%} of the profit before costs",
               {"cost_share_of_gross_pnl": share, "costs_paid": f.num("cost_sensitivity.costs_paid"),
                "gross_pnl_before_costs": f.num("cost_sensitivity.gross_pnl_before_costs")},
               "reduce turnover or trade cheaper instruments; the edge per trade is thin",
               recommendation=_turnover_filter(f, f"costs take {share:.0%} of gross P&L"))


@rule("costs.high_turnover", "info", "Very high turnover")
def _high_turnover(f: Facts, s: RuleSettings) -> Hit | None:
    turnover = f.num("metrics.annual_turnover")
    if turnover is None or turnover <= s.max_annual_turnover:
        return None
    return Hit(f"the strategy trades {turnover:.0f} times its equity a year: every basis point of cost matters",
               {"annual_turnover": turnover}, "model costs carefully (spread, slippage, market impact)")


def _turnover_filter(f: Facts, why: str) -> Any:
    """An entry filter that trades less: the entry condition must hold for two bars in a row."""
    if not f.is_strategy:
        return None
    for strategy in f.trade_strategies():
        condition = strategy.get("condition")
        if isinstance(condition, dict):
            return AddFilter(strategy=strategy.get("name"),
                             condition={"kind": "held_for", "condition": condition, "window": 2},
                             rationale=f"{why}: confirm entries over two bars to cut whipsaw trades",
                             expected_effect="fewer trades and lower costs with most of the gross edge kept")
    return None


# ========================================================================================== risk
@rule("risk.drawdown_too_long", "warning", "Drawdown longer than you could sit through")
def _dd_long(f: Facts, s: RuleSettings) -> Hit | None:
    days = f.num("drawdowns.longest_days")
    if days is None or days <= s.max_drawdown_days:
        return None
    deepest = (f.get("drawdowns.deepest") or [{}])[0]
    recommendation = None
    if f.is_strategy and not f.has_stops():
        recommendation = ChangeRisk(trailing_stop={"percent": 0.1}, rationale=f"drawdown lasting {days:.0f} days",
                                    expected_effect="losing positions are cut instead of being held through the slump")
    return Hit(f"the longest drawdown lasted {days:.0f} days (limit {s.max_drawdown_days:.0f}); the deepest ran from "
               f"{deepest.get('start', '?')} to {deepest.get('recovery') or 'the end, unrecovered'}",
               {"longest_drawdown_days": days, "limit_days": s.max_drawdown_days,
                "time_under_water": f.num("drawdowns.time_under_water")},
               "add an exit for positions that stop working (trailing stop, time stop) or diversify",
               severity="critical" if days > 2 * s.max_drawdown_days else None, recommendation=recommendation)


@rule("risk.deep_drawdown", "warning", "Drawdown deeper than you could sit through")
def _dd_deep(f: Facts, s: RuleSettings) -> Hit | None:
    dd = f.num("metrics.max_drawdown")
    if dd is None or dd >= -s.max_drawdown_depth:
        return None
    allocation = f.allocation()
    return Hit(f"the maximum drawdown is {dd:.1%} (limit {-s.max_drawdown_depth:.0%})",
               {"max_drawdown": dd, "limit": -s.max_drawdown_depth, "calmar": f.num("metrics.calmar")},
               "size positions down (half the size roughly halves the drawdown) or add stops",
               severity="critical" if dd < -0.5 else None,
               recommendation=ChangeRisk(allocation={"type": "equity_fraction",
                                                     "value": round(max(0.05, allocation * s.max_drawdown_depth / -dd), 4)},
                                         rationale=f"max drawdown {dd:.1%}",
                                         expected_effect=f"max drawdown near {-s.max_drawdown_depth:.0%}")
               if allocation else None)


@rule("risk.leverage_near_liquidation", "critical", "Leverage near liquidation")
def _near_liquidation(f: Facts, s: RuleSettings) -> Hit | None:
    headroom = f.num("exposure.min_margin_headroom")
    close_bars = f.num("exposure.bars_within_1_5x_of_margin_call") or 0
    max_lev, limit = f.num("exposure.max_gross_leverage"), f.num("exposure.leverage_limit")
    near_margin = headroom is not None and headroom < 1.5
    near_limit = max_lev is not None and limit is not None and limit > 1.0 and max_lev >= 0.9 * limit and max_lev > 2.0
    if not (near_margin or near_limit):
        return None
    recommendation = None
    if f.is_strategy and limit is not None and limit > 1.0:
        recommendation = ChangeRisk(leverage=max(1.0, limit / 2), rationale="leverage close to liquidation",
                                    expected_effect="no margin calls, smaller drawdowns")
    elif f.is_strategy and f.allocation():
        recommendation = ChangeRisk(allocation={"type": "equity_fraction", "value": round(f.allocation() * 0.5, 4)},
                                    rationale="equity close to the maintenance margin",
                                    expected_effect="twice the margin headroom")
    return Hit(("equity came within " + f"{headroom:.2f}x of the maintenance margin ({int(close_bars)} bars within 1.5x)"
                if near_margin else f"gross leverage reached {max_lev:.1f}x of a {limit:.1f}x limit")
               + ": a gap against the position would liquidate it",
               {"min_margin_headroom": headroom, "max_gross_leverage": max_lev, "leverage_limit": limit,
                "maintenance_margin": f.num("exposure.maintenance_margin")},
               "lower leverage until equity stays at least twice the maintenance margin",
               recommendation=recommendation)


@rule("risk.liquidations", "critical", "Positions were liquidated")
def _liquidations(f: Facts, s: RuleSettings) -> Hit | None:
    n = f.num("exposure.liquidations")
    ruined = f.get("exposure.equity_ever_non_positive")
    if not n and not ruined:
        return None
    return Hit(f"{int(n or 0)} positions were closed by margin calls" + ("; equity fell to zero" if ruined else ""),
               {"liquidations": n, "equity_ever_non_positive": ruined},
               "cut leverage and size; a backtest that liquidates would have ended the account")


@rule("risk.negative_skew_hidden", "warning", "Negative skew hidden by a high win rate")
def _negative_skew(f: Facts, s: RuleSettings) -> Hit | None:
    win, payoff = f.num("metrics.win_rate"), f.num("metrics.payoff_ratio")
    worst, avg_win = f.num("metrics.worst_trade"), f.num("metrics.avg_win")
    skew = f.num("trades.statistics.trade_return_skew")
    n = f.num("metrics.n_trades") or 0
    if win is None or payoff is None or n < 10 or win < 0.6:
        return None
    lopsided = payoff < 0.5 or (skew is not None and skew < -1.0) or \
        (worst is not None and avg_win and avg_win > 0 and worst < -5 * avg_win)
    if not lopsided:
        return None
    recommendation = None
    if f.is_strategy and not f.has_stops() and worst is not None and avg_win:
        recommendation = ChangeRisk(stop_loss={"percent": round(min(0.25, max(0.01, 3 * avg_win)), 4)},
                                    rationale=f"win rate {win:.0%} but worst trade {worst:.1%}",
                                    expected_effect="no single loss wipes out many wins")
    return Hit(f"{win:.0%} of trades win, but the average win is {_pct(avg_win)} and the worst trade "
               f"{_pct(worst)} (payoff ratio {payoff:.2f}, trade-return skew {_f(skew)}): many small gains, rare big losses",
               {"win_rate": win, "payoff_ratio": payoff, "avg_win": avg_win, "worst_trade": worst,
                "trade_return_skew": skew},
               "cap the loss per trade (a stop-loss a few average wins away) and size for the rare big loss",
               recommendation=recommendation)


@rule("risk.fat_tails", "info", "Fat-tailed returns")
def _fat_tails(f: Facts, s: RuleSettings) -> Hit | None:
    kurtosis = f.num("metrics.kurtosis")
    if kurtosis is None or kurtosis <= 10:
        return None
    return Hit(f"the excess kurtosis of returns is {kurtosis:.1f}: a few days dominate, and Sharpe-based statistics "
               "understate the risk", {"excess_kurtosis": kurtosis, "skew": f.num("metrics.skew"),
                                       "worst_period": f.num("metrics.worst_period")},
               "judge by drawdowns and CVaR rather than volatility; stress-test the worst days")


@rule("risk.no_stop_loss", "info", "Large losing trades without a stop")
def _no_stop(f: Facts, s: RuleSettings) -> Hit | None:
    worst = f.num("metrics.worst_trade")
    if worst is None or worst > -0.15 or f.has_stops():
        return None
    return Hit(f"the worst trade lost {worst:.1%} of its position and no strategy sets a stop-loss",
               {"worst_trade": worst},
               "add a stop-loss (e.g. 2-3 ATR from the entry) so one position cannot do that much damage",
               recommendation=ChangeRisk(stop_loss={"atr": 3.0, "atr_window": 14}, rationale=f"worst trade {worst:.1%}",
                                         expected_effect="worst trade limited to a few ATR")
               if f.is_strategy else ChangeRisk(stop_loss={"percent": 0.1}, rationale=f"worst trade {worst:.1%}",
                                                expected_effect="worst trade limited to about -10%"))


@rule("risk.long_loss_streak", "info", "Long losing streak")
def _loss_streak(f: Facts, s: RuleSettings) -> Hit | None:
    streak = f.num("metrics.longest_loss_streak")
    if streak is None or streak < s.loss_streak:
        return None
    return Hit(f"{int(streak)} losing trades in a row: expect to doubt the strategy in real time",
               {"longest_loss_streak": streak, "win_rate": f.num("metrics.win_rate")},
               "decide in advance how long a streak you will tolerate; size so that it is survivable")


@rule("risk.poor_return_for_drawdown", "info", "Return does not pay for the drawdown")
def _calmar(f: Facts, s: RuleSettings) -> Hit | None:
    calmar, cagr, dd = f.num("metrics.calmar"), f.num("metrics.cagr"), f.num("metrics.max_drawdown")
    if calmar is None or cagr is None or cagr <= 0 or calmar >= 0.3 or dd is None or dd > -0.1:
        return None
    return Hit(f"CAGR {cagr:.1%} against a {dd:.1%} drawdown (Calmar {calmar:.2f})",
               {"calmar": calmar, "cagr": cagr, "max_drawdown": dd},
               "compare with holding the benchmark; a better entry filter or smaller size may improve the ratio")


# ===================================================================================== exposure
@rule("exposure.too_low", "warning", "Exposure too low to matter")
def _exposure_low(f: Facts, s: RuleSettings) -> Hit | None:
    time_in = f.num("metrics.exposure_time")
    leverage = f.num("metrics.avg_gross_leverage")
    if time_in is None or leverage is None or (time_in >= s.min_exposure and leverage >= s.min_exposure / 2):
        return None
    if (f.num("metrics.n_trades") or 0) == 0:
        return None
    return Hit(f"the strategy is invested {time_in:.0%} of the time with an average gross leverage of {leverage:.2f}: "
               "whatever its ratios, it barely moves the account",
               {"exposure_time": time_in, "avg_gross_leverage": leverage, "cagr": f.num("metrics.cagr")},
               "judge it by its return on the capital it uses, and decide whether it deserves a larger allocation")


@rule("exposure.idle_capital", "info", "Small positions while invested")
def _idle(f: Facts, s: RuleSettings) -> Hit | None:
    time_in, leverage = f.num("metrics.exposure_time"), f.num("metrics.avg_gross_leverage")
    if time_in is None or leverage is None or time_in < 0.5 or leverage >= s.min_leverage:
        return None
    allocation = f.allocation()
    return Hit(f"invested {time_in:.0%} of the time but at {leverage:.2f}x gross on average: most of the capital idles",
               {"exposure_time": time_in, "avg_gross_leverage": leverage},
               "size positions to the risk you accept; the return on the capital used is what matters",
               recommendation=ChangeRisk(allocation={"type": "equity_fraction", "value": round(min(1.0, allocation * 2), 4)},
                                         rationale=f"average gross leverage {leverage:.2f}",
                                         expected_effect="higher return for proportionally higher risk")
               if allocation and allocation < 0.5 else None)


@rule("activity.no_trades", "critical", "No closed trades")
def _no_trades(f: Facts, s: RuleSettings) -> Hit | None:
    n = f.num("metrics.n_trades")
    if n is None or n > 0:
        return None
    if (f.num("trades.open_at_end.positions") or 0) > 0 or (f.num("metrics.open_positions") or 0) > 0:
        return None  # it holds positions (a buy-and-hold): judged by its equity curve, not by closed trades
    return Hit("the run neither closed a trade nor holds a position: there is nothing to judge",
               {"n_trades": n, "open_positions": f.num("metrics.open_positions")},
               "check that the entry and exit conditions can be true on this data (backforge explain RUN --at DATE)")


@rule("activity.open_at_end", "info", "Much of the result is an open position")
def _open_end(f: Facts, s: RuleSettings) -> Hit | None:
    unrealized = f.num("trades.open_at_end.unrealized_pnl")
    net = f.num("cost_sensitivity.net_pnl")
    if unrealized is None or net is None or net <= 0 or unrealized <= 0.3 * net:
        return None
    return Hit(f"positions still open at the end carry {unrealized:,.0f} of the {net:,.0f} net P&L ({unrealized / net:.0%})",
               {"unrealized_pnl": unrealized, "net_pnl": net, "open_positions": f.num("trades.open_at_end.positions")},
               "an open position's gain is not yet earned; judge the closed trades")


@rule("activity.buy_and_hold_in_disguise", "info", "One trade spans most of the period")
def _long_hold(f: Facts, s: RuleSettings) -> Hit | None:
    share = f.num("trades.statistics.max_bars_held_share_of_period")
    if share is None or share < 0.5:
        return None
    return Hit(f"one position was held for {share:.0%} of the period: the result is mostly buy-and-hold",
               {"max_bars_held_share_of_period": share}, "compare with buy-and-hold of the same asset")


# ============================================================================ benchmark, regimes
@rule("benchmark.underperforms", "warning", "Worse than buy-and-hold")
def _underperforms(f: Facts, s: RuleSettings) -> Hit | None:
    sharpe, b_sharpe = f.num("benchmark.strategy_sharpe"), f.num("benchmark.benchmark_sharpe")
    ret, b_ret = f.num("benchmark.strategy_total_return"), f.num("benchmark.benchmark_total_return")
    if None in (sharpe, b_sharpe, ret, b_ret) or sharpe >= b_sharpe or ret >= b_ret:
        return None
    return Hit(f"buy-and-hold of the same assets returned {b_ret:.1%} (Sharpe {b_sharpe:.2f}) against the "
               f"strategy's {ret:.1%} (Sharpe {sharpe:.2f})",
               {"strategy_total_return": ret, "benchmark_total_return": b_ret, "strategy_sharpe": sharpe,
                "benchmark_sharpe": b_sharpe, "strategy_max_drawdown": f.num("benchmark.strategy_max_drawdown"),
                "benchmark_max_drawdown": f.num("benchmark.benchmark_max_drawdown")},
               "unless the strategy's drawdown profile is the point, holding the assets is simpler and better")


@rule("benchmark.just_beta", "info", "Mostly market exposure")
def _just_beta(f: Facts, s: RuleSettings) -> Hit | None:
    corr, alpha, beta = f.num("benchmark.correlation"), f.num("benchmark.alpha"), f.num("benchmark.beta")
    if corr is None or corr < 0.9:
        return None
    if alpha is not None and alpha > 0.01:
        return None
    return Hit(f"returns correlate {corr:.2f} with buy-and-hold (beta {_f(beta)}, alpha {_pct(alpha)} a year): the "
               "strategy mostly holds the market", {"correlation": corr, "beta": beta, "alpha": alpha},
               "if the aim is market exposure, an index fund does it cheaper; otherwise the rule adds little")


@rule("regime.one_regime", "warning", "Works in one market regime only")
def _one_regime(f: Facts, s: RuleSettings) -> Hit | None:
    rows = {r["regime"]: r for r in f.get("regimes.regimes") or []}
    up, down = rows.get("trend_up"), rows.get("trend_down")
    if not up or not down:
        return None
    up_sharpe, down_sharpe = _number(up.get("strategy_sharpe")), _number(down.get("strategy_sharpe"))
    if up_sharpe is None or down_sharpe is None:
        return None
    good, bad = (up, down) if up_sharpe >= down_sharpe else (down, up)
    good_sharpe, bad_sharpe = max(up_sharpe, down_sharpe), min(up_sharpe, down_sharpe)
    if good_sharpe < 0.5 or bad_sharpe > -0.3:
        return None
    recommendation = None
    if f.is_strategy and bad is down and all((st.get("action") or {}).get("kind") == "buy" for st in f.trade_strategies()):
        recommendation = AddFilter(condition={"kind": "compare", "lhs": {"kind": "price", "field": "close"}, "op": ">",
                                              "rhs": {"kind": "sma", "window": 200}},
                                   rationale=f"Sharpe {up_sharpe:.2f} in up-trends, {down_sharpe:.2f} in down-trends",
                                   expected_effect="stays out of most down-trend losses")
    return Hit(f"the strategy earns in {good['regime'].replace('_', ' ')}s (Sharpe {good_sharpe:.2f}) and loses in "
               f"{bad['regime'].replace('_', ' ')}s (Sharpe {bad_sharpe:.2f})",
               {"trend_up_sharpe": up_sharpe, "trend_down_sharpe": down_sharpe,
                "trend_up_share": _number(up.get("bar_share")), "trend_down_share": _number(down.get("bar_share"))},
               "add a regime filter (trade only when the trend agrees) or accept that it is a bet on one regime",
               recommendation=recommendation)


@rule("regime.high_volatility_losses", "info", "Loses when volatility is high")
def _high_vol(f: Facts, s: RuleSettings) -> Hit | None:
    rows = {r["regime"]: r for r in f.get("regimes.regimes") or []}
    high, low = rows.get("high_volatility"), rows.get("low_volatility")
    if not high or not low:
        return None
    high_sharpe, low_sharpe = _number(high.get("strategy_sharpe")), _number(low.get("strategy_sharpe"))
    if high_sharpe is None or low_sharpe is None or high_sharpe > -0.3 or low_sharpe < 0.3:
        return None
    recommendation = None
    if f.is_strategy:
        recommendation = AddFilter(
            condition={"kind": "compare", "op": "<", "rhs": {"kind": "const", "value": 1.0},
                       "lhs": {"kind": "zscore", "window": 120,
                               "of": {"kind": "stddev", "window": 20, "of": {"kind": "returns", "window": 1}}}},
            rationale=f"Sharpe {high_sharpe:.2f} in high volatility, {low_sharpe:.2f} in low",
            expected_effect="skips entries when volatility is unusually high")
    return Hit(f"Sharpe {high_sharpe:.2f} when volatility is high, {low_sharpe:.2f} when it is low",
               {"high_volatility_sharpe": high_sharpe, "low_volatility_sharpe": low_sharpe},
               "reduce size or stand aside when volatility is high (volatility targeting)",
               recommendation=recommendation)


# ========================================================================================== data
@rule("data.gaps", "warning", "Gaps in the data longer than a week")
def _gaps(f: Facts, s: RuleSettings) -> Hit | None:
    n = f.num("data.gaps.longer_than_a_week")
    if not n:
        return None
    longest = (f.get("data.gaps.longest") or [{}])[0]
    return Hit(f"{int(n)} gaps longer than a week, the longest from {longest.get('from')} to {longest.get('to')} "
               f"({_f(_number(longest.get('days')), 0)} days): indicators and fills jump across them",
               {"gaps_longer_than_a_week": n, "longest_days": _number(longest.get("days"))},
               "fill the history from another source or restrict the test to the continuous part")


@rule("data.missing_bars", "warning", "Assets with missing bars")
def _missing(f: Facts, s: RuleSettings) -> Hit | None:
    bad = [a for a in f.get("data.per_asset") or [] if (_number(a.get("missing_share")) or 0) > 0.05]
    if not bad:
        return None
    return Hit("missing bars inside their own history: " + ", ".join(
        f"{a['asset']} {_number(a['missing_share']):.0%}" for a in bad[:8]),
        {a["asset"]: _number(a["missing_share"]) for a in bad},
        "check the data source; windows in bars span more time where bars are missing (use durations like '30d')")


@rule("data.short_history", "warning", "Short history")
def _short_history(f: Facts, s: RuleSettings) -> Hit | None:
    years = f.num("metrics.years")
    if years is None or years >= s.min_years:
        return None
    return Hit(f"the test covers {years:.1f} years: one market regime at most",
               {"years": years, "bars": f.num("metrics.bars")},
               "test over several market regimes (at least a full cycle) before trusting the figures")


@rule("data.survivorship", "warning", "Survivorship in the universe")
def _survivorship(f: Facts, s: RuleSettings) -> Hit | None:
    per_asset = f.get("data.per_asset") or []
    n = len(per_asset)
    years = f.num("data.years") or 0
    if n < 3 or years < 3:
        return None
    alive = f.num("data.assets_trading_to_end") or 0
    positive = f.num("data.assets_with_positive_buy_and_hold") or 0
    if alive < n or positive < 0.8 * n:
        return None
    return Hit(f"all {n} assets trade until the last bar and {int(positive)} of them rose over {years:.0f} years: a "
               "universe picked today from the survivors makes any long strategy look good",
               {"assets": n, "assets_trading_to_end": alive, "assets_with_positive_buy_and_hold": positive, "years": years},
               "use a point-in-time universe that includes the names delisted during the test")


@rule("data.synthetic", "info", "Synthetic data")
def _synthetic(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("run.synthetic_data") is not True:
        return None
    return Hit("the run uses generated prices: its figures say nothing about real markets",
               {"synthetic_data": True}, "run the strategy on real data (data: {source: files, paths: ...})")


@rule("data.changed_since_run", "warning", "Re-runs do not use the run's exact data")
def _changed(f: Facts, s: RuleSettings) -> Hit | None:
    notes = [n for n in f.get("run.notes") or [] if "differs" in n or "changed" in n or "resolved from" in n]
    if not notes:
        return None
    return Hit("; ".join(notes), {"notes": notes},
               "re-run the backtest on the current data before comparing variants with it")


@rule("judge.cannot_rerun", "info", "Variants cannot be re-run")
def _cannot_rerun(f: Facts, s: RuleSettings) -> Hit | None:
    if f.get("run.can_rerun") is not False:
        return None
    note = f.get("run.rerun_note", "")
    return Hit(note or "the run cannot be re-run", {"mode": f.mode},
               "run strategies from a strategy file (`backforge run`) so the judge can test its recommendations")


def review(pack: EvidencePack, settings: RuleSettings | None = None) -> list[Finding]:
    """Run every rule on an evidence pack; return the findings, most severe first, then by id.

    Deterministic: the same pack gives the same findings in the same order.

    Parameters
    ----------
    pack
        The evidence (:func:`~backforge.judge.evidence.build_evidence`).
    settings
        Thresholds (default :class:`RuleSettings`).

    Returns
    -------
    list[Finding]

    Examples
    --------
    >>> from backforge.judge.evidence import EvidencePack
    >>> findings = review(EvidencePack({"metrics": {"max_drawdown": -0.45, "calmar": 0.2}}, "r"))
    >>> [(f.id, f.severity) for f in findings]
    [('risk.deep_drawdown', 'warning')]
    """
    settings = settings or RuleSettings()
    facts = Facts(pack)
    findings = []
    for r in RULES:
        try:
            hit = r.check(facts, settings)
        except (TypeError, ValueError, KeyError, ZeroDivisionError, AttributeError) as exc:  # a malformed pack
            raise JudgeError(f"rule {r.id} could not read the evidence: {type(exc).__name__}: {exc}",
                             field=r.id, code="BF-JUDGE-RULE") from exc
        if hit is None:
            continue
        findings.append(Finding(id=r.id, severity=hit.severity or r.severity, title=r.title, message=hit.message,
                                numbers={k: v for k, v in hit.numbers.items()}, fix=hit.fix,
                                recommendation=hit.recommendation))
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.id))
    return findings
