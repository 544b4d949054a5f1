"""Latency rewards read the rollout's delay columns and return raw AL / LAAL (lower is better)."""

from __future__ import annotations

import logging

import pytest

from trl_seqpo.rewards import get_reward
from trl_seqpo.simt.latency import average_lagging, length_adaptive_average_lagging

DELAYS = [[2, 3, 4, 4], [1, 2, 3, 4, 4, 4], [4, 4]]
SOURCE = [4, 4, 4]
REFERENCE = [4, 4, 4]


def _call(name: str, **kwargs):
    reward = get_reward(name, **kwargs)
    columns = {"delays": DELAYS, "source_length": SOURCE, "reference_length": REFERENCE}
    return reward(prompts=[""] * 3, completions=["a"] * 3, **columns)


def test_average_lagging_values():
    scores = _call("average_lagging")
    assert scores[0] == pytest.approx(2.0)  # wait-2 on a 4-word sentence
    assert scores == pytest.approx([average_lagging(d, n, r) for d, n, r in zip(DELAYS, SOURCE, REFERENCE)])
    # Lower is better and not negated: the offline (read everything first) row lags most.
    assert scores[2] == max(scores)


def test_reference_length_switch():
    with_ref = _call("average_lagging")
    hyp_only = _call("average_lagging", use_reference_length=False)
    assert hyp_only == pytest.approx([average_lagging(d, n) for d, n in zip(DELAYS, SOURCE)])
    assert with_ref[1] != hyp_only[1]  # the 6-unit hypothesis of a 4-unit reference differs


def test_laal_uses_longer_of_hypothesis_and_reference():
    scores = _call("laal")
    assert scores == pytest.approx(
        [length_adaptive_average_lagging(d, n, r) for d, n, r in zip(DELAYS, SOURCE, REFERENCE)]
    )
    # Over-generation (6 units vs a 4-unit reference) cannot lower LAAL below AL with the hypothesis length.
    assert scores[1] == pytest.approx(average_lagging(DELAYS[1], 4))
    assert scores[1] > _call("average_lagging")[1]


def test_laal_without_reference_length_warns_and_equals_hypothesis_al(caplog):
    with caplog.at_level(logging.WARNING, logger="trl_seqpo.rewards"):
        scores = get_reward("laal")(prompts=[""], completions=["a"], delays=[[1, 2, 3]], source_length=[3])
    assert scores == [pytest.approx(average_lagging([1, 2, 3], 3))]


def test_bad_rows_get_none_and_empty_hypothesis_is_defined():
    reward = get_reward("average_lagging")
    scores = reward(
        prompts=[""] * 4,
        completions=["a"] * 4,
        delays=[[2, 3], [], [1], None],
        source_length=[3, 5, 0, 3],
        reference_length=[2, 4, 1, None],
    )
    assert scores[0] == pytest.approx(average_lagging([2, 3], 3, 2))
    assert scores[1] == 5.0  # empty hypothesis: scored as written after the whole source
    assert scores[2] is None  # source_length 0 is invalid for that row only
    assert scores[3] is None


def test_missing_delay_columns_raise():
    with pytest.raises(ValueError, match="needs a 'delays' column"):
        get_reward("average_lagging")(prompts=[""], completions=["a"], source_length=[3])
