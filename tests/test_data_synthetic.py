"""The synthetic language pair: determinism, reordering rules, gold alignments, synonyms."""

from __future__ import annotations

import pytest

from trl_seqpo.synthetic import language_pair as synthetic
from trl_seqpo.synthetic.language_pair import (
    DICTIONARY,
    TARGET_SYNONYMS,
    SyntheticPair,
    generate_corpus,
    to_dataset,
    translate,
)


def test_same_seed_same_corpus_other_seed_other_corpus():
    first, again, other = generate_corpus(50, seed=3), generate_corpus(50, seed=3), generate_corpus(50, seed=4)
    assert [(e.source, e.reference) for e in first] == [(e.source, e.reference) for e in again]
    assert [e.source for e in first] != [e.source for e in other]


def test_lengths_respect_bounds():
    corpus = generate_corpus(300, seed=1, min_words=6, max_words=9)
    lengths = {len(e.source.split()) for e in corpus}
    assert min(lengths) >= 6 and max(lengths) <= 9
    assert len(lengths) > 1


@pytest.mark.parametrize(
    ("source", "reference"),
    [
        ("the big dog sees a small cat", "lo hundo grava un mizo pika vidas"),
        ("a man likes the red car today", "un viro lo moto roza hodiau amas"),
        ("the child sees and the cat helps a dog", "lo kido vidas kaj lo mizo un hundo helpas"),
        ("every old tall farmer paints", "ci bauro veka alta pentras"),
    ],
)
def test_translate_applies_reordering_rules(source, reference):
    translation, alignment = translate(source)
    assert translation == reference
    src, tgt = source.split(), translation.split()
    # the alignment is a bijection consistent with the dictionary
    assert sorted(s for s, _ in alignment) == list(range(len(src)))
    assert sorted(t for _, t in alignment) == list(range(len(tgt)))
    assert all(DICTIONARY[src[s]] == tgt[t] for s, t in alignment)


def test_corpus_alignments_are_dictionary_bijections_and_some_words_need_waiting():
    reordered = 0
    for example in generate_corpus(200, seed=2):
        src, tgt = example.source.split(), example.reference.split()
        assert len(src) == len(tgt) == len(example.alignment)
        assert all(DICTIONARY[src[s]] == tgt[t] for s, t in example.alignment)
        reordered += any(s > t for s, t in example.alignment)
    assert reordered > 150  # verbs and adjectives wait for later source words in most sentences


def test_synonyms_appear_at_the_requested_rate_and_alternatives_are_valid_words():
    plain = generate_corpus(300, seed=0)
    mixed = generate_corpus(300, seed=0, synonym_prob=1.0)
    plain_words = {w for e in plain for w in e.reference.split()}
    mixed_words = {w for e in mixed for w in e.reference.split()}
    assert not plain_words & set(TARGET_SYNONYMS.values())
    assert set(TARGET_SYNONYMS.values()) <= mixed_words
    assert not mixed_words & set(TARGET_SYNONYMS)  # every primary word with a synonym was replaced
    assert set(TARGET_SYNONYMS.values()) <= set(synthetic.vocabulary())


def test_to_dataset_columns():
    dataset = to_dataset(generate_corpus(5, seed=0))
    assert dataset.column_names == ["source", "reference", "alignment"]
    assert len(dataset) == 5
    assert all(len(pair) == 2 for pair in dataset[0]["alignment"])


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="min_words"):
        SyntheticPair(min_words=2)
    with pytest.raises(ValueError, match="max_words"):
        SyntheticPair(min_words=8, max_words=5)
    with pytest.raises(ValueError, match="not in the synthetic dictionary"):
        translate("the dog eats")


def test_subtitle_documents_take_every_line_setting_of_subtitle_lines():
    from trl_seqpo.synthetic.subtitles import make_subtitle_documents, subtitle_lines

    documents = make_subtitle_documents(2, 3, seed=4, synonym_prob=1.0, max_words=4, continue_prob=0.0)
    lines = subtitle_lines(6, 4, synonym_prob=1.0, max_words=4, continue_prob=0.0)
    assert [line for document in documents for line in document.source_lines] == [source for source, _ in lines]
    assert [line for document in documents for line in document.target_lines] == [target for _, target in lines]
    assert all(len(source.rstrip(".").split()) <= 4 for source, _ in lines)
    with pytest.raises(TypeError, match="max_word"):
        make_subtitle_documents(1, 2, max_word=4)
