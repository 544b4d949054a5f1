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


def test_the_eager_floor_follows_the_reference_alignment_where_the_row_has_one(tmp_path):
    """A first chunk carrying more than its share of the target: the honest schedule beats the proportional floor."""
    from trl_seqpo.simt.latency import average_lagging
    from trl_seqpo.simt.policies import aligned_delays, eager_delays

    alignment = [[0, 0], [1, 1], [1, 2], [2, 3], [3, 4], [5, 5]]  # 4 of 6 target units translate the first chunk
    honest = aligned_delays(alignment, 6, 6, 3)
    assert honest == [3, 3, 3, 3, 6, 6] and eager_delays(6, 6, 3) == [3, 3, 3, 6, 6, 6]
    honest_al, proportional_al = average_lagging(honest, 6, 6), average_lagging(eager_delays(6, 6, 3), 6, 6)
    assert honest_al < proportional_al

    args = _args(tmp_path, chunk_size=3, tgt_lang="German", latency_unit="word", source_unit="word")
    assert (honest_al, proportional_al) == pytest.approx((1.6, 2.25))
    latency = [honest_al, 2.1, honest_al, 2.1]  # honest vs a slower honest policy, in two groups
    reward = FusedSimultaneousReward(lambda **kw: [0.5] * 4, lambda **kw: latency, args)
    sentence = "a b c d e f"
    columns = {"source": [sentence] * 4, "reference": [sentence] * 4, "source_length": [6] * 4}
    columns["alignment"] = [alignment, alignment, None, None]  # the second group has no alignment
    floors = reward.eager_floors(reward.reward_columns(columns, 4), 4)
    assert floors == pytest.approx([honest_al, honest_al, proportional_al, proportional_al])
    rewards = reward(prompts=["p"] * 4, completions=["c"] * 4, **columns)
    assert rewards[0] > rewards[1]  # with the alignment the honest lead is kept
    assert rewards[2] == pytest.approx(rewards[3])  # the proportional floor (2.25) erases it


def test_a_malformed_alignment_names_the_column(tmp_path):
    args = _args(tmp_path, chunk_size=3, tgt_lang="German")
    reward = FusedSimultaneousReward(lambda **kw: [0.5] * 2, lambda **kw: [1.0, 2.0], args)
    columns = {"source": ["a b"] * 2, "reference": ["a b"] * 2, "source_length": [2, 2], "alignment": [[[5, 0]]] * 2}
    with pytest.raises(ValueError, match="'alignment' .*SeqPOConfig.alignment_column"):
        reward.eager_floors(reward.reward_columns(columns, 2), 2)
