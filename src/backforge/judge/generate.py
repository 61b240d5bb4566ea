"""Plain English → strategy file, with a configured LLM.

The model gets the JSON Schema of strategy files, the assets it may use and the price fields the data
has. Its answer is validated against the schema (pydantic, with the exact path of any mistake) and
against the data (every asset exists, every window fits, the program compiles); errors are fed back
for up to ``retries`` more answers, then the request escalates to the stronger configured model. The
saved YAML runs with ``backforge run``.

Two ways to ask:

* **single** (default): one answer holding the whole strategy;
* **parallel**: a plan first (universe, costs, and each rule described in words), then the condition
  and the action of every rule generated concurrently, each validated on its own against the data,
  then assembled and validated as a whole.

Examples
--------
>>> prompt = generation_prompt("buy when the 50-day average crosses above the 200-day", assets=("SPY",),
...                            fields=("open", "high", "low", "close", "volume"))
>>> "SPY" in prompt.system and "JSON Schema" in prompt.system
True
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backforge.data.market import MarketData
from backforge.errors import BackforgeError, ConfigError
from backforge.judge.errors import JudgeError
from backforge.judge.llm import AnswerError, CallRecord, LLMClient, LLMConfig, extract_json, validation_feedback
from backforge.judge.reviewer import compact_schema
from backforge.strategy import schema as sc

__all__ = ["GeneratedStrategy", "GenerationPrompt", "generation_prompt", "generate_strategy", "PRICE_FIELDS"]

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
QUOTE_FIELDS = ("bid", "ask", "mid", "spread")

_RULES = """Rules:
- Use only these assets: {assets}. {universe_note}
- Price fields available: {fields}. No fundamentals.
- Each strategy is a condition and an action, evaluated on every bar's close for every asset of the universe (or
  its "assets"); orders fill at the next bar's open. Indicators only see past and current bars.
- Windows are whole bar counts (20) or durations ("30d", "4h").
- Every entry needs a way out: a strategy whose action closes the position, or a stop_loss / take_profit /
  trailing_stop on the buy/sell action.
- Do not add a "data" section: the system sets where the data comes from.
- Keep it as simple as the idea allows; name strategies after what they do."""


@dataclass(frozen=True)
class GenerationPrompt:
    """System prompt and user message of a generation request."""

    system: str
    user: str


def _schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(compact_schema(schema), separators=(",", ":"))


def generation_prompt(text: str, *, assets: tuple[str, ...] | None, fields: tuple[str, ...]) -> GenerationPrompt:
    """The prompt for a whole strategy in one answer.

    Parameters
    ----------
    text
        The idea in plain English.
    assets
        The assets available (None: any tickers; the file then runs on synthetic data).
    fields
        The price fields the data has.

    Returns
    -------
    GenerationPrompt

    Examples
    --------
    >>> prompt = generation_prompt("buy the dip", assets=None, fields=("close",))
    >>> "any tickers the idea names" in prompt.system
    True
    """
    rules = _rules(assets, fields)
    system = ("You translate a trader's idea, written in plain English, into a backforge strategy file.\n" + rules
              + "\nAnswer with ONE JSON object valid against this JSON Schema of a strategy file, and nothing else "
                "(no Markdown, no prose):\n" + _schema_text(sc.portfolio_json_schema()))
    return GenerationPrompt(system=system, user=f"The idea:\n{text.strip()}\n\nAnswer with the JSON object only.")


def _rules(assets: tuple[str, ...] | None, fields: tuple[str, ...]) -> str:
    if assets:
        listed, note = ", ".join(assets), "The universe is a subset of them (the ones the idea needs; all if it says so)."
    else:
        listed, note = "any tickers the idea names", "Choose the universe the idea describes."
    return _RULES.format(assets=listed, universe_note=note, fields=", ".join(fields))


@dataclass
class GeneratedStrategy:
    """A generated, validated strategy and the calls it took.

    Attributes
    ----------
    portfolio
        The validated :class:`~backforge.strategy.schema.Portfolio`.
    yaml
        The strategy file's text (canonical YAML with a header comment).
    calls
        Every call made (tokens, cost, outcome).
    mode
        ``"single"`` or ``"parallel"``.
    """

    portfolio: sc.Portfolio
    yaml: str
    calls: list[CallRecord] = field(default_factory=list)
    mode: str = "single"

    def save(self, path: str | Path) -> Path:
        """Write the YAML atomically (nothing half-written) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.yaml)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target

    def totals(self) -> dict[str, Any]:
        """Calls, cache hits, tokens and cost."""
        return {"calls": sum(1 for c in self.calls if not c.cached), "cached": sum(1 for c in self.calls if c.cached),
                "input_tokens": sum(c.input_tokens or 0 for c in self.calls if not c.cached),
                "output_tokens": sum(c.output_tokens or 0 for c in self.calls if not c.cached),
                "cost_usd": round(float(sum(c.cost_usd or 0.0 for c in self.calls)), 6)}


# ================================================================================= validation
class _Context:
    """What an answer is validated against: the assets, the data, and the data spec to write."""

    def __init__(self, *, assets: tuple[str, ...] | None, data: MarketData | None, years: float) -> None:
        self.assets = assets
        self.data = data
        self.years = years
        self._synthetic: dict[tuple[str, ...], MarketData] = {}

    def data_for(self, universe: list[str]) -> MarketData:
        if self.data is not None:
            return self.data
        key = tuple(universe)
        if key not in self._synthetic:
            from backforge.data.synth import gbm

            self._synthetic[key] = gbm(len(key), min(self.years, 10.0), seed=7, assets=key)
        return self._synthetic[key]

    def check_universe(self, universe: list[str]) -> list[str]:
        if self.assets is None:
            return []
        from backforge.errors import did_you_mean

        return [f"universe: {a!r} is not an available asset{did_you_mean(a, self.assets)} (available: "
                f"{', '.join(self.assets[:30])})" for a in universe if a not in self.assets]


def _validate_portfolio(raw: Any, context: _Context) -> sc.Portfolio:
    """Schema, assets and data checks of a whole strategy; raises AnswerError with the exact problem."""
    from backforge.strategy.compiler import compile_portfolio

    if not isinstance(raw, dict):
        raise AnswerError(f"the answer must be a JSON object (a strategy file), got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "data"}
    if "strategies" in raw and isinstance(raw["strategies"], list):
        raw["strategies"] = [s for s in raw["strategies"]]
    try:
        portfolio = sc.Portfolio.model_validate(sc._expand(raw, "portfolio"))
    except ValidationError as exc:
        first = sc.validation_error_to_config(exc)
        raise AnswerError(f"the strategy does not validate: {first} (all problems: {validation_feedback(exc)})") from None
    problems = context.check_universe(portfolio.universe)
    if problems:
        raise AnswerError("; ".join(problems))
    if not any(s.action.kind in ("buy", "sell", "rebalance") for s in portfolio.strategies):
        raise AnswerError("no strategy trades: at least one action must be buy, sell or rebalance")
    try:
        compile_portfolio(portfolio, context.data_for(portfolio.universe))
    except BackforgeError as exc:
        raise AnswerError(f"the strategy does not fit the data: {exc}") from None
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as exc:  # an input the compiler did not foresee
        raise AnswerError(f"the strategy cannot be compiled ({type(exc).__name__}: {exc}); simplify it") from None
    return portfolio


def _yaml(portfolio: sc.Portfolio, text: str, data_spec: dict[str, Any]) -> str:
    import yaml

    document = portfolio.model_dump(mode="json", exclude_defaults=True)
    from backforge.judge.evidence import _keep_kinds

    document = _keep_kinds(portfolio.model_dump(mode="json"), document)
    document["name"] = portfolio.name
    document["universe"] = list(portfolio.universe)
    document["data"] = data_spec
    header = "# Generated by `backforge generate` from:\n" + "".join(
        f"#   {line}\n" for line in text.strip().splitlines() or [""])
    header += "# Validated against the strategy schema and the data; run it with `backforge run FILE`.\n"
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    checked = sc.load_portfolio(yaml.safe_load(body))
    if checked.strategies != portfolio.strategies:  # pragma: no cover - the round trip is exact by construction
        raise JudgeError("the generated YAML does not round-trip; please report this")
    return header + body


# ================================================================================= parallel parts
class _PlannedRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    role: Literal["entry", "exit", "rebalance", "risk", "alert"]
    assets: list[str] | None = None
    schedule: Literal["every_bar", "daily", "weekly", "month_start", "month_end"] = "every_bar"
    condition: str | None = Field(None, description="When it fires, in words (null: on every scheduled bar).")
    action: str = Field(min_length=1, description="What it does, in words (buy 50% of equity with a 5% stop...).")


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    description: str = ""
    universe: list[str] = Field(min_length=1)
    cash: float = Field(100_000.0, gt=0)
    costs: sc.Costs | None = None
    rules: list[_PlannedRule] = Field(min_length=1, max_length=10)


class _ConditionAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: sc.Condition

    @field_validator("condition", mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        return sc._expand(value, "condition")


class _ActionAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: sc.Action

    @field_validator("action", mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        return sc._expand(value, "action")


def _parse_model(text: str, model: type[BaseModel]) -> Any:
    data = extract_json(text)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AnswerError(f"the answer does not match the schema: {validation_feedback(exc)}") from None


def _with_attempts(config: LLMConfig, attempts: int) -> LLMConfig:
    escalate = None if config.escalate is None else _with_attempts(config.escalate, attempts)
    return config.model_copy(update={"attempts": attempts, "escalate": escalate})


def _generate_parallel(text: str, client: LLMClient, context: _Context, fields: tuple[str, ...]) -> sc.Portfolio:
    from backforge.strategy.compiler import compile_portfolio

    rules = _rules(context.assets, fields)
    plan_system = ("You plan a backforge strategy from a trader's idea in plain English: the universe, the costs and "
                   "each rule (entry, exit, risk...) described in words; another step writes each rule's condition "
                   "and action.\n" + rules + "\nAnswer with ONE JSON object valid against this JSON Schema, nothing "
                   "else:\n" + _schema_text(_Plan.model_json_schema()))

    def parse_plan(answer: str) -> _Plan:
        plan = _parse_model(answer, _Plan)
        problems = context.check_universe(plan.universe)
        for i, r in enumerate(plan.rules):
            for a in r.assets or []:
                if a not in plan.universe:
                    problems.append(f"rules[{i}].assets: {a!r} is not in the universe {plan.universe}")
        if not any(r.role in ("entry", "rebalance") for r in plan.rules):
            problems.append("no rule enters the market: add an entry or a rebalance rule")
        if problems:
            raise AnswerError("; ".join(problems))
        return plan

    plan = client.ask("generate:plan", plan_system, f"The idea:\n{text.strip()}\n\nAnswer with the JSON object only.",
                      parse_plan)
    data = context.data_for(plan.universe)
    condition_schema = _schema_text(_ConditionAnswer.model_json_schema())
    action_schema = _schema_text(_ActionAnswer.model_json_schema())

    def probe(condition: Any = None, action: Any = None) -> None:
        probe_raw = {"name": "probe", "universe": plan.universe, "strategies": [{
            "name": "probe", "condition": condition, "action": action or {"kind": "alert"}}]}
        if condition is None:
            probe_raw["strategies"][0].pop("condition")
        try:
            compile_portfolio(sc.load_portfolio(probe_raw), data)
        except BackforgeError as exc:
            raise AnswerError(f"it does not fit the data: {exc}") from None

    def make_condition(rule: _PlannedRule) -> dict[str, Any]:
        system = ("You write one condition of a backforge strategy.\n" + rules + "\nThe strategy: " + plan.name
                  + f" ({plan.description}); universe {plan.universe}.\nAnswer with ONE JSON object "
                  "{\"condition\": ...} valid against this JSON Schema, nothing else:\n" + condition_schema)

        def parse(answer: str) -> dict[str, Any]:
            value = _parse_model(answer, _ConditionAnswer).condition.model_dump(mode="json")
            probe(condition=value)
            return value

        return client.ask(f"generate:condition:{rule.name}", system,
                          f"Rule {rule.name!r} ({rule.role}): fires when {rule.condition}.", parse)

    def make_action(rule: _PlannedRule) -> dict[str, Any]:
        system = ("You write one action of a backforge strategy.\n" + rules + "\nThe strategy: " + plan.name
                  + f" ({plan.description}); universe {plan.universe}.\nAnswer with ONE JSON object "
                  "{\"action\": ...} valid against this JSON Schema, nothing else:\n" + action_schema)

        def parse(answer: str) -> dict[str, Any]:
            value = _parse_model(answer, _ActionAnswer).action.model_dump(mode="json")
            probe(action=value)
            return value

        return client.ask(f"generate:action:{rule.name}", system, f"Rule {rule.name!r} ({rule.role}): {rule.action}.",
                          parse)

    jobs = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * len(plan.rules))) as pool:
        for rule in plan.rules:
            jobs.append((rule, pool.submit(make_condition, rule) if rule.condition else None, pool.submit(make_action, rule)))
        strategies = []
        for rule, condition, action in jobs:
            entry: dict[str, Any] = {"name": rule.name, "schedule": rule.schedule, "action": action.result()}
            if rule.assets:
                entry["assets"] = rule.assets
            if condition is not None:
                entry["condition"] = condition.result()
            strategies.append(entry)
    raw = {"name": plan.name, "description": plan.description, "universe": plan.universe, "cash": plan.cash,
           "strategies": strategies}
    if plan.costs is not None:
        raw["costs"] = plan.costs.model_dump(mode="json")
    try:
        return _validate_portfolio(raw, context)
    except AnswerError as exc:
        raise JudgeError(f"the generated parts validate one by one but not together: {exc}; try the single mode") from None


# ======================================================================================= entry point
def generate_strategy(text: str, llm: LLMConfig | LLMClient, *, assets: list[str] | tuple[str, ...] | None = None,
                      data: MarketData | None = None, data_files: dict[str, str] | None = None, years: float = 10.0,
                      parallel: bool = False, retries: int | None = None) -> GeneratedStrategy:
    """Generate a validated strategy from plain English.

    Parameters
    ----------
    text
        The idea, e.g. ``"buy SPY when its 50-day average crosses above the 200-day, sell on the cross back"``.
    llm
        The model (:func:`~backforge.judge.llm.load_llm_config`) or a client.
    assets
        The assets the strategy may use (default: those of ``data``; none given: any tickers, and the file
        runs on synthetic data).
    data
        Market data to validate against (windows must fit, assets must exist).
    data_files
        ``{asset: path}`` written into the file's data section (paths as they should appear in it).
    years
        Years of synthetic data when no files are given.
    parallel
        Plan first, then generate every condition and action concurrently.
    retries
        Corrected answers asked per model after an invalid one (default: the config's attempts - 1).

    Returns
    -------
    GeneratedStrategy

    Raises
    ------
    NotConfiguredError, ProviderError, InvalidAnswerError
        No model configured, the provider cannot be used, or no valid strategy came back.

    Examples
    --------
    >>> from backforge.judge import load_llm_config
    >>> generated = generate_strategy("buy SPY when it closes above its 200-day average, sell below it",
    ...                               load_llm_config(), assets=["SPY"])  # doctest: +SKIP
    >>> generated.save("spy_trend.yaml"), generated.portfolio.universe  # doctest: +SKIP
    (PosixPath('spy_trend.yaml'), ['SPY'])
    """
    if not text or not text.strip():
        raise ConfigError("describe the strategy in words, e.g. \"buy SPY when it closes above its 200-day average\"",
                          field="text")
    available = tuple(assets) if assets else (tuple(data.assets) if data is not None else None)
    fields = PRICE_FIELDS + (QUOTE_FIELDS if data is not None and data.has_quotes else ())
    context = _Context(assets=available, data=data, years=years)
    if isinstance(llm, LLMClient):
        client, own = llm, False
    else:
        config = llm if retries is None else _with_attempts(llm, max(1, int(retries) + 1))
        client, own = LLMClient(config), True
    first = len(client.calls)
    try:
        if parallel:
            portfolio = _generate_parallel(text, client, context, fields)
        else:
            prompt = generation_prompt(text, assets=available, fields=fields)
            portfolio = client.ask("generate", prompt.system, prompt.user,
                                   lambda answer: _validate_portfolio(extract_json(answer), context))
    finally:
        if own:
            client.close()
    if data_files:
        spec: dict[str, Any] = {"source": "files", "paths": {a: data_files[a] for a in portfolio.universe if a in data_files}}
        if len(spec["paths"]) < len(portfolio.universe):
            spec = {"source": "synthetic", "years": years, "bar": "1d", "seed": 7}
    else:
        spec = {"source": "synthetic", "years": years, "bar": "1d", "seed": 7}
    return GeneratedStrategy(portfolio=portfolio, yaml=_yaml(portfolio, text, spec), calls=list(client.calls[first:]),
                             mode="parallel" if parallel else "single")
