"""Exceptions for mistakes a user can fix (bad files, bad configs, unreachable endpoints).

The CLI prints a `UserInputError` as one line on stderr and exits with code 2, without a traceback.
Library code raises it (or a subclass) where the message alone tells the user what to change.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Input a user can fix: the message names the file, line or field that is wrong and what to do instead.

    Args:
        message: What is wrong and what to do instead.
        path: The file the problem is in, if any.
        line: The 1-based line number in ``path``, if known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.message}"


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message says which extra to install."""
