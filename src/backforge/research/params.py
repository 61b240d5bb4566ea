"""Parameters inside strategy configs: any number may be declared as a parameter with a range or a
list of choices, and parameters may be constrained against each other.

In a strategy file::

    window: {param: fast, range: [5, 50, 5]}         # 5, 10, ..., 50 (inclusive)
    window: {param: slow, choices: [50, 100, 200]}
    value: {param: stop, range: [0.02, 0.10, 0.02], default: 0.05}
    constraints: ["fast < slow"]

A plain ``backforge run`` uses each parameter's ``default`` (else its first value). Optimizers
instantiate the config with other values; every instantiation is validated like a hand-written file.
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from backforge.errors import ConfigError, did_you_mean

__all__ = ["Parameter", "ParameterSpace", "resolve_parameters", "MAX_VALUES_PER_PARAMETER", "MAX_SCAN"]

MAX_VALUES_PER_PARAMETER = 100_000
"""Most values one parameter may take (counted from its range before any value is built)."""
MAX_SCAN = 200_000
"""Largest space enumerated in full (to count the allowed combinations, check the constraints or
sample without repetition); larger spaces are only ever sampled."""


@dataclass(frozen=True)
class Parameter:
    """One declared parameter: its name, the values it may take, its default, where it appears."""

    name: str
    values: tuple
    default: Any
    paths: tuple[str, ...]

    @property
    def is_integer(self) -> bool:
        return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in self.values)


def _range_values(spec: list, path: str) -> tuple:
    if not isinstance(spec, (list, tuple)) or len(spec) not in (2, 3):
        raise ConfigError("range must be [start, stop] or [start, stop, step] (stop included)", path=path)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
        raise ConfigError(f"range values must be numbers, got {spec!r}", path=path)
    start, stop = spec[0], spec[1]
    step = spec[2] if len(spec) == 3 else 1
    if step <= 0:
        raise ConfigError(f"range step must be > 0, got {step}", path=path)
    if stop < start:
        raise ConfigError(f"range is inverted: start {start} > stop {stop}", path=path)
    integer = all(float(v).is_integer() and isinstance(v, int) for v in spec)
    if not all(math.isfinite(v) for v in spec):
        raise ConfigError(f"range values must be finite numbers, got {spec!r}", path=path)
    count = math.floor((stop - start) / step + 1e-9) + 1
    if not math.isfinite(count) or count > MAX_VALUES_PER_PARAMETER:
        shown = f"{int(count):,}" if math.isfinite(count) else "too many"
        raise ConfigError(f"range has {shown} values, more than the {MAX_VALUES_PER_PARAMETER:,} a parameter may "
                          "take; use a larger step", path=path)
    n = int(count)
    if integer:
        return tuple(int(start + i * step) for i in range(n))
    return tuple(round(start + i * step, 12) for i in range(n))


class _Collector:
    def __init__(self) -> None:
        self.found: dict[str, dict] = {}

    def walk(self, node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "param" in node:
                self.declare(node, path)
                return
            for key, value in node.items():
                self.walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.walk(value, f"{path}[{i}]")

    def declare(self, node: dict, path: str) -> None:
        name = node.get("param")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"a parameter needs a name made of letters, digits and _, got {name!r}", path=path)
        unknown = set(node) - {"param", "range", "choices", "default"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in a parameter (use range, choices, default)", path=path)
        if ("range" in node) == ("choices" in node):
            raise ConfigError("a parameter needs either range: [start, stop, step] or choices: [...]", path=path)
        if "range" in node:
            values = _range_values(node["range"], f"{path}.range")
        else:
            choices = node["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError("choices must be a non-empty list", path=f"{path}.choices")
            if len(choices) > MAX_VALUES_PER_PARAMETER:
                raise ConfigError(f"choices has {len(choices):,} values, more than the {MAX_VALUES_PER_PARAMETER:,} a "
                                  "parameter may take", path=f"{path}.choices")
            values = tuple(choices)
        default = node.get("default", values[0])
        previous = self.found.get(name)
        if previous is not None:
            if previous["values"] != values:
                raise ConfigError(f"parameter {name!r} is declared twice with different values", path=path)
            previous["paths"].append(path)
            return
        self.found[name] = {"values": values, "default": default, "paths": [path]}


class _Constraint:
    """A comparison between parameter expressions, e.g. ``fast < slow`` or ``fast * 2 <= slow``."""

    _ALLOWED = (ast.Expression, ast.Compare, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load, ast.Add,
                ast.Sub, ast.Mult, ast.Div, ast.USub, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.BoolOp,
                ast.And, ast.Or)

    def __init__(self, text: str, names: Sequence[str], path: str) -> None:
        self.text = text
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError:
            raise ConfigError(f"cannot parse constraint {text!r}; write e.g. 'fast < slow'", path=path) from None
        for node in ast.walk(tree):
            if not isinstance(node, self._ALLOWED):
                raise ConfigError(f"constraint {text!r} may only compare parameters with + - * / and numbers", path=path)
            if isinstance(node, ast.Name) and node.id not in names:
                raise ConfigError(f"constraint {text!r} names unknown parameter {node.id!r}{did_you_mean(node.id, names)}", path=path)
        if not isinstance(tree.body, (ast.Compare, ast.BoolOp)):
            raise ConfigError(f"constraint {text!r} must be a comparison", path=path)
        self.code = compile(tree, "<constraint>", "eval")

    def __call__(self, values: dict) -> bool:
        return bool(eval(self.code, {"__builtins__": {}}, values))  # noqa: S307 - AST checked above


class ParameterSpace:
    """The declared parameters and constraints of a raw strategy config.

    Examples
    --------
    >>> raw = {"strategies": [{"window": {"param": "fast", "range": [5, 15, 5]}},
    ...                       {"window": {"param": "slow", "choices": [10, 20]}}], "constraints": ["fast < slow"]}
    >>> space = ParameterSpace.from_config(raw)
    >>> [p.name for p in space.parameters], space.total(), space.size()
    (['fast', 'slow'], 6, 4)
    >>> space.defaults()
    {'fast': 5, 'slow': 10}
    """

    def __init__(self, raw: dict, parameters: list[Parameter], constraints: list[_Constraint]) -> None:
        self.raw = raw
        self.parameters = parameters
        self.constraints = constraints
        self.names = [p.name for p in parameters]

    @classmethod
    def from_config(cls, raw: dict) -> "ParameterSpace":
        collector = _Collector()
        body = {k: v for k, v in raw.items() if k != "constraints"}
        collector.walk(body, "")
        params = [Parameter(name, spec["values"], spec["default"], tuple(spec["paths"])) for name, spec in collector.found.items()]
        names = [p.name for p in params]
        texts = raw.get("constraints") or []
        if not isinstance(texts, list):
            raise ConfigError("constraints must be a list of comparisons like 'fast < slow'", path="constraints")
        constraints = [_Constraint(str(t), names, f"constraints[{i}]") for i, t in enumerate(texts)]
        space = cls(raw, params, constraints)
        if params and constraints and space.total() <= MAX_SCAN and not any(True for _ in itertools.islice(space.grid(), 1)):
            raise ConfigError(f"the constraints {texts} exclude every combination of the parameter values", path="constraints")
        return space

    def __bool__(self) -> bool:
        return bool(self.parameters)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def allowed(self, values: dict) -> bool:
        return all(c(values) for c in self.constraints)

    def order_key(self, names: Sequence[str] | None = None) -> Callable[[dict], tuple]:
        """The key trials are sorted by (one order for every search): the text of each parameter's value
        (``names``: these parameters, default all), so an order never depends on the types mixed in a
        parameter.

        >>> space = ParameterSpace.from_config({"strategies": [{"x": {"param": "n", "choices": [5, 10]}}]})
        >>> sorted([{"n": 5}, {"n": 10}], key=space.order_key())
        [{'n': 10}, {'n': 5}]
        """
        names = tuple(self.names if names is None else names)
        return lambda values: tuple(str(values.get(n)) for n in names)

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every combination that satisfies the constraints, in a deterministic order."""
        for combo in itertools.product(*(p.values for p in self.parameters)):
            values = dict(zip(self.names, combo))
            if self.allowed(values):
                yield values

    def size(self) -> int:
        """Number of allowed combinations: without constraints :meth:`total` (computed); with them,
        counted when the space has at most :data:`MAX_SCAN` combinations, else :meth:`total` as an
        upper bound (a space that large is never enumerated, only sampled)."""
        if not self.constraints or self.total() > MAX_SCAN:
            return self.total()
        return sum(1 for _ in self.grid())

    def total(self) -> int:
        """Number of combinations before constraints (arithmetic: nothing is enumerated)."""
        return math.prod(len(p.values) for p in self.parameters) if self.parameters else 0

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """One combination drawn uniformly (before constraints) without enumerating the space."""
        return {p.name: p.values[int(rng.integers(len(p.values)))] for p in self.parameters}

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` distinct allowed combinations drawn at random (all of them when there are fewer).

        Spaces of up to :data:`MAX_SCAN` combinations are enumerated and sampled without repetition;
        larger ones are sampled by drawing each parameter independently and rejecting repeats and
        disallowed combinations (never enumerated). The same seed gives the same combinations.

        Examples
        --------
        >>> space = ParameterSpace.from_config({"a": {"param": "x", "range": [1, 100000]},
        ...                                     "b": {"param": "y", "range": [1, 100000]}})
        >>> space.total(), len(space.sample(3, seed=1)), space.sample(3, seed=1) == space.sample(3, seed=1)
        (10000000000, 3, True)
        """
        rng = np.random.default_rng(seed)
        total = self.total()
        if total <= MAX_SCAN and not self.constraints and n < total:
            # the same draw as below over the grid's order, without building the grid: index -> combination
            idx = sorted(int(i) for i in rng.choice(total, size=n, replace=False))
            sizes = [len(p.values) for p in self.parameters]
            out = []
            for i in idx:
                combo = []
                for size in reversed(sizes):
                    i, digit = divmod(i, size)
                    combo.append(digit)
                out.append({p.name: p.values[d] for p, d in zip(self.parameters, reversed(combo))})
            return out
        if total <= MAX_SCAN:
            everything = list(self.grid())
            if n >= len(everything):
                return everything
            idx = rng.choice(len(everything), size=n, replace=False)
            return [everything[i] for i in sorted(idx)]
        seen: set[tuple] = set()
        out = []
        attempts = 0
        while len(out) < n and attempts < n * 50:
            attempts += 1
            combo = tuple(p.values[int(rng.integers(len(p.values)))] for p in self.parameters)
            if combo in seen:
                continue
            values = dict(zip(self.names, combo))
            if self.allowed(values):
                seen.add(combo)
                out.append(values)
        if not out:
            raise ConfigError(f"the constraints allowed none of {attempts:,} combinations drawn at random from "
                              f"{total:,}; loosen them", path="constraints")
        return out

    def instantiate(self, values: dict[str, Any]) -> dict:
        """A copy of the raw config with every parameter replaced by its value."""
        unknown = set(values) - set(self.names)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(f"unknown parameter {name!r}{did_you_mean(name, self.names)}", path="parameters")
        full = {**self.defaults(), **values}
        return resolve_parameters(self.raw, full)


def resolve_parameters(raw: Any, values: dict[str, Any] | None = None) -> Any:
    """Replace every ``{param: ...}`` node by its value (``values`` or the default) and drop ``constraints``.

    Examples
    --------
    >>> resolve_parameters({"a": {"param": "x", "range": [1, 3]}, "constraints": []}, {"x": 2})
    {'a': 2}
    """

    def sub(node: Any) -> Any:
        if isinstance(node, dict):
            if "param" in node:
                name = node["param"]
                if values is not None and name in values:
                    return values[name]
                if "default" in node:
                    return node["default"]
                if "range" in node and isinstance(node["range"], list) and node["range"]:
                    return node["range"][0]
                if "choices" in node and isinstance(node["choices"], list) and node["choices"]:
                    return node["choices"][0]
                return node
            return {k: sub(v) for k, v in node.items() if k != "constraints"}
        if isinstance(node, list):
            return [sub(v) for v in node]
        return node

    return sub(raw)  # sub() builds new containers all the way down: the input is never modified
