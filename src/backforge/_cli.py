"""What every backforge command line shares: the Typer app settings, the console, one-line errors, argument
errors, output-location checks and the progress bar.

* :func:`command_app` makes the Typer app of a command module (the main CLI and every sub-CLI:
  ``backforge.research.cli.app``, ``backforge.data.cli.data_app``...), so they all print errors alike;
  :data:`console` is the standard output they print to.

* :func:`friendly_errors` wraps a command: a :class:`~backforge.errors.BackforgeError`, an ``OSError``
  (missing file, permission denied, read-only file system, symlink loop...) or a ``MemoryError`` becomes
  one red ``error: ...`` line on stderr and exit code 2 — never a traceback.
* :class:`OneLineErrorsGroup` is the Click group class of every Typer app (``typer.Typer(cls=...)``):
  argument-parser errors (unknown option, missing argument, bad value) are printed as one line too,
  instead of Typer's multi-line panel.
* :func:`check_output_folder` / :func:`check_output_file` reject an output location that cannot be
  written *before* a command does its work.
* :func:`progress_bar` is the one Rich progress bar of long work (optimize and walk-forward searches,
  signal sweeps, ``data synth``).
* :func:`exit_now` ends the ``backforge`` process after its command without the interpreter's teardown, and
  :func:`tune_gc` makes the garbage collector's passes rarer in it.

Every line goes through :func:`backforge._secrets.redact` and is escaped, so neither a secret nor
Rich markup in a message (``[red]`` in a path) reaches the terminal.
"""

from __future__ import annotations

import atexit
import errno
import functools
import gc
import os
import sys
import threading
from typing import Any, Callable, NoReturn, TypeVar

import typer
import typer.core
from rich.console import Console

from backforge._paths import check_output_file, check_output_folder
from backforge._secrets import redact
from backforge.errors import BackforgeError

__all__ = ["friendly_errors", "error_line", "OneLineErrorsGroup", "check_output_folder", "check_output_file",
           "command_app", "console", "err_console", "progress_bar", "exit_now", "tune_gc"]

_F = TypeVar("_F", bound=Callable[..., Any])

console = Console()
"""Standard output of every command (tables, summaries, saved paths)."""
err_console = Console(stderr=True)
"""Standard error, for what is not the command's output (``interrupted``)."""


def error_line(message: Any) -> None:
    """Print ``error: <message>`` (redacted, markup escaped, on one line) to stderr."""
    from rich.console import Console
    from rich.markup import escape

    text = " ".join(redact(message).split())
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/bold red] {escape(text)}")


GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Raise the cyclic garbage collector's first threshold from 700 to 50,000 container allocations.

    A command loads numba, pydantic models and Polars: hundreds of thousands of long-lived objects, and each
    full collection walks all of them. With Python's default a pass ran every 700 net allocations and a full
    one every few hundred thousand; together they took 0.15-0.2 s of a 1.05 s ``backforge demo`` (0.90 s
    with this, 0.85 s with the collector off). Collection stays on — cycles made during a long paper session
    or search are still freed, 70x less often in small passes — and the older generations keep their
    thresholds. For the ``backforge`` process only: importing backforge as a library changes nothing.
    """
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def exit_now(code: Any = 0) -> NoReturn:
    """End the process with exit ``code`` once a command has returned, skipping the interpreter's teardown.

    With numba loaded, Python's finalization frees numba's type registries and every compiled kernel's LLVM
    handles one object at a time: 0.2-0.45 s after the last line of output (measured: a demo whose work
    ends at 1.04 s exits at 1.61 s, 1.11 s without the teardown). Nothing is lost by skipping it: whatever a
    command writes is durable when it returns (files are written atomically and closed, SQLite
    transactions committed — the state the SIGKILL tests already kill at any moment), the ``atexit``
    handlers still run (logging, temporary folders, multiprocessing) and the standard streams are flushed.
    The ordinary ``sys.exit`` is kept when numba was never loaded (nothing to save), when another thread or
    a child process is alive (they are joined as usual), for a non-integer code, and if a stream cannot be
    flushed (a closed pipe gets Python's own handling).
    """
    code = 0 if code is None else code
    if not isinstance(code, int) or "numba" not in sys.modules or threading.active_count() > 1:
        sys.exit(code)
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].active_children():
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code & 0xFF)


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


def command_app(**options: Any) -> typer.Typer:
    """The Typer app of a command module: one-line errors (:class:`OneLineErrorsGroup`), no shell-completion
    options, no Rich tracebacks; ``options`` are Typer's (``name``, ``help``, ``no_args_is_help``...).

    A sub-CLI module defines ``app = command_app()`` and its commands at module level; the main CLI adds it
    with ``add_typer`` (without a name its commands become top-level commands).

    Examples
    --------
    >>> from typer.testing import CliRunner
    >>> app = command_app(help="Greetings.")
    >>> @app.command()
    ... def hello(name: str) -> None:
    ...     print(f"hello {name}")
    >>> @app.command()
    ... def bye() -> None:
    ...     print("bye")
    >>> CliRunner().invoke(app, ["hello", "you"]).output.strip()
    'hello you'
    >>> result = CliRunner().invoke(app, ["hello", "you", "--loud"])
    >>> result.exit_code, "No such option: --loud" in result.output
    (2, True)
    """
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, cls=OneLineErrorsGroup, **options)


def progress_bar(*, console: Any = None, transient: bool = True):
    """The progress bar of long work (parameter searches, walk-forward, sweeps, synthetic data): a Rich
    ``Progress`` (a context manager, or ``start``/``stop``; ``add_task``/``advance``/``update``) showing the
    task, the bar, done/total, elapsed time and ETA, on ``console`` (default: Rich's, the terminal),
    removed when it stops unless ``transient=False``.

    Examples
    --------
    >>> with progress_bar() as progress:
    ...     task = progress.add_task("trials", total=3)
    ...     for _ in range(3):
    ...         progress.advance(task)
    >>> progress.finished
    True
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    "ETA", TimeRemainingColumn(), console=console, transient=transient)
