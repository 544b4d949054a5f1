"""Reward fusion of SeqPO-SiMT Eq. 2: group normalisation, latency truncation, lambda, missing rewards."""

from __future__ import annotations

import numpy as np
import pytest

from trl_seqpo.rewards.fusion import fuse_rewards, group_normalize, truncate_latency


def test_group_normalize_zscores_each_group_separately():
    values = np.array([[1.0, 2.0, 3.0], [10.0, 30.0, 20.0]])
    z = group_normalize(values)
    assert z.shape == (2, 3)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1.0)
    np.testing.assert_allclose(z[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_allclose(z[1], [-np.sqrt(1.5), np.sqrt(1.5), 0.0])


def test_flat_input_respects_group_boundaries():
    flat = [1.0, 2.0, 3.0, 100.0, 200.0, 300.0]
    z = group_normalize(flat, group_size=3)
    assert z.shape == (6,)
    np.testing.assert_allclose(z[:3], z[3:])  # each group normalised with its own mean and std
    np.testing.assert_allclose(z, group_normalize(np.reshape(flat, (2, 3))).ravel())
    with pytest.raises(ValueError, match="cannot be split into groups"):
        group_normalize(flat, group_size=4)
    with pytest.raises(ValueError, match="need group_size"):
        group_normalize(flat)


def test_zero_variance_group_gives_zero_not_nan():
    z = group_normalize([[0.7, 0.7, 0.7], [1.0, 2.0, 3.0]])
    assert np.all(np.isfinite(z))
    np.testing.assert_array_equal(z[0], 0.0)
    r = fuse_rewards([0.5] * 4, [3.0] * 4, group_size=4, chunk_size=2)
    np.testing.assert_array_equal(r, 0.0)


def test_none_and_nan_members_are_ignored_in_statistics():
    z = group_normalize([[1.0, None, 3.0], [np.nan, 5.0, np.nan]])
    np.testing.assert_allclose(z[0, [0, 2]], [-1.0, 1.0])  # stats from the two valid members only
    assert np.isnan(z[0, 1])
    assert z[1, 1] == 0.0 and np.isnan(z[1, 0]) and np.isnan(z[1, 2])  # one valid member: zero variance
    assert np.all(np.isnan(group_normalize([None, None], group_size=2)))


def test_fused_reward_is_nan_where_either_score_is_missing():
    quality = [0.9, 0.5, None, 0.7]
    latency = [3.0, 4.0, 5.0, np.nan]
    r = fuse_rewards(quality, latency, group_size=4, chunk_size=1, truncation="none")
    assert np.isnan(r[2]) and np.isnan(r[3])
    # The two remaining rows are normalised against each other only: q = (+1, -1), L = (-1, +1).
    np.testing.assert_allclose(r[:2], [2 * 1 + 1, 2 * -1 - 1])


def test_lambda_weights_quality_against_latency():
    quality = [0.9, 0.6, 0.3]
    latency = [6.0, 4.0, 2.0]  # better quality costs latency
    q = group_normalize(quality, group_size=3)
    latency_term = truncate_latency(latency, chunk_size=1, group_size=3)
    for lam in (0.0, 0.5, 2.0, 5.0):
        np.testing.assert_allclose(
            fuse_rewards(quality, latency, 3, lambda_=lam, chunk_size=1), lam * q - latency_term
        )
    assert np.argmax(fuse_rewards(quality, latency, 3, lambda_=0.5, chunk_size=1)) == 2  # latency wins
    assert np.argmax(fuse_rewards(quality, latency, 3, lambda_=2.0, chunk_size=1)) == 0  # quality wins (paper)
    with pytest.raises(ValueError, match="lambda_"):
        fuse_rewards(quality, latency, 3, lambda_=float("nan"), chunk_size=1)


def test_clamp_then_normalize_removes_gains_below_chunk_size():
    # Two junk trajectories drive AL below the chunk size m = 3 (even negative); honest ones are at 3.5 and 6.
    latency = [-2.0, 1.0, 3.5, 6.0]
    clamped = truncate_latency(latency, chunk_size=3, truncation="clamp_then_normalize", group_size=4)
    assert clamped[0] == clamped[1]  # no reward for going below m
    assert clamped[1] < clamped[2] < clamped[3]  # real differences above m survive
    np.testing.assert_allclose(clamped, group_normalize([3.0, 3.0, 3.5, 6.0], group_size=4))
    untruncated = truncate_latency(latency, chunk_size=3, truncation="none", group_size=4)
    assert untruncated[0] < untruncated[1]  # without truncation junk output looks best


def test_default_floor_keeps_honest_differences_below_the_chunk_size():
    # m = 3. A junk trajectory drives AL negative; an eager honest policy (1.91) beats a slower honest one (2.73).
    latency = [-0.6, -3.0, 1.91, 2.73]
    floored = truncate_latency(latency, chunk_size=3, group_size=4)  # the default: floor at 0
    np.testing.assert_allclose(floored, group_normalize([0.0, 0.0, 1.91, 2.73], group_size=4))
    assert floored[0] == floored[1]  # going further below zero earns nothing
    assert floored[1] < floored[2] < floored[3]  # honest differences below m survive
    clamped = truncate_latency(latency, chunk_size=3, truncation="clamp_then_normalize", group_size=4)
    assert clamped[2] == clamped[3]  # the clamp at m erases them (why it is no longer the default)
    raised = truncate_latency(latency, chunk_size=3, truncation="floor", floor=2.0, group_size=4)
    assert raised[0] == raised[1] == raised[2] < raised[3]
    with pytest.raises(ValueError, match="floor must be a finite"):
        truncate_latency(latency, chunk_size=3, floor=float("nan"), group_size=4)
    # the floor needs no chunk size
    np.testing.assert_allclose(fuse_rewards([1.0, 2.0], [1.0, 2.0], group_size=2, chunk_size=None), [-1.0, 1.0])


def test_paper_truncation_is_literal_max_of_m_and_zscore():
    latency = [[2.0, 4.0, 6.0, 8.0, 30.0]]
    z = group_normalize(latency)
    paper = truncate_latency(latency, chunk_size=2, truncation="paper")
    np.testing.assert_allclose(paper, np.maximum(2, z))
    np.testing.assert_array_equal(paper, 2.0)  # every z-score < 2 here: the latency term carries no signal
    paper_m1 = truncate_latency(latency, chunk_size=1, truncation="paper")
    assert paper_m1[0, -1] > 1.0 and np.all(paper_m1[0, :-1] == 1.0)


def test_truncation_validation():
    with pytest.raises(ValueError, match="truncation must be one of"):
        truncate_latency([1.0, 2.0], chunk_size=2, truncation="clip", group_size=2)
    for mode in ("clamp_then_normalize", "paper"):
        with pytest.raises(ValueError, match="chunk_size must be a positive number"):
            fuse_rewards([1.0, 2.0], [1.0, 2.0], group_size=2, chunk_size=None, truncation=mode)
    np.testing.assert_allclose(
        fuse_rewards([1.0, 2.0], [1.0, 2.0], group_size=2, truncation="none"), [-2.0 + 1.0, 2.0 - 1.0]
    )
    with pytest.raises(ValueError, match="same shape"):
        fuse_rewards([1.0, 2.0], [1.0], group_size=2, chunk_size=1)


def test_output_shape_follows_input_and_groups_do_not_mix():
    quality = np.array([[0.1, 0.9], [0.5, 0.5]])
    latency = np.array([[5.0, 5.0], [9.0, 3.0]])
    r = fuse_rewards(quality, latency, group_size=None, chunk_size=3)
    assert r.shape == (2, 2)
    np.testing.assert_allclose(r[0], [-2.0, 2.0])  # latency tied: quality only
    np.testing.assert_allclose(r[1], [-1.0, 1.0])  # quality tied: latency only
    np.testing.assert_allclose(fuse_rewards(quality.ravel(), latency.ravel(), 2, chunk_size=3), r.ravel())


def test_eager_floor_is_per_trajectory_and_keeps_honest_differences():
    # Two sources in one batch of two groups; each trajectory carries its own floor (its source's eager AL).
    latency = [[-1.0, 1.0, 1.9, 2.7], [0.5, 1.2, 3.0, 3.0]]
    floors = [[1.9] * 4, [1.0] * 4]
    eager = truncate_latency(latency, chunk_size=3, truncation="eager", floor=floors)
    np.testing.assert_allclose(eager, group_normalize([[1.9, 1.9, 1.9, 2.7], [1.0, 1.2, 3.0, 3.0]]))
    assert eager[0, 0] == eager[0, 1] == eager[0, 2] < eager[0, 3]  # nothing earned below the eager pace
    assert eager[1, 0] < eager[1, 1]  # the second group's floor is its own, lower one
    # a NaN floor leaves that trajectory unfloored; a scalar is refused (the floor depends on the sentence)
    unfloored = truncate_latency([-1.0, 1.0], None, "eager", group_size=2, floor=[float("nan"), 0.0])
    np.testing.assert_allclose(unfloored, [-1.0, 1.0])
    with pytest.raises(ValueError, match="one floor per trajectory"):
        truncate_latency([1.0, 2.0], None, "eager", group_size=2, floor=0.0)


def test_fused_reward_computes_each_rows_eager_floor_from_its_source_and_reference(tmp_path):
    from trl_seqpo import SeqPOConfig
    from trl_seqpo.seqpo.reward import FusedSimultaneousReward

    args = SeqPOConfig(
        output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=4, chunk_size=2,
        src_lang="English", tgt_lang="German", latency_truncation="eager", use_cpu=True, report_to="none",
    )  # fmt: skip
    latency = [-2.0, 1.0, -2.0, 1.0]
    reward = FusedSimultaneousReward(lambda **kw: [0.5, 0.5, 0.5, 0.5], lambda **kw: latency, args)
    long, short = " ".join(["w"] * 10), "w w"
    columns = {"source": [long, long, short, short], "reference": [long, long, short, short]}
    # 10 words at m = 2: eager AL 14/9 floors both junk (-2) and 1.0; 2 words: eager AL 2.0 floors both too
    np.testing.assert_allclose(reward.eager_floors(reward.reward_columns(columns, 4), 4), [14 / 9] * 2 + [2.0] * 2)
    np.testing.assert_allclose(reward(prompts=["p"] * 4, completions=["c"] * 4, **columns), 0.0)
    # the trainer's source_length column wins over counting the source; the floor then follows the lengths
    columns["source_length"] = [20, 20, 20, 20]
    floors = reward.eager_floors(reward.reward_columns(columns, 4), 4)
    np.testing.assert_allclose(floors, [2.0, 2.0, 10.0, 10.0])  # 20 source words: 2 per target word, or 10
    args.latency_truncation = "floor"  # at 0: the junk row now wins the latency term
    rewards = reward(prompts=["p"] * 4, completions=["c"] * 4, **columns)
    assert rewards[0] == rewards[2] == pytest.approx(1.0) and rewards[1] == pytest.approx(-1.0)
