"""Source chunking: units per language, spacing preserved, chunk counts as in SeqPO-SiMT Sec. 2.2."""

from __future__ import annotations

import random

import pytest

from trl_seqpo.simt.chunking import count_units, default_unit, num_chunks, split_into_chunks, split_units


@pytest.mark.parametrize(
    ("lang", "unit"),
    [
        ("zh", "char"),
        ("zh-CN", "char"),
        ("zh_Hans", "char"),
        ("ja", "char"),
        ("th", "char"),
        ("Chinese", "char"),
        ("JAPANESE", "char"),
        ("Thai", "char"),
        ("en", "word"),
        ("English", "word"),
        ("de-DE", "word"),
        ("tha", "char"),  # ISO 639-3 code of Thai
        ("sw", "word"),  # not in the table: words
    ],
)
def test_default_unit(lang, unit):
    assert default_unit(lang) == unit


def test_count_and_split_units():
    assert count_units("  Despite the\tpouring rain,\n", "word") == 4
    assert split_units("  Despite the\tpouring rain,\n", "word") == ["Despite", "the", "pouring", "rain,"]
    assert count_units("尽管 下着\n大雨。", "char") == 7
    assert split_units("a b", "char") == ["a", "b"]
    assert count_units("", "word") == count_units("   ", "char") == 0
    with pytest.raises(ValueError, match="unit"):
        count_units("x", "token")


def test_split_matches_paper_example():
    source = "Despite the pouring rain, hikers kept going to the top, hoping to catch the sunset."
    chunks = split_into_chunks(source, 3, "word")
    assert [chunk.strip() for chunk in chunks] == [
        "Despite the pouring",
        "rain, hikers kept",
        "going to the",
        "top, hoping to",
        "catch the sunset.",
    ]
    assert "".join(chunks) == source


def test_whitespace_goes_with_neighbouring_chunk():
    assert split_into_chunks("  a  b c\n", 2, "word") == ["  a  b ", "c\n"]
    assert split_into_chunks(" 下着 大雨 ", 2, "char") == [" 下着 ", "大雨 "]


def test_short_and_empty_sources():
    assert split_into_chunks("hello world", 5, "word") == ["hello world"]
    assert split_into_chunks("", 3, "word") == []
    assert split_into_chunks(" \n ", 3, "char") == []
    assert num_chunks("", 3, "word") == 0


@pytest.mark.parametrize("unit", ["word", "char"])
def test_random_texts_round_trip(unit):
    rng = random.Random(0)
    alphabet = ["a", "bc", "下", "雨", " ", "  ", "\n", "\t", ",", "é"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        size = rng.randint(1, 6)
        chunks = split_into_chunks(text, size, unit)
        n = count_units(text, unit)
        assert len(chunks) == num_chunks(text, size, unit) == -(-n // size)
        if n:
            assert "".join(chunks) == text
            assert [count_units(chunk, unit) for chunk in chunks[:-1]] == [size] * (len(chunks) - 1)
            assert 1 <= count_units(chunks[-1], unit) <= size


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_invalid_chunk_size(bad):
    with pytest.raises(ValueError, match="chunk_size"):
        split_into_chunks("a b", bad, "word")
