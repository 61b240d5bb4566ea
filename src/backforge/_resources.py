"""Memory and disk checks made arithmetically *before* a large allocation, so an impossible request fails
with one clear line instead of a MemoryError, a swap storm or the kernel's OOM killer.

Examples
--------
>>> require_memory(1024, what="a tiny array")
>>> try:
...     require_memory(2**70, what="1e9 years of 1d bars", hint="use fewer years")
... except ConfigError as exc:
...     print(exc.message[:40])
1e9 years of 1d bars needs about 1.0 ZiB
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from backforge.errors import ConfigError

__all__ = ["available_memory", "require_memory", "require_disk", "format_bytes"]


def format_bytes(n: float) -> str:
    """``"36.6 GiB"``.

    Examples
    --------
    >>> format_bytes(39_300_000_000)
    '36.6 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if abs(n) < 1024 or unit == "ZiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} ZiB"  # pragma: no cover


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: ``MemAvailable`` of ``/proc/meminfo``, capped by
    the cgroup limit of a container; ``None`` when the platform does not say."""
    figures = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    figures.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            figures.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    if not figures:
        try:
            figures.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(figures)


def require_memory(n_bytes: float, *, what: str, hint: str = "ask for less", field: str | None = None) -> None:
    """Raise a :class:`ConfigError` when ``n_bytes`` is more than the memory available now."""
    available = available_memory()
    if available is not None and n_bytes > available:
        raise ConfigError(f"{what} needs about {format_bytes(n_bytes)} of memory, but only {format_bytes(available)} "
                          f"is available; {hint}", field=field)


def require_disk(folder: str | os.PathLike[str], n_bytes: float, *, what: str, hint: str = "free some space",
                 field: str | None = None) -> None:
    """Raise a :class:`ConfigError` when the file system of ``folder`` (or its nearest existing parent) has less
    than ``n_bytes`` free."""
    path = Path(folder)
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return
    if n_bytes > free:
        raise ConfigError(f"{what} needs about {format_bytes(n_bytes)} of disk in {folder}, but only "
                          f"{format_bytes(free)} is free; {hint}", field=field)
