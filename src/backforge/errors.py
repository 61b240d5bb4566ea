"""The one exception family of backforge.

Every error a user can cause is a :class:`BackforgeError` subclass that carries *where* the problem is
(file, row, field, asset or config path), so the CLI can print one readable line and exit non-zero.
"""

from __future__ import annotations

__all__ = ["BackforgeError", "DataError", "ConfigError", "SimulationError", "ERROR_CODES", "error_code"]

ERROR_CODES: dict[str, str] = {}
"""Every stable error code and what it means (``docs/errors.md`` lists them; a test keeps the two equal)."""


def error_code(code: str, meaning: str) -> str:
    """Register a stable error code (``BF-AREA-WHAT``) with its meaning; returns the code.

    >>> error_code("BF-EXAMPLE-DEMO", "an example") in ERROR_CODES
    True
    """
    if not code.startswith("BF-") or code != code.upper():
        raise ValueError(f"error codes look like BF-AREA-WHAT, got {code!r}")
    ERROR_CODES.setdefault(code, meaning)
    return code


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

    code
        A stable identifier of the kind of problem (``BF-DATA-NAN-PRICE``), for programs and tests that
        must not depend on the wording; listed with its meaning in :data:`ERROR_CODES` and
        ``docs/errors.md``. Default: the class's code (``BF-DATA`` for a :class:`DataError`...).

    Examples
    --------
    >>> err = DataError("price must be > 0, got -1.0", asset="GOOG", row=3, field="close", code="BF-DATA-BAD-PRICE")
    >>> str(err), err.code
    ('asset GOOG, row 3, field close: price must be > 0, got -1.0', 'BF-DATA-BAD-PRICE')
    >>> ConfigError("bad").code
    'BF-CONFIG'
    """

    code: str = "BF-ERROR"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        asset: str | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.row = row
        self.field = field
        self.asset = asset
        if code is not None:
            if code not in ERROR_CODES:
                raise ValueError(f"unregistered error code {code!r}: add it with error_code(...)")
            self.code = code
        super().__init__(self.__str__())

    def to_dict(self) -> dict[str, object]:
        """The error as data (``code``, ``message`` and where), e.g. for a JSON API answer.

        >>> ConfigError("must be > 0", field="cash").to_dict()
        {'code': 'BF-CONFIG', 'message': 'must be > 0', 'field': 'cash'}
        """
        out: dict[str, object] = {"code": self.code, "message": self.message}
        for key in ("path", "row", "field", "asset"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

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

    code = "BF-DATA"


class ConfigError(BackforgeError):
    """Parameters or configuration that are invalid or impossible (negative cash, unknown sizing mode...)."""

    code = "BF-CONFIG"


class SimulationError(BackforgeError):
    """A simulation that cannot be carried out as requested (e.g. record capacity exhausted)."""

    code = "BF-SIM"


# ------------------------------------------------------------------------------------- the codes
for _code, _meaning in (
    ("BF-ERROR", "any other backforge error"),
    ("BF-DATA", "market data that cannot be used as given"),
    ("BF-CONFIG", "a parameter or configuration that is invalid or impossible"),
    ("BF-SIM", "a simulation that cannot be carried out as requested"),
    ("BF-JUDGE", "a judgement that cannot be made as asked"),
    ("BF-BROKER", "a venue call that did not succeed"),
    ("BF-SESSION", "a paper/live session state that cannot be used"),
    ("BF-SERVICE", "a job-service request that cannot be served"),
    ("BF-DATA-NAN-PRICE", "a bar with some but not all of open, high, low and close"),
    ("BF-DATA-BAD-PRICE", "a price that is not finite or not > 0"),
    ("BF-DATA-OHLC-ORDER", "a bar whose low is above its open/close or whose high is below them"),
    ("BF-DATA-UNSORTED", "timestamps out of order or duplicated"),
    ("BF-DATA-SHAPE", "arrays whose shape does not match the timestamps and assets"),
    ("BF-DATA-BAD-VOLUME", "a volume that is not finite or is negative"),
    ("BF-DATA-CROSSED-QUOTE", "a bid above its ask"),
    ("BF-DATA-UNKNOWN-ASSET", "an asset name the data does not have"),
    ("BF-DATA-NO-COLUMN", "a file or frame without a required column"),
    ("BF-CONFIG-UNKNOWN-OPTION", "an option or field name that does not exist (with a did-you-mean)"),
    ("BF-CONFIG-INVALID", "an option or field whose value breaks its rule (type, range)"),
    ("BF-CONFIG-DURATION", "a duration that does not parse (e.g. '15min', '30d')"),
    ("BF-JUDGE-RULE", "a judge rule that could not read the evidence pack"),
    ("BF-BROKER-RETRYABLE", "the venue did not act (refused, 429, 503): the call may be retried"),
    ("BF-BROKER-AMBIGUOUS", "the venue may or may not have acted (timeout, 5xx): resolved by reconciliation"),
    ("BF-BROKER-FINAL", "the venue refused the request (unknown symbol, size, funds)"),
    ("BF-BROKER-AUTH", "the venue rejected the keys (401/403): the session halts"),
):
    error_code(_code, _meaning)


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
