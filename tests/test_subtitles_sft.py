"""``sft_examples`` is a dataset TRL's SFTTrainer trains on, with the loss on the numbered translation only."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_seqpo.subtitles import align_cues, make_documents, read_subtitles, sft_examples

DATA = Path(__file__).parent / "data" / "subtitles"


@pytest.mark.slow
def test_sft_trainer_accepts_examples_and_masks_the_prompt(tmp_path):
    datasets = pytest.importorskip("datasets")
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    trl = pytest.importorskip("trl")

    result = align_cues(read_subtitles(DATA / "harbour.en.srt"), read_subtitles(DATA / "harbour.zh.srt"))
    examples = sft_examples(make_documents(result.groups, lines_per_document=4, context=1), "en", "zh")

    # A byte-level BPE tokenizer trained here on the examples themselves (nothing is downloaded).
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|pad|>", "<|end|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([e["prompt"] + e["completion"] for e in examples], trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end|>", pad_token="<|pad|>")
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = transformers.Qwen2ForCausalLM(config)
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        max_length=None,
    )
    sft = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(examples), processing_class=tokenizer
    )
    row = sft.train_dataset[0]
    # TRL 1.16 folds the completion mask into the labels: -100 on every prompt token.
    completion_ids = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
    prompt_ids = [token for token, label in zip(row["input_ids"], row["labels"]) if label == -100]
    # The loss covers exactly "1. ...\n2. ...\n" (+ EOS): the prompt ends on a token boundary ("Translation:\n").
    assert tokenizer.decode(completion_ids) == examples[0]["completion"] + tokenizer.eos_token
    assert tokenizer.decode(prompt_ids) == examples[0]["prompt"]
    assert sft.train().training_loss > 0
