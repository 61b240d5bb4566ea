"""How a data file named in a strategy file (or on the command line) becomes a path: one function for all.

:func:`resolve_data_path` expands environment variables — ``$NAME``, ``${NAME}`` and ``${NAME:-default}``
(the default is used when the variable is unset or empty) — and ``~``, then resolves a relative result
against ``base`` (the strategy file's folder). The example strategies name the shared sample data as
``${BACKFORGE_SHARED_DATA:-../../shared/data}/GOOG.csv``: the folder named by ``BACKFORGE_SHARED_DATA`` when
it is set, else ``../shared/data`` next to the repository.

Examples
--------
>>> import os
>>> os.environ["EXAMPLE_DATA"] = "/srv/market"
>>> str(resolve_data_path("${EXAMPLE_DATA}/GOOG.csv", base="/strategies"))
'/srv/market/GOOG.csv'
>>> str(resolve_data_path("${EXAMPLE_UNSET_DATA:-../data}/GOOG.csv", base="/strategies"))
'/strategies/../data/GOOG.csv'
>>> del os.environ["EXAMPLE_DATA"]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from backforge.errors import ConfigError

__all__ = ["resolve_data_path", "SHARED_DATA_VARIABLE"]

SHARED_DATA_VARIABLE = "BACKFORGE_SHARED_DATA"
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def resolve_data_path(entry: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                      where: str | None = None) -> Path:
    """The path a data-file entry names: variables and ``~`` expanded, relative paths taken from ``base``.

    Parameters
    ----------
    entry
        The text written in the strategy file (or a path).
    base
        Folder that relative paths start from (default: the current folder).
    where
        Config path reported in errors, e.g. ``data.paths.GOOG``.

    Raises
    ------
    ConfigError
        A variable without a default is not set (or is empty).

    Examples
    --------
    >>> str(resolve_data_path("prices/GOOG.csv", base="/work/strategies"))
    '/work/strategies/prices/GOOG.csv'
    >>> resolve_data_path("$EXAMPLE_NOT_SET/x.csv", where="data.paths.X")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: data.paths.X: the data path '$EXAMPLE_NOT_SET/x.csv' uses $EXAMPLE_NOT_SET, which is not set; set it or write ${EXAMPLE_NOT_SET:-fallback/folder}
    """
    text = os.fspath(entry)

    def substitute(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = os.environ.get(name)
        if value:
            return value
        if match.group("default") is not None:
            return match.group("default")
        raise ConfigError(f"the data path {text!r} uses ${name}, which is not set; set it or write "
                          f"${{{name}:-fallback/folder}}", path=where)

    path = Path(os.path.expanduser(_VARIABLE.sub(substitute, text)))
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()) / path
    return path
