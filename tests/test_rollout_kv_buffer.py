"""Reserved key/value buffers and the prefix cache's batch building: same outputs as transformers' own cache."""

from __future__ import annotations

import pytest
import torch
from tiny_models import rollout_tokenizer_and_model
from transformers import Qwen2Config
from transformers.cache_utils import DynamicLayer

from trl_seqpo.rollout.engine import GenerationParams
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.rollout.kv_buffer import ReservedLayer, reserved_cache
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig


@pytest.fixture(scope="module")
def tiny():
    return rollout_tokenizer_and_model()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[0]


@pytest.fixture(scope="module")
def model(tiny):
    return tiny[1]


def _states(rows, width, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, width, 4, generator=generator), torch.randn(rows, 2, width, 4, generator=generator)


def test_reserved_layer_holds_what_concatenation_holds_without_reallocating():
    reserved, dynamic = ReservedLayer(capacity=9), DynamicLayer()
    for step, width in enumerate([5, 1, 1, 2]):  # prefill then decoding steps, 9 positions in all
        keys, values = _states(3, width, seed=step)
        got, expected = reserved.update(keys, values), dynamic.update(keys, values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        if step == 0:
            buffer = reserved.keys.data_ptr()
        assert reserved.keys.data_ptr() == buffer  # written in place: no copy of the cache per token
    assert reserved.get_seq_length() == 9


def test_reserved_layer_grows_past_its_capacity_and_survives_outside_edits():
    reserved, dynamic = ReservedLayer(capacity=3), DynamicLayer()
    for step, width in enumerate([2, 2, 1]):  # 5 positions > capacity 3: a new, larger buffer
        keys, values = _states(4, width, seed=10 + step)
        reserved.update(keys, values), dynamic.update(keys, values)
    assert torch.equal(reserved.keys, dynamic.keys)
    for layer in (reserved, dynamic):  # what generate or a user may do between updates
        layer.batch_select_indices(torch.tensor([2, 0]))
        layer.crop(-1)
    keys, values = _states(2, 1, seed=20)
    got, expected = reserved.update(keys, values), dynamic.update(keys, values)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_reserved_cache_only_for_full_attention_models(model):
    cache = reserved_cache(model.config, capacity=8)
    assert cache is not None and all(type(layer) is ReservedLayer for layer in cache.layers)
    filled = reserved_cache(model.config, capacity=8, states=[_states(2, 3, seed=layer) for layer in range(2)])
    assert filled.get_seq_length() == 3
    sliding = Qwen2Config(
        vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        use_sliding_window=True, sliding_window=4, max_window_layers=0,
    )  # fmt: skip
    assert reserved_cache(sliding, capacity=8) is None  # generate builds its own (sliding-window) cache


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_backend_matches_generate_with_transformers_own_cache(model, tokenizer, temperature):
    prompts = [[5, 6, 7, 8, 9], [10], [11, 12]]
    eos = tokenizer.eos_token_id
    params = GenerationParams(max_new_tokens=6, temperature=temperature, stop_token_ids=(eos,), seed=3)
    seen = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["past_key_values"]), with_kwargs=True
    )
    try:
        outputs = HFGenerationBackend(model, tokenizer).generate(prompts, params)
    finally:
        hook.remove()
    assert all(type(layer) is ReservedLayer for cache in seen for layer in cache.layers)
    # the same call through plain generate (transformers' DynamicCache, torch.cat per token)
    input_ids = torch.full((3, 5), tokenizer.pad_token_id)
    mask = torch.zeros((3, 5), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, 5 - len(ids) :], mask[row, 5 - len(ids) :] = torch.tensor(ids), 1
    sampling = {"temperature": temperature, "top_p": 1.0, "top_k": None} if temperature else {}
    torch.manual_seed(3)
    expected = model.generate(
        input_ids=input_ids, attention_mask=mask, max_new_tokens=6, eos_token_id=[eos],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=bool(temperature), return_dict_in_generate=True, output_logits=True, **sampling,
    )  # fmt: skip
    logits = torch.stack(expected.logits, dim=1) / (temperature or 1.0)
    for row, output in enumerate(outputs):
        tokens = expected.sequences[row, 5 : 5 + len(output.token_ids)]
        assert output.token_ids == tokens.tolist()
        logprobs = torch.log_softmax(logits[row, : len(tokens)], dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(output.logprobs), logprobs, atol=1e-6, rtol=0)


def test_prefix_cache_mixes_cached_and_new_prompts_in_one_batch(model, tokenizer):
    params = GenerationParams(max_new_tokens=4, temperature=0)
    fresh = HFGenerationBackend(model, tokenizer, reuse_cache=False)
    backend = HFGenerationBackend(model, tokenizer)
    with backend.cache_session():
        first = backend.generate([[5, 6, 7], [8, 9, 10, 11]], params)
        later = [[5, 6, 7, *first[0].token_ids, 12], [13, 14], [8, 9, 10, 11, *first[1].token_ids, 15, 16]]
        before = backend.encoded_prompt_tokens
        outputs = backend.generate(later, params)
    # row 0 and 2 extend cached rows (the last sampled token and the new ones are encoded), row 1 starts afresh
    assert backend.encoded_prompt_tokens - before == 2 + 2 + 3
    for prompt, output in zip(later, outputs):
        (expected,) = fresh.generate([prompt], params)
        assert output.token_ids == expected.token_ids
        torch.testing.assert_close(torch.tensor(output.logprobs), torch.tensor(expected.logprobs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_kv_reuse_across_micro_batches_gives_the_same_rollout(model, tokenizer, temperature):
    config = SimultaneousRolloutConfig(
        chunk_size=2, src_lang="English", tgt_lang="French", max_new_tokens_per_step=6, temperature=temperature
    )
    sources = ["the big dog sees a red tree", "a cat runs", "the small cat sees a big red dog"]
    results = []
    for reuse in (False, True):
        # 4 rows per generate call: the cached rows of a step live in several groups, matched across them
        backend = HFGenerationBackend(model, tokenizer, max_batch_size=4, reuse_cache=reuse)
        trajectories = SimultaneousRollout(backend, tokenizer, config).run(sources, num_generations=3, seed=1)
        results.append((trajectories, backend.encoded_prompt_tokens))
    (plain, plain_tokens), (reused, reused_tokens) = results
    assert [t.step_token_ids for t in reused] == [t.step_token_ids for t in plain]
    assert [t.completion_ids for t in reused] == [t.completion_ids for t in plain]
    for a, b in zip(plain, reused):
        flat_a = torch.tensor([x for step in a.step_logprobs for x in step])
        flat_b = torch.tensor([x for step in b.step_logprobs for x in step])
        torch.testing.assert_close(flat_b, flat_a, atol=1e-5, rtol=0)
    assert reused_tokens < plain_tokens / 2


def test_a_session_holds_only_the_latest_calls_rows_and_releases_them_at_the_end(model, tokenizer):
    backend = HFGenerationBackend(model, tokenizer, max_batch_size=2)
    params = GenerationParams(max_new_tokens=3, temperature=0)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12]]
    with pytest.raises(RuntimeError, match="stop"), backend.cache_session():
        cache = backend._prefix_cache
        for step in range(4):  # a growing multi-step rollout: earlier calls' rows must not pile up
            outputs = backend.generate(prompts, params)
            assert cache.held_rows == len(prompts), f"step {step}: {cache.held_rows} rows held"
            prompts = [[*p, *o.token_ids, 13] for p, o in zip(prompts, outputs)]
        raise RuntimeError("stop")  # the block ends with an exception: the states are released anyway
    assert backend._prefix_cache is None and cache.held_rows == 0
