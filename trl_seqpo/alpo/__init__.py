"""ALPO (alpo-subtitles.txt): line-level preference optimisation for subtitle translation.

The config, trainer and loss, plus what only this method uses: the preference-pair builder and the candidate
sampling of Alg. 1. Importing this package is light; the trainer pulls in TRL on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ALPOConfig": "trl_seqpo.alpo.config",
    "ALPOTrainer": "trl_seqpo.alpo.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trl_seqpo.alpo' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
