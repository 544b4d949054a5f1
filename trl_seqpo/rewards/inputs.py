"""Read what a reward scores out of TRL's reward-function arguments.

TRL calls every reward as ``reward(prompts=..., completions=..., completion_ids=..., **columns)``, where
``columns`` holds the dataset columns of the batch (``source``, ``reference``, ...) plus whatever the rollout
added. The SeqPO rollout (``trl_seqpo.rollout``) adds:

- ``translation``: the concatenated policy outputs y_1 ... y_T of each trajectory, without the source chunks or any
  other text the environment inserted. Quality rewards score this when it is present.
- ``delays``, ``source_length``, ``reference_length``: per-target-unit delays and lengths for latency rewards.

These helpers are shared by all built-in rewards, so every reward reads its inputs the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("trl_seqpo.rewards")

_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process (rewards run every step)."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def completion_text(completion: Any) -> str | None:
    """Return the text of one TRL completion.

    Args:
        completion: A string (standard format) or a list of chat messages (conversational format). For messages, the
            content of the last ``assistant`` message is used; content given as a list of parts contributes its
            ``text`` parts.

    Returns:
        The text, or ``None`` when there is nothing to score (no assistant message, unknown type).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, Sequence):
                    return "".join(
                        part.get("text", "")
                        for part in content
                        if isinstance(part, dict) and part.get("type") == "text"
                    )
                return None
    return None


def texts_to_score(completions: Sequence[Any], columns: dict[str, Any]) -> list[str | None]:
    """Return the text each row's reward should score.

    The rollout's ``translation`` column wins when present (it holds only the policy's own output); otherwise each
    completion is read with `completion_text`.

    Args:
        completions: TRL's ``completions`` argument.
        columns: The remaining keyword arguments TRL passed to the reward.

    Returns:
        One string (or ``None`` when the row has no text) per completion.
    """
    translations = columns.get("translation")
    if translations is not None:
        if len(translations) != len(completions):
            raise ValueError(
                f"The 'translation' column has {len(translations)} rows but there are {len(completions)} completions."
            )
        return [t if isinstance(t, str) else None for t in translations]
    return [completion_text(c) for c in completions]


def required_column(columns: dict[str, Any], name: str, num_rows: int, reward_name: str) -> list[Any]:
    """Return dataset column ``name`` (one value per row), with a clear error if the dataset lacks it.

    Args:
        columns: The keyword arguments TRL passed to the reward.
        name: Column name, e.g. ``"reference"``.
        num_rows: Expected number of rows (the number of completions).
        reward_name: Used in the error message.

    Returns:
        The column as a list.
    """
    values = columns.get(name)
    if values is None:
        raise ValueError(
            f"Reward '{reward_name}' needs a '{name}' column, but the batch has only: "
            f"{', '.join(sorted(k for k in columns if not k.startswith(('trainer_state', 'log_')))) or 'no columns'}. "
            f"Add a '{name}' column to the training dataset (or to the rollout output)."
        )
    values = list(values)
    if len(values) != num_rows:
        raise ValueError(f"Column '{name}' has {len(values)} rows but there are {num_rows} completions.")
    return values


def optional_column(columns: dict[str, Any], name: str, num_rows: int) -> list[Any]:
    """Return column ``name`` as a list, or ``[None] * num_rows`` when it is absent."""
    values = columns.get(name)
    if values is None:
        return [None] * num_rows
    values = list(values)
    if len(values) != num_rows:
        raise ValueError(f"Column '{name}' has {len(values)} rows but there are {num_rows} completions.")
    return values
