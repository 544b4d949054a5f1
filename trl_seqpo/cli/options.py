"""Command-line flags generated from the library's config dataclasses (one source of every option).

A config dataclass of the library is the single source of a command's options: the flag name, its type, default and
help text all come from the field (``field(default=..., metadata={"help": "..."})``), as TRL's ``TrlParser`` and
open-r1's configs do. One spelling per concept follows: field ``source_lang`` is flag ``--source-lang`` in every
command. Library code raises ``ValueError`` naming the field; `config_from_args` rewords it with the flag.

>>> import argparse
>>> from dataclasses import dataclass, field
>>> @dataclass
... class Toy:
...     num_candidates: int = field(default=15, metadata={"help": "candidates per line"})
...     greedy: bool = False
>>> parser = argparse.ArgumentParser()
>>> add_dataclass_arguments(parser, Toy)
['num_candidates', 'greedy']
>>> config_from_args(Toy, parser.parse_args(["--num-candidates", "3", "--greedy"]))
Toy(num_candidates=3, greedy=True)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from trl_seqpo.errors import UserInputError

T = TypeVar("T")

__all__ = ["add_action", "add_command_group", "add_dataclass_arguments", "config_from_args", "flag_name", "reword"]


def add_action(
    subparsers: Any, name: str, run: Callable[[argparse.Namespace], int | None], **parser_kwargs: Any
) -> argparse.ArgumentParser:
    """Register the command or action ``name`` with the function that runs it; return its parser (for its arguments).

    Every command and action is registered here, so none exists without its function: ``run`` receives the parsed
    `argparse.Namespace` and returns the exit code (`None` for 0). Its docstring is what the user reads, as in
    click and Typer: the first paragraph is the ``help`` line the parent command lists (lower case, no full stop,
    like argparse's own), the rest the ``description`` atop ``--help``. ``parser_kwargs`` go to ``add_parser``
    (e.g. ``epilog``).
    """
    summary, _, details = inspect.cleandoc(run.__doc__ or "").partition("\n\n")
    parser = subparsers.add_parser(name, help=summary, description=details or None, **parser_kwargs)
    parser.set_defaults(func=run)
    return parser


def add_command_group(subparsers: Any, name: str, help: str, description: str) -> Any:
    """Register a command that only groups actions (`trl-seqpo NAME ACTION ...`) and return its sub-parsers.

    Run without an action, the command prints its help on stderr and exits 2.
    """

    def missing_action(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(func=missing_action)
    return parser.add_subparsers(dest=f"{name.replace('-', '_')}_action", metavar="ACTION")


def flag_name(field_name: str) -> str:
    """The flag spelling of a config field: ``source_lang`` -> ``--source-lang``."""
    return "--" + field_name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _argument_kwargs(field: dataclasses.Field, annotation: Any, default: Any = dataclasses.MISSING) -> dict[str, Any]:
    help_text = field.metadata.get("help", "")
    if default is dataclasses.MISSING:
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
    else:  # the command's own default, in the namespace like a given flag
        kwargs = {"default": default, "help": help_text}
    annotation, optional = _unwrap_optional(annotation)
    if default is not None and not isinstance(default, bool):
        kwargs["help"] = f"{help_text} (default: {default})" if help_text else f"default: {default}"
    origin = get_origin(annotation)
    if "choices" in field.metadata:
        kwargs["choices"] = field.metadata["choices"]
    if annotation is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if _is_dict(annotation):  # JSON text, parsed by `config_from_args`
        kwargs["metavar"] = "JSON"
        return kwargs
    if origin is Literal:
        choices = get_args(annotation)
        kwargs["choices"] = choices
        kwargs["type"] = type(choices[0])
        return kwargs
    if origin in (tuple, list):
        item_types = [a for a in get_args(annotation) if a is not Ellipsis] or [str]
        kwargs["nargs"] = "+"
        kwargs["type"] = item_types[0]
        return kwargs
    if annotation in (int, float, str):
        kwargs["type"] = annotation
    return kwargs


def _same_name(name: str) -> str:
    return name


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_cls: type,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    required: Iterable[str] = (),
    help_overrides: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    option_name: Callable[[str], str] = _same_name,
) -> list[str]:
    """Add one ``--flag`` per field of ``config_cls`` (dataclass) to ``parser``; return the fields that got one.

    Args:
        parser: An argparse parser or argument group.
        config_cls: The config dataclass.
        include: Only these fields (default: all but ``exclude``).
        exclude: Fields that get no flag (set by the command itself).
        required: Fields whose flag must be given.
        help_overrides: Help text that replaces the field's own for this command.
        defaults: This command's own default of a field (instead of the dataclass's).
        option_name: The option of a field (its ``dest``; the flag is its `flag_name`), e.g. with a prefix
            (``timeout`` -> ``judge_timeout`` -> ``--judge-timeout``); `config_from_args` takes the same function.

    Flags that the user does not give are absent from the namespace, so the dataclass default applies; the help
    text shows the default. A ``dict`` field takes JSON text.
    """
    hints = typing.get_type_hints(config_cls)
    wanted = set(include) if include is not None else None
    skip, needed, own_defaults = set(exclude), set(required), dict(defaults or {})
    added = []
    for field in dataclasses.fields(config_cls):
        if not field.init or field.name in skip or (wanted is not None and field.name not in wanted):
            continue
        kwargs = _argument_kwargs(field, hints[field.name], own_defaults.get(field.name, dataclasses.MISSING))
        if help_overrides and field.name in help_overrides:
            kwargs["help"] = help_overrides[field.name]
        if field.name in needed:
            kwargs["required"] = True
        dest = option_name(field.name)
        parser.add_argument(flag_name(dest), dest=dest, **kwargs)
        added.append(field.name)
    return added


def reword(message: str, field_names: Iterable[str], option_name: Callable[[str], str] = _same_name) -> str:
    """Replace the config field names in a library error message by their flag spelling."""
    for name in sorted(set(field_names), key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag_name(option_name(name)), message)
    return message


def _is_dict(annotation: Any) -> bool:
    annotation = _unwrap_optional(annotation)[0]
    return annotation is dict or get_origin(annotation) is dict


def _parse_json(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object, got {value}")
    return parsed


def config_from_args(
    config_cls: Callable[..., T], args: argparse.Namespace, *, option_name: Callable[[str], str] = _same_name,
    **overrides: Any,
) -> T:  # fmt: skip
    """Build ``config_cls`` from the flags present in ``args`` (plus ``overrides``).

    ``option_name`` maps a field to its option, as in `add_dataclass_arguments`.

    Raises:
        UserInputError: The config refused a value; the message names the flag.
    """
    fields = [f for f in dataclasses.fields(config_cls) if f.init]  # type: ignore[arg-type]
    names = [f.name for f in fields]
    values = {name: getattr(args, option_name(name)) for name in names if hasattr(args, option_name(name))}
    values.update(overrides)
    hints = typing.get_type_hints(config_cls)
    try:
        for name, value in list(values.items()):
            if isinstance(value, list):  # nargs="+" gives a list; configs keep tuples
                values[name] = tuple(value)
            elif _is_dict(hints[name]):
                values[name] = _parse_json(name, value)
        return config_cls(**values)
    except ValueError as exc:
        raise UserInputError(reword(str(exc), names, option_name)) from None
