"""Input rows and resumable result files of ``trl-seqpo evaluate``.

Two jobs, both about files a long evaluation reads and writes:

* `load_pairs` reads the evaluation set (JSONL, TSV, or a ``datasets.save_to_disk`` folder) and checks that
  every row has the columns the evaluation needs, naming the file, line and column of the first bad row;
* `ScoreFile` keeps the per-row metric scores that a resumed run reuses while a row's hypothesis is unchanged.

The result rows themselves are appended with `trl_seqpo.jsonl.ResumableJsonl`.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_write, atomic_write_jsonl, parse_json_lines, read_jsonl

__all__ = ["ScoreFile", "load_pairs", "text_digest", "write_simuleval_log"]


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        yield from parse_json_lines(handle, path, hint="one JSON object per line")


def _read_tsv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise UserInputError(
                "empty TSV file; the first line must name the columns (e.g. source<TAB>reference)", path=path
            )
        header = [name.strip() for name in header]
        for offset, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise UserInputError(
                    f"{len(cells)} tab-separated fields, the header has {len(header)} ({', '.join(header)})",
                    path=path,
                    line=offset,
                )
            yield offset, dict(zip(header, cells))


def _read_dataset_dir(path: Path) -> Iterator[tuple[int | None, Any]]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError as error:  # pragma: no cover - datasets is a core dependency
        raise UserInputError("reading a dataset folder needs the 'datasets' package", path=path) from error
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise UserInputError(
            "not a dataset saved with datasets.save_to_disk (and not a .jsonl/.tsv file)", path=path
        ) from error
    if isinstance(dataset, DatasetDict):
        split = "test" if "test" in dataset else next(iter(dataset))
        dataset = dataset[split]
    for row in dataset:
        yield None, row


def load_pairs(path: str | os.PathLike[str], columns: Sequence[str], id_column: str | None = "id") -> list[dict]:
    """Read the evaluation rows and check that each has every column in ``columns``.

    Formats, picked by the path: a folder saved with ``datasets.save_to_disk`` (the ``test`` split of a
    ``DatasetDict``, else its first split); ``.tsv`` (first line = column names, tab-separated, no quoting); anything
    else is read as JSONL (one object per line). Each returned row gets an ``id``: the row's ``id_column`` value when
    present, else its 0-based position, so result files can be resumed.

    Args:
        path: The data file or folder.
        columns: Columns every row needs (e.g. ``("source", "reference")``), each a non-empty string.
        id_column: Column holding a row id, if any.

    Returns:
        The rows as dicts, each with a string ``"id"``.

    Raises:
        UserInputError: Missing file, unreadable line, missing/empty column, or duplicate id (file and line named).
    """
    path = Path(path)
    if not path.exists():
        raise UserInputError("data file not found", path=path)
    if path.is_dir():
        records: Iterable[tuple[int | None, Any]] = _read_dataset_dir(path)
    elif path.suffix.lower() == ".tsv":
        records = _read_tsv(path)
    else:
        records = _read_jsonl(path)
    rows: list[dict] = []
    seen: set[str] = set()
    for position, (line, record) in enumerate(records):
        if not isinstance(record, Mapping):
            raise UserInputError(f"expected a JSON object with {', '.join(columns)}", path=path, line=line)
        for column in columns:
            value = record.get(column)
            if not isinstance(value, str) or not value.strip():
                found = ", ".join(sorted(map(str, record))) or "none"
                problem = "is missing" if column not in record else "must be a non-empty string"
                raise UserInputError(f"column '{column}' {problem} (columns found: {found})", path=path, line=line)
        row = dict(record)
        row_id = str(record[id_column]) if id_column and record.get(id_column) is not None else str(position)
        if row_id in seen:
            raise UserInputError(f"duplicate id {row_id!r}; ids must be unique", path=path, line=line)
        seen.add(row_id)
        row["id"] = row_id
        rows.append(row)
    if not rows:
        raise UserInputError("no rows to evaluate", path=path)
    return rows


def text_digest(text: str) -> str:
    """Short content hash of a hypothesis, stored next to its scores so stale scores are never reused."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class ScoreFile:
    """Per-row scores (``scores.jsonl``) that a resumed run reuses while the row's hypothesis is unchanged.

    Args:
        path: The file.
        digests: ``{row id: text_digest(hypothesis)}`` of the current hypotheses, in output order.
        resume: Reuse scores already in the file; otherwise start empty.
    """

    def __init__(self, path: str | os.PathLike[str], digests: Mapping[str, str], resume: bool) -> None:
        self.path = Path(path)
        self.order = list(digests)
        self.rows: dict[str, dict] = {key: {"id": key, "digest": digest} for key, digest in digests.items()}
        if resume:
            for cached in read_jsonl(self.path, missing_ok=True, hint="delete it to recompute the scores"):
                if isinstance(cached, dict) and cached.get("id") in self.rows:
                    if cached.get("digest") == self.rows[cached["id"]]["digest"]:
                        self.rows[cached["id"]] = cached

    def missing(self, name: str) -> list[str]:
        """Ids that have no value for ``name`` yet (or only ``None``: unscored rows are retried)."""
        return [key for key in self.order if self.rows[key].get(name) is None]

    def values(self, name: str) -> list[Any]:
        """The values of ``name`` in row order (``None`` where missing)."""
        return [self.rows[key].get(name) for key in self.order]

    def update(self, name: str, values: Mapping[str, Any]) -> None:
        """Set ``name`` for the given ids."""
        for key, value in values.items():
            self.rows[key][name] = value

    def fill(
        self, name: str, rows_by_id: Mapping[str, Mapping[str, Any]], score: Callable[[list[Any]], Sequence[Any]]
    ) -> list[Any]:
        """Score the rows still missing ``name`` with ``score(rows)``, save the file, and return `values(name)`.

        Args:
            name: The score's key in the file.
            rows_by_id: The output rows by id (each has an ``id``).
            score: One value per row it is given, in order (``None`` where a row could not be scored).

        Returns:
            Every row's value of ``name``, in row order.
        """
        todo = [rows_by_id[key] for key in self.missing(name)]
        if todo:
            self.update(name, {row["id"]: value for row, value in zip(todo, score(todo))})
            self.save()
        return self.values(name)

    def update_row(self, key: str, values: Mapping[str, Any]) -> None:
        """Set several values of one row."""
        self.rows[key].update(values)

    def save(self) -> None:
        """Rewrite the file atomically."""
        atomic_write_jsonl(self.path, (self.rows[key] for key in self.order))


def write_simuleval_log(
    path: str | os.PathLike[str], hypotheses: Sequence[Mapping[str, Any]], elapsed: Sequence[Sequence[float] | None]
) -> None:
    """Write `hypotheses` as SimulEval 1.1's `instances.log`, so `simuleval --score-only` can re-score them.

    One JSON object per sentence with SimulEval's keys: `index`, `prediction` (the translation), `delays`,
    `elapsed` (computation-aware delays in source units, when the steps were timed), `prediction_length`,
    `reference`, `source` and `source_length`. Re-scoring the folder with
    `simuleval --score-only --output RUN_DIR --eval-latency-unit UNIT --sacrebleu-tokenizer TOK
    --latency-metrics AL LAAL AP DAL --quality-metrics BLEU [--computation-aware]` gives our AL, LAAL, AP, DAL,
    BLEU (and AL_CA/LAAL_CA) when SimulEval counts the reference as we do (`reference_length="simuleval"`, or any
    single-spaced reference) and no hypothesis is empty (SimulEval skips those).

    Args:
        path: The log file (written atomically).
        hypotheses: Rows of `hypotheses.jsonl` in data order.
        elapsed: Per row, computation-aware delays or `None`.
    """
    lines = []
    for index, (row, aware) in enumerate(zip(hypotheses, elapsed)):
        entry = {
            "index": index,
            "prediction": row["translation"],
            "delays": row["delays"],
            "prediction_length": len(row["delays"]),
            "reference": row["reference"],
            "source": row["source"],
            "source_length": row["source_length"],
        }
        if aware is not None:
            entry["elapsed"] = list(aware)
        lines.append(entry)
    atomic_write_jsonl(path, lines)
    # `simuleval --score-only` reads the instance type from the folder's config.yaml
    atomic_write(Path(path).with_name("config.yaml"), "source_type: text\ntarget_type: text\n")
