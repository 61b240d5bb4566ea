"""The one exception family of backforge.

Every error a user can cause is a :class:`BackforgeError` subclass that carries *where* the problem is
(file, row, field, asset or config path), so the CLI can print one readable line and exit non-zero.
"""

from __future__ import annotations

__all__ = ["BackforgeError", "DataError", "ConfigError", "SimulationError"]


class BackforgeError(Exception):
    """Base class of all errors raised by backforge for bad input or impossible requests.

    Parameters
    ----------
    message
        What went wrong and, where possible, how to fix it.
    path
        A file path or a config path (``strategies[1].condition.rhs.window``).
    row
        Zero-based row index in the data (or one-based line number in a file when ``path`` is a file).
    field
        The column or field name.
    asset
        The asset (symbol) concerned.

    Examples
    --------
    >>> err = DataError("price must be > 0, got -1.0", asset="GOOG", row=3, field="close")
    >>> str(err)
    'asset GOOG, row 3, field close: price must be > 0, got -1.0'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        asset: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.row = row
        self.field = field
        self.asset = asset
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.asset is not None:
            where.append(f"asset {self.asset}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return (", ".join(where) + ": " + self.message) if where else self.message


class DataError(BackforgeError):
    """Market data that cannot be used as given (bad prices, unsorted timestamps, wrong shapes, bad files)."""


class ConfigError(BackforgeError):
    """Parameters or configuration that are invalid or impossible (negative cash, unknown sizing mode...)."""


class SimulationError(BackforgeError):
    """A simulation that cannot be carried out as requested (e.g. record capacity exhausted)."""


def did_you_mean(name: str, choices) -> str:
    """A ``"; did you mean 'X'?"`` hint for a mistyped name ('' when nothing is close).

    Case is ignored when comparing, so ``"sma"`` suggests ``"SMA"``.

    Examples
    --------
    >>> did_you_mean("SMAA", ["SMA", "EMA"])
    "; did you mean 'SMA'?"
    >>> did_you_mean("a", ["A", "B"])
    "; did you mean 'A'?"
    """
    import difflib

    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    key = str(name).lower()
    if key in lowered:
        return f"; did you mean {lowered[key]!r}?"
    close = difflib.get_close_matches(key, list(lowered), n=1)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""
