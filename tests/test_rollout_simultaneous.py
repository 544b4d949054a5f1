"""The lockstep SiMT rollout: recorded log-probs, loss mask, delays, stop rules, both prompt formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import rollout_tokenizer_and_model

from trl_seqpo.rollout.engine import GenerationOutput, GenerationParams
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig, join_step_outputs
from trl_seqpo.simt.latency import delays_from_steps
from trl_seqpo.synthetic.tiny_models import build_tiny_model


@pytest.fixture(scope="module")
def tiny():
    return rollout_tokenizer_and_model()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[0]


@pytest.fixture(scope="module")
def model(tiny):
    return tiny[1]


def _config(**overrides):
    defaults = dict(chunk_size=2, src_lang="English", tgt_lang="French", max_new_tokens_per_step=6, temperature=1.0)
    defaults.update(overrides)
    return SimultaneousRolloutConfig(**defaults)


class ScriptedBackend:
    """Replays fixed step outputs (text) so the stop rules can be checked exactly."""

    def __init__(self, tokenizer, script, finish="stop", stop_token="<|im_end|>"):
        self.tokenizer, self.script, self.finish = tokenizer, list(script), finish
        self.stop_id = tokenizer.convert_tokens_to_ids(stop_token)
        self.calls, self.prompts = [], []

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        self.prompts.append([list(p) for p in prompts])
        text = self.script.pop(0)
        outputs = []
        for _ in prompts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            if self.finish == "stop":
                ids = ids + [self.stop_id]
            outputs.append(GenerationOutput(ids, [-0.5] * len(ids), self.finish))
        return outputs


def test_chat_logprobs_match_one_forward_pass(model, tokenizer):
    rollout = SimultaneousRollout(HFGenerationBackend(model, tokenizer), tokenizer, _config())
    torch.manual_seed(0)
    trajectories = rollout.run(["the big dog sees a red tree", "a cat runs"], num_generations=3, seed=1)
    assert len(trajectories) == 6
    assert [t.source_index for t in trajectories] == [0, 0, 0, 1, 1, 1]
    for trajectory in trajectories:
        ids = torch.tensor([trajectory.prompt_ids + trajectory.completion_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
        start = len(trajectory.prompt_ids) - 1
        recomputed = logprobs[start:]
        mask = torch.tensor(trajectory.env_mask, dtype=torch.bool)
        recorded = torch.tensor(trajectory.completion_logprobs)
        assert len(recorded) == len(trajectory.completion_ids) == len(mask)
        torch.testing.assert_close(recomputed[mask], recorded[mask], atol=1e-4, rtol=1e-4)


def test_env_mask_covers_exactly_the_policy_tokens(model, tokenizer):
    rollout = SimultaneousRollout(HFGenerationBackend(model, tokenizer), tokenizer, _config())
    for trajectory in rollout.run(["the big dog sees a red tree"], num_generations=2, seed=3):
        policy_tokens = [i for i, m in zip(trajectory.completion_ids, trajectory.env_mask) if m]
        assert policy_tokens == [t for step in trajectory.step_token_ids for t in step]
        # every environment token comes from the chat template: no policy token is hidden in them
        assert sum(trajectory.env_mask) == sum(len(step) for step in trajectory.step_token_ids)


def test_chat_sequence_equals_rendered_conversation(tokenizer):
    script = ["", "le chien", "grand voit", "la"]
    backend = ScriptedBackend(tokenizer, script)
    rollout = SimultaneousRollout(backend, tokenizer, _config())
    (trajectory,) = rollout.run(["the big dog sees a red tree"])
    assert [output.strip() for output in trajectory.step_outputs] == script
    from trl_seqpo.simt.templates import build_chat_messages, render_chat

    messages = build_chat_messages(
        trajectory.chunks, script, "English", "French", source_complete=True, add_next_turn=False
    )
    rendered = render_chat(tokenizer, messages, add_generation_prompt=False)
    sequence = trajectory.prompt_ids + trajectory.completion_ids
    assert tokenizer(rendered, add_special_tokens=False)["input_ids"][: len(sequence)] == sequence
    assert backend.calls == [1, 1, 1, 1]
    assert trajectory.finished_by == "stop"
    assert trajectory.num_empty_steps == 1
    # delays: chunk size 2, 7 source words: steps 1..4 read 2, 4, 6, 7 words
    assert trajectory.delays == [4, 4, 6, 6, 7]
    assert trajectory.delays == delays_from_steps(["", "le chien ", "grand voit ", "la"], 2, 7, "word")
    assert trajectory.translation == "le chien grand voit la"


def test_chat_sequences_of_a_batch_equal_their_own_rendered_conversations(tokenizer):
    from trl_seqpo.simt.templates import build_chat_messages, render_chat

    # the first prompt and the inserted turns are rendered once per source and shared by its group
    backend = ScriptedBackend(tokenizer, ["", "le chien", "grand voit", "la"])
    rollout = SimultaneousRollout(backend, tokenizer, _config())
    trajectories = rollout.run(["the big dog sees a red tree", "a cat runs"], num_generations=2)
    assert backend.calls == [4, 4, 2, 2]  # the short source's group is done after its second step
    for trajectory in trajectories:
        outputs = [output.strip() for output in trajectory.step_outputs]
        messages = build_chat_messages(
            trajectory.chunks, outputs, "English", "French", source_complete=True, add_next_turn=False
        )
        rendered = tokenizer(render_chat(tokenizer, messages, add_generation_prompt=False), add_special_tokens=False)
        sequence = trajectory.prompt_ids + trajectory.completion_ids
        assert rendered["input_ids"][: len(sequence)] == sequence
        first = build_chat_messages(trajectory.chunks[:1], [], "English", "French", source_complete=False)
        expected_prompt = render_chat(tokenizer, first, add_generation_prompt=True)
        assert trajectory.prompt_ids == tokenizer(expected_prompt, add_special_tokens=False)["input_ids"]


def test_source_shorter_than_one_chunk(tokenizer):
    backend = ScriptedBackend(tokenizer, ["chat court"])
    rollout = SimultaneousRollout(backend, tokenizer, _config(chunk_size=5))
    (trajectory,) = rollout.run(["a cat runs"])
    assert trajectory.num_chunks == 1 and trajectory.finished_by == "stop"
    assert trajectory.delays == [3, 3]


def test_waiting_after_the_source_uses_the_extra_step_budget(tokenizer):
    backend = ScriptedBackend(tokenizer, ["", "", "", ""])
    rollout = SimultaneousRollout(backend, tokenizer, _config(chunk_size=5, max_steps_after_source=2))
    (trajectory,) = rollout.run(["a cat runs"])
    assert trajectory.finished_by == "budget"
    assert len(trajectory.step_outputs) == 3  # the last chunk + 2 extra steps
    assert trajectory.translation == "" and trajectory.delays == []


def test_trajectory_that_never_stops_is_cut_by_the_budget(model, tokenizer):
    class NeverStops(ScriptedBackend):
        def generate(self, prompts, params):
            self.calls.append(len(prompts))
            return [
                GenerationOutput(
                    [tokenizer.convert_tokens_to_ids("la")] * params.max_new_tokens,
                    [-1.0] * params.max_new_tokens,
                    "length",
                )
                for _ in prompts
            ]

    backend = NeverStops(tokenizer, [])
    rollout = SimultaneousRollout(backend, tokenizer, _config(chunk_size=3, max_steps_after_source=1))
    (trajectory,) = rollout.run(["the big dog sees a red"])
    assert trajectory.finished_by == "budget"
    assert len(trajectory.step_outputs) == 3
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # a step cut by the budget is closed by an environment end-of-turn token (masked out of the loss)
    closing = [i for i, (t, m) in enumerate(zip(trajectory.completion_ids, trajectory.env_mask)) if t == im_end]
    assert closing and all(trajectory.env_mask[i] == 0 for i in closing)


def test_eos_ends_the_translation_only_after_the_last_chunk(tokenizer):
    # chunk_size 2, 4 chunks: the end-of-translation token at steps 1-3 only ends those steps
    backend = ScriptedBackend(tokenizer, ["le chien", "", "grand", "", "court"], stop_token="<|endoftext|>")
    rollout = SimultaneousRollout(backend, tokenizer, _config())
    (trajectory,) = rollout.run(["the big dog sees a red tree"])
    assert trajectory.finished_by == "eos" and len(trajectory.step_outputs) == trajectory.num_chunks == 4
    assert trajectory.translation == "le chien grand"
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # each early end of translation is kept as a policy token and the environment closes the turn after it
    positions = [i for i, t in enumerate(trajectory.completion_ids) if t == eot]
    assert len(positions) == 4 and all(trajectory.env_mask[i] == 1 for i in positions)
    for i in positions[:-1]:
        assert trajectory.completion_ids[i + 1] == im_end and trajectory.env_mask[i + 1] == 0


def _early_stopping_model(tokenizer, eot_id, bias=6.0):
    """The tiny model with an output bias towards the end-of-translation token: it wants to stop at once."""
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=2, head_dim=32, intermediate_size=128)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[eot_id] = bias
    model.lm_head = head
    return model


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_model_that_wants_to_stop_early_reads_the_whole_source_on_policy(tokenizer, temperature):
    rollout = SimultaneousRollout(None, tokenizer, _config(temperature=temperature))
    model = _early_stopping_model(tokenizer, rollout.eos_token_id)
    rollout.backend = HFGenerationBackend(model, tokenizer)
    trajectories = rollout.run(["the big dog sees a red tree"], num_generations=4, seed=5)
    early = 0
    for trajectory in trajectories:
        assert len(trajectory.step_outputs) >= trajectory.num_chunks == 4
        first_steps = trajectory.step_token_ids[: trajectory.num_chunks - 1]
        early += sum(step[-1] == rollout.eos_token_id for step in first_steps if step)
        # on-policy: the recorded log-probs are those of a forward pass over the trajectory, scaled by 1/T
        ids = torch.tensor([trajectory.prompt_ids + trajectory.completion_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
        recomputed = logprobs[len(trajectory.prompt_ids) - 1 :]
        mask = torch.tensor(trajectory.env_mask, dtype=torch.bool)
        torch.testing.assert_close(recomputed[mask], torch.tensor(trajectory.completion_logprobs)[mask])
    assert early >= 4  # the model did try to stop before the last chunk


def test_finished_trajectories_drop_out_of_the_batch(tokenizer):
    class PerRow(ScriptedBackend):
        def generate(self, prompts, params):
            self.calls.append(len(prompts))
            stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
            return [
                GenerationOutput(tokenizer("la", add_special_tokens=False)["input_ids"] + [stop], [], "stop")
                for _ in prompts
            ]

    backend = PerRow(tokenizer, [])
    rollout = SimultaneousRollout(backend, tokenizer, _config(chunk_size=2))
    trajectories = rollout.run(["a cat", "the big dog sees a red tree"], num_generations=2)
    assert backend.calls == [4, 2, 2, 2]
    assert [len(t.step_outputs) for t in trajectories] == [1, 1, 4, 4]


def test_paper_format_rerenders_the_template(tokenizer):
    backend = ScriptedBackend(tokenizer, ["le", "chien", "rouge"], stop_token="<|endoftext|>")
    rollout = SimultaneousRollout(backend, tokenizer, _config(prompt_format="paper", chunk_size=3))
    (trajectory,) = rollout.run(["the big dog sees a red"])
    assert len(trajectory.step_prompt_ids) == 2 and trajectory.finished_by == "stop"
    second = tokenizer.decode(trajectory.step_prompt_ids[1])
    assert "the big dog sees a red" in second and second.rstrip().endswith("le")
    assert trajectory.completion_ids == []  # each step is its own sequence


def test_wait_k_policy_limits_what_is_written(model, tokenizer):
    from trl_seqpo.simt.policies import WaitKPolicy

    backend = ScriptedBackend(tokenizer, ["le grand chien", "voit la", "rouge arbre"])
    rollout = SimultaneousRollout(backend, tokenizer, _config(chunk_size=2))
    (trajectory,) = rollout.run(["the big dog sees a red"], policy=WaitKPolicy(3))
    # wait-3 over words: after reading 2 words nothing, after 4 words 2, after 6 (complete) everything
    assert trajectory.step_outputs[0] == ""
    assert join_step_outputs(trajectory.step_outputs[:2], "word") == "le grand"
    assert backend.calls == [1, 1]  # step 1 needed no model call
    assert trajectory.policy_edited


@pytest.mark.parametrize("prompt_format", ["chat", "paper"])
def test_a_step_the_schedule_skips_still_shows_its_chunk_to_the_model(tokenizer, prompt_format):
    from trl_seqpo.simt.policies import WaitKPolicy

    # wait-3 at chunks of 2 skips step 1 without a model call; step 2's prompt must be the one a model that waited
    # at step 1 by itself would see (instruction, first chunk, empty turn, second chunk), not a history without them
    stop = "<|im_end|>" if prompt_format == "chat" else "<|endoftext|>"
    waited = ScriptedBackend(tokenizer, ["", "le grand", "chien voit"], stop_token=stop)
    config = _config(chunk_size=2, prompt_format=prompt_format, max_steps_after_source=0)
    SimultaneousRollout(waited, tokenizer, config).run(["the big dog sees"])
    skipped = ScriptedBackend(tokenizer, ["le grand", "chien voit"], stop_token=stop)
    (trajectory,) = SimultaneousRollout(skipped, tokenizer, config).run(["the big dog sees"], policy=WaitKPolicy(3))
    assert trajectory.step_outputs[0] == "" and len(skipped.calls) == len(waited.calls) - 1
    assert skipped.prompts[0] == waited.prompts[1]
    assert "the big" in tokenizer.decode(skipped.prompts[0][0])
    if prompt_format == "chat":
        assert trajectory.prompt_ids and trajectory.env_mask.count(1) == sum(map(len, trajectory.step_token_ids))


def test_generation_params_validation():
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="chunk_size"):
        SimultaneousRolloutConfig(chunk_size=0)


def test_hf_backend_without_stop_tokens_runs_to_the_budget(model, tokenizer):
    backend = HFGenerationBackend(model, tokenizer)
    outputs = backend.generate([[5, 6, 7], [8]], GenerationParams(max_new_tokens=5, temperature=0))
    assert [len(o.token_ids) for o in outputs] == [5, 5]
    assert all(o.finish_reason == "length" and len(o.logprobs) == 5 for o in outputs)


def test_hf_backend_left_padding_matches_one_prompt_at_a_time(model, tokenizer):
    backend = HFGenerationBackend(model, tokenizer)
    params = GenerationParams(max_new_tokens=6, temperature=0, stop_token_ids=(tokenizer.eos_token_id,))
    prompts = [[5, 6, 7, 8, 9], [10], [11, 12]]
    batched = backend.generate(prompts, params)
    for prompt, output in zip(prompts, batched):
        (single,) = backend.generate([prompt], params)
        assert single.token_ids == output.token_ids
        torch.testing.assert_close(torch.tensor(single.logprobs), torch.tensor(output.logprobs), atol=1e-4, rtol=0)


def test_end_of_translation_defaults_away_from_an_eos_that_ends_turns(tokenizer):
    import copy

    qwen_like = copy.deepcopy(tokenizer)
    qwen_like.eos_token = "<|im_end|>"  # Qwen2.5-Instruct: EOS is the end-of-turn token
    rollout = SimultaneousRollout(ScriptedBackend(qwen_like, []), qwen_like, _config())
    assert rollout.eos_token_id == qwen_like.convert_tokens_to_ids("<|endoftext|>")
    assert rollout.step_end_token_id == qwen_like.convert_tokens_to_ids("<|im_end|>")
    with pytest.raises(ValueError, match="same token"):
        SimultaneousRollout(ScriptedBackend(qwen_like, []), qwen_like, _config(end_of_translation_token="<|im_end|>"))


def test_paper_format_logprobs_match_a_forward_pass_of_each_step(model, tokenizer):
    rollout = SimultaneousRollout(HFGenerationBackend(model, tokenizer), tokenizer, _config(prompt_format="paper"))
    (trajectory,) = rollout.run(["the big dog sees a red tree"], num_generations=1, seed=2)
    assert len(trajectory.step_prompt_ids) == len(trajectory.step_token_ids) >= 2
    for prompt, output, recorded in zip(
        trajectory.step_prompt_ids, trajectory.step_token_ids, trajectory.step_logprobs
    ):
        ids = torch.tensor([prompt + output])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        expected = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(output).unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(expected, torch.tensor(recorded), atol=1e-4, rtol=1e-4)


def test_hf_backend_ignores_the_checkpoints_generation_config(tokenizer):
    # every row samples uniformly from four tokens: repeats within the first four tokens are near certain
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=2, head_dim=32, intermediate_size=128)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    allowed = [tokenizer.convert_tokens_to_ids(t) for t in ("la", "le", "\u0120la", "\u0120le")]
    assert len(set(allowed)) == 4 and tokenizer.unk_token_id not in allowed
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[allowed] = 5.0
    model.lm_head = head
    # the checkpoint asks for penalties that would forbid every repeat
    model.generation_config.repetition_penalty = 1e4
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.top_k = 1
    backend = HFGenerationBackend(model, tokenizer)
    prompts = [tokenizer("the big dog", add_special_tokens=False)["input_ids"]] * 8
    outputs = backend.generate(prompts, GenerationParams(max_new_tokens=6, temperature=0.7, seed=0))
    rows = [out.token_ids for out in outputs]
    assert all(set(row) <= set(allowed) for row in rows)
    assert any(len(set(row[:4])) < 4 for row in rows)  # repeats happen: no penalty leaked in
    assert len({tuple(row) for row in rows}) > 1  # and no top_k=1
    for out in outputs:
        torch.testing.assert_close(
            torch.tensor(out.logprobs), torch.full((6,), float(np.log(0.25))), atol=1e-4, rtol=0
        )
    assert model.generation_config.repetition_penalty == 1e4  # restored after the call


# ---------------------------------------------------------------------------- key/value reuse across steps
KV_SOURCES = ["the big dog sees a red tree", "a cat runs", "the small cat sees a big red dog"]


def _rollout_pair(model, tokenizer, **config):
    """The same rollout with and without key/value reuse; returns both trajectories and the encoded token counts."""
    results = []
    for reuse in (False, True):
        backend = HFGenerationBackend(model, tokenizer, reuse_cache=reuse)
        rollout = SimultaneousRollout(backend, tokenizer, _config(**config))
        trajectories = rollout.run(KV_SOURCES, num_generations=3, seed=1)
        results.append((trajectories, backend.encoded_prompt_tokens))
    return results


def _assert_same_rollout(plain, reused):
    assert [t.step_token_ids for t in reused] == [t.step_token_ids for t in plain]
    assert [t.completion_ids for t in reused] == [t.completion_ids for t in plain]
    assert [t.finished_by for t in reused] == [t.finished_by for t in plain]
    for a, b in zip(plain, reused):
        flat_a = torch.tensor([x for step in a.step_logprobs for x in step])
        flat_b = torch.tensor([x for step in b.step_logprobs for x in step])
        torch.testing.assert_close(flat_b, flat_a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prompt_format", ["chat", "paper"])
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_kv_reuse_gives_the_same_rollout(model, tokenizer, prompt_format, temperature):
    (plain, plain_tokens), (reused, reused_tokens) = _rollout_pair(
        model, tokenizer, prompt_format=prompt_format, temperature=temperature
    )
    _assert_same_rollout(plain, reused)
    # the short source's group finishes first: its rows leave the batch (and the cache) while the others go on
    steps = [len(t.step_outputs) for t in plain]
    assert min(steps[3:6]) < min(steps[:3] + steps[6:])
    assert reused_tokens < plain_tokens / 2 if prompt_format == "chat" else reused_tokens < plain_tokens


def test_kv_reuse_logprobs_stay_temperature_scaled(model, tokenizer):
    (trajectory, *_), _ = _rollout_pair(model, tokenizer, temperature=0.5)[1]
    ids = torch.tensor([trajectory.prompt_ids + trajectory.completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(trajectory.prompt_ids) - 1 : -1].float() / 0.5
    completion = torch.tensor(trajectory.completion_ids)
    expected = torch.log_softmax(logits, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    mask = torch.tensor(trajectory.env_mask, dtype=torch.bool)
    torch.testing.assert_close(torch.tensor(trajectory.completion_logprobs)[mask], expected[mask], atol=1e-5, rtol=0)


def test_kv_reuse_drops_the_rows_of_finished_trajectories(model, tokenizer):
    backend = HFGenerationBackend(model, tokenizer)
    seen = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append((kwargs["input_ids"].shape[0], kwargs.get("past_key_values"))),
        with_kwargs=True,
    )
    try:
        rollout = SimultaneousRollout(backend, tokenizer, _config(temperature=0.7))
        trajectories = rollout.run(KV_SOURCES, num_generations=3, seed=1)
    finally:
        hook.remove()
    live_per_step = [sum(len(t.step_outputs) > step for t in trajectories) for step in range(6)]
    assert live_per_step[0] == 9 and live_per_step[-1] < 9
    # every forward pass (prefill and decoding) runs exactly the live rows, cache included
    batch_sizes = {rows for rows, _ in seen}
    assert batch_sizes == set(live_per_step)
    for rows, cache in seen:
        if cache is not None and cache.get_seq_length() > 0:
            assert cache.layers[0].keys.shape[0] == rows


def test_kv_reuse_outside_a_session_and_across_sessions_starts_from_scratch(model, tokenizer):
    backend = HFGenerationBackend(model, tokenizer)
    params = GenerationParams(max_new_tokens=4, temperature=0)
    first = backend.generate([[5, 6, 7]], params)[0]
    before = backend.encoded_prompt_tokens
    backend.generate([[5, 6, 7, *first.token_ids, 8]], params)
    assert backend.encoded_prompt_tokens - before == 3 + len(first.token_ids) + 1  # no session: nothing kept
    with backend.cache_session():
        backend.generate([[5, 6, 7]], params)
        before = backend.encoded_prompt_tokens
        second = backend.generate([[5, 6, 7, *first.token_ids, 8]], params)[0]
        assert backend.encoded_prompt_tokens - before == 2  # the last sampled token (never fed back) and the new one
    with backend.cache_session():  # a new session (e.g. after an optimiser step) keeps nothing from the last one
        before = backend.encoded_prompt_tokens
        assert backend.generate([[5, 6, 7, *first.token_ids, 8]], params)[0].token_ids == second.token_ids
        assert backend.encoded_prompt_tokens - before == 3 + len(first.token_ids) + 1
