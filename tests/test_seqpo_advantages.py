"""The advantages that reach TRL's loss are Eq. 2's fused reward under SeqPOConfig's defaults (SeqPO-SiMT Sec. 2.3).

One training step on the tiny model with scripted quality and latency scores: three sources, one whose group varies
in quality only, one in latency only, one in both. The advantages are read where TRL's loss reads them
(`GRPOTrainer._compute_loss`) and compared with `lambda * z(q) - z(L)` computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import save_seqpo_tiny_model, seqpo_config, seqpo_train_rows

from trl_seqpo import SeqPOTrainer

pytestmark = pytest.mark.slow

B = 3
#: per group kind: (quality of the B trajectories, latency of the B trajectories), latencies far above any eager floor
SCORES = {
    "quality_only": ([0.2, 0.5, 0.8], [20.0, 20.0, 20.0]),
    "latency_only": ([0.5, 0.5, 0.5], [20.0, 23.0, 26.0]),
    "both": ([0.1, 0.9, 0.4], [24.0, 20.0, 30.0]),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_seqpo_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def dataset():
    return seqpo_train_rows().select(range(len(SCORES)))


def _scripted(dataset, which: int):
    """A reward returning the scripted score (quality: which=0, latency: which=1) of each row's group position."""
    kinds = dict(zip(dataset["source"], SCORES))

    def reward(prompts, completions, source, **kwargs):
        seen: dict[str, int] = {}
        values = []
        for text in source:
            position = seen.get(text, 0)
            seen[text] = position + 1
            values.append(SCORES[kinds[text]][which][position])
        return values

    reward.__name__ = ("scripted_quality", "scripted_latency")[which]
    return reward


def _z(values):
    values = np.asarray(values, dtype=float)
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def _advantages_at_the_loss(tiny, dataset, tmp_path, **overrides) -> dict[str, np.ndarray]:
    """Train one step with the config's defaults (but the tiny-model settings); the sorted advantages per group kind.

    TRL shuffles the rows of a generation batch before the loss, so rows are matched to their source by prompt.
    """
    model, tokenizer = tiny
    captured = []
    prompts_of = {}

    class Capturing(SeqPOTrainer):
        def _simultaneous_rollout(self, prompts, trainer):
            out = super()._simultaneous_rollout(prompts, trainer)
            prompts_of.update({tuple(ids): source for ids, source in zip(out["prompt_ids"], prompts)})
            return out

        def _compute_loss(self, model, inputs):
            for ids, mask, advantage in zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["advantages"]):
                captured.append((tuple(ids[mask.bool()].tolist()), float(advantage)))
            return super()._compute_loss(model, inputs)

    args = seqpo_config(
        tmp_path, max_steps=1, num_generations=B, per_device_train_batch_size=B * len(SCORES), **overrides
    )
    assert args.scale_rewards == "none" and args.latency_truncation == "eager"  # the defaults under test
    trainer = Capturing(
        model=model,
        reward_funcs=[_scripted(dataset, 0), _scripted(dataset, 1)],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(captured) == B * len(SCORES) and len(prompts_of) == len(SCORES)
    kinds = dict(zip(dataset["source"], SCORES))
    groups: dict[str, list[float]] = {kind: [] for kind in SCORES}
    for ids, advantage in captured:
        groups[kinds[prompts_of[ids]]].append(advantage)
    return {kind: np.sort(values) for kind, values in groups.items()}


def test_advantages_at_the_loss_equal_the_fused_reward_of_eq2(tiny, dataset, tmp_path):
    advantages = _advantages_at_the_loss(tiny, dataset, tmp_path)
    for kind, (quality, latency) in SCORES.items():
        expected = np.sort(2.0 * _z(quality) - _z(latency))
        np.testing.assert_allclose(advantages[kind], expected, atol=1e-5, err_msg=kind)
    ratio = np.abs(advantages["quality_only"]).max() / np.abs(advantages["latency_only"]).max()
    assert ratio == pytest.approx(2.0, abs=1e-4)  # lambda = 2 weighs a quality spread twice a latency spread


def test_fusion_lambda_changes_the_advantages(tiny, dataset, tmp_path):
    advantages = _advantages_at_the_loss(tiny, dataset, tmp_path, fusion_lambda=0.5)
    for kind, (quality, latency) in SCORES.items():
        expected = np.sort(0.5 * _z(quality) - _z(latency))
        np.testing.assert_allclose(advantages[kind], expected, atol=1e-5, err_msg=kind)
    ratio = np.abs(advantages["quality_only"]).max() / np.abs(advantages["latency_only"]).max()
    assert ratio == pytest.approx(0.5, abs=1e-4)
