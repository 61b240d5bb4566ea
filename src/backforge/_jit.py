"""The ``njit`` decorator of backforge's compiled kernels: numba's, cached on disk, compiled once per
argument *type* rather than once per constant value.

numba specializes a jitted function called from jitted code on the literal value of every constant
argument: ``record_event_nb(state, oid, t, ts, EV_TRIGGERED, R_NONE, ...)`` and
``record_event_nb(state, oid, t, ts, EV_FILLED, R_SIGNAL, ...)`` compile twice. For kernels that take
the engine ``State`` (about 250 flattened arguments) each copy costs about a second of compile time;
the engine compiled 18 copies of one risk helper and 9 of ``submit_order_nb`` before this. Here the
call is typed with the constants widened to their plain types (``Literal[int](2)`` → ``int64``), which
changes no result: the kernels never branch on a constant's type.

Arrays have the same problem: a read-only, Fortran-ordered or strided array is another type to numba
than a writable C-contiguous one, so the same data from a memory-mapped catalog, from a CSV file and
from a pandas frame compiled the whole engine three times. :func:`frozen` gives every array a kernel
reads one type: C-contiguous and read-only. A record array read back from a file is another type again
(NumPy's dtype description does not keep a structured dtype's aligned flag, and numba types it
"unaligned"): :func:`aligned` restores the flag.

The on-disk cache is keyed by the whole package's sources (:func:`package_stamp`), not only by the file of
the cached function as numba's own is: a kernel holds the code of the kernels it calls from other files.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numba.core import types
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

from backforge._resources import tune_allocator

tune_allocator()  # the compiled engine's per-call arrays reuse freed memory instead of fresh pages (see there)

__all__ = ["aligned", "frozen", "njit"]


class _TypeDispatcher(CPUDispatcher):
    """A CPU dispatcher whose calls from compiled code are typed without literal values."""

    def get_call_template(self, args, kws):
        return super().get_call_template(tuple(types.unliteral(a) for a in args),
                                         {name: types.unliteral(a) for name, a in kws.items()})


class _SourceCache(FunctionCache):
    """numba's on-disk cache of a kernel, keyed also by every source file of the package.

    numba checks only the file of the cached function itself, but a kernel holds the code of the kernels it
    calls from other files (inlined, or linked in): after an edit of ``engine/kernels.py`` the cached
    kernels of ``strategy/batch.py`` would still run the old bar step. With the size and modification time
    of every module of the package in the key (:func:`package_stamp`), an edit anywhere compiles afresh; an
    installed release never changes, so its cache stays valid.
    """

    def _index_key(self, sig, codegen):
        return super()._index_key(sig, codegen) + (package_stamp(),)


@functools.lru_cache(maxsize=1)
def package_stamp() -> str:
    """:func:`source_stamp` of the package's folder (computed once per process).

    >>> len(package_stamp())
    64
    """
    return source_stamp(Path(__file__).resolve().parent)


def source_stamp(root: Path) -> str:
    """A digest of the path, size and modification time of every ``.py`` file under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def njit(function: Callable | None = None, **options: Any):
    """``numba.njit(cache=True, **options)`` with one specialization per argument type (see the module).

    Two calls with different constants compile one specialization (``numba.njit`` compiles two):

    >>> from backforge._jit import njit
    >>> @njit(cache=False)
    ... def scaled(x, factor):
    ...     return factor * x
    >>> @njit(cache=False)
    ... def both(x):
    ...     return scaled(x, 2) + scaled(x, 3)
    >>> both(1.0)
    5.0
    >>> [str(arg) for arg in scaled.signatures[0]], len(scaled.signatures)
    (['float64', 'int64'], 1)
    """
    cache = options.pop("cache", True)

    def wrap(func: Callable) -> _TypeDispatcher:
        dispatcher = _TypeDispatcher(py_func=func, locals={}, targetoptions={"nopython": True, **options})
        if cache:
            dispatcher._cache = _SourceCache(func)  # what enable_caching() sets, with the package in the key
        return dispatcher

    return wrap(function) if function is not None else wrap


def frozen(array: Any, dtype: Any = np.float64) -> np.ndarray:
    """``array`` as the kernels read their inputs: ``dtype``, C-contiguous and read-only — a view, copied
    only when the dtype or the layout differ (the caller's array stays writable).

    >>> import numpy as np
    >>> a = np.arange(6.0).reshape(2, 3)
    >>> f, g = frozen(a), frozen(np.asfortranarray(a))
    >>> np.shares_memory(f, a), f.flags.writeable, a.flags.writeable, g.flags.c_contiguous, frozen(f) is f
    (True, False, True, True, True)
    """
    out = np.ascontiguousarray(array, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` viewed with its structured dtype marked aligned (same fields, offsets and size): a record
    array saved with ``np.save``/``savez`` or a dtype description and read back has lost the flag, and numba
    would compile every kernel that takes it again, for an "unaligned" type. Other arrays are returned as
    they are.

    >>> import io, numpy as np, numba
    >>> dt = np.dtype([("id", "i8"), ("px", "f8")], align=True)
    >>> buffer = io.BytesIO(); np.save(buffer, np.zeros(2, dt)); _ = buffer.seek(0)
    >>> back = np.load(buffer)
    >>> back.dtype.isalignedstruct, aligned(back).dtype.isalignedstruct
    (False, True)
    >>> numba.typeof(aligned(back)) == numba.typeof(np.zeros(2, dt))
    True
    """
    dtype = array.dtype
    if dtype.names is None or dtype.isalignedstruct:
        return array
    fields = [dtype.fields[name] for name in dtype.names]
    spec = {"names": list(dtype.names), "formats": [f[0] for f in fields], "offsets": [f[1] for f in fields],
            "itemsize": dtype.itemsize}
    try:
        return array.view(np.dtype(spec, align=True))
    except (TypeError, ValueError):  # offsets that no aligned layout allows: not one of the engine's records
        return array
