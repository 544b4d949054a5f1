"""The tiny tokenizer and model: round trips, one token per known word, chat template masks, offline reload."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_seqpo.simt.templates import build_chat_messages, template_strings
from trl_seqpo.synthetic import language_pair as synthetic
from trl_seqpo.synthetic.tiny_models import IM_END, build_tiny_model, build_tokenizer, save_tiny_model

LANGS = (synthetic.SOURCE_LANGUAGE, synthetic.TARGET_LANGUAGE)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def tokenizer(saved_dir):
    return AutoTokenizer.from_pretrained(saved_dir)


def test_reloaded_tokenizer_encodes_exactly_like_the_built_one(saved_dir, tokenizer):
    built = build_tokenizer(synthetic.vocabulary(), extra_texts=[*LANGS, *template_strings(*LANGS)])
    text = "Translate from English to Synthetic in a streaming style.\nthe big dog [END]"
    assert tokenizer(text)["input_ids"] == built(text)["input_ids"]
    assert len(tokenizer) == len(built)


def test_every_known_word_is_one_token_and_text_round_trips(tokenizer):
    template_words = [w for w in " ".join(template_strings(*LANGS)).split() if w.isalpha()]
    for word in [*synthetic.vocabulary(), *template_words]:
        assert len(tokenizer(word)["input_ids"]) == 1, word
        assert len(tokenizer(" " + word)["input_ids"]) == 1, word
    for example in synthetic.generate_corpus(20, seed=0):
        ids = tokenizer(example.reference)["input_ids"]
        assert len(ids) == len(example.reference.split())
        assert tokenizer.decode(ids) == " " + example.reference  # every word carries its prefix space
    # a word is the same token at the start of a turn and after a space (add_prefix_space)
    assert tokenizer("hundo grava")["input_ids"] == tokenizer(" hundo grava")["input_ids"]
    unknown = tokenizer.decode(tokenizer("zyxwv qqq")["input_ids"])
    assert unknown == " zyxwv qqq"  # unknown words fall back to bytes, nothing is lost


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"
    for token in ("<|im_start|>", IM_END):
        assert len(tokenizer(token)["input_ids"]) == 1


def test_chat_template_marks_assistant_content_and_turn_end(tokenizer):
    messages = build_chat_messages(
        ["the big ", "dog"], ["", " lo hundo grava<|endoftext|>"], *LANGS, True, add_next_turn=False
    )
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = [tok for tok, m in zip(tokenizer.convert_ids_to_tokens(ids), mask) if m]
    # wait step: just the turn end; last step: content, end of translation, turn end
    assert trained == [IM_END, "Ġlo", "Ġhundo", "Ġgrava", "<|endoftext|>", IM_END]
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_bpe_kind_splits_words_but_round_trips():
    texts = [e.reference for e in synthetic.generate_corpus(100, seed=0)]
    tokenizer = build_tokenizer(texts, kind="bpe", bpe_vocab_size=300)
    assert len(tokenizer) <= 300 + 3
    sentence = texts[0]
    assert len(tokenizer(sentence)["input_ids"]) > len(sentence.split())
    assert tokenizer.decode(tokenizer(sentence)["input_ids"]) == " " + sentence
    with pytest.raises(ValueError, match="kind"):
        build_tokenizer(["a"], kind="sentencepiece")


def test_model_loads_offline_and_matches_config(saved_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(saved_dir)
    cfg = model.config
    assert cfg.model_type == "qwen2"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (128, 2, 4)
    assert cfg.hidden_size // cfg.num_attention_heads == 32  # head_dim vLLM's CPU backend accepts
    assert cfg.vocab_size == len(tokenizer) and cfg.tie_word_embeddings
    assert set(model.generation_config.eos_token_id) == {
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids(IM_END),
    }
    assert model.num_parameters() < 1_000_000


def test_same_seed_same_weights_and_bad_shapes_rejected():
    tokenizer = build_tokenizer(["a b c"])
    first, second = build_tiny_model(tokenizer, seed=1), build_tiny_model(tokenizer, seed=1)
    other = build_tiny_model(tokenizer, seed=2)
    weight = "model.layers.0.mlp.up_proj.weight"
    assert (first.state_dict()[weight] == second.state_dict()[weight]).all()
    assert not (first.state_dict()[weight] == other.state_dict()[weight]).all()
    with pytest.raises(ValueError, match="num_heads \\* head_dim"):
        build_tiny_model(tokenizer, hidden_size=128, num_heads=4, head_dim=16)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        build_tiny_model(tokenizer, num_heads=4, num_key_value_heads=3)
