"""What every training recipe does before and around ``trainer.train()``: resume, model options, backend checks.

The recipes (``trl_seqpo/recipes/scripts/*.py``) call these three functions so that they behave the same way:

* `resume_checkpoint` - the open-r1 pattern: an explicit ``--resume_from_checkpoint PATH`` wins; otherwise a
  run started again with the same ``output_dir`` continues from the newest complete ``checkpoint-N`` there, so a
  killed job is restarted with the very same command and never overwrites the checkpoints it already wrote; another
  recipe's or another model's checkpoints are refused (`trl_seqpo.recipes.checkpoints`).
* `check_model_backends` - an attention kernel or quantisation library the config asks for but that is not
  installed is an error before anything is loaded (transformers would otherwise fail late, or a user would find out
  from the speed of the run).
* `run_recipe` - a mistake the user can fix ends the run with one line and exit code 2.
* `ensure_tiny_model` - a smoke-test model built once (on the main process) where the configured one is missing.
* `train_and_save` - the tokenizer, the trainer (with TRL's PEFT and quantisation configs), training from the
  resume checkpoint, and the final save, identical for every recipe.
* `model_init_kwargs` - ``model_revision``, ``trust_remote_code``, ``attn_implementation`` and ``dtype`` as
  ``from_pretrained`` keyword arguments; quantisation (``load_in_4bit``/``load_in_8bit``) reaches the trainer through
  TRL's ``get_quantization_config``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trl_seqpo.errors import MissingDependencyError, UserInputError

logger = logging.getLogger(__name__)

# attn_implementation value -> (importable module that provides it, what to install)
_ATTENTION_BACKENDS = {
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": ("flash_attn_interface", "build flash-attention 3 from its hopper/ directory"),
}
_KERNELS_HINT = "pip install kernels (attention kernels from the Hub need the `kernels` package)"


def resume_checkpoint(training_args: Any, model: str | None = None) -> str | None:
    """The checkpoint a recipe resumes from, or ``None`` to start from scratch.

    ``training_args.resume_from_checkpoint`` wins when set (it must exist and be complete); otherwise the newest
    complete ``checkpoint-N`` directory in ``training_args.output_dir``; a partial one (killed while saving) is
    skipped with a warning. A checkpoint of another recipe or another model is refused
    (`trl_seqpo.recipes.checkpoints.find_resume_checkpoint`).

    Args:
        training_args: A ``TrainingArguments`` (any TRL config).
        model: ``model_name_or_path`` of this run (compared with the one the checkpoint recorded).

    Returns:
        A checkpoint directory for ``trainer.train(resume_from_checkpoint=...)``, or ``None``.

    Raises:
        UserInputError: ``resume_from_checkpoint`` names a directory that does not exist or is incomplete, or the
            checkpoint belongs to another recipe or model.

    Examples:
        >>> from types import SimpleNamespace
        >>> resume_checkpoint(SimpleNamespace(resume_from_checkpoint=None, output_dir="/nonexistent")) is None
        True
    """
    from trl_seqpo.recipes.checkpoints import find_resume_checkpoint

    return find_resume_checkpoint(training_args, model)


def check_model_backends(model_args: Any) -> None:
    """Fail before training when the model options need a library that is not installed.

    Args:
        model_args: TRL's ``ModelConfig`` (``attn_implementation``, ``load_in_4bit``, ``load_in_8bit``).

    Raises:
        MissingDependencyError: ``attn_implementation`` needs flash-attn (or the ``kernels`` package for a Hub
            kernel such as ``kernels-community/flash-attn``), or 4-/8-bit loading needs bitsandbytes.
        UserInputError: Both ``load_in_4bit`` and ``load_in_8bit`` are set.

    Examples:
        >>> from types import SimpleNamespace
        >>> check_model_backends(SimpleNamespace(attn_implementation="sdpa", load_in_4bit=False, load_in_8bit=False))
    """
    attention = getattr(model_args, "attn_implementation", None)
    if attention in _ATTENTION_BACKENDS:
        module, hint = _ATTENTION_BACKENDS[attention]
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"attn_implementation={attention!r} needs the {module} package, which is not installed ({hint}); "
                "or use attn_implementation: sdpa"
            )
    elif attention and "/" in attention and importlib.util.find_spec("kernels") is None:
        raise MissingDependencyError(f"attn_implementation={attention!r}: {_KERNELS_HINT}")
    four, eight = bool(getattr(model_args, "load_in_4bit", False)), bool(getattr(model_args, "load_in_8bit", False))
    if four and eight:
        raise UserInputError("set at most one of load_in_4bit and load_in_8bit")
    if (four or eight) and importlib.util.find_spec("bitsandbytes") is None:
        flag = "load_in_4bit" if four else "load_in_8bit"
        raise MissingDependencyError(
            f"{flag}=true needs bitsandbytes, which is not installed (pip install 'trl[quantization]' or "
            "pip install bitsandbytes); or drop the flag"
        )


def model_init_kwargs(model_args: Any, training_args: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments of the policy from TRL's ``ModelConfig``, as ``trl grpo`` builds them.

    The result goes into the trainer config's ``model_init_kwargs`` (the model is passed to the trainer by name);
    4-/8-bit loading goes to the trainer's ``quantization_config`` argument (``trl.get_quantization_config``), as
    in TRL's own scripts. Values already in ``training_args.model_init_kwargs`` win.

    Args:
        model_args: TRL's ``ModelConfig`` (``model_revision``, ``attn_implementation``, ``dtype``).
        training_args: The trainer's config (``trust_remote_code``, ``model_init_kwargs``).

    Returns:
        Keyword arguments for ``AutoModelForCausalLM.from_pretrained``.

    Examples:
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(model_revision="main", attn_implementation="sdpa", dtype="bfloat16")
        >>> model_init_kwargs(model, SimpleNamespace(trust_remote_code=False, model_init_kwargs={"dtype": "float32"}))
        {'revision': 'main', 'trust_remote_code': False, 'dtype': 'float32', 'attn_implementation': 'sdpa'}
    """
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "trust_remote_code": bool(getattr(training_args, "trust_remote_code", False)),
        "dtype": model_args.dtype or "auto",
    }
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    kwargs.update(getattr(training_args, "model_init_kwargs", None) or {})
    return kwargs


def load_tokenizer(model_args: Any, training_args: Any) -> Any:
    """The tokenizer of ``model_args.model_name_or_path`` at ``model_revision``, with ``trust_remote_code``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=bool(getattr(training_args, "trust_remote_code", False)),
    )


def ensure_tiny_model(enabled: bool, model_args: Any, training_args: Any, **tiny_model_kwargs: Any) -> None:
    """Build an untrained tiny model at ``model_name_or_path`` when ``enabled`` and that directory is missing.

    Only the main process writes it; every process waits for it when ``enabled``.

    Args:
        enabled: The recipe's ``build_tiny_model`` option.
        model_args: TRL's ``ModelConfig``.
        training_args: The TRL config (gives ``process_index``, ``distributed_state`` and ``seed``).
        **tiny_model_kwargs: Passed to `trl_seqpo.synthetic.tiny_models.save_tiny_model` (e.g. ``kind``).
    """
    if not enabled:
        return
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    model_path = Path(model_args.model_name_or_path)
    if not model_path.exists() and training_args.process_index == 0:
        save_tiny_model(model_path, seed=training_args.seed, **tiny_model_kwargs)
    training_args.distributed_state.wait_for_everyone()


def train_and_save(
    trainer_class: type,
    model_args: Any,
    training_args: Any,
    train_dataset: Any,
    eval_dataset: Any,
    checkpoint: str | None,
    **trainer_kwargs: Any,
) -> Any:
    """Build ``trainer_class`` on the configured model, train (resuming from ``checkpoint``) and save it.

    Sets ``training_args.model_init_kwargs`` from `model_init_kwargs`, loads the tokenizer with `load_tokenizer` and
    passes TRL's ``get_peft_config``/``get_quantization_config`` of ``model_args``.

    Args:
        trainer_class: A TRL trainer class (``SFTTrainer``, ``SeqPOTrainer``, ``ALPOTrainer``).
        model_args: TRL's ``ModelConfig``.
        training_args: The trainer's config.
        train_dataset: The training rows.
        eval_dataset: The evaluation rows, or ``None``.
        checkpoint: What `resume_checkpoint` returned.
        **trainer_kwargs: Further keyword arguments of the trainer (e.g. ``pair_stats``).

    Returns:
        The trainer, after ``train()`` and ``save_model(output_dir)``.
    """
    from trl import get_peft_config, get_quantization_config

    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    tokenizer = load_tokenizer(model_args, training_args)
    trainer = trainer_class(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        **trainer_kwargs,
    )
    from trl_seqpo.recipes.checkpoints import RunRecord

    trainer.add_callback(RunRecord(type(training_args).__name__, model_args.model_name_or_path))
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    return trainer


def check_utf8(path: str | Path) -> None:
    """Refuse a text data file that is not UTF-8, naming the file and the byte offset (read in 1 MiB blocks).

    Raises:
        UserInputError: The file is not valid UTF-8.
    """
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            try:
                decoder.decode(block)
                offset += len(block)
            except UnicodeDecodeError as error:
                raise UserInputError(
                    f"not UTF-8 (byte 0x{block[error.start]:02x} at offset {offset + error.start}): re-save the "
                    "file as UTF-8",
                    path=str(path),
                ) from None
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UserInputError("not UTF-8 (cut inside a character at the end)", path=str(path)) from None


def check_columns(dataset: Any, columns: dict[str, str], where: str, advice: str | None = None) -> None:
    """Refuse a dataset that lacks a column a recipe needs, naming the setting that chooses it.

    Args:
        dataset: A ``datasets.Dataset``.
        columns: Setting name -> column it names (e.g. ``{"source_column": "source"}``).
        where: The dataset's file or name, for the message.
        advice: What to do instead (default: rename the column or change the setting).

    Raises:
        UserInputError: A column is missing.
    """
    for setting, column in columns.items():
        if column not in dataset.column_names:
            raise UserInputError(
                f"dataset {where} has no column {column!r} (its columns: {', '.join(dataset.column_names)}); "
                f"{advice or f'rename it or set {setting}'}"
            )


def run_recipe(main: Callable[..., None], parser: Any, args: list[str] | None = None) -> None:
    """Read a recipe's settings and run its ``main``; a mistake the user can fix exits with code 2 and one line.

    The settings are read with `trl_seqpo.recipes.launch.parse_recipe_args` (a misspelt field or a bad value is one
    line naming it); ``accelerate launch`` options in the YAML (``accelerate_config: zero3``) are for the launcher
    (``trl-seqpo train``) and are ignored here.

    Args:
        main: The recipe's ``main(script_args, training_args, model_args)``.
        parser: The recipe's ``TrlParser`` (its ``make_parser()``).
        args: The command line (default: ``sys.argv[1:]``).
    """
    from trl_seqpo.recipes.launch import parse_recipe_args

    try:
        parsed = parse_recipe_args(parser, sys.argv[1:] if args is None else args)
        if parsed.launcher:
            logger.info("accelerate launch options %s are for the launcher; ignored here", parsed.launcher)
        main(*parsed.settings)
    except (UserInputError, MissingDependencyError, FileNotFoundError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None
