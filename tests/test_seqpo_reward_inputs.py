"""The fused SeqPO reward hands every reward what it needs from the config, and refuses a step it cannot score."""

from __future__ import annotations

import pytest

from trl_seqpo import SeqPOConfig
from trl_seqpo.rewards.inputs import required_column
from trl_seqpo.seqpo.reward import FusedSimultaneousReward, resolve_rewards

CPU = {"use_cpu": True, "bf16": False, "report_to": "none"}
HYPOTHESES = ["我们去公园散步", "我们去公园", "他们在家里", "我们去公园散步了"]


def _args(tmp_path, **values):
    values = {"num_generations": 2, "per_device_train_batch_size": 4, "chunk_size": 2, **values}
    return SeqPOConfig(output_dir=str(tmp_path), **CPU, **values)


def _rollout_columns(translations):
    return {
        "translation": translations,
        "delays": [[2] * len(t) for t in translations],
        "source_length": [4] * len(translations),
    }


@pytest.mark.parametrize("tgt_lang", ["Chinese", "zh", "Japanese", "Thai"])
def test_bleu_tokenises_for_the_configured_target_language(tmp_path, tgt_lang):
    args = _args(tmp_path, quality_reward="bleu", tgt_lang=tgt_lang)
    reward = FusedSimultaneousReward(*resolve_rewards(None, args), args)
    kwargs = {"reference": ["我们去公园散步"] * 4, **_rollout_columns(HYPOTHESES)}
    columns = reward.reward_columns(kwargs, 4, ["s"] * 4)
    scores = reward.quality(prompts=["s"] * 4, completions=HYPOTHESES, **columns)
    assert scores[0] == pytest.approx(100.0)
    assert len(set(scores)) == 4, scores  # under "13a" each hypothesis is one word: 100 or 0 only
    assert 0.0 < scores[1] < 100.0


def test_a_bleu_reward_with_its_own_language_keeps_it(tmp_path):
    args = _args(tmp_path, quality_reward="bleu", quality_reward_kwargs={"target_lang": "de"}, tgt_lang="Chinese")
    reward = FusedSimultaneousReward(*resolve_rewards(None, args), args)
    assert "target_lang" not in reward.reward_columns({"reference": ["r"] * 4}, 4)


def test_source_column_prompt_reaches_the_quality_reward(tmp_path):
    seen = {}

    def needs_source(prompts, completions, **columns):  # like COMET: the source is required
        seen["source"] = required_column(columns, "source", len(completions), "needs_source")
        return [float(len(t)) for t in columns["translation"]]

    args = _args(tmp_path, source_column="prompt", latency_truncation="none")
    reward = FusedSimultaneousReward(needs_source, lambda **kw: [1.0, 2.0, 1.0, 2.0], args)
    prompts = ["a b c d", "a b c d", [{"role": "user", "content": "e f g h"}], "e f g h"]
    # TRL never passes `prompt` as a column: only as `prompts`
    rewards = reward(prompts=prompts, completions=["x"] * 4, reference=["r"] * 4, **_rollout_columns(HYPOTHESES))
    assert seen["source"] == ["a b c d", "a b c d", "e f g h", "e f g h"]
    assert all(r is not None for r in rewards)


def test_a_reward_that_scores_no_row_stops_training_naming_the_reward_and_the_input(tmp_path):
    def comet_like(prompts, completions, **columns):
        required_column(columns, "source", len(completions), "comet_like")
        return [0.5] * len(completions)

    args = _args(tmp_path, source_column="text", latency_truncation="none")
    reward = FusedSimultaneousReward(comet_like, lambda **kw: [1.0, 2.0, 1.0, 2.0], args)
    with pytest.raises(ValueError, match=r"quality reward 'comet_like' scored none.*'source' \(absent"):
        reward(prompts=["p"] * 4, completions=["x"] * 4, reference=["r"] * 4, **_rollout_columns(HYPOTHESES))


def test_a_latency_reward_returning_none_everywhere_is_refused(tmp_path):
    def no_latency(prompts, completions, **columns):
        return [None] * len(completions)

    args = _args(tmp_path, latency_truncation="none")
    reward = FusedSimultaneousReward(lambda **kw: [0.1, 0.2, 0.3, 0.4], no_latency, args)
    columns = {"source": ["s"] * 4, "reference": ["r"] * 4, "translation": HYPOTHESES}  # the rollout's delays absent
    with pytest.raises(ValueError, match=r"latency reward 'no_latency'.*'delays' \(absent"):
        reward(prompts=["p"] * 4, completions=["x"] * 4, **columns)


def test_rows_missing_a_score_are_left_out_without_stopping(tmp_path):
    args = _args(tmp_path, latency_truncation="none")
    reward = FusedSimultaneousReward(lambda **kw: [0.1, None, 0.3, float("nan")], lambda **kw: [1.0] * 4, args)
    rewards = reward(prompts=["p"] * 4, completions=["x"] * 4, source=["s"] * 4, reference=["r"] * 4)
    assert rewards[1] is None and rewards[3] is None and rewards[0] is not None
