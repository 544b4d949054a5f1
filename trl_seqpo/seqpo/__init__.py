"""SeqPO-SiMT (seqpo-simt.txt): simultaneous MT as a multi-step decision process, trained with GRPO.

The config and trainer, plus what only this method uses: the SiMT SFT warm-up data builder.
Importing this package is light; the trainer pulls in TRL on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SeqPOConfig": "trl_seqpo.seqpo.config",
    "SeqPOTrainer": "trl_seqpo.seqpo.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trl_seqpo.seqpo' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
