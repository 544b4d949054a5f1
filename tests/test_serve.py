"""`trl-seqpo serve simt` and its engine (issue 25).

The streaming engine writes, at greedy decoding and with the same chunks, the same tokens as the offline rollout
(training and `evaluate simt`), for the chat and paper formats, with many sessions at different steps in one call.
The HTTP server (bound to 127.0.0.1, real sockets) serves 16 concurrent sessions, refuses bad clients with a clear
error while the others finish, and `evaluate simt --server` gives the hypotheses and AL of `evaluate simt --model`."""

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
def model_dir(tmp_path_factory):
    return word_emitting_model(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def loaded(model_dir):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many times faster on the busy shared CPU, and bit-identical runs
    model = load_backend(model_dir, "hf", device="cpu")
    yield model
    model.close()
    torch.set_num_threads(threads)


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


# ----------------------------------------------------------------------------------------------------------------
# the HTTP server (127.0.0.1 only, a few seconds each)

SERVER_SETTINGS = {"source_lang": SRC, "target_lang": TGT, "chunk_size": 2, "source_unit": "word",
                   "target_unit": "word"}  # fmt: skip


@pytest.fixture(scope="module")
def server(loaded):
    from trl_seqpo.serve.app import ServeConfig
    from trl_seqpo.serve.background import serve_in_background

    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=4, temperature=0.0)
    config = ServeConfig(model="tiny", port=0, max_new_tokens_per_step=4, max_message_bytes=2048, idle_timeout=20)
    with serve_in_background(engine, config) as url:
        yield url, engine


def _run(coroutine):
    import asyncio

    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_sixteen_concurrent_sessions_complete_with_the_offline_tokens(server, loaded):
    from trl_seqpo.evaluate.remote import translate_with_server

    url, engine = server
    sources = [e.source for e in synthetic.generate_corpus(16, seed=4, min_words=4, max_words=7)]
    results = translate_with_server(url, sources, SERVER_SETTINGS, chunk_size=2, source_unit="word", concurrency=16)
    config = SimultaneousRolloutConfig(chunk_size=2, src_lang=SRC, tgt_lang=TGT, source_unit="word",
                                       target_unit="word", max_new_tokens_per_step=4, temperature=0.0)  # fmt: skip
    offline = SimultaneousRollout(loaded.backend, loaded.tokenizer, config).run(sources, 1)
    for result, trajectory in zip(results, offline):
        assert [i["token_ids"] for i in result["increments"]] == trajectory.step_token_ids
        assert result["translation"] == trajectory.translation
        stamps = [(i["ready_at"], i["emitted_at"]) for i in result["increments"]]
        assert all(ready <= emitted for ready, emitted in stamps)
        assert all(a[1] <= b[1] for a, b in zip(stamps, stamps[1:]))  # increments in order, timestamped
        assert result["step_seconds"] == [i["seconds"] for i in result["increments"]]
    assert engine._calls < sum(len(t.step_outputs) for t in offline) / 2  # sessions were batched together
    assert _wait_until(lambda: not engine.sessions and len(engine.cache) == 0)  # states freed when sessions end


def _wait_until(condition, seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def _bad_client(url: str, kind: str):
    """Open a session, misbehave, and return what the server answered: (messages, close code)."""
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    messages = []
    async with connect(url.replace("http", "ws") + "/v1/simt/stream") as websocket:
        await websocket.send(json.dumps({"type": "start", **SERVER_SETTINGS}))
        messages.append(json.loads(await websocket.recv()))
        await websocket.send(json.dumps({"type": "source", "text": "the big dog "}))
        if kind == "disconnect":
            return messages, None  # leaves without a word
        bad = {
            "malformed": '{"type": "source", "text": "the cat',
            "oversized": json.dumps({"type": "source", "text": "dog " * 1000}),
            "unknown": json.dumps({"type": "pause"}),
        }[kind]
        await websocket.send(bad)
        try:
            while True:
                messages.append(json.loads(await websocket.recv()))
        except ConnectionClosed:
            pass
        return messages, websocket.close_code


def test_bad_clients_get_a_clear_error_and_the_others_finish(server, loaded):
    import asyncio

    from trl_seqpo.evaluate.remote import stream_source

    url, engine = server
    sources = [e.source for e in synthetic.generate_corpus(4, seed=5, min_words=4, max_words=7)]

    async def everyone():
        good = [stream_source(url, split_into_chunks(s, 2, "word"), SERVER_SETTINGS) for s in sources]
        bad = [_bad_client(url, kind) for kind in ("malformed", "oversized", "unknown", "disconnect")]
        return await asyncio.gather(*good, *bad)

    *good, malformed, oversized, unknown, disconnect = _run(everyone())
    config = SimultaneousRolloutConfig(chunk_size=2, src_lang=SRC, tgt_lang=TGT, source_unit="word",
                                       target_unit="word", max_new_tokens_per_step=4, temperature=0.0)  # fmt: skip
    offline = SimultaneousRollout(loaded.backend, loaded.tokenizer, config).run(sources, 1)
    assert [result["translation"] for result in good] == [t.translation for t in offline]
    assert malformed[0][-1]["type"] == "error" and "malformed JSON" in malformed[0][-1]["message"]
    assert malformed[1] == 1007
    assert "exceeds the limit of 2048 bytes (--max-message-bytes)" in oversized[0][-1]["message"]
    assert oversized[1] == 1009
    assert "unknown message type 'pause'" in unknown[0][-1]["message"]
    assert disconnect[0][0]["type"] == "started"
    assert _wait_until(lambda: not engine.sessions)  # every session, the abandoned one included, was closed


def test_token_idle_timeout_and_session_bound(loaded):
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from trl_seqpo.serve.app import ServeConfig
    from trl_seqpo.serve.background import serve_in_background

    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=4, temperature=0.0)
    config = ServeConfig(model="tiny", port=0, token="s3cret", idle_timeout=0.5, max_sessions=1)

    async def scenario(url):
        endpoint = url.replace("http", "ws") + "/v1/simt/stream"
        with pytest.raises(InvalidStatus):  # no token: refused before the handshake completes
            async with connect(endpoint):
                pass
        headers = {"Authorization": "Bearer s3cret"}
        async with connect(endpoint, additional_headers=headers) as first:
            await first.send(json.dumps({"type": "start"}))
            assert json.loads(await first.recv())["type"] == "started"
            async with connect(endpoint, additional_headers=headers) as second:  # over --max-sessions
                busy = json.loads(await second.recv())
            idle = json.loads(await first.recv())  # the first client never sends its source
        return busy, idle

    with serve_in_background(engine, config) as url:
        busy, idle = _run(scenario(url))
    assert "server busy: 1 sessions open (--max-sessions)" in busy["message"]
    assert "no message for 0.5 s (--idle-timeout)" in idle["message"]


def test_evaluate_with_server_gives_the_hypotheses_and_al_of_evaluate_with_model(server, model_dir, tmp_path):
    import json

    from trl_seqpo.cli.main import main

    url, _ = server
    data = tmp_path / "data.jsonl"
    examples = synthetic.generate_corpus(6, seed=6, min_words=4, max_words=7)
    data.write_text("".join(json.dumps({"source": e.source, "reference": e.reference}) + "\n" for e in examples))
    common = ["--data", str(data), "--source-lang", SRC, "--target-lang", TGT, "--chunk-sizes", "2", "--source-unit",
              "word", "--latency-unit", "word", "--max-new-tokens-per-step", "4", "--no-progress"]  # fmt: skip
    offline = ["evaluate", "simt", "--model", str(model_dir), "--output-dir", str(tmp_path / "offline")]
    assert main([*offline, *common]) == 0
    assert main(["evaluate", "simt", "--server", url, "--output-dir", str(tmp_path / "served"), *common]) == 0
    rows = {}
    for name in ("offline", "served"):
        lines = (tmp_path / name / "model-m2" / "hypotheses.jsonl").read_text().splitlines()
        rows[name] = [json.loads(line) for line in lines]
    keys = ("translation", "step_outputs", "delays", "chunks", "finished_by")
    assert [[r[k] for k in keys] for r in rows["served"]] == [[r[k] for k in keys] for r in rows["offline"]]
    metrics = {n: json.loads((tmp_path / n / "results.json").read_text())["runs"][0]["metrics"] for n in rows}
    for name in ("AL", "LAAL", "DAL", "AP", "YAAL", "BLEU"):
        assert metrics["served"][name] == metrics["offline"][name], name
    assert metrics["served"]["AL_CA"] >= metrics["served"]["AL"]  # computation-aware, from the server's clock
    log = (tmp_path / "served" / "model-m2" / "instances.log").read_text().splitlines()
    assert len(log) == 6 and json.loads(log[0])["prediction"] == rows["offline"][0]["translation"]


def test_evaluate_with_server_refuses_other_decoding_settings(server, tmp_path, capsys):
    import json

    from trl_seqpo.cli.main import main

    url, _ = server
    data = tmp_path / "data.jsonl"
    data.write_text('{"source": "the dog", "reference": "lo hundo"}\n')
    command = ["evaluate", "simt", "--server", url, "--data", str(data), "--output-dir", str(tmp_path / "o"),
               "--no-progress", "--source-lang", SRC, "--target-lang", TGT, "--chunk-sizes", "2"]  # fmt: skip
    assert main([*command, "--max-new-tokens-per-step", "9"]) == 2
    assert "--max-new-tokens-per-step 9 differs from the server's 4" in capsys.readouterr().err
    assert main([*command, "--system-prompt", "Be brief."]) == 2  # a prompt the server's model is not given
    assert "--system-prompt Be brief. differs from the server's None" in capsys.readouterr().err
    # left out, the server's model settings apply (its step budget of 4, not evaluation's default of 60)
    assert main(command) == 0
    run = json.loads((tmp_path / "o" / "model-m2" / "run.json").read_text())
    assert run["max_new_tokens_per_step"] == 4


def test_a_word_split_across_messages_is_one_unit(loaded):
    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=4, temperature=0.0)
    session = engine.open(SessionSettings(source_lang=SRC, target_lang=TGT, chunk_size=2, source_unit="word"))
    session.feed("the bi")
    assert session.units == ["the"] and not session.ready  # "bi" may continue
    session.feed("g dog")
    assert session.units == ["the", "big"] and session.ready
    session.feed("", end=True)
    assert session.units == ["the", "big", "dog"]
    with pytest.raises(ValueError, match="already ended"):
        session.feed("more")
    empty = engine.open(SessionSettings(source_lang=SRC, target_lang=TGT))
    with pytest.raises(ValueError, match="source is empty"):
        empty.feed("  ", end=True)


def test_simuleval_remote_evaluation_of_the_server(loaded, tmp_path):
    """SimulEval 1.1.4's remote-agent client (`RemoteEvaluator`: its HTTP calls) and its evaluator loop against the
    server: the predictions and delays SimulEval records are the offline rollout's translations and delays.

    (`simuleval --remote-eval` itself cannot run in 1.1.4: `RemoteEvaluator.remote_eval` reads an
    `instance_iterator` its evaluator does not have, and a text segment's default `tgt_lang` is not JSON; the
    evaluator's own loop drives the same HTTP calls here, with `tgt_lang` set to None.)"""
    import csv
    import json

    pytest.importorskip("simuleval")
    pytest.importorskip("textgrid", reason="SimulEval's scorers import textgrid")
    from simuleval import options
    from simuleval.evaluator import build_remote_evaluator

    from trl_seqpo.serve.app import ServeConfig
    from trl_seqpo.serve.background import serve_in_background

    examples = synthetic.generate_corpus(4, seed=9, min_words=4, max_words=7)
    (tmp_path / "src.txt").write_text("".join(e.source + "\n" for e in examples))
    (tmp_path / "tgt.txt").write_text("".join(e.reference + "\n" for e in examples))
    engine = StreamingEngine(loaded.backend, loaded.tokenizer, max_new_tokens_per_step=4, temperature=0.0)
    config = ServeConfig(model="tiny", port=0, max_new_tokens_per_step=4, source_lang=SRC, target_lang=TGT,
                         chunk_size=2, source_unit="word", target_unit="word")  # fmt: skip
    with serve_in_background(engine, config) as url:
        port = url.rsplit(":", 1)[1]
        argv = ["--remote-eval", "--remote-address", "127.0.0.1", "--remote-port", port,
                "--source", str(tmp_path / "src.txt"), "--target", str(tmp_path / "tgt.txt"),
                "--source-type", "text", "--target-type", "text", "--output", str(tmp_path / "out"),
                "--latency-metrics", "AL", "LAAL", "--no-progress-bar"]  # fmt: skip
        parser = options.general_parser()  # as simuleval.cli.remote_evaluate builds it
        options.add_dataloader_args(parser)
        options.add_evaluator_args(parser)
        options.add_scorer_args(parser)
        remote = build_remote_evaluator(parser.parse_args(argv))

        class RemoteSystem:  # SimulEval's HTTP calls, in the shape its evaluator loop drives
            def reset(self):
                remote.system_reset()

            def pushpop(self, segment):
                if not isinstance(segment.tgt_lang, (str, type(None))):
                    segment.tgt_lang = None  # 1.1.4's TextSegment defaults it to typing.Optional[str]: not JSON
                remote.send_source(segment)
                return remote.receive_prediction()

        remote.evaluator(RemoteSystem())
    rollout_config = SimultaneousRolloutConfig(chunk_size=2, src_lang=SRC, tgt_lang=TGT, source_unit="word",
                                               target_unit="word", max_new_tokens_per_step=4,
                                               temperature=0.0)  # fmt: skip
    offline = SimultaneousRollout(loaded.backend, loaded.tokenizer, rollout_config).run([e.source for e in examples])
    instances = [json.loads(line) for line in (tmp_path / "out" / "instances.log").read_text().splitlines()]
    for instance, trajectory in zip(instances, offline, strict=True):
        assert instance["prediction"].split() == trajectory.translation.split()
        assert instance["delays"] == trajectory.delays
    with (tmp_path / "out" / "scores.tsv").open() as handle:
        theirs = float(next(csv.DictReader(handle, delimiter="\t"))["AL"])
    from trl_seqpo.simt.latency import average_lagging

    ours = [average_lagging(t.delays, t.source_length, len(e.reference.split(" "))) for t, e in zip(offline, examples)]
    assert theirs == pytest.approx(round(sum(ours) / len(ours), 3), abs=1e-9)


def test_command_line_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    from trl_seqpo.cli.main import main

    assert main(["serve", "simt", "--model", str(tmp_path), "--max-sessions", "0"]) == 2
    assert "--max-sessions must be >= 1" in capsys.readouterr().err
    assert main(["serve", "simt", "--model", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "missing" in capsys.readouterr().err
    data = tmp_path / "data.jsonl"
    data.write_text('{"source": "the dog", "reference": "lo hundo"}\n')
    assert main(["evaluate", "simt", "--data", str(data), "--output-dir", str(tmp_path / "o")]) == 2
    assert "give --model DIR, or --server URL" in capsys.readouterr().err
    assert main(["evaluate", "simt", "--server", "http://127.0.0.1:9", "--data", str(data), "--output-dir",
                 str(tmp_path / "o2"), "--no-progress"]) == 2  # fmt: skip
    assert "cannot reach a trl-seqpo server" in capsys.readouterr().err
