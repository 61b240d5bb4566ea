"""Result folders of searches (``optimize``, ``walkforward``): a unique name per search, written in a
temporary sibling marked incomplete and renamed into place only when every file is written.

Two searches started in the same second get different folders (the name carries a random suffix and the
temporary folder is created exclusively); a search killed while saving leaves only a hidden
``.NAME.incomplete`` folder holding an ``INCOMPLETE`` marker, never a half result under the final name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from backforge.errors import BackforgeError

__all__ = ["ResultFolder", "INCOMPLETE_MARKER"]

INCOMPLETE_MARKER = "INCOMPLETE"


class ResultFolder:
    """A new result folder under ``root`` named ``PREFIX-YYYYmmddTHHMMSS-RANDOM``.

    Write into :attr:`path` (the temporary folder), then call :meth:`commit` to rename it into place;
    use it as a context manager to have an exception remove the temporary folder.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with ResultFolder(root, "optimize-demo") as folder:
    ...     _ = (folder.path / "summary.json").write_text("{}")
    ...     final = folder.commit()
    >>> final.name.startswith("optimize-demo-"), sorted(p.name for p in final.iterdir())
    (True, ['summary.json'])
    >>> ResultFolder(root, "optimize-demo").final != ResultFolder(root, "optimize-demo").final
    True
    """

    def __init__(self, root: str | Path, prefix: str) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise BackforgeError("the output location is a file, not a folder", path=str(self.root)) from None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for _ in range(100):
            name = f"{prefix}-{stamp}-{secrets.token_hex(3)}"
            self.final = self.root / name
            self.path = self.root / f".{name}.incomplete"
            if self.final.exists():
                continue
            try:
                self.path.mkdir()  # exclusive: a second search never shares it
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - 100 collisions of a 24-bit random suffix
            raise BackforgeError("cannot find a free folder name", path=str(self.root))
        (self.path / INCOMPLETE_MARKER).write_text(
            f"written by process {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
            f"renamed to {name} when complete\n")
        self.committed = False

    def commit(self) -> Path:
        """Mark the result complete and rename it into place (atomic); returns the final folder."""
        (self.path / INCOMPLETE_MARKER).unlink()
        for _ in range(100):
            if not self.final.exists():
                try:
                    os.rename(self.path, self.final)  # onto a missing name: atomic, never merges
                    self.committed = True
                    return self.final
                except OSError:
                    if not self.final.exists():
                        raise
            self.final = self.final.with_name(f"{self.final.name}-{secrets.token_hex(2)}")
        raise BackforgeError("cannot find a free folder name", path=str(self.root))  # pragma: no cover

    def discard(self) -> None:
        """Remove the temporary folder (after a failure)."""
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "ResultFolder":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.discard()
