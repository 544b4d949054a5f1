"""Partial-translation SFT data: gold-alignment policy, both prompt formats, units from the languages."""

from __future__ import annotations

import pytest

from trl_seqpo.seqpo.sft_data import (
    build_sft_dataset,
    gold_sft_dataset,
    gold_step_outputs,
    sentence_records,
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
    [record] = sentence_records(SOURCE, outputs, 3, *LANGS, reference=REFERENCE)
    assert record["source"] == SOURCE and record["reference"] == REFERENCE
    messages = record["messages"]
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


# ---------------------------------------------------------------------------- Zh->En: units from the languages
ZH_SOURCE = "我们明天去北京开会"  # 9 characters: 3 chunks of 3
ZH_OUTPUTS = ["We", " will go to Beijing", " for a meeting tomorrow"]


def test_chinese_source_is_chunked_by_characters_by_default():
    [record] = sentence_records(ZH_SOURCE, ZH_OUTPUTS, 3, "Chinese", "English")
    messages = record["messages"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert len(users) == 3 and "我们明" in users[0] and "开会" in users[-1]
    rows = sentence_records(ZH_SOURCE, ZH_OUTPUTS, 3, "zh", "en", "paper")
    assert len(rows) == 3 and rows[-1]["completion"].startswith(" for a meeting")
    dataset = build_sft_dataset([{"source": ZH_SOURCE, "step_outputs": ZH_OUTPUTS}], 3, "Chinese", "English")
    assert len(dataset) == 1
    # words would give one chunk for a Chinese sentence: the error says what to check
    with pytest.raises(ValueError, match="3 step outputs for 1 chunks of 3 words"):
        build_sft_dataset([{"source": ZH_SOURCE, "step_outputs": ZH_OUTPUTS}], 3, "zh", "en", source_unit="word")


def test_gold_data_in_both_directions_uses_each_languages_unit():
    # Zh->En: alignment over source characters and target words
    reference = "We will go to Beijing for a meeting tomorrow"
    alignment = [(0, 0), (1, 0), (4, 1), (4, 2), (4, 3), (5, 4), (6, 4), (7, 5), (8, 6), (8, 7), (2, 8), (3, 8)]
    zh_en = gold_sft_dataset([{"source": ZH_SOURCE, "reference": reference, "alignment": alignment}], 3, "zh", "en")
    turns = [m["content"] for m in zh_en[0]["messages"] if m["role"] == "assistant"]
    assert turns == ["We", " will go to", " Beijing for a meeting tomorrow<|endoftext|>"]
    # En->Zh: source words, target characters written without spaces
    en_zh = gold_sft_dataset(
        [{"source": "we meet tomorrow", "reference": "我们明天开会", "alignment": [(0, 0), (0, 1), (2, 2), (1, 4)]}],
        1,
        "English",
        "Chinese",
    )
    turns = [m["content"] for m in en_zh[0]["messages"] if m["role"] == "assistant"]
    assert turns == ["我们", "", "明天开会<|endoftext|>"]
