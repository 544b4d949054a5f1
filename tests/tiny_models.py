"""Tiny test models whose greedy output is restricted to a few tokens (shared by several test files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from trl_seqpo.synthetic import language_pair as synthetic
from trl_seqpo.synthetic.tiny_models import IM_END, save_tiny_model


def restricted_output_model(path: Path, extra_keep: Callable[[object], set[int]]) -> Path:
    """Save the tiny model with every output row zeroed but the synthetic target words and ``extra_keep(tok)``.

    Greedy decoding then writes synthetic-language words and, depending on ``extra_keep``, waits, ends or breaks lines.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    save_tiny_model(path, seed=2, tie_word_embeddings=False)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    keep = set(extra_keep(tokenizer))
    for word in synthetic.DICTIONARY.values():
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        keep.update(ids if len(ids) == 1 else [])
    with torch.no_grad():
        drop = torch.ones(model.lm_head.weight.shape[0], dtype=torch.bool)
        drop[sorted(keep)] = False
        model.lm_head.weight[drop] = 0
    model.save_pretrained(path)
    return path


def word_emitting_model(path: Path) -> Path:
    """Greedy output: synthetic words, waits (``<|im_end|>`` at once) and ends (EOS)."""
    return restricted_output_model(path, lambda tok: {tok.convert_tokens_to_ids(IM_END), tok.eos_token_id})


def line_writing_model(path: Path) -> Path:
    """Greedy output: target words and newlines."""
    return restricted_output_model(path, lambda tok: {i for i in range(len(tok)) if "\n" in tok.decode([i])})
