"""The one language table: names, units and BLEU tokenisers agree for every spelling of a language."""

from __future__ import annotations

import pytest

from trl_seqpo import languages
from trl_seqpo.languages import bleu_tokenizer_for, default_unit, language_name, normalize_language


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("zh-CN", "zh"), ("zh_Hant", "zh"), ("Chinese", "zh"), ("cmn", "zh"), ("JAPANESE", "ja"), ("tha", "th")],
)
def test_every_spelling_maps_to_the_same_row(spelling, code):
    assert normalize_language(spelling) == code
    row = languages.LANGUAGES[code]
    assert language_name(spelling) == row.name
    assert default_unit(spelling) == row.unit == "char"


def test_unknown_language_is_kept_and_counted_in_words():
    assert normalize_language("sw-KE") == "sw"
    assert language_name("Swahili") == "Swahili"
    assert default_unit("sw") == "word"
    assert bleu_tokenizer_for("sw") == "13a"


def test_japanese_bleu_uses_mecab_only_when_installed(monkeypatch):
    monkeypatch.setattr(languages, "_mecab_available", lambda: False)
    assert bleu_tokenizer_for("ja-JP") == "char"
    monkeypatch.setattr(languages, "_mecab_available", lambda: True)
    assert bleu_tokenizer_for("ja-JP") == "ja-mecab"
    assert bleu_tokenizer_for("zh-TW") == "zh"
    assert bleu_tokenizer_for("en") == "13a"


def test_library_modules_share_the_table():
    from trl_seqpo.simt import chunking
    from trl_seqpo.subtitles import documents

    assert chunking.default_unit is default_unit
    assert documents.language_name is language_name
