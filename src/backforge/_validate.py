"""Checks of single user-given numbers and arrays at the boundary of the library, shared by the research,
data and engine front ends: each raises a :class:`~backforge.errors.BackforgeError` that names the
parameter and the value received (``ConfigError`` by default; data checks pass ``error=DataError``).

Examples
--------
>>> whole(5, "n_splits", 2), positive("0.5", "block"), finite(3, "shift")
(5, 0.5, 3.0)
>>> whole(1.5, "n_splits", 2)
Traceback (most recent call last):
...
backforge.errors.ConfigError: field n_splits: n_splits must be a whole number >= 2, got 1.5
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backforge.errors import BackforgeError, ConfigError

__all__ = ["is_whole", "whole", "positive", "finite", "finite_array"]


def is_whole(value: Any, *, integral_floats: bool = True) -> bool:
    """True for an int (not a bool), or a float with an integral value when ``integral_floats``.

    >>> is_whole(4), is_whole(4.0), is_whole(4.5), is_whole(True)
    (True, True, False, False)
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return integral_floats and isinstance(value, (float, np.floating)) and float(value).is_integer()


def whole(value: Any, name: str, minimum: int, *, maximum: int | None = None, integral_floats: bool = False,
          error: type[BackforgeError] = ConfigError) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (booleans refused; ``10.0`` accepted when ``integral_floats``).

    >>> whole(10.0, "n", 1, integral_floats=True)
    10
    >>> whole(2**70, "seed", 0, maximum=2**64 - 1)
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field seed: seed must be a whole number <= 18446744073709551615, got 1180591620717411303424
    """
    if not is_whole(value, integral_floats=integral_floats) or value < minimum:
        raise error(f"{name} must be a whole number >= {minimum}, got {value!r}", field=name)
    if maximum is not None and value > maximum:
        raise error(f"{name} must be a whole number <= {maximum}, got {value!r}", field=name)
    return int(value)


def finite(value: Any, name: str, *, error: type[BackforgeError] = ConfigError) -> float:
    """``value`` as a finite float.

    >>> finite("nan", "x")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field x: x must be finite, got 'nan'
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number, got {value!r}", field=name) from None
    if not math.isfinite(number):
        raise error(f"{name} must be finite, got {value!r}", field=name)
    return number


def positive(value: Any, name: str, *, error: type[BackforgeError] = ConfigError) -> float:
    """``value`` as a finite float > 0.

    >>> positive(-1, "block")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field block: block must be a number > 0, got -1
    """
    if isinstance(value, bool):
        number = math.nan
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
    if not math.isfinite(number) or number <= 0.0:
        raise error(f"{name} must be a number > 0, got {value!r}", field=name)
    return number


def finite_array(value: Any, name: str, *, error: type[BackforgeError] = ConfigError) -> np.ndarray:
    """``value`` as a float64 array whose every element is finite (the first bad one is named).

    >>> finite_array([1.0, float("inf")], "returns")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field returns: returns must be finite, got inf at index (1,)
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"{name} must be numeric, got {type(value).__name__}", field=name) from None
    if not np.isfinite(array).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise error(f"{name} must be finite, got {array[position]} at index {position}", field=name)
    return array
