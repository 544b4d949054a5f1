"""A `SimultaneousRolloutConfig` from any settings object, field by field by name (one declaration per knob).

Training (`SeqPOConfig`), evaluation (`SimTEvalConfig`) and the SimulEval agent built on it, the server
(`ServeConfig`, `SessionSettings`, `StreamingEngine`) and the demo each hold some of the rollout's settings under the
same names; `rollout_config_from` reads every field of `SimultaneousRolloutConfig` from them, so a field added there
reaches each of them without a copy by hand. Two spellings differ: the languages are ``source_lang`` /
``target_lang`` outside the rollout (`ALIASES`), the target delays' unit ``latency_unit`` in training and evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig

__all__ = ["ALIASES", "rollout_config_from", "rollout_fields"]

#: Other names a `SimultaneousRolloutConfig` field goes by in the configs that build one (tried after its own name).
ALIASES: dict[str, tuple[str, ...]] = {
    "src_lang": ("source_lang",),
    "tgt_lang": ("target_lang",),
    "target_unit": ("latency_unit",),
}


def rollout_fields(*sources: Any) -> dict[str, Any]:
    """The `SimultaneousRolloutConfig` fields that ``sources`` hold, by name (or `ALIASES`); the first source wins.

    A ``None`` where the rollout's default is not ``None`` (``top_k=None`` in `trl.GRPOConfig`, a language left unset)
    means "the default": it is skipped, and a later source or the default applies.

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Eval:
        ...     chunk_size: int = 2
        ...     source_lang: str | None = "German"
        ...     target_lang: str | None = None
        ...     batch_size: int = 8
        >>> rollout_fields(Eval())
        {'chunk_size': 2, 'src_lang': 'German'}
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(SimultaneousRolloutConfig):
        for source in sources:
            names = (field.name, *ALIASES.get(field.name, ()))
            found = [getattr(source, name) for name in names if hasattr(source, name)]
            value = next((value for value in found if value is not None or field.default is None), _UNSET)
            if value is not _UNSET:
                values[field.name] = value
                break
    return values


def rollout_config_from(*sources: Any, **overrides: Any) -> SimultaneousRolloutConfig:
    """`SimultaneousRolloutConfig` of the fields ``sources`` hold (`rollout_fields`) and ``overrides``; defaults else.

    Raises:
        ValueError: The rollout refuses a value (the message names the field).
    """
    return SimultaneousRolloutConfig(**{**rollout_fields(*sources), **overrides})


_UNSET = object()
