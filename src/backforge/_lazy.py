"""Lazy exports of a package (PEP 562): each name is imported from its module on first use, so importing
a package costs only what it imports eagerly — ``backforge --help`` loads neither numba nor the judge.

A package declares ``__getattr__, __dir__ = lazy_exports(__name__, {...}, eager=globals())`` and lists the
same names in ``__all__``; ``from package import name`` and ``package.name`` work as with eager imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], *,
                 eager: Mapping[str, Any] | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose ``exports`` live in other modules.

    ``exports`` maps a name to ``"module"`` (the attribute of that name in the module),
XX

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("pkg", {"dumps": "json", "to_text": "json:dumps", "jsonmod": "json:"})
    >>> getattr_("dumps")({"a": 1}), getattr_("to_text")([1]), getattr_("jsonmod").__name__, dir_()
    ('{"a": 1}', '[1]', 'json', ['dumps', 'jsonmod', 'to_text'])
    >>> getattr_("loads")
    Traceback (most recent call last):
    ...
    AttributeError: module 'pkg' has no attribute 'loads'
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            if not name.startswith("__"):  # a submodule, as after an eager import (``bf.data.read_csv``)
                submodule = f"{package}.{name}"
                try:
                    return import_module(submodule)
                except ModuleNotFoundError as exc:
                    if exc.name is None or not submodule.startswith(exc.name):
                        raise  # the submodule exists but needs a package that is not installed
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, colon, attribute = target.partition(":")
        loaded = import_module(module)
        if colon and not attribute:
            return loaded
        return getattr(loaded, attribute or name)

    def __dir__() -> list[str]:
        return sorted(set(eager or ()) | set(exports))

    return __getattr__, __dir__
