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

from backforge.judge.apply import ApplyReport, apply_recommendations, split_period
from backforge.judge.core import Judgement, judge
from backforge.judge.errors import InvalidAnswerError, JudgeError, NotConfiguredError, ProviderError
from backforge.judge.evidence import EvidencePack, build_evidence
from backforge.judge.generate import GeneratedStrategy, generate_strategy
from backforge.judge.llm import LLMClient, LLMConfig, load_llm_config
from backforge.judge.recommendations import (
    AddFilter,
    ChangeParameter,
    ChangeRisk,
    Recommendation,
    Review,
    RunTest,
    review_json_schema,
)
from backforge.judge.report import judge_section_data, judge_section_html, write_judge_html
from backforge.judge.reviewer import LLMReview, llm_review
from backforge.judge.rules import RULES, Finding, RuleSettings, review
from backforge.judge.runs import RunView, SignalRerunner, StrategyRerunner, open_run

__all__ = [
    "AddFilter",
    "ApplyReport",
    "ChangeParameter",
    "ChangeRisk",
    "EvidencePack",
    "Finding",
    "GeneratedStrategy",
    "InvalidAnswerError",
    "JudgeError",
    "Judgement",
    "LLMClient",
    "LLMConfig",
    "LLMReview",
    "NotConfiguredError",
    "ProviderError",
    "RULES",
    "Recommendation",
    "Review",
    "RuleSettings",
    "RunTest",
    "RunView",
    "SignalRerunner",
    "StrategyRerunner",
    "apply_recommendations",
    "build_evidence",
    "generate_strategy",
    "judge",
    "judge_section_data",
    "judge_section_html",
    "llm_review",
    "load_llm_config",
    "open_run",
    "review",
    "review_json_schema",
    "split_period",
    "write_judge_html",
]
