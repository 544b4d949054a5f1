"""``trl-seqpo evaluate subtitles``: document translation, line-format checks and judge scores (ALPO Sec. 4.2).

Documents are numbered-line documents (`Document`, as written by
``trl-seqpo subtitles documents``). Two ways to translate one:

* ``--mode line`` (default): line by line, greedy, as ALPO's segment-wise sampling conditions each line on the
  model's own earlier lines (Alg. 1 with one greedy candidate), with the one line decoder of sampling and
  translation (`trl_seqpo.rollout.linewise.LineDecoder.complete`): the prompt of line ``i`` ends at the newline after
  line ``i - 1``, the model writes ``"i."`` itself, and generation stops at the first newline. The documents of a
  batch advance one line at a time in lockstep, one backend call per line.
* ``--mode document``: the whole numbered answer in one generation (App. F.1), read back with
  `parse_numbered_output` (`LineDecoder.answer`, same prompt ids and BOS rule).

Format problems are counted, never hidden: ``missing_lines`` (no usable text), ``merged_lines`` (the next line's
number inside a line, or two lines the parser had to split), ``extra_lines`` (numbers out of range or repeated) and,
in line mode, ``truncated_lines`` (the token budget ended the line). Quality: corpus BLEU/chrF over lines, COMET or
XCOMET per line (optional) and the LLM judge's 0-100 accuracy / naturalness / vividness per document (optional; the
paper scores 35-line segments, Sec. 4.2 and App. B.1). Outputs mirror ``evaluate simt``: ``<mode>/hypotheses.jsonl``
(resumable), ``<mode>/scores.jsonl``, ``<mode>/summary.json``, ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from trl_seqpo.errors import UserInputError
from trl_seqpo.evaluate.common import EvalConfig, check_resume, decode_pending, split_names
from trl_seqpo.evaluate.records import ScoreFile, text_digest
from trl_seqpo.jsonl import ResumableJsonl, atomic_write_json
from trl_seqpo.judge.prompts import ASPECTS as JUDGE_ASPECTS
from trl_seqpo.outputs import file_fingerprint
from trl_seqpo.subtitles.documents import Document, read_documents

__all__ = [
    "KNOWN_METRICS",
    "SubtitleEvalConfig",
    "evaluate_subtitles",
    "judge_aspects",
    "line_format_problems",
    "load_documents",
]

KNOWN_METRICS: tuple[str, ...] = ("bleu", "chrf", "comet", "xcomet", "judge")


def judge_aspects() -> tuple[str, ...]:
    """Every aspect the judge has a rubric for (`trl_seqpo.judge.prompts.ASPECTS`), alphabetical as ALPO's tables
    (accuracy, naturalness, vividness): a rubric added there is scored, validated and tabulated without an edit here.
    """
    return tuple(sorted(JUDGE_ASPECTS))


MODES: tuple[str, ...] = ("line", "document")
_MARKER = r"\s*[.)．、:：]"


def load_documents(path: str | Path) -> list[Document]:
    """Read a documents JSONL: `trl_seqpo.subtitles.documents.read_documents` (kept under this name)."""
    return read_documents(path)


def line_format_problems(lines: Sequence[str]) -> dict[str, int]:
    """Count empty lines and lines that swallowed the next line (``"... 5. next line"`` in line 4).

    Args:
        lines: The translated lines of one document, in order.

    Returns:
        ``{"missing_lines": ..., "merged_lines": ...}``.

    Examples:
        >>> line_format_problems(["Hi.", "Bye. 3. Later.", ""])
        {'missing_lines': 1, 'merged_lines': 1}
    """
    missing = sum(not line.strip() for line in lines)
    merged = sum(
        1
        for number, line in enumerate(lines[:-1], start=1)
        if re.search(rf"(?:^|\s){number + 1}{_MARKER}", line) is not None
    )
    return {"missing_lines": missing, "merged_lines": merged}


@dataclass(kw_only=True)
class SubtitleEvalConfig(EvalConfig):
    """Settings of `evaluate_subtitles`; `trl-seqpo evaluate subtitles` has one flag per field."""

    known_metrics: ClassVar[tuple[str, ...]] = KNOWN_METRICS

    documents: str | Path = field(metadata={"help": "JSONL of documents (written by trl-seqpo subtitles documents)"})
    mode: Literal["line", "document"] = field(
        default="line", metadata={"help": "translate line by line (as ALPO samples) or the whole document at once"}
    )
    source_lang: str | None = field(default="en", metadata={"help": "source language (name or code) in prompts"})
    target_lang: str | None = field(
        default="zh", metadata={"help": "target language (name or code) in prompts; picks the BLEU tokeniser"}
    )
    batch_size: int = field(default=8, metadata={"help": "documents translated together"})
    max_new_tokens_per_line: int = field(
        default=128,
        metadata={"help": "token budget of one line, as ALPO sampling (document mode: times the number of lines)"},
    )
    judge_aspects: tuple[str, ...] = field(
        default_factory=judge_aspects, metadata={"help": "judge aspects to score (default: every one)"}
    )
    chars_per_line: int | None = field(
        default=None,
        metadata={"help": "reading limit, characters per line (default: by target script, 42 for Latin scripts)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise UserInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.chars_per_line is not None and self.chars_per_line < 1:
            raise UserInputError(f"chars_per_line must be >= 1, got {self.chars_per_line}")
        if self.max_new_tokens_per_line < 1:
            raise UserInputError(f"max_new_tokens_per_line must be >= 1, got {self.max_new_tokens_per_line}")
        self.judge_aspects = split_names(self.judge_aspects)
        bad = [aspect for aspect in self.judge_aspects if aspect not in JUDGE_ASPECTS]
        if bad:
            known = ", ".join(judge_aspects())
            raise UserInputError(f"unknown judge aspect(s) {', '.join(bad)}; choose from {known}")


def _translate_by_line(documents: list[Document], decoder: Any, config: SubtitleEvalConfig) -> list[dict]:
    lines, truncated = decoder.complete(
        documents, config.source_lang, config.target_lang, config.max_new_tokens_per_line
    )
    return [
        {"hypothesis_lines": doc_lines, **line_format_problems(doc_lines), "extra_lines": 0, "truncated_lines": cut}
        for doc_lines, cut in zip(lines, truncated)
    ]


def _translate_whole(documents: list[Document], decoder: Any, config: SubtitleEvalConfig) -> list[dict]:
    rows = []
    answers = decoder.answer(documents, config.source_lang, config.target_lang, config.max_new_tokens_per_line)
    for answer in answers:
        parsed = answer.parsed
        rows.append(
            {
                "hypothesis_lines": [line or "" for line in parsed.lines],
                "raw_output": answer.text,
                "problems": parsed.problems,
                "missing_lines": sum(line is None or not line.strip() for line in parsed.lines),
                "merged_lines": sum("merged" in problem for problem in parsed.problems),
                "extra_lines": sum(
                    problem.startswith("ignored a line numbered") or "more than once" in problem
                    for problem in parsed.problems
                ),
                "truncated_lines": int(answer.truncated),
                "misaligned": not answer.aligned,
            }
        )
    return rows


def _decode(
    documents: list[Document],
    store: ResumableJsonl,
    loaded: Any,
    config: SubtitleEvalConfig,
    on_batch: Callable[[int], None] | None,
) -> int:
    from trl_seqpo.rollout.linewise import LineDecoder

    decoder = LineDecoder(loaded.backend, loaded.tokenizer, tuple(loaded.stop_token_ids))

    def decode(start: int, batch: list[Document]) -> list[dict]:
        if config.mode == "line":
            outputs = _translate_by_line(batch, decoder, config)
        else:
            outputs = _translate_whole(batch, decoder, config)
        return [
            {"id": d.doc_id, "source_lines": d.source_lines, "reference_lines": d.target_lines, **output}
            for d, output in zip(batch, outputs)
        ]

    return decode_pending(
        documents, lambda d: d.doc_id, store, config.batch_size, decode,
        desc=f"subtitles {config.mode}", unit="doc", progress=config.progress, on_batch=on_batch,
    )  # fmt: skip


def _score(rows: list[dict], run_dir: Path, config: SubtitleEvalConfig) -> tuple[dict, dict, dict]:
    import dataclasses

    from trl_seqpo.evaluate import metrics as quality

    scores = ScoreFile(
        run_dir / "scores.jsonl",
        {row["id"]: text_digest("\n".join(row["hypothesis_lines"])) for row in rows},
        config.resume,
    )
    by_id = {row["id"]: row for row in rows}
    counts = {"documents": len(rows), "lines": sum(len(row["source_lines"]) for row in rows)}
    for name in ("missing_lines", "merged_lines", "extra_lines", "truncated_lines"):
        counts[name] = sum(row.get(name, 0) for row in rows)
    counts["documents_with_problems"] = sum(
        any(row.get(name, 0) for name in ("missing_lines", "merged_lines", "extra_lines")) for row in rows
    )
    counts["misaligned_documents"] = sum(bool(row.get("misaligned")) for row in rows)
    # reading speed (trl_seqpo.subtitles.reading): documents carry no cue times, so only the line length is counted
    from trl_seqpo.subtitles.reading import reading_speed

    reading = reading_speed(
        [(0.0, 0.0, line) for row in rows for line in row["hypothesis_lines"]],
        config.target_lang if config.target_lang and len(config.target_lang) <= 3 else None,
        line_limit=config.chars_per_line,
    )
    counts["lines_over_chars_per_line"] = reading.over_line
    counts["chars_per_line_limit"] = reading.line_limit
    summary: dict[str, float | None] = {}
    signatures: dict[str, str] = {}
    with_references = [row for row in rows if row.get("reference_lines")]
    hyps = [line for row in with_references for line in row["hypothesis_lines"]]
    refs = [line for row in with_references for line in row["reference_lines"]]
    if "bleu" in config.metrics and hyps:
        summary["BLEU"], signatures["BLEU"] = quality.corpus_bleu(
            hyps, refs, config.target_lang, config.bleu_tokenizer
        )
    if "chrf" in config.metrics and hyps:
        summary["chrF"], signatures["chrF"] = quality.corpus_chrf(hyps, refs)
    for metric in ("comet", "xcomet"):
        if metric not in config.metrics:
            continue
        name = metric.upper() if metric == "comet" else "XCOMET"
        key = f"{name}@{config.comet_model}"  # re-scoring with another checkpoint never reuses these scores
        todo = [by_id[row_id] for row_id in scores.missing(key) if by_id[row_id].get("reference_lines")]
        if todo:
            srcs = [line for row in todo for line in row["source_lines"]]
            lines = [line for row in todo for line in row["hypothesis_lines"]]
            line_refs = [line for row in todo for line in row["reference_lines"]]
            flat = quality.comet_scores(
                srcs, lines, line_refs, config.comet_model, kind=metric, batch_size=config.comet_batch_size
            )
            values, offset = {}, 0
            for row in todo:
                count = len(row["source_lines"])
                values[row["id"]] = quality.mean_or_none(flat[offset : offset + count])
                offset += count
            scores.update(key, values)
            scores.save()
        summary[name] = quality.mean_or_none(scores.values(key))
    if "judge" in config.metrics:
        for aspect in config.judge_aspects:
            name = aspect.capitalize()
            key = f"{name}@{config.judge.model}"  # re-judging with another model never reuses these scores

            def score(todo: list[dict], aspect: str = aspect) -> list:
                return quality.judge_scores(
                    [row["source_lines"] for row in todo],
                    ["\n".join(row["hypothesis_lines"]) for row in todo],
                    dataclasses.replace(config.judge, aspect=aspect),
                    progress=config.progress,
                )

            values = scores.fill(key, by_id, score)
            summary[name] = quality.mean_or_none(values)
            counts[f"unscored_{aspect}"] = sum(value is None for value in values)
    scores.save()
    return summary, counts, signatures


def evaluate_subtitles(config: SubtitleEvalConfig, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Translate every document, check the line format, score it, and write the result files.

    Args:
        config: The settings.
        on_batch: Called after each decoded batch with the number of documents decoded so far in this run.

    Returns:
        The results document (`trl_seqpo.evaluate.report`) with one run (the mode).

    Raises:
        UserInputError: Bad documents file, model path, settings, or an unreachable judge.
        MissingDependencyError: A requested metric or backend is not installed.
    """
    from trl_seqpo.evaluate.common import (
        check_metric_dependencies,
        metric_models,
        refuse_several_processes,
        run_environment,
    )
    from trl_seqpo.evaluate.metrics import check_judge_reachable
    from trl_seqpo.evaluate.report import write_results
    from trl_seqpo.rollout.loading import load_backend

    refuse_several_processes("trl-seqpo evaluate subtitles")
    documents = load_documents(config.documents)[: config.limit]
    if {"comet", "xcomet"} & set(config.metrics) and not any(d.target_lines for d in documents):
        raise UserInputError(
            "COMET needs reference translations: the documents have no target_lines", path=str(config.documents)
        )
    check_metric_dependencies(config.metrics)
    if "judge" in config.metrics:
        check_judge_reachable(config.judge)
    output_dir = Path(config.output_dir)
    run_dir = output_dir / config.mode
    settings = {
        "model": str(config.model),
        "documents": str(config.documents),
        "documents_file": file_fingerprint(config.documents),  # an edited file is not resumed under the same name
        "mode": config.mode,
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "max_new_tokens_per_line": config.max_new_tokens_per_line,
    }
    check_resume(run_dir, settings, config.resume)
    store = ResumableJsonl(run_dir / "hypotheses.jsonl", resume=config.resume, unique=True)
    generated = 0
    if any(document.doc_id not in store.done for document in documents):
        loaded = load_backend(config.model, config.backend, **config.engine_options())
        try:
            generated = _decode(documents, store, loaded, config, on_batch)
        finally:
            loaded.close()  # the engine's GPU memory is free before COMET loads
    rows = [store.rows[document.doc_id] for document in documents]
    summary, counts, signatures = _score(rows, run_dir, config)
    run = {
        "label": config.mode,
        "mode": config.mode,
        "dir": config.mode,
        "metrics": summary,
        "counts": counts,
        "generated": generated,
    }
    atomic_write_json(run_dir / "summary.json", run)
    results = {
        "task": "subtitles",
        "system": config.system_name or Path(config.model).name,
        "model": str(config.model),
        "data": str(config.documents),
        "settings": {"source_lang": config.source_lang, "target_lang": config.target_lang, "mode": config.mode},
        "signatures": signatures,
        "metric_models": metric_models(config),
        "environment": run_environment(config.backend, config.device),
        "runs": [run],
    }
    write_results(results, output_dir, show=True)
    return results
