"""ALPO on a full-length (35-line) document: every row trains, and each line tokenizes the same way when sampled and
when trained, with a Qwen2-style byte-level pre-tokenizer on lines that start with quotes, dots and ellipses."""

from __future__ import annotations

import copy

import pytest
from datasets import Dataset

from trl_seqpo.alpo.config import ALPOConfig
from trl_seqpo.alpo.pairs import PairSettings, build_preference_pairs
from trl_seqpo.alpo.records import Candidate, CandidateRecord
from trl_seqpo.alpo.segments import line_prompt
from trl_seqpo.alpo.trainer import ALPOTrainer
from trl_seqpo.subtitles.documents import Document, line_marker, render_document_prompt
from trl_seqpo.synthetic.tiny_models import build_tiny_model

LINES = 35
STARTS = ['"', "...", ".", "'", "…", "-", "«", ""]  # how subtitle lines often begin
COMMON = {"use_cpu": True, "report_to": "none", "bf16": False, "save_strategy": "no", "logging_steps": 1}


def translation(line: int, variant: int) -> str:
    words = ["yes", "no", "maybe", "never", "always", "soon", "later"]
    return f"{STARTS[line % len(STARTS)]}{words[(line + variant) % 7]} {words[(line * 3 + variant) % 7]} {variant}"


@pytest.fixture(scope="module")
def qwen2_style_tokenizer():
    """A byte-level BPE with Qwen2's pre-tokenizer (regex split, then bytes, no prefix space), built locally."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    texts = [f"{n}.{translation(n, v)}\n" for n in range(1, LINES + 1) for v in range(4)]
    texts += [render_document_prompt(document(), "English", "French"), '."', "..", "...", '12."', "12..."]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    # the point of the test: this pre-tokenizer glues a marker's dot to what starts the line
    assert fast('12."yes')["input_ids"] != fast("12.")["input_ids"] + fast('"yes')["input_ids"]
    return fast


def document() -> Document:
    sources = [f"line {n} says what the people on screen say to one another, word by word." for n in range(LINES)]
    return Document("film-0001", sources, [translation(n, 0) for n in range(LINES)])


def candidate_records() -> list[CandidateRecord]:
    """What the sampler writes for the document: 5 scored candidates per line, the chosen one fed forward."""
    doc = document()
    prompt = render_document_prompt(doc, "English", "French")
    records, prefix = [], []
    for line in range(LINES):
        candidates = [Candidate(translation(line, v), "policy", float(90 - 12 * v)) for v in range(5)]
        chosen = line % 3
        records.append(
            CandidateRecord(doc.doc_id, line, [line], doc.source_lines[line], None, prompt, list(prefix),
                            candidates, num_units=LINES, chosen_index=chosen, votes=4, votes_requested=4)
        )  # fmt: skip
        prefix.append(candidates[chosen].text)
    return records


def pairs():
    settings = PairSettings(prefix_mix_stages=1, prefix_mix_start=1.0, prefix_mix_end=1.0)
    return build_preference_pairs(candidate_records(), settings)


def make_trainer(tmp_path, tokenizer, dataset, **config):
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=1, head_dim=32,
                             intermediate_size=64, max_position_embeddings=4096)  # fmt: skip
    args = ALPOConfig(str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1, **COMMON, **config)
    reference = None if args.alpo_loss_type == "simpo" else copy.deepcopy(model)
    return ALPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer)


def test_a_35_line_document_trains_with_all_35_rows(tmp_path, qwen2_style_tokenizer):
    dataset, stats = pairs()
    assert len(dataset) == LINES and stats.kept == LINES
    longest = max(len(qwen2_style_tokenizer(p + c)["input_ids"]) for p, c in zip(dataset["prompt"], dataset["chosen"]))
    assert longest > 1024  # TRL's DPO default max_length (1024) would drop or cut these rows
    trainer = make_trainer(tmp_path, qwen2_style_tokenizer, dataset, alpo_loss_type="simpo")  # no reference pass
    assert len(trainer.train_dataset) == LINES
    assert sum(trainer.train_dataset["ends_document"]) == 1  # the only row that keeps its EOS is still there
    result = trainer.train()
    assert trainer.state.global_step == 5 and result.training_loss > 0  # ceil(35 / 8) steps over all rows


def test_max_length_that_does_not_fit_is_refused_naming_the_longest_row(tmp_path, qwen2_style_tokenizer):
    dataset, _ = pairs()
    with pytest.raises(ValueError, match=r"rows are longer than max_length=300 tokens \(the longest, row \d+, has"):
        make_trainer(tmp_path, qwen2_style_tokenizer, dataset, max_length=300)


def test_each_line_tokenizes_the_same_when_sampled_and_when_trained(tmp_path, qwen2_style_tokenizer):
    tok = qwen2_style_tokenizer
    records = candidate_records()
    dataset, _ = pairs()
    trainer = make_trainer(tmp_path, tok, dataset)
    prepared = {row["unit_index"]: row for row in trainer.train_dataset}
    for record in records:
        row = prepared[record.unit_index]
        # sampling: the line prompt is encoded, the model writes the numbered line token by token
        sampled_prompt = line_prompt(record.document_prompt, record.prefix)
        chosen_line = line_marker(record.unit_index + 1) + record.candidates[record.chosen_index].text + "\n"
        assert row["prompt_ids"] == tok(sampled_prompt)["input_ids"]
        assert row["chosen_ids"][: len(tok(chosen_line)["input_ids"])] == tok(chosen_line)["input_ids"]
    # the old boundary (prompt ending in the marker "12.") splits some of these lines differently
    glued = []
    for record in records:
        marker_prompt = line_prompt(record.document_prompt, record.prefix) + line_marker(record.unit_index + 1)
        text = record.candidates[0].text
        if tok(marker_prompt + text)["input_ids"] != tok(marker_prompt)["input_ids"] + tok(text)["input_ids"]:
            glued.append(record.unit_index)
    assert len(glued) >= 10


def test_rows_that_would_train_on_nothing_are_refused_with_their_index(tmp_path, qwen2_style_tokenizer):
    dataset, _ = pairs()
    rows = dataset.to_list()
    rows[7]["chosen"] = "   "
    with pytest.raises(ValueError, match="row 7: 'chosen' is empty"):
        make_trainer(tmp_path, qwen2_style_tokenizer, Dataset.from_list(rows))
    rows = dataset.to_list()
    rows[3]["weight"] = float("nan")
    with pytest.raises(ValueError, match="row 3: 'weight' must be a finite number"):
        make_trainer(tmp_path, qwen2_style_tokenizer, Dataset.from_list(rows))
