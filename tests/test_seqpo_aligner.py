"""The LLM aligner (SeqPO-SiMT App. A.2) over real HTTP: validation, cache, resume after a kill, both directions,
and the `trl-seqpo simt align` command."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trl_seqpo.cli.main import main as cli_main
from trl_seqpo.seqpo.aligner import LLMAligner, parse_aligner_answer, validate_prefixes
from trl_seqpo.seqpo.sft_data import build_sft_dataset, gold_step_outputs
from trl_seqpo.synthetic import language_pair as synthetic

LANGS = (synthetic.SOURCE_LANGUAGE, synthetic.TARGET_LANGUAGE)

# Zh->En pairs the server below answers for; "坏" marks a source whose answer is not valid
ZH_EN = {
    "我们明天去北京开会": ["We", "We will go to", "We will go to Beijing for a meeting tomorrow"],
    "他昨天买了一本书": ["He", "He bought a", "He bought a book yesterday"],
    "坏天气让航班取消": [],
}
ZH_REFERENCES = {
    "我们明天去北京开会": "We will go to Beijing for a meeting tomorrow",
    "他昨天买了一本书": "He bought a book yesterday",
    "坏天气让航班取消": "Bad weather cancelled the flight",
}


def test_validate_prefixes_rules():
    ref = "lo hundo grava vidas"
    assert validate_prefixes(["lo", "lo", "lo hundo grava", "whatever"], ref, 4) == [1, 1, 3, 4]
    for bad, message in [
        (["lo", "lo hundo grava vidas"], "expected 3"),
        (["lo hun", "lo hundo", "x"], "not a beginning"),
        (["lo hundo", "lo", "x"], "shorter"),
        ([1, 2, 3], "list of strings"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_prefixes(bad, ref, 3)
    assert parse_aligner_answer('```json\n{"prefixes": ["a"]}\n```') == ["a"]
    with pytest.raises(ValueError):
        parse_aligner_answer("no json here")


def _synthetic_answer(prompt: str) -> str:
    """Eager prefixes from the synthetic gold alignment, or no JSON at all for sources with "cat"."""
    pieces = [line.split(". ", 1)[1] for line in prompt.splitlines() if line[:1].isdigit() and ". " in line]
    source = " ".join(pieces)
    if "cat" in source:
        return "Sure! Here is the alignment."  # no JSON: counted as invalid
    reference, alignment = synthetic.translate(source)
    outputs = gold_step_outputs(source, reference, alignment, chunk_size=2)
    return json.dumps({"prefixes": ["".join(outputs[: k + 1]) for k in range(len(outputs))]})


class _AlignerHandler(BaseHTTPRequestHandler):
    """Answers like an aligner LLM (``answer(prompt) -> content``), recording every request."""

    answer = staticmethod(_synthetic_answer)

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        content = self.answer(body["messages"][-1]["content"])
        answer = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def aligner_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlignerHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_llm_aligner_over_http_validates_caches_and_resumes(aligner_server, tmp_path):
    examples = [e for e in synthetic.generate_corpus(12, seed=3)]
    rows = [{"source": e.source, "reference": e.reference} for e in examples]
    n_bad = sum("cat" in e.source for e in examples)
    assert 0 < n_bad < len(examples)
    aligner = LLMAligner(
        model="aligner",
        base_url=f"http://127.0.0.1:{aligner_server.server_port}/v1",
        api_key="test",
        chunk_size=2,
        source_lang=LANGS[0],
        target_lang=LANGS[1],
        max_concurrency=4,
        max_retries=0,
    )
    cache = tmp_path / "align.jsonl"
    aligned, stats = aligner.align_rows(rows, cache_path=cache, progress=False)
    assert (stats.aligned, stats.invalid, stats.failed, stats.cached) == (len(rows) - n_bad, n_bad, 0, 0)
    gold = {e.source: gold_step_outputs(e.source, e.reference, e.alignment, 2) for e in examples}
    assert [r["source"] for r in aligned] == [e.source for e in examples if "cat" not in e.source]
    assert all(r["step_outputs"] == gold[r["source"]] for r in aligned)
    assert len(aligner_server.requests) == len(rows)

    again, stats = aligner.align_rows(rows, cache_path=cache, progress=False)
    assert again == aligned and stats.cached == len(rows) and stats.aligned == 0
    assert len(aligner_server.requests) == len(rows)  # nothing paid twice

    dataset = build_sft_dataset(aligned, 2, *LANGS)
    assert len(dataset) == len(aligned) and "messages" in dataset.column_names


def _zh_answer(prompt: str) -> str:
    pieces = [line.split(". ", 1)[1] for line in prompt.splitlines() if line[:1].isdigit() and ". " in line]
    source = "".join(pieces)
    if "坏" in source:
        return json.dumps({"prefixes": ["Bad", "Good"]})  # wrong count and not a prefix: invalid
    return json.dumps({"prefixes": ZH_EN[source]})


class _ZhHandler(_AlignerHandler):
    answer = staticmethod(_zh_answer)


@pytest.fixture
def zh_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ZhHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _zh_aligner(server, **overrides):
    settings = dict(model="aligner", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="test")
    settings.update(chunk_size=3, source_lang="zh", target_lang="en", max_concurrency=2, max_retries=0)
    settings.update(overrides)
    return LLMAligner(**settings)


def _zh_rows():
    return [{"source": s, "reference": r} for s, r in ZH_REFERENCES.items()]


def test_chinese_source_is_shown_in_character_chunks_and_aligned_per_chunk(zh_server):
    aligned, stats = _zh_aligner(zh_server).align_rows(_zh_rows(), progress=False)
    assert (stats.aligned, stats.invalid, stats.failed) == (2, 1, 0)
    prompt = zh_server.requests[0]["messages"][-1]["content"]
    assert "Chinese sentence" in prompt and "English translation" in prompt
    assert aligned[0]["step_outputs"] == ["We", " will go to", " Beijing for a meeting tomorrow"]
    dataset = build_sft_dataset(aligned, 3, "Chinese", "English")  # the SFT builder agrees on the chunks
    assert len(dataset) == 2


def test_aligner_resumes_after_a_kill_mid_write(zh_server, tmp_path):
    cache = tmp_path / "cache.jsonl"
    rows = _zh_rows()
    _zh_aligner(zh_server).align_rows(rows, cache_path=cache, progress=False)
    assert len(zh_server.requests) == 3
    lines = cache.read_text(encoding="utf-8").splitlines(keepends=True)
    killed_on = json.loads(lines[-1])["key"]
    cache.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")  # cut mid-line

    aligned, stats = _zh_aligner(zh_server).align_rows(rows, cache_path=cache, progress=False)
    assert stats.dropped_partial_line and stats.cached == 2
    assert len(zh_server.requests) == 4  # only the pair whose line was cut is asked again
    cut_source = json.loads(killed_on)[-2]
    asked = "".join(
        line.split(". ", 1)[1]
        for line in zh_server.requests[-1]["messages"][-1]["content"].splitlines()
        if line[:1].isdigit() and ". " in line
    )
    assert asked == cut_source
    assert [r["source"] for r in aligned] == [r["source"] for r in rows if "坏" not in r["source"]]
    assert all(json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines())  # whole lines again

    again, stats = _zh_aligner(zh_server).align_rows(rows, cache_path=cache, progress=False)
    assert again == aligned and stats.cached == 3 and stats.cached_invalid == 1
    assert len(zh_server.requests) == 4
    _, stats = _zh_aligner(zh_server).align_rows(rows, cache_path=cache, progress=False, retry_invalid=True)
    assert stats.invalid == 1 and stats.cached == 2 and len(zh_server.requests) == 5


def test_simt_align_command(zh_server, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _zh_rows()), encoding="utf-8")
    output = tmp_path / "aligned.jsonl"
    command = ["simt", "align", str(pairs), "-o", str(output), "--model", "aligner", "--quiet"]
    command += ["--base-url", f"http://127.0.0.1:{zh_server.server_port}/v1", "--api-key", "test"]
    command += ["--source-lang", "zh", "--target-lang", "en", "--chunk-size", "3", "--max-retries", "0"]
    assert cli_main(command) == 0
    out = capsys.readouterr()
    assert "2 of 3 pairs aligned" in out.out and "1 invalid answers" in out.out
    assert "invalid answer" in out.err
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [len(r["step_outputs"]) for r in rows] == [3, 3]
    assert (tmp_path / "aligned.aligner-cache.jsonl").exists()
    assert cli_main(command) == 0  # resumed: nothing asked again
    assert len(zh_server.requests) == 3 and "0 new, 3 from" in capsys.readouterr().out

    # user mistakes: one line, exit 2
    assert cli_main([*command[:-1], "5", "--source-unit", "letters"]) == 2
    assert "--source-unit" in capsys.readouterr().err
    pairs.write_text('{"source": "我们"}\n', encoding="utf-8")
    assert cli_main(command) == 2
    assert "pairs.jsonl:1" in capsys.readouterr().err


def test_failed_requests_are_not_cached_and_give_exit_code_1(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"source": "我们明天", "reference": "We tomorrow"}) + "\n", encoding="utf-8")
    output = tmp_path / "aligned.jsonl"
    command = ["simt", "align", str(pairs), "-o", str(output), "--model", "m", "--quiet", "--max-retries", "0"]
    command += ["--base-url", "http://127.0.0.1:9/v1", "--timeout", "2", "--source-lang", "zh"]
    assert cli_main(command) == 1
    assert "1 failed requests" in capsys.readouterr().out
    assert (tmp_path / "aligned.aligner-cache.jsonl").read_text() == ""
