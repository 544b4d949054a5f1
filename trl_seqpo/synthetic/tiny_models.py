"""A tiny tokenizer and a tiny Qwen2-style causal LM, built locally for tests and the demo.

Nothing here downloads anything: the tokenizer is trained in milliseconds on a word list or a few texts with the
``tokenizers`` library, and the model is randomly initialised from a `Qwen2Config`. The demo's
calibration (``DESIGN.md``, "Demo calibration") found that a ~0.5 M-parameter model (hidden 128, 4 heads, 2 layers)
learns the synthetic language pair of `trl_seqpo.synthetic.language_pair` in seconds, and that one token per word
learns about 5x faster than sub-word BPE because sequences are half as long; ``kind="wordlevel"`` gives one token per
known word while staying a byte-level BPE that ``AutoTokenizer`` reloads unchanged (see `build_tokenizer`).

Special tokens and their roles in a simultaneous rollout:

- ``<|im_start|>`` / ``<|im_end|>``: ChatML turn delimiters. ``<|im_end|>`` ends an assistant turn, so the SiMT
  rollout uses it as the *step-end* stop token (the policy has written its partial translation ``y_t``).
- ``<|endoftext|>``: end of the whole translation (and the padding token). In the chat format the final assistant
  turn ends with ``<|endoftext|><|im_end|>`` (see `trl_seqpo.seqpo.sft_data`), so generation stops at
  ``<|endoftext|>`` and the rollout knows the trajectory is finished.

The chat template is Qwen-style ChatML with ``{% generation %}`` markers around the assistant content *and* its
``<|im_end|>``, which is what TRL's ``SFTTrainer(assistant_only_loss=True)`` needs to train the model to end its
turns.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS_TOKEN, IM_START, IM_END)

# Qwen2.5-style ChatML. The assistant's content and its closing <|im_end|> sit inside {% generation %} so that
# `return_assistant_tokens_mask=True` marks exactly the tokens the policy writes (TRL's assistant_only_loss).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_ROLE_WORDS = ["system", "user", "assistant"]


def _template_texts() -> list[str]:
    """Every string constant of `trl_seqpo.simt.templates` (instructions, markers), if that module exists."""
    try:
        from trl_seqpo.simt import templates
    except ImportError:
        return []
    texts = []
    for name in dir(templates):
        value = getattr(templates, name)
        if name.isupper() and isinstance(value, str):
            texts.append(value)
        elif name.isupper() and isinstance(value, dict):
            texts.extend(v for v in value.values() if isinstance(v, str))
    return texts


def _rendered_templates() -> list[str]:
    """The prompt texts of `trl_seqpo.simt.templates` rendered for the synthetic language names."""
    from trl_seqpo.synthetic.language_pair import SOURCE_LANGUAGE, TARGET_LANGUAGE

    try:
        from trl_seqpo.simt.templates import template_strings
    except ImportError:
        return []
    return template_strings(SOURCE_LANGUAGE, TARGET_LANGUAGE)


def _train_byte_level_bpe(texts: list[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE with exactly the normaliser/pre-tokeniser that ``Qwen2Tokenizer`` rebuilds."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(pair) for pair in model["merges"]]


def build_tokenizer(
    words: Iterable[str],
    kind: Literal["wordlevel", "bpe"] = "wordlevel",
    extra_texts: Iterable[str] = (),
    bpe_vocab_size: int = 400,
) -> PreTrainedTokenizerFast:
    """Build a tiny fast tokenizer with ChatML special tokens and a generation-marked chat template.

    Both kinds are byte-level BPE tokenizers with Qwen2's exact normaliser and pre-tokeniser, built as a
    `Qwen2Tokenizer`: transformers >= 5 rebuilds every ``qwen2`` checkpoint's tokenizer with
    that class (ignoring the ``tokenizer.json`` pipeline), so anything else would change after a save/load round
    trip. Nothing maps to an unknown token.

    ``add_prefix_space=True``: every pre-token (word, punctuation run, newline) is encoded as if preceded by a space,
    so ``"dog"`` and ``" dog"`` are the same token wherever they appear (start of a turn, after a newline, mid
    sentence). With one form per word instead of two, the tiny model learns the synthetic dictionary about twice as
    fast, and a step output encodes to the same ids whether or not it starts with a space. The price: ``decode``
    puts a space before every pre-token, so it is exact only up to spacing (words-only text: up to a leading space).

    Args:
        words: The words of the languages to cover (for ``"wordlevel"``) or training texts (for ``"bpe"``).
            Entries may be whole sentences.
        kind: ``"wordlevel"``: BPE trained to completion on every word, so each known word (and each word of
            ``extra_texts`` and the prompt templates) is exactly one token, as a word-level vocabulary would give,
            while unknown text still falls back to bytes.
            ``"bpe"``: BPE with ``bpe_vocab_size`` entries trained on the texts, so words split into sub-words.
        extra_texts: More texts whose words must be covered, e.g. rendered prompt templates. The string constants of
            `trl_seqpo.simt.templates` are always added when that module is importable.
        bpe_vocab_size: Vocabulary size for ``"bpe"`` (256 byte symbols + specials + merges).

    Returns:
        A tokenizer with ``eos_token = pad_token = "<|endoftext|>"``, the extra special tokens ``<|im_start|>`` and
        ``<|im_end|>``, left padding and `CHAT_TEMPLATE`.
    """
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    texts = [*words, *extra_texts, *_template_texts(), *_ROLE_WORDS, "\n", ":\n", ".\n"]
    if kind == "wordlevel":
        # whole words and their letter runs ("[END]" -> "END"), which is how they appear after another word
        pieces = sorted({piece for text in texts for piece in [*text.split(), *re.findall(r"[^\W\d_]+", text)]})
        vocab, merges = _train_byte_level_bpe([*texts, *pieces], vocab_size=1_000_000)
    elif kind == "bpe":
        vocab, merges = _train_byte_level_bpe(texts, vocab_size=bpe_vocab_size)
    else:
        raise ValueError(f"kind must be 'wordlevel' or 'bpe', got {kind!r}")
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        extra_special_tokens=[IM_START, IM_END],
        padding_side="left",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
        add_prefix_space=True,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    head_dim: int = 32,
    intermediate_size: int = 512,
    num_key_value_heads: int | None = None,
    tie_word_embeddings: bool = True,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Qwen2ForCausalLM:
    """Randomly initialise a tiny `Qwen2ForCausalLM` sized to ``tokenizer``.

    Args:
        tokenizer: The tokenizer from `build_tokenizer`; sets the vocabulary size and special-token ids.
        hidden_size: Model width; must equal ``num_heads * head_dim`` (Qwen2 derives the head size from it).
        num_layers: Number of decoder layers.
        num_heads: Number of attention heads.
        head_dim: Size of one head; 32 or more lets vLLM's CPU attention backend load the model.
        intermediate_size: MLP width.
        num_key_value_heads: Grouped-query heads; defaults to ``num_heads``. Must divide ``num_heads``.
        tie_word_embeddings: Share input and output embeddings (halves the parameters of a tiny model).
        max_position_embeddings: Longest sequence the model is set up for.
        seed: Seed of the random initialisation (the same seed gives the same weights).

    Returns:
        The model in float32, in eval mode, with a generation config whose ``eos_token_id`` lists
        ``<|im_end|>`` and ``<|endoftext|>``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if hidden_size != num_heads * head_dim:
        raise ValueError(
            f"hidden_size ({hidden_size}) must equal num_heads * head_dim ({num_heads} * {head_dim}); "
            "Qwen2 derives the head size from hidden_size / num_heads"
        )
    num_key_value_heads = num_heads if num_key_value_heads is None else num_key_value_heads
    if num_heads % num_key_value_heads:
        raise ValueError(f"num_key_value_heads ({num_key_value_heads}) must divide num_heads ({num_heads})")
    eos_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.eos_token_id]
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_sliding_window=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return model.eval()


def save_tiny_model(
    output_dir: str | os.PathLike[str],
    words: Iterable[str] | None = None,
    kind: Literal["wordlevel", "bpe"] = "wordlevel",
    extra_texts: Iterable[str] = (),
    seed: int = 0,
    **model_kwargs: int | bool,
) -> Path:
    """Build a tiny tokenizer and model and save both with ``save_pretrained``.

    The directory then loads offline with ``AutoTokenizer.from_pretrained(dir)`` and
    ``AutoModelForCausalLM.from_pretrained(dir)``.

    Args:
        output_dir: Where to write; created if missing.
        words: Words (or texts) to cover. Defaults to the vocabulary of the synthetic language pair
            (`trl_seqpo.synthetic.language_pair.vocabulary`), and for ``"bpe"`` to a sample of its sentences.
        kind: ``"wordlevel"`` or ``"bpe"`` (see `build_tokenizer`).
        extra_texts: More texts to cover, e.g. rendered prompt templates.
        seed: Seed of the model initialisation.
        **model_kwargs: Passed to `build_tiny_model` (``hidden_size``, ``num_layers``, ...).

    Returns:
        The output directory as a `Path`.
    """
    from trl_seqpo.synthetic import language_pair as synthetic

    if words is None:
        if kind == "bpe":
            corpus = synthetic.generate_corpus(500, seed=seed)
            words = [text for ex in corpus for text in (ex.source, ex.reference)] + synthetic.vocabulary()
        else:
            words = synthetic.vocabulary()
        extra_texts = [*extra_texts, *synthetic.language_names(), *_rendered_templates()]
    tokenizer = build_tokenizer(words, kind=kind, extra_texts=extra_texts)
    model = build_tiny_model(tokenizer, seed=seed, **model_kwargs)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "tiny_model.json").write_text(
        json.dumps({"kind": kind, "seed": seed, "num_parameters": model.num_parameters(), **model_kwargs}, indent=2)
    )
    return output_dir


def save_restricted_output_model(output_dir: str | os.PathLike[str], extra_keep: Callable[[object], set[int]]) -> Path:
    """Save the tiny model (seed 2, untied head) with every output row zeroed but the synthetic target words and
    ``extra_keep(tokenizer)``.

    Greedy decoding then writes synthetic-language words and, depending on ``extra_keep``, waits, ends or breaks
    lines: a model with a predictable vocabulary for tests and benchmarks of the rollout and the server.

    Args:
        output_dir: Where to write (see `save_tiny_model`).
        extra_keep: Token ids to keep besides the target words, from the tokenizer.

    Returns:
        The output directory as a `Path`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo.synthetic import language_pair as synthetic

    path = save_tiny_model(output_dir, seed=2, tie_word_embeddings=False)
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
