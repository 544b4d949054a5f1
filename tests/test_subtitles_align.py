"""Bilingual alignment by time (ALPO App. A.2): extra, split, merged and dropped lines, shifted timings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from trl_seqpo.subtitles.align import align_cues, is_cjk_language, join_texts
from trl_seqpo.subtitles.io import Cue, read_subtitles

DATA = Path(__file__).parent / "data" / "subtitles"

# (source cue indices, target cue indices) of harbour.en.srt against harbour.zh.srt, written by hand.
HARBOUR_GROUPS = [
    ([0], [2]),
    ([1], [3]),
    ([2], [4]),
    ([4, 5], [5]),  # two English lines merged into one Chinese line
    ([6], [6, 7]),  # one English line split into two Chinese lines
    ([7], [8]),
    ([8], [9]),
    ([9], [10]),
    ([10], [11]),
]


def pairs(result):
    return [(group.source_lines, group.target_lines) for group in result.groups]


@pytest.fixture(scope="module")
def english():
    return read_subtitles(DATA / "harbour.en.srt")


def test_harbour_pair(english):
    chinese = read_subtitles(DATA / "harbour.zh.srt")
    result = align_cues(english, chinese)
    assert pairs(result) == HARBOUR_GROUPS
    assert result.unmatched_target == [0, 1]  # disclaimer and episode title card before the dialogue
    assert result.unmatched_source == [3]  # "Hm." was dropped by the translator, not glued to a neighbour
    merged, split = result.groups[3], result.groups[4]
    assert merged.source == "Sit down. Before you catch cold."
    assert merged.target == "快坐下 别着凉了"
    assert split.target == "你爸打了两次电话 问你过节回不回家"  # Chinese cues joined by a space
    assert split.source == "Your father called twice. He wants to know if you're coming home for the festival."
    assert (split.start, split.end) == (75.0, 79.5)
    assert [group.start for group in result.groups] == sorted(group.start for group in result.groups)


def test_ass_target_with_override_tags(english):
    chinese = read_subtitles(DATA / "harbour.zh.ass")
    result = align_cues(english, chinese, target_lang="zh")
    # The ASS file has one more event (a {\p1} drawing, index 4): every later index moves up by one.
    shifted = [(src, [index + (index >= 4) for index in tgt]) for src, tgt in HARBOUR_GROUPS]
    assert pairs(result) == shifted
    assert result.skipped_target == [4]
    assert result.groups[1].target == "渡轮在海湾中间抛锚了我只好走完最后一英里"  # a wrap: no space
    assert result.groups[3].target == "快坐下 别着凉了"


def test_swapping_sides_gives_the_same_groups(english):
    chinese = read_subtitles(DATA / "harbour.zh.srt")
    result = align_cues(chinese, english)  # zh -> en: now the source has the extra lines at the start
    assert pairs(result) == [(tgt, src) for src, tgt in HARBOUR_GROUPS]
    assert (result.unmatched_source, result.unmatched_target) == ([0, 1], [3])


def dialogue(count, seed):
    """A programme of `count` cues with natural lengths and pauses."""
    rng = random.Random(seed)
    cues, clock = [], 5.0
    for index in range(count):
        duration = rng.uniform(1.0, 4.0)
        cues.append(Cue(index, round(clock, 3), round(clock + duration, 3), f"line {index}"))
        clock += duration + rng.uniform(0.1, 1.5)
    return cues


@pytest.mark.parametrize("seed", range(5))
def test_timings_off_by_up_to_0_6_seconds_still_pair_one_to_one(seed):
    rng = random.Random(seed)
    source = dialogue(300, seed)
    target = []
    for cue in source:
        shift = rng.uniform(-0.6, 0.6)
        target.append(Cue(cue.index, cue.start + shift, cue.end + rng.uniform(-0.6, 0.6), f"行 {cue.index}"))
    result = align_cues(source, target)
    assert pairs(result) == [([index], [index]) for index in range(300)]
    assert result.unmatched_source == result.unmatched_target == []


def test_many_extra_lines_at_the_start_do_not_shift_the_pairing():
    # The paper's index window (2M around the same index, M = 3) cannot reach partners 40 lines away.
    source = dialogue(60, seed=7)
    offset = 40
    intro = [Cue(i, 0.05 * i, 0.05 * i + 0.04, f"credit {i}") for i in range(offset)]  # opening song, credits
    target = intro + [Cue(offset + c.index, c.start + 0.3, c.end + 0.3, f"行 {c.index}") for c in source[:57]]
    result = align_cues(source, target)
    assert pairs(result) == [([i], [offset + i]) for i in range(57)]
    assert result.unmatched_target == list(range(offset))
    assert result.unmatched_source == [57, 58, 59]


def test_input_order_does_not_matter():
    source = dialogue(50, seed=3)
    target = [Cue(c.index, c.start + 0.2, c.end, f"行 {c.index}") for c in source]
    shuffled = target[:]
    random.Random(0).shuffle(shuffled)
    assert pairs(align_cues(source, shuffled)) == pairs(align_cues(source, target))


def test_max_start_diff_is_configurable():
    source = [Cue(0, 10.0, 11.0, "Look out!")]
    target = [Cue(0, 10.9, 12.5, "小心！")]  # starts 0.9 s late and barely overlaps: not the same line by default
    result = align_cues(source, target)
    assert (result.groups, result.unmatched_source, result.unmatched_target) == ([], [0], [0])
    assert pairs(align_cues(source, target, max_start_diff=1.0)) == [([0], [0])]


def test_late_start_but_same_span_is_grouped_by_overlap():
    source = [Cue(0, 10.0, 14.0, "I've been waiting here since noon.")]
    target = [Cue(0, 10.9, 14.0, "我从中午就在这儿等着了")]  # 0.9 s late, but the same line on screen
    assert pairs(align_cues(source, target)) == [([0], [0])]


def test_empty_inputs_and_bad_arguments():
    assert align_cues([], []).groups == []
    only = align_cues([Cue(0, 1.0, 2.0, "Hi.")], [])
    assert (only.groups, only.unmatched_source) == ([], [0])
    with pytest.raises(ValueError, match="max_start_diff"):
        align_cues([], [], max_start_diff=-1)
    with pytest.raises(ValueError, match="min_overlap"):
        align_cues([], [], min_overlap=0)


def test_text_joining_by_language():
    assert is_cjk_language("zh") and is_cjk_language("zh-Hant") and is_cjk_language("ja_JP")
    assert not is_cjk_language("en") and not is_cjk_language("ko") and not is_cjk_language(None)
    assert join_texts(["Sit\ndown.", " ", "Now."]) == "Sit down. Now."
    assert join_texts(["快坐下", "别着凉了"], "") == "快坐下别着凉了"
    source = [Cue(0, 1.0, 4.0, "Wait."), Cue(1, 2.0, 3.5, "Please.")]
    target = [Cue(0, 1.0, 4.0, "Warte bitte.")]
    result = align_cues(source, target, source_lang="en", target_lang="de")
    assert result.groups[0].source == "Wait. Please."


def test_summary_lists_unmatched(english):
    result = align_cues(english, read_subtitles(DATA / "harbour.zh.srt"))
    assert result.summary() == "9 aligned groups; unmatched source cues: 1 (3); unmatched target cues: 2 (0, 1)"
    assert result.groups[0].to_dict() == {
        "source_lines": [0],
        "target_lines": [2],
        "source": "You're late again.",
        "target": "你又迟到了",
        "start": 62.0,
        "end": 64.2,
    }


def test_early_half_of_a_split_translation_is_kept():
    # The Imitation Game, en 7 <-> ru 12 + 13: the first Russian half starts 1.4 s early and overlaps 48.9%
    source = [
        Cue(0, 124.87, 127.84, "that you are in control"),
        Cue(1, 129.52, 132.54, "You're mistaken. I am in control."),
    ]
    target = [
        Cue(0, 124.9, 127.8, "что вы контролируете"),
        Cue(1, 128.14, 130.84, "Вы ошибаетесь."),
        Cue(2, 130.9, 132.5, "Контролирую всё - я."),
    ]
    assert pairs(align_cues(source, target)) == [([0], [0]), ([1], [1, 2])]
    without_neighbour = [target[0], target[1]]  # no other half in the group: an extra line, left alone
    assert align_cues(source, without_neighbour).unmatched_target == [1]


def test_split_half_between_two_groups_follows_the_sentence():
    source = [
        Cue(0, 166.88, 170.77, "But if you choose to stay,"),
        Cue(1, 170.87, 175.47, "What happens is not mine."),
    ]
    target = [
        Cue(0, 166.9, 170.0, "Но если останетесь,"),
        Cue(1, 170.08, 171.62, "За то, что случится"),  # overlaps en 0 by 45%, en 1 by 49%; no sentence end
        Cue(2, 171.7, 175.4, "далее я не в ответе."),
    ]
    assert pairs(align_cues(source, target)) == [([0], [0]), ([1], [1, 2])]


def test_mutually_exclusive_leftovers_a_second_apart_are_paired():
    source = [Cue(0, 1300.0, 1305.0, "Earlier line."), Cue(1, 1309.99, 1311.36, "100,000...")]
    target = [Cue(0, 1300.0, 1305.0, "Раньше."), Cue(1, 1310.89, 1312.15, "100 000...")]  # 0.9 s apart
    assert pairs(align_cues(source, target)) == [([0], [0]), ([1], [1])]
    assert pairs(align_cues(source, target, recover_start_diff=0)) == [([0], [0])]
    rival = [*target, Cue(2, 1310.75, 1312.5, "Сто тысяч")]  # two candidates: not each other's only one
    assert pairs(align_cues(source, rival)) == [([0], [0])]
    second = [*source, Cue(2, 1311.7, 1313.0, "A hundred thousand.")]  # the target's candidates: two sources
    assert pairs(align_cues(second, target)) == [([0], [0])]


def test_cjk_cues_are_joined_by_a_space_and_wraps_vanish():
    source = [Cue(0, 1.0, 4.0, "I have to go. - Mm.")]
    target = [Cue(0, 1.0, 2.5, "我该走了"), Cue(1, 2.5, 4.0, "嗯")]
    assert align_cues(source, target, target_lang="zh").groups[0].target == "我该走了 嗯"
    assert join_texts(["一句话\n分两行"], no_space_wraps=True) == "一句话分两行"
    assert join_texts(["一句话\n分两行"]) == "一句话 分两行"
    assert join_texts(["私はGoogle\nで働く"], no_space_wraps=True) == "私はGoogle で働く"
    assert join_texts(["Sit\ndown.", "Now."], no_space_wraps=True) == "Sit down. Now."


def _cue(index, start, end):
    return Cue(index, start, end, f"line {index}")


@pytest.mark.parametrize(
    ("cue", "other", "attached"),
    [
        ((10.0, 11.0), (10.5, 14.0), True),  # half of the cue's own second is covered (14% of the other cue)
        ((10.0, 14.0), (13.0, 13.5), False),  # the other cue is covered entirely, but only 12.5% of this one
    ],
)
def test_attach_measures_the_cover_on_the_unanchored_cue(cue, other, attached):
    from trl_seqpo.subtitles.align import _attach

    links = _attach([_cue(0, *cue)], [_cue(0, *other)], [0], min_overlap=0.5)
    assert links == ([(0, 0)] if attached else [])


def test_attach_gives_a_tie_to_the_earlier_cue():
    from trl_seqpo.subtitles.align import _attach

    others = [_cue(0, 9.0, 11.0), _cue(1, 11.0, 13.0)]  # each overlaps the cue by exactly 1 s
    assert _attach([_cue(0, 10.0, 12.0)], others, [0], min_overlap=0.4) == [(0, 0)]
    # the larger overlap wins whatever the order
    assert _attach([_cue(0, 10.0, 12.0)], [_cue(0, 9.0, 10.8), _cue(1, 10.9, 13.0)], [0], 0.4) == [(0, 1)]
