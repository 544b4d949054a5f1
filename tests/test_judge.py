"""LLM judge (ALPO Sec. 3.2, App. F.2) against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server's fault hook picks its behaviour from the scored source line ("valid", "prose", "wrong_keys", ...), so
one server serves every scenario and each test counts the requests of its own scenario.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import sqlite3
import threading
import time

import pytest

from trl_seqpo.judge.client import (
    JudgeConfig,
    JudgeRequest,
    JudgeRequestError,
    JudgeUnreachableError,
    LLMJudge,
    redact_url,
)
from trl_seqpo.judge.prompts import (
    AnswerError,
    build_messages,
    candidate_labels,
    extract_json_object,
    parse_candidates,
    validate_scores,
)
from trl_seqpo.synthetic.local_judge import Reply, serve

CANDIDATES = ["first 10", "second 40", "third 70", "fourth 95", "fifth 55"]  # 1 distinct / 5 < 0.25
FIRST_SHOWN_BONUS = 3  # the test judge has a position bias: whatever is shown as "A" gets +3
TIMEOUT = 1.5


def value_of(text: str) -> int:
    return int(re.search(r"\d+", text).group())


def honest_answer(candidates: dict[str, str]) -> dict[str, int]:
    return {
        label: value_of(text) + (FIRST_SHOWN_BONUS if i == 0 else 0)
        for i, (label, text) in enumerate(candidates.items())
    }


class Faults:
    """Behaviour by scenario (the part of the scored line before '#'); '...then ok' faults hit each prompt once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def first_time(self, received) -> bool:
        digest = hashlib.sha256(json.dumps([received.messages, received.body.get("seed")]).encode()).hexdigest()
        with self.lock:
            new = digest not in self.seen
            self.seen.add(digest)
        return new

    def __call__(self, received) -> Reply | None:
        scenario = received.evaluated[0].split("#")[0]
        labels = list(received.candidates)
        answer = honest_answer(received.candidates)
        if scenario == "prose":
            return Reply(content=f"Sure. My scores:\n```json\n{json.dumps(answer)}\n```\nThe first one is weaker.")
        if scenario == "wrong_keys":
            return Reply(content=json.dumps({**answer, "Z": 50}))
        if scenario == "out_of_range":  # invalid until the repair message arrives
            bad = {**answer, labels[0]: 150}
            return None if received.is_repair else Reply(content=json.dumps(bad))
        if scenario == "float_scores":
            return Reply(content=json.dumps({label: 50.5 + i for i, label in enumerate(labels)}))
        if scenario == "ties":
            return Reply(content=json.dumps({label: 50 for label in labels}))
        if scenario == "rate_limited":
            retry_after = getattr(self, "retry_after", "0.3")
            return Reply(status=429, headers={"Retry-After": retry_after}) if self.first_time(received) else None
        if scenario == "server_error":
            return Reply(status=500)
        if scenario == "server_error_once":
            return Reply(status=503) if self.first_time(received) else None
        if scenario == "timeout":
            return Reply(delay=TIMEOUT + 2.5) if self.first_time(received) else None
        if scenario == "closed":
            return Reply(close=True) if self.first_time(received) else None
        if scenario == "bad_request":
            return Reply(status=400)
        if scenario == "slow":
            with self.lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(0.05)
            with self.lock:
                self.in_flight -= 1
        return None


def honest_scorer(candidates: list[str], messages: list[dict]) -> list[int]:
    return list(honest_answer(dict(zip(candidate_labels(len(candidates)), candidates))).values())


@pytest.fixture(scope="module")
def server():
    faults = Faults()
    with serve(honest_scorer, fault=faults) as running:
        running.faults = faults
        yield running


def make_config(server, **overrides) -> JudgeConfig:
    settings = dict(
        base_url=server.base_url,
        model="test-judge",
        api_key="k",
        timeout=TIMEOUT,
        backoff_base=0.001,
        backoff_max=0.01,
        max_concurrency=8,
        seed=1,
    )
    settings.update(overrides)
    return JudgeConfig(**settings)


def requests_for(server, scenario: str):
    return [r for r in server.requests if r.evaluated and r.evaluated[0] == scenario]


def expected_from_server(server, scenario: str) -> list[float]:
    """Mean score per candidate computed from what the server was shown (independent of the judge's bookkeeping)."""
    totals = {text: [] for text in CANDIDATES}
    for received in requests_for(server, scenario):
        for i, text in enumerate(received.candidates.values()):
            totals[text].append(value_of(text) + (FIRST_SHOWN_BONUS if i == 0 else 0))
    return [sum(v) / len(v) for v in (totals[text] for text in CANDIDATES)]


def score(server, scenario: str, **overrides):
    judge = LLMJudge(make_config(server, **overrides))
    [result] = judge.score_lines([JudgeRequest(source=scenario, candidates=CANDIDATES, context_before=["ctx"])])
    return result, requests_for(server, scenario), judge


# ------------------------------------------------------------------ scenarios over HTTP
@pytest.mark.parametrize("scenario", ["valid", "prose"])
def test_valid_answers_average_over_shuffles_back_to_the_right_candidates(server, scenario):
    result, received, _ = score(server, scenario)
    assert len(received) == 4  # one request per shuffled vote, no retries
    assert result.failed_reason is None and result.num_valid_votes == 4
    assert result.scores == pytest.approx(expected_from_server(server, scenario))
    # the position bias only lands on candidates that were shown first, so shuffling spreads it
    assert len({tuple(vote.order) for vote in result.votes}) > 1
    for vote in result.votes:
        assert vote.scores == [
            value_of(c) + (FIRST_SHOWN_BONUS if vote.order[0] == i else 0) for i, c in enumerate(CANDIDATES)
        ]


@pytest.mark.parametrize("scenario, reason", [("wrong_keys", "keys"), ("ties", "ties"), ("float_scores", "value")])
def test_answers_that_never_validate_are_retried_then_gated(server, scenario, reason):
    result, received, judge = score(server, scenario)
    assert result.scores is None and reason in result.failed_reason
    assert len(received) == 4 * (1 + 3)  # 4 votes x (first try + 3 retries)
    assert sum(r.is_repair for r in received) == 4  # exactly one retry per vote carries the repair note
    assert judge.stats.rejected_answers == 16


def test_repair_message_fixes_out_of_range_scores(server):
    result, received, _ = score(server, "out_of_range")
    assert len(received) == 8 and sum(r.is_repair for r in received) == 4
    assert result.num_valid_votes == 4
    assert all("value" in vote.errors[0] for vote in result.votes)
    assert result.scores == pytest.approx(expected_from_server(server, "out_of_range"))


@pytest.mark.parametrize("scenario", ["rate_limited", "server_error_once", "timeout", "closed"])
def test_transient_transport_errors_are_retried(server, scenario):
    result, received, judge = score(server, scenario)
    assert len(received) == 8  # each vote: one failure, one success
    assert result.num_valid_votes == 4 and judge.stats.transport_errors == 4
    assert not any(r.is_repair for r in received)  # transport retries resend the same prompt
    # a failed request and its retry show the same order, so the server-side mean is unchanged by the duplicate
    assert result.scores == pytest.approx(expected_from_server(server, scenario))


def test_retry_after_header_is_respected(server):
    score(server, "rate_limited#wait", backoff_max=1.0)
    arrivals = {}
    for received in requests_for(server, "rate_limited#wait"):
        key = json.dumps(received.messages)
        arrivals.setdefault(key, []).append(received.arrived)
    assert len(arrivals) == 4
    for first, second in arrivals.values():
        assert second - first >= 0.3  # the server asked for 0.3 s; back-off alone would wait ~1 ms


def test_persistent_server_errors_and_client_errors(server):
    result, received, _ = score(server, "server_error")
    assert result.scores is None and "http 500" in result.failed_reason
    assert len(received) == 16
    with pytest.raises(JudgeRequestError, match="http 400: injected HTTP 400") as info:
        score(server, "bad_request")
    assert server.base_url in str(info.value)
    assert len(requests_for(server, "bad_request")) <= 4  # a 400 stops the call: no retry, no further vote


def test_retry_after_is_capped_by_the_backoff_maximum(server, monkeypatch):
    import trl_seqpo.judge.client as client

    waits, real_sleep = [], asyncio.sleep

    async def recording_sleep(seconds):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(client.asyncio, "sleep", recording_sleep)
    monkeypatch.setattr(server.faults, "retry_after", "3600", raising=False)
    result, _, _ = score(server, "rate_limited#hour", backoff_max=0.05)
    assert result.scores is not None
    assert waits and max(waits) <= 0.05  # the server asked for an hour


def test_keys_go_only_where_configured(server, monkeypatch, tmp_path):
    import pickle

    monkeypatch.setenv("OPENAI_API_KEY", "sk-leak")
    score(server, "valid#key", api_key=None)
    assert {r.headers.get("authorization") for r in requests_for(server, "valid#key")} == {"Bearer EMPTY"}
    key_file = tmp_path / "judge.key"
    key_file.write_text("sk-file\n")
    score(server, "valid#keyfile", api_key=None, api_key_file=str(key_file))
    assert {r.headers.get("authorization") for r in requests_for(server, "valid#keyfile")} == {"Bearer sk-file"}
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-env")
    assert JudgeConfig(base_url="http://x/v1", api_key_env="MY_JUDGE_KEY").resolve_api_key() == "sk-env"
    assert JudgeConfig(base_url="https://api.openai.com/v1").resolve_api_key() == "sk-leak"
    config = JudgeConfig(base_url="http://user:pw@host/v1", api_key="sk-secret")
    from trl_seqpo.rewards.judge import JudgeReward

    reward = JudgeReward(config)
    for text in (repr(config), str(config.to_dict()), str(pickle.dumps(config)), str(pickle.dumps(reward))):
        assert "sk-secret" not in text
    assert "pw" not in str(config.to_dict()) and "pw" not in redact_url(config.base_url)


def test_second_run_is_served_from_the_cache(server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    scenarios = [
        "valid#c",
        "prose#c",
        "wrong_keys#c",
        "out_of_range#c",
        "ties#c",
        "rate_limited#c",
        "timeout#c",
        "closed#c",
    ]
    batch = [JudgeRequest(source=s, candidates=CANDIDATES) for s in scenarios]
    first = LLMJudge(make_config(server, cache_path=str(cache))).score_lines(batch)
    assert [r.scores is None for r in first] == [False, False, True, False, True, False, False, False]
    counts = {s: len(requests_for(server, s)) for s in scenarios}
    again = LLMJudge(make_config(server, cache_path=str(cache)))
    second = again.score_lines(batch)
    # validated answers are replayed; the lines whose answers never validated are asked again (16 requests each)
    assert {s: len(requests_for(server, s)) - counts[s] for s in scenarios} == {
        s: 16 if s in ("wrong_keys#c", "ties#c") else 0 for s in scenarios
    }
    assert again.stats.cache_hits == 6 * 4
    assert [r.scores for r in second] == [r.scores for r in first]
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # transport failures are not cached: a line that only got 500s is asked again next time
    errors = [JudgeRequest(source="server_error#c", candidates=CANDIDATES)]
    LLMJudge(make_config(server, cache_path=str(cache))).score_lines(errors)
    before = server.request_count
    LLMJudge(make_config(server, cache_path=str(cache))).score_lines(errors)
    assert server.request_count - before == 16


def test_concurrency_is_bounded(server):
    batch = [JudgeRequest(source=f"slow#{i}", candidates=CANDIDATES) for i in range(6)]
    results = LLMJudge(make_config(server, max_concurrency=3)).score_lines(batch)
    assert all(r.num_valid_votes == 4 for r in results)
    assert 1 < server.faults.max_in_flight <= 3


def test_shuffles_are_seeded_and_reproducible(server):
    request = JudgeRequest(source="valid#seed", candidates=CANDIDATES)
    orders = lambda seed: [v.order for v in LLMJudge(make_config(server, seed=seed)).score_lines([request])[0].votes]  # noqa: E731
    assert orders(7) == orders(7)
    assert orders(7) != orders(8)


def test_unreachable_endpoint(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = JudgeConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        backoff_base=0.001,
        backoff_max=0.01,
        max_concurrency=2,
        timeout=TIMEOUT,
    )
    batch = [JudgeRequest(source=f"line {i}", candidates=CANDIDATES) for i in range(10)]
    judge = LLMJudge(config)
    results = judge.score_lines(batch)
    assert all(r.scores is None for r in results)
    assert judge.stats.http_requests < 10 * 4 * 4  # gave up early instead of retrying every vote
    with pytest.raises(JudgeUnreachableError, match="could not be reached"):
        LLMJudge(config).score_lines(batch, raise_if_unreachable=True)


def test_edge_cases_never_raise(server):
    judge = LLMJudge(make_config(server))
    empty, single = judge.score_lines(
        [JudgeRequest(source="valid#e", candidates=[]), JudgeRequest(source="valid#one", candidates=["only 60"])]
    )
    assert empty.scores is None and "no candidates" in empty.failed_reason
    assert single.scores == [60 + FIRST_SHOWN_BONUS]
    assert judge.score_lines([]) == []

    async def from_a_running_loop():
        return judge.score_lines([JudgeRequest(source="valid#loop", candidates=CANDIDATES)])

    assert asyncio.run(from_a_running_loop())[0].num_valid_votes == 4


# ------------------------------------------------------------------ prompts, parsing, config
def test_prompt_shows_context_and_labelled_candidates():
    messages = build_messages(
        ["line two"],
        ["cand x", "cand\ny"],
        aspect="accuracy",
        context_before=["line one"],
        context_after=["line three"],
        target_context_before=["ligne un"],
        source_language="English",
        target_language="French",
    )
    user = messages[-1]["content"]
    assert "[Context] line one\n[Evaluate] line two\n[Context] line three" in user
    assert "[Context] ligne un" in user and "ACCURACY" in user and "French" in user
    assert parse_candidates(messages) == {"A": "cand x", "B": "cand / y"}
    assert candidate_labels(27)[25:] == ["Z", "AA"]
    with pytest.raises(ValueError, match="aspect"):
        build_messages("x", ["y"], aspect="funniness")


def test_answer_parsing_and_validation():
    assert extract_json_object('<think>{"A": 1}</think> ok: {"A": 5, "B": 9} and {"A": 0}') == {"A": 5, "B": 9}
    assert extract_json_object('not {json} then {"A": 3}') == {"A": 3}
    with pytest.raises(AnswerError, match="no_json"):  # a reasoning block cut off by max_tokens is not an answer
        extract_json_object('<think>maybe {"A": 1, "B": 2}')
    with pytest.raises(AnswerError, match="no_json"):
        extract_json_object("A: 50, B: 60")
    assert validate_scores({"A": 0, "B": 100}, ["A", "B"]) == [0, 100]
    assert validate_scores({"A": 5, "B": 5, "C": 5, "D": 5}, list("ABCD")) == [5] * 4  # 1/4 is not < 0.25
    for answer, kind in [
        ({"A": 5}, "keys"),
        ({"A": 5, "B": 6, "C": 7}, "keys"),
        ({"A": True, "B": 6}, "value"),
        ({"A": "50", "B": 6}, "value"),
        ({"A": 50.0, "B": 6}, "value"),
        ({"A": -1, "B": 6}, "value"),
        ({"A": 5, "B": 5, "C": 5, "D": 5, "E": 5}, "ties"),
    ]:
        with pytest.raises(AnswerError) as info:
            validate_scores(answer, ["A", "B"] if kind != "ties" else list("ABCDE"))
        assert info.value.kind == kind


def test_config_defaults_and_validation(monkeypatch):
    monkeypatch.setenv("TRL_SEQPO_JUDGE_BASE_URL", "http://judge:9/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://other/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = JudgeConfig()
    assert (config.base_url, config.resolve_api_key()) == ("http://judge:9/v1", "EMPTY")
    assert (config.temperature, config.num_shuffles, config.max_retries, config.min_distinct_ratio) == (
        0.3,
        4,
        3,
        0.25,
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert JudgeConfig(base_url="http://x/v1").resolve_api_key() == "EMPTY"  # never OpenAI's key to another host
    bad_values = [dict(aspect="humour"), dict(num_shuffles=0), dict(max_retries=-1), dict(min_distinct_ratio=2),
                  dict(temperature=float("nan")), dict(max_tokens=0), dict(extra_body="x")]  # fmt: skip
    for bad in bad_values:
        with pytest.raises(ValueError):
            JudgeConfig(**bad)


def test_for_line_builds_context_window():
    lines = ["l0", "l1", "l2", "l3", "l4"]
    request = JudgeRequest.for_line(lines, 3, ["c"], window=2, target_lines=["t0", "t1", "t2"])
    assert (request.source, list(request.context_before), list(request.context_after)) == ("l3", ["l1", "l2"], ["l4"])
    assert list(request.target_context_before) == ["t1", "t2"]


def test_judge_reward_scores_completions_per_source_group(server):
    import pickle

    from trl_seqpo.rewards.registry import get_reward

    reward = get_reward("judge", base_url=server.base_url, model="m", backoff_base=0.001, timeout=TIMEOUT)
    assert reward.__name__ == "judge"
    reward = pickle.loads(pickle.dumps(reward))
    completions = ["x 10", "y 40", "x 10", "z 90", None]
    sources = ["valid#r1", "valid#r1", "valid#r1", "valid#r2", "valid#r2"]
    rewards = reward(prompts=[""] * 5, completions=completions, source=sources, reference=["ref 70"] * 5)
    assert rewards[4] is None and rewards[0] == rewards[2]
    for value, text in zip(rewards[:4], completions[:4]):
        assert value_of(text) <= value <= value_of(text) + FIRST_SHOWN_BONUS
    shown = {r.evaluated[0]: list(r.candidates.values()) for r in requests_for(server, "valid#r1")}
    assert sorted(shown["valid#r1"]) == ["ref 70", "x 10", "y 40"]  # one request per source, reference included
    assert len(requests_for(server, "valid#r1")) == 4
