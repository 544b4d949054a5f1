"""Ground truth for the ALPO demo: each held-out source slot scored from the synthetic world, not by the judge.

The synthetic language pair (`trl_seqpo.synthetic.language_pair`) knows what every source word means
(`DICTIONARY`) and, for six concepts, which of two equally correct target words is the preferred rendering
(`TARGET_SYNONYMS`). A *slot* is one source word whose translation has such a synonym. For each held-out line:

- a slot's **meaning is preserved** when the output renders its concept (either word) as often as the source asks
  for it (counted per concept and capped at its slots, so repeating a word earns nothing);
- a slot gets its **preferred rendering** when the output uses the preferred word for it (same counting);
- the **line is exact** when the output is the world's own translation of the source line (reordering included)
  once each synonym pair is merged: a check of the whole meaning that no synonym choice can pass or fail.

Nothing here imports the training judge (`trl_seqpo.synthetic.subtitles.AccuracyTasteScorer`, the judge server of
`trl_seqpo.synthetic.local_judge`, or `trl_seqpo.judge`); `tests/test_demo_alpo.py` checks it in a fresh
interpreter. The judge scores words and word pairs against its own translation with a taste bonus; these counts are
per source slot and per line, from the world's definitions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from trl_seqpo.synthetic.language_pair import DICTIONARY, TARGET_SYNONYMS, translate

__all__ = ["score_lines", "world_translation"]

_TOKEN = re.compile(r"[^\W\d_]+|\.")
_PLAIN_OF = {liked: plain for plain, liked in TARGET_SYNONYMS.items()}


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _merged(words: Sequence[str]) -> list[str]:
    return [_PLAIN_OF.get(word, word) for word in words]


def world_translation(source_line: str) -> list[str]:
    """The world's translation of one subtitle source line, as tokens (plain words; a final ``"."`` kept)."""
    tokens = _tokens(source_line)
    words = [token for token in tokens if token != "."]
    unknown = [word for word in words if word not in DICTIONARY]
    if unknown:
        raise ValueError(f"source line has words outside the synthetic dictionary: {unknown}")
    target = translate(words)[0].split() if words else []
    return target + (["."] if tokens and tokens[-1] == "." else [])


def score_lines(source_lines: Sequence[str], hypothesis_lines: Sequence[str]) -> dict[str, Any]:
    """Per-slot and per-line ground-truth counts of translated subtitle lines.

    Args:
        source_lines: Held-out source lines (words of the synthetic dictionary, maybe a final ``"."``).
        hypothesis_lines: The system's translation of each line (same order; a missing line is ``""``).

    Returns:
        ``lines``, ``lines_exact``, ``slots``, ``slots_preferred``, ``slots_rendered`` and the shares in %
        ``preferred_pct``, ``rendered_pct``, ``exact_pct`` (``None`` without slots or lines).

    Raises:
        ValueError: Different numbers of lines, or a source word outside the dictionary.

    >>> score_lines(["the big dog sees the house."], ["lo hundo mega lo domo miras."])["slots_preferred"]
    2
    """
    if len(source_lines) != len(hypothesis_lines):
        raise ValueError(f"{len(source_lines)} source lines but {len(hypothesis_lines)} translated lines")
    counts = Counter(lines=0, lines_exact=0, slots=0, slots_preferred=0, slots_rendered=0)
    for source, hypothesis in zip(source_lines, hypothesis_lines):
        truth = world_translation(source)
        output = _tokens(hypothesis)
        counts["lines"] += 1
        counts["lines_exact"] += _merged(output) == truth
        used = Counter(output)
        for concept, slots in Counter(word for word in truth if word in TARGET_SYNONYMS).items():
            preferred = used[TARGET_SYNONYMS[concept]]
            counts["slots"] += slots
            counts["slots_preferred"] += min(preferred, slots)
            counts["slots_rendered"] += min(preferred + used[concept], slots)
    result: dict[str, Any] = dict(counts)
    for name, part, whole in (
        ("preferred_pct", "slots_preferred", "slots"),
        ("rendered_pct", "slots_rendered", "slots"),
        ("exact_pct", "lines_exact", "lines"),
    ):
        result[name] = 100.0 * counts[part] / counts[whole] if counts[whole] else None
    return result
