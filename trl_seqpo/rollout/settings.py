"""A `SimultaneousRolloutConfig` from any settings object, field by field by name (one declaration per knob).

Training (`SeqPOConfig`), evaluation (`SimTEvalConfig`) and the SimulEval agent built on it, the server
(`ServeConfig`, `SessionSettings`, `StreamingEngine`) and the demo each hold some of the rollout's settings under the
same names; `rollout_config_from` reads every field of `SimultaneousRolloutConfig` from them, so a field added there
reaches each of them without a copy by hand. Two spellings differ: the languages are ``source_lang`` /
``target_lang`` outside the rollout (`ALIASES`), the target delays' unit ``latency_unit`` in training and evaluation.

Evaluation and the server decode one model with one set of `DECODING_FIELDS` (prompt format, step budgets, sampling,
system prompt, step tokens), whatever the operating point or session: both configs inherit them from
`DecodingSettings`, whose fields are generated from `SimultaneousRolloutConfig`'s (type, default, and the help text
of its docstring), so each is declared once. `SeqPOTrainer` records its rollout in ``seqpo_rollout.json`` next to the
weights (`save_rollout_settings`); the `FROM_MODEL` fields left unset (``None``) are read from it
(`fill_from_model`), so a model is evaluated and served with the prompts it was trained on.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any

from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig

__all__ = [
    "ALIASES",
    "DECODING_FIELDS",
    "FROM_MODEL",
    "INFERENCE_DEFAULTS",
    "ROLLOUT_FILE",
    "DecodingSettings",
    "fill_from_model",
    "rollout_config_from",
    "rollout_fields",
    "rollout_names",
    "save_rollout_settings",
    "saved_rollout_settings",
]

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
        names = _names(field.name)
        for source in sources:
            found = [getattr(source, name) for name in names if hasattr(source, name)]
            value = next((value for value in found if value is not None or field.default is None), _UNSET)
            if value is not _UNSET:
                values[field.name] = value
                break
    return values


def _names(name: str) -> tuple[str, ...]:
    return (name, *ALIASES.get(name, ()))


def rollout_names() -> frozenset[str]:
    """Every attribute name `rollout_fields` reads: the `SimultaneousRolloutConfig` fields and their `ALIASES`."""
    return frozenset(name for field in dataclasses.fields(SimultaneousRolloutConfig) for name in _names(field.name))


def rollout_config_from(*sources: Any, **overrides: Any) -> SimultaneousRolloutConfig:
    """`SimultaneousRolloutConfig` of the fields ``sources`` hold (`rollout_fields`) and ``overrides``; defaults else.

    Raises:
        ValueError: The rollout refuses a value (the message names the field).
    """
    return SimultaneousRolloutConfig(**{**rollout_fields(*sources), **overrides})


_UNSET = object()

#: The file next to a SeqPO checkpoint's weights that holds its `SimultaneousRolloutConfig` (one JSON object).
ROLLOUT_FILE = "seqpo_rollout.json"
#: Rollout fields of one model, not of one operating point or session (those choose languages, units, chunk size).
DECODING_FIELDS: tuple[str, ...] = (
    "prompt_format", "max_new_tokens_per_step", "max_steps_after_source", "temperature", "top_p", "top_k",
    "system_prompt", "step_end_token", "end_of_translation_token",
)  # fmt: skip
#: Of those, the ones that shape the prompts and steps the model learned: unset, they follow its `ROLLOUT_FILE`.
FROM_MODEL: tuple[str, ...] = (
    "prompt_format", "max_new_tokens_per_step", "max_steps_after_source", "system_prompt", "step_end_token",
    "end_of_translation_token",
)  # fmt: skip
#: Where evaluation and serving differ from the rollout's defaults: greedy, and the paper's 60 tokens a step.
INFERENCE_DEFAULTS: dict[str, Any] = {"max_new_tokens_per_step": 60, "temperature": 0.0}


def field_help(name: str) -> str:
    """The help text of a `SimultaneousRolloutConfig` field: its entry under ``Args:`` in the class docstring."""
    doc = inspect.cleandoc(SimultaneousRolloutConfig.__doc__ or "").partition("Args:\n")[2]
    match = re.search(rf"^    {name}: (.*(?:\n        .*)*)", doc, re.MULTILINE)
    if match is None:
        raise ValueError(f"SimultaneousRolloutConfig's docstring has no Args entry for {name!r}")
    text = " ".join(match.group(1).split()).replace("``", "").rstrip(".")
    return text[0].lower() + text[1:]  # a flag's help, as argparse's own: lower case, no full stop


def _inference_default(name: str) -> Any:
    """The default of rollout field ``name`` in evaluation and serving: `INFERENCE_DEFAULTS`, else the rollout's."""
    return INFERENCE_DEFAULTS.get(name, getattr(SimultaneousRolloutConfig, name))


def _decoding_field(name: str) -> tuple[str, Any, dataclasses.Field]:
    annotation = typing.get_type_hints(SimultaneousRolloutConfig)[name]
    default = _inference_default(name)
    help_text = field_help(name)
    if name in FROM_MODEL:
        help_text += f" (default: the model's {ROLLOUT_FILE}, else {'unset' if default is None else default})"
        annotation, default = typing.Optional[annotation], None  # noqa: UP045 - a runtime type, not an annotation
    return name, annotation, dataclasses.field(default=default, metadata={"help": help_text})


DecodingSettings = dataclasses.make_dataclass(
    "DecodingSettings", [_decoding_field(name) for name in DECODING_FIELDS], kw_only=True
)
DecodingSettings.__module__ = __name__
DecodingSettings.__doc__ = """The `DECODING_FIELDS` of `evaluate simt` and `serve simt` (both configs inherit them).

    Each field is the `SimultaneousRolloutConfig` field of that name, with its type and help; decoding is greedy and a
    step's budget is 60 tokens unless set. `FROM_MODEL` fields default to ``None``: `fill_from_model` reads them.
    """


def save_rollout_settings(config: SimultaneousRolloutConfig, directory: str | Path) -> Path:
    """Write ``config`` to ``directory / ROLLOUT_FILE`` (what `SeqPOTrainer` does on every save); return the path."""
    path = Path(directory) / ROLLOUT_FILE
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def saved_rollout_settings(model: str | Path) -> dict[str, Any]:
    """The rollout settings a SeqPO run saved in the folder ``model`` (`ROLLOUT_FILE`); ``{}`` when it saved none.

    Raises:
        ValueError: The file is not a JSON object of `SimultaneousRolloutConfig` fields (the message names it).
    """
    path = Path(model) / ROLLOUT_FILE
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable as JSON ({error})") from None
    names = {field.name for field in dataclasses.fields(SimultaneousRolloutConfig)}
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object of rollout settings, got {type(saved).__name__}")
    unknown = sorted(set(saved) - names)
    if unknown:
        raise ValueError(f"{path}: {', '.join(unknown)} is not a SimultaneousRolloutConfig field")
    return saved


def fill_from_model(config: Any, model: str | Path) -> None:
    """Set each `FROM_MODEL` field of ``config`` that is ``None`` from ``model``'s `ROLLOUT_FILE`, else the default.

    A value given explicitly is kept. ``system_prompt`` and the step tokens stay ``None`` (the rollout's own
    default) when the model saved none.

    Raises:
        ValueError: The saved file is malformed.
    """
    saved = saved_rollout_settings(model)
    for name in FROM_MODEL:
        if getattr(config, name) is None:
            setattr(config, name, saved.get(name, _inference_default(name)))
