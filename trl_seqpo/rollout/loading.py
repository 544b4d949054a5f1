"""The one checkpoint -> generation backend loader, for every command that decodes outside training.

`load_backend` turns a model folder saved with `save_pretrained` into a `LoadedModel`: the tokenizer, a
`GenerationBackend` (`"hf"`: transformers `generate`; `"vllm"`: an in-process vLLM engine) and the model's own
end-of-generation token ids (vLLM requests ignore EOS, so callers pass these as stop ids). `LoadedModel.close`
frees the model and its GPU memory, so a model-based metric (COMET, BLEURT) can be loaded next in the same process.

Heavy imports (torch, transformers, vLLM) happen inside the functions.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = ["BACKENDS", "DTYPES", "LoadedModel", "eos_token_ids", "load_backend", "release_backend"]

BACKENDS: tuple[str, ...] = ("hf", "vllm")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A checkpoint behind a generation backend.

    Attributes:
        backend: The `GenerationBackend` (`HFGenerationBackend` or `VLLMGenerationBackend`).
        tokenizer: The checkpoint's tokenizer.
        stop_token_ids: End-of-generation ids of the tokenizer and the generation config, sorted.
        path: The checkpoint as given.
    """

    backend: Any
    tokenizer: Any
    stop_token_ids: list[int] = field(default_factory=list)
    path: str = ""

    def close(self) -> None:
        """Free the model (and, for vLLM, the engine) with its GPU memory; the backend is unusable afterwards."""
        if self.backend is not None:
            release_backend(self.backend)
            self.backend = None


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """The end-of-generation ids of a tokenizer and a generation config (either may list several), sorted.

    Examples:
        >>> from types import SimpleNamespace as NS
        >>> eos_token_ids(NS(eos_token_id=2), NS(eos_token_id=[7, 2]))
        [2, 7]
    """
    ids: list[int] = []
    for source in (generation_config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        ids.extend(value if isinstance(value, list | tuple) else [] if value is None else [value])
    return sorted({int(i) for i in ids})


def _check_checkpoint(model: str) -> None:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserInputError(
                "not a model checkpoint (no config.json): give a folder saved with save_pretrained", path=model
            )
        return
    if path.exists():
        raise UserInputError("is a file; give a checkpoint folder saved with save_pretrained", path=model)
    if model.startswith((os.sep, ".", "~")) or model.count("/") > 1:  # a path, not an "org/name" model id
        raise UserInputError("model checkpoint not found: no such folder", path=model)


def check_device(device: str | None) -> None:
    """Refuse a device that is not a torch device, or that this machine does not have, before anything loads.

    Raises:
        UserInputError: e.g. ``device 'cuda' is not available here (no CUDA GPU is visible); use cpu``.

    Examples:
        >>> check_device("gpu0")
        Traceback (most recent call last):
        ...
        trl_seqpo.errors.UserInputError: device 'gpu0' is not a torch device; use cpu, cuda, cuda:N or mps
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserInputError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise UserInputError(f"device {device!r} is not available here ({count} CUDA GPU(s) visible); use cpu")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError(f"device {device!r} is not available here (no Apple MPS); use cpu")
    elif parsed.type not in ("cpu", "cuda", "mps", "xpu", "npu", "hpu", "meta"):
        raise UserInputError(f"device {device!r} is not supported for generation; use cpu, cuda, cuda:N or mps")


def load_backend(
    model: str | os.PathLike[str],
    backend: str = "hf",
    *,
    device: str | None = None,
    dtype: str = "auto",
    seed: int = 0,
    max_batch_size: int | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
) -> LoadedModel:
    """Load a checkpoint behind a generation backend.

    Args:
        model: A checkpoint folder saved with `save_pretrained` (or a model id already in the local Hugging Face
            cache).
        backend: `"hf"` (transformers `generate`) or `"vllm"` (`trl_seqpo.rollout.vllm`, imported only here).
        device: Torch device for `"hf"`; default CUDA when available, else CPU.
        dtype: `"auto"` (the checkpoint's), `"float32"`, `"bfloat16"` or `"float16"`.
        seed: Engine seed for vLLM.
        max_batch_size: Rows per `generate` call for `"hf"` (`None`: all at once).
        gpu_memory_utilization: vLLM only: share of GPU memory the engine may take (vLLM's default when `None`).
        tensor_parallel_size: vLLM only: GPUs the model is split over (vLLM's default when `None`).
        max_model_len: vLLM only: context length the engine reserves KV cache for (the model's when `None`).

    Returns:
        The `LoadedModel`; call its `close()` before loading another large model in the same process.

    Raises:
        UserInputError: (a `ValueError`) a missing folder, a folder that is not a checkpoint, a bad option value,
            or a tokenizer/model that does not load; the message names the checkpoint.
        MissingDependencyError: `backend="vllm"` without vLLM installed.
    """
    model = str(model)
    if backend not in BACKENDS:
        raise UserInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if dtype not in DTYPES:
        raise UserInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if backend == "hf":
        check_device(device)
    vllm_options = {
        "gpu_memory_utilization": gpu_memory_utilization,
        "tensor_parallel_size": tensor_parallel_size,
        "max_model_len": max_model_len,
    }
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        raise UserInputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    for name in ("tensor_parallel_size", "max_model_len"):
        if vllm_options[name] is not None and vllm_options[name] < 1:
            raise UserInputError(f"{name} must be >= 1, got {vllm_options[name]}")
    if backend == "vllm":
        from trl_seqpo.rollout.vllm import require_vllm

        require_vllm()  # before loading anything else
    _check_checkpoint(model)
    from transformers import AutoTokenizer, GenerationConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise UserInputError(
            "cannot load a tokenizer: give a checkpoint folder saved with save_pretrained (or a model id that is "
            f"in the local Hugging Face cache) ({type(error).__name__}: {error})",
            path=model,
        ) from None
    if backend == "vllm":
        from trl_seqpo.rollout.vllm import VLLMGenerationBackend

        try:
            generation_config = GenerationConfig.from_pretrained(model)
        except OSError:  # no generation_config.json: the tokenizer's EOS only
            generation_config = None
        kwargs: dict[str, Any] = {"seed": seed, **{k: v for k, v in vllm_options.items() if v is not None}}
        if dtype != "auto":
            kwargs["dtype"] = dtype
        engine = VLLMGenerationBackend.from_model(model, **kwargs)
        return LoadedModel(engine, tokenizer, eos_token_ids(tokenizer, generation_config), model)
    import torch
    from transformers import AutoModelForCausalLM

    from trl_seqpo.rollout.hf import HFGenerationBackend

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        causal_lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot load a causal LM ({type(error).__name__}: {error})", path=model) from None
    causal_lm.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    try:
        engine = HFGenerationBackend(causal_lm, tokenizer, max_batch_size=max_batch_size)
    except ValueError as error:
        raise UserInputError(str(error), path=model) from None
    return LoadedModel(engine, tokenizer, eos_token_ids(tokenizer, causal_lm.generation_config), model)


def release_backend(backend: Any) -> None:
    """Free a backend's model and GPU memory: its own `close()` when it has one, else drop the model or engine.

    For an in-process vLLM engine this also tears down vLLM's distributed state, so a second engine or a COMET
    model can use the memory. Safe to call on any object.
    """
    close = getattr(backend, "close", None)
    if callable(close):
        close()
    for name in ("llm", "model"):
        if getattr(backend, name, None) is not None:
            setattr(backend, name, None)
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    if getattr(backend, "client", None) is None and "vllm" in type(backend).__module__:
        try:  # vLLM keeps process-wide parallel state that pins memory until it is destroyed
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001 - best effort: an older/newer vLLM without these functions
            pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
