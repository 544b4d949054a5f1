"""The streaming engine writes, at greedy decoding and with the same chunks, the same tokens as the offline rollout
(training and `evaluate simt`), for the chat and paper formats, with many sessions at different steps in one call."""

from __future__ import annotations

import pytest
from tiny_models import word_emitting_model

from trl_seqpo.rollout.loading import load_backend
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig
from trl_seqpo.rollout.streaming import SessionSettings, StreamingEngine
from trl_seqpo.simt.chunking import split_into_chunks
from trl_seqpo.simt.policies import WaitKPolicy
from trl_seqpo.synthetic import language_pair as synthetic

SRC, TGT = synthetic.language_names()[:2]
SOURCES = [example.source for example in synthetic.generate_corpus(3, seed=3, min_words=4, max_words=7)]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    model = load_backend(word_emitting_model(tmp_path_factory.mktemp("tiny")), "hf", device="cpu")
    yield model
    model.close()


def _offline(loaded, prompt_format, policy, chunk_size):
    config = SimultaneousRolloutConfig(
        chunk_size=chunk_size, src_lang=SRC, tgt_lang=TGT, source_unit="word", target_unit="word",
        prompt_format=prompt_format, max_new_tokens_per_step=4, max_steps_after_source=2, temperature=0.0,
    )  # fmt: skip
    rollout = SimultaneousRollout(loaded.backend, loaded.tokenizer, config)
    return rollout.run(SOURCES, 1, WaitKPolicy(policy[1]) if policy[0] == "wait-k" else None)


def _streamed(loaded, prompt_format, policy, chunk_size, keep_kv=True):
    engine = StreamingEngine(
        loaded.backend, loaded.tokenizer, prompt_format=prompt_format, max_new_tokens_per_step=4,
        max_steps_after_source=2, temperature=0.0, keep_kv=keep_kv,
    )  # fmt: skip
    settings = SessionSettings(source_lang=SRC, target_lang=TGT, policy=policy[0], k=policy[1],
                               chunk_size=chunk_size, source_unit="word", target_unit="word")  # fmt: skip
    sessions = [engine.open(settings) for _ in SOURCES]
    pending = [split_into_chunks(source, chunk_size, "word") for source in SOURCES]
    calls, tick = 0, 0
    while not all(session.finished for session in sessions):
        tick += 1
        for index, (session, chunks) in enumerate(zip(sessions, pending)):
            # sources arrive at different paces, so one call holds sessions at different steps
            if chunks and tick % (1 + index % 3) == 0:
                session.feed(chunks.pop(0), end=not chunks)
        ready = [session for session in sessions if session.ready]
        if ready:
            calls += 1
            engine.step(ready)
        assert tick < 200
    return engine, sessions, calls


@pytest.mark.parametrize("prompt_format", ["chat", "paper"])
@pytest.mark.parametrize("policy", [("model", 3), ("wait-k", 2)], ids=["model", "wait-k"])
def test_served_increments_are_the_offline_rollout_tokens(loaded, prompt_format, policy):
    offline = _offline(loaded, prompt_format, policy, chunk_size=2)
    encoded = loaded.backend.encoded_prompt_tokens
    engine, sessions, calls = _streamed(loaded, prompt_format, policy, chunk_size=2)
    encoded = loaded.backend.encoded_prompt_tokens - encoded
    assert calls < sum(len(t.step_outputs) for t in offline)  # sessions shared backend calls
    for trajectory, session in zip(offline, sessions):
        assert [increment.token_ids for increment in session.increments] == trajectory.step_token_ids
        result = session.result()
        assert result["translation"] == trajectory.translation and result["delays"] == trajectory.delays
        assert result["finished_by"] == trajectory.finished_by
        assert [i.source_units_read for i in session.increments] == [
            min(step * 2, trajectory.source_length) for step in range(1, len(trajectory.step_outputs) + 1)
        ]
    assert any(i.text.strip() for s in sessions for i in s.increments)  # the model wrote something
    if (prompt_format, policy[0]) == ("chat", "model"):  # each session's KV states were kept between its chunks
        before = loaded.backend.encoded_prompt_tokens
        _, fresh, _ = _streamed(loaded, prompt_format, policy, chunk_size=2, keep_kv=False)
        assert [[i.token_ids for i in s.increments] for s in fresh] == [
            [i.token_ids for i in s.increments] for s in sessions
        ]
        assert encoded < 0.6 * (loaded.backend.encoded_prompt_tokens - before)


def test_a_session_closed_midway_frees_its_states_and_others_finish(loaded):
    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=4, temperature=0.0)
    settings = SessionSettings(source_lang=SRC, target_lang=TGT, chunk_size=2, source_unit="word")
    first, second = engine.open(settings), engine.open(settings)
    first.feed("the big dog ")
    second.feed(SOURCES[0], end=True)
    engine.step([first, second])
    assert len(engine.cache) == 2
    engine.close(first)
    assert len(engine.cache) == 1 and first.key not in engine.sessions
    while not second.finished:
        engine.step([second])
    assert second.result()["translation"] == _offline(loaded, "chat", ("model", 3), 2)[0].translation


def test_session_input_is_checked():
    with pytest.raises(ValueError, match="policy"):
        SessionSettings(policy="wait-forever")
    with pytest.raises(ValueError, match="chunk_size"):
        SessionSettings(chunk_size=0)
    with pytest.raises(ValueError, match="unknown session setting"):
        SessionSettings.from_dict({"chunksize": 3})
