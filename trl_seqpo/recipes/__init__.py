"""The training recipes shipped inside the package: scripts, run configs and accelerate configs.

Like ``trl grpo``/``trl dpo``, an installed wheel carries everything a run needs; no clone of the repository is
required. ``examples/scripts``, ``examples/configs`` and ``examples/accelerate_configs`` in the repository are links
to the folders here.

* ``scripts/``: one ``TrlParser`` script per method (``seqpo``, ``alpo``, ``sft-simt``).
* ``configs/``: YAML run settings (synthetic CPU smoke runs and the papers' setups).
* ``accelerate_configs/``: ``single_gpu``, ``multi_gpu``, ``zero2``, ``zero3`` and ``fsdp``.

`launch_command` builds the ``accelerate launch`` command that ``trl-seqpo train`` runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from trl_seqpo.errors import UserInputError

RECIPES_DIR = Path(__file__).resolve().parent
SCRIPTS_DIR = RECIPES_DIR / "scripts"
CONFIGS_DIR = RECIPES_DIR / "configs"
ACCELERATE_CONFIGS_DIR = RECIPES_DIR / "accelerate_configs"

#: recipe name (as typed after ``trl-seqpo train``) -> script file in ``scripts/``
RECIPES: dict[str, str] = {"seqpo": "seqpo.py", "alpo": "alpo.py", "sft-simt": "sft_simt.py"}


def recipe_script(name: str) -> Path:
    """The script of a recipe.

    Args:
        name: One of `RECIPES` (``seqpo``, ``alpo``, ``sft-simt``).

    Returns:
        The path of the script inside the installed package.

    Examples:
        >>> recipe_script("seqpo").name
        'seqpo.py'
    """
    if name not in RECIPES:
        raise UserInputError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return SCRIPTS_DIR / RECIPES[name]


def available_configs() -> list[str]:
    """Names of the shipped run configs (``configs/*.yaml`` without the suffix), sorted."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.yaml"))


def available_accelerate_configs() -> list[str]:
    """Names of the shipped accelerate configs (``accelerate_configs/*.yaml`` without the suffix), sorted.

    Examples:
        >>> available_accelerate_configs()
        ['fsdp', 'multi_gpu', 'single_gpu', 'zero2', 'zero3']
    """
    return sorted(path.stem for path in ACCELERATE_CONFIGS_DIR.glob("*.yaml"))


def resolve_config(value: str | Path) -> Path:
    """A run config: an existing file, or the name of a shipped one (``seqpo_synthetic`` or ``seqpo_synthetic.yaml``).

    Raises:
        UserInputError: Neither a file nor a shipped config.
    """
    return _resolve(value, CONFIGS_DIR, available_configs(), "config")


def resolve_accelerate_config(value: str | Path) -> Path:
    """An accelerate config: an existing file, or the name of a shipped one (``zero3``, ``fsdp``, ...).

    Raises:
        UserInputError: Neither a file nor a shipped accelerate config.
    """
    return _resolve(value, ACCELERATE_CONFIGS_DIR, available_accelerate_configs(), "accelerate config")


def _resolve(value: str | Path, folder: Path, names: list[str], what: str) -> Path:
    path = Path(value)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in names:
        return folder / f"{name}.yaml"
    raise UserInputError(f"{what} {str(value)!r} is neither a file nor a shipped {what} ({', '.join(names)})")


def launch_command(
    recipe: str,
    config: str | Path,
    accelerate_config: str | Path | None = None,
    extra_args: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The command that runs a recipe: ``accelerate launch --config_file ... SCRIPT --config ...``.

    Without an accelerate config the script runs in this Python (one process), as ``python SCRIPT --config ...``.

    Args:
        recipe: A name of `RECIPES`.
        config: A run config file or the name of a shipped one.
        accelerate_config: An accelerate config file, the name of a shipped one, or ``None``.
        extra_args: Further ``--field value`` overrides for the script (TrlParser flags).
        python: The interpreter (default: the running one).

    Returns:
        The argument vector.

    Examples:
        >>> command = launch_command("seqpo", "seqpo_synthetic", "zero3", ["--max_steps", "2"], python="python")
        >>> command[:4]
        ['python', '-m', 'accelerate.commands.launch', '--config_file']
        >>> [Path(part).name for part in command[4:]]
        ['zero3.yaml', 'seqpo.py', '--config', 'seqpo_synthetic.yaml', '--max_steps', '2']
    """
    script = recipe_script(recipe)
    run_config = resolve_config(config)
    python = python or sys.executable
    if accelerate_config is None:
        head = [python, str(script)]
    else:
        launch = resolve_accelerate_config(accelerate_config)
        head = [python, "-m", "accelerate.commands.launch", "--config_file", str(launch), str(script)]
    return [*head, "--config", str(run_config), *extra_args]
