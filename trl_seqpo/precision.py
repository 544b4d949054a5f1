"""The ``bf16`` default of `SeqPOConfig` and `ALPOConfig`: what the machine supports.

TRL's `GRPOConfig` and `DPOConfig` turn ``bf16=None`` into ``True`` whenever ``fp16`` is unset; on a machine without
a bf16-capable GPU, transformers then refuses the config ("Your setup doesn't support bf16/gpu") unless
``use_cpu=True`` is given too. Our configs resolve ``None`` first: bf16 where a GPU supports it (TRL's default
there), 32-bit everywhere else, so ``SeqPOConfig(output_dir=...)`` constructs on any machine. An explicit
``bf16=True``/``False`` is kept as given.
"""

from __future__ import annotations

from typing import Any


def resolve_bf16(config: Any) -> None:
    """Set ``config.bf16`` from ``None`` to what the machine supports (before TRL's ``__post_init__`` runs).

    Args:
        config: A `transformers.TrainingArguments` (its ``bf16``, ``fp16`` and ``use_cpu`` fields are read).
    """
    if config.bf16 is not None:
        return
    if config.fp16 or config.use_cpu:
        config.bf16 = False
        return
    from transformers.utils import is_torch_bf16_gpu_available

    config.bf16 = bool(is_torch_bf16_gpu_available())
