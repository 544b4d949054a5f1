"""Tiny test models whose greedy output is restricted to a few tokens (shared by several test files)."""

from __future__ import annotations

from pathlib import Path

from trl_seqpo.synthetic import language_pair as synthetic
from trl_seqpo.synthetic.tiny_models import IM_END, save_restricted_output_model


def word_emitting_model(path: Path) -> Path:
    """Greedy output: synthetic words, waits (``<|im_end|>`` at once) and ends (EOS)."""
    return save_restricted_output_model(path, lambda tok: {tok.convert_tokens_to_ids(IM_END), tok.eos_token_id})


def line_writing_model(path: Path) -> Path:
    """Greedy output: target words and newlines."""
    return save_restricted_output_model(path, lambda tok: {i for i in range(len(tok)) if "\n" in tok.decode([i])})


def save_seqpo_tiny_model(path: Path) -> tuple[str, object]:
    """A saved one-layer model for the SeqPO trainer tests (TRL builds the reference model from the policy's path).

    Returns:
        The model's directory (as a string, what `SeqPOTrainer` takes) and its tokenizer.
    """
    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer([*synthetic.vocabulary(), *synthetic.language_names()])
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=1, num_heads=2, head_dim=32, intermediate_size=128)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), tokenizer


def seqpo_train_rows():
    """Eight synthetic sentence pairs with only the ``source`` and ``reference`` columns."""
    return synthetic.to_dataset(synthetic.generate_corpus(8, seed=0, min_words=4, max_words=7)).remove_columns(
        "alignment"
    )


def seqpo_config(tmp_path: Path, **values: object):
    """A `SeqPOConfig` for a step or two on the CPU with the tiny model; ``values`` set or override fields."""
    from trl_seqpo import SeqPOConfig

    src, tgt = synthetic.language_names()[:2]
    defaults = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2, learning_rate=1e-2,
        chunk_size=2, src_lang=src, tgt_lang=tgt, latency_unit="word", source_unit="word", max_new_tokens_per_step=4,
        max_steps_after_source=1, quality_reward="chrf", beta=0.02, use_cpu=True, report_to="none", logging_steps=1,
        save_strategy="no", bf16=False, seed=0,
    )  # fmt: skip
    return SeqPOConfig(**{**defaults, **values})


#: the English/French toy vocabulary of the rollout tests
ROLLOUT_WORDS = [
    *"the a big small dog cat runs sees red tree English French".split(),
    *"la le grand petit chien chat court voit rouge arbre".split(),
]


def rollout_tokenizer_and_model() -> tuple[object, object]:
    """A word-level tokenizer over `ROLLOUT_WORDS` and a 2-layer tiny model for it (random weights, seeded)."""
    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer(ROLLOUT_WORDS)
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, num_heads=2, head_dim=32, intermediate_size=128)
    return tokenizer, model
