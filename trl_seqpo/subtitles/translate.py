"""Translate a subtitle file with a trained model: the use ALPO trains for (``trl-seqpo subtitles translate``).

The file's cues become numbered-line documents exactly as in training (`make_documents`: ``lines_per_document``
lines, ``context`` untranslated lines on each side, `render_document_prompt`), the model answers with the numbered
translations in one generation per document (`trl_seqpo.evaluate.subtitles`'s document mode, read back with
`parse_numbered_output`), and a line the parser cannot recover is generated again on its own, from its line prompt
with the lines around it as context (the same module's line mode). The translations are written back into the
parsed file: every event keeps its times, style, layer and the override tags that open it (``{\\an8\\fad(200,0)}``);
only its text changes (``--bilingual`` keeps the original under the translation).

Cues that are not text to translate stay as they are: drawings, karaoke timing, empty and zero-length or one-frame
events, and lines already in another script than the file (`classify_cues` reasons in `UNTRANSLATED_REASONS`).
Finished documents are appended to a resumable JSONL next to the output (``OUT.partial.jsonl``), so a killed run
resumes where it stopped; it is removed once the output is written.

This module imports no torch: `load_translator` imports the generation backends when it is called.
"""

from __future__ import annotations

import copy
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysubs2

from trl_seqpo.subtitles.align import is_cjk_language, join_texts
from trl_seqpo.subtitles.classify import classify_cues
from trl_seqpo.subtitles.documents import Document, make_documents
from trl_seqpo.subtitles.io import Cue, SubtitleFile

__all__ = [
    "UNTRANSLATED_REASONS",
    "Translator",
    "apply_translations",
    "load_translator",
    "plan_documents",
    "translate_documents",
    "translate_file",
]

UNTRANSLATED_REASONS = frozenset({"empty", "zero_length", "flash", "drawing", "karaoke", "other_script"})
_OUTPUT_FORMATS = {".srt": "srt", ".ass": "ass", ".ssa": "ssa", ".vtt": "vtt"}
_LEADING_TAGS = re.compile(r"^(?:\{[^}]*\})*")
# `translate_documents` gets, for a batch of documents, one list of lines per document ("" for a line it lost).
Translator = Callable[[list[Document]], list[list[str]]]


@dataclass(frozen=True)
class _Settings:
    """The fields `trl_seqpo.evaluate.subtitles`' generation functions read from their config."""

    source_lang: str
    target_lang: str
    max_new_tokens_per_line: int


def plan_documents(
    cues: Sequence[Cue], lines_per_document: int = 35, context: int = 2, *, source_lang: str | None = None
) -> tuple[list[Document], list[list[int]]]:
    """Cut the translatable cues of a file into documents, one cue per line.

    Args:
        cues: The file's cues.
        lines_per_document: Lines per document (paper: 35).
        context: Untranslated source lines shown before and after each document.
        source_lang: Source language (a wrap inside a zh/ja cue is joined without a space).

    Returns:
        ``(documents, cue indices)``: ``cue_indices[d][i]`` is the `Cue.index` of line ``i`` of document ``d``.

    Raises:
        ValueError: ``lines_per_document < 1`` or ``context < 0``.
    """
    reasons = classify_cues(cues)
    chosen = [cue for cue, reason in zip(cues, reasons) if reason not in UNTRANSLATED_REASONS and cue.text.strip()]
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
    regenerate: Translator,
    *,
    batch_size: int = 8,
    done: dict[str, list[str]] | None = None,
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Translate documents in batches; lines the model lost are generated again alone.

    Args:
        documents: From `plan_documents`.
        translate: Whole-document translation (numbered answer parsed back; ``""`` for a lost line).
        regenerate: Translation of one-line documents (a lost line with its neighbours as context).
        batch_size: Documents per call of ``translate``.
        done: ``{doc_id: lines}`` already translated (a resumed run); they are not generated again.
        on_batch: Called with the records of each finished batch (``id``, ``lines``, ``regenerated``), to store them.
        progress: Show a progress bar (tqdm; only on a terminal).

    Returns:
        ``{doc_id: translated lines}`` for every document.
    """
    from tqdm.auto import tqdm

    results = dict(done or {})
    todo = [document for document in documents if document.doc_id not in results]
    with tqdm(total=len(documents), initial=len(documents) - len(todo), desc="translating", unit="doc",
              disable=None if progress else True, dynamic_ncols=True) as bar:  # fmt: skip
        for start in range(0, len(todo), batch_size):
            batch = list(todo[start : start + batch_size])
            outputs = [list(lines) for lines in translate(batch)]
            lost = [(d, i) for d, lines in enumerate(outputs) for i, line in enumerate(lines) if not line.strip()]
            if lost:
                singles = [_single_line_document(batch[d], i) for d, i in lost]
                for (d, i), lines in zip(lost, regenerate(singles)):
                    outputs[d][i] = lines[0] if lines else ""
            regenerated = Counter(d for d, _ in lost)
            records = []
            for k, (document, lines) in enumerate(zip(batch, outputs)):
                results[document.doc_id] = lines
                records.append({"id": document.doc_id, "lines": lines, "regenerated": regenerated[k]})
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
    regenerate: Translator,
    *,
    source_lang: str | None = None,
    lines_per_document: int = 35,
    context: int = 2,
    batch_size: int = 8,
    bilingual: bool = False,
    encoding: str | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Translate one subtitle file into ``output`` (its extension picks the format), resuming an interrupted run.

    Args:
        source: Subtitle file to translate.
        output: Where the translated file goes (written atomically).
        translate: Whole-document translation (`load_translator`).
        regenerate: One-line translation for lost lines (`load_translator`).
        source_lang: Source language code (how wraps are joined); ``None`` guesses from the text.
        lines_per_document: Lines per document.
        context: Context lines on each side.
        batch_size: Documents per generation call.
        bilingual: Keep the original line under each translation.
        encoding: Force the input's text encoding.
        progress: Show a progress bar.

    Returns:
        Counts: ``events``, ``translated`` cues, ``kept`` cues (not text to translate), ``documents``, ``resumed``
        documents and ``regenerated`` lines.

    Raises:
        UserInputError: Unreadable input, an output format that cannot be told, or a partial file that does not
            belong to this input.
    """
    from trl_seqpo.errors import UserInputError
    from trl_seqpo.jsonl import ResumableJsonl, atomic_output
    from trl_seqpo.subtitles.io import read_subtitle_file

    output = Path(output)
    fmt = _OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise UserInputError("cannot tell the output format; use .srt, .ass, .ssa or .vtt", path=str(output))
    file = read_subtitle_file(source, encoding)
    documents, indices = plan_documents(file.cues, lines_per_document, context, source_lang=source_lang)
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
        done[key] = row["lines"]
    results = translate_documents(
        documents, translate, regenerate, batch_size=batch_size, done=done, on_batch=store.append, progress=progress
    )
    translations = {
        cue_index: line
        for document, cue_indices in zip(documents, indices)
        for cue_index, line in zip(cue_indices, results[document.doc_id])
        if line.strip()
    }
    content = apply_translations(file, translations, bilingual=bilingual).to_string(fmt)
    with atomic_output(output) as handle:
        handle.write(content)
    partial.unlink(missing_ok=True)
    return {
        "events": len(file.subs.events),
        "translated": len(translations),
        "kept": len(file.cues) - len(translations),
        "documents": len(documents),
        "resumed": len(done),
        "regenerated": sum(row.get("regenerated", 0) for row in store.rows.values()),
    }


def load_translator(
    model: str,
    src_lang: str,
    tgt_lang: str,
    *,
    backend: str = "hf",
    device: str | None = None,
    dtype: str = "auto",
    max_new_tokens_per_line: int = 64,
) -> tuple[Translator, Translator]:
    """Load ``model`` and return ``(translate, regenerate)`` for `translate_documents`.

    The generation itself is `trl_seqpo.evaluate.subtitles`' (document mode, line mode), so a translated file and
    an evaluation see the same prompts and parsing.

    Raises:
        UserInputError: The model cannot be loaded or the backend is unknown.
        MissingDependencyError: ``backend="vllm"`` without vLLM.
    """
    from trl_seqpo.evaluate.subtitles import _translate_by_line, _translate_whole, newline_stop_ids
    from trl_seqpo.rollout.loading import load_backend

    loaded = load_backend(model, backend, device=device, dtype=dtype)
    tokenizer, engine = loaded.tokenizer, loaded.backend
    settings = _Settings(src_lang, tgt_lang, max_new_tokens_per_line)
    stop_ids = newline_stop_ids(tokenizer)

    end_ids = tuple(loaded.stop_token_ids)

    def translate(documents: list[Document]) -> list[list[str]]:
        rows = _translate_whole(documents, tokenizer, engine, settings, end_ids)
        return [row["hypothesis_lines"] for row in rows]

    def regenerate(documents: list[Document]) -> list[list[str]]:
        rows = _translate_by_line(documents, tokenizer, engine, settings, stop_ids)
        return [row["hypothesis_lines"] for row in rows]

    return translate, regenerate


def _single_line_document(document: Document, line: int) -> Document:
    before = [*document.context_before, *document.source_lines[:line]][-2:]
    after = [*document.source_lines[line + 1 :], *document.context_after][:2]
    return Document(f"{document.doc_id}-line{line + 1}", [document.source_lines[line]], None, before, after)
