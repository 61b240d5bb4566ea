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
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer
import typer.core

from backforge._secrets import redact
from backforge.errors import BackforgeError, ConfigError

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


# ---------------------------------------------------------------------- output locations

def _existing_ancestor(path: Path, option: str) -> Path:
    """The nearest part of ``path`` that exists (``path`` itself included); refuses files and symlink loops."""
    current = path
    while True:
        try:
            os.stat(current)
        except FileNotFoundError:
            if os.path.islink(current):
                raise ConfigError(f"{option} is a broken symbolic link", path=str(current), field=option) from None
            parent = current.parent
            if parent == current:
                return current
            current = parent
            continue
        except NotADirectoryError:
            current = current.parent
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{option} is a symbolic link loop", path=str(current), field=option) from None
            raise ConfigError(f"{option} cannot be used: {exc.strerror}", path=str(current), field=option) from None
        if current != path and not current.is_dir():
            raise ConfigError(f"{option} lies under a file, not a folder", path=str(current), field=option)
        return current


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".backforge-write-test-", dir=folder)
    except OSError as exc:
        reason = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full"}.get(exc.errno or 0, exc.strerror)
        where = "" if folder == target else f" (in {folder})"
        raise ConfigError(f"{option} cannot be written{where}: {reason}", path=str(target), field=option) from None
    os.close(fd)
    os.unlink(name)


def check_output_folder(path: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Refuse an output folder that exists as a file, is a symlink loop, or cannot be written; return it.

    Nothing is created: the nearest existing folder is probed with a temporary file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_folder(folder / "runs") == folder / "runs"
    True
    >>> (folder / "file").write_text("x")
    1
    >>> try:
    ...     check_output_folder(folder / "file")
    ... except ConfigError as exc:
    ...     print(exc.message)
    --out exists and is a file, not a folder
    """
    target = Path(path)
    existing = _existing_ancestor(target, option)
    if existing == target and not target.is_dir():
        raise ConfigError(f"{option} exists and is a file, not a folder", path=str(target), field=option)
    _probe_writable(existing, option, target)
    return target


def check_output_file(path: str | os.PathLike[str], *, option: str = "--output") -> Path:
    """Refuse an output file that is a folder, a symlink loop, or in a folder that cannot be written; return it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_file(folder / "out.csv") == folder / "out.csv"
    True
    >>> try:
    ...     check_output_file(folder)
    ... except ConfigError as exc:
    ...     print(exc.message)
    --output is a folder; give a file name
    """
    target = Path(path)
    existing = _existing_ancestor(target, option)
    if existing == target:
        if target.is_dir():
            raise ConfigError(f"{option} is a folder; give a file name", path=str(target), field=option)
        existing = target.parent
    _probe_writable(existing, option, target)
    return target
