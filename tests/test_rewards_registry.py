"""The reward registry: names, lookups, factories, errors, and every built-in in TRL's reward format."""

from __future__ import annotations

import doctest
import importlib
import pickle

import pytest

from trl_seqpo.rewards import REWARD_REGISTRY, get_reward, list_rewards, register_reward

# Built-ins that need a model or a server; they have their own tests (test_rewards_comet.py, test_judge.py).
NEEDS_EXTERNAL_MODEL = {"comet", "xcomet", "judge"}


@pytest.fixture
def scratch_names():
    """Names registered by a test are removed afterwards, so tests do not leak into the global registry."""
    names: list[str] = []
    yield names
    for name in names:
        REWARD_REGISTRY.pop(name, None)


def _batch() -> dict:
    return {
        "prompts": ["Translate: die katze", "Translate: der hund"],
        "completions": ["the cat sat", [{"role": "assistant", "content": "the dog"}]],
        "source": ["die katze sitzt", "der hund"],
        "reference": ["the cat sits", "the dog"],
        "delays": [[2, 3, 3], [2, 2]],
        "source_length": [3, 2],
        "reference_length": [3, 2],
    }


def test_builtins_are_listed():
    names = list_rewards()
    assert names == sorted(names)
    assert {"bleu", "chrf", "comet", "xcomet", "average_lagging", "laal"} <= set(names)


@pytest.mark.parametrize("name", sorted(set(list_rewards()) - NEEDS_EXTERNAL_MODEL))
def test_every_builtin_follows_trl_reward_format(name):
    reward = get_reward(name)
    assert reward.__name__ == name  # TRL logs rewards/<name>/mean
    batch = _batch()
    scores = reward(**batch, completion_ids=[[1], [2]], trainer_state=None)
    assert len(scores) == len(batch["completions"])
    assert all(isinstance(score, float) for score in scores)
    # Picklable (TRL's async rollout sends reward functions to a child process) and unchanged by the round trip.
    assert pickle.loads(pickle.dumps(reward))(**batch) == scores


def test_lookup_is_case_insensitive_and_callables_pass_through():
    assert get_reward(" BLEU ").__name__ == "bleu"

    def my_reward(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    assert get_reward(my_reward) is my_reward
    with pytest.raises(TypeError, match="settings for a callable"):
        get_reward(my_reward, scale=2)


def test_unknown_name_lists_known_rewards():
    with pytest.raises(ValueError, match="Unknown reward 'blue'") as error:
        get_reward("blue")
    assert "bleu" in str(error.value) and "average_lagging" in str(error.value)


def test_register_plain_function_and_bind_settings(scratch_names):
    @register_reward("length_ratio_test")
    def length_ratio(prompts, completions, reference, scale=1.0, **kwargs):
        return [scale * len(c) / len(r) for c, r in zip(completions, reference)]

    scratch_names.append("length_ratio_test")
    assert "length_ratio_test" in list_rewards()
    assert get_reward("length_ratio_test") is length_ratio
    bound = get_reward("length_ratio_test", scale=10.0)
    assert bound.__name__ == "length_ratio"
    assert bound(prompts=["p"], completions=["abcd"], reference=["ab"]) == [20.0]


def test_register_factory_result_is_renamed(scratch_names):
    @register_reward("constant_test", factory=True)
    def make_constant(value: float = 1.0):
        def reward(prompts, completions, **kwargs):
            return [value] * len(completions)

        return reward

    scratch_names.append("constant_test")
    reward = get_reward("constant_test", value=0.5)
    assert reward.__name__ == "constant_test"
    assert reward(prompts=["a", "b"], completions=["x", "y"]) == [0.5, 0.5]
    with pytest.raises(TypeError):
        get_reward("constant_test", nonsense=1)


def test_duplicate_and_invalid_names_raise(scratch_names):
    @register_reward("dup_test")
    def first(prompts, completions, **kwargs):
        return [0.0] * len(completions)

    scratch_names.append("dup_test")
    register_reward("dup_test")(first)  # re-registering the same object (module reload) is fine

    with pytest.raises(ValueError, match="already registered.*Pick another name"):

        @register_reward("dup_test")
        def second(prompts, completions, **kwargs):
            return [1.0] * len(completions)

    with pytest.raises(ValueError, match="already registered"):
        register_reward("bleu")(first)
    for bad in ("BLEU2", "my reward", "", "1bleu"):
        with pytest.raises(ValueError, match="not valid"):
            register_reward(bad)
    assert get_reward("dup_test") is first


@pytest.mark.parametrize(
    "module",
    [
        "trl_seqpo.rewards.registry",
        "trl_seqpo.rewards.quality",
        "trl_seqpo.rewards.latency",
        "trl_seqpo.rewards.fusion",
    ],
)
def test_docstring_examples_run(module, scratch_names):
    scratch_names.append("length_ratio_example")  # registered by the registry module's example
    # `pytest --doctest-modules` (make test) may already have run that example in this process
    REWARD_REGISTRY.pop("length_ratio_example", None)
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
