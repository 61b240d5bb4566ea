"""The on-disk kernel cache is keyed by the whole package's sources.

numba invalidates a cached kernel only when its own file changes; a kernel also holds the code of the
kernels it calls from other files (inlined or linked), so backforge adds a stamp of every module to the key.
"""

from __future__ import annotations

import os

import numpy as np

from backforge import _jit
from backforge._jit import njit, source_stamp


def test_the_stamp_changes_with_any_module_and_only_then(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a module\n")
    first = source_stamp(tmp_path)
    assert source_stamp(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still not a module\n")
    assert source_stamp(tmp_path) == first
    stat = (tmp_path / "sub" / "b.py").stat()
    os.utime(tmp_path / "sub" / "b.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # edited, same size
    second = source_stamp(tmp_path)
    assert second != first
    (tmp_path / "c.py").write_text("")
    assert source_stamp(tmp_path) not in (first, second)


def test_a_cached_kernel_is_keyed_by_the_package_stamp():
    @njit
    def twice(x):
        return 2.0 * x

    assert twice(np.float64(1.5)) == 3.0
    cache = twice._cache
    assert isinstance(cache, _jit._SourceCache)
    key = cache._index_key(twice.signatures[0], twice.targetctx.codegen())
    assert key[-1] == _jit.package_stamp() and len(key[-1]) == 64
