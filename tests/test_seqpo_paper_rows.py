"""Packing paper-format trajectories into GRPO rows (`pack_trajectory`) and remembering their steps (`PaperRows`)."""

from __future__ import annotations

import pytest

from trl_seqpo.rollout.simultaneous import Trajectory
from trl_seqpo.seqpo.paper_format import PaperRows, pack_trajectory

PROMPTS = [[1, 2, 3], [4, 5, 6, 7], [8, 9]]
OUTPUTS = [[10, 11], [12], [13, 14, 15]]
LOGPROBS = [[-0.1, -0.2], [-0.3], [-0.4, -0.5, -0.6]]


def _trajectory(logprobs=LOGPROBS) -> Trajectory:
    return Trajectory(
        source_index=0, chunks=["a b ", "c d ", "e"], source_length=5, target_unit="word", chunk_size=2,
        step_token_ids=[list(o) for o in OUTPUTS], step_logprobs=[list(p) for p in logprobs],
        step_prompt_ids=[list(p) for p in PROMPTS], prompt_ids=list(PROMPTS[0]),
    )  # fmt: skip


def test_pack_trajectory_masks_every_token_of_the_later_prompts():
    row = pack_trajectory(_trajectory())
    assert row.prompt_ids == [1, 2, 3]
    assert row.completion_ids == [10, 11, 4, 5, 6, 7, 12, 8, 9, 13, 14, 15]
    # P_2 and P_3 are environment tokens to their last token; y_1, y_2, y_3 are the policy's
    assert row.env_mask == [1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1]
    assert row.logprobs == [-0.1, -0.2, 0.0, 0.0, 0.0, 0.0, -0.3, 0.0, 0.0, -0.4, -0.5, -0.6]
    assert row.segments == [(0, 3, 5), (5, 9, 10), (10, 12, 15)]
    packed = row.prompt_ids + row.completion_ids
    for (start, out_start, out_end), prompt, output in zip(row.segments, PROMPTS, OUTPUTS):
        assert packed[start:out_start] == prompt and packed[out_start:out_end] == output  # P_t y_t alone


def test_pack_trajectory_keeps_the_masks_when_a_step_has_no_recorded_logprobs():
    row = pack_trajectory(_trajectory([LOGPROBS[0], [], LOGPROBS[2]]))  # a policy edited step 2
    assert row.env_mask == [1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1]
    assert row.logprobs[6] == 0.0 and row.logprobs[-1] == -0.6


def test_pack_trajectory_refuses_a_chat_trajectory():
    chat = _trajectory()
    chat.step_prompt_ids = []
    with pytest.raises(ValueError, match="one prompt per step"):
        pack_trajectory(chat)


def test_training_rows_survive_evaluation_rollouts():
    rows = PaperRows()
    train = pack_trajectory(_trajectory())
    rows.new_rollout("train")
    rows.add(train, "train")
    for batch in range(2):  # two evaluation batches between two optimizer steps of one generation batch
        evaluated = pack_trajectory(_trajectory())
        evaluated.completion_ids = [*evaluated.completion_ids, 99 + batch]
        rows.new_rollout("eval")
        rows.add(evaluated, "eval")
        assert rows.segments(evaluated.prompt_ids + evaluated.completion_ids) == evaluated.segments
    assert rows.segments(train.prompt_ids + train.completion_ids) == train.segments
    rows.new_rollout("train")  # the next generation batch replaces the old training rows
    with pytest.raises(ValueError, match="without a record of its steps"):
        rows.segments(train.prompt_ids + train.completion_ids)
