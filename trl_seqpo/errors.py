"""Exceptions for mistakes a user can fix (bad files, bad configs, unreachable endpoints).

The CLI prints a `UserInputError` as one line on stderr and exits with code 2, without a traceback.
Library code raises it (or a subclass) where the message alone tells the user what to change.
"""

from __future__ import annotations

import os
from pathlib import Path


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


def check_at_least(config: object, minimum: int, *names: str) -> None:
    """Refuse the first of the fields ``names`` of ``config`` whose value is below ``minimum`` (the shared check
    of the config dataclasses' ``__post_init__``).

    Raises:
        ValueError: ``"{name} must be >= {minimum}, got {value}"``.

    Examples:
        >>> from types import SimpleNamespace
        >>> check_at_least(SimpleNamespace(chunk_size=2, max_concurrency=0), 1, "chunk_size", "max_concurrency")
        Traceback (most recent call last):
        ...
        ValueError: max_concurrency must be >= 1, got 0
    """
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message says which extra to install."""


def check_output_path(output: str | os.PathLike[str], *inputs: str | os.PathLike[str] | None) -> Path:
    """Refuse an output path that would damage an input, or that cannot be written; every command calls this first.

    Args:
        output: The file the command is asked to write.
        *inputs: The files the command reads (``None`` entries are ignored).

    Returns:
        ``output`` as a `Path`.

    Raises:
        UserInputError: ``output`` is one of the inputs (same file, also through links), is a folder, or its folder
            cannot be written.

    Examples:
        >>> check_output_path("a.jsonl", "a.jsonl")
        Traceback (most recent call last):
        ...
        trl_seqpo.errors.UserInputError: a.jsonl: is also an input of this command; write the output to another file
    """
    path = Path(output)
    for source in inputs:
        if source is None:
            continue
        same = Path(source).resolve() == path.resolve()
        if not same and path.exists() and Path(source).exists():
            same = os.path.samefile(source, path)
        if same:
            raise UserInputError("is also an input of this command; write the output to another file", path=str(path))
    if path.is_dir():
        raise UserInputError("is a folder; give a file name for the output", path=str(path))
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write here ({folder} is not a writable folder)", path=str(path))
    if path.exists() and not os.access(path, os.W_OK):
        raise UserInputError("the output file exists and is not writable", path=str(path))
    return path
