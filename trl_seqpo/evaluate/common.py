"""What `evaluate_simt` and `evaluate_subtitles` share: the settings common to both (`EvalConfig`), the checks
run before any decoding, the engine options, and the record of how the numbers were made (package versions,
hardware, metric models) that goes into `results.json` and `results.md`.

`trl-seqpo evaluate` builds its flags from these dataclasses (`trl_seqpo.cli.evaluate`): each field's `help`
metadata is the flag's help text, and a field `source_lang` is the flag `--source-lang`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from trl_seqpo.errors import MissingDependencyError, UserInputError
from trl_seqpo.secret import mask_credentials

__all__ = [
    "COMET_DEFAULT_MODELS",
    "EvalConfig",
    "check_metric_dependencies",
    "check_resume",
    "refuse_several_processes",
    "metric_models",
    "run_environment",
    "split_names",
]

#: The checkpoint the `comet` / `xcomet` metric loads when `comet_model` is not given (it needs the Hub).
COMET_DEFAULT_MODELS: dict[str, str] = {"comet": "Unbabel/wmt22-comet-da", "xcomet": "Unbabel/XCOMET-XL"}

# packages whose version changes the numbers (a missing one is recorded as null)
_PACKAGES = ("trl-seqpo", "sacrebleu", "torch", "transformers", "trl", "vllm", "unbabel-comet", "bleurt-pytorch")


def split_names(values: str | Sequence[str]) -> tuple[str, ...]:
    """`"bleu,chrf"` or `["bleu", "chrf,comet"]` -> `("bleu", "chrf", "comet")`: lowercase, duplicates dropped.

    Examples:
        >>> split_names(["BLEU,chrf", "comet", "bleu"])
        ('bleu', 'chrf', 'comet')
    """
    items = [values] if isinstance(values, str) else list(values)
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]
    return tuple(dict.fromkeys(names))


@dataclass(kw_only=True)
class EvalConfig:
    """Settings shared by `SimTEvalConfig` and `SubtitleEvalConfig` (model, engine, metrics, output).

    Library errors are `UserInputError`s (a `ValueError`) that name the field; the command line rewords them
    with the flag.
    """

    known_metrics: ClassVar[tuple[str, ...]] = ()

    model: str = field(metadata={"help": "checkpoint folder saved with save_pretrained"})
    output_dir: str | Path = field(metadata={"help": "folder for hypotheses, scores, results.json and results.md"})
    backend: Literal["hf", "vllm"] = field(default="hf", metadata={"help": "generation backend"})
    device: str | None = field(default=None, metadata={"help": "torch device for --backend hf (default: cuda if any)"})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="auto", metadata={"help": "model dtype"})
    gpu_memory_utilization: float | None = field(
        default=None, metadata={"help": "vLLM: share of GPU memory the engine may take (default: vLLM's 0.9)"}
    )
    tensor_parallel_size: int | None = field(
        default=None, metadata={"help": "vLLM: number of GPUs the model is split over (default: 1)"}
    )
    max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM: context length to reserve KV cache for (default: the model's)"}
    )
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    batch_size: int = field(default=32, metadata={"help": "rows decoded together"})
    source_lang: str | None = field(default=None, metadata={"help": "source language (name or code) in prompts"})
    target_lang: str | None = field(
        default=None, metadata={"help": "target language (name or code) in prompts; picks the BLEU tokeniser"}
    )
    metrics: tuple[str, ...] = field(
        default=("bleu", "chrf"), metadata={"help": "metrics to compute (space- or comma-separated)"}
    )
    bleu_tokenizer: str | None = field(
        default=None,
        metadata={"help": "sacrebleu tokeniser for BLEU (default: from --target-lang: zh, ja-mecab or char, 13a)"},
    )
    comet_model: str | None = field(
        default=None, metadata={"help": "COMET/XCOMET checkpoint (adds comet to --metrics)"}
    )
    comet_batch_size: int = field(default=16, metadata={"help": "rows per COMET forward pass"})
    judge: Any = field(default=None, metadata={"help": "a JudgeConfig (the command builds it from --judge-*)"})
    resume: bool = field(default=False, metadata={"help": "keep the finished rows of an interrupted run"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N rows"})
    system_name: str | None = field(default=None, metadata={"help": "name of this system in tables and plots"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        self.metrics = split_names(self.metrics)
        if self.comet_model and not {"comet", "xcomet"} & set(self.metrics):
            self.metrics += ("comet",)
        if self.judge is not None and "judge" not in self.metrics:
            self.metrics += ("judge",)
        unknown = [metric for metric in self.metrics if metric not in self.known_metrics]
        if unknown:
            raise UserInputError(
                f"unknown metric(s) {', '.join(unknown)} in metrics; choose from {', '.join(self.known_metrics)}"
            )
        if "judge" in self.metrics and self.judge is None:
            raise UserInputError("the judge metric needs --judge-base-url (an OpenAI-compatible endpoint)")
        for name in ("batch_size", "comet_batch_size", "limit", "tensor_parallel_size", "max_model_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserInputError(f"{name} must be >= 1, got {value}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UserInputError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.bleu_tokenizer is not None:
            from sacrebleu.metrics import BLEU

            if self.bleu_tokenizer not in BLEU.TOKENIZERS:
                raise UserInputError(
                    f"bleu_tokenizer {self.bleu_tokenizer!r} is not a sacrebleu tokeniser "
                    f"({', '.join(BLEU.TOKENIZERS)})"
                )

    engine_fields: ClassVar[tuple[str, ...]] = (
        "device", "dtype", "seed", "gpu_memory_utilization", "tensor_parallel_size", "max_model_len",
    )  # fmt: skip

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of `trl_seqpo.rollout.loading.load_backend` for this config (its `engine_fields`)."""
        return {name: getattr(self, name) for name in self.engine_fields}


def refuse_several_processes(command: str) -> None:
    """Stop before loading anything when a launcher (`accelerate launch`, `torchrun`) started several processes.

    Evaluation runs in one process by design: every process would decode the whole set and write the same files
    (hypotheses, scores, `results.json`), and the loader puts a whole model copy on each device, so ZeRO-3/FSDP
    sharding never applies to it. A model too large for one GPU is split with `--backend vllm
    --tensor-parallel-size N` inside that one process.

    Raises:
        UserInputError: More than one process runs this job.
    """
    from trl_seqpo.rollout.processes import launched_processes

    count = launched_processes()
    if count > 1:
        raise UserInputError(
            f"`{command}` runs in one process, but {count} were launched (accelerate launch / torchrun, WORLD_SIZE="
            f"{count}): run it as a plain command; split a model too large for one GPU with --backend vllm "
            "--tensor-parallel-size N"
        )


def check_metric_dependencies(metrics: Sequence[str], bleurt_model: str | None = None) -> None:
    """Fail before any decoding when a requested model-based metric cannot run."""
    if {"comet", "xcomet"} & set(metrics):
        from trl_seqpo.rewards.comet import COMET_INSTALL_HINT, comet_available

        if not comet_available():
            raise MissingDependencyError(f"the comet metric needs unbabel-comet: {COMET_INSTALL_HINT}")
    if "bleurt" in metrics:
        from trl_seqpo.evaluate.metrics import BLEURT_INSTALL_HINT

        if importlib.util.find_spec("bleurt_pytorch") is None:
            raise MissingDependencyError(f"the bleurt metric needs bleurt-pytorch: {BLEURT_INSTALL_HINT}")
        if not bleurt_model:
            raise UserInputError("the bleurt metric needs --bleurt-model PATH (a bleurt-pytorch checkpoint)")


def metric_models(config: EvalConfig, bleurt_model: str | None = None) -> dict[str, str]:
    """The model behind each model-based metric of `config` (what a reader needs to reproduce the scores)."""
    models: dict[str, str] = {}
    for metric in ("comet", "xcomet"):
        if metric in config.metrics:
            models[metric.upper()] = config.comet_model or COMET_DEFAULT_MODELS[metric]
    if "bleurt" in config.metrics and bleurt_model:
        models["BLEURT"] = str(bleurt_model)
    if "judge" in config.metrics and config.judge is not None:
        models["Judge"] = f"{config.judge.model} @ {mask_credentials(config.judge.base_url)}"
    return models


def _hardware(backend: str, device: str | None) -> str:
    try:
        import torch

        if backend == "vllm" or (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()):
            if torch.cuda.is_available():
                return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def run_environment(backend: str = "hf", device: str | None = None) -> dict[str, Any]:
    """Package versions, Python, platform and the hardware that decoded (wall-clock latencies depend on it)."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": _hardware(backend, device),
    }


def check_resume(run_dir: Path, settings: dict[str, Any], resume: bool) -> None:
    """Refuse to resume a run folder made with other settings, then record `settings` in its `run.json`.

    Raises:
        UserInputError: `resume` and the folder's `run.json` differs; the message lists what changed.
    """
    import json

    from trl_seqpo.jsonl import atomic_write_json
    from trl_seqpo.outputs import changed_settings

    path = Path(run_dir) / "run.json"
    if resume and path.exists():
        changed = changed_settings(json.loads(path.read_text(encoding="utf-8")), settings)
        if changed:
            raise UserInputError(
                f"--resume: {run_dir} holds a run with other settings ({'; '.join(changed)}); use another "
                "--output-dir or drop --resume to start over"
            )
    atomic_write_json(path, settings)


def decode_pending(
    items: Sequence[Any],
    key: Callable[[Any], str],
    store: Any,
    batch_size: int,
    decode: Callable[[int, list[Any]], list[dict]],
    *,
    desc: str,
    unit: str,
    progress: bool,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Decode, batch by batch, the items whose `key` is not yet in `store`, appending each batch's records to it.

    Batches are cut from `items` before the finished ones are dropped, so a resumed run groups rows (and seeds them
    by `start`) exactly as an uninterrupted one.

    Args:
        items: Everything to decode, in order.
        key: The id of an item, as `store.done` holds it.
        store: A `trl_seqpo.jsonl.ResumableJsonl` (its `done` ids and `append`).
        batch_size: Items per batch.
        decode: `decode(start, batch)` -> one record per item of `batch`; `start` is the batch's offset in `items`.
        desc: Progress-bar label.
        unit: Progress-bar unit.
        progress: Whether to show the progress bar.
        on_batch: Called with the number decoded so far after each batch.

    Returns:
        How many items were decoded now.
    """
    from tqdm.auto import tqdm

    done, generated = store.done, 0
    with tqdm(
        total=len(items),
        initial=sum(key(item) in done for item in items),
        desc=desc,
        unit=unit,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(items), batch_size):
            batch = [item for item in items[start : start + batch_size] if key(item) not in done]
            if not batch:
                continue
            store.append(decode(start, batch))
            generated += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(generated)
    return generated
