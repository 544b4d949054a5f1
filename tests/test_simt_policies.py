"""Fixed baseline policies (wait-k, full sentence) composed with an arbitrary model."""

from __future__ import annotations

import pytest

from trl_seqpo.simt.latency import average_lagging, delays_from_steps
from trl_seqpo.simt.policies import (
    FullSentencePolicy,
    WaitKPolicy,
    constrain_step,
    full_sentence,
    policy_from_name,
    simulate_policy,
    truncate_to_units,
)

LEXICON = {"the": "le", "black": "noir", "cat": "chat", "sleeps": "dort", "on": "sur", "a": "un", "mat": "tapis"}


def word_by_word(source_prefix: str, translation_prefix: str, source_complete: bool) -> str:
    """A 'model' that translates every source word it has seen, continuing its own prefix (and over-generates)."""
    done = len(translation_prefix.split())
    return "".join(" " + LEXICON[word] for word in source_prefix.split()[done:])


def test_truncate_to_units_keeps_spacing():
    assert truncate_to_units(" the cat  sat down", 3, "word") == " the cat  sat"
    assert truncate_to_units("the cat", 5, "word") == "the cat"
    assert truncate_to_units("the cat", 0, "word") == ""
    assert truncate_to_units("the cat ", None, "word") == "the cat "
    assert truncate_to_units("下着 大雨。", 3, "char") == "下着 大"
    with pytest.raises(ValueError, match="n_units"):
        truncate_to_units("a", -1, "word")


def test_wait_k_schedule():
    policy = WaitKPolicy(2)
    assert [policy.allowed_target_units(read, 6) for read in range(7)] == [0, 0, 1, 2, 3, 4, None]
    assert WaitKPolicy(2, rate=1.5).allowed_target_units(4, 10) == 4  # floor(1.5 * 3)
    assert policy.name == "wait-2"


def test_full_sentence_schedule():
    assert [full_sentence().allowed_target_units(read, 3) for read in range(4)] == [0, 0, 0, None]


@pytest.mark.parametrize("bad", [{"k": 0}, {"k": 1.5}, {"k": 2, "rate": 0}])
def test_wait_k_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        WaitKPolicy(**bad)


def test_policy_from_name():
    assert policy_from_name("wait-3") == WaitKPolicy(3)
    assert policy_from_name("Wait5") == WaitKPolicy(5)
    assert policy_from_name("wait-2x1.5") == WaitKPolicy(2, 1.5)
    assert policy_from_name("full_sentence") == FullSentencePolicy()
    with pytest.raises(ValueError, match="unknown policy"):
        policy_from_name("greedy")


def test_constrain_step_counts_what_was_already_written():
    policy = WaitKPolicy(1)
    assert constrain_step(policy, " chat noir dort", 1, 3, 5, "word") == " chat noir"
    assert constrain_step(policy, " chat", 3, 3, 5, "word") == ""  # already ahead of the schedule: wait
    assert constrain_step(policy, " chat noir dort", 1, 5, 5, "word") == " chat noir dort"


def test_simulated_wait_k_has_the_textbook_latency():
    source = "the black cat sleeps on a mat"
    for k in (1, 2, 3):
        outputs = simulate_policy(WaitKPolicy(k), source, 1, "word", "word", word_by_word)
        assert "".join(outputs).split() == ["le", "noir", "chat", "dort", "sur", "un", "tapis"]
        delays = delays_from_steps(outputs, 1, 7, "word")
        assert delays == [min(k + i, 7) for i in range(7)]
        assert average_lagging(delays, 7) == pytest.approx(k)  # wait-k with equal lengths lags k words


def test_simulated_policies_with_chunks():
    source = "the black cat sleeps on a mat"
    offline = simulate_policy(full_sentence(), source, 3, "word", "word", word_by_word)
    assert offline[:-1] == ["", ""] and len(offline[-1].split()) == 7
    assert average_lagging(delays_from_steps(offline, 3, 7, "word"), 7) == 7.0

    outputs = simulate_policy(WaitKPolicy(2), source, 3, "word", "word", word_by_word)
    assert len(outputs) == 3  # one output per chunk
    assert [len(o.split()) for o in outputs] == [2, 3, 2]  # read 3 -> 2 words, read 6 -> 5 words, then the rest


def test_eager_delays_never_write_ahead_of_the_source_read():
    from trl_seqpo.simt.latency import average_lagging
    from trl_seqpo.simt.policies import eager_delays

    for n, y, m in [(10, 10, 2), (7, 12, 3), (9, 4, 2), (5, 5, 5), (3, 8, 1)]:
        delays = eager_delays(n, y, m)
        assert len(delays) == y and delays == sorted(delays) and delays[-1] == n
        for i, delay in enumerate(delays, start=1):
            due = -(-i * n // y)  # the source unit target unit i corresponds to, proportionally
            assert delay >= due and (delay % m == 0 or delay == n)  # read it, and only at a chunk's end
            assert delay - due < m  # and no later than that chunk's end
    assert average_lagging(eager_delays(10, 10, 3), 10, 10) == pytest.approx(1.9)
    assert average_lagging(eager_delays(10, 10, 2), 10, 10) == pytest.approx(14 / 9)
    with pytest.raises(ValueError, match="positive"):
        eager_delays(0, 3, 2)
