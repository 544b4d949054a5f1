"""trl_seqpo: SeqPO-SiMT and ALPO trainers for Hugging Face TRL.

The top level only exposes the public API. Everything that pulls in torch, TRL or COMET is imported lazily, so
``import trl_seqpo`` (and ``trl-seqpo --help``) stays fast and works without those heavy imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY_ATTRS: dict[str, str] = {
    "SeqPOConfig": "trl_seqpo.seqpo.config",
    "SeqPOTrainer": "trl_seqpo.seqpo.trainer",
    "ALPOConfig": "trl_seqpo.alpo.config",
    "ALPOTrainer": "trl_seqpo.alpo.trainer",
    "register_reward": "trl_seqpo.rewards.registry",
    "get_reward": "trl_seqpo.rewards.registry",
    "list_rewards": "trl_seqpo.rewards.registry",
}

__all__ = [
    "__version__",
    "ALPOConfig",
    "ALPOTrainer",
    "SeqPOConfig",
    "SeqPOTrainer",
    "get_reward",
    "list_rewards",
    "register_reward",
]

if TYPE_CHECKING:  # pragma: no cover
    from trl_seqpo.alpo.config import ALPOConfig
    from trl_seqpo.alpo.trainer import ALPOTrainer
    from trl_seqpo.rewards.registry import get_reward, list_rewards, register_reward
    from trl_seqpo.seqpo.config import SeqPOConfig
    from trl_seqpo.seqpo.trainer import SeqPOTrainer


def __getattr__(name: str) -> Any:
    module_name = _LAZY_ATTRS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'trl_seqpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
