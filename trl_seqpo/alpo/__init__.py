"""ALPO (alpo-subtitles.txt): line-level preference optimisation for subtitle translation.

The config, trainer and loss, plus what only this method uses: the preference-pair builder and the candidate
sampling of Alg. 1. Importing this package is light; the trainer pulls in TRL on first use.
"""

from __future__ import annotations

from trl_seqpo.lazy import lazy_getattr

_LAZY = {
    "ALPOConfig": "trl_seqpo.alpo.config",
    "ALPOTrainer": "trl_seqpo.alpo.trainer",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
