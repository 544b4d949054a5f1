"""Last checks on aligned pairs before they become training documents (issue 14, hygiene).

`align` already leaves signs, credits and SDH descriptions out, but aligned JSONL may come from elsewhere (an older
run, `--keep all`, another tool). `clean_pairs` drops pairs that teach nothing and cleans the rest:

* ``identical``: source and target are the same text (an ad or sign in the target language inside the source
  file, paired with itself; a number paired with itself);
* ``description``: one side is only an SDH description (``[door slams]``, ``（走る足音）``);
* ``empty``: one side has no letters or digits left;
* SDH speaker labels, bracketed descriptions and furigana inside a line are removed (counted as ``cleaned``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from trl_seqpo.subtitles.classify import strip_sdh

__all__ = ["HYGIENE_REASONS", "clean_pairs"]

HYGIENE_REASONS = ("identical", "description", "empty")


def clean_pairs(groups: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Drop pairs that teach nothing and remove SDH additions from the others.

    Args:
        groups: Aligned records with ``source`` and (optionally) ``target`` strings.

    Returns:
        ``(kept records, counts)``: the kept records are copies with cleaned text; ``counts`` has one entry per
        reason a pair was dropped, plus ``cleaned`` for pairs whose text SDH removal changed.

    Examples:
        >>> kept, counts = clean_pairs([{"source": "JOHN: Hi.", "target": "嗨"}, {"source": "菜单", "target": "菜单"}])
        >>> [record["source"] for record in kept], dict(counts)
        (['Hi.'], {'cleaned': 1, 'identical': 1})
    """
    kept: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for group in groups:
        sides = {"source": group["source"]}
        if isinstance(group.get("target"), str):
            sides["target"] = group["target"]
        cleaned = {key: strip_sdh(text) for key, text in sides.items()}
        reason = None
        if any(text.strip() and not cleaned[key] for key, text in sides.items()):
            reason = "description"
        elif any(not any(char.isalnum() for char in text) for text in cleaned.values()):
            reason = "empty"
        elif "target" in cleaned and _normal(cleaned["source"]) == _normal(cleaned["target"]):
            reason = "identical"
        if reason is not None:
            counts[reason] += 1
            continue
        if cleaned != sides:
            counts["cleaned"] += 1
        kept.append({**group, **cleaned})
    return kept, counts


def _normal(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())
