"""ALPO's candidate sampling as a resumable job (Alg. 1 over a rollout backend and the LLM judge).

`sample_candidates` reads the documents, samples and judges ``num_candidates`` candidates per unit with
`trl_seqpo.alpo.sampler.SegmentwiseSampler`, and appends one `CandidateRecord` per unit to the output as each
document finishes (flushed and synced). ``trl-seqpo alpo sample`` and the demo call it.

What a resumed run does (same command again):

- it refuses to touch an existing output that has no settings file beside it (``OUTPUT.run.json``, written by the
  first run): the file is not this command's own output;
- it refuses, naming the option, when any setting that changes the output differs from the first run's;
- it keeps the complete, fully judged documents and re-does the rest: a line cut by a kill, a document with missing
  units, and a document with a unit whose judge failed or returned fewer valid votes than asked. The judge's cache
  answers every vote that was validated before, so nothing already paid for is asked again;
- when every document is complete, the file is rewritten (atomically) in input order, so an interrupted and resumed
  run ends byte-identical to an uninterrupted one.

Under `accelerate launch` / `torchrun` (`--backend hf`) the processes split the batches and each writes its own part
file, which rank 0 merges into the output (`trl_seqpo.alpo.parts`); a resumed run first merges the parts a killed run
left, whatever its number of processes.

A run that leaves units without their votes reports them (`SampleReport.unjudged_units`); the CLI exits 1 with the
count, and the next run re-judges them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trl_seqpo.alpo.parts import assign_batches, merge_parts, part_path
from trl_seqpo.alpo.records import CandidateRecord
from trl_seqpo.alpo.sampler import SamplerStats
from trl_seqpo.counts import Counts, sum_counts
from trl_seqpo.errors import UserInputError, check_at_least, check_output_path
from trl_seqpo.jsonl import ResumableJsonl, atomic_write, atomic_write_json, parse_json_lines
from trl_seqpo.judge.client import JudgeStats
from trl_seqpo.judge.config import JudgeConfig, judge_option

__all__ = [
    "AlpoSampleConfig",
    "RESUME_JUDGE_SETTINGS",
    "RESUME_SETTINGS",
    "SampleReport",
    "read_candidates",
    "sample_candidates",
]

COMMAND = "trl-seqpo alpo sample"


def _help(text: str, **extra: Any) -> Any:
    return field(metadata={"help": text}, **extra)


@dataclass
class AlpoSampleConfig:
    """Settings of `sample_candidates` (ALPO Alg. 1, Table 9; sampling values from the authors' code).

    Every field is a flag of ``trl-seqpo alpo sample`` (``num_candidates`` -> ``--num-candidates``); the fields of
    ``judge`` are its ``--judge-*`` flags (`trl_seqpo.cli.judge_options`).
    """

    documents: str = _help("documents .jsonl from `trl-seqpo subtitles documents`", default="")
    output: str = _help("candidates .jsonl (appended, resumable; settings in OUTPUT.run.json)", default="")
    model: str = _help("the SFT policy: a local checkpoint directory", default="")
    source_lang: str = _help("source language, as used for SFT (e.g. en)", default="en")
    target_lang: str = _help("target language, as used for SFT (e.g. zh)", default="zh")
    backend: Literal["hf", "vllm"] = _help("generation backend", default="hf")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _help("torch dtype of the model", default="auto")
    max_batch_size: int | None = _help("hf backend: rows per generate call (default: all)", default=None)
    num_candidates: int = _help("candidates sampled per unit (paper: 15)", default=15)
    unit: Literal["line", "segment"] = _help("preference unit", default="line")
    max_segment_lines: int = _help("most lines in one segment", default=4)
    temperature: float = _help("sampling temperature (authors' code 0.7, paper Table 9: 1.0)", default=0.7)
    top_p: float = _help("nucleus sampling", default=0.9)
    top_k: int = _help("top-k sampling", default=40)
    max_new_tokens: int = _help("token budget of one line", default=128)
    seed: int = _help("seed of sampling, prefix choices and judge votes", default=0)
    documents_per_batch: int = _help("documents sampled in lockstep", default=8)
    add_reference: bool = _help("add the reference translation as a candidate (Alg. 1, line 7)", default=True)
    context_window: int = _help("source lines shown to the judge on each side", default=2)
    judge_min_candidates: int = _help(
        "judge only units with at least this many distinct candidates (4: skip what the pair gate drops)", default=4
    )
    judge_min_votes: int | None = _help(
        "valid votes a unit needs to count as judged (default: all but one); fewer: judged again next run",
        default=None,
    )
    judge: JudgeConfig = _help(
        "the judge (`--judge-*` flags); its seed, languages and cache come from seed, source_lang, target_lang and "
        "cache",
        default_factory=JudgeConfig,
    )
    cache: str | None = _help("judge sqlite cache (default: OUTPUT.judge-cache.sqlite)", default=None)

    def __post_init__(self) -> None:
        check_at_least(self, 1, "num_candidates", "documents_per_batch", "max_new_tokens")
        if not isinstance(self.judge, JudgeConfig):
            raise TypeError(f"judge must be a JudgeConfig, got {type(self.judge).__name__}")
        shuffles = self.judge.num_shuffles
        if self.judge_min_votes is not None and not 1 <= self.judge_min_votes <= shuffles:
            raise UserInputError(
                f"--judge-min-votes must be between 1 and --judge-num-shuffles ({shuffles}), got "
                f"{self.judge_min_votes}"
            )

    def cache_path(self) -> Path:
        """The judge cache file."""
        if self.cache:
            return Path(self.cache)
        output = Path(self.output)
        return output.with_name(output.name.removesuffix(".jsonl") + ".judge-cache.sqlite")

    def settings_path(self) -> Path:
        """The file beside the output that records this run's settings (what makes the output resumable)."""
        output = Path(self.output)
        return output.with_name(output.name.removesuffix(".jsonl") + ".run.json")


# the fields that change the output: a resumed run must use the same values
RESUME_SETTINGS: tuple[str, ...] = (
    "model", "source_lang", "target_lang", "backend", "dtype", "max_batch_size", "num_candidates", "unit",
    "max_segment_lines", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "documents_per_batch",
    "add_reference", "context_window", "judge_min_candidates",
)  # fmt: skip
# the judge's (`JudgeConfig` fields), recorded under their option name (`judge_option`: judge_model, judge_seed, ...)
RESUME_JUDGE_SETTINGS: tuple[str, ...] = (
    "model", "aspect", "num_shuffles", "temperature", "max_tokens", "extra_body", "send_seed",
)  # fmt: skip


@dataclass
class SampleReport(Counts):
    """What a `sample_candidates` call did; under `accelerate launch`, the whole job's counts on every process.

    Args:
        documents: Documents in the input.
        skipped: Documents already in the output when the call started.
        written: Documents this call wrote.
        units: Units (lines or segments) in the written documents.
        sampler: The sampler's counters (generated, dropped, judged).
        judge: The judge's counters (HTTP requests, cache hits, rejected answers).
        unjudged_units: Units left without enough valid judge votes (run again to re-judge them).
        unjudged_documents: Written documents holding such a unit.
        processes: Processes that ran the job.
        main_process: Whether this process reports (prints) the job's counts.
    """

    documents: int = 0
    skipped: int = 0
    written: int = 0
    units: int = 0
    sampler: SamplerStats = field(default_factory=SamplerStats)
    judge: JudgeStats = field(default_factory=JudgeStats)
    unjudged_units: int = 0
    unjudged_documents: int = 0
    processes: int = 1
    main_process: bool = True

    def summary(self, output: str) -> str:
        """One human-readable line."""
        processes = f" ({self.processes} processes)" if self.processes > 1 else ""
        return (
            f"wrote {self.written} documents to {output} ({self.skipped} were already there); "
            f"{self.sampler.summary()}{processes}; "
            f"judge: {self.judge.http_requests} HTTP requests, {self.judge.cache_hits} cache hits"
        )


def _settings(config: AlpoSampleConfig, digest: str) -> dict[str, Any]:
    values = {name: getattr(config, name) for name in RESUME_SETTINGS}
    values.update({judge_option(name): getattr(config.judge, name) for name in RESUME_JUDGE_SETTINGS})
    return {"command": COMMAND, "documents_sha256": digest, "settings": values}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_settings(path: Path, current: dict[str, Any], output: Path) -> None:
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"unreadable settings of an earlier run ({exc}); write to a new output"
        raise UserInputError(message, path=str(path)) from None
    if not isinstance(previous, dict) or previous.get("command") != COMMAND:
        raise UserInputError(f"not the settings of `{COMMAND}`; write to a new output", path=str(path))
    old = previous.get("settings") or {}
    for name, value in current["settings"].items():
        if name == "judge_extra_body" and isinstance(old.get(name), str):  # earlier runs recorded the JSON text
            old[name] = _json_or_text(old[name])
        if name in old and old[name] != value:
            raise UserInputError(
                f"{_flag(name)} is {value!r} but {output} was written with {old[name]!r}; resume with the same "
                "options or write to a new output",
                path=str(output),
            )
    if previous.get("documents_sha256") != current["documents_sha256"]:
        raise UserInputError(
            "the documents file changed since this output was started; resume with the same documents or write "
            "to a new output",
            path=str(output),
        )


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_candidates(path: str | os.PathLike[str], text: str | None = None) -> list[tuple[int, str, CandidateRecord]]:
    """Parse a candidates file into ``(line number, line, record)``; the text after the last newline is ignored.

    Raises:
        UserInputError: Not UTF-8, a line that is not JSON, or a record with a missing or mistyped field
            (file, line and field named).
    """
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            message = "not UTF-8 text; not a candidates file of `trl-seqpo alpo sample`"
            raise UserInputError(message, path=str(path)) from None
    lines = text.split("\n")[:-1]  # the part after the last newline was cut short by a kill
    parsed = []
    hint = f"not a candidates file of `{COMMAND}`?"
    for number, value in parse_json_lines(lines, path, hint=hint):
        try:
            parsed.append((number, lines[number - 1], CandidateRecord.from_dict(value)))
        except ValueError as exc:
            raise UserInputError(str(exc), path=str(path), line=number) from None
    return parsed


def _complete(records: Sequence[CandidateRecord]) -> bool:
    indices = {record.unit_index for record in records}
    expected = records[0].num_units
    judged = all(not record.judge_failed and not record.under_voted for record in records)
    return indices == set(range(expected)) and judged


def _check_output(config: AlpoSampleConfig, digest: str) -> dict[str, Any]:
    """Refuse an output this run must not touch (read-only, so every process can check); return the settings."""
    output, settings_path = Path(config.output), config.settings_path()
    current = _settings(config, digest)
    if output.exists() and not settings_path.exists():
        raise UserInputError(
            f"exists and is not a resumable output of `{COMMAND}` (no {settings_path.name} beside it); "
            "choose a new output path",
            path=str(output),
        )
    if settings_path.exists():
        _check_settings(settings_path, current, output)
    for _, _, record in read_candidates(output) if output.exists() else []:
        if record.unit != config.unit:
            raise UserInputError(f"written with --unit {record.unit}; resume with the same options", path=str(output))
    return current


def _complete_rows(rows: list[dict[str, Any]]) -> bool:
    return _complete([CandidateRecord.from_dict(row) for row in rows])


def _prepare_output(config: AlpoSampleConfig, settings: dict[str, Any]) -> ResumableJsonl:
    """Record the settings and resume the output, merging the part files a killed multi-process run left."""
    atomic_write_json(config.settings_path(), settings)
    # drops a line cut by a kill and the documents to re-do (unfinished or under-voted), all or nothing
    store = ResumableJsonl(Path(config.output), resume=True, key="doc_id", complete=_complete_rows)
    merge_parts(store, complete=_complete_rows)
    return store


def build_judge(config: AlpoSampleConfig) -> Any:
    """The `LLMJudge` of a sampling run: ``config.judge`` with the run's seed, languages and cache (beside OUTPUT)."""
    from trl_seqpo.judge.client import LLMJudge
    from trl_seqpo.languages import language_name

    judge_config = dataclasses.replace(
        config.judge,
        source_language=language_name(config.source_lang),
        target_language=language_name(config.target_lang),
        seed=config.seed,
        cache_path=str(config.cache_path()),
    )
    return LLMJudge(judge_config)


def sample_candidates(
    config: AlpoSampleConfig,
    *,
    backend: Any = None,
    tokenizer: Any = None,
    stop_token_ids: Sequence[int] = (),
    judge: Any = None,
    progress: bool | None = None,
) -> SampleReport:
    """Run (or resume) ALPO's Alg. 1 over ``config.documents`` into ``config.output``.

    Args:
        config: The settings.
        backend, tokenizer, stop_token_ids: A ready generation backend; ``None`` loads ``config.model``.
        judge: A ready judge; ``None`` builds the `LLMJudge` of ``config``.
        progress: Show a progress bar (``None``: when stderr is a terminal).

    Returns:
        A `SampleReport`; ``unjudged_units > 0`` means some units have no or too few valid votes (run again).

    Raises:
        UserInputError: Bad documents, an output that is an input or not this command's own, a setting that differs
            from the run being resumed, a corrupt candidates file or cache, an unreachable or refusing judge.
    """
    from trl_seqpo.alpo.sampler import SegmentwiseConfig, SegmentwiseSampler
    from trl_seqpo.rollout.processes import current_processes, launched_processes
    from trl_seqpo.subtitles.documents import read_documents

    check_output_path(config.output, config.documents, config.cache, config.model or None)
    check_output_path(config.cache_path(), config.documents, config.output)
    check_output_path(config.settings_path(), config.documents)
    documents = read_documents(config.documents)
    digest = hashlib.sha256(Path(config.documents).read_bytes()).hexdigest()
    sampler_config = SegmentwiseConfig(
        **{name: getattr(config, name) for name in ("num_candidates", "unit", "max_segment_lines", "temperature")},
        **{name: getattr(config, name) for name in ("top_p", "top_k", "max_new_tokens", "add_reference", "seed")},
        source_language=config.source_lang,
        target_language=config.target_lang,
        context_window=config.context_window,
        judge_min_candidates=config.judge_min_candidates,
        judge_min_votes=config.judge_min_votes,
        raise_if_unreachable=True,
        documents_per_batch=config.documents_per_batch,
    )
    if backend is None and config.backend == "vllm" and launched_processes() > 1:
        raise UserInputError(
            "--backend vllm runs in one process (the engine batches every document itself; split a large model with "
            "tensor parallelism there); several processes need --backend hf"
        )
    processes = current_processes()
    settings = _check_output(config, digest)  # every process checks, so all stop on a bad option
    processes.gather(None)  # and none writes before all have read
    opened: list[ResumableJsonl] = []  # the output, on the main process only

    def open_output() -> list[str]:
        opened.append(_prepare_output(config, settings))
        return sorted(opened[0].done)

    # the main process writes the settings and merges what a killed run left; every process learns what is done
    done = set(processes.on_main(open_output))
    report = SampleReport(documents=len(documents), skipped=sum(d.doc_id in done for d in documents))
    report.main_process = processes.is_main
    if report.skipped == len(documents):
        if opened:
            _write_in_input_order(opened[0], documents)
        return report
    # one process appends to the output; several each append to their own part, merged below
    store = (
        opened[0] if processes.count == 1 else ResumableJsonl(part_path(config.output, processes.index), key="doc_id")
    )
    own_judge = judge is None
    judge = build_judge(config) if judge is None else judge
    loaded = None
    try:
        if backend is None:
            from transformers.utils import logging as transformers_logging

            from trl_seqpo.rollout.loading import load_backend

            transformers_logging.disable_progress_bar()  # the job has its own progress bar
            loaded = load_backend(config.model, config.backend, dtype=config.dtype, seed=config.seed,
                                  max_batch_size=config.max_batch_size, device=processes.device)  # fmt: skip
            backend, tokenizer, stop_token_ids = loaded.backend, loaded.tokenizer, loaded.stop_token_ids
        sampler_config.stop_token_ids = tuple(stop_token_ids)
        sampler = SegmentwiseSampler(backend, tokenizer, sampler_config, judge)
        _run(sampler, documents, done, store, report, progress, processes)
    finally:
        if own_judge:
            judge.close()
        if loaded is not None:
            loaded.close()
    report.sampler = sampler.stats
    stats = getattr(judge, "stats", None)  # an injected judge may keep no counters
    report.judge = dataclasses.replace(stats) if isinstance(stats, JudgeStats) else JudgeStats()
    if processes.count > 1:
        report = _combine(processes.gather(report), processes.is_main)
        processes.on_main(lambda: merge_parts(opened[0]))  # every whole document, judged or not
    if report.unjudged_units == 0 and opened:
        _write_in_input_order(opened[0], documents)
    return report


def _run(sampler, documents, done: set[str], store: ResumableJsonl, report: SampleReport, progress, processes) -> None:
    from tqdm.auto import tqdm

    from trl_seqpo.alpo.sampler import document_batches

    # batches are cut from the full input so a resumed run samples each batch exactly as the first run did
    pending = [
        batch
        for batch in document_batches(documents, sampler.config.documents_per_batch)
        if not all(document.doc_id in done for document in batch)
    ]
    # the same number of batches on every process (empty ones at the end), so all stay in lockstep
    mine = assign_batches(pending, processes.index, processes.count)
    disable = (not sys.stderr.isatty() if progress is None else not progress) or not processes.is_main
    total = sum(document.doc_id not in done for batch in mine for document in batch)
    bar = tqdm(total=total, desc="alpo sample", unit="doc", disable=disable)
    try:
        for batch in mine:
            for document, records in sampler.sample_batch(batch):
                if document.doc_id in done:
                    continue
                store.append([record.to_dict() for record in records])  # flushed and synced
                report.written += 1
                report.units += len(records)
                missing = sum(record.judge_failed or record.under_voted for record in records)
                report.unjudged_units += missing
                report.unjudged_documents += missing > 0
                bar.update(1)
    finally:
        bar.close()


def _combine(reports: list[SampleReport], main_process: bool) -> SampleReport:
    """One `SampleReport` for the job: every process's counts added up (the input counts are the same on each)."""
    combined = sum_counts(reports)
    combined.documents, combined.skipped = reports[0].documents, reports[0].skipped
    combined.processes, combined.main_process = len(reports), main_process
    return combined


def _write_in_input_order(store: ResumableJsonl, documents: Sequence[Any]) -> None:
    """Rewrite the finished file in input order (an interrupted run appended documents in another order)."""
    text = "".join(
        json.dumps(row, ensure_ascii=False) + "\n"
        for document in documents
        for row in store.groups.get(document.doc_id, [])
    )
    if store.path.read_text(encoding="utf-8") != text:
        atomic_write(store.path, text)


def config_fields() -> list[str]:
    """The names of `AlpoSampleConfig`'s fields (the flags of ``alpo sample``; ``judge``'s are ``--judge-*``)."""
    return [f.name for f in dataclasses.fields(AlpoSampleConfig)]
