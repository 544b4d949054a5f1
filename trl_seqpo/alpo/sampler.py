"""ALPO's segment-wise candidate sampling (alpo-subtitles.txt, Sec. 3.2, Algorithm 1).

For every document and every unit ``i`` (a line, or a *segment* of lines forming one sentence), the policy samples
``k`` candidate translations conditioned on the source document and the translations already chosen for the units
before ``i``; the candidates are de-duplicated, the human reference is added when there is one, an LLM judge scores
the set, and the unit's chosen translation is drawn at random from the 3 best; it becomes part of the prefix of unit
``i + 1``.

Batching: the documents of a batch advance **in lockstep**, unit index by unit index. For unit index ``i`` every
document's ``k`` rows go to the backend in one ``generate`` call (segment units take one more call per extra line, for
the rows still writing), then every document's unit ``i`` is judged in one concurrent judge call (the judge's own
semaphore bounds the requests in flight), because the prefix of unit ``i + 1`` depends on these scores. With vLLM's
prefix caching the shared document prompt of the ``k`` rows, and of the previous unit index, is not recomputed.

Stopping and parsing: a row stops at the first token that decodes to a newline (all such ids of the tokenizer, see
`newline_token_ids`) or at EOS. The line prompt ends at the newline after the previous line (`line_prompt`), as the
authors' code does, so the model writes the line's marker itself (``"12.text"``) and the output is read back with
`parse_numbered_output`. Ending the prompt inside the line (after ``"12."``) would let a byte-level pre-tokenizer
(Qwen2's) glue the marker's dot to what starts the line (``."``, ``..``), so the line would tokenize one way when
sampled and another way when trained. A candidate is dropped and counted when a line
is missing or empty, or when the token budget ran out before the newline (``unterminated``).

Segment rule (our reading of the authors' code, where the preference unit is a sentence): starting at a line,
lines are joined until one ends with sentence-final punctuation (``. ! ? …`` and the CJK full-width forms, optionally
followed by closing quotes or brackets), the document ends, or the segment holds ``max_segment_lines`` lines.

Determinism: the sampling seed of each backend call is derived from ``seed``, the ids of the documents of the batch,
the unit index and the sub-step; the prefix choice of each (document, unit) from ``seed``, the document id and the
unit index. The same documents in the same batches therefore give the same records, which is what lets
``trl-seqpo alpo sample`` resume a killed run and reproduce the uninterrupted one.

Deviations: sampling defaults follow the authors' code (temperature 0.7, top_p 0.9, top_k 40), the paper's Table 9
lists temperature 1.0.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from trl_seqpo.alpo.records import Candidate, CandidateRecord
from trl_seqpo.alpo.segments import UNITS, derive_seed, document_batches, segment_line_ids
from trl_seqpo.counts import Counts
from trl_seqpo.errors import check_at_least
from trl_seqpo.rollout.engine import GenerationBackend, GenerationParams
from trl_seqpo.rollout.linewise import LineDecoder, LineRow, any_rank, line_prompt, newline_token_ids
from trl_seqpo.subtitles.documents import Document, render_document_prompt

__all__ = [
    "SamplerStats",
    "SegmentwiseConfig",
    "SegmentwiseSampler",
    "document_batches",
    "line_prompt",
    "newline_token_ids",
    "segment_line_ids",
]

logger = logging.getLogger(__name__)


class Judge(Protocol):
    """What the sampler needs of a judge (`LLMJudge` is one)."""

    def score_lines(self, requests: Sequence[Any], *, raise_if_unreachable: bool = False) -> list[Any]: ...


@dataclass
class SegmentwiseConfig:
    """Settings of `SegmentwiseSampler` (ALPO Alg. 1, Table 9; authors' code for the sampling values).

    Parameters:
        source_language, target_language (`str`): Language codes or names written into the document prompt; use the
            ones the SFT model was trained with (``render_document_prompt``).
        num_candidates (`int`): ``k`` samples per unit (paper: 15).
        unit (`str`): ``"line"`` (the paper) or ``"segment"`` (a run of lines forming one sentence, as in the
            authors' code); see `segment_line_ids`.
        max_segment_lines (`int`): Most lines in one segment.
        temperature, top_p, top_k: Sampling values (authors' code: 0.7, 0.9, 40; paper Table 9: temperature 1.0).
        max_new_tokens (`int`): Token budget of one line; a row that spends it before its newline is dropped.
        stop_token_ids (`tuple[int, ...]`): Extra ids that end a row (besides newline ids and the tokenizer's EOS),
            e.g. the ids of the model's ``generation_config.eos_token_id``.
        add_reference (`bool`): Add the human reference to the candidate set when the document has one (Alg. 1, l. 7).
        chosen_top_k (`int`): The prefix translation is drawn from this many best-scored candidates (paper: 3).
        context_window (`int`): Source lines shown to the judge on each side of the unit (App. F.2 shows 2).
        judge_min_candidates (`int`): Units with fewer distinct candidates are not sent to the judge (their scores
            stay null). The default 4 skips the units the pair gate drops anyway (``|T_i| <= 3``) and saves their
            cost; 1 judges everything, as the paper does.
        judge_min_votes (`int`, *optional*): Valid votes a judged unit needs (its record's ``votes_needed``); the
            default, every vote asked for but one, lets a unit with one persistently invalid vote count as judged.
        raise_if_unreachable (`bool`): Let `JudgeUnreachableError` through when every
            judge request of a unit index fails to reach the endpoint (the CLI stops instead of writing failed units);
            any other judge failure only marks the units ``judge_failed``.
        documents_per_batch (`int`): Documents advanced in lockstep by `SegmentwiseSampler.sample`.
        seed (`int`): Seed of sampling and of the prefix choices.
    """

    source_language: str = "en"
    target_language: str = "zh"
    num_candidates: int = 15
    unit: Literal["line", "segment"] = "line"
    max_segment_lines: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    max_new_tokens: int = 128
    stop_token_ids: tuple[int, ...] = ()
    add_reference: bool = True
    chosen_top_k: int = 3
    context_window: int = 2
    judge_min_candidates: int = 4
    judge_min_votes: int | None = None
    raise_if_unreachable: bool = False
    documents_per_batch: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        check_at_least(
            self, 1, "num_candidates", "max_segment_lines", "max_new_tokens", "chosen_top_k", "documents_per_batch"
        )
        if self.context_window < 0 or self.judge_min_candidates < 0:
            raise ValueError("context_window and judge_min_candidates must be >= 0")
        self.stop_token_ids = tuple(int(i) for i in self.stop_token_ids)
        # validates temperature / top_p / max_new_tokens once, with GenerationParams' own messages
        self.generation_params(seed=None)

    def generation_params(self, seed: int | None, stop_token_ids: Sequence[int] = ()) -> GenerationParams:
        """The `GenerationParams` of one backend call."""
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop_token_ids=tuple(stop_token_ids),
            seed=seed,
        )


@dataclass
class SamplerStats(Counts):
    """Counters of a sampler's lifetime (how much was generated, dropped and judged; they add up with ``+``)."""

    documents: int = 0
    units: int = 0
    backend_calls: int = 0
    rows: int = 0
    dropped_unparsable: int = 0
    dropped_unterminated: int = 0
    duplicates: int = 0
    references_added: int = 0
    judged_units: int = 0
    judge_failed_units: int = 0
    empty_units: int = 0

    @property
    def dropped(self) -> int:
        """Candidates dropped because they could not be read back."""
        return self.dropped_unparsable + self.dropped_unterminated

    def summary(self) -> str:
        """One human-readable line."""
        return (
            f"{self.documents} documents, {self.units} units, {self.rows} samples in {self.backend_calls} backend "
            f"calls; dropped {self.dropped} ({self.dropped_unterminated} unterminated), {self.duplicates} duplicates, "
            f"{self.references_added} references added; judge failed for {self.judge_failed_units} of "
            f"{self.judged_units} judged units"
        )


@dataclass
class _DocState:
    document: Document
    units: list[list[int]]
    prompt: str
    prefix: list[str] = field(default_factory=list)
    records: list[CandidateRecord] = field(default_factory=list)
    reference_units: set[int] = field(default_factory=set)


class SegmentwiseSampler:
    """ALPO Algorithm 1 over a `GenerationBackend` and an LLM judge.

    Args:
        backend: ``HFGenerationBackend`` or ``VLLMGenerationBackend`` (anything with ``generate(prompts, params)``).
        tokenizer: The policy's tokenizer (prompts are encoded without special tokens, as TRL's DPO does).
        config: Sampling settings.
        judge: An `LLMJudge` (or anything with ``score_lines``); ``None`` leaves
            every score null and draws the prefix at random (useful for timing the sampling alone).

    Examples:
        >>> backend = HFGenerationBackend(model, tok)  # doctest: +SKIP
        >>> sampler = SegmentwiseSampler(backend, tok, SegmentwiseConfig(), judge)  # doctest: +SKIP
        >>> records = sampler.sample(documents)  # one list of unit records per document  # doctest: +SKIP
    """

    def __init__(
        self,
        backend: GenerationBackend,
        tokenizer: Any,
        config: SegmentwiseConfig | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config or SegmentwiseConfig()
        self.judge = judge
        self.stats = SamplerStats()
        self.decoder = LineDecoder(backend, tokenizer, self.config.stop_token_ids)
        self.newline_ids, self.end_ids = self.decoder.newline_ids, self.decoder.end_ids
        self.stop_ids = self.decoder.stop_ids

    # ------------------------------------------------------------------ public API
    def sample(self, documents: Sequence[Document]) -> list[list[CandidateRecord]]:
        """Run Alg. 1 on every document, ``config.documents_per_batch`` documents in lockstep at a time.

        Args:
            documents: The documents.

        Returns:
            One list of unit records per document, in input order.
        """
        by_id: dict[int, list[CandidateRecord]] = {}
        for batch in document_batches(documents, self.config.documents_per_batch):
            for document, records in self.sample_batch(batch):
                by_id[id(document)] = records
        return [by_id[id(document)] for document in documents]

    def sample_batch(self, documents: Sequence[Document]) -> Iterator[tuple[Document, list[CandidateRecord]]]:
        """Advance ``documents`` in lockstep, yielding each document with its records as soon as it is finished.

        Each record is one unit, a `CandidateRecord`.

        Args:
            documents: The documents of one lockstep batch (their ids seed the sampling).

        Yields:
            ``(document, records)`` in order of completion (documents with fewer units finish first; ties in input
            order).
        """
        config = self.config
        states = []
        for document in documents:
            if not document.source_lines:
                raise ValueError(f"document {document.doc_id!r} has no source lines")
            units = segment_line_ids(document.source_lines, config.unit, config.max_segment_lines)
            prompt = render_document_prompt(document, config.source_language, config.target_language)
            states.append(_DocState(document, units, prompt))
        batch_key = tuple(document.doc_id for document in documents)
        num_units = max((len(state.units) for state in states), default=0)
        for unit_index in itertools.count():
            # in lockstep (ZeRO-3/FSDP, `HFGenerationBackend.any_rank`) a process out of units samples nothing until
            # every process is done, so all make the same generate calls
            if not any_rank(self.backend, unit_index < num_units):
                break
            active = [state for state in states if unit_index < len(state.units)]
            candidates = self._sample_unit(active, unit_index, batch_key)
            error: Exception | None = None
            try:
                results = self._judge_unit(active, unit_index, candidates)
            except Exception as exc:  # noqa: BLE001 - re-raised below, once every process knows
                error = exc
            # in lockstep a process stopped by its judge stops the others too, rather than leave them waiting
            if any_rank(self.backend, error is not None):
                if error is not None:
                    raise error
                raise RuntimeError(f"another process stopped at unit index {unit_index} (see its error)")
            for state, texts, result in zip(active, candidates, results):
                self._finish_unit(state, unit_index, texts, result)
            for state in active:
                if unit_index == len(state.units) - 1:
                    self.stats.documents += 1
                    yield state.document, state.records

    # ------------------------------------------------------------------ sampling
    def _sample_unit(
        self, active: list[_DocState], unit_index: int, batch_key: tuple[str, ...]
    ) -> list[tuple[list[str], int]]:
        """Sample ``k`` rows per document for unit ``unit_index``; returns (distinct texts, dropped) per document."""
        config = self.config
        rows: list[tuple[int, LineRow]] = []
        for position, state in enumerate(active):
            prompt_ids = self.decoder.line_prompt_ids(state.prompt, state.prefix)
            lines = len(state.units[unit_index])
            rows.extend((position, LineRow(list(prompt_ids), lines)) for _ in range(config.num_candidates))
        calls = self.decoder.calls

        def params(step: int) -> GenerationParams:
            return config.generation_params(derive_seed(config.seed, batch_key, unit_index, step), self.stop_ids)

        self.decoder.write([row for _, row in rows], params)
        self.stats.backend_calls += self.decoder.calls - calls
        self.stats.rows += len(rows)
        per_doc: list[tuple[list[str], int]] = []
        for position, state in enumerate(active):
            line_ids = state.units[unit_index]
            texts: list[str] = []
            dropped = 0
            for row in (row for doc, row in rows if doc == position):
                text = self._read_candidate(row, line_ids)
                if text is None:
                    dropped += 1
                elif text in texts:
                    self.stats.duplicates += 1
                else:
                    texts.append(text)
            per_doc.append((texts, dropped))
        return per_doc

    def _read_candidate(self, row: LineRow, line_ids: list[int]) -> str | None:
        """The unit's lines joined by ``"\\n"``, or ``None`` (counted) when they cannot be read back."""
        if row.unterminated:
            self.stats.dropped_unterminated += 1
            return None
        lines = self.decoder.read(row, line_ids[0] + 1)
        if lines is None:
            self.stats.dropped_unparsable += 1
            return None
        return "\n".join(lines)

    # ------------------------------------------------------------------ judging and the prefix choice
    def _judge_unit(
        self, active: list[_DocState], unit_index: int, candidates: list[tuple[list[str], int]]
    ) -> list[Any]:
        """Judge every document's unit ``unit_index`` in one concurrent call; ``None`` where nothing was asked."""
        from trl_seqpo.judge.prompts import JudgeRequest

        requests, positions = [], []
        for position, (state, (texts, _)) in enumerate(zip(active, candidates)):
            self._add_reference(state, unit_index, texts)
            if self.judge is None or len(texts) < max(1, self.config.judge_min_candidates):
                continue
            line_ids = state.units[unit_index]
            lines = state.document.source_lines
            window = self.config.context_window
            lo, hi = max(0, line_ids[0] - window), line_ids[-1] + 1 + window
            source = lines[line_ids[0]] if len(line_ids) == 1 else [lines[i] for i in line_ids]
            requests.append(
                JudgeRequest(
                    source=source,
                    candidates=list(texts),
                    context_before=list(lines[lo : line_ids[0]]),
                    context_after=list(lines[line_ids[-1] + 1 : hi]),
                    target_context_before=list(state.prefix[lo : line_ids[0]]),
                )
            )
            positions.append(position)
        results: list[Any] = [None] * len(active)
        if not requests:
            return results
        self.stats.judged_units += len(requests)
        try:
            answers = self.judge.score_lines(requests, raise_if_unreachable=self.config.raise_if_unreachable)
        except Exception as error:  # a judge problem gates these units out; a configuration error stops sampling
            from trl_seqpo.errors import UserInputError
            from trl_seqpo.judge.client import JudgeRequestError

            if isinstance(error, JudgeRequestError) or (
                self.config.raise_if_unreachable and isinstance(error, UserInputError)
            ):
                raise
            logger.warning("judge call for unit index %d failed: %s", unit_index, error)
            answers = [_FailedResult(f"judge call failed: {type(error).__name__}: {error}")] * len(requests)
        for position, answer in zip(positions, answers):
            results[position] = answer
        return results

    def _add_reference(self, state: _DocState, unit_index: int, texts: list[str]) -> None:
        """Alg. 1, line 7: the human reference joins the de-duplicated candidates (appended last)."""
        targets = state.document.target_lines
        if not self.config.add_reference or targets is None:
            return
        reference = "\n".join(" ".join(targets[i].split()) for i in state.units[unit_index])
        if all(line.strip() for line in reference.split("\n")) and reference not in texts:
            texts.append(reference)
            self.stats.references_added += 1
            state.reference_units.add(unit_index)

    def _finish_unit(self, state: _DocState, unit_index: int, sampled: tuple[list[str], int], result: Any) -> None:
        """Write the unit's record and extend the prefix with its chosen translation (Alg. 1, line 9)."""
        texts, dropped = sampled
        config = self.config
        document = state.document
        line_ids = state.units[unit_index]
        has_reference = unit_index in state.reference_units
        scores = getattr(result, "scores", None) if result is not None else None
        judge_failed = result is not None and scores is None
        rng = random.Random(f"{config.seed}:{document.doc_id}:{unit_index}")
        if not texts:
            chosen = None
            self.stats.empty_units += 1
        elif scores is not None:
            ranked = sorted(range(len(texts)), key=lambda i: (-scores[i], len(texts[i]), i))
            chosen = rng.choice(ranked[: config.chosen_top_k])
        else:  # judge failed, skipped or absent: any candidate (the reference among them)
            chosen = rng.randrange(len(texts))
        if judge_failed:
            self.stats.judge_failed_units += 1
        num_policy = len(texts) - has_reference
        targets = document.target_lines
        requested = None
        if result is not None:
            requested = len(getattr(result, "votes", None) or []) or getattr(
                getattr(self.judge, "config", None), "num_shuffles", None
            )
        record = CandidateRecord(
            doc_id=document.doc_id,
            unit_index=unit_index,
            line_ids=list(line_ids),
            source="\n".join(document.source_lines[i] for i in line_ids),
            reference=None if targets is None else "\n".join(targets[i] for i in line_ids),
            document_prompt=state.prompt,
            prefix=list(state.prefix),
            candidates=[
                Candidate(
                    text=text,
                    origin="reference" if has_reference and i == len(texts) - 1 else "policy",
                    score=None if scores is None else float(scores[i]),
                )
                for i, text in enumerate(texts)
            ],
            judge_failed=judge_failed,
            unit=config.unit,
            num_units=len(state.units),
            chosen_index=chosen,
            num_samples=config.num_candidates,
            num_distinct=num_policy,
            num_dropped=dropped,
            votes=getattr(result, "num_valid_votes", None) if result is not None else None,
            votes_requested=requested,
            votes_needed=None
            if requested is None
            else min(requested, config.judge_min_votes or max(1, requested - 1)),
            judge_error=getattr(result, "failed_reason", None) if result is not None else None,
        )
        state.records.append(record)
        self.stats.units += 1
        # a unit with no readable candidate (and no reference) keeps its source lines in the prefix: every later
        # prompt stays in the numbered format ("3.text"), never a bare "3." line
        sources = [document.source_lines[i] for i in line_ids]
        chosen_lines = sources if chosen is None else texts[chosen].split("\n")
        state.prefix.extend(chosen_lines)


@dataclass
class _FailedResult:
    """Stands in for a judge result when the judge call itself raised."""

    failed_reason: str
    scores: None = None
    num_valid_votes: int = 0


def _votes_needed(requested: int | None, minimum: int | None) -> int | None:
    """Valid votes a judged unit needs: ``minimum``, or every vote asked for but one (at least one)."""
    if requested is None:
        return None
    return min(requested, minimum if minimum is not None else max(1, requested - 1))
