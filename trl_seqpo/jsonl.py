"""Reading JSON-lines files written by the ``trl-seqpo`` commands, with errors that name the file and line.

Every reader of a user-supplied ``.jsonl`` goes through `parse_json_lines` so that a malformed line is
reported the same way everywhere: one `UserInputError` (exit code 2 in the CLI) naming
``path:line`` and what to do about it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError


def parse_json_lines(lines: Iterable[str], path: str | os.PathLike[str], hint: str = "") -> Iterator[tuple[int, Any]]:
    """Parse JSON lines, skipping blank ones.

    Args:
        lines: The file's lines, in order (line numbers count from 1, blank lines included).
        path: The file, for error messages.
        hint: Appended to the error message of an invalid line (what the file should be, what to do).

    Yields:
        ``(line_number, value)`` for every non-blank line.

    Raises:
        UserInputError: A line is not valid JSON.

    Example:
        >>> list(parse_json_lines(['{"a": 1}', "", "[2]"], "x.jsonl"))
        [(1, {'a': 1}), (3, [2])]
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"not valid JSON ({exc.msg})" + (f"; {hint}" if hint else "")
            raise UserInputError(message, path=str(path), line=number) from None
        yield number, value


def read_json_objects(
    path: str | os.PathLike[str], missing: str = "file not found", hint: str = "", expected: str = "a JSON object"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Read a JSON-lines file whose every non-blank line must be a JSON object.

    Args:
        path: The file.
        missing: Message when the file does not exist (say which command writes it).
        hint: Appended to the message of a line that is not valid JSON.
        expected: What a line should be, for the message of a line that is valid JSON but not an object.

    Yields:
        ``(line_number, record)`` pairs.

    Raises:
        UserInputError: The file is missing, a line is not JSON, or a line is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(missing, path=str(path))
    with path.open(encoding="utf-8") as handle:
        for number, record in parse_json_lines(handle, path, hint):
            if not isinstance(record, dict):
                raise UserInputError(f"expected {expected}", path=str(path), line=number)
            yield number, record
