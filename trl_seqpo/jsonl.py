"""The one place for JSON-lines reading, resumable appending and atomic writes.

* Reading: every reader of a user-supplied `.jsonl` goes through `parse_json_lines` (or `read_json_objects`,
  `read_jsonl`) so that a malformed line is reported the same way everywhere: one `UserInputError` (exit code 2
  in the CLI) naming `path:line` and what to do about it.
* Atomic writes: `atomic_output` / `atomic_write` (and the JSON / JSON-lines shorthands) write a temporary file in
  the same folder, flush and `fsync` it, then `os.replace` it over the target: a kill leaves the old file or the
  new one, never half of one. The file gets the mode the umask gives (or the mode of the file it replaces), and
  the temporary files a killed write left (their process is gone) are removed by the next write to the same path.
* Resumable appending: `ResumableJsonl` appends rows batch by batch (each batch fsync-ed), and on resume truncates
  a last line cut by a kill and reports the keys already present, so nothing is computed or written twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from trl_seqpo.errors import UserInputError

__all__ = [
    "ResumableJsonl",
    "atomic_output",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_jsonl",
    "parse_json_lines",
    "read_json_objects",
    "read_jsonl",
    "remove_stale_temporaries",
]


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

    Examples:
        >>> list(parse_json_lines(['{"a": 1}', "", "[2]"], "x.jsonl"))
        [(1, {'a': 1}), (3, [2])]
    """
    numbered = enumerate(lines, start=1)
    while True:
        try:
            number, line = next(numbered)
        except StopIteration:
            return
        except UnicodeDecodeError:  # reading a UTF-16, Latin-1 or binary file through a UTF-8 handle
            raise UserInputError("not UTF-8 text; convert the file to UTF-8 JSON lines", path=str(path)) from None
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


def read_jsonl(path: str | os.PathLike[str], *, missing_ok: bool = False, hint: str = "") -> list[Any]:
    """Read every value of a JSON-lines file, tolerating only a last line cut short by a kill.

    A last line with no newline after it that is not valid JSON was being written when the process died: it is
    dropped (and recomputed by whoever resumes). Any other invalid line is an error.

    Args:
        path: The file.
        missing_ok: Return `[]` for a missing file instead of raising.
        hint: Appended to the message of an invalid line.

    Returns:
        The parsed values, in file order.

    Raises:
        UserInputError: The file is missing (unless `missing_ok`) or a complete line is not valid JSON.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
        >>> _ = path.write_text('{"a": 1}\\n{"a": 2}\\n{"a"')
        >>> read_jsonl(path)
        [{'a': 1}, {'a': 2}]
    """
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise UserInputError("file not found", path=str(path))
    lines = path.read_text(encoding="utf-8").split("\n")
    complete, tail = lines[:-1], lines[-1]
    values = [value for _, value in parse_json_lines(complete, path, hint)]
    if tail.strip():
        try:
            values.append(json.loads(tail))
        except json.JSONDecodeError:  # cut short by a kill
            pass
    return values


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open `path` for writing through a temporary file in the same folder, renamed over `path` on success.

    The data is flushed and `fsync`-ed before the rename, so after a crash `path` holds either its old content
    or the complete new one, never a part. If the block raises, the temporary file is removed and `path` is
    left as it was.

    Args:
        path: The final file; its folder is created if needed.
        encoding: Text encoding of the handle, or `None` for a binary handle.

    Returns:
        A context manager yielding the open handle.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        mode = "wb" if encoding is None else "w"
        newline = None if encoding is None else "\n"
        with os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), _file_mode(path))
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _file_mode(path: Path) -> int:
    """The mode of the file ``path`` replaces, else what the umask gives a new file (``mkstemp`` makes 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would change it for every thread for a moment)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed atomic writes to ``path`` left beside it; return them.

    A temporary file is named ``.NAME.PID.XXXX.tmp``; it is stale when process PID no longer runs (or, for the
    older ``.NAME.XXXX.tmp`` names, when it is over an hour old).
    """
    import time

    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    try:
        candidates = [entry for entry in path.parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in candidates:
        if not entry.name.endswith(".tmp") or not entry.is_file():
            continue
        middle = entry.name[len(prefix) : -len(".tmp")]
        pid, _, _ = middle.partition(".")
        try:
            if pid.isdigit() and "." in middle:
                if int(pid) == os.getpid() or _running(int(pid)):
                    continue
            elif time.time() - entry.stat().st_mtime < 3600:
                continue
            entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace `path` by `data` (text is written as UTF-8) through `atomic_output`: no reader ever sees half a file.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sub" / "note.txt"
        >>> atomic_write(path, "done\\n"); path.read_text()
        'done\\n'
    """
    with atomic_output(path, encoding=None if isinstance(data, bytes) else "utf-8") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike[str], payload: Any, indent: int | None = 2) -> None:
    """Write `payload` as JSON (UTF-8, non-ASCII kept as is) through `atomic_write`."""
    atomic_write(path, json.dumps(payload, ensure_ascii=False, indent=indent) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """Write `rows` as JSON lines (one value per line) through `atomic_write`."""
    atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


class ResumableJsonl:
    """An append-only JSON-lines file of rows grouped by a key, safe to kill at any moment and resume.

    Rows are appended batch by batch; each batch is flushed and `fsync`-ed before `append` returns, so a kill
    loses at most the batch being written. Opening with `resume=True` truncates a last line cut short by a kill,
    reads the complete rows back, and, when `complete` is given, removes the rows of groups that were not finished
    (through an atomic rewrite). `done` then holds the keys that need no more work.

    Args:
        path: The file; its folder is created if needed.
        resume: Keep the rows already in the file; otherwise the file is emptied.
        key: The field holding a row's key (its value is used as a string), or a function of the row giving it.
            Several rows may share a key (e.g. all candidate records of one document).
        complete: `complete(rows_of_one_key) -> bool`; a key whose rows fail it is dropped from the file on resume.
            By default every key present is complete.
        hint: Appended to the message of a corrupt (complete but invalid) line.
        unique: Each key has one row: on resume, repeats of a key (left by an older version or an edit) are removed.

    The file is read and every complete line checked before anything is changed: a file that is not such a store
    (a mistyped path naming someone's notes) is refused as it is, never cut.

    Attributes:
        groups: `{key: [rows in file order]}` of the rows in the file.
        dropped_partial_line: Whether a cut last line was truncated on open.
        dropped_keys: Keys whose unfinished rows were removed on open.

    Raises:
        UserInputError: A complete line is not a JSON object, or has no key.

    Examples:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "hyps.jsonl"
        >>> ResumableJsonl(out).append([{"id": "0", "translation": "hi"}])
        1
        >>> with out.open("a") as handle:
        ...     _ = handle.write('{"id": "1", "transl')  # killed mid-line
        >>> store = ResumableJsonl(out, resume=True)
        >>> sorted(store.done), store.dropped_partial_line
        (['0'], True)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resume: bool = False,
        key: str | Callable[[dict[str, Any]], Any] = "id",
        complete: Callable[[list[dict[str, Any]]], bool] | None = None,
        hint: str = "write to a new file or start again without resuming",
        unique: bool = False,
    ) -> None:
        self.path = Path(path)
        self._key = key
        self.groups: dict[str, list[dict[str, Any]]] = {}
        self.dropped_partial_line = False
        self.dropped_keys: set[str] = set()
        self.dropped_repeats = 0
        self._unique = unique
        if self.path.is_dir():
            raise UserInputError("is a folder, expected a .jsonl file", path=str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._load(complete, hint)
        else:
            atomic_write(self.path, "")

    def key_of(self, row: dict[str, Any]) -> str:
        """The key of `row` as a string."""
        value = self._key(row) if callable(self._key) else row[self._key]
        return str(value)

    @property
    def done(self) -> set[str]:
        """Keys that have rows in the file."""
        return set(self.groups)

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """`{key: first row of that key}`: the convenient view when each key has one row."""
        return {key: group[0] for key, group in self.groups.items()}

    def _load(self, complete: Callable[[list[dict[str, Any]]], bool] | None, hint: str) -> None:
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        try:
            lines = data[:cut].decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError:
            raise UserInputError(f"not UTF-8 JSON lines; {hint}", path=str(self.path)) from None
        kept: list[tuple[str, str]] = []
        repeats = 0
        for number, row in parse_json_lines(lines, self.path, hint=f"corrupt line: {hint}"):
            if not isinstance(row, dict):
                raise UserInputError(f"expected a JSON object; {hint}", path=str(self.path), line=number)
            try:
                key = self.key_of(row)
            except (KeyError, TypeError):
                raise UserInputError(
                    f"row has no key ({self._key!r}); {hint}", path=str(self.path), line=number
                ) from None
            if self._unique and key in self.groups:
                repeats += 1
                continue
            self.groups.setdefault(key, []).append(row)
            kept.append((key, lines[number - 1]))
        if cut < len(data):  # bytes after the last newline: a line cut short by a kill (only now that it is ours)
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
                handle.flush()
                os.fsync(handle.fileno())
            self.dropped_partial_line = True
        if complete is not None:
            self.dropped_keys = {key for key, group in self.groups.items() if not complete(group)}
        self.dropped_repeats = repeats
        if self.dropped_keys or repeats:
            for key in self.dropped_keys:
                del self.groups[key]
            atomic_write(self.path, "".join(line + "\n" for key, line in kept if key not in self.dropped_keys))

    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Append the rows whose key is not yet `done`, then flush and fsync; return how many were written.

        All rows of one call that share a key are written together, so a group appended in one call is whole.
        """
        done = self.done
        fresh = [(self.key_of(row), row) for row in rows]
        fresh = [(key, row) for key, row in fresh if key not in done]
        if not fresh:
            return 0
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for _, row in fresh))
            handle.flush()
            os.fsync(handle.fileno())
        for key, row in fresh:
            self.groups.setdefault(key, []).append(row)
        return len(fresh)
