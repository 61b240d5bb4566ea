"""Output locations checked before a command (or a catalog write) does any work.

:func:`check_output_folder` and :func:`check_output_file` refuse, with one clear
:class:`~backforge.errors.ConfigError` naming the option and the path, a location that is an existing
file where a folder is needed (or the reverse), a symbolic link loop or a broken link, a path under a
file, or a folder that cannot be written (permission denied, read-only file system, full disk). Nothing
is created: the nearest existing folder is probed with a temporary file that is removed at once.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Mapping

from backforge.errors import ConfigError

__all__ = ["check_output_folder", "check_output_file", "config_dir", "cache_dir"]


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


# ============================================================================ per-user folders
_APP = "backforge"


def _user_folder(variable: str, platform_default: Path, environ: Mapping[str, str] | None) -> Path:
    """``$VARIABLE/backforge`` when set, else platformdirs' folder (re-rooted at ``environ``'s ``HOME``)."""
    env = os.environ if environ is None else environ
    if env.get(variable):
        return Path(env[variable]) / _APP
    if environ is not None and environ.get("HOME"):
        try:  # an explicit environment with its own home: the same folder under that home
            return Path(environ["HOME"]) / platform_default.relative_to(Path.home())
        except (ValueError, RuntimeError):
            pass
    return platform_default


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user configuration folder: ``$XDG_CONFIG_HOME/backforge`` when that variable is set, else
    platformdirs' user configuration folder (``~/.config/backforge`` on Linux).

    ``environ`` is the environment to read (default ``os.environ``); its ``HOME`` is honoured.

    Examples
    --------
    >>> config_dir({"XDG_CONFIG_HOME": "/tmp/xdg"}).as_posix()
    '/tmp/xdg/backforge'
    """
    import platformdirs

    return _user_folder("XDG_CONFIG_HOME", platformdirs.user_config_path(_APP, appauthor=False), environ)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/backforge`` when that variable is set, else
    platformdirs' user cache folder (``~/.cache/backforge`` on Linux).

    Examples
    --------
    >>> cache_dir({"XDG_CACHE_HOME": "/tmp/cache"}).as_posix()
    '/tmp/cache/backforge'
    """
    import platformdirs

    return _user_folder("XDG_CACHE_HOME", platformdirs.user_cache_path(_APP, appauthor=False), environ)
