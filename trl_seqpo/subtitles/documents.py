"""Numbered-line documents: the unit ALPO translates, trains and judges (ALPO Sec. 4.1, App. F.1).

An aligned programme is cut into documents of ``n`` consecutive lines (paper: n = 35, Table 9). The model sees
an instruction, optional context lines that it must not translate, and the numbered source lines; it answers
with the numbered translations, one per line::

    <prompt = render_document_prompt(doc, "en", "zh")> ... Translation:\\n
    1. <translation of line 1>\\n
    2. <translation of line 2>\\n

ALPO's segment-wise sampling (Alg. 1) asks for line ``i`` given the chosen translations of lines ``< i``; that
prompt is ``render_line_prompt(doc, prefix, ...)``, which is exactly ``render_document_prompt(doc, ...) +
render_numbered_lines(prefix)``: it ends at the newline after line ``i - 1`` and the model writes ``"i."`` itself, so
it is a prefix of the full SFT sequence on a token boundary and the SFT format and the line-level prompts agree token
for token (`trl_seqpo.rollout.linewise` encodes it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_seqpo.languages import language_name

__all__ = [
    "Document",
    "ParsedDocument",
    "line_marker",
    "make_documents",
    "parse_numbered_output",
    "read_documents",
    "render_document_prompt",
    "render_line_prompt",
    "render_numbered_lines",
    "sft_examples",
]

# "12. text", "12.text", "12) text", "12、text", "12：text" (a model may echo any of these numbering styles).
_NUMBERED = re.compile(r"^\s*(\d{1,5})\s*[.)．、:：]\s*(.*)$")


@dataclass
class Document:
    """A run of consecutive subtitle lines translated together.

    Args:
        doc_id: Identifier, unique within a run (``"<programme>-0003"``).
        source_lines: The lines to translate, one cue (or aligned group) each, without line breaks.
        target_lines: Reference translations, one per source line, or ``None`` when there is no reference.
        context_before: Source lines just before the document, shown to the model but not translated.
        context_after: Source lines just after the document, shown but not translated.
    """

    doc_id: str
    source_lines: list[str]
    target_lines: list[str] | None = None
    context_before: list[str] = field(default_factory=list)
    context_after: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target_lines is not None and len(self.target_lines) != len(self.source_lines):
            raise ValueError(
                f"document {self.doc_id!r}: {len(self.target_lines)} target lines for {len(self.source_lines)} "
                "source lines; give one reference per source line (or target_lines=None)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The document as a JSON-ready dict (the format ``trl-seqpo subtitles documents`` writes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Document:
        """Inverse of `to_dict`."""
        return cls(
            doc_id=str(record["doc_id"]),
            source_lines=list(record["source_lines"]),
            target_lines=None if record.get("target_lines") is None else list(record["target_lines"]),
            context_before=list(record.get("context_before") or []),
            context_after=list(record.get("context_after") or []),
        )


@dataclass
class ParsedDocument:
    """A model's numbered output read back into lines.

    Args:
        lines: One entry per expected line: the text, or ``None`` where the output had no usable line.
        problems: Human-readable notes on everything that was not a clean ``"i. text"`` line (chatter, missing,
            duplicated or merged lines, unnumbered text) and how it was handled.
    """

    lines: list[str | None]
    problems: list[str]

    @property
    def complete(self) -> bool:
        """Every expected line was found."""
        return all(line is not None for line in self.lines)

    @property
    def ok(self) -> bool:
        """Every expected line was found and nothing needed fixing."""
        return self.complete and not self.problems


def make_documents(
    items: Iterable[Any],
    lines_per_document: int = 35,
    context: int | tuple[int, int] = 0,
    *,
    doc_id_prefix: str = "doc",
) -> list[Document]:
    """Cut one programme's lines into documents of ``lines_per_document`` consecutive lines (ALPO Table 9: n = 35).

    Args:
        items: The programme in time order, either aligned groups (objects or dicts with ``source`` and ``target``,
            as `align_cues` and ``trl-seqpo subtitles align`` produce),
            ``(source, target)`` tuples, or plain source strings (documents without references).
        lines_per_document: Lines per document; the last document holds the remainder.
        context: Untranslated source lines shown around each document: ``k`` for ``k`` before and after, or
            ``(before, after)``.
        doc_id_prefix: Prefix of the document ids (``"<prefix>-0000"``, ...); use the programme name.

    Returns:
        The documents in order. ``target_lines`` is ``None`` when the items carry no targets.

    Raises:
        ValueError: ``lines_per_document < 1``, negative context, or some items have a target and others not.
    """
    if lines_per_document < 1:
        raise ValueError(f"lines_per_document must be >= 1, got {lines_per_document}")
    before, after = (context, context) if isinstance(context, int) else context
    if before < 0 or after < 0:
        raise ValueError(f"context must be >= 0 lines, got {context}")
    pairs = [_source_target(item) for item in items]
    has_target = {target is not None for _, target in pairs}
    if len(has_target) > 1:
        raise ValueError("some lines have a target and others do not; give targets for all lines or for none")
    sources = [source for source, _ in pairs]
    documents = []
    for number, offset in enumerate(range(0, len(pairs), lines_per_document)):
        chunk = pairs[offset : offset + lines_per_document]
        documents.append(
            Document(
                doc_id=f"{doc_id_prefix}-{number:04d}",
                source_lines=[source for source, _ in chunk],
                target_lines=[target for _, target in chunk] if has_target == {True} else None,
                context_before=sources[max(0, offset - before) : offset],
                context_after=sources[offset + len(chunk) : offset + len(chunk) + after],
            )
        )
    return documents


def line_marker(number: int) -> str:
    """The text that opens line ``number`` in prompts and answers: ``"12."``, as ALPO App. F.1 writes it.

    Every numbered line is rendered through this function, so the format is defined in one place. A line prompt
    ends at the newline before the marker (the model writes it), because no marker form is a token boundary for
    every byte-level pre-tokenizer (Qwen2's glues ``"."`` to a following ``"."`` or quote).

    Args:
        number: 1-based line number.

    Returns:
        ``f"{number}."``.
    """
    return f"{number}."


def render_numbered_lines(lines: Sequence[str], start: int = 1) -> str:
    """Number lines the way the model reads and writes them: ``"1.text\\n2.text\\n"`` (ALPO App. F.1).

    Line breaks inside a line are replaced by spaces, so line ``i`` is always exactly one output line.

    Args:
        lines: Line texts.
        start: Number of the first line.

    Returns:
        The numbered block, each line ending in ``"\\n"`` (empty string for no lines).

    Examples:
        >>> render_numbered_lines(["Hi.", "Bye."], start=3)
        '3.Hi.\\n4.Bye.\\n'
    """
    return "".join(f"{line_marker(number)}{_one_line(line)}\n" for number, line in enumerate(lines, start=start))


def render_document_prompt(document: Document, src_lang: str, tgt_lang: str) -> str:
    """The instruction, the context and the numbered source lines, ending where the model writes ``"1."``.

    The instruction restates App. F.1's three requirements in our own words (colloquial, vivid, same numbered
    lines without merging); the one-shot example the paper adds for API models is left out.

    Args:
        document: The document to translate.
        src_lang: Source language code or name (``"en"`` or ``"English"``).
        tgt_lang: Target language code or name.

    Returns:
        The prompt text, ending in ``"Translation:\\n"``.
    """
    source, target = language_name(src_lang), language_name(tgt_lang)
    count = len(document.source_lines)
    parts = [
        f"Translate these {count} numbered lines of {source} film/TV subtitles into {target}.\n"
        f"- Write {target} that sounds like natural speech and keeps the style of each line.\n"
        "- Be expressive: carry over the emotion, tone and atmosphere of the original.\n"
        f"- Answer with {count} numbered lines, line i translating line i; never merge or split lines.\n"
    ]
    if document.context_before:
        parts.append("\nEarlier lines (context only, do not translate):\n" + _context_block(document.context_before))
    parts.append("\nOriginal text:\n" + render_numbered_lines(document.source_lines))
    if document.context_after:
        parts.append("\nLater lines (context only, do not translate):\n" + _context_block(document.context_after))
    parts.append("\nTranslation:\n")
    return "".join(parts)


def render_line_prompt(document: Document, prefix: Sequence[str], src_lang: str, tgt_lang: str) -> str:
    """Prompt for line ``i = len(prefix) + 1`` given the translations of lines ``< i`` (ALPO Alg. 1, line 3).

    Args:
        document: The document being translated.
        prefix: Chosen translations of the first ``i - 1`` lines.
        src_lang: Source language code or name.
        tgt_lang: Target language code or name.

    Returns:
        ``render_document_prompt(document) + render_numbered_lines(prefix)``, ending at a newline; the model then
        writes ``"i."``, line ``i`` and ``"\\n"``.

    Raises:
        ValueError: ``prefix`` already covers every line of the document.
    """
    if len(prefix) >= len(document.source_lines):
        raise ValueError(f"prefix has {len(prefix)} lines; the document has only {len(document.source_lines)}")
    prompt = render_document_prompt(document, src_lang, tgt_lang)
    return prompt + render_numbered_lines(prefix)


def sft_examples(documents: Iterable[Document], src_lang: str, tgt_lang: str) -> list[dict[str, str]]:
    """Prompt-completion examples for TRL's ``SFTTrainer`` (ALPO Sec. 4.2: the SFT model pi_sft).

    Args:
        documents: Documents with reference translations.
        src_lang: Source language code or name.
        tgt_lang: Target language code or name.

    Returns:
        ``[{"prompt": render_document_prompt(doc), "completion": render_numbered_lines(doc.target_lines)}, ...]``.

    Raises:
        ValueError: A document has no ``target_lines``.
    """
    examples = []
    for document in documents:
        if document.target_lines is None:
            raise ValueError(f"document {document.doc_id!r} has no target_lines; SFT needs reference translations")
        examples.append(
            {
                "prompt": render_document_prompt(document, src_lang, tgt_lang),
                "completion": render_numbered_lines(document.target_lines),
            }
        )
    return examples


def parse_numbered_output(text: str, expected_lines: int) -> ParsedDocument:
    """Read a model's numbered translation back into ``expected_lines`` lines, reporting every repair.

    Handled: chatter before the first and after the last numbered line (ignored, reported), blank lines,
    ``"3.text"`` / ``"3) text"`` / ``"3、text"`` numbering, duplicate numbers (first kept), numbers out of range
    (ignored), two lines merged on one output line (``"3. foo 4. bar"`` split at ``"4."`` when line 4 appears
    nowhere else), and unnumbered lines between numbered ones (given to the missing numbers in between when
    their counts agree, else joined to the previous line). Lines that cannot be found stay ``None``.

    Args:
        text: The model output (the completion after the prompt).
        expected_lines: Number of lines in the document.

    Returns:
        A `ParsedDocument`; ``.problems`` is empty only for a clean answer.

    Examples:
        >>> parsed = parse_numbered_output("Sure!\\n1. Hi.\\n\\n2. Bye. 3. Later.", expected_lines=4)
        >>> parsed.lines
        ['Hi.', 'Bye.', 'Later.', None]
    """
    if expected_lines < 0:
        raise ValueError(f"expected_lines must be >= 0, got {expected_lines}")
    entries: list[tuple[int | None, str]] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not raw.strip():
            continue
        match = _NUMBERED.match(raw)
        entries.append((int(match.group(1)), match.group(2).strip()) if match else (None, raw.strip()))
    problems: list[str] = []
    entries = _split_merged(entries, expected_lines, problems)
    lines: list[str | None] = [None] * expected_lines
    last = 0  # highest line number assigned so far
    pending: list[str] = []  # unnumbered text since the last numbered line
    for number, line_text in entries:
        if number is None:
            pending.append(line_text)
            continue
        if not 1 <= number <= expected_lines:
            problems.append(f"ignored a line numbered {number} (expected 1-{expected_lines}): {_clip(line_text)}")
            continue
        if lines[number - 1] is not None:
            problems.append(f"line {number} appears more than once; kept the first")
            continue
        if pending:
            _place_unnumbered(pending, lines, last, number, problems)
            pending = []
        if number < last:
            problems.append(f"line {number} comes after line {last}")
        lines[number - 1] = line_text
        last = max(last, number)
    if pending:
        where = "no numbered line found" if last == 0 else f"after line {last}"
        problems.append(f"ignored unnumbered text ({where}): {_clip(' / '.join(pending))}")
    missing = [str(number) for number, line in enumerate(lines, start=1) if line is None]
    if missing:
        problems.append(f"missing line(s): {', '.join(missing)}")
    return ParsedDocument(lines=lines, problems=problems)


def _source_target(item: Any) -> tuple[str, str | None]:
    if isinstance(item, str):
        return _one_line(item), None
    if isinstance(item, Mapping):
        source, target = item.get("source"), item.get("target")
    elif isinstance(item, tuple) and len(item) == 2:
        source, target = item
    elif hasattr(item, "source"):
        source, target = item.source, getattr(item, "target", None)
    else:
        raise TypeError(
            f"expected aligned groups, dicts with 'source'/'target', (source, target) or str, got {item!r}"
        )
    if not isinstance(source, str):
        raise TypeError(f"a line's source must be a string, got {source!r}")
    return _one_line(source), None if target is None else _one_line(str(target))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _context_block(lines: Sequence[str]) -> str:
    # A dash, not a number, so context lines cannot be mistaken for lines to translate.
    return "".join(f"- {_one_line(line)}\n" for line in lines)


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _split_merged(
    entries: list[tuple[int | None, str]], expected_lines: int, problems: list[str]
) -> list[tuple[int | None, str]]:
    """Split ``"3. foo 4. bar"`` at ``"4."`` when no other output line is numbered 4."""
    present = {number for number, _ in entries if number is not None}
    result: list[tuple[int | None, str]] = []
    for number, line_text in entries:
        while number is not None and number + 1 <= expected_lines and number + 1 not in present:
            match = re.search(rf"(?:^|\s){number + 1}\s*[.)．、:：]\s*", line_text)
            if match is None or match.start() == 0:
                break
            problems.append(
                f"lines {number} and {number + 1} were merged on one output line; split at '{number + 1}.'"
            )
            result.append((number, line_text[: match.start()].strip()))
            number, line_text = number + 1, line_text[match.end() :].strip()
            present.add(number)
        result.append((number, line_text))
    return result


def _place_unnumbered(
    pending: list[str], lines: list[str | None], last: int, number: int, problems: list[str]
) -> None:
    """Give unnumbered text between lines ``last`` and ``number`` to the missing numbers, or to line ``last``."""
    gap = [k for k in range(last + 1, number) if lines[k - 1] is None]
    if last == 0:  # before any numbered line: chatter ("Sure, here is the translation:"), never a translation
        problems.append(f"ignored text before the first numbered line: {_clip(' / '.join(pending))}")
    elif len(pending) == len(gap):
        for k, line_text in zip(gap, pending):
            lines[k - 1] = line_text
            problems.append(f"line {k} had no number; took the unnumbered line at its place")
    else:
        lines[last - 1] = f"{lines[last - 1]} {' '.join(pending)}".strip()
        problems.append(f"joined unnumbered text to line {last}: {_clip(' / '.join(pending))}")


def read_documents(path: str | Path) -> list[Document]:
    """Read the documents JSONL of ``trl-seqpo subtitles documents``, naming the file, line and field of any problem.

    The one reader of documents files (``alpo sample``, ``evaluate subtitles`` and the demo use it).

    Args:
        path: The file.

    Returns:
        The documents, in order.

    Raises:
        UserInputError: Missing or undecodable file, bad JSON, a missing or mistyped field, a duplicate ``doc_id``,
            no documents.
    """
    from trl_seqpo.errors import UserInputError
    from trl_seqpo.jsonl import read_json_objects

    documents: list[Document] = []
    seen: set[str] = set()
    missing = "documents file not found; make it with `trl-seqpo subtitles documents`"
    expected = "a JSON object (a document of `trl-seqpo subtitles documents`)"
    for number, record in read_json_objects(path, missing=missing, expected=expected):
        problem = _document_problem(record)
        if problem is None and record["doc_id"] in seen:
            problem = f"doc_id {record['doc_id']!r} appears twice"
        if problem is None:
            try:
                documents.append(Document.from_dict(record))
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            raise UserInputError(problem, path=str(path), line=number)
        seen.add(record["doc_id"])
    if not documents:
        raise UserInputError("no documents in the file", path=str(path))
    return documents


def _document_problem(record: Mapping[str, Any]) -> str | None:
    if not isinstance(record.get("doc_id"), str) or not record["doc_id"]:
        found = ", ".join(sorted(record)) or "none"
        return f"field 'doc_id' must be a non-empty string (fields found: {found})"
    if "source_lines" not in record:
        return f"field 'source_lines' is missing (fields found: {', '.join(sorted(record))})"
    for name in ("source_lines", "context_before", "context_after"):
        value = record.get(name, [] if name != "source_lines" else None)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"field {name!r} must be a list of strings"
    if not record["source_lines"]:
        return "field 'source_lines' is empty"
    targets = record.get("target_lines")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        return "field 'target_lines' must be a list of strings or null"
    return None
