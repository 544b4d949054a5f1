"""The training recipes shipped inside the package: scripts, run configs and accelerate configs.

Like ``trl grpo``/``trl dpo``, an installed wheel carries everything a run needs; no clone of the repository is
required. ``examples/scripts``, ``examples/configs`` and ``examples/accelerate_configs`` in the repository are links
to the folders here.

* ``scripts/``: one ``TrlParser`` script per method (``seqpo``, ``alpo``, ``sft-simt``).
* ``configs/``: YAML run settings (synthetic CPU smoke runs and the papers' setups).
* ``accelerate_configs/``: ``single_gpu``, ``multi_gpu``, ``zero2``, ``zero3`` and ``fsdp``.

`trl_seqpo.recipes.launch` reads a recipe's settings and runs it under ``accelerate launch`` (``trl-seqpo train``).
"""

from __future__ import annotations

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
