"""One prompt per line (issue 21): sampling, training, evaluation and translation give the same prompt ids.

For line 3 of a document after the same two translated lines, the prompt ids that ALPO's sampler hands the backend,
the ``prompt_ids`` ALPOTrainer (TRL's DPO tokenization) trains on, the ids of ``evaluate subtitles``' line mode and
the ids of ``subtitles translate``'s regeneration must be identical: with a Qwen2-style byte-level pre-tokenizer
(a prompt ending inside a line would not be a token prefix of the trained sequence) and with a tokenizer that puts a
BOS before every text, as Llama-3 does (TRL adds it in training, so generation must too).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from trl_seqpo.alpo.records import Candidate
from trl_seqpo.alpo.sampler import SegmentwiseConfig, SegmentwiseSampler
from trl_seqpo.rollout.engine import GenerationOutput
from trl_seqpo.rollout.linewise import LineDecoder, encode_prompt
from trl_seqpo.subtitles.documents import Document
from trl_seqpo.synthetic.tiny_models import build_tokenizer

SOURCE = ["He said so.", "Then he left...", '"Wait!" she cried.', "Nobody came."]
T = ["", "Hallo", "Tschuss", "Warte", "Niemand"]  # the model's line n is T[n]
WORDS = [*T[1:], *" ".join(SOURCE).split()]
BOS = "<|begin_of_text|>"


def qwen2_style():
    return build_tokenizer(WORDS, kind="bpe", bpe_vocab_size=420)


def with_bos():
    """The same vocabulary with a BOS the tokenizer puts before every text (Llama-3's convention)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    base = qwen2_style()
    backend = copy.deepcopy(base.backend_tokenizer)
    backend.add_special_tokens([BOS])
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=base.eos_token, pad_token=base.pad_token
    )
    assert tokenizer("Hallo")["input_ids"][0] == bos_id
    return tokenizer


class Recorder:
    """A backend that writes line ``n`` as ``"n.T[n]\\n"`` (a whole answer when no newline stops it)."""

    def __init__(self, tokenizer):
        from trl_seqpo.rollout.linewise import newline_token_ids

        self.tokenizer, self.prompts = tokenizer, []
        self.newline = set(newline_token_ids(tokenizer))

    def generate(self, prompts, params):
        outputs = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt, skip_special_tokens=True)
            done = text.rsplit("Translation", 1)[1].count("\n") - 1
            self.prompts.append((done + 1, list(prompt)))
            if self.newline & set(params.stop_token_ids):
                reply = f"{done + 1}.{T[done + 1]}\n"
            else:
                reply = "".join(f"{i}.{T[i]}\n" for i in range(1, len(SOURCE) + 1))
            ids = self.tokenizer.encode(reply, add_special_tokens=False)
            outputs.append(GenerationOutput(ids, [0.0] * len(ids), "stop"))
        return outputs


def sampling_prompts(tokenizer):
    backend = Recorder(tokenizer)
    config = SegmentwiseConfig(source_language="en", target_language="de", num_candidates=2, documents_per_batch=1)
    records = SegmentwiseSampler(backend, tokenizer, config).sample([Document("d", SOURCE)])[0]
    assert [r.prefix for r in records][2] == T[1:3]
    return dict(backend.prompts), records


def training_prompts(tokenizer, records, tmp_path):
    """``prompt_ids`` of the rows ALPOTrainer tokenizes (TRL's DPO), one row per line, prefix = chosen lines."""
    from trl_seqpo.alpo.config import ALPOConfig
    from trl_seqpo.alpo.pairs import PairSettings, build_pair_rows
    from trl_seqpo.alpo.trainer import ALPOTrainer
    from trl_seqpo.synthetic.tiny_models import build_tiny_model

    scored = []
    for record in records:
        texts = [record.candidates[record.chosen_index].text, "x a", "x b", "x c", "x d"]
        candidates = [Candidate(text, "policy", score) for text, score in zip(texts, (90.0, 70.0, 50.0, 30.0, 10.0))]
        scored.append(dataclasses.replace(record, candidates=candidates, chosen_index=0, votes=1, votes_requested=1))
    rows, _ = build_pair_rows(scored, PairSettings(prefix_mix_stages=1, prefix_mix_end=1.0))
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64)
    args = ALPOConfig(str(tmp_path), use_cpu=True, report_to="none", bf16=False, save_strategy="no")
    trainer = ALPOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    return {row["unit_index"] + 1: row["prompt_ids"] for row in trainer.train_dataset}


def evaluation_prompts(tokenizer):
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, _translate_by_line

    backend = Recorder(tokenizer)
    config = SubtitleEvalConfig(
        model="m", documents="d.jsonl", output_dir="out", source_lang="en", target_lang="de", progress=False
    )
    rows = _translate_by_line([Document("d", SOURCE)], LineDecoder(backend, tokenizer), config)
    assert rows[0]["hypothesis_lines"] == T[1:]
    return dict(backend.prompts)


def translation_prompts(tokenizer, monkeypatch):
    from trl_seqpo.rollout import linewise, loading

    backend = Recorder(tokenizer)
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: loading.LoadedModel(backend, tokenizer))
    translate, regenerate = linewise.load_translator("m", "en", "de")
    document = Document("d", SOURCE)
    assert translate([document]) == [T[1:]]
    first = backend.prompts[-1][1]  # the whole-document prompt is line 1's prompt
    assert regenerate([document], [[T[1], T[2], None, T[4]]]) == [T[1:]]
    return {1: first, 3: backend.prompts[-1][1]}


@pytest.mark.parametrize("make_tokenizer", [qwen2_style, with_bos], ids=["qwen2-pretokenizer", "bos"])
def test_a_line_has_the_same_prompt_ids_on_every_path(make_tokenizer, tmp_path, monkeypatch):
    tokenizer = make_tokenizer()
    sampled, records = sampling_prompts(tokenizer)
    trained = training_prompts(tokenizer, records, tmp_path)
    evaluated = evaluation_prompts(tokenizer)
    translated = translation_prompts(tokenizer, monkeypatch)
    for line in (1, 3):
        assert sampled[line] == trained[line] == evaluated[line] == translated[line], line
    assert sampled[2] == trained[2] == evaluated[2] and sampled[4] == trained[4] == evaluated[4]
    bos = tokenizer.bos_token_id
    assert (sampled[3][0] == bos) == (make_tokenizer is with_bos)
    assert tokenizer.decode(sampled[3], skip_special_tokens=True).rstrip(" ").endswith("\n")


def test_encode_prompt_keeps_what_the_tokenizer_puts_before_the_text_only():
    class AppendsEos:
        def encode(self, text, add_special_tokens=False):
            ids = [ord(char) for char in text]
            return [1, *ids, 2] if add_special_tokens else ids

    assert encode_prompt(AppendsEos(), "ab") == [1, 97, 98]
