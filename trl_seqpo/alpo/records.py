"""The candidate record: one judged unit of ALPO's Alg. 1, as the sampler writes it and the pair builder reads it.

One JSON line of ``trl-seqpo alpo sample``'s output is `CandidateRecord.to_dict`; `CandidateRecord.from_dict`
reads it back and names the field that is missing or of the wrong type. This module imports no torch.

>>> record = CandidateRecord(doc_id="d", unit_index=0, line_ids=[0], source="Hi.", reference="Salut.",
...     document_prompt="P\\n", prefix=[], candidates=[Candidate("Salut.", "reference", 80.0)], num_units=1)
>>> CandidateRecord.from_dict(record.to_dict()) == record
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Candidate", "CandidateRecord"]

ORIGINS = ("policy", "reference")


@dataclass
class Candidate:
    """One candidate translation of a unit.

    Args:
        text: The unit's lines joined by ``"\\n"`` (no line markers).
        origin: ``"policy"`` (sampled) or ``"reference"`` (the human translation, Alg. 1 line 7).
        score: Mean judge score over the valid votes, 0-100; ``None`` when the unit was not judged or the judge failed.
    """

    text: str
    origin: Literal["policy", "reference"] = "policy"
    score: float | None = None


@dataclass
class CandidateRecord:
    """One (document, unit) of ALPO's Alg. 1 with its judged candidates.

    Args:
        doc_id: The document's id.
        unit_index: 0-based index of the unit in the document.
        line_ids: 0-based line ids of the unit (one for ``unit="line"``).
        source: The unit's source lines joined by ``"\\n"``.
        reference: The unit's reference lines joined by ``"\\n"``, or ``None``.
        document_prompt: The document prompt (instruction, context, numbered source), ending in a newline.
        prefix: The chosen translation of every earlier line, one string per line (Alg. 1, line 9).
        candidates: The de-duplicated candidates, policy samples first, the reference last.
        judge_failed: The judge was asked and gave no valid vote.
        unit: ``"line"`` or ``"segment"``.
        num_units: Units in the document (a document is complete when records ``0 .. num_units - 1`` exist).
        chosen_index: Index in ``candidates`` of the translation fed forward as the next units' prefix (``None`` for
            an empty unit); the pair builder uses it as the chosen side by default.
        num_samples: Rows sampled (``k``).
        num_distinct: Distinct, readable policy candidates.
        num_dropped: Samples dropped as unreadable (missing line, unterminated).
        votes: Valid judge votes behind the scores (``None`` when the unit was not sent to the judge).
        votes_requested: Votes asked for (the judge's ``num_shuffles``), ``None`` when not judged.
        votes_needed: Valid votes the unit needs to count as judged (``alpo sample --judge-min-votes``); ``None``:
            every vote asked for (records written before this field).
        judge_error: Why the judge failed, or ``None``.
    """

    doc_id: str
    unit_index: int
    line_ids: list[int]
    source: str
    reference: str | None
    document_prompt: str
    prefix: list[str]
    candidates: list[Candidate] = field(default_factory=list)
    judge_failed: bool = False
    unit: Literal["line", "segment"] = "line"
    num_units: int = 1
    chosen_index: int | None = None
    num_samples: int = 0
    num_distinct: int = 0
    num_dropped: int = 0
    votes: int | None = None
    votes_requested: int | None = None
    judge_error: str | None = None
    votes_needed: int | None = None

    @property
    def under_voted(self) -> bool:
        """Judged with fewer valid votes than needed (an outage mid-unit, or a failed judge)."""
        needed = self.needed_votes
        return needed is not None and (self.votes or 0) < needed

    @property
    def needed_votes(self) -> int | None:
        """``votes_needed``, or every vote asked for on records without it."""
        return self.votes_needed if self.votes_needed is not None else self.votes_requested

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form (one line of the candidates file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CandidateRecord:
        """Read a record, checking every field's type.

        Raises:
            ValueError: Not an object, a required field missing, or a field of the wrong type (the message names it).
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object (a candidate record of `trl-seqpo alpo sample`)")
        for name in ("doc_id", "unit_index", "line_ids", "document_prompt", "prefix", "candidates"):
            if name not in data:
                raise ValueError(f"missing field {name!r} (not a candidate record of `trl-seqpo alpo sample`?)")
        _check(data, "doc_id", str)
        _check(data, "unit_index", int)
        _check(data, "num_units", int, optional=True)
        for name in ("num_samples", "num_distinct", "num_dropped"):
            _check(data, name, int, optional=True)
        for name in ("chosen_index", "votes", "votes_requested", "votes_needed"):
            _check(data, name, int, optional=True)
        for name in ("source", "document_prompt"):
            _check(data, name, str, optional=name == "source")
        for name in ("reference", "judge_error"):
            _check(data, name, str, optional=True)
        if not isinstance(data.get("judge_failed", False), bool):
            raise ValueError(f"field 'judge_failed' must be true or false, got {data['judge_failed']!r}")
        line_ids = data["line_ids"]
        if not isinstance(line_ids, list) or not line_ids or not all(_is_int(i) for i in line_ids):
            raise ValueError("field 'line_ids' must be a non-empty list of integers")
        if not isinstance(data["prefix"], list) or not all(isinstance(p, str) for p in data["prefix"]):
            raise ValueError("field 'prefix' must be a list of strings")
        if not isinstance(data["candidates"], list):
            raise ValueError("field 'candidates' must be a list")
        candidates = []
        for position, item in enumerate(data["candidates"]):
            where = f"candidates[{position}]"
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f"field {where} needs a 'text' string, got {item!r}")
            score = item.get("score")
            if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
                raise ValueError(f"field {where}.score must be a number or null, got {score!r}")
            origin = item.get("origin", "policy")
            if origin not in ORIGINS:
                raise ValueError(f"field {where}.origin must be one of {ORIGINS}, got {origin!r}")
            candidates.append(Candidate(item["text"], origin, None if score is None else float(score)))
        unit = data.get("unit", "line")
        if unit not in ("line", "segment"):
            raise ValueError(f"field 'unit' must be 'line' or 'segment', got {unit!r}")
        return cls(
            doc_id=data["doc_id"],
            unit_index=data["unit_index"],
            line_ids=list(line_ids),
            source=data.get("source") or "",
            reference=data.get("reference"),
            document_prompt=data["document_prompt"],
            prefix=list(data["prefix"]),
            candidates=candidates,
            judge_failed=data.get("judge_failed", False),
            unit=unit,
            num_units=data.get("num_units", 1) if data.get("num_units") is not None else 1,
            chosen_index=data.get("chosen_index"),
            num_samples=data.get("num_samples") or 0,
            num_distinct=data.get("num_distinct") or 0,
            num_dropped=data.get("num_dropped") or 0,
            votes=data.get("votes"),
            votes_requested=data.get("votes_requested"),
            judge_error=data.get("judge_error"),
            votes_needed=data.get("votes_needed"),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(data: dict, name: str, kind: type, optional: bool = False) -> None:
    value = data.get(name)
    if value is None and optional:
        return
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        kind_name = {int: "an integer", str: "a string"}[kind]
        raise ValueError(f"field {name!r} must be {kind_name}{' or null' if optional else ''}, got {value!r}")
