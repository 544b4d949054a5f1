"""The ``--judge-*`` flags of ``trl-seqpo alpo sample`` and ``evaluate simt|subtitles``, generated from `JudgeConfig`.

`trl_seqpo.judge.config.JudgeConfig` is the one declaration of the judge's settings: each field's default and help
make one flag (``timeout`` -> ``--judge-timeout``; ``send_seed`` -> ``--judge-seed`` / ``--no-judge-seed``, see
`judge_option`), and `judge_config_from_args` builds the config from them, rewording its errors with the flag. A
command leaves out only the fields it sets itself, each with its reason; ``api_key`` is never a flag.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Mapping
from typing import Any

from trl_seqpo.cli.options import add_dataclass_arguments, config_from_args
from trl_seqpo.errors import UserInputError
from trl_seqpo.judge.config import JudgeConfig, judge_option

__all__ = ["NEVER_A_FLAG", "add_judge_arguments", "judge_config_from_args"]

#: `JudgeConfig` fields that no command turns into a flag, and why.
NEVER_A_FLAG: dict[str, str] = {
    "api_key": "a secret never goes on a command line (shell history, process list): use --judge-api-key-env or "
    "--judge-api-key-file",
}


def add_judge_arguments(
    parser: argparse.ArgumentParser,
    *,
    title: str,
    set_by_command: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
    help_overrides: Mapping[str, str] | None = None,
) -> list[str]:
    """Add a ``--judge-<field>`` flag for every `JudgeConfig` field; return the fields that got one.

    Args:
        parser: The command's parser (the flags go in their own group, ``title``).
        title: The group's title in ``--help``.
        set_by_command: Fields the command sets itself (no flag), each with the reason.
        defaults: The command's own default of a field, where it deliberately differs from `JudgeConfig`'s.
        help_overrides: The command's own help of a field.
    """
    group = parser.add_argument_group(title)
    return add_dataclass_arguments(
        group, JudgeConfig, exclude={**NEVER_A_FLAG, **set_by_command}, defaults=defaults,
        help_overrides=help_overrides, option_name=judge_option,
    )  # fmt: skip


def judge_config_from_args(args: argparse.Namespace, **overrides: Any) -> JudgeConfig:
    """The `JudgeConfig` of the ``--judge-*`` flags in ``args`` plus ``overrides`` (the fields the command sets).

    Raises:
        UserInputError: A refused value (the flag named), a ``--judge-base-url`` that is not an http(s) URL, or a
            key file / variable that does not exist.
    """
    base_url = getattr(args, judge_option("base_url"), None)
    if base_url is not None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserInputError(f"--judge-base-url must be an http(s) URL, got {base_url!r}")
    config = config_from_args(JudgeConfig, args, option_name=judge_option, **overrides)
    config.resolve_api_key()  # a missing key file or variable, before anything is written
    return config
