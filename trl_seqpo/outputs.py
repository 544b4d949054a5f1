"""The one output guard every command that writes goes through: no command destroys its input or a stranger's file.

`check_output` is read-only and runs before anything is written (and before a model loads), so a bad output path is
refused with one line and no file is touched:

* an output that is one of the command's inputs (same path, through a symbolic or hard link, or the bilingual file
  a split came from) is refused, even with ``--overwrite``;
* an existing file the command did not write is refused unless ``--overwrite``. A command's own outputs carry a
  settings record beside them (``.NAME.trl-seqpo.json``, hidden; `claim_output` writes it just before the output),
  so running the same command again replaces or resumes its own output without ``--overwrite``. `seal_output`
  adds the size and modification time of the finished output: a file put there later by someone else is no
  longer taken for the command's own;
* a resumable output (a cache, a partial file) whose record holds other settings is refused, naming what changed;
* an output that is a folder, under a file, or in a folder that cannot be written is refused, naming the path.

`check_output_folder` does the same for a command that writes into a folder (``--output-dir``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = [
    "check_output",
    "check_output_folder",
    "claim_output",
    "owned_output",
    "file_fingerprint",
    "read_record",
    "record_path",
    "release_output",
    "seal_output",
]

PathLike = str | os.PathLike[str]


def record_path(output: PathLike) -> Path:
    """The settings record beside ``output``: ``DIR/.NAME.trl-seqpo.json``."""
    output = Path(output)
    return output.with_name(f".{output.name}.trl-seqpo.json")


def read_record(output: PathLike) -> dict[str, Any] | None:
    """The record `claim_output` left beside ``output``, or `None` (no record, or not one of ours)."""
    try:
        record = json.loads(record_path(output).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("command"), str) else None


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_inputs(output: Path, inputs: Iterable[PathLike | None]) -> None:
    for source in inputs:
        if source is not None and str(source) and _same_file(output, Path(source)):
            raise UserInputError(
                f"is also an input of this command ({source}); write the output to another file", path=str(output)
            )


def _check_writable(output: Path, folder: bool) -> None:
    parent = output if folder else output.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # a dangling link
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserInputError(f"cannot write here: {parent} is a file, not a folder", path=str(output))
    if not os.access(parent, os.W_OK | os.X_OK) or str(parent.resolve()).startswith(("/proc", "/sys")):
        raise UserInputError(f"cannot write here: {parent} is not a writable folder", path=str(output))
    if not folder and output.exists() and not os.access(output, os.W_OK):
        raise UserInputError("the output file exists and is not writable", path=str(output))


def check_output(
    output: PathLike,
    *,
    command: str,
    inputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    settings: Mapping[str, Any] | None = None,
    remedy: str = "pass --overwrite to replace it, or choose another name",
) -> Path:
    """Refuse an output this command must not write (read-only: call it before anything is written).

    Args:
        output: The file the command is asked to write.
        command: The command, e.g. ``"subtitles align"``; its own outputs carry it in their record.
        inputs: Every file the command reads (``None`` entries are ignored).
        overwrite: Replace an existing file that has no record of this command (the ``--overwrite`` flag).
        settings: For a resumable output: the settings that must match the record of the run being resumed.
        remedy: What the message of a stranger's file tells the user to do.

    Returns:
        ``output`` as a `Path`.

    Raises:
        UserInputError: The output is an input, a folder, not writable, a stranger's file (without ``overwrite``),
            or a resumable output made with other ``settings``.

    Examples:
        >>> import tempfile, pathlib
        >>> notes = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = notes.write_text("mine")
        >>> check_output(notes, command="subtitles align")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trl_seqpo.errors.UserInputError: .../notes.txt: exists and was not written by `trl-seqpo subtitles align`; ...
    """
    path = Path(output)
    _refuse_inputs(path, inputs)
    if path.is_dir():
        raise UserInputError("is a folder; give a file name for the output", path=str(path))
    _check_writable(path, folder=False)
    if path.exists() or path.is_symlink():
        record = read_record(path)
        if record is not None and not _seal_holds(path, record):
            record = None  # the output was replaced since the command wrote it
        if record is None or record["command"] != command:
            if not overwrite:
                raise UserInputError(f"exists and was not written by `trl-seqpo {command}`; {remedy}", path=str(path))
        elif settings is not None and not overwrite:
            changed = changed_settings(record.get("settings") or {}, settings)
            if changed:
                raise UserInputError(
                    f"was written with other settings ({'; '.join(changed)}); run with the same options to resume, "
                    "or pass --overwrite to start again",
                    path=str(path),
                )
    return path


def changed_settings(previous: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every setting whose value differs from the recorded one (the resume checks' words)."""
    return [
        f"{key}: {previous.get(key)!r} -> {value!r}" for key, value in settings.items() if previous.get(key) != value
    ]


def _seal_holds(path: Path, record: dict[str, Any]) -> bool:
    seal = record.get("sealed")
    if not isinstance(seal, dict):
        return True  # written by a run that was stopped, or a resumable file that grows
    try:
        stat = path.stat()
    except OSError:
        return False
    return seal.get("size") == stat.st_size and seal.get("mtime_ns") == stat.st_mtime_ns


def check_output_folder(
    output_dir: PathLike, *, inputs: Iterable[PathLike | None] = (), names: Iterable[str] = ()
) -> Path:
    """Refuse an output folder that is a file or cannot be written, or whose files ``names`` would hit an input.

    Raises:
        UserInputError: The folder is a file, is under a file, is not writable, or one of ``DIR/NAME`` is an input.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UserInputError("is a file; give a folder for the outputs", path=str(path))
    _check_writable(path, folder=True)
    inputs = [source for source in inputs if source is not None]
    for source in inputs:
        if _same_file(path, Path(source)):
            raise UserInputError(f"is also an input of this command ({source})", path=str(path))
    for name in names:
        _refuse_inputs(path / name, inputs)
    return path


def claim_output(output: PathLike, *, command: str, settings: Mapping[str, Any] | None = None) -> None:
    """Record that ``command`` writes ``output`` (with ``settings``), just before it writes it.

    After this, `check_output` lets the same command replace or resume ``output`` without ``--overwrite``.
    """
    from trl_seqpo import __version__
    from trl_seqpo.jsonl import atomic_write_json

    record = {"command": command, "settings": dict(settings or {}), "version": __version__}
    atomic_write_json(record_path(output), record)


@contextlib.contextmanager
def owned_output(output: PathLike, *, command: str, settings: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """`claim_output` on entry, `seal_output` when the block that writes ``output`` succeeds.

    Examples:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "pairs.jsonl"
        >>> with owned_output(out, command="alpo pairs"):
        ...     _ = out.write_text("{}\\n")
        >>> check_output(out, command="alpo pairs") == out  # its own output: replaced without --overwrite
        True
    """
    claim_output(output, command=command, settings=settings)
    try:
        yield Path(output)
    except BaseException:
        if not Path(output).exists():
            release_output(output)  # nothing was written: leave no record either
        raise
    seal_output(output)


def seal_output(output: PathLike) -> None:
    """Add the size and modification time of the finished ``output`` to its record (after `claim_output`)."""
    record = read_record(output)
    if record is None:
        return
    stat = Path(output).stat()
    from trl_seqpo.jsonl import atomic_write_json

    atomic_write_json(record_path(output), {**record, "sealed": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}})


def file_fingerprint(path: PathLike) -> str:
    """What identifies the content of the input file ``path`` for a resume check: its size and SHA-256.

    Examples:
        >>> import tempfile, pathlib
        >>> data = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
        >>> _ = data.write_text("{}")
        >>> file_fingerprint(data)
        '2 bytes, sha256 44136fa355b3678a'
    """
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise UserInputError(f"cannot read ({exc.strerror})", path=str(path)) from None
    return f"{Path(path).stat().st_size} bytes, sha256 {digest.hexdigest()[:16]}"


def release_output(output: PathLike) -> None:
    """Remove the record of ``output`` (the output itself was removed, e.g. a finished partial file)."""
    record_path(output).unlink(missing_ok=True)
