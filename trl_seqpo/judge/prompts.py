"""Prompts of the LLM judge and the parser of its answers (ALPO, Sec. 3.2 and App. F.2-F.3).

The judge sees one subtitle line (or a segment of lines) with the lines around it, and several candidate
translations labelled ``A``, ``B``, ... It answers one JSON object that maps every label to an integer score in
0-100. The wording here is ours; what follows the paper is the structure of App. F.2: context lines marked apart
from the line being scored, labelled candidates, a 0 / 50 / 100 anchor scale and a JSON-only answer. The vividness
criteria keep the paper's indicative weights (accuracy 30%, colloquial fit 30%, expressive power 40%, App. B.2.1).

Validation follows the authors' public code: the keys must be exactly the labels, every score an int in 0-100, and
an answer whose scores are mostly ties (distinct / total < 0.25) is rejected. The prompt itself asks for scores, not a
ranking (ALPO Sec. 3.2): it never tells the judge to avoid equal scores, since a tie is information; ties between the
chosen and rejected sides are broken by the pair builder's documented rule (`trl_seqpo.alpo.pairs`).

This module is pure text (no network, no third-party imports), so the local test server can parse the same prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ASPECTS",
    "JudgeRequest",
    "candidate_labels",
    "build_messages",
    "repair_message",
    "parse_candidates",
    "parse_evaluated_lines",
    "extract_json_object",
    "validate_scores",
    "AnswerError",
]

# aspect -> (what it means, weighted criteria, anchors for 100 / 50 / 0)
ASPECTS: dict[str, tuple[str, tuple[str, ...], tuple[str, str, str]]] = {
    "vividness": (
        "how expressive and alive the translation is as a subtitle: whether it carries the emotion, tone and "
        "atmosphere of the original instead of rendering it word for word",
        (
            "Faithfulness (about 30%): a free rendering is welcome, but the meaning must survive; "
            "nothing important added or dropped.",
            "Spoken register (about 30%): it sounds like something a person would say in this scene and keeps "
            "the speaker's mood and tone.",
            "Expressive power (about 40%): vivid, idiomatic wording that an audience feels; flat literal "
            "phrasing scores low here.",
        ),
        (
            "striking and emotionally rich; a viewer would remember the line",
            "understandable but flat; the feeling of the original only partly comes through",
            "wrong or lifeless; no emotion or tone reaches the viewer",
        ),
    ),
    "accuracy": (
        "how faithfully the translation carries the meaning of the original line",
        (
            "Meaning: every piece of information in the original is rendered, nothing is invented.",
            "Names and terms: people, places, organisations and objects are translated correctly and "
            "consistently with the context.",
            "Grammar: tense, number, negation and who-does-what are right.",
        ),
        (
            "complete and exact, all names and terms right",
            "mostly right with small omissions or a shaky term, the gist still clear",
            "the main meaning is lost or distorted",
        ),
    ),
    "naturalness": (
        "how natural and fluent the translation reads for a native speaker of the target language",
        (
            "Fluency: grammatical, smooth, no awkward word order.",
            "Idiom: word choice and phrasing follow the habits of the target language and its culture.",
            "Fit: reads well next to the surrounding lines, short enough to be read as a subtitle.",
        ),
        (
            "reads as if written by a native subtitler, no slips",
            "fluent on the whole with some stiff or unusual phrasing",
            "hard to read, ungrammatical or clearly machine-like",
        ),
    ),
}

_SYSTEM = (
    "You are an experienced subtitle translator acting as a strict evaluator. You compare several translations of "
    "the same subtitle line and answer with scores only, as a JSON object."
)
_EVALUATE_TAG = "[Evaluate]"
_CONTEXT_TAG = "[Context]"
_CANDIDATE_RE = re.compile(r"^Translation ([A-Z]+): (.*)$", re.MULTILINE)


@dataclass
class JudgeRequest:
    """One line (or segment) to score, with its candidates (ALPO Alg. 1: the candidate set T_i of line s_i).

    Args:
        source: The source line, or the lines of a segment.
        candidates: Candidate translations; results are index-aligned with this list.
        context_before, context_after: Neighbouring source lines shown as context (App. F.2 shows two each side).
        target_context_before, target_context_after: Translations of those neighbours, when known (e.g. the
            chosen translations of the earlier lines during sampling).
    """

    source: str | Sequence[str]
    candidates: Sequence[str]
    context_before: Sequence[str] = ()
    context_after: Sequence[str] = ()
    target_context_before: Sequence[str] = ()
    target_context_after: Sequence[str] = ()

    @classmethod
    def for_line(
        cls,
        source_lines: Sequence[str],
        index: int,
        candidates: Sequence[str],
        *,
        window: int = 2,
        target_lines: Sequence[str] | None = None,
    ) -> JudgeRequest:
        """Request for line ``index`` of a document, with ``window`` lines of context on each side.

        Args:
            source_lines: All source lines of the document.
            index: 0-based line to score.
            candidates: Its candidate translations.
            window: Context lines on each side.
            target_lines: Translations known so far (aligned with ``source_lines``; may be shorter).

        Returns:
            The request.
        """
        if not 0 <= index < len(source_lines):
            raise IndexError(f"line index {index} out of range for a document of {len(source_lines)} lines")
        lo, hi = max(0, index - window), index + 1 + window
        target = list(target_lines or [])
        return cls(
            source=source_lines[index],
            candidates=list(candidates),
            context_before=list(source_lines[lo:index]),
            context_after=list(source_lines[index + 1 : hi]),
            target_context_before=target[lo:index],
            target_context_after=target[index + 1 : hi],
        )


class AnswerError(ValueError):
    """A judge answer that cannot be used; ``kind`` is one of ``no_json``, ``keys``, ``value``, ``ties``."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


def candidate_labels(n: int) -> list[str]:
    """Labels ``A``, ``B``, ..., ``Z``, ``AA``, ``AB``, ... for ``n`` candidates (App. F.2 labels by letter).

    Args:
        n: Number of candidates.

    Returns:
        ``n`` distinct upper-case labels.

    >>> candidate_labels(3)
    ['A', 'B', 'C']
    >>> candidate_labels(28)[-2:]
    ['AA', 'AB']
    """
    labels = []
    for i in range(n):
        label, k = "", i
        while True:
            label = chr(ord("A") + k % 26) + label
            k = k // 26 - 1
            if k < 0:
                break
        labels.append(label)
    return labels


def _one_line(text: str) -> str:
    """Candidates and source lines are shown on one line each so that the layout stays unambiguous."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def build_messages(
    source: Sequence[str],
    candidates: Sequence[str],
    *,
    aspect: str = "vividness",
    context_before: Sequence[str] = (),
    context_after: Sequence[str] = (),
    target_context_before: Sequence[str] = (),
    target_context_after: Sequence[str] = (),
    source_language: str | None = None,
    target_language: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages asking the judge to score ``candidates`` (already in display order) for one ``aspect``.

    The layout follows ALPO App. F.2: the scored line(s) are tagged ``[Evaluate]``, surrounding lines
    ``[Context]``, candidates ``Translation A: ...``, and the answer is a JSON object of integer scores 0-100.

    Args:
        source: The source line(s) being scored (several lines when the unit is a segment).
        candidates: Candidate translations in the order they are shown; they get labels A, B, ...
        aspect: ``"vividness"`` (the reward of ALPO training), ``"accuracy"`` or ``"naturalness"`` (Sec. 4.2).
        context_before: Source lines before the scored line(s).
        context_after: Source lines after the scored line(s).
        target_context_before: Translations already chosen for the lines before, if any.
        target_context_after: Translations of the lines after, if any.
        source_language: Name of the source language used in the instructions (e.g. ``"English"``), if known.
        target_language: Name of the target language (e.g. ``"Chinese"``), if known.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {sorted(ASPECTS)}, got {aspect!r}")
    meaning, criteria, (top, middle, bottom) = ASPECTS[aspect]
    labels = candidate_labels(len(candidates))
    source_lines = [source] if isinstance(source, str) else list(source)
    parts = [
        f"Score each translation into {target_language or 'the target language'} of a subtitle line in "
        f"{source_language or 'the source language'} for {aspect.upper()}, that is {meaning}. "
        "Use integers from 0 to 100.",
        "",
        "Criteria:",
        *(f"- {criterion}" for criterion in criteria),
        "Anchors:",
        f"- 100: {top}",
        f"- 50: {middle}",
        f"- 0: {bottom}",
        "",
        f"Original subtitles (the line to score is tagged {_EVALUATE_TAG}, "
        f"the lines tagged {_CONTEXT_TAG} are there to explain the scene):",
        *(f"{_CONTEXT_TAG} {_one_line(line)}" for line in context_before),
        *(f"{_EVALUATE_TAG} {_one_line(line)}" for line in source_lines),
        *(f"{_CONTEXT_TAG} {_one_line(line)}" for line in context_after),
    ]
    if target_context_before or target_context_after:
        parts += [
            "",
            "Translation of the surrounding lines:",
            *(f"{_CONTEXT_TAG} {_one_line(line)}" for line in target_context_before),
            "(here comes the line being scored: one of the candidates below)",
            *(f"{_CONTEXT_TAG} {_one_line(line)}" for line in target_context_after),
        ]
    example = ", ".join(f'"{label}": <int>' for label in labels[:3]) + (", ..." if len(labels) > 3 else "")
    parts += [
        "",
        "Candidate translations:",
        *(f"Translation {label}: {_one_line(text)}" for label, text in zip(labels, candidates)),
        "",
        f"Answer with one JSON object and nothing else: {{{example}}}, with exactly the keys "
        f"{', '.join(labels)}. Score each translation on its own merits; equally good translations may get equal "
        "scores.",
    ]
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "\n".join(parts)}]


def repair_message(labels: Sequence[str], problem: str) -> dict[str, str]:
    """A follow-up user message after an unusable answer, restating the required format.

    Args:
        labels: The labels of this vote.
        problem: Why the previous answer was rejected (shown to the judge).

    Returns:
        One ``{"role": "user", ...}`` message.
    """
    keys = ", ".join(f'"{label}"' for label in labels)
    return {
        "role": "user",
        "content": f"Your answer could not be used ({problem}). Reply again with only a JSON object whose keys are "
        f"exactly {keys}, each mapped to a different-enough integer score from 0 to 100. No other text.",
    }


def parse_candidates(messages: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Labelled candidates found in the first user message built by `build_messages`.

    Args:
        messages: Chat messages of one judge request.

    Returns:
        ``{label: candidate text}`` in display order (empty if the prompt has none).
    """
    user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
    return {label: text for label, text in _CANDIDATE_RE.findall(user)}


def parse_evaluated_lines(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """The source line(s) tagged ``[Evaluate]`` in the first user message (used by test servers to pick a reply).

    Args:
        messages: Chat messages of one judge request.

    Returns:
        The scored source lines, in order.
    """
    user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
    prefix = _EVALUATE_TAG + " "
    return [line[len(prefix) :] for line in user.splitlines() if line.startswith(prefix)]


_THINK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)  # an unfinished block runs to the end


def extract_json_object(text: str) -> dict:
    """The first JSON object in ``text``; prose around it, code fences and ``<think>`` blocks are ignored.

    Args:
        text: Raw answer of the judge.

    Returns:
        The decoded object.

    Raises:
        AnswerError: (kind ``no_json``) when no JSON object can be decoded.

    >>> extract_json_object('Sure! ```json\\n{"A": 80, "B": 20}\\n``` Hope it helps.')
    {'A': 80, 'B': 20}
    """
    text = _THINK_RE.sub("", text or "")
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise AnswerError("no_json", "no JSON object found in the answer")


def validate_scores(answer: Mapping, labels: Sequence[str], *, min_distinct_ratio: float = 0.25) -> list[int]:
    """Check one decoded answer and return the scores in label order (the authors' rules, issue 6).

    Args:
        answer: Decoded JSON object.
        labels: Labels shown in this vote.
        min_distinct_ratio: Reject when (number of distinct scores) / (number of candidates) is below this.

    Returns:
        Scores aligned with ``labels``.

    Raises:
        AnswerError: ``keys`` when the keys are not exactly the labels, ``value`` when a score is not an int in
            0-100 (floats, strings and booleans are rejected), ``ties`` when the scores are mostly ties.

    >>> validate_scores({"B": 10, "A": 90}, ["A", "B"])
    [90, 10]
    """
    if set(answer) != set(labels) or len(answer) != len(labels):
        missing = sorted(set(labels) - set(answer))
        extra = sorted(str(key) for key in set(answer) - set(labels))
        raise AnswerError("keys", f"keys must be exactly {list(labels)} (missing {missing}, unexpected {extra})")
    scores = []
    for label in labels:
        value = answer[label]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise AnswerError("value", f"score of {label} must be an integer from 0 to 100, got {value!r}")
        scores.append(value)
    if len(set(scores)) / len(scores) < min_distinct_ratio:
        raise AnswerError("ties", f"only {len(set(scores))} distinct scores for {len(scores)} translations")
    return scores
