"""Numbered-line documents (ALPO Sec. 4.1, App. F.1): cutting, prompts, line-level prompts, parsing model output."""

from __future__ import annotations

import pytest

from trl_seqpo.subtitles.align import AlignedGroup
from trl_seqpo.subtitles.documents import (
    Document,
    make_documents,
    parse_numbered_output,
    render_document_prompt,
    render_line_prompt,
    render_numbered_lines,
    sft_examples,
)

SOURCE = ["You're late again.", "In this rain?", "Sit down. Before you catch cold.", "I haven't decided.", "Fair?"]
TARGET = ["你又迟到了", "下这么大的雨？", "快坐下 别着凉了", "我还没想好", "公平？"]


def test_make_documents_cuts_lines_and_adds_context():
    docs = make_documents(list(zip(SOURCE, TARGET)), lines_per_document=2, context=1, doc_id_prefix="harbour")
    assert [doc.doc_id for doc in docs] == ["harbour-0000", "harbour-0001", "harbour-0002"]
    assert [doc.source_lines for doc in docs] == [SOURCE[0:2], SOURCE[2:4], SOURCE[4:5]]
    assert [doc.target_lines for doc in docs] == [TARGET[0:2], TARGET[2:4], TARGET[4:5]]
    assert (docs[0].context_before, docs[0].context_after) == ([], [SOURCE[2]])
    assert (docs[1].context_before, docs[1].context_after) == ([SOURCE[1]], [SOURCE[4]])
    assert (docs[2].context_before, docs[2].context_after) == ([SOURCE[3]], [])
    assert Document.from_dict(docs[1].to_dict()) == docs[1]


def test_make_documents_accepts_groups_dicts_and_plain_lines():
    group = AlignedGroup([0], [0, 1], "Your father\ncalled.", "你爸\n打电话了", 1.0, 2.0)
    from_groups = make_documents([group, {"source": "Hi.", "target": "嗨"}], context=(0, 0))
    assert from_groups[0].source_lines == ["Your father called.", "Hi."]  # one line per entry
    assert from_groups[0].target_lines == ["你爸 打电话了", "嗨"]
    plain = make_documents(SOURCE, lines_per_document=35)
    assert len(plain) == 1 and plain[0].target_lines is None and plain[0].source_lines == SOURCE
    with pytest.raises(ValueError, match="targets for all lines"):
        make_documents([("a", "b"), "c"])
    with pytest.raises(ValueError, match="lines_per_document"):
        make_documents(SOURCE, lines_per_document=0)
    with pytest.raises(ValueError, match="one reference per source line"):
        Document("d", ["a", "b"], ["x"])


def test_numbered_lines():
    assert render_numbered_lines(["Hi.", "Two\nlines"]) == "1.Hi.\n2.Two lines\n"
    assert render_numbered_lines(["x"], start=7) == "7.x\n"
    assert render_numbered_lines([]) == ""


def test_document_prompt_layout():
    doc = Document("d", SOURCE[1:3], None, context_before=[SOURCE[0]], context_after=[SOURCE[3]])
    prompt = render_document_prompt(doc, "en", "zh")
    assert "2 numbered lines of English" in prompt and "into Chinese" in prompt
    assert prompt.endswith(
        "\nOriginal text:\n1.In this rain?\n2.Sit down. Before you catch cold.\n"
        + ("\nLater lines (context only, do not translate):\n- I haven't decided.\n\nTranslation:\n")
    )
    assert "\nEarlier lines (context only, do not translate):\n- You're late again.\n" in prompt
    assert prompt.index("Earlier lines") < prompt.index("Original text") < prompt.index("Later lines")


def test_line_prompts_are_prefixes_of_the_sft_sequence():
    # ALPO Alg. 1 samples line i after the chosen lines < i: that prompt must be a prefix of prompt + completion
    # in exactly the format the SFT model was trained on, and the model's line must end where line i+1 starts.
    doc = make_documents(list(zip(SOURCE, TARGET)), lines_per_document=5)[0]
    example = sft_examples([doc], "en", "zh")[0]
    full = example["prompt"] + example["completion"]
    for i in range(len(SOURCE)):
        prompt = render_line_prompt(doc, TARGET[:i], "en", "zh")
        assert prompt == render_document_prompt(doc, "en", "zh") + render_numbered_lines(TARGET[:i])
        assert full.startswith(prompt) and prompt.endswith("\n")
        assert full[len(prompt) :].startswith(f"{i + 1}.{TARGET[i]}\n")
    assert example["completion"] == "".join(f"{i + 1}.{line}\n" for i, line in enumerate(TARGET))
    # the model's own lines parse back to what it wrote
    assert parse_numbered_output(example["completion"], 5).lines == TARGET
    with pytest.raises(ValueError, match="prefix"):
        render_line_prompt(doc, TARGET, "en", "zh")


def test_sft_examples_need_targets():
    with pytest.raises(ValueError, match="no target_lines"):
        sft_examples(make_documents(SOURCE), "en", "zh")
    assert set(sft_examples(make_documents(list(zip(SOURCE, TARGET))), "en", "zh")[0]) == {"prompt", "completion"}


def test_parse_clean_output():
    parsed = parse_numbered_output("1. 你又迟到了\n2. 下这么大的雨？\n", 2)
    assert parsed.lines == ["你又迟到了", "下这么大的雨？"] and parsed.ok


@pytest.mark.parametrize(
    ("text", "lines", "problem"),
    [
        ("Sure! Here you go:\n\n1. a\n\n2. b\n\n3. c\nHope this helps.", ["a", "b", "c"], "ignored"),
        ("1.a\n2)b\n3、c", ["a", "b", "c"], None),
        ("1. a\n2. b 3. c", ["a", "b", "c"], "merged"),
        ("1. a\n2. b\n4. d", ["a", "b", None], "missing line(s): 3"),
        ("1. a\nb\n3. c", ["a", "b", "c"], "line 2 had no number"),
        ("1. a\nstill a\n2. b\n3. c", ["a still a", "b", "c"], "joined unnumbered text to line 1"),
        ("1. a\n2. b\n2. again\n3. c", ["a", "b", "c"], "more than once"),
        ("Here is my translation", [None, None, None], "no numbered line found"),
        ("", [None, None, None], "missing line(s): 1, 2, 3"),
    ],
)
def test_parse_repairs_and_reports(text, lines, problem):
    parsed = parse_numbered_output(text, 3)
    assert parsed.lines == lines
    if problem is None:
        assert parsed.problems == []
    else:
        assert any(problem in note for note in parsed.problems), parsed.problems
        assert not parsed.ok


def test_parse_does_not_split_on_numbers_that_exist_elsewhere():
    parsed = parse_numbered_output("1. Take bus 2. Then walk.\n2. b\n3. c", 3)
    assert parsed.lines == ["Take bus 2. Then walk.", "b", "c"] and parsed.ok
