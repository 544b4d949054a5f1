"""The local OpenAI-compatible judge server: scorers, routes and the ``python -m`` entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

from trl_seqpo.cli.main import main
from trl_seqpo.judge.prompts import build_messages
from trl_seqpo.synthetic.local_judge import Reply, SynonymPreferenceScorer, length_scorer, serve


def post(url: str, payload: bytes) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_synonym_preference_scorer():
    scorer = SynonymPreferenceScorer({"big": "huge", "said": "whispered"}, base=50, step=20)
    candidates = ["A big, BIG dog", "a huge dog whispered", "a dog", "bigger dog", "he said huge"]
    assert scorer(candidates, []) == [10, 90, 50, 50, 50]  # whole words, case-insensitive, counted per use
    assert SynonymPreferenceScorer({"big": "huge"}, step=60)(["huge huge", "big big"], []) == [100, 0]  # clamped
    assert SynonymPreferenceScorer({"大": "巨大"}, whole_words=False)(["很大", "巨大的"], []) == [30, 70]


def test_length_scorer_spreads_ranks():
    assert length_scorer(["aa", "a", "aaaa"], []) == [50, 10, 90]
    assert length_scorer(["only"], []) == [50]


def test_chat_completion_round_trip_and_faults():
    messages = build_messages("la grande maison", ["the big house", "the huge house", "a house"])
    body = json.dumps({"model": "judge", "messages": messages}).encode()
    faults = {1: Reply(status=429, headers={"Retry-After": "2"}), 2: Reply(content="not json")}
    with serve(SynonymPreferenceScorer({"big": "huge"}), fault=lambda r: faults.get(r.index)) as server:
        status, _, reply = post(server.base_url + "/chat/completions", body)
        assert status == 200 and reply["object"] == "chat.completion" and reply["model"] == "judge"
        assert json.loads(reply["choices"][0]["message"]["content"]) == {"A": 30, "B": 70, "C": 50}
        assert reply["usage"]["prompt_tokens"] > 0
        status, headers, reply = post(server.base_url + "/chat/completions", body)
        assert status == 429 and headers["Retry-After"] == "2" and reply["error"]["code"] == 429
        assert post(server.base_url + "/chat/completions", body)[2]["choices"][0]["message"]["content"] == "not json"
        assert post(server.base_url + "/chat/completions", b"{oops")[0] == 400
        assert post(server.base_url + "/nowhere", body)[0] == 404
        with urllib.request.urlopen(server.base_url + "/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "local-judge"
        assert server.request_count == 3  # malformed bodies and unknown routes are not recorded
        assert server.requests[0].evaluated == ["la grande maison"] and not server.requests[0].is_repair


def test_judge_server_command_serves_until_stopped(tmp_path):
    preferences = tmp_path / "prefs.json"
    preferences.write_text(json.dumps({"big": "huge"}))
    process = subprocess.Popen(
        [sys.executable, "-m", "trl_seqpo.cli.main", "judge-server", "--port", "0", "--preferences", str(preferences)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        base_url = line.split(" on ", 1)[1].split(" ", 1)[0]
        messages = build_messages("x", ["big", "huge"])
        reply = post(base_url + "/chat/completions", json.dumps({"messages": messages}).encode())[2]
        assert json.loads(reply["choices"][0]["message"]["content"]) == {"A": 30, "B": 70}
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert main(["judge-server", "--prefer", "nonsense"]) == 2
