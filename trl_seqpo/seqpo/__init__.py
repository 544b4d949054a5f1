"""SeqPO-SiMT (seqpo-simt.txt): simultaneous MT as a multi-step decision process, trained with GRPO.

The config and trainer, plus what only this method uses: the SiMT SFT warm-up data builder.
Importing this package is light; the trainer pulls in TRL on first use.
"""

from __future__ import annotations

from trl_seqpo.lazy import lazy_getattr

_LAZY = {
    "SeqPOConfig": "trl_seqpo.seqpo.config",
    "SeqPOTrainer": "trl_seqpo.seqpo.trainer",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
