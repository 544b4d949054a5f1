"""Translate a subtitle file with a trained model: the use ALPO trains for (``trl-seqpo subtitles translate``).

The file's dialogue cues become numbered-line documents exactly as in training (`make_documents`:
``lines_per_document`` lines, ``context`` untranslated lines on each side, 0 by default as in ``subtitles
documents``, `render_document_prompt`). The model answers each document with the numbered translations in one
generation; the answer is checked against the numbered source lines (line count, numbering: `is_aligned` in
`trl_seqpo.rollout.linewise`), and a line it lost, or every line of an answer whose numbering went wrong (two lines
merged and the rest renumbered), is generated again one by one from its line prompt, the same prompt ALPO samples
and evaluation decodes with. The translations are written back into the parsed file: every event keeps its times,
style, layer and the override tags that open it (``{\\an8\\fad(200,0)}``); only its text changes (``--bilingual``
keeps the original under the translation). A WebVTT file is rewritten in place (`trl_seqpo.subtitles.webvtt`), so
its cue settings, ``NOTE`` blocks and the markup around a cue's text stay.

Every cue ends with a status (`STATUSES`): ``translated`` (from the document's answer), ``regenerated`` (generated
again alone), ``failed`` (no usable translation: the source text stays) or ``not_dialogue``: left out of the
documents by the classifier `align` uses (`classify_cues`: credits, songs, signs, drawings, karaoke, empty cues...)
unless ``keep`` names its reason. Finished documents are appended to a resumable JSONL next to the output
(``OUT.partial.jsonl``), so a killed run resumes where it stopped; it is removed once the output is written.

This module imports no torch; the model side is `trl_seqpo.rollout.linewise.load_translator`.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import pysubs2

from trl_seqpo.subtitles.align import is_cjk_language, join_texts
from trl_seqpo.subtitles.classify import REASONS, classify_cues
from trl_seqpo.subtitles.documents import Document, make_documents
from trl_seqpo.subtitles.io import Cue, SubtitleFile

__all__ = [
    "STATUSES",
    "UNTRANSLATED_REASONS",
    "Regenerator",
    "Translator",
    "apply_translations",
    "left_out_cues",
    "plan_documents",
    "translate_documents",
    "translate_file",
]

STATUSES = ("translated", "regenerated", "failed", "not_dialogue")
# never text to translate, whatever `keep` says
UNTRANSLATED_REASONS = frozenset({"empty", "zero_length", "flash", "drawing", "karaoke", "other_script"})
_LEADING_TAGS = re.compile(r"^(?:\{[^}]*\})*")
# whole-document translation of a batch: per document, each line's translation or None (lost, or not trustworthy)
Translator = Callable[[list[Document]], list[list[str | None]]]
# line-by-line generation of the None lines of each document, given the others ("" where it fails again)
Regenerator = Callable[[list[Document], list[list[str | None]]], list[list[str]]]


def left_out_cues(cues: Sequence[Cue], keep: Collection[str] = ()) -> dict[int, str]:
    """The cues that stay out of the documents, with their reason: what is not dialogue (`classify_cues`, as
    ``subtitles align`` sorts it) unless ``keep`` names the reason (``"all"``: every reason), and never text to
    translate (`UNTRANSLATED_REASONS`, empty cues).

    Raises:
        ValueError: ``keep`` names an unknown reason.
    """
    unknown = set(keep) - set(REASONS) - {"all"}
    if unknown:
        raise ValueError(f"unknown reason(s) to keep: {', '.join(sorted(unknown))}; choose from {', '.join(REASONS)}")
    left = {}
    for cue, reason in zip(cues, classify_cues(cues)):
        if reason is None and not cue.text.strip():
            reason = "empty"
        if reason is not None and (reason in UNTRANSLATED_REASONS or not ({"all", reason} & set(keep))):
            left[cue.index] = reason
    return left


def plan_documents(
    cues: Sequence[Cue],
    lines_per_document: int = 35,
    context: int = 0,
    *,
    source_lang: str | None = None,
    keep: Collection[str] = (),
) -> tuple[list[Document], list[list[int]]]:
    """Cut the dialogue cues of a file into documents, one cue per line (`left_out_cues` stay out).

    Args:
        cues: The file's cues.
        lines_per_document: Lines per document (paper: 35).
        context: Untranslated source lines shown before and after each document (training documents' default: 0).
        source_lang: Source language (a wrap inside a zh/ja cue is joined without a space).
        keep: Reasons of non-dialogue cues to translate anyway (``"all"``: every reason).

    Returns:
        ``(documents, cue indices)``: ``cue_indices[d][i]`` is the `Cue.index` of line ``i`` of document ``d``.

    Raises:
        ValueError: ``lines_per_document < 1``, ``context < 0`` or an unknown reason in ``keep``.
    """
    left = left_out_cues(cues, keep)
    chosen = [cue for cue in cues if cue.index not in left]
    no_space = is_cjk_language(source_lang)
    lines = [join_texts([cue.text], no_space_wraps=no_space) for cue in chosen]
    documents = make_documents(lines, lines_per_document, context, doc_id_prefix="cues")
    indices = [
        [cue.index for cue in chosen[k : k + lines_per_document]] for k in range(0, len(chosen), lines_per_document)
    ]
    return documents, indices


def translate_documents(
    documents: Sequence[Document],
    translate: Translator,
    regenerate: Regenerator,
    *,
    batch_size: int = 8,
    done: dict[str, dict[str, Any]] | None = None,
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Translate documents in batches; the lines the answer lost or misplaced are generated again one by one.

    Args:
        documents: From `plan_documents`.
        translate: Whole-document translation (``None`` for a line to generate again).
        regenerate: Line-by-line generation of the ``None`` lines (``""`` where the model fails again).
        batch_size: Documents per call of ``translate``.
        done: ``{doc_id: record}`` already translated (a resumed run); they are not generated again.
        on_batch: Called with the records of each finished batch, to store them.
        progress: Show a progress bar (tqdm; only on a terminal).

    Returns:
        ``{doc_id: {"id", "lines", "status"}}`` for every document: the translated lines and each line's status
        (``translated``, ``regenerated`` or ``failed``, see `STATUSES`).
    """
    from tqdm.auto import tqdm

    results = dict(done or {})
    todo = [document for document in documents if document.doc_id not in results]
    with tqdm(total=len(documents), initial=len(documents) - len(todo), desc="translating", unit="doc",
              disable=None if progress else True, dynamic_ncols=True) as bar:  # fmt: skip
        for start in range(0, len(todo), batch_size):
            batch = list(todo[start : start + batch_size])
            answers = [
                [line if line is not None and line.strip() else None for line in lines] for lines in translate(batch)
            ]
            if len(answers) != len(batch) or any(len(a) != len(d.source_lines) for a, d in zip(answers, batch)):
                raise RuntimeError("the translator returned another number of documents or lines than asked for")
            lost = [d for d, lines in enumerate(answers) if None in lines]
            filled = {}
            if lost:
                regenerated = regenerate([batch[d] for d in lost], [answers[d] for d in lost])
                filled = dict(zip(lost, regenerated))
            records = []
            for d, (document, lines) in enumerate(zip(batch, answers)):
                final = filled.get(d, lines)
                status = [
                    "translated" if line is not None else ("regenerated" if new.strip() else "failed")
                    for line, new in zip(lines, final)
                ]
                record = {"id": document.doc_id, "lines": [line or "" for line in final], "status": status}
                results[document.doc_id] = record
                records.append(record)
            if on_batch is not None:
                on_batch(records)
            bar.update(len(batch))
    return results


def apply_translations(
    file: SubtitleFile, translations: dict[int, str], *, bilingual: bool = False
) -> pysubs2.SSAFile:
    """A copy of the parsed file with each translated cue's text replaced, everything else kept.

    Args:
        file: The file as read.
        translations: ``{Cue.index: translation}``; cues not in it keep their text.
        bilingual: Write ``translation\\Noriginal`` instead of the translation alone.

    Returns:
        A new `pysubs2.SSAFile` (same styles, info and events; events keep times, style, layer and leading tags).

    Examples:
        >>> import pysubs2
        >>> subs = pysubs2.SSAFile()
        >>> subs.events.append(pysubs2.SSAEvent(start=0, end=1000, text="{\\\\an8}Hello"))
        >>> file = SubtitleFile([Cue(0, 0.0, 1.0, "Hello", raw="{\\\\an8}Hello", event=0)], "ass", subs)
        >>> apply_translations(file, {0: "你好"}, bilingual=True).events[0].text
        '{\\\\an8}你好\\\\NHello'
    """
    out = copy.copy(file.subs)
    out.events = [copy.copy(event) for event in file.subs.events]
    for cue in file.cues:
        if cue.index not in translations or cue.event is None:
            continue
        event = out.events[cue.event]
        tags = _LEADING_TAGS.match(event.text).group(0)
        text = translations[cue.index].replace("\n", " ").strip()
        event.text = tags + text + (r"\N" + event.text[len(tags) :] if bilingual else "")
    return out


def translate_file(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    translate: Translator,
    regenerate: Regenerator,
    *,
    source_lang: str | None = None,
    target_lang: str | None = None,
    lines_per_document: int = 35,
    context: int = 0,
    keep: Collection[str] = (),
    batch_size: int = 8,
    bilingual: bool = False,
    encoding: str | None = None,
    cps_limit: float | None = None,
    line_limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Translate one subtitle file into ``output`` (its extension picks the format), resuming an interrupted run.

    Args:
        source: Subtitle file to translate.
        output: Where the translated file goes (written atomically, also when lines failed).
        translate: Whole-document translation (`trl_seqpo.rollout.linewise.load_translator`).
        regenerate: Line-by-line generation of lost lines (same).
        source_lang: Source language code (how wraps are joined); ``None`` guesses from the text.
        target_lang: Target language code (picks the reading-speed limits); ``None`` looks at the script.
        lines_per_document: Lines per document.
        context: Context lines on each side.
        keep: Reasons of non-dialogue cues to translate anyway (`left_out_cues`).
        batch_size: Documents per generation call.
        bilingual: Keep the original line under each translation.
        encoding: Force the input's text encoding.
        cps_limit: Reading-speed limit in characters per second (`trl_seqpo.subtitles.reading`).
        line_limit: Characters per line allowed.
        progress: Show a progress bar.

    Returns:
        ``events``, ``cues``, ``dialogue`` (cues in documents), one count per status of `STATUSES`,
        ``documents``, ``resumed`` documents, ``failed_cues`` (1-based cue numbers left in the source language),
        ``cue_status`` (the status of every cue, in file order) and ``reading`` (`ReadingSpeed` of the translated
        cues).

    Raises:
        UserInputError: Unreadable input, an output format that cannot be told, an unknown reason to keep, or a
            partial file that does not belong to this input.
    """
    from trl_seqpo.errors import UserInputError
    from trl_seqpo.jsonl import ResumableJsonl, atomic_output
    from trl_seqpo.subtitles.io import output_format, read_subtitle_file
    from trl_seqpo.subtitles.reading import reading_speed

    output = Path(output)
    fmt = output_format(output)
    file = read_subtitle_file(source, encoding)
    try:
        left = left_out_cues(file.cues, keep)
        documents, indices = plan_documents(file.cues, lines_per_document, context, source_lang=source_lang, keep=keep)
    except ValueError as error:
        raise UserInputError(f"--keep: {error}") from error
    partial = output.with_name(output.name + ".partial.jsonl")
    store = ResumableJsonl(partial, resume=True, key="id")
    plan = {document.doc_id: len(document.source_lines) for document in documents}
    done = {}
    for key, row in store.rows.items():
        if plan.get(key) != len(row.get("lines", ())):
            raise UserInputError(
                f"holds document {key!r} that does not match {Path(source).name}; delete it to start again",
                path=str(partial),
            )
        done[key] = {"status": ["translated"] * len(row["lines"]), **row}
    results = translate_documents(
        documents, translate, regenerate, batch_size=batch_size, done=done, on_batch=store.append, progress=progress
    )
    translations, statuses = {}, {}
    for document, cue_indices in zip(documents, indices):
        record = results[document.doc_id]
        for cue_index, line, status in zip(cue_indices, record["lines"], record["status"]):
            statuses[cue_index] = status if line.strip() else "failed"
            if line.strip():
                translations[cue_index] = line
    if fmt == "vtt" and file.format == "vtt" and file.text is not None:
        from trl_seqpo.subtitles.webvtt import rewrite_webvtt

        content = rewrite_webvtt(file.text, file.cues, translations, bilingual=bilingual)
    else:
        content = apply_translations(file, translations, bilingual=bilingual).to_string(fmt)
    with atomic_output(output) as handle:
        handle.write(content)
    partial.unlink(missing_ok=True)
    counts: dict[str, Any] = {"events": len(file.subs.events), "cues": len(file.cues), "dialogue": len(statuses)}
    for status in STATUSES:
        counts[status] = sum(value == status for value in statuses.values())
    counts["not_dialogue"] = len(left)
    counts["documents"] = len(documents)
    counts["resumed"] = len(done)
    counts["failed_cues"] = sorted(index + 1 for index, status in statuses.items() if status == "failed")
    counts["cue_status"] = [statuses.get(cue.index, "not_dialogue") for cue in file.cues]
    by_index = {cue.index: cue for cue in file.cues}
    counts["reading"] = reading_speed(
        [(by_index[i].start, by_index[i].end, text) for i, text in sorted(translations.items())],
        target_lang,
        cps_limit=cps_limit,
        line_limit=line_limit,
    )
    return counts
