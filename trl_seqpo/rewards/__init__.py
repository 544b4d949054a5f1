"""Rewards for SeqPO-SiMT and ALPO, in TRL's reward-function format.

``get_reward(name, **settings)`` returns a callable ``(prompts, completions, **columns) -> list[float | None]`` that
drops into any TRL trainer; ``list_rewards()`` lists the names; ``@register_reward(name)`` adds your own. Built-ins:
``bleu``, ``chrf``, ``comet``, ``xcomet`` (quality, higher is better) and ``average_lagging``, ``laal`` (latency,
lower is better). `trl_seqpo.rewards.fusion` combines a quality and a latency reward as in SeqPO-SiMT Eq. 2.
Importing this package is light: sacrebleu and COMET are imported on first use.
"""

from __future__ import annotations

from trl_seqpo.rewards.fusion import fuse_rewards, group_normalize, truncate_latency
from trl_seqpo.rewards.registry import REWARD_REGISTRY, RewardFunc, get_reward, list_rewards, register_reward

__all__ = [
    "REWARD_REGISTRY",
    "RewardFunc",
    "fuse_rewards",
    "get_reward",
    "group_normalize",
    "list_rewards",
    "register_reward",
    "truncate_latency",
]
