"""Build ALPO's line-level preference pairs from judged candidates (ALPO paper Sec. 3.3-3.4, Eq. 2-6).

Input: the `trl_seqpo.alpo.records.CandidateRecord`s the sampler writes, one per (document, unit) where a unit is one
line or a run of lines forming a sentence (a *segment*, as in the authors' code).

Output: one row per kept unit and prefix-mixing stage with ``prompt``, ``chosen``, ``rejected``, ``weight``
(``w(s_i)``, Eq. 2-3), ``beta_scale`` (``gap_i / max_j gap_j``, Eq. 5) and bookkeeping columns.

What follows the authors' public code (``CcQunResearch/ALPO``, ``MainPipeline/alpo_utils.py`` and
``MainPipeline/[6]construct_alpo_dataset.py``) where the paper is silent:

- gate: a unit is kept when it was judged at all (``not_judged`` otherwise), with the valid votes the sampler needed
  (``votes_needed``: every vote asked for but one by default; ``min_votes`` overrides it), has more than 3 distinct
  candidates, a score spread ``max - min`` above 5 and a positive gap between chosen and rejected;
- chosen: the translation the sampler fed forward as the next lines' prefix (``chosen_index``, drawn among the 3 best
  by Alg. 1), so one chosen translation per line is both the prefix and the preferred side of the loss, as in the
  paper; ``chosen_strategy="top_k"`` draws again among the 3 best (ties: the shorter text ranks higher), as the
  authors' pair script does; rejected: the third-lowest of the same ranking read from the bottom (ties: the longer
  text ranks lower), or the lowest other
  candidate if that is the chosen one;
- ``weight = n_candidates / sum of n_candidates over the document``, 0 for gated units; ``beta_scale = gap / max gap``
  over the kept units of the document;
- prefix mixing in 5 stages with ``lambda`` from 0.2 to 0.6: every kept unit is written once per stage, its previous
  lines being the chosen translation with probability ``lambda`` and a random candidate otherwise;
- a candidate completion is its text followed by ``"\\n"``; the trainer adds EOS only after a document's last unit.

Prompts and completions use `trl_seqpo.subtitles.documents.render_numbered_lines`, so a row's prompt + chosen is
exactly the text of the SFT format (``"1.text\\n2.text\\n"``, App. F.1). The prompt ends at the newline before the
line and the completion starts with the line's marker (``"12.text\\n"``), as in sampling, so a byte-level
pre-tokenizer splits the line the same way in both.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trl_seqpo.alpo.records import CandidateRecord
from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_write_json, atomic_write_jsonl, read_json_objects
from trl_seqpo.subtitles.documents import render_numbered_lines

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

GATE_REASONS: tuple[str, ...] = (
    "judge_failed",
    "too_few_votes",
    "not_judged",
    "missing_scores",
    "too_few_candidates",
    "small_spread",
    "non_positive_gap",
)
CHOSEN_STRATEGIES: tuple[str, ...] = ("sampler", "top_k", "best")
WEIGHT_DENOMINATORS: tuple[str, ...] = ("all", "kept")


@dataclass
class PairSettings:
    """How units are gated, paired, weighted and prefixed. Defaults follow Sec. 3.3-3.4 and the authors' code.

    Args:
        min_candidates: A unit needs *more* than this many distinct candidates (paper: ``|T_i| <= 3`` is gated).
        min_score_spread: A unit needs a score spread ``max - min`` *above* this (paper: ``<= 5`` is gated).
        min_votes: Valid judge votes a unit needs; ``None`` = what the sampler needed (``votes_needed`` of the record;
            every vote asked for on records without it).
        chosen_strategy: ``"sampler"``: the candidate the sampler chose as the next lines' prefix (the paper's one
            chosen translation per line; ``"top_k"`` for records without one); ``"top_k"``: drawn again at random
            among the ``chosen_top_k`` best (the authors' pair script); ``"best"``: always the best.
        chosen_top_k: How many of the best candidates the chosen one is drawn from.
        rejected_rank: Rank from the bottom of the rejected candidate (3 = third-lowest, Sec. 3.4).
        weight_denominator: ``"all"``: ``n_i / sum_j n_j`` over every unit of the document (Eq. 3, authors' code);
            ``"kept"``: over the kept units only, so each document's weights sum to 1.
        prefix_mix_start: ``lambda`` of the first stage (Eq. 6).
        prefix_mix_end: ``lambda`` of the last stage.
        prefix_mix_stages: Number of stages; ``0`` is continuous (one row per unit, ``lambda`` rising linearly with
            the row's position in a seeded training order).
        seed: Seed of every random choice (chosen candidate, prefix mixing, continuous order).
    """

    min_candidates: int = field(default=3, metadata={"help": "gate units with at most this many distinct candidates"})
    min_score_spread: float = field(default=5.0, metadata={"help": "gate units whose score spread is at most this"})
    min_votes: int | None = field(
        default=None, metadata={"help": "valid judge votes a unit needs (default: the sampler's minimum)"}
    )
    chosen_strategy: Literal["sampler", "top_k", "best"] = field(
        default="sampler",
        metadata={"help": "sampler: the prefix the sampler chose (paper); top_k: drawn again among the best; best"},
    )
    chosen_top_k: int = field(default=3, metadata={"help": "how many of the best candidates top_k draws from"})
    rejected_rank: int = field(default=3, metadata={"help": "rank from the bottom of the rejected candidate"})
    weight_denominator: Literal["all", "kept"] = field(
        default="all", metadata={"help": "all: n_i / sum over the document's units (Eq. 3); kept: kept units only"}
    )
    prefix_mix_start: float = field(default=0.2, metadata={"help": "lambda of the first prefix-mixing stage (Eq. 6)"})
    prefix_mix_end: float = field(default=0.6, metadata={"help": "lambda of the last stage"})
    prefix_mix_stages: int = field(default=5, metadata={"help": "stages of the lambda schedule; 0 = continuous"})
    seed: int = field(default=1024, metadata={"help": "seed of the chosen draw and the prefix mixing"})

    def __post_init__(self) -> None:
        if self.chosen_strategy not in CHOSEN_STRATEGIES:
            raise ValueError(f"chosen_strategy must be one of {CHOSEN_STRATEGIES}, got {self.chosen_strategy!r}")
        if self.weight_denominator not in WEIGHT_DENOMINATORS:
            raise ValueError(
                f"weight_denominator must be one of {WEIGHT_DENOMINATORS}, got {self.weight_denominator!r}"
            )
        if self.chosen_top_k < 1 or self.rejected_rank < 1:
            raise ValueError("chosen_top_k and rejected_rank are ranks: set them to 1 or more")
        if self.prefix_mix_stages < 0:
            raise ValueError("prefix_mix_stages must be >= 1 (stages) or 0 (continuous)")
        if self.min_candidates < 0 or not self.min_score_spread >= 0:  # also NaN
            name = "min_candidates" if self.min_candidates < 0 else "min_score_spread"
            raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_votes is not None and self.min_votes < 1:
            raise ValueError(f"min_votes must be >= 1 or None, got {self.min_votes}")
        for name in ("prefix_mix_start", "prefix_mix_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability; set it in [0, 1], got {getattr(self, name)}")

    def stage_lambdas(self) -> list[float]:
        """``lambda`` of each stage: evenly spaced from start to end (a single stage uses ``prefix_mix_end``)."""
        if self.prefix_mix_stages <= 1:
            return [self.prefix_mix_end]
        step = (self.prefix_mix_end - self.prefix_mix_start) / (self.prefix_mix_stages - 1)
        return [self.prefix_mix_start + step * i for i in range(self.prefix_mix_stages)]


@dataclass
class PairStats:
    """Counts of a pair build. ``gated`` maps each reason of `GATE_REASONS` to its number of units."""

    documents: int = 0
    units: int = 0
    kept: int = 0
    rows: int = 0
    duplicates: int = 0
    gated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GATE_REASONS, 0))

    @property
    def gated_fraction(self) -> float:
        """Fraction of units left out of training (0 when there are no units)."""
        return (self.units - self.kept) / self.units if self.units else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counts plus ``gated_fraction``, JSON-serialisable."""
        return {**asdict(self), "gated_fraction": self.gated_fraction}

    def summary(self) -> str:
        """One human-readable line."""
        reasons = ", ".join(f"{name} {count}" for name, count in self.gated.items() if count)
        return (
            f"{self.documents} documents, {self.units} units: kept {self.kept}, gated {self.units - self.kept}"
            f" ({self.gated_fraction:.1%}{': ' + reasons if reasons else ''}); {self.rows} pair rows"
        )


@dataclass
class _Unit:
    record: CandidateRecord
    texts: list[str]  # distinct candidate texts, first occurrence order
    scores: list[float | None]
    sampler_choice: int | None = None
    gate: str | None = None
    chosen: int = -1
    rejected: int = -1

    @property
    def line_ids(self) -> list[int]:
        return list(self.record.line_ids)

    @property
    def gap(self) -> float:
        return float(self.scores[self.chosen] - self.scores[self.rejected]) if self.gate is None else 0.0


def _distinct_candidates(record: CandidateRecord) -> tuple[list[str], list[float | None], int | None]:
    """Distinct texts (first occurrence order), their scores, and the index of the sampler's chosen text."""
    texts: list[str] = []
    scores: list[float | None] = []
    seen: dict[str, int] = {}
    for candidate in record.candidates:
        text, score = candidate.text.strip(), candidate.score
        if text in seen:  # keep the first copy; it takes a score from a later copy if it had none
            index = seen[text]
            scores[index] = scores[index] if scores[index] is not None else score
            continue
        seen[text] = len(texts)
        texts.append(text)
        scores.append(score)
    chosen = record.chosen_index
    sampler_choice = None
    if chosen is not None and 0 <= chosen < len(record.candidates):
        sampler_choice = seen[record.candidates[chosen].text.strip()]
    return texts, scores, sampler_choice


def _select(unit: _Unit, settings: PairSettings, rng: random.Random) -> None:
    """Apply the gate and pick chosen/rejected (Sec. 3.3-3.4; tie-breaking as in the authors' ``alpo_utils.py``)."""
    record, texts, scores = unit.record, unit.texts, unit.scores
    if record.judge_failed:
        unit.gate = "judge_failed"
        return
    needed = settings.min_votes if settings.min_votes is not None else record.needed_votes
    if needed is not None and record.votes is not None and record.votes < needed:
        unit.gate = "too_few_votes"
        return
    if record.votes is None and all(score is None for score in scores):  # never sent to the judge
        unit.gate = "not_judged"
        return
    if not scores or any(score is None for score in scores):
        unit.gate = "missing_scores"
        return
    if len(texts) <= settings.min_candidates:
        unit.gate = "too_few_candidates"
        return
    if max(scores) - min(scores) <= settings.min_score_spread:
        unit.gate = "small_spread"
        return
    indices = range(len(texts))
    # one ranking, read from both ends as the authors' code does: on equal scores the shorter text ranks higher, so
    # the longer one is the lower-ranked (rejected) side
    best_first = sorted(indices, key=lambda i: (-scores[i], len(texts[i]), i))
    worst_first = best_first[::-1]
    top_k = 1 if settings.chosen_strategy == "best" else min(settings.chosen_top_k, len(texts))
    draw = rng.choice(best_first[:top_k])  # drawn in every mode, so the random stream does not depend on the mode
    use_sampler = settings.chosen_strategy == "sampler" and unit.sampler_choice is not None
    unit.chosen = unit.sampler_choice if use_sampler else draw
    unit.rejected = worst_first[min(settings.rejected_rank, len(texts)) - 1]
    if unit.rejected == unit.chosen:
        unit.rejected = next(i for i in worst_first if i != unit.chosen)
    if unit.gap <= 0:
        unit.gate = "non_positive_gap"


def _split_lines(text: str, count: int) -> list[str] | None:
    """The unit's text as ``count`` lines, or None if it does not have that many."""
    if count == 1:
        return [text]
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return lines if len(lines) == count else None


def _completion(text: str, line_ids: Sequence[int]) -> str:
    """What the model writes after the prompt's last newline: the unit's numbered lines, newline-ended."""
    lines = _split_lines(text, len(line_ids)) or [" ".join(text.split())]
    return render_numbered_lines(lines, start=line_ids[0] + 1)


def _validate(record: CandidateRecord) -> CandidateRecord:
    if len(record.prefix) != record.line_ids[0]:
        raise UserInputError(
            f"candidate record (doc {record.doc_id!r}, unit {record.unit_index}): 'prefix' has {len(record.prefix)} "
            f"lines but the unit starts at line index {record.line_ids[0]}; the prefix must hold the chosen "
            "translation of every earlier line"
        )
    return record


def _group_documents(records: Iterable[Any], stats: PairStats) -> dict[str, list[CandidateRecord]]:
    documents: dict[str, dict[int, CandidateRecord]] = {}
    for position, raw in enumerate(records, start=1):
        try:
            record = raw if isinstance(raw, CandidateRecord) else CandidateRecord.from_dict(raw)
        except ValueError as exc:
            raise UserInputError(f"candidate record {position}: {exc}") from None
        _validate(record)
        units = documents.setdefault(record.doc_id, {})
        if record.unit_index in units:
            stats.duplicates += 1  # a unit written twice: the last copy wins
        units[record.unit_index] = record
    return {doc_id: [units[i] for i in sorted(units)] for doc_id, units in documents.items()}


def _prefix_choices(units: Sequence[_Unit], lam: float, rng: random.Random) -> list[list[str] | None]:
    """Per unit, the lines to put in later prompts: None = the chosen translation, else a random candidate (Eq. 6)."""
    choices: list[list[str] | None] = []
    for unit in units:
        if rng.random() < lam or not unit.texts:
            choices.append(None)
            continue
        lines = _split_lines(rng.choice(unit.texts), len(unit.line_ids))
        choices.append(lines)  # None when a segment candidate has the wrong line count: keep the chosen lines
    return choices


def _row(
    doc_id: str,
    units: Sequence[_Unit],
    position: int,
    choices: Sequence[list[str] | None],
    weight: float,
    beta_scale: float,
    stage: int,
    lam: float,
    last_unit: int,
) -> dict[str, Any]:
    unit = units[position]
    record = unit.record
    prefix = list(record.prefix)
    mixed = False
    for earlier, lines in zip(units[:position], choices[:position]):
        ids = earlier.line_ids
        if lines is not None and ids[-1] < len(prefix):
            prefix[ids[0] : ids[-1] + 1] = lines
            mixed = True
    scores = unit.scores
    mean = statistics.fmean(scores)
    std = statistics.pstdev(scores) or 1.0
    return {
        "prompt": record.document_prompt + render_numbered_lines(prefix, start=1),
        "chosen": _completion(unit.texts[unit.chosen], unit.line_ids),
        "rejected": _completion(unit.texts[unit.rejected], unit.line_ids),
        "weight": weight,
        "beta_scale": beta_scale,
        "doc_id": doc_id,
        "unit_index": record.unit_index,
        "gap": unit.gap,
        "num_candidates": len(unit.texts),
        "prefix_source": "random" if mixed else "chosen",
        "stage": stage,
        "prefix_mix_lambda": lam,
        "chosen_score": scores[unit.chosen],
        "rejected_score": scores[unit.rejected],
        "chosen_advantage": (scores[unit.chosen] - mean) / std,
        "rejected_advantage": (scores[unit.rejected] - mean) / std,
        "ends_document": record.unit_index == last_unit,
    }


def build_pair_rows(
    records: Iterable[CandidateRecord | dict[str, Any]], settings: PairSettings | None = None
) -> tuple[list[dict[str, Any]], PairStats]:
    """Gate, pair, weight and prefix-mix judged candidates (Sec. 3.3-3.4, Eq. 2-6); the pure-Python core.

    Args:
        records: Candidate records (see the module docstring), in any order.
        settings: Gate, pairing, weighting and prefix-mixing settings; defaults to `PairSettings`.

    Returns:
        ``(rows, stats)``. Rows are ordered by stage, shuffled (seeded) inside a stage, so reading them in order
        follows the ``lambda`` schedule.

    Raises:
        UserInputError: A record lacks a field or is inconsistent.
    """
    settings = settings or PairSettings()
    stats = PairStats()
    documents = _group_documents(records, stats)
    stats.documents = len(documents)
    continuous = settings.prefix_mix_stages == 0
    lambdas = settings.stage_lambdas()
    staged: dict[int, list[dict[str, Any]]] = {}
    pending: list[tuple[str, list[_Unit], int, float, float, int]] = []  # continuous mode: rows built after ordering
    for doc_id, doc_records in documents.items():
        rng = random.Random(f"{settings.seed}:{doc_id}")
        units = []
        for record in doc_records:
            unit = _Unit(record, *_distinct_candidates(record))
            _select(unit, settings, rng)
            units.append(unit)
        stats.units += len(units)
        for unit in units:
            if unit.gate is not None:
                stats.gated[unit.gate] += 1
        kept = [i for i, unit in enumerate(units) if unit.gate is None]
        stats.kept += len(kept)
        if not kept:
            continue
        counted = range(len(units)) if settings.weight_denominator == "all" else kept
        denominator = sum(len(units[i].texts) for i in counted)
        max_gap = max(units[i].gap for i in kept)
        last_unit = doc_records[-1].unit_index
        weights = {i: len(units[i].texts) / denominator for i in kept}
        beta_scales = {i: units[i].gap / max_gap for i in kept}
        if continuous:
            pending.extend((doc_id, units, i, weights[i], beta_scales[i], last_unit) for i in kept)
            continue
        for stage, lam in enumerate(lambdas):
            # one draw per (document, stage), shared by all its rows, as the authors' prefix_lines grows
            choices = _prefix_choices(units, lam, random.Random(f"{settings.seed}:{doc_id}:stage{stage}"))
            staged.setdefault(stage, []).extend(
                _row(doc_id, units, i, choices, weights[i], beta_scales[i], stage, lam, last_unit) for i in kept
            )
    rows: list[dict[str, Any]] = []
    order_rng = random.Random(f"{settings.seed}:order")
    if continuous:
        order_rng.shuffle(pending)
        span = max(len(pending) - 1, 1)
        for position, (doc_id, units, i, weight, beta_scale, last_unit) in enumerate(pending):
            lam = settings.prefix_mix_start + (settings.prefix_mix_end - settings.prefix_mix_start) * position / span
            unit_rng = random.Random(f"{settings.seed}:{doc_id}:{i}:continuous")
            choices = _prefix_choices(units[:i], lam, unit_rng) + [None]
            rows.append(_row(doc_id, units, i, choices, weight, beta_scale, position, lam, last_unit))
    else:
        for stage in sorted(staged):
            order_rng.shuffle(staged[stage])
            rows.extend(staged[stage])
    stats.rows = len(rows)
    return rows, stats


def build_preference_pairs(
    records: Iterable[CandidateRecord | dict[str, Any]], settings: PairSettings | None = None, **overrides: Any
) -> tuple[Dataset, PairStats]:
    """Build ALPO's preference dataset from judged candidates (Sec. 3.3-3.4, Eq. 2-6).

    Args:
        records: Candidate records.
        settings: A `PairSettings`; keyword ``overrides`` (``seed=...``, ``prefix_mix_stages=...``) replace
            its fields.
        **overrides: Fields of `PairSettings`.

    Returns:
        ``(dataset, stats)``: a `datasets.Dataset` with columns ``prompt``, ``chosen``, ``rejected``, ``weight``,
        ``beta_scale``, ``doc_id``, ``unit_index``, ``gap``, ``num_candidates``, ``prefix_source``, ``stage``,
        ``prefix_mix_lambda``, ``chosen_score``, ``rejected_score``, ``chosen_advantage``, ``rejected_advantage``,
        ``ends_document``; and the build counts, which `ALPOTrainer` takes as ``pair_stats=stats.to_dict()``.
    """
    from datasets import Dataset

    settings = PairSettings(**{**asdict(settings or PairSettings()), **overrides})
    rows, stats = build_pair_rows(records, settings)
    logger.info("ALPO pairs: %s", stats.summary())
    columns = list(rows[0]) if rows else list(_row_columns())
    return Dataset.from_dict({name: [row[name] for row in rows] for name in columns}), stats


def _row_columns() -> tuple[str, ...]:
    return (
        "prompt", "chosen", "rejected", "weight", "beta_scale", "doc_id", "unit_index", "gap", "num_candidates",
        "prefix_source", "stage", "prefix_mix_lambda", "chosen_score", "rejected_score", "chosen_advantage",
        "rejected_advantage", "ends_document",
    )  # fmt: skip


def read_candidate_records(path: str | os.PathLike[str]) -> list[CandidateRecord]:
    """Read a candidates JSONL file, naming the file, line and field of any malformed record.

    Raises:
        UserInputError: The file is missing or not UTF-8, a line is not JSON, or a record has a missing or mistyped
            field.
    """
    records = []
    missing_file = "candidates file not found; run `trl-seqpo alpo sample` first"
    for number, record in read_json_objects(path, missing=missing_file, expected="a JSON object on each line"):
        try:
            records.append(CandidateRecord.from_dict(record))
        except ValueError as exc:
            raise UserInputError(str(exc), path=str(path), line=number) from None
    return records


def stats_path_for(output: str | os.PathLike[str]) -> Path:
    """Where ``alpo pairs`` writes the build counts next to ``output``: ``pairs.jsonl`` -> ``pairs.stats.json``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + ".stats.json")


def write_pairs(rows: Sequence[dict[str, Any]], stats: PairStats, output: str | os.PathLike[str]) -> Path:
    """Write the rows as JSONL and the counts beside them, each atomically (a temporary file then a rename)."""
    output = Path(output)
    atomic_write_jsonl(output, rows)
    atomic_write_json(stats_path_for(output), stats.to_dict())
    return output


__all__ = [
    "GATE_REASONS",
    "PairSettings",
    "PairStats",
    "build_pair_rows",
    "build_preference_pairs",
    "read_candidate_records",
    "stats_path_for",
    "write_pairs",
]
