"""What every backforge command line shares: one-line errors, argument errors, output-location checks.

* :func:`friendly_errors` wraps a command: a :class:`~backforge.errors.BackforgeError`, an ``OSError``
  (missing file, permission denied, read-only file system, symlink loop...) or a ``MemoryError`` becomes
  one red ``error: ...`` line on stderr and exit code 2 — never a traceback.
* :class:`OneLineErrorsGroup` is the Click group class of every Typer app (``typer.Typer(cls=...)``):
  argument-parser errors (unknown option, missing argument, bad value) are printed as one line too,
  instead of Typer's multi-line panel.
* :func:`check_output_folder` / :func:`check_output_file` reject an output location that cannot be
  written *before* a command does its work.

Every line goes through :func:`backforge._secrets.redact` and is escaped, so neither a secret nor
Rich markup in a message (``[red]`` in a path) reaches the terminal.
"""

from __future__ import annotations

import errno
import functools
import sys
from typing import Any, Callable, TypeVar

import typer
import typer.core

from backforge._paths import check_output_file, check_output_folder
from backforge._secrets import redact
from backforge.errors import BackforgeError

__all__ = ["friendly_errors", "error_line", "OneLineErrorsGroup", "check_output_folder", "check_output_file"]

_F = TypeVar("_F", bound=Callable[..., Any])


def error_line(message: Any) -> None:
    """Print ``error: <message>`` (redacted, markup escaped, on one line) to stderr."""
    from rich.console import Console
    from rich.markup import escape

    text = " ".join(redact(message).split())
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/bold red] {escape(text)}")


def os_error_text(exc: OSError) -> str:
    """``"Permission denied: /path"`` for an OSError (``str(exc)`` when it names no file)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
    return f"{reason}: {target}"


def friendly_errors(fn: _F) -> _F:
    """Turn BackforgeError, OSError and MemoryError into one red line and exit code 2.

    Examples
    --------
    >>> from typer.testing import CliRunner
    >>> import typer
    >>> app = typer.Typer()
    >>> @app.command()
    ... @friendly_errors
    ... def read(path: str) -> None:
    ...     open(path)
    >>> result = CliRunner().invoke(app, ["/no/such/file"])
    >>> result.exit_code, result.output.strip()
    (2, 'error: No such file or directory: /no/such/file')
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BackforgeError as exc:
            error_line(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # output piped into `head`: not an error of the command
                raise
            error_line(os_error_text(exc))
        except MemoryError:
            error_line("out of memory: ask for less data (fewer assets, years or parameter combinations, or longer bars)")
        raise typer.Exit(code=2)

    return wrapper  # type: ignore[return-value]


class OneLineErrorsGroup(typer.core.TyperGroup):
    """A Typer group whose argument errors are one line (``error: No such option: --x (see 'backforge run --help')``).

    Exit codes stay Click's: 2 for usage errors, 1 for an abort, 0 after ``--help``.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                  **extra)
        except typer.TyperException as exc:  # Typer's (vendored) Click errors: usage errors, bad values, file errors
            if not standalone_mode:
                raise
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                error_line(_usage_message(exc))
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            if not standalone_mode:
                raise
            error_line("aborted")
            sys.exit(1)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result


def _usage_message(exc: Exception) -> str:
    formatter = getattr(exc, "format_message", None)
    message = (formatter() if callable(formatter) else str(exc)).strip().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return f"{message} (see '{ctx.command_path} --help')"
    return f"{message} (see --help)"
