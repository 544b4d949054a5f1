"""Dialogue-only classification: each kind of non-dialogue cue with its reason, SDH removal (issue 14, 2 and 8)."""

from __future__ import annotations

import pytest

from trl_seqpo.subtitles.align import align_dialogue
from trl_seqpo.subtitles.classify import classify_cues, dialogue_only, strip_sdh
from trl_seqpo.subtitles.io import Cue


def cue(index, start, end, text, style="", raw="", layer=0):
    return Cue(index, start, end, text, style=style, raw=raw or text, layer=layer)


DIALOGUE = [cue(i, 10.0 + 3 * i, 12.0 + 3 * i, f"Line number {i} is spoken here.") for i in range(6)]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (cue(9, 1.0, 1.0, "Hidden"), "zero_length"),
        (cue(9, 1.0, 1.04, "One frame"), "flash"),
        (cue(9, 1.0, 2.0, "", raw="{\\p1}m 0 0 l 10 0 10 10{\\p0}"), "drawing"),
        (cue(9, 1.0, 2.0, "la la", style="OP-JP", raw="{\\k20}la {\\k30}la"), "song"),
        (cue(9, 1.0, 2.0, "la la", style="Effect", raw="{\\k20}la {\\k30}la"), "karaoke"),
        (cue(9, 1.0, 2.0, "Bakery", style="Default", raw="{\\pos(100,200)}Bakery"), "positioned"),
        (cue(9, 1.0, 2.0, "Bakery", style="Default", raw="{\\move(1,2,3,4)}Bakery"), "positioned"),
        (cue(9, 1.0, 2.0, "Bakery", style="Scr"), "sign"),
        (cue(9, 1.0, 2.0, "Director Someone", style="STAFF"), "credit"),
        (cue(9, 1.0, 2.0, "字幕制作：喵萌奶茶屋 翻译：番茄鸡"), "credit"),
        (cue(9, 1.0, 2.0, "Subtitles by www.example.com"), "credit"),
        (cue(9, 1.0, 2.0, "Lyrics", style="edcn"), "song"),
        (cue(9, 1.0, 2.0, "♪ Row, row, row your boat ♪"), "song"),
        (cue(9, 1.0, 2.0, "[door slams]"), "description"),
        (cue(9, 1.0, 2.0, "(laughs)"), "description"),
        (cue(9, 1.0, 2.0, "（走る足音）"), "description"),
        (cue(9, 1.0, 2.0, "最高机密调查实验室 北极圈"), "other_script"),
        (cue(9, 1.0, 2.0, "BASED ON A TRUE STORY"), "sign"),
    ],
)
def test_each_signal_gives_its_reason(extra, reason):
    reasons = classify_cues([*DIALOGUE, extra])
    assert reasons[:-1] == [None] * len(DIALOGUE) and reasons[-1] == reason


def test_dialogue_styles_and_short_foreign_words_stay_dialogue():
    kept = [
        cue(9, 1.0, 2.0, "我还没想好", style="Default", raw="{\\k20}我{\\k30}还没{\\k40}想好"),
        cue(10, 3.0, 4.0, "OK", style="Dial-JP"),
        cue(11, 5.0, 6.0, "BUG了", style="Default"),
    ]
    chinese = [cue(i, 10.0 + 3 * i, 12.0 + 3 * i, "我们这个时候要说的话") for i in range(5)]
    assert classify_cues([*chinese, *kept])[-3:] == [None, None, None]


def test_layered_copies_of_one_sign_are_marked():
    layers = [cue(9 + k, 1.0, 2.0, "石动律花", style="Default", layer=k) for k in range(4)]
    assert classify_cues([*DIALOGUE, *layers])[-4:] == ["layered"] * 4


def test_name_card_and_date_caption_overlapping_dialogue_are_overlays():
    # ted_troxel.zh.srt, 12-22 s: a name card and a date caption laid over a running translation
    cues = [
        cue(0, 12.18, 14.396, "此时是清晨六点"),
        cue(1, 13.239, 17.109, "温蒂·特罗克塞"),
        cue(2, 14.42, 15.74, "外面一片漆黑"),
        cue(3, 16.46, 19.676, "我十四岁的儿子还在床上熟睡"),
        cue(4, 18.209, 21.609, "2016年11月 加州@DC"),
        cue(5, 19.7, 22.78, "就像所有十多岁的孩子一样 睡得又香又沉"),
    ]
    assert classify_cues(cues) == [None, "overlay", None, None, "overlay", None]


def test_strip_sdh_labels_descriptions_and_furigana():
    assert strip_sdh("[Claire] Raoul!") == "Raoul!"
    assert strip_sdh("JOHN: Where were you?\n- MARY: Out.") == "Where were you?\n- Out."
    assert strip_sdh("（律花(りっか)）ハァハァ") == "ハァハァ"
    assert strip_sdh("石動律花(いするぎりっか)です") == "石動律花です"
    assert strip_sdh("(sighs) OK, fine.") == "OK, fine."
    assert strip_sdh("[door slams]") == ""
    assert strip_sdh("Who is it? I said 2:30.") == "Who is it? I said 2:30."


def test_dialogue_only_keeps_requested_reasons_and_refuses_unknown_ones():
    cues = [*DIALOGUE, cue(9, 1.0, 2.0, "♪ la la ♪"), cue(10, 3.0, 4.0, "[sighs] Fine.")]
    kept, excluded = dialogue_only(cues)
    assert excluded == {9: "song"} and kept[-1].text == "Fine." and kept[-1].index == 10
    kept, excluded = dialogue_only(cues, keep={"song"}, strip=False)
    assert excluded == {} and kept[-1].text == "[sighs] Fine."
    with pytest.raises(ValueError, match="unknown reason"):
        dialogue_only(cues, keep={"sings"})


def test_staff_credit_is_not_paired_with_a_title():
    source = [cue(0, 1.0, 4.0, "THE HARBOUR"), cue(1, 5.0, 7.0, "You're late again.")]
    target = [cue(0, 1.1, 4.0, "翻译：小明 校对：小红", style="STAFF"), cue(1, 5.1, 7.0, "你又迟到了")]
    result = align_dialogue(source, target)
    assert [(group.source, group.target) for group in result.groups] == [("You're late again.", "你又迟到了")]
    assert result.excluded_source == {0: "sign"} and result.excluded_target == {0: "credit"}
    assert "not dialogue: source 1 (sign 1), target 1 (credit 1)" in result.summary()


def test_align_dialogue_passes_the_alignment_settings_to_align_cues():
    source = [cue(0, 1.0, 3.0, "You're late again."), cue(1, 5.0, 7.0, "Sorry.")]
    target = [cue(0, 1.5, 3.5, "你又迟到了"), cue(1, 5.0, 7.0, "对不起")]
    assert len(align_dialogue(source, target).groups) == 2
    # a start 0.5 s apart is too far under max_start_diff=0.2 and overlaps too little under min_overlap=1
    strict = align_dialogue(source, target, max_start_diff=0.2, min_overlap=1.0, recover_start_diff=0)
    assert [group.target for group in strict.groups] == ["对不起"] and strict.unmatched_source == [0]
    with pytest.raises(ValueError, match="min_overlap"):
        align_dialogue(source, target, min_overlap=2.0)


def test_hygiene_drops_identical_and_description_pairs_and_cleans_labels():
    from trl_seqpo.subtitles.hygiene import clean_pairs

    groups = [
        {"source": "JOHN: Where were you?", "target": "你去哪了？", "start": 1.0},
        {"source": "-=昆明帝艺高清影音=-", "target": "-=昆明帝艺高清影音=-", "start": 2.0},
        {"source": "1985", "target": "1985", "start": 3.0},
        {"source": "[door slams]", "target": "（关门声）", "start": 4.0},
        {"source": "Okay.", "target": "……", "start": 5.0},
        {"source": "Fine.", "target": "好吧", "start": 6.0},
    ]
    kept, counts = clean_pairs(groups)
    assert [(group["source"], group["target"]) for group in kept] == [
        ("Where were you?", "你去哪了？"),
        ("Fine.", "好吧"),
    ]
    assert kept[0]["start"] == 1.0
    assert dict(counts) == {"cleaned": 1, "identical": 2, "description": 1, "empty": 1}


def test_documents_command_reports_what_hygiene_left_out(tmp_path, capsys):
    import json

    from trl_seqpo.cli.main import main

    aligned = tmp_path / "a.jsonl"
    records = [
        {"source": "菜单", "target": "菜单"},
        {"source": "(laughs) Hi.", "target": "嗨"},
        {"source": "Bye.", "target": "再见"},
    ]
    aligned.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    out = tmp_path / "docs.jsonl"
    assert main(["subtitles", "documents", str(aligned), "-o", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["source_lines"] == ["Hi.", "Bye."]
    err = capsys.readouterr().err
    assert "(2 lines)" in err and "pairs left out: identical 1; SDH labels/descriptions removed from 1 pair(s)" in err
    assert main(["subtitles", "documents", str(aligned), "-o", str(out), "--no-filter"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["source_lines"] == ["菜单", "(laughs) Hi.", "Bye."]
