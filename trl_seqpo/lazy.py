"""Lazy package attributes: a package names its public objects without importing the modules that define them.

A method package (`trl_seqpo.seqpo`, `trl_seqpo.alpo`) exposes its config and trainer this way, so importing the
package stays light and TRL is only imported when the trainer is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``table[name]`` on first access and returns its ``name``.

    Args:
        package: The package's dotted name, used in the error message.
        table: Public name -> dotted name of the module that defines it.

    Returns:
        The function to assign to the package's ``__getattr__``.

    Examples:
        >>> getattr_ = lazy_getattr("pkg", {"dumps": "json"})
        >>> getattr_("dumps")([1])
        '[1]'
        >>> getattr_("loads")
        Traceback (most recent call last):
        ...
        AttributeError: module 'pkg' has no attribute 'loads'
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name]), name)

    return __getattr__
