"""The judge: evidence packs, a rule-based reviewer, LLM reviewers with typed recommendations that are
applied and re-tested, and plain English → strategy.

>>> from backforge.judge import build_evidence, review, judge, generate_strategy, load_llm_config

* :func:`build_evidence` — every number a reviewer needs, computed by the system, sized to a token budget;
* :func:`review` — deterministic rule checks (:data:`RULES`), each finding with its numbers and a fix;
* :func:`llm_review` — an OpenAI-compatible or Anthropic model reviews the evidence; its answer is a
  validated :class:`Review` with typed recommendations;
* :func:`apply_recommendations` — each recommendation becomes a variant, run in sample and on a held-out
  period, with the added trials counted in the deflated Sharpe ratio;
* :func:`judge` — all of the above in one call; :func:`judge_section_html` — the tear sheet's Judge section;
* :func:`generate_strategy` — a validated strategy file from plain English.
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

_EXPORTS = {
    "ApplyReport": "backforge.judge.apply", "apply_recommendations": "backforge.judge.apply",
    "split_period": "backforge.judge.apply",
    "Judgement": "backforge.judge.core", "judge": "backforge.judge.core",
    "InvalidAnswerError": "backforge.judge.errors", "JudgeError": "backforge.judge.errors",
    "NotConfiguredError": "backforge.judge.errors", "ProviderError": "backforge.judge.errors",
    "EvidencePack": "backforge.judge.evidence", "build_evidence": "backforge.judge.evidence",
    "GeneratedStrategy": "backforge.judge.generate", "generate_strategy": "backforge.judge.generate",
    "LLMClient": "backforge.judge.llm", "LLMConfig": "backforge.judge.llm", "load_llm_config": "backforge.judge.llm",
    "AddFilter": "backforge.judge.recommendations", "ChangeParameter": "backforge.judge.recommendations",
    "ChangeRisk": "backforge.judge.recommendations", "Recommendation": "backforge.judge.recommendations",
    "Review": "backforge.judge.recommendations", "RunTest": "backforge.judge.recommendations",
    "review_json_schema": "backforge.judge.recommendations",
    "judge_section_data": "backforge.judge.report", "judge_section_html": "backforge.judge.report",
    "write_judge_html": "backforge.judge.report",
    "LLMReview": "backforge.judge.reviewer", "llm_review": "backforge.judge.reviewer",
    "RULES": "backforge.judge.rules", "Finding": "backforge.judge.rules", "RuleSettings": "backforge.judge.rules",
    "review": "backforge.judge.rules",
    "ClassRerunner": "backforge.judge.runs", "RunView": "backforge.judge.runs",
    "SignalRerunner": "backforge.judge.runs",
    "StrategyRerunner": "backforge.judge.runs", "open_run": "backforge.judge.runs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, eager=globals())
