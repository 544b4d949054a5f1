"""BLEU / chrF rewards: values, text selection, tokenizer choice for zh/ja, and per-row failures."""

from __future__ import annotations

import logging

import pytest
import sacrebleu

from trl_seqpo.languages import bleu_tokenizer_for, normalize_language
from trl_seqpo.rewards import get_reward, inputs


def test_bleu_matches_sacrebleu_sentence_bleu():
    hyps = ["the cat sat on a mat", "a dog barked loudly today", "completely different words"]
    refs = ["the cat sat on the mat", "the dog barked loudly", "the cat sat on the mat"]
    scores = get_reward("bleu")(prompts=[""] * 3, completions=hyps, reference=refs)
    expected = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)]
    assert scores == pytest.approx(expected)
    assert scores[0] > scores[2]
    assert get_reward("bleu")(prompts=[""], completions=[refs[0]], reference=[refs[0]]) == [pytest.approx(100.0)]


def test_chrf_and_chrf_plus_plus():
    hyp, ref = ["the cat sat on a mat"], ["the cat sat on the mat"]
    chrf = get_reward("chrf")(prompts=[""], completions=hyp, reference=ref)[0]
    chrf_pp = get_reward("chrf", word_order=2)(prompts=[""], completions=hyp, reference=ref)[0]
    assert chrf == pytest.approx(sacrebleu.sentence_chrf(hyp[0], ref).score)
    assert chrf_pp == pytest.approx(sacrebleu.metrics.CHRF(word_order=2).sentence_score(hyp[0], ref).score)
    assert chrf != chrf_pp


def test_translation_column_wins_over_completions():
    # The SeqPO rollout's completion holds source chunks too; "translation" is only the policy's output.
    reward = get_reward("chrf")
    scores = reward(
        prompts=[""],
        completions=["<chunk> die katze </chunk> the cat"],
        translation=["the cat"],
        reference=["the cat"],
    )
    assert scores == [100.0]


def test_chat_completions_use_last_assistant_message():
    completions = [
        [
            {"role": "assistant", "content": "wrong"},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": "the cat"},
        ],
        [{"role": "assistant", "content": [{"type": "text", "text": "the "}, {"type": "text", "text": "cat"}]}],
        [{"role": "user", "content": "no assistant turn"}],
    ]
    scores = get_reward("chrf")(prompts=[""] * 3, completions=completions, reference=["the cat"] * 3)
    assert scores == [100.0, 100.0, None]


def test_chinese_target_uses_zh_tokenizer():
    hyp, ref = "我们今天去公园散步", "我们明天去公园散步"
    default = get_reward("bleu")(prompts=[""], completions=[hyp], reference=[ref])[0]
    by_factory = get_reward("bleu", target_lang="zh-CN")(prompts=[""], completions=[hyp], reference=[ref])[0]
    by_column = get_reward("bleu")(prompts=[""], completions=[hyp], reference=[ref], target_lang=["zh"])[0]
    assert default == 0.0  # 13a sees one "word" per sentence: no match at all
    assert by_factory == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref], tokenize="zh").score)
    assert 0.0 < by_factory < 100.0
    assert by_column == by_factory


def test_language_normalisation_and_tokenizer_table():
    assert normalize_language("zh_Hans") == "zh"
    assert normalize_language("Japanese") == "ja"
    assert normalize_language(None) is None
    assert bleu_tokenizer_for("zh") == "zh"
    assert bleu_tokenizer_for("de") == "13a"
    assert bleu_tokenizer_for(None) == "13a"
    hyp, ref = "今日は公園に行きます", "明日は公園に行きます"
    score = get_reward("bleu", target_lang="ja")(prompts=[""], completions=[hyp], reference=[ref])[0]
    assert score == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref], tokenize="char").score)
    assert score > 0.0


def test_rows_that_cannot_be_scored_get_none():
    reward = get_reward("bleu")
    scores = reward(prompts=[""] * 3, completions=["the cat", None, "the dog"], reference=["the cat", "x", None])
    assert scores[0] == pytest.approx(100.0) and scores[1] is None and scores[2] is None


def test_scoring_error_gives_none_and_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(inputs, "_WARNED", set())
    try:
        import MeCab  # noqa: F401

        pytest.skip("MeCab is installed, so ja-mecab does not fail")
    except ImportError:
        pass
    reward = get_reward("bleu", tokenize="ja-mecab")  # sacrebleu raises when MeCab is missing
    with caplog.at_level(logging.WARNING, logger="trl_seqpo.rewards"):
        first = reward(prompts=[""] * 2, completions=["a", "b"], reference=["a", "b"])
        second = reward(prompts=[""], completions=["a"], reference=["a"])
    assert first == [None, None] and second == [None]
    assert len([r for r in caplog.records if "could not score" in r.getMessage()]) == 1


def test_configuration_mistakes_raise_clear_errors():
    with pytest.raises(ValueError, match="needs a 'reference' column"):
        get_reward("bleu")(prompts=[""], completions=["x"], source=["y"])
    with pytest.raises(ValueError, match="'translation' column has 1 rows but there are 2"):
        get_reward("bleu")(prompts=["", ""], completions=["x", "y"], translation=["x"], reference=["x", "y"])
    with pytest.raises(ValueError, match="Unknown sacrebleu tokenizer"):
        get_reward("bleu", tokenize="klingon")
