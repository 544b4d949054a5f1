"""Which checkpoint a recipe resumes from: only a complete one, written by the same recipe from the same model.

A run started again with the same ``output_dir`` continues from the newest ``checkpoint-N`` there (the open-r1
pattern). Two things make that wrong, and both are checked here:

* the checkpoint belongs to another run: another recipe (SFT checkpoints in the folder a SeqPO run is given) or
  another starting model. Resuming would load that run's optimizer, scheduler and step count, and the final save
  would overwrite its model. Each checkpoint a recipe writes carries `RUN_RECORD` (the trainer config's class and
  the model); a checkpoint without it is identified by the config class pickled in ``training_args.bin``, read
  without unpickling it.
* the checkpoint is partial: the process was killed while saving it. transformers writes ``trainer_state.json``
  after the weights, optimizer and RNG states, and `RunRecord` writes `RUN_RECORD` after that; a checkpoint
  without a readable ``trainer_state.json`` or without weights is skipped, with a warning, for the newest
  complete one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trl_seqpo.errors import UserInputError
from trl_seqpo.outputs import check_output_folder

logger = logging.getLogger(__name__)

__all__ = ["RUN_RECORD", "RunRecord", "find_resume_checkpoint", "incomplete_reason", "written_by"]

#: written into each checkpoint by `RunRecord`: {"config_class": ..., "model": ...}
RUN_RECORD = "trl_seqpo_run.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin",
            "pytorch_model.bin.index.json", "adapter_model.bin")  # fmt: skip
_RECIPES = {"SFTConfig": "sft-simt", "SeqPOConfig": "seqpo", "ALPOConfig": "alpo"}


def model_id(name: str | os.PathLike[str]) -> str:
    """A model's identity for comparison: the resolved path of a local directory, else the Hub id as given."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else str(name)


class RunRecord(TrainerCallback):
    """Writes `RUN_RECORD` into every checkpoint once transformers has finished saving it (main process only)."""

    def __init__(self, config_class: str, model: str) -> None:
        self.record = {"config_class": config_class, "model": model_id(model)}

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            temporary = folder / f".{RUN_RECORD}.tmp"
            temporary.write_text(json.dumps(self.record), encoding="utf-8")
            os.replace(temporary, folder / RUN_RECORD)


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` is not a complete checkpoint (killed while saving), or ``None`` if it is complete."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    if not isinstance(state, dict) or "global_step" not in state:
        return "trainer_state.json has no global_step"
    has_deepspeed_state = any(path.is_dir() for path in checkpoint.glob("global_step*"))
    if not has_deepspeed_state and not any((checkpoint / name).is_file() for name in _WEIGHTS):
        return "no model weights"
    return None


def _pickled_class(path: Path) -> str | None:
    """The class of the object ``torch.save`` stored in ``path`` (the first global of its pickle), never executed."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            data = archive.read(name)
    except (OSError, zipfile.BadZipFile, StopIteration):
        return None
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name == "GLOBAL":
                return str(argument).split()[-1]
            if opcode.name == "STACK_GLOBAL":
                return strings[-1] if strings else None
            if isinstance(argument, str):
                strings.append(argument)
    except ValueError:
        return None
    return None


def written_by(checkpoint: Path) -> dict[str, str | None]:
    """``{"config_class": ..., "model": ...}`` of the run that wrote ``checkpoint`` (``None`` where unknown)."""
    try:
        record = json.loads((checkpoint / RUN_RECORD).read_text(encoding="utf-8"))
        return {"config_class": record.get("config_class"), "model": record.get("model")}
    except (OSError, ValueError, AttributeError):
        return {"config_class": _pickled_class(checkpoint / "training_args.bin"), "model": None}


def _check_same_run(checkpoint: Path, config_class: str, model: str | None) -> None:
    other = written_by(checkpoint)
    where = f"{checkpoint} was written by"
    advice = "give this run another output_dir (resuming would load that run's optimizer and overwrite its model)"
    if other["config_class"] is not None and other["config_class"] != config_class:
        theirs, ours = (f"{_RECIPES.get(c, 'another')} recipe ({c})" for c in (other["config_class"], config_class))
        raise UserInputError(f"{where} the {theirs}, this is the {ours}: {advice}")
    if model is not None and other["model"] is not None and other["model"] != model_id(model):
        raise UserInputError(f"{where} a run of model {other['model']}, this run trains {model_id(model)}: {advice}")


def find_resume_checkpoint(training_args: Any, model: str | None = None) -> str | None:
    """The checkpoint to resume from, or ``None`` to start from scratch.

    ``training_args.resume_from_checkpoint`` wins when set (it must be a complete checkpoint); otherwise the newest
    complete ``checkpoint-N`` in ``output_dir``, skipping partial ones with a warning. The checkpoint must have been
    written with the same trainer config class and, where recorded, from the same model.

    Args:
        training_args: The trainer's config (its class identifies the recipe).
        model: ``model_name_or_path`` of this run, or ``None`` not to compare models.

    Raises:
        UserInputError: ``resume_from_checkpoint`` is not a complete checkpoint; the checkpoint is another recipe's
            or another model's; ``output_dir`` is the model this run starts from.
    """
    config_class = type(training_args).__name__
    output_dir = Path(training_args.output_dir)
    if model is not None and Path(model).exists() and Path(model).resolve() == output_dir.resolve():
        raise UserInputError(
            f"output_dir {output_dir} is model_name_or_path, the model this run starts from: the final save would "
            "overwrite it; give another output_dir"
        )
    # the guard every command's outputs go through: not a file, not under a file, writable
    check_output_folder(output_dir)
    explicit = getattr(training_args, "resume_from_checkpoint", None)
    if explicit:
        if not Path(explicit).is_dir():
            raise UserInputError(
                f"resume_from_checkpoint={explicit!r} is not a directory: give a checkpoint-N directory written by an "
                "earlier run, or leave it unset to resume from the newest checkpoint in output_dir"
            )
        reason = incomplete_reason(Path(explicit))
        if reason is not None:
            raise UserInputError(f"resume_from_checkpoint={explicit!r} is incomplete ({reason}): pick an earlier one")
        _check_same_run(Path(explicit), config_class, model)
        return str(explicit)
    if not output_dir.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, checkpoint in sorted(numbered, reverse=True):
        if not checkpoint.is_dir():
            continue
        reason = incomplete_reason(checkpoint)
        if reason is not None:
            logger.warning("Skipping %s: incomplete (%s; killed while saving?)", checkpoint, reason)
            continue
        _check_same_run(checkpoint, config_class, model)
        logger.warning("Resuming from %s (the newest complete checkpoint in output_dir)", checkpoint)
        return str(checkpoint)
    return None
