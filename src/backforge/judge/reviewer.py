"""The LLM reviewer: the evidence pack, the rule findings and the recommendation schema go in; a
validated :class:`~backforge.judge.recommendations.Review` comes out.

The model reasons over numbers the system computed (never over raw prices). Its answer must be one
JSON object valid against the JSON Schema of :class:`~backforge.judge.recommendations.Review`, and
every recommendation must apply to the run (config paths that exist, strategies that buy or sell,
values the strategy language accepts): anything else is sent back with the exact error, retried, and
escalated to the stronger configured model (:class:`~backforge.judge.llm.LLMClient`).

Examples
--------
>>> prompt = review_prompt({"metrics": {"sharpe": 1.2}}, [], mode="strategy")
>>> "JSON Schema" in prompt.system and '"sharpe"' in prompt.user
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from backforge.judge.evidence import DEFAULT_BUDGET_TOKENS, EvidencePack
from backforge.judge.llm import CallRecord, LLMClient, LLMConfig, parse_json_answer
from backforge.judge.recommendations import Review, check_recommendation, review_json_schema
from backforge.judge.rules import RULES, Finding

__all__ = ["ReviewPrompt", "LLMReview", "review_prompt", "llm_review", "compact_schema"]


def compact_schema(schema: Any) -> Any:
    """A JSON Schema without ``title`` entries (they repeat the field names and cost tokens).

    Examples
    --------
    >>> compact_schema({"title": "X", "properties": {"a": {"title": "A", "type": "integer"}}})
    {'properties': {'a': {'type': 'integer'}}}
    """
    if isinstance(schema, dict):
        return {k: compact_schema(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [compact_schema(v) for v in schema]
    return schema


_SYSTEM = """You are a senior quantitative researcher reviewing a backtest for a trader who will risk real money.
You reason only over the numbers in the evidence pack, which the backtesting system computed; never invent numbers.
The rule-based reviewer's findings are included: agree with them, dispute them (with a reason), and add what they miss.

Your recommendations are applied automatically: each becomes a variant of the strategy that is re-run on the
in-sample period and on a held-out period you have not seen, and every variant counts as one more trial in the
deflated Sharpe ratio. So recommend few, specific, testable changes that address the evidence, not guesses.
- change_parameter: "path" is a config path that exists in evidence.strategy.config (for example
  strategies[0].condition.rhs.window or strategies[enter].action.stop_loss.percent) or a name listed in
  evidence.strategy.declared_parameters; give "value", or "values" (at most 6) to try; put the other paths that
  hold the same number in "also".
- add_filter: "condition" is a condition of the strategy language (JSON Schema below), ANDed into the entry
  condition of the buy/sell strategy named in "strategy" (null: all of them). Use only data available at the
  decision bar.
- change_risk: stop_loss / take_profit / trailing_stop (exactly one of percent, fixed, atr), allocation, leverage.
- run_test: walk_forward, monte_carlo, cost_stress or holdout.
{mode_note}
Answer with ONE JSON object valid against this JSON Schema, and nothing else (no Markdown, no prose):
{schema}"""

_SIGNALS_NOTE = ("This run was made from signal arrays, not from a strategy config: only change_risk and run_test "
                 "recommendations can be applied.")
_CLASS_NOTE = ("This run is a Strategy class written in Python, not a strategy config: only change_parameter "
               "recommendations whose path is one of the class's parameters (strategy.config.parameters) and run_test "
               "can be applied.")


@dataclass(frozen=True)
class ReviewPrompt:
    """The system prompt and the user message sent to the model."""

    system: str
    user: str


def review_prompt(pack: dict[str, Any], findings: list[Finding], *, mode: str) -> ReviewPrompt:
    """The prompt of an LLM review: schema and instructions (system), evidence and findings (user).

    Parameters
    ----------
    pack
        The evidence pack as given to the model (:meth:`EvidencePack.for_model`).
    findings
        The rule-based findings.
    mode
        The run's mode (``"strategy"``, ``"signals"``, or ``"code"`` / ``"compiled"`` for a class).

    Returns
    -------
    ReviewPrompt

    Examples
    --------
    >>> prompt = review_prompt({"metrics": {"sharpe": 2.1}}, [], mode="signals")
    >>> "only change_risk and run_test" in prompt.system, prompt.user.startswith("EVIDENCE PACK")
    (True, True)
    """
    schema = json.dumps(compact_schema(review_json_schema()), separators=(",", ":"))
    note = "" if mode == "strategy" else _CLASS_NOTE if mode in ("code", "compiled") else _SIGNALS_NOTE
    system = _SYSTEM.replace("{schema}", schema).replace("{mode_note}", note)
    rules = [{"id": f.id, "severity": f.severity, "message": f.message, "fix": f.fix} for f in findings]
    user = ("EVIDENCE PACK (JSON):\n" + json.dumps(pack, separators=(",", ":"))
            + "\n\nRULE FINDINGS (JSON):\n" + json.dumps(rules, separators=(",", ":"))
            + "\n\nReview this backtest. Answer with the JSON object only.")
    return ReviewPrompt(system=system, user=user)


@dataclass
class LLMReview:
    """A validated review and the calls it took.

    Attributes
    ----------
    review
        The model's :class:`~backforge.judge.recommendations.Review`.
    model
        ``provider:model`` of the model whose answer was accepted.
    calls
        Every call made (tokens, cost, outcome; cache hits included).
    """

    review: Review
    model: str
    calls: list[CallRecord] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        """Calls, cache hits, tokens and cost of this review."""
        return {"calls": sum(1 for c in self.calls if not c.cached), "cached": sum(1 for c in self.calls if c.cached),
                "input_tokens": sum(c.input_tokens or 0 for c in self.calls if not c.cached),
                "output_tokens": sum(c.output_tokens or 0 for c in self.calls if not c.cached),
                "cost_usd": round(float(sum(c.cost_usd or 0.0 for c in self.calls)), 6)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the review, the accepting model, the calls and their totals."""
        return {"model": self.model, "review": self.review.model_dump(mode="json"),
                "calls": [c.to_dict() for c in self.calls], "totals": self.totals()}


def _checker(findings: list[Finding], *, mode: str, config: dict[str, Any] | None, raw_config: dict[str, Any] | None):
    known = {r.id for r in RULES}

    def check(review: Review) -> list[str]:
        problems = []
        for i, rule_id in enumerate(review.agrees_with):
            if rule_id not in known:
                problems.append(f"agrees_with[{i}]: {rule_id!r} is not a rule id (use the ids of the findings)")
        for i, dispute in enumerate(review.disputes):
            if dispute.id not in known:
                problems.append(f"disputes[{i}].id: {dispute.id!r} is not a rule id")
        for i, rec in enumerate(review.recommendations):
            problem = check_recommendation(rec, mode=mode, config=config, raw_config=raw_config)
            if problem:
                problems.append(f"recommendations[{i}] ({rec.type}): {problem}")
        return problems

    return check


def llm_review(pack: EvidencePack, findings: list[Finding], llm: LLMConfig | LLMClient, *,
               budget_tokens: int | None = DEFAULT_BUDGET_TOKENS) -> LLMReview:
    """Ask the configured model to review a run; return its validated review and the calls it took.

    Parameters
    ----------
    pack
        The evidence pack (trimmed to ``budget_tokens`` for the model).
    findings
        The rule-based findings (:func:`~backforge.judge.rules.review`).
    llm
        The model configuration (:func:`~backforge.judge.llm.load_llm_config`) or a client to reuse.
    budget_tokens
        Token budget of the evidence given to the model.

    Returns
    -------
    LLMReview

    Raises
    ------
    ProviderError, InvalidAnswerError
        The provider cannot be used, or no valid answer came (one clear message each).

    Examples
    --------
    >>> from backforge.judge import build_evidence, load_llm_config, review
    >>> pack = build_evidence("backforge-runs/sma-cross-1234")  # doctest: +SKIP
    >>> result = llm_review(pack, review(pack), load_llm_config())  # doctest: +SKIP
    >>> result.review.verdict, result.totals()["cost_usd"]  # doctest: +SKIP
    ('fragile', 0.0123)
    """
    view = pack.extras.get("view")
    mode = pack.get("run.mode", "unknown")
    config = getattr(view, "strategy", None) if view is not None else None
    raw = getattr(getattr(view, "rerunner", None), "raw_config", None) if view is not None else None
    prompt = review_prompt(pack.for_model(budget_tokens), findings, mode=mode)
    client = llm if isinstance(llm, LLMClient) else LLMClient(llm)
    first = len(client.calls)
    try:
        check = _checker(findings, mode=mode, config=config if mode in ("strategy", "code", "compiled") else None,
                         raw_config=raw)
        review = client.ask("review", prompt.system, prompt.user, lambda text: parse_json_answer(text, Review, check))
    finally:
        if not isinstance(llm, LLMClient):
            client.close()
    calls = client.calls[first:]
    accepted = next((f"{c.provider}:{c.model}" for c in reversed(calls) if c.outcome == "valid"), client.config.describe())
    return LLMReview(review=review, model=accepted, calls=list(calls))
