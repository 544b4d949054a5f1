"""TRL reward over the LLM judge of `trl_seqpo.judge.client` (ALPO Sec. 3.2 scores as a reward).

The judge service itself (endpoint, votes, retries, cache) lives in `trl_seqpo.judge.client`; this module only turns
its scores into TRL's reward format ``(prompts, completions, **columns) -> list[float | None]``.
"""

from __future__ import annotations

from trl_seqpo.judge.client import JudgeConfig, LLMJudge
from trl_seqpo.judge.prompts import JudgeRequest
from trl_seqpo.rewards.registry import register_reward

__all__ = ["JudgeReward", "make_judge_reward"]


class JudgeReward:
    """TRL reward that asks the LLM judge to score each completion 0-100 (``None`` when the judge failed).

    Completions that share a ``source`` (the ``num_generations`` samples of one prompt) are judged together as one
    candidate set, as ALPO judges a line's candidates side by side (Sec. 3.2), with the ``reference`` added as one more
    candidate when the column exists (``include_reference``) so that scores are relative to a fixed anchor. A callable
    class, so it pickles; the judge and its cache are created lazily in the process that scores.

    Args:
        config: Judge settings.
        include_reference: Show the ``reference`` column's text as an extra candidate.
    """

    def __init__(self, config: JudgeConfig, include_reference: bool = True) -> None:
        self.config = config
        self.include_reference = include_reference
        self._judge: LLMJudge | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_judge": None}

    def __call__(self, prompts: list, completions: list, **columns) -> list[float | None]:
        from trl_seqpo.rewards.inputs import optional_column, required_column, texts_to_score

        texts = texts_to_score(completions, columns)
        sources = required_column(columns, "source", len(texts), "judge")
        references = optional_column(columns, "reference", len(texts))
        groups: dict[str, list[int]] = {}
        for row, (source, text) in enumerate(zip(sources, texts)):
            if text is not None:
                groups.setdefault(str(source), []).append(row)
        requests, candidate_lists = [], []
        for source, rows in groups.items():
            candidates = list(dict.fromkeys(texts[row] for row in rows))
            reference = references[rows[0]]
            if self.include_reference and isinstance(reference, str) and reference not in candidates:
                candidates.append(reference)
            requests.append(JudgeRequest(source=source, candidates=candidates))
            candidate_lists.append(candidates)
        if self._judge is None:
            self._judge = LLMJudge(self.config)
        results = self._judge.score_lines(requests)
        rewards: list[float | None] = [None] * len(texts)
        for rows, candidates, result in zip(groups.values(), candidate_lists, results):
            if result.scores is not None:
                for row in rows:
                    rewards[row] = result.scores[candidates.index(texts[row])]
        return rewards


@register_reward("judge", factory=True)
def make_judge_reward(include_reference: bool = True, **config) -> JudgeReward:
    """Reward ``judge``: LLM-judge score 0-100 of each completion against its ``source`` (ALPO Sec. 3.2).

    Args:
        include_reference: Judge each group of completions next to the ``reference`` text.
        **config: Any `JudgeConfig` field, e.g. ``base_url``, ``model``, ``aspect``, ``cache_path``.

    Returns:
        A reward ``(prompts, completions, source, [reference], **columns) -> list[float | None]``.
    """
    return JudgeReward(JudgeConfig(**config), include_reference=include_reference)
