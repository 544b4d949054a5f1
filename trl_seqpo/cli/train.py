"""``trl-seqpo train RECIPE --config FILE [--accelerate_config NAME]``: run a recipe shipped in the package.

What it does, and where the other arguments go, is `run`'s docstring (also the command's ``--help``).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from trl_seqpo.cli.options import add_action
from trl_seqpo.recipes import RECIPES, available_accelerate_configs, available_configs, launch_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_action(
        subparsers,
        "train",
        run,
        epilog=f"shipped configs: {', '.join(available_configs())}; accelerate configs: "
        f"{', '.join(available_accelerate_configs())}",
    )
    parser.add_argument("recipe", choices=list(RECIPES), help="the method to train")
    parser.add_argument(
        "recipe_args",
        nargs=argparse.REMAINDER,
        metavar="--config FILE [--accelerate_config NAME] [--dry_run] [--FIELD VALUE ...]",
        help="the run config (a file or a shipped name), the accelerate config, and overrides of any config field",
    )


def run(args: argparse.Namespace) -> int:
    """train with a shipped recipe (seqpo, alpo, sft-simt)

    The counterpart of ``trl grpo``/``trl dpo``: the recipe scripts, run configs and accelerate configs travel in the
    wheel (`trl_seqpo.recipes`), so a run needs no clone of the repository. ``--config`` and ``--accelerate_config``
    take a file or the name of a shipped one (``seqpo_en_zh``, ``zero3``, ``fsdp``, ...); every other ``--field value``
    goes to the recipe's ``TrlParser`` and overrides the config. Without ``--accelerate_config`` the recipe runs in one
    process with this Python.
    """
    launcher = argparse.ArgumentParser(prog=f"trl-seqpo train {args.recipe}", add_help=False)
    launcher.add_argument("--config", required=True)
    launcher.add_argument("--accelerate_config", default=None)
    launcher.add_argument("--dry_run", action="store_true")
    known, overrides = launcher.parse_known_args(args.recipe_args)
    command = launch_command(args.recipe, known.config, known.accelerate_config, overrides)
    print(shlex.join(command), file=sys.stderr)
    if known.dry_run:
        return 0
    return subprocess.call(command)
