"""One call to judge a run: evidence, rule findings, an optional LLM review, and — on request — every
recommendation applied and re-tested on held-out data.

With ``apply=True`` the judge only ever sees the in-sample part of the run: the evidence, the rules and
the LLM review are computed on the first ``1 - holdout`` of the bars, and the recommendations are then
tested on both parts (:mod:`backforge.judge.apply`).

Examples
--------
>>> import backforge as bf
>>> data = bf.synth(n_assets=1, years=3, seed=4)
>>> verdict = judge(bf.from_signals(data, data.close > data.open, data.close < data.open))
>>> verdict.findings[0].severity in ("critical", "warning", "info"), verdict.applied is None
(True, True)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backforge.judge.apply import ApplyReport, Split, apply_recommendations, split_period
from backforge.judge.errors import JudgeError
from backforge.judge.evidence import DEFAULT_BUDGET_TOKENS, EvidencePack, build_evidence
from backforge.judge.llm import LLMClient, LLMConfig
from backforge.judge.recommendations import describe_recommendation
from backforge.judge.reviewer import LLMReview, llm_review
from backforge.judge.rules import Finding, RuleSettings, review
from backforge.judge.runs import RunView, open_run

__all__ = ["Judgement", "judge", "SourcedRecommendation"]


@dataclass(frozen=True)
class SourcedRecommendation:
    """A recommendation and who made it (a rule id, or ``llm:<provider>:<model>``)."""

    source: str
    recommendation: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with a one-line description."""
        return {"source": self.source, "description": describe_recommendation(self.recommendation),
                **self.recommendation.model_dump(mode="json")}


@dataclass
class Judgement:
    """Everything the judge concluded about a run.

    Attributes
    ----------
    run_name
        The run's name.
    evidence
        The evidence pack the reviewers saw (in-sample only with ``apply``).
    findings
        Rule findings, most severe first.
    llm
        The LLM review, or None.
    recommendations
        The recommendations of the rules and the LLM, de-duplicated, in order.
    applied
        The re-test of the recommendations (``apply=True``), or None.
    split
        The in-sample / held-out periods with ``apply``.
    """

    run_name: str
    evidence: EvidencePack
    findings: list[Finding]
    llm: LLMReview | None = None
    recommendations: list[SourcedRecommendation] = field(default_factory=list)
    applied: ApplyReport | None = None
    split: Split | None = None

    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        out = {"critical": 0, "warning": 0, "info": 0}
        for finding in self.findings:
            out[finding.severity] += 1
        return out

    def headline(self) -> str:
        """One line: the counts of findings and, when reviewed, the LLM's verdict.

        Examples
        --------
        >>> from backforge.judge.evidence import EvidencePack
        >>> Judgement("r", EvidencePack({}, "r"), []).headline()
        'r: 0 critical, 0 warnings, 0 notes'
        """
        c = self.counts()
        text = f"{self.run_name}: {c['critical']} critical, {c['warning']} warning{'s' if c['warning'] != 1 else ''}, " \
               f"{c['info']} note{'s' if c['info'] != 1 else ''}"
        if self.llm is not None:
            text += f"; {self.llm.model} says {self.llm.review.verdict}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: findings, recommendations, LLM review (calls, tokens, cost; never keys), re-test, and
        the full evidence the reviewers saw."""
        from backforge.judge.evidence import _clean

        return _clean({
            "run": self.run_name, "headline": self.headline(), "counts": self.counts(),
            "findings": [f.model_dump(mode="json") for f in self.findings],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "llm": None if self.llm is None else self.llm.to_dict(),
            "applied": None if self.applied is None else self.applied.to_dict(),
            "split": None if self.split is None else self.split.to_dict(),
            "evidence": self.evidence.to_dict(),
        })

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` atomically (a temporary file renamed into place) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.to_json())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target

    def section_html(self) -> str:
        """The tear sheet's Judge section (see :func:`backforge.judge.report.judge_section_html`)."""
        from backforge.judge.report import judge_section_html

        return judge_section_html(self)


def _dedupe(recommendations: list[SourcedRecommendation]) -> list[SourcedRecommendation]:
    seen: set[str] = set()
    out = []
    for item in recommendations:
        key = json.dumps(item.recommendation.model_dump(mode="json", exclude={"rationale", "expected_effect"}),
                         sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def judge(run: str | Path | Any, *, rerun: Any = None, llm: LLMConfig | LLMClient | None = None, apply: bool = False,
          holdout: float = 0.3, n_trials: int | None = None, trial_sharpes: Any = None,
          settings: RuleSettings | None = None, budget_tokens: int | None = DEFAULT_BUDGET_TOKENS, seed: int = 0,
          walk_forward: bool = True, max_recommendations: int = 10, n_simulations: int = 1000) -> Judgement:
    """Judge a run: evidence, rule findings, optionally an LLM review, optionally apply and re-test.

    Parameters
    ----------
    run
        A saved run folder, a :class:`~backforge.results.result.SavedRun` or a
        :class:`~backforge.results.result.Result`.
    rerun
        A rerunner for runs made from signal arrays (:class:`~backforge.judge.runs.SignalRerunner`).
    llm
        An LLM configuration or client for an LLM review (None: the rule-based reviewer only).
    apply
        Apply every recommendation and re-test it in sample and on the held-out period.
    holdout
        With ``apply``: the fraction of bars held out from the judge.
    n_trials, trial_sharpes
        The trials behind the run (see :func:`~backforge.judge.evidence.build_evidence`).
    settings
        Rule thresholds.
    budget_tokens
        Token budget of the evidence given to the LLM.
    seed
        Seed of the Monte Carlo and samplers.
    walk_forward
        Run a walk-forward analysis when the strategy declares parameters.
    max_recommendations
        At most this many recommendations are applied (rule ones first, most severe first).
    n_simulations
        Monte Carlo paths.

    Returns
    -------
    Judgement

    Examples
    --------
    >>> import backforge as bf
    >>> from backforge.strategy.compiler import run_portfolio
    >>> config = {"name": "x", "universe": ["AAPL"], "costs": {"fee_rate": 0.001}, "strategies": [
    ...     {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}}, "action": {"buy": {}}},
    ...     {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 20}}},
    ...      "action": {"close": {}}}]}
    >>> verdict = judge(run_portfolio(config, bf.synth(n_assets=1, years=4, seed=2)), apply=True, n_simulations=200)
    >>> verdict.applied.rows[0]["variant"], verdict.applied.total_trials > 1
    ('original', True)
    """
    view = open_run(run, rerun=rerun)
    split = None
    reviewed: RunView = view
    if apply:
        if view.rerunner is None:
            raise JudgeError(f"cannot apply recommendations: {view.rerun_note or 'the run cannot be re-run'}",
                             path=view.name)
        import numpy as np

        split = split_period(np.asarray(view.analysis.timestamps_ns, dtype=np.int64), holdout)
        in_sample = view.rerunner.restricted(split.is_start, split.is_end)
        reviewed = open_run(in_sample.run(), rerun=in_sample)
        reviewed.name = f"{view.name} (in-sample part, {1 - holdout:.0%} of the bars)"
        reviewed.notes = list(view.notes) + [f"the last {holdout:.0%} of the bars are held out to test the "
                                             "recommendations and are not part of this evidence"]
        if view.optimization:
            reviewed.optimization = {**view.optimization, "table": None}
    pack = build_evidence(reviewed, n_trials=n_trials, trial_sharpes=trial_sharpes, seed=seed,
                          walk_forward=walk_forward, n_simulations=n_simulations)
    findings = review(pack, settings)
    recommendations = [SourcedRecommendation(f.id, f.recommendation) for f in findings if f.recommendation is not None]
    llm_result = None
    if llm is not None:
        llm_result = llm_review(pack, findings, llm, budget_tokens=budget_tokens)
        source = f"llm:{llm_result.model}"
        recommendations += [SourcedRecommendation(source, rec) for rec in llm_result.review.recommendations]
    recommendations = _dedupe(recommendations)
    applied = None
    if apply:
        chosen = recommendations[:max_recommendations]
        trials = pack.get("overfitting.n_trials") or 1
        applied = apply_recommendations(view, [(r.source, r.recommendation) for r in chosen], split=split,
                                        base_trials=int(trials), seed=seed)
    return Judgement(run_name=view.name, evidence=pack, findings=findings, llm=llm_result,
                     recommendations=recommendations, applied=applied, split=split)
