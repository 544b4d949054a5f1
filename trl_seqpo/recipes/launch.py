"""Reading a recipe's settings and launching it under ``accelerate launch``, as ``trl grpo``/``trl dpo`` do.

A recipe's settings come from its ``TrlParser`` (script arguments, the trainer's config, TRL's ``ModelConfig``): the
``--config`` YAML sets the defaults and ``--field value`` flags override them. What is not a field of those
dataclasses but is an option of ``accelerate launch`` (``--num_processes 2``, ``--mixed_precision bf16``,
``--config_file FILE``, or ``--accelerate_config NAME`` for a shipped accelerate config), on the command line or as a
YAML key (``accelerate_config: zero3``), goes to the launcher. Anything else is a mistake, reported in one line that
names it (`UserInputError`), as is a bad value or a config file that cannot be read.

* `recipe_parser` - the ``TrlParser`` of a recipe (its script's ``make_parser``).
* `parse_recipe_args` - the settings and the launcher options of one command line.
* `launch_args` - the ``accelerate launch`` options: a shipped accelerate config resolved, one process by default.
* `launch` - run the recipe through accelerate's launcher and return its exit code.
"""

from __future__ import annotations

import difflib
import importlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from trl_seqpo.errors import UserInputError
from trl_seqpo.recipes import RECIPES, recipe_script, resolve_accelerate_config, resolve_config
from trl_seqpo.recipes.runtime import check_model_backends

__all__ = [
    "RecipeArgs",
    "check_trackers",
    "launch",
    "launch_args",
    "launcher_options",
    "parse_recipe_args",
    "recipe_parser",
]

#: ``accelerate launch`` options that ``trl-seqpo train`` fills when none of them is given (one local process)
SINGLE_PROCESS = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


class RecipeArgs(NamedTuple):
    """What `parse_recipe_args` read from one command line."""

    settings: tuple[Any, ...]  # the recipe's dataclasses (script arguments, trainer config, ModelConfig)
    launcher: list[str]  # accelerate launch options, from the YAML then from the command line
    script_args: list[str]  # the command line less its launcher options, --config resolved to a file


def recipe_parser(recipe: str, prog: str | None = None) -> Any:
    """The ``TrlParser`` of a recipe (``seqpo``, ``alpo``, ``sft-simt``), from its script's ``make_parser``."""
    recipe_script(recipe)  # an unknown name is a UserInputError
    module = importlib.import_module(f"trl_seqpo.recipes.scripts.{Path(RECIPES[recipe]).stem}")
    return module.make_parser(prog=prog)


def launcher_options() -> dict[str, int]:
    """``accelerate launch`` options (and ``--accelerate_config``) -> how many values each takes (0 for a switch)."""
    from accelerate.commands.launch import launch_command_parser

    options = {"--accelerate_config": 1}
    for action in launch_command_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                options[option] = 0 if action.nargs == 0 else 1
    return options


def _raise_user_error(message: str) -> None:
    raise UserInputError(message)


def _unknown(name: str, where: str, known: Sequence[str]) -> UserInputError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserInputError(
        f"unknown field {name!r} {where}{hint}: neither a setting of this recipe nor a launcher option"
    )


def _split_launcher(
    config_remaining: list[str], cli_remaining: list[str], fields: list[str], config: str
) -> tuple[list[str], list[str]]:
    """The launcher's share of what the recipe's dataclasses did not take, from the YAML and from the command line;
    anything else is an error naming it."""
    options = launcher_options()
    known = fields + [option[2:] for option in options]
    launcher: list[str] = []
    for key, value in zip(config_remaining[::2], config_remaining[1::2]):  # YAML keys come as ("--key", "value")
        if key not in options:
            raise _unknown(key[2:], f"in config {config}", known)
        if options[key] == 0:
            launcher += [key] if value.lower() in ("true", "1", "yes") else []
        else:
            launcher += [key, value]
    from_config, launcher = launcher, []
    index = 0
    while index < len(cli_remaining):
        token = cli_remaining[index]
        key = token.split("=", 1)[0]
        if not key.startswith("--"):
            raise UserInputError(f"unexpected argument {token!r}: settings are given as --field value")
        if key not in options:
            raise _unknown(key.lstrip("-"), "on the command line", known)
        taken = 1 if "=" in token else 1 + options[key]
        if index + taken > len(cli_remaining):
            raise UserInputError(f"{key} needs a value")
        launcher += cli_remaining[index : index + taken]
        index += taken
    return from_config, launcher


def _subtract(args: list[str], subsequence: list[str]) -> list[str]:
    """``args`` less the ordered ``subsequence`` (the launcher options the recipe's parser left, in their order)."""
    rest, pending = [], list(subsequence)
    for arg in args:
        if pending and arg == pending[0]:
            pending.pop(0)
        else:
            rest.append(arg)
    return rest


def check_trackers(report_to: str | list[str] | None) -> None:
    """Refuse a ``report_to`` tracker that transformers does not know or whose package is not installed.

    Examples:
        >>> check_trackers(["none"])
        >>> check_trackers("tensorbord")
        Traceback (most recent call last):
        ...
        trl_seqpo.errors.UserInputError: report_to: unknown tracker 'tensorbord' (did you mean 'tensorboard'?)
    """
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = get_available_reporting_integrations()
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            close = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f" (one of {', '.join(sorted(INTEGRATION_TO_CALLBACK))})"
            )
            raise UserInputError(f"report_to: unknown tracker {name!r}{hint}")
        if name not in available:
            raise UserInputError(
                f"report_to: {name} needs the {name} package, which is not installed (pip install {name}); "
                "or set report_to: none"
            )


def _check_names(parser: Any, config: dict, args: list[str], where: str) -> None:
    """Refuse an unknown YAML key or flag before any value is read (a misspelt field is named, not a side effect)."""
    options = launcher_options()
    flags = {option for action in parser._actions for option in action.option_strings}
    known = sorted({action.dest for action in parser._actions if action.option_strings} | {o[2:] for o in options})
    for key in config:
        if key != "env" and f"--{key}" not in flags and f"--{key}" not in options:
            raise _unknown(str(key), f"in config {where}", known)
    for arg in args:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and name not in flags and name not in options:
            raise _unknown(name[2:], "on the command line", known)


def parse_recipe_args(parser: Any, args: Sequence[str]) -> RecipeArgs:
    """A recipe's settings and its launcher options, from a command line such as ``--config seqpo_synthetic ...``.

    ``--config`` takes a file or the name of a shipped config. Mistakes raise `UserInputError` with one line naming
    the field or the file: an unknown field (with the closest known name), a value of the wrong type or out of
    range, a config file that does not exist, is not YAML or not a mapping.

    Args:
        parser: The recipe's ``TrlParser`` (`recipe_parser`).
        args: The command line after the recipe's name.

    Returns:
        A `RecipeArgs`: the parsed dataclasses (as ``parse_args_and_config`` returns them), the ``accelerate launch``
        options found among the YAML keys and the arguments (not resolved; see `launch_args`), and the arguments for
        the recipe's script.

    Raises:
        UserInputError: As above.
    """
    import yaml

    args = [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
    config = "(none)"
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise UserInputError("--config needs a file or the name of a shipped config")
        path = resolve_config(args[index + 1])
        config = str(path)
        del args[index : index + 2]
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise UserInputError(f"cannot read it: {str(error).splitlines()[0]}", path=config) from None
        if not isinstance(loaded, dict):
            raise UserInputError("a run config must be a YAML mapping of field: value", path=config)
    _check_names(parser, loaded if config != "(none)" else {}, args, config)
    parser.error = _raise_user_error  # argparse's usage-and-exit becomes one line naming the flag
    parser.allow_abbrev = False  # a misspelt or shortened field is an error, not a guess
    try:
        *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
            ([] if config == "(none)" else ["--config", config]) + args,
            return_remaining_strings=True,
            separate_remaining_strings=True,
        )
    except UserInputError:
        raise
    except (ValueError, TypeError, ArithmeticError) as error:  # a config's own checks (``__post_init__``)
        message = " ".join(str(error).split())
        raise UserInputError(f"invalid setting (config {config} and the command line): {message}") from None
    for settings in parsed:
        if hasattr(settings, "report_to"):
            check_trackers(settings.report_to)
        if hasattr(settings, "load_in_4bit"):
            check_model_backends(settings)
    fields = [action.dest for action in parser._actions if action.option_strings]
    from_config, from_cli = _split_launcher(config_remaining, cli_remaining, fields, config)
    script_args = _subtract(list(args), cli_remaining)
    if config != "(none)":
        script_args[:0] = ["--config", config]
    return RecipeArgs(tuple(parsed), from_config + from_cli, script_args)


def launch_args(launcher: Sequence[str]) -> list[str]:
    """The ``accelerate launch`` options of a run.

    ``--accelerate_config NAME`` becomes ``--config_file PATH`` (a file, or a shipped accelerate config; the command
    line's wins over the YAML's). With no
    accelerate config (neither given nor made by ``accelerate config``) and no ``--num_processes``, the run is one
    local process (`SINGLE_PROCESS` fills what is missing).

    Examples:
        >>> launch_args(["--mixed_precision", "bf16"])
        ['--mixed_precision', 'bf16', '--num_processes', '1', '--num_machines', '1', '--dynamo_backend', 'no']
    """
    from accelerate.commands.config import default_config_file

    launcher, chosen = list(launcher), None
    while "--accelerate_config" in launcher:  # the command line's (last) wins over the YAML's
        index = launcher.index("--accelerate_config")
        chosen = launcher[index + 1]
        del launcher[index : index + 2]
    if chosen is not None:
        launcher[:0] = ["--config_file", str(resolve_accelerate_config(chosen))]
    if "--config_file" in launcher:
        path = Path(launcher[launcher.index("--config_file") + 1])
        if not path.is_file():
            raise UserInputError(f"accelerate config file {str(path)!r} does not exist")
    elif not Path(default_config_file).is_file():
        for key, value in zip(SINGLE_PROCESS[::2], SINGLE_PROCESS[1::2]):
            if key not in launcher:
                launcher += [key, value]
    return launcher


def launch(recipe: str, launcher: Sequence[str], script_args: Sequence[str], dry_run: bool = False) -> int:
    """Run ``accelerate launch LAUNCHER SCRIPT SCRIPT_ARGS`` in this process (as ``trl`` does); return its exit code.

    The equivalent command is printed on stderr first. A failed training process returns its own exit code (2 for a
    mistake it reported in one line), without accelerate's traceback.
    """
    from accelerate.commands.launch import launch_command, launch_command_parser

    script = str(recipe_script(recipe))
    argv = [*launcher, script, *script_args]
    parser = launch_command_parser()
    parser.error = _raise_user_error
    accelerate_args = parser.parse_args(argv)
    print(" ".join(["accelerate launch", *(_quote(arg) for arg in argv)]), file=sys.stderr)
    if dry_run:
        return 0
    try:
        launch_command(accelerate_args)
    except subprocess.CalledProcessError as error:
        return error.returncode
    except ValueError as error:  # accelerate's own checks of the options (e.g. --multi_gpu with one process)
        raise UserInputError(f"accelerate launch: {' '.join(str(error).split())}") from None
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
