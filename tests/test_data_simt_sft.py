"""Partial-translation SFT data: gold-alignment policy, both prompt formats, the LLM aligner over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trl_seqpo.seqpo.sft_data import (
    LLMAligner,
    build_sft_dataset,
    chat_messages,
    gold_sft_dataset,
    gold_step_outputs,
    parse_aligner_answer,
    validate_prefixes,
)
from trl_seqpo.simt.chunking import split_into_chunks
from trl_seqpo.simt.templates import CONTINUE_MARKER, END_OF_SOURCE
from trl_seqpo.synthetic import language_pair as synthetic

LANGS = (synthetic.SOURCE_LANGUAGE, synthetic.TARGET_LANGUAGE)
SOURCE, REFERENCE = "the big dog sees a small cat", "lo hundo grava un mizo pika vidas"


def _alignment():
    return synthetic.translate(SOURCE)[1]


def test_gold_policy_writes_what_the_alignment_allows():
    # chunk 1 word: "the" -> lo; "big" must wait for "dog"; "sees" waits for the end of the clause
    outputs = gold_step_outputs(SOURCE, REFERENCE, _alignment(), chunk_size=1)
    assert outputs == ["lo", "", " hundo grava", "", " un", "", " mizo pika vidas"]
    assert "".join(outputs) == REFERENCE


def test_extra_wait_delays_writes_and_keeps_the_translation():
    eager = gold_step_outputs(SOURCE, REFERENCE, _alignment(), chunk_size=2)
    late = gold_step_outputs(SOURCE, REFERENCE, _alignment(), chunk_size=2, extra_wait=2)
    assert eager == ["lo", " hundo grava", " un", " mizo pika vidas"]
    assert late == ["", "lo", " hundo grava", " un mizo pika vidas"]

    def written_after_each_step(outputs):
        return [len("".join(outputs[: t + 1]).split()) for t in range(len(outputs))]

    for wait in range(6):
        outputs = gold_step_outputs(SOURCE, REFERENCE, _alignment(), chunk_size=2, extra_wait=wait)
        assert "".join(outputs) == REFERENCE
        assert all(a >= b for a, b in zip(written_after_each_step(eager), written_after_each_step(outputs)))


def test_gold_policy_handles_sources_shorter_than_a_chunk_and_unaligned_target_words():
    assert gold_step_outputs("the dog", "lo hundo", [(0, 0), (1, 1)], chunk_size=5) == ["lo hundo"]
    # target word 1 has no alignment: it is written with the word before it
    assert gold_step_outputs("a b", "x y z", [(0, 0), (1, 2)], chunk_size=1) == ["x y", " z"]
    with pytest.raises(ValueError, match="out of range"):
        gold_step_outputs("a b", "x", [(5, 0)], chunk_size=1)


def test_chat_conversation_matches_the_rollout_format():
    outputs = gold_step_outputs(SOURCE, REFERENCE, _alignment(), chunk_size=3)
    messages = chat_messages(SOURCE, outputs, 3, *LANGS)
    chunks = split_into_chunks(SOURCE, 3, "word")
    assert [m["role"] for m in messages] == ["user", "assistant"] * len(chunks)
    assert messages[0]["content"].endswith(chunks[0].strip())
    assert messages[-2]["content"].endswith(END_OF_SOURCE)
    assert all(CONTINUE_MARKER not in m["content"] for m in messages)
    assert messages[-1]["content"].endswith("<|endoftext|>")
    assert [m["content"] for m in messages[1:-1:2]] == outputs[:-1]


def test_paper_rows_one_per_step_with_eos_and_growing_prefix():
    examples = synthetic.generate_corpus(3, seed=0)
    dataset = gold_sft_dataset(examples, 2, *LANGS, prompt_format="paper")
    expected = sum(len(split_into_chunks(e.source, 2, "word")) for e in examples)
    assert dataset.column_names == ["prompt", "completion"] and len(dataset) == expected
    assert all(row["completion"].endswith("<|endoftext|>") for row in dataset)
    first = examples[0]
    steps = len(split_into_chunks(first.source, 2, "word"))
    rows = dataset.select(range(steps))
    # prompt of step t+1 ends with the prompt's translation line of step t plus its completion
    for before, after in zip(rows, rows.select(range(1, steps))):
        line = before["prompt"].rsplit("\n", 1)[1] + before["completion"].removesuffix("<|endoftext|>")
        assert after["prompt"].rsplit("\n", 1)[1] == line
    assert rows[steps - 1]["prompt"].split("\n")[1].endswith(END_OF_SOURCE)


def test_extra_wait_list_mixes_policies_reproducibly():
    examples = synthetic.generate_corpus(40, seed=0)
    first = gold_sft_dataset(examples, 2, *LANGS, extra_wait=[0, 4], seed=1)
    again = gold_sft_dataset(examples, 2, *LANGS, extra_wait=[0, 4], seed=1)
    eager = gold_sft_dataset(examples, 2, *LANGS, extra_wait=0)
    late = gold_sft_dataset(examples, 2, *LANGS, extra_wait=4)
    assert first["messages"] == again["messages"]
    kinds = {
        "eager" if m == e else "late" if m == la else "?"
        for m, e, la in zip(first["messages"], eager["messages"], late["messages"])
    }
    assert kinds == {"eager", "late"}
    with pytest.raises(ValueError, match="extra_wait"):
        gold_sft_dataset(examples, 2, *LANGS, extra_wait=[-1])


def test_validate_prefixes_rules():
    ref = "lo hundo grava vidas"
    assert validate_prefixes(["lo", "lo", "lo hundo grava", "whatever"], ref, 4) == [1, 1, 3, 4]
    for bad, message in [
        (["lo", "lo hundo grava vidas"], "expected 3"),
        (["lo hun", "lo hundo", "x"], "not a beginning"),
        (["lo hundo", "lo", "x"], "shorter"),
        ([1, 2, 3], "list of strings"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_prefixes(bad, ref, 3)
    assert parse_aligner_answer('```json\n{"prefixes": ["a"]}\n```') == ["a"]
    with pytest.raises(ValueError):
        parse_aligner_answer("no json here")


class _AlignerHandler(BaseHTTPRequestHandler):
    """Answers like an aligner LLM: eager prefixes from the synthetic gold alignment, or garbage for some sources."""

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        prompt = body["messages"][-1]["content"]
        pieces = [line.split(". ", 1)[1] for line in prompt.splitlines() if line[:1].isdigit() and ". " in line]
        source = " ".join(pieces)
        if "cat" in source:
            content = "Sure! Here is the alignment."  # no JSON: counted as invalid
        else:
            reference, alignment = synthetic.translate(source)
            outputs = gold_step_outputs(source, reference, alignment, chunk_size=2)
            prefixes = ["".join(outputs[: k + 1]) for k in range(len(outputs))]
            content = json.dumps({"prefixes": prefixes})
        answer = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def aligner_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlignerHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_llm_aligner_over_http_validates_caches_and_resumes(aligner_server, tmp_path):
    examples = [e for e in synthetic.generate_corpus(12, seed=3)]
    rows = [{"source": e.source, "reference": e.reference} for e in examples]
    n_bad = sum("cat" in e.source for e in examples)
    assert 0 < n_bad < len(examples)
    aligner = LLMAligner(
        model="aligner",
        base_url=f"http://127.0.0.1:{aligner_server.server_port}/v1",
        api_key="test",
        chunk_size=2,
        src_lang=LANGS[0],
        tgt_lang=LANGS[1],
        max_concurrency=4,
        max_retries=0,
    )
    cache = tmp_path / "align.jsonl"
    aligned, stats = aligner.align_rows(rows, cache_path=cache, progress=False)
    assert (stats.aligned, stats.invalid, stats.failed, stats.cached) == (len(rows) - n_bad, n_bad, 0, 0)
    gold = {e.source: gold_step_outputs(e.source, e.reference, e.alignment, 2) for e in examples}
    assert [r["source"] for r in aligned] == [e.source for e in examples if "cat" not in e.source]
    assert all(r["step_outputs"] == gold[r["source"]] for r in aligned)
    assert len(aligner_server.requests) == len(rows)

    again, stats = aligner.align_rows(rows, cache_path=cache, progress=False)
    assert again == aligned and stats.cached == len(rows) and stats.aligned == 0
    assert len(aligner_server.requests) == len(rows)  # nothing paid twice

    dataset = build_sft_dataset(aligned, 2, *LANGS)
    assert len(dataset) == len(aligned) and "messages" in dataset.column_names


@pytest.mark.slow
def test_sft_trainer_accepts_both_formats_and_trains_only_policy_tokens(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "tiny")
    examples = synthetic.generate_corpus(8, seed=0)
    for prompt_format in ("chat", "paper"):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        dataset = gold_sft_dataset(examples, 2, *LANGS, prompt_format=prompt_format, extra_wait=[0, 2])
        config = SFTConfig(
            output_dir=str(tmp_path / prompt_format),
            max_steps=1,
            per_device_train_batch_size=4,
            learning_rate=2e-3,
            assistant_only_loss=prompt_format == "chat",
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            dataset_num_proc=None,
        )
        before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
        row = trainer.train_dataset[0]
        trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
        assert "Translate" not in trained and synthetic.SOURCE_LANGUAGE not in trained
        assert "<|endoftext|>" in trained
        trainer.train()
        assert not (model.model.layers[0].mlp.up_proj.weight == before).all()
