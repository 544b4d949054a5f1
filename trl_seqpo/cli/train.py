"""``trl-seqpo train RECIPE --config FILE [--FIELD VALUE ...] [accelerate launch options]``: run a shipped recipe.

What it does, and where the other arguments go, is `run`'s docstring (also the command's ``--help``).
"""

from __future__ import annotations

import argparse
import sys

from trl_seqpo.cli.options import add_action
from trl_seqpo.errors import UserInputError
from trl_seqpo.recipes import RECIPES, available_accelerate_configs, available_configs

LAUNCHER_HELP = (
    "accelerate launch options: --num_processes N, --mixed_precision {no,fp16,bf16,fp8}, --config_file FILE, "
    "--accelerate_config NAME|FILE, --multi_gpu, --cpu, --main_process_port PORT, ... (accelerate launch --help); "
    "in the YAML too, e.g. 'accelerate_config: zero3'"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_action(
        subparsers,
        "train",
        run,
        epilog=f"shipped configs: {', '.join(available_configs())}; shipped accelerate configs: "
        f"{', '.join(available_accelerate_configs())}; {LAUNCHER_HELP}",
    )
    parser.add_argument("recipe", choices=list(RECIPES), help="the method to train (seqpo, alpo, sft-simt)")
    parser.add_argument(
        "recipe_args",
        nargs=argparse.REMAINDER,
        metavar="--config FILE [--FIELD VALUE ...] [--num_processes N ...] [--dry_run]",
        help="the run config (a file or a shipped name), overrides of any of its fields (`trl-seqpo train RECIPE "
        "--help` lists them), accelerate launch options, and --dry_run to print the launch command only",
    )


def run(args: argparse.Namespace) -> int:
    """train with a shipped recipe (seqpo, alpo, sft-simt)

    The counterpart of ``trl grpo``/``trl dpo``: the recipe scripts, run configs and accelerate configs travel in the
    wheel (`trl_seqpo.recipes`), so a run needs no clone of the repository. ``--config`` takes a file or the name of
    a shipped config (``seqpo_synthetic``, ``seqpo_en_zh``, ...); every ``--field value`` overrides a field of the
    recipe (``trl-seqpo train seqpo --help`` lists them). Options of ``accelerate launch`` (``--num_processes``,
    ``--mixed_precision``, ``--config_file``, ``--accelerate_config NAME`` for a shipped accelerate config such as
    ``zero3``), on the command line or as keys of the YAML, go to the launcher; the run always goes through
    ``accelerate launch``, in one process when none is given. Settings are checked before anything starts: a
    misspelt field, a bad value, an unreadable config, a tracker that is not installed or an ``output_dir`` holding
    another recipe's or model's checkpoints is one line and exit code 2.
    """
    from trl_seqpo.recipes.launch import launch, launch_args, parse_recipe_args, recipe_parser

    recipe_args = list(args.recipe_args)
    prog = f"trl-seqpo train {args.recipe}"
    if "-h" in recipe_args or "--help" in recipe_args:
        _print_recipe_help(recipe_parser(args.recipe, prog=prog))
        return 0
    if not any(arg == "--config" or arg.startswith("--config=") for arg in recipe_args):
        raise UserInputError(
            f"{prog} needs --config FILE or a shipped config ({', '.join(available_configs())}); "
            f"`{prog} --help` lists the fields"
        )
    dry_run = "--dry_run" in recipe_args
    recipe_args = [arg for arg in recipe_args if arg != "--dry_run"]
    parsed = parse_recipe_args(recipe_parser(args.recipe, prog=prog), recipe_args)
    _check_resume(*parsed.settings)
    return launch(args.recipe, launch_args(parsed.launcher), parsed.script_args, dry_run=dry_run)


def _check_resume(script_args: object, training_args: object, model_args: object) -> None:
    """Refuse another recipe's or model's checkpoints in output_dir before launching (the recipe checks it again and
    logs which checkpoint it resumes from)."""
    from trl_seqpo.recipes import checkpoints

    level = checkpoints.logger.level
    checkpoints.logger.setLevel("ERROR")
    try:
        checkpoints.find_resume_checkpoint(training_args, getattr(model_args, "model_name_or_path", None))
    finally:
        checkpoints.logger.setLevel(level)


def _print_recipe_help(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train with a shipped recipe through `accelerate launch`. Give --config (a file or a shipped config) and "
        "override any field below with --FIELD VALUE."
    )
    parser.epilog = (
        f"shipped configs: {', '.join(available_configs())}. shipped accelerate configs (--accelerate_config): "
        f"{', '.join(available_accelerate_configs())}. {LAUNCHER_HELP}."
    )
    parser.print_help(sys.stdout)
