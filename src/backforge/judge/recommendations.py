"""Typed, testable recommendations, the LLM review format, and how a recommendation becomes a variant.

Four kinds of recommendation, each with a ``rationale`` and an ``expected_effect``:

* :class:`ChangeParameter` — set a number of the config (a config path such as
  ``strategies[0].condition.rhs.window``, or a declared parameter's name) to a new ``value``, or try a
  few ``values`` (one variant each);
* :class:`AddFilter` — AND a condition (strategy language) into the entry condition of a strategy;
* :class:`ChangeRisk` — stops, targets, trailing stops, position size, leverage;
* :class:`RunTest` — a test to run: walk-forward, Monte Carlo, cost stress, hold-out.

:class:`Review` is what an LLM reviewer must answer (its JSON Schema is given to the model).
:func:`variants_of` turns a recommendation into validated variant configs;
:func:`check_recommendation` says why one cannot be applied to a run (fed back to the model).

Examples
--------
>>> rec = AddFilter(strategy="enter", condition={"lhs": "close", "op": ">", "rhs": {"sma": {"window": 200}}},
...                 rationale="loses in down-trends", expected_effect="fewer losing entries")
>>> rec.condition.kind, rec.condition.rhs.window
('compare', 200)
>>> config = {"name": "x", "universe": ["A"], "strategies": [
...     {"name": "enter", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}},
...      "action": {"buy": {}}}]}
>>> [label for label, _ in variants_of(rec, config)]
['add_filter to enter: close > sma(200)']
"""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from backforge.errors import BackforgeError, ConfigError, did_you_mean
from backforge.strategy import schema as sc

__all__ = [
    "ChangeParameter",
    "AddFilter",
    "ChangeRisk",
    "RunTest",
    "Recommendation",
    "Dispute",
    "Review",
    "RECOMMENDATION_TYPES",
    "review_json_schema",
    "recommendation_json_schema",
    "variants_of",
    "class_variant_of",
    "check_recommendation",
    "describe_condition",
    "describe_recommendation",
]

RECOMMENDATION_TYPES = ("change_parameter", "add_filter", "change_risk", "run_test")
MAX_VALUES = 6
"""At most this many values in one :class:`ChangeParameter` (each is one variant, one more trial)."""


class _Recommendation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rationale: str = Field(min_length=1, max_length=1500, description="Why, citing the evidence's numbers.")
    expected_effect: str = Field(min_length=1, max_length=800,
                                 description="What should change if it works (e.g. 'Sharpe at 2x costs above 0.5').")


Number = Union[int, float]


class ChangeParameter(_Recommendation):
    """Set one number of the strategy config, or try a few values (one variant each).

    ``path`` is a config path (``strategies[0].condition.rhs.window``; a strategy may be named:
    ``strategies[enter].action.stop_loss.percent``) or the name of a parameter the strategy declares.
    ``also`` lists other paths holding the same number that must change with it (the window of the
    same average in the entry and the exit).
    """

    type: Literal["change_parameter"] = "change_parameter"
    path: str = Field(min_length=1, description="Config path or declared parameter name.")
    also: list[str] = Field(default_factory=list, max_length=12, description="Other paths changed to the same value.")
    value: Number | None = Field(None, description="The new value (give value or values).")
    values: list[Number] | None = Field(None, min_length=1, max_length=MAX_VALUES,
                                        description="Values to try, one variant each (give value or values).")

    @model_validator(mode="after")
    def _one_of_value_values(self) -> "ChangeParameter":
        if (self.value is None) == (self.values is None):
            raise ValueError("give exactly one of value (a new value) or values (a few values to try)")
        return self

    def candidates(self) -> list[Number]:
        """The value(s) to try."""
        return [self.value] if self.value is not None else list(self.values or [])


def _expand_condition(value: Any) -> Any:
    return sc._expand(value, "condition")


class AddFilter(_Recommendation):
    """AND ``condition`` (strategy language, shorthands allowed) into the condition of the buy/sell
    strategy named ``strategy`` (None: every buy/sell strategy)."""

    type: Literal["add_filter"] = "add_filter"
    strategy: str | None = Field(None, description="Name of the buy/sell strategy to filter; null for all of them.")
    condition: sc.Condition = Field(description="A condition of the strategy language (see the strategy schema).")

    @field_validator("condition", mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        return _expand_condition(value)


class ChangeRisk(_Recommendation):
    """Risk management of the buy/sell strategy named ``strategy`` (None: every buy/sell strategy):
    stop-loss, take-profit, trailing stop (distances from the entry price), allocation (sizing), and the
    account's leverage limit."""

    type: Literal["change_risk"] = "change_risk"
    strategy: str | None = Field(None, description="Name of the buy/sell strategy; null for all of them.")
    stop_loss: sc.Distance | None = None
    take_profit: sc.Distance | None = None
    trailing_stop: sc.Distance | None = None
    allocation: sc.Allocation | None = None
    leverage: float | None = Field(None, gt=0, le=100, description="Maximum gross exposure as a multiple of equity.")

    @model_validator(mode="after")
    def _something(self) -> "ChangeRisk":
        if all(getattr(self, name) is None for name in ("stop_loss", "take_profit", "trailing_stop", "allocation",
                                                         "leverage")):
            raise ValueError("set at least one of stop_loss, take_profit, trailing_stop, allocation or leverage")
        return self


class RunTest(_Recommendation):
    """A test to run on the strategy: ``walk_forward`` (windows as bars or durations like ``"2y"``),
    ``monte_carlo`` (``method``, ``n_simulations``), ``cost_stress`` (``cost_multiplier``) or ``holdout``."""

    type: Literal["run_test"] = "run_test"
    test: Literal["walk_forward", "monte_carlo", "cost_stress", "holdout"]
    in_sample: int | str | None = Field(None, description="Walk-forward in-sample length: bars or a duration ('2y').")
    out_of_sample: int | str | None = Field(None, description="Walk-forward out-of-sample length.")
    method: Literal["bootstrap", "reshuffle", "block_bootstrap"] | None = None
    n_simulations: int | None = Field(None, ge=100, le=100_000)
    cost_multiplier: float | None = Field(None, gt=0, le=50)


Recommendation = Annotated[Union[ChangeParameter, AddFilter, ChangeRisk, RunTest], Field(discriminator="type")]
_RECOMMENDATION = TypeAdapter(Recommendation)


class Dispute(BaseModel):
    """A rule finding the reviewer disagrees with, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="The rule id.")
    reason: str = Field(min_length=1, max_length=800)


class Review(BaseModel):
    """An LLM reviewer's answer: a verdict, a summary, its view of the rule findings, and at most eight
    typed recommendations, each to be applied and re-tested on data the reviewer never saw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Literal["robust", "promising", "fragile", "likely_overfit", "broken"]
    summary: str = Field(min_length=1, max_length=3000, description="Plain-English assessment citing the numbers.")
    agrees_with: list[str] = Field(default_factory=list, description="Ids of the rule findings you agree with.")
    disputes: list[Dispute] = Field(default_factory=list, description="Rule findings you disagree with, and why.")
    concerns: list[str] = Field(default_factory=list, max_length=10, description="Other concerns, with numbers.")
    recommendations: list[Recommendation] = Field(default_factory=list, max_length=8)


def review_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Review` (given to LLM reviewers).

    Examples
    --------
    >>> schema = review_json_schema()
    >>> sorted(schema["properties"])[:3], "AddFilter" in schema["$defs"]
    (['agrees_with', 'concerns', 'disputes'], True)
    """
    return Review.model_json_schema()


def recommendation_json_schema() -> dict[str, Any]:
    """The JSON Schema of one recommendation (the union of the four kinds).

    Examples
    --------
    >>> len(recommendation_json_schema()["oneOf"])
    4
    """
    return _RECOMMENDATION.json_schema()


# ==================================================================================== descriptions
def describe_indicator(node: Any) -> str:
    """A short human form of an indicator node (dict or model).

    Examples
    --------
    >>> describe_indicator({"kind": "sma", "window": 20, "of": {"kind": "price", "field": "close"}})
    'sma(20)'
    """
    d = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
    if not isinstance(d, dict):
        return str(d)
    kind = d.get("kind")
    if kind == "price":
        return d.get("field", "close") + (f"[{d['asset']}]" if d.get("asset") else "")
    if kind == "const":
        value = d.get("value")
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)
    if kind in ("add", "sub", "mul", "div", "min", "max"):
        symbol = {"add": " + ", "sub": " - ", "mul": " * ", "div": " / "}.get(kind)
        parts = [describe_indicator(a) for a in d.get("args", [])]
        return "(" + symbol.join(parts) + ")" if symbol else f"{kind}({', '.join(parts)})"
    of = d.get("of")
    inner = "" if of is None or (isinstance(of, dict) and of.get("kind") == "price" and of.get("field", "close") == "close"
                                 and not of.get("asset")) else describe_indicator(of)
    args = [str(d[k]) for k in ("window", "fast", "slow", "signal") if k in d]
    if kind == "bollinger":
        args.append(f"{d.get('num_std', 2):g}σ {d.get('output', 'upper')}")
    if kind == "macd" and d.get("output", "line") != "line":
        args.append(d["output"])
    if inner:
        args.insert(0, inner)
    return f"{kind}({', '.join(args)})"


def describe_condition(node: Any) -> str:
    """A short human form of a condition node (dict or model).

    Examples
    --------
    >>> describe_condition({"kind": "all", "conditions": [
    ...     {"kind": "compare", "lhs": {"kind": "price", "field": "close"}, "op": ">", "rhs": {"kind": "sma", "window": 200}},
    ...     {"kind": "compare", "lhs": {"kind": "rsi", "window": 2}, "op": "<", "rhs": {"kind": "const", "value": 10}}]})
    'close > sma(200) and rsi(2) < 10'
    """
    d = node.model_dump(mode="json") if isinstance(node, BaseModel) else node
    if not isinstance(d, dict):
        return str(d)
    kind = d.get("kind")
    if kind == "compare":
        op = d.get("op", "?").replace("_", " ")
        return f"{describe_indicator(d.get('lhs'))} {op} {describe_indicator(d.get('rhs'))}"
    if kind in ("all", "any"):
        joiner = " and " if kind == "all" else " or "
        return joiner.join(describe_condition(c) if c.get("kind") not in ("all", "any") else f"({describe_condition(c)})"
                           for c in d.get("conditions", []))
    if kind == "not":
        return f"not ({describe_condition(d.get('condition'))})"
    if kind == "held_for":
        return f"({describe_condition(d.get('condition'))}) held for {d.get('window')}"
    if kind == "at_least":
        return f"at least {d.get('n')} of ({'; '.join(describe_condition(c) for c in d.get('conditions', []))})"
    return json.dumps(d, separators=(",", ":"))


def describe_recommendation(rec: Any) -> str:
    """One line describing a recommendation.

    Examples
    --------
    >>> describe_recommendation(ChangeRisk(stop_loss={"percent": 0.08}, rationale="r", expected_effect="e"))
    'change_risk of every buy/sell strategy: stop_loss 8%'
    """
    if isinstance(rec, ChangeParameter):
        target = f"{rec.value:g}" if rec.value is not None else "one of " + ", ".join(f"{v:g}" for v in rec.values or [])
        extra = f" (+{len(rec.also)} more place{'s' if len(rec.also) > 1 else ''})" if rec.also else ""
        return f"change_parameter {rec.path}{extra} to {target}"
    if isinstance(rec, AddFilter):
        return f"add_filter to {rec.strategy or 'every buy/sell strategy'}: {describe_condition(rec.condition)}"
    if isinstance(rec, ChangeRisk):
        parts = []
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            dist = getattr(rec, name)
            if dist is not None:
                parts.append(f"{name} " + (f"{dist.percent:.0%}" if dist.percent is not None else
                                           f"{dist.atr:g} ATR({dist.atr_window})" if dist.atr is not None else f"{dist.fixed:g}"))
        if rec.allocation is not None:
            parts.append(f"allocation {rec.allocation.type} {rec.allocation.value:g}")
        if rec.leverage is not None:
            parts.append(f"leverage {rec.leverage:g}")
        return f"change_risk of {rec.strategy or 'every buy/sell strategy'}: {', '.join(parts)}"
    if isinstance(rec, RunTest):
        details = {k: getattr(rec, k) for k in ("in_sample", "out_of_sample", "method", "n_simulations", "cost_multiplier")
                   if getattr(rec, k) is not None}
        return f"run_test {rec.test}" + (f" ({', '.join(f'{k}={v}' for k, v in details.items())})" if details else "")
    return str(rec)


# ========================================================================================= variants
def _trade_strategies(config: dict[str, Any], name: str | None, kind: str) -> list[int]:
    strategies = config.get("strategies") or []
    names = [s.get("name") for s in strategies]
    if name is not None:
        if name not in names:
            raise ConfigError(f"{kind}: no strategy named {name!r}{did_you_mean(name, [n for n in names if n])} "
                              f"(strategies: {', '.join(str(n) for n in names)})", field="strategy")
        index = names.index(name)
        action = strategies[index].get("action") or {}
        if action.get("kind") not in ("buy", "sell"):
            raise ConfigError(f"{kind}: strategy {name!r} does not buy or sell (its action is {action.get('kind')!r}); "
                              "name a buy/sell strategy", field="strategy")
        return [index]
    found = [i for i, s in enumerate(strategies) if (s.get("action") or {}).get("kind") in ("buy", "sell")]
    if not found:
        raise ConfigError(f"{kind}: the strategy has no buy/sell action to change", field="strategy")
    return found


def _canonical(config: dict[str, Any]) -> dict[str, Any]:
    return sc.load_portfolio(config).model_dump(mode="json")


def variants_of(rec: Any, config: dict[str, Any], *, raw_config: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The validated variant configs a recommendation stands for, with a label each.

    Parameters
    ----------
    rec
        A :class:`ChangeParameter`, :class:`AddFilter` or :class:`ChangeRisk` (a :class:`RunTest`
        has no variant: it returns ``[]``).
    config
        The run's resolved strategy config.
    raw_config
        The strategy file's config with declared parameters (needed when ``path`` names one).

    Returns
    -------
    list[tuple[str, dict]]
        ``(label, config)`` pairs; each config passed :func:`~backforge.strategy.schema.load_portfolio`.

    Raises
    ------
    ConfigError
        The recommendation does not fit the config (unknown path or strategy, invalid value...).

    Examples
    --------
    >>> config = {"name": "x", "universe": ["A"], "strategies": [
    ...     {"name": "enter", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}},
    ...      "action": {"buy": {}}}]}
    >>> rec = ChangeParameter(path="strategies[enter].condition.rhs.window", values=[30, 40],
    ...                       rationale="r", expected_effect="e")
    >>> [(label, c["strategies"][0]["condition"]["rhs"]["window"]) for label, c in variants_of(rec, config)]
    [('strategies[0].condition.rhs.window = 30', 30), ('strategies[0].condition.rhs.window = 40', 40)]
    """
    if isinstance(rec, RunTest):
        return []
    base = _canonical(config)
    out = _variants(rec, base, raw_config)
    changed = [(label, variant) for label, variant in out if variant != base]
    if not changed:
        raise ConfigError(f"{describe_recommendation(rec)} changes nothing: the strategy already does that",
                          field="value")
    return changed


def _variants(rec: Any, base: dict[str, Any], raw_config: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """Every variant of a recommendation (no-op ones included); see :func:`variants_of`."""
    from backforge.judge.configpath import format_path, parse_path, set_path

    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(rec, ChangeParameter):
        declared = None
        if raw_config is not None and "[" not in rec.path and "." not in rec.path:
            from backforge.research.params import ParameterSpace

            space = ParameterSpace.from_config(raw_config)
            if rec.path in space.names:
                declared = space
        for value in rec.candidates():
            if declared is not None:
                values = {**declared.defaults(), rec.path: value}
                if not declared.allowed(values):
                    raise ConfigError(f"{rec.path}={value:g} is excluded by the strategy's constraints "
                                      f"{[c.text for c in declared.constraints]}", field="path")
                variant = _canonical(declared.instantiate(values))
                label = f"{rec.path} = {value:g}"
            else:
                variant = base
                paths = [rec.path, *rec.also]
                resolved = []
                for path in paths:
                    parts = parse_path(path, base)
                    current = base
                    for part in parts:
                        current = current[part]
                    if isinstance(current, (dict, list)) or isinstance(current, bool):
                        raise ConfigError(f"{format_path(parts)} holds {type(current).__name__ if not isinstance(current, bool) else 'a true/false'}, "
                                          "not a number; point the path at a number such as a window or a threshold",
                                          field="path")
                    if current is not None and not isinstance(current, (int, float)):
                        raise ConfigError(f"{format_path(parts)} holds {current!r}, not a number", field="path")
                    resolved.append(format_path(parts))
                    variant = set_path(variant, parts, value)
                label = f"{resolved[0]} = {value:g}" + (f" (+{len(resolved) - 1} more)" if len(resolved) > 1 else "")
                variant = _canonical(variant)
            out.append((label, variant))
        return out
    if isinstance(rec, AddFilter):
        variant = copy.deepcopy(base)
        condition = rec.condition.model_dump(mode="json")
        for index in _trade_strategies(variant, rec.strategy, "add_filter"):
            strategy = variant["strategies"][index]
            existing = strategy.get("condition")
            strategy["condition"] = condition if existing is None else {"kind": "all", "conditions": [existing, condition]}
        out.append((describe_recommendation(rec), _canonical(variant)))
        return out
    if isinstance(rec, ChangeRisk):
        variant = copy.deepcopy(base)
        if any(getattr(rec, name) is not None for name in ("stop_loss", "take_profit", "trailing_stop", "allocation")):
            for index in _trade_strategies(variant, rec.strategy, "change_risk"):
                action = variant["strategies"][index]["action"]
                for name in ("stop_loss", "take_profit", "trailing_stop", "allocation"):
                    value = getattr(rec, name)
                    if value is not None:
                        action[name] = value.model_dump(mode="json")
        if rec.leverage is not None:
            variant.setdefault("costs", {})["leverage"] = float(rec.leverage)
        out.append((describe_recommendation(rec), _canonical(variant)))
        return out
    raise ConfigError(f"unknown recommendation {type(rec).__name__}", field="type")


def signal_variant_of(rec: Any) -> tuple[str, dict[str, Any]] | None:
    """The :func:`backforge.from_signals` option changes of a :class:`ChangeRisk` (runs made from signal
    arrays accept only stop distances in percent and sizing), or None when it has none.

    Examples
    --------
    >>> signal_variant_of(ChangeRisk(stop_loss={"percent": 0.05}, rationale="r", expected_effect="e"))
    ('change_risk of every buy/sell strategy: stop_loss 5%', {'stop_loss': 0.05})
    """
    if not isinstance(rec, ChangeRisk):
        return None
    options: dict[str, Any] = {}
    for name in ("stop_loss", "take_profit", "trailing_stop"):
        dist = getattr(rec, name)
        if dist is not None:
            if dist.percent is None:
                raise ConfigError(f"{name}: runs made from signals take distances in percent only", field=name)
            options[name] = dist.percent
    if rec.allocation is not None:
        options["size"] = rec.allocation.value
        options["size_type"] = rec.allocation.type
    if rec.leverage is not None:
        options["leverage"] = rec.leverage
    return describe_recommendation(rec), options


def class_variant_of(rec: Any, parameters: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The parameter changes of a :class:`ChangeParameter` on a Strategy class (its ``path`` and ``also``
    name parameters of the class), one per value; any other recommendation needs a strategy config.

    Examples
    --------
    >>> rec = ChangeParameter(path="fast", values=[5, 15], rationale="r", expected_effect="e")
    >>> class_variant_of(rec, {"fast": 10, "slow": 30})
    [('change_parameter fast to 5', {'fast': 5}), ('change_parameter fast to 15', {'fast': 15})]
    """
    if not isinstance(rec, ChangeParameter):
        raise ConfigError(f"{rec.type} needs a strategy config; this run is a Strategy class: use change_parameter "
                          f"on its parameters ({', '.join(parameters) or 'it declares none'}) or run_test",
                          field=rec.type)
    names = [rec.path, *rec.also]
    for name in names:
        default = parameters.get(name, None)
        if name not in parameters:
            raise ConfigError(f"the class has no parameter {name!r}{did_you_mean(name, parameters)}", field=name)
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise ConfigError(f"parameter {name!r} is {type(default).__name__} ({default!r}), not a number",
                              field=name)
    out = []
    for value in rec.candidates():
        if isinstance(parameters[rec.path], int) and float(value) != int(value):
            raise ConfigError(f"parameter {rec.path!r} is a whole number, got {value!r}", field=rec.path)
        typed = int(value) if isinstance(parameters[rec.path], int) else float(value)
        label = f"change_parameter {rec.path}" + (f" (+{', '.join(rec.also)})" if rec.also else "") + f" to {typed:g}"
        out.append((label, {name: typed for name in names}))
    return out


def check_recommendation(rec: Any, *, mode: str, config: dict[str, Any] | None,
                         raw_config: dict[str, Any] | None = None) -> str | None:
    """Why ``rec`` cannot be applied to a run of ``mode`` with ``config``, or None when it can.

    Examples
    --------
    >>> rec = ChangeParameter(path="strategies[0].oops", value=3, rationale="r", expected_effect="e")
    >>> check_recommendation(rec, mode="signals", config=None)
    'change_parameter needs a strategy config; this run was made from signal arrays: use change_risk or run_test'
    """
    if isinstance(rec, RunTest):
        return None
    if mode in ("code", "compiled"):
        try:
            class_variant_of(rec, (config or {}).get("parameters") or {})
        except BackforgeError as exc:
            return exc.message
        return None
    if mode != "strategy" or not config:
        if isinstance(rec, ChangeRisk):
            try:
                signal_variant_of(rec)
            except BackforgeError as exc:
                return exc.message
            return None
        return (f"{rec.type} needs a strategy config; this run was made from signal arrays: use change_risk or "
                "run_test")
    try:
        variants_of(rec, config, raw_config=raw_config)
    except BackforgeError as exc:
        return f"{exc.path}: {exc.message}" if exc.path else exc.message
    except ValidationError as exc:  # pragma: no cover - load_portfolio turns these into ConfigError
        return str(exc).splitlines()[0]
    return None
