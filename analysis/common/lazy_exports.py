"""Lazy re-exports for the rooms' ``__init__`` modules (PEP 562).

Each room lists its public names and the module of the room that defines each; the names are
imported on first use, so importing one module of a room does not import the others (nor the heavy
libraries they need, such as matplotlib or PyMC).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]],
                                                                    list[str]]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Public name -> the module defining it: a submodule name of ``package`` (``"fit"``) or a full
        dotted module name.

    Returns
    -------
    __getattr__, __dir__, __all__
        Assign them in the package: ``__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)``.
    """
    table = {name: (module if "." in module else f"{package}.{module}") for name, module in exports.items()}

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__, sorted(table)
