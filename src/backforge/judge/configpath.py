"""Config paths (``strategies[0].condition.rhs.window``) and the tunable numbers of a strategy config.

Paths are written the way validation errors name them: dotted field names, list positions in
brackets. A strategy may also be named instead of numbered (``strategies[enter].action.stop_loss``).
:func:`find_knobs` lists the numbers of a config a parameter search would tune — indicator windows,
comparison thresholds, stop distances — grouping the places that hold the same value of the same kind
(the 20 of ``sma(20)`` in an entry and in the matching exit are one knob).

Examples
--------
>>> config = {"strategies": [{"name": "enter", "condition": {"kind": "compare", "op": ">",
...     "lhs": {"kind": "price", "field": "close"}, "rhs": {"kind": "sma", "window": 20}}}]}
>>> parse_path("strategies[enter].condition.rhs.window", config)
['strategies', 0, 'condition', 'rhs', 'window']
>>> get_path(config, "strategies[0].condition.rhs.window")
20
>>> [knob.label for knob in find_knobs(config)]
['sma.window = 20']
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from backforge.errors import ConfigError, did_you_mean

__all__ = ["parse_path", "format_path", "get_path", "set_path", "Knob", "find_knobs", "neighbour_values"]

_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")
_WINDOW_FIELDS = {"window", "fast", "slow", "signal", "atr_window"}
_DISTANCE_KEYS = ("stop_loss", "take_profit", "trailing_stop")


def parse_path(text: str, config: Any = None) -> list[str | int]:
    """Split a config path into keys and list positions.

    With ``config``, a bracketed name is resolved to the position of the list item whose ``name``
    matches (``strategies[exit]``), and the path is checked to exist.

    Parameters
    ----------
    text
        The path, e.g. ``"strategies[1].action.stop_loss.percent"``.
    config
        The config the path points into (optional).

    Returns
    -------
    list
        Keys (str) and positions (int).

    Examples
    --------
    >>> parse_path("strategies[1].action.stop_loss.percent")
    ['strategies', 1, 'action', 'stop_loss', 'percent']
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("a config path must be a non-empty text like 'strategies[0].condition.rhs.window'",
                          field="path")
    parts: list[str | int] = []
    position = 0
    cleaned = text.strip()
    for match in _TOKEN.finditer(cleaned):
        if match.start() != position and cleaned[position:match.start()] != ".":
            raise ConfigError(f"cannot read config path {text!r}", field="path")
        position = match.end()
        key, index = match.group(1), match.group(2)
        if key is not None:
            parts.append(key)
        elif index.strip().lstrip("-").isdigit():
            parts.append(int(index))
        else:
            parts.append(index.strip().strip("'\""))
    if position != len(cleaned) or not parts:
        raise ConfigError(f"cannot read config path {text!r}", field="path")
    if config is None:
        return parts
    resolved: list[str | int] = []
    node = config
    for i, part in enumerate(parts):
        where = format_path(resolved) or "the config"
        if isinstance(node, list):
            if isinstance(part, str):
                names = [item.get("name") for item in node if isinstance(item, dict)]
                if part not in names:
                    raise ConfigError(f"no item named {part!r} in {where}{did_you_mean(part, [n for n in names if n])}",
                                      field="path")
                part = names.index(part)
            if not -len(node) <= part < len(node):
                raise ConfigError(f"{where} has {len(node)} items, no item {part}", field="path")
            part = part % len(node)
        elif isinstance(node, dict):
            if not isinstance(part, str) or part not in node:
                raise ConfigError(f"{where} has no field {part!r}{did_you_mean(str(part), list(node))}", field="path")
        else:
            raise ConfigError(f"{where} is a value, it has no field {part!r}", field="path")
        resolved.append(part)
        node = node[part]
    return resolved


def format_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """Join keys and positions into a config path.

    Examples
    --------
    >>> format_path(["strategies", 0, "condition", "rhs", "window"])
    'strategies[0].condition.rhs.window'
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def get_path(config: Any, path: str | list[str | int]) -> Any:
    """The value at ``path`` in ``config`` (names of list items allowed).

    Examples
    --------
    >>> get_path({"a": [{"name": "x", "b": 3}]}, "a[x].b")
    3
    """
    parts = parse_path(path, config) if isinstance(path, str) else list(path)
    node = config
    for part in parts:
        node = node[part]
    return node


def set_path(config: Any, path: str | list[str | int], value: Any) -> Any:
    """A deep copy of ``config`` with ``value`` at ``path`` (which must exist, except a last missing key
    of a mapping, which is added).

    Examples
    --------
    >>> set_path({"a": {"b": 1}}, "a.b", 2)
    {'a': {'b': 2}}
    >>> set_path({"a": {"b": 1}}, "a.c", 5)
    {'a': {'b': 1, 'c': 5}}
    """
    out = copy.deepcopy(config)
    if isinstance(path, str):
        parts = parse_path(path)
        try:
            parts = parse_path(path, config)
        except ConfigError:
            parent = parse_path(format_path(parts[:-1]), config) if len(parts) > 1 else []
            holder = get_path(config, parent) if parent else config
            if not isinstance(holder, dict) or not isinstance(parts[-1], str):
                raise
            parts = [*parent, parts[-1]]
    else:
        parts = list(path)
    node = out
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return out


@dataclass(frozen=True)
class Knob:
    """A tunable number of a config: every path holding it, its kind and its value.

    Attributes
    ----------
    label
        ``"sma.window = 20"``, ``"compare.threshold = 30"``, ``"stop_loss.percent = 0.05"``.
    paths
        The config paths holding the value (changed together).
    value
        The current value.
    integer
        True for bar-count windows (neighbours stay whole numbers >= 1).
    """

    label: str
    paths: tuple[str, ...]
    value: float | int
    integer: bool


def _walk(node: Any, parts: list[str | int], found: dict[tuple, list[str]], values: dict[tuple, Any]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, [*parts, i], found, values)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("kind")
    for key, value in node.items():
        if isinstance(value, bool):
            continue
        if key in _WINDOW_FIELDS and isinstance(value, int) and kind is not None:
            group = (f"{kind}.{key}", value)
            found.setdefault(group, []).append(format_path([*parts, key]))
            values[group] = value
        elif key == "num_std" and isinstance(value, (int, float)) and kind == "bollinger":
            group = ("bollinger.num_std", float(value))
            found.setdefault(group, []).append(format_path([*parts, key]))
            values[group] = float(value)
        elif key in _DISTANCE_KEYS and isinstance(value, dict):
            for sub in ("percent", "atr", "fixed"):
                number = value.get(sub)
                if isinstance(number, (int, float)) and not isinstance(number, bool) and number:
                    group = (f"{key}.{sub}", float(number))
                    found.setdefault(group, []).append(format_path([*parts, key, sub]))
                    values[group] = float(number)
            if isinstance(value.get("atr_window"), int) and value.get("atr") is not None:
                group = (f"{key}.atr_window", value["atr_window"])
                found.setdefault(group, []).append(format_path([*parts, key, "atr_window"]))
                values[group] = value["atr_window"]
    if kind == "compare":
        for side in ("rhs", "lhs"):
            other = node.get(side)
            if isinstance(other, dict) and other.get("kind") == "const":
                number = other.get("value")
                if isinstance(number, (int, float)) and not isinstance(number, bool) and number != 0:
                    group = ("compare.threshold", float(number))
                    found.setdefault(group, []).append(format_path([*parts, side, "value"]))
                    values[group] = float(number)
    for key, value in node.items():
        if key in _DISTANCE_KEYS:
            continue
        if isinstance(value, (dict, list)):
            _walk(value, [*parts, key], found, values)


def find_knobs(config: dict[str, Any], *, limit: int = 8) -> list[Knob]:
    """The tunable numbers of a resolved strategy config, most widely used first.

    Windows of indicators (bar counts; durations are left alone), MACD periods, Bollinger widths,
    non-zero thresholds of comparisons against constants, and stop/target distances. Places holding
    the same value of the same kind form one knob.

    Parameters
    ----------
    config
        A strategy config in canonical form (``Portfolio.model_dump(mode="json")``).
    limit
        At most this many knobs.

    Returns
    -------
    list[Knob]

    Examples
    --------
    >>> from backforge.strategy.schema import load_portfolio
    >>> config = load_portfolio({"name": "x", "universe": ["A"], "strategies": [
    ...     {"name": "in", "condition": {"lhs": {"rsi": {"window": 2}}, "op": "<", "rhs": 10},
    ...      "action": {"buy": {"stop_loss": {"percent": 0.05}}}}]}).model_dump(mode="json")
    >>> [(k.label, k.paths) for k in find_knobs(config)]  # doctest: +NORMALIZE_WHITESPACE
    [('compare.threshold = 10', ('strategies[0].condition.rhs.value',)),
     ('rsi.window = 2', ('strategies[0].condition.lhs.window',)),
     ('stop_loss.percent = 0.05', ('strategies[0].action.stop_loss.percent',))]
    """
    found: dict[tuple, list[str]] = {}
    values: dict[tuple, Any] = {}
    _walk(config.get("strategies", []), ["strategies"], found, values)
    groups = sorted(found, key=lambda g: -len(found[g]))  # stable: first seen first among equals
    knobs = []
    for group in groups[:limit]:
        value = values[group]
        integer = isinstance(value, int)
        shown = value if integer else float(f"{value:.6g}")
        knobs.append(Knob(label=f"{group[0]} = {shown:g}" if not integer else f"{group[0]} = {shown}",
                          paths=tuple(found[group]), value=value, integer=integer))
    return knobs


def neighbour_values(value: float | int, *, integer: bool, step: float = 0.2) -> list[float | int]:
    """The two neighbours of a value: ``value * (1 - step)`` and ``value * (1 + step)`` (windows
    rounded to distinct whole numbers >= 1).

    Examples
    --------
    >>> neighbour_values(20, integer=True), neighbour_values(2, integer=True), neighbour_values(0.05, integer=False)
    ([16, 24], [1, 3], [0.04, 0.06])
    """
    if integer:
        low = max(1, int(round(value * (1 - step))))
        high = int(round(value * (1 + step)))
        if low >= value:
            low = value - 1
        if high <= value:
            high = value + 1
        return [v for v in (low, high) if v >= 1 and v != value]
    return [float(f"{value * (1 - step):.10g}"), float(f"{value * (1 + step):.10g}")]
