"""Chaos: ``trl-seqpo alpo sample`` against a fault-injecting judge, kill -9 and resume; misuses that must not damage.

The judge is the local OpenAI-compatible server on 127.0.0.1 with a fault hook: 500, 429 with a long Retry-After,
a hang past the client's timeout, truncated JSON, wrong keys, out-of-range scores, 400, and a closed port. Every
scenario ends (possibly after a resume against a healthy judge) byte-identical to an uninterrupted run, with no
record lost or duplicated and no judge answer that was validated asked for again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from alpo_sample_helpers import documents, line_writer_model
from alpo_sample_helpers import sample_args as base_sample_args

from trl_seqpo.cli.main import main
from trl_seqpo.outputs import record_path
from trl_seqpo.synthetic.local_judge import Reply, SynonymPreferenceScorer, serve
from trl_seqpo.synthetic.subtitles import hidden_preference

pytestmark = pytest.mark.usefixtures("one_thread")

TIMEOUT = 1.0  # seconds per judge request: a hang of 1.5 s times out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return line_writer_model(tmp_path_factory.mktemp("line-writer"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return documents(tmp_path_factory.mktemp("chaos"))


def sample_args(docs_path, output, model_dir, base_url, *extra):
    """The sampling command of `alpo_sample_helpers` with a short judge timeout and back-off."""
    judge = ["--judge-timeout", str(TIMEOUT), "--judge-backoff-max", "0.05", "--judge-max-concurrency", "4"]
    return base_sample_args(docs_path, output, model_dir, base_url, *judge, *extra)


def free_port() -> int:
    """A port to serve the judge on twice: the cache key holds the endpoint URL, so a resume must use the same one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def body_key(request) -> str:
    return json.dumps([request.body["messages"], request.body.get("seed")], sort_keys=True)


def validated(server) -> set[str]:
    """Bodies the server answered with a valid score object (the faults below mark theirs)."""
    return {body_key(r) for r in server.requests if not getattr(r, "faulted", False)}


def records_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, model_dir):
    """The uninterrupted run against a healthy judge: its bytes and the requests it made."""
    docs_path, docs = corpus
    output = tmp_path_factory.mktemp("reference") / "candidates.jsonl"
    with serve(SynonymPreferenceScorer(hidden_preference())) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 0
        requests = {body_key(r) for r in server.requests}
    records = records_of(output)
    assert [(r["doc_id"], r["unit_index"]) for r in records] == [
        (d.doc_id, i) for d in docs for i in range(len(d.source_lines))
    ]
    assert all(r["votes"] == r["votes_requested"] == 2 for r in records)
    return output.read_bytes(), requests


class TransientFaults:
    """The first request of each distinct body gets the next fault of the cycle; a repeat is answered properly."""

    CYCLE = ("500", "429", "hang", "truncated", "wrong_keys", "out_of_range")

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.count = 0
        self.lock = threading.Lock()
        self.used: list[str] = []

    def __call__(self, request) -> Reply | None:
        key = body_key(request)
        with self.lock:
            if key in self.seen:
                return None
            self.seen.add(key)
            fault = self.CYCLE[self.count % len(self.CYCLE)]
            self.count += 1
            self.used.append(fault)
        request.faulted = True
        labels = list(request.candidates)
        return {
            "500": Reply(status=500),
            "429": Reply(status=429, headers={"Retry-After": "3600"}),  # capped by --judge-backoff-max
            "hang": Reply(delay=TIMEOUT + 0.5),
            "truncated": Reply(raw=b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "mess'),
            "wrong_keys": Reply(content=json.dumps({**dict.fromkeys(labels, 50), "Z": 10})),
            "out_of_range": Reply(content=json.dumps({label: 150 + i for i, label in enumerate(labels)})),
        }[fault]


def test_transient_faults_heal_within_the_run(tmp_path, corpus, model_dir, reference):
    docs_path, _ = corpus
    output = tmp_path / "candidates.jsonl"
    faults = TransientFaults()
    with serve(SynonymPreferenceScorer(hidden_preference()), fault=faults) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 0
    assert set(faults.used) == set(TransientFaults.CYCLE)  # every kind of fault was served
    assert output.read_bytes() == reference[0]


def test_persistent_failure_exits_1_and_heals_on_resume(tmp_path, corpus, model_dir, reference, capsys):
    docs_path, docs = corpus
    output = tmp_path / "candidates.jsonl"
    broken_line = docs[1].source_lines[1]
    port = free_port()

    def outage(request):
        if request.evaluated == [broken_line]:
            request.faulted = True
            return Reply(status=503)
        return None

    with serve(SynonymPreferenceScorer(hidden_preference()), fault=outage, port=port) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 1
        paid = validated(server)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "trl-seqpo: 1 units in 1 documents have no or too few valid judge votes; run the same command again to "
        "re-judge them"
    )
    failed = [r for r in records_of(output) if r["judge_failed"]]
    assert [(r["doc_id"], r["unit_index"]) for r in failed] == [(docs[1].doc_id, 1)]
    with serve(SynonymPreferenceScorer(hidden_preference()), port=port) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 0
        asked_again = {body_key(r) for r in server.requests}
    assert not asked_again & paid  # validated answers come from the cache
    assert output.read_bytes() == reference[0]


def test_client_error_stops_at_once_and_resumes(tmp_path, corpus, model_dir, reference, capsys):
    docs_path, _ = corpus
    output = tmp_path / "candidates.jsonl"

    def refuse(request):
        return Reply(status=400, error_message="Unrecognized request argument supplied: seed")

    with serve(fault=refuse) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 2
        sent = server.request_count
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("trl-seqpo: error:") and "Unrecognized request argument supplied: seed" in err[-1]
    assert sent <= 4  # the votes of the first unit index in flight; no retries, no further votes
    assert output.read_text() == ""
    with serve(SynonymPreferenceScorer(hidden_preference())) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 0
    assert output.read_bytes() == reference[0]


def test_connection_refused_exits_2(tmp_path, corpus, model_dir, capsys):
    docs_path, _ = corpus
    port = free_port()  # nobody listens there
    output = tmp_path / "candidates.jsonl"
    url = f"http://user:secret@127.0.0.1:{port}/v1"
    assert main(sample_args(docs_path, output, model_dir, url)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not be reached" in err[-1] and "secret" not in err[-1]
    assert output.read_text() == ""


def test_kill_9_and_resume_is_byte_identical_and_pays_nothing_twice(tmp_path, corpus, model_dir, reference):
    docs_path, docs = corpus
    hold_line = docs[1].source_lines[2]
    holding, release = threading.Event(), threading.Event()
    held: list[str] = []

    def faults_then_hold(request):
        if not release.is_set() and request.evaluated == [hold_line]:
            held.append(body_key(request))
            holding.set()
            release.wait(60)
            return Reply(close=True)
        return transient(request)

    transient = TransientFaults()
    output = tmp_path / "candidates.jsonl"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with serve(SynonymPreferenceScorer(hidden_preference()), fault=faults_then_hold, port=port) as server:
        command = [sys.executable, "-m", "trl_seqpo.cli.main", *sample_args(docs_path, output, model_dir,
                                                                           server.base_url)]  # fmt: skip
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not (holding.is_set() and output.exists() and output.read_text().count("\n") >= 2):
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the sampler never reached the held judge request"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
            release.set()
        paid = validated(server) - set(held)
    before = output.read_bytes()
    assert [(r["doc_id"], r["unit_index"]) for r in records_of(output)] == [(docs[0].doc_id, 0), (docs[0].doc_id, 1)]
    with output.open("ab") as handle:  # as if the kill had cut a write short
        handle.write(b'{"doc_id": "' + docs[1].doc_id.encode() + b'", "unit_ind')
    assert hashlib.sha256(before).hexdigest() != hashlib.sha256(output.read_bytes()).hexdigest()
    with serve(SynonymPreferenceScorer(hidden_preference()), port=port) as server:
        assert main(sample_args(docs_path, output, model_dir, server.base_url)) == 0
        asked_again = {body_key(r) for r in server.requests}
    assert not asked_again & paid
    assert set(held) <= asked_again
    assert output.read_bytes() == reference[0]  # no record lost, none duplicated, same order


def test_resume_refuses_other_settings_naming_the_option(tmp_path, corpus, model_dir, reference, capsys):
    docs_path, _ = corpus
    output = tmp_path / "candidates.jsonl"
    output.write_bytes(reference[0][: reference[0].index(b"\n") + 1])  # one record of an earlier run
    with serve(SynonymPreferenceScorer(hidden_preference())) as server:
        base = sample_args(docs_path, tmp_path / "first.jsonl", model_dir, server.base_url)
        assert main(base) == 0  # writes first.run.json
        (tmp_path / "candidates.run.json").write_bytes((tmp_path / "first.run.json").read_bytes())
        before = output.read_bytes()
        capsys.readouterr()
        for flag, value in (("--num-candidates", "4"), ("--seed", "8"), ("--judge-model", "other"),
                            ("--judge-num-shuffles", "3"), ("--documents-per-batch", "1"),
                            ("--judge-temperature", "0.5"), ("--judge-max-tokens", "64")):  # fmt: skip
            args = sample_args(docs_path, output, model_dir, server.base_url, flag, value)
            assert main(args) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith(f"trl-seqpo: error: {output}: {flag} is ") and len(err) == 1
            assert output.read_bytes() == before


SRT = "1\n00:00:01,000 --> 00:00:02,000\nHello there.\n\n2\n00:00:03,000 --> 00:00:04,000\nGoodbye.\n"


def test_misuses_exit_2_and_leave_every_file_byte_identical(tmp_path, corpus, model_dir, capsys):
    """The four misuses of issue 13: an existing unrelated output, and output == input for three commands."""
    docs_path, _ = corpus
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\nsecond line without newline")
    source, target = tmp_path / "film.en.srt", tmp_path / "film.fr.srt"
    source.write_text(SRT)
    target.write_text(SRT.replace("Hello there.", "Salut.").replace("Goodbye.", "Au revoir."))
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    aligned = tmp_path / "aligned.jsonl"
    assert main(["subtitles", "align", str(source), str(target), "-o", str(aligned)]) == 0
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text('{"doc_id": "d", "unit_index": 0}\n')
    files = [notes, source, target, binary, aligned, candidates, docs_path]
    snapshot = {path: path.read_bytes() for path in files}
    misuses = [
        *(sample_args(docs_path, path, model_dir, "http://127.0.0.1:9/v1") for path in (notes, source, binary)),
        sample_args(docs_path, docs_path, model_dir, "http://127.0.0.1:9/v1"),
        ["subtitles", "align", str(source), str(target), "-o", str(source)],
        ["subtitles", "documents", str(aligned), "-o", str(aligned)],
        ["alpo", "pairs", str(candidates), "-o", str(candidates)],
    ]
    capsys.readouterr()
    for argv in misuses:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("trl-seqpo: error:"), (argv, err)
        assert {path: path.read_bytes() for path in files} == snapshot, argv
    expected = [*files, record_path(aligned)]  # `subtitles align`'s settings record, written by the first command
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in expected if p.parent == tmp_path)


def test_bad_inputs_exit_2_with_one_line(tmp_path, corpus, model_dir, capsys):
    docs_path, _ = corpus
    utf16 = tmp_path / "docs16.jsonl"
    utf16.write_bytes(docs_path.read_text().encode("utf-16"))
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"this is not sqlite" * 100)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    cases = [
        (sample_args(utf16, tmp_path / "a.jsonl", model_dir, "http://127.0.0.1:9/v1"), f"{utf16}: not UTF-8"),
        (sample_args(docs_path, tmp_path / "b.jsonl", model_dir, "http://127.0.0.1:9/v1", "--cache", str(cache)),
         "not a usable judge cache"),
        (["alpo", "pairs", str(docs_path), "-o", str(tmp_path / "p.jsonl")], f"{docs_path}:1: missing field"),
        (["alpo", "pairs", str(utf16), "-o", str(tmp_path / "p.jsonl")], f"{utf16}: not UTF-8"),
        (["evaluate", "simt", "--model", model_dir, "--data", str(utf16), "--output-dir", str(tmp_path / "e1")],
         f"{utf16}: not UTF-8"),
        (["evaluate", "subtitles", "--model", model_dir, "--documents", str(utf16), "--output-dir",
          str(tmp_path / "e2")], f"{utf16}: not UTF-8"),
        (["plot", str(utf16), "-o", str(tmp_path / "plot.png")], f"{utf16}: not UTF-8"),
        (["alpo", "sample", str(docs_path), "-o", str(tmp_path / "c.jsonl"), "--model", model_dir,
          "--judge-extra-body", "[1]"], "--judge-extra-body must be a JSON object"),
    ]  # fmt: skip
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((sample_args(docs_path, readonly / "x.jsonl", model_dir, "http://x/v1"), "cannot write here"))
    try:
        for argv, message in cases:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0], (argv, err)
    finally:
        readonly.chmod(0o700)
    assert cache.read_bytes() == b"this is not sqlite" * 100
    assert not any((tmp_path / name).exists() for name in ("a.jsonl", "p.jsonl", "plot.png"))
