"""Prompt formats: the paper's Fig. 2 template and the multi-turn chat format."""

from __future__ import annotations

import pytest

from trl_seqpo.simt.templates import (
    CHAT_INSTRUCTION,
    CONTINUE_MARKER,
    END_OF_SOURCE,
    build_chat_messages,
    render_chat,
    render_paper_prompt,
    template_strings,
)


def test_paper_prompt_is_the_figure_2_template():
    prompt = render_paper_prompt("Despite the pouring rain, hikers kept ", "尽管", "English", "Chinese")
    assert prompt == (
        "Translate from English to Chinese in a streaming style:\n"
        "English: Despite the pouring rain, hikers kept\n"
        "Chinese: 尽管"
    )


def test_paper_prompt_marks_the_end_of_the_source():
    incomplete = render_paper_prompt("a b c", "x", "English", "French")
    complete = render_paper_prompt("a b c", "x", "English", "French", source_complete=True)
    assert END_OF_SOURCE not in incomplete
    assert complete.splitlines()[1] == f"English: a b c {END_OF_SOURCE}"
    assert complete.endswith("\nFrench: x")


def test_paper_prompt_plus_output_is_next_prefix():
    # The translation prefix is verbatim: step t's prompt + output is a prefix of step t+1's prompt.
    step1 = render_paper_prompt("the cat ", "", "English", "French")
    step2 = render_paper_prompt("the cat sat ", "le chat", "English", "French")
    assert step1.endswith("French: ") and step2.endswith("French: le chat")


def test_chat_messages_alternate_chunks_and_outputs():
    messages = build_chat_messages(["the cat ", "sat on ", "the mat"], ["le chat", ""], "English", "French", False)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == CHAT_INSTRUCTION.format(src_lang="English", tgt_lang="French") + "\nthe cat"
    assert messages[1]["content"] == "le chat"
    assert messages[3]["content"] == ""  # the model waited
    assert messages[4]["content"] == "the mat"


def test_chat_messages_end_of_source_and_continue_steps():
    chunks, outputs = ["the cat ", "sat"], ["", "le chat", " s'est"]
    messages = build_chat_messages(chunks, outputs, "English", "French", True, system_prompt="Be brief.")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users[1:] == [f"sat {END_OF_SOURCE}", CONTINUE_MARKER, CONTINUE_MARKER]
    assert messages[-1]["role"] == "user"

    whole = build_chat_messages(chunks, outputs, "English", "French", True, add_next_turn=False)
    assert whole[-1] == {"role": "assistant", "content": " s'est"}
    assert [m["content"] for m in whole if m["role"] == "user"][1:] == [f"sat {END_OF_SOURCE}", CONTINUE_MARKER]


def test_single_chunk_source_marks_first_turn():
    messages = build_chat_messages(["hello"], [], "English", "French", True)
    assert messages == [
        {
            "role": "user",
            "content": CHAT_INSTRUCTION.format(src_lang="English", tgt_lang="French") + f"\nhello {END_OF_SOURCE}",
        }
    ]


@pytest.mark.parametrize(
    ("chunks", "outputs", "complete", "match"),
    [
        ([], [], False, "empty"),
        (["a", "b", "c"], ["x"], False, "one new chunk"),
        (["a"], ["x", "y"], False, "source_complete"),
    ],
)
def test_chat_messages_reject_inconsistent_steps(chunks, outputs, complete, match):
    with pytest.raises(ValueError, match=match):
        build_chat_messages(chunks, outputs, "English", "French", complete)


def test_bad_language_name():
    with pytest.raises(ValueError, match="src_lang"):
        render_paper_prompt("a", "", "", "French")


class _FakeTokenizer:
    """Just enough of a tokenizer: a chat template and apply_chat_template."""

    def __init__(self, chat_template):
        self.chat_template = chat_template
        self.calls = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        self.calls.append((tokenize, add_generation_prompt))
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_render_chat_uses_the_tokenizer_template():
    tokenizer = _FakeTokenizer("{{ messages }}")
    text = render_chat(tokenizer, [{"role": "user", "content": "hi"}])
    assert text == "<user>hi</user><assistant>"
    assert tokenizer.calls == [(False, True)]


def test_render_chat_with_a_real_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"[UNK]": 0, "[PAD]": 1}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    messages = build_chat_messages(["the cat "], [], "English", "French", False)
    assert render_chat(tokenizer, messages) == (
        "<|user|>Translate from English to French in a streaming style.\nthe cat\n<|assistant|>"
    )


def test_render_chat_without_template_explains():
    with pytest.raises(ValueError, match="no chat template"):
        render_chat(_FakeTokenizer(None), [{"role": "user", "content": "hi"}])


def test_template_strings_cover_every_fixed_text():
    strings = template_strings("English", "French")
    prompt = render_paper_prompt("SRC", "TGT", "English", "French", source_complete=True)
    messages = build_chat_messages(["SRC"], ["TGT"], "English", "French", True)
    rendered = prompt + " " + " ".join(m["content"] for m in messages)
    assert CONTINUE_MARKER in rendered and END_OF_SOURCE in rendered
    known_words = set(" ".join(strings).split())
    assert {word for word in rendered.split() if word not in ("SRC", "TGT")} <= known_words
