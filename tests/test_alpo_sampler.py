"""ALPO Alg. 1 sampler: lockstep batching, de-duplication, reference, top-3 prefix, segments, judge failures."""

from __future__ import annotations

import re

import pytest

from trl_seqpo.alpo.sampler import SegmentwiseConfig, newline_token_ids, segment_line_ids
from trl_seqpo.alpo.sampler import SegmentwiseSampler as _Sampler
from trl_seqpo.errors import UserInputError
from trl_seqpo.judge.client import JudgeConfig, JudgeResult, LLMJudge
from trl_seqpo.rollout.engine import GenerationOutput, GenerationParams
from trl_seqpo.subtitles.documents import Document, render_document_prompt
from trl_seqpo.synthetic.local_judge import Reply, serve

EOS = 0
DOT_NEWLINE = 200  # a merged ".\n" token, as byte-level vocabularies have


class CharTokenizer:
    """One token per ASCII character, plus EOS (0) and a merged ".\\n" token."""

    eos_token_id = EOS
    all_special_ids = [EOS]

    def get_vocab(self) -> dict[str, int]:
        return {"<eos>": EOS, ".\n": DOT_NEWLINE, **{chr(i): i for i in range(1, 128)}}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(char) for char in text]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        pieces = {EOS: "" if skip_special_tokens else "<eos>", DOT_NEWLINE: ".\n"}
        return "".join(pieces.get(i, chr(i)) for i in ids)


class SegmentwiseSampler(_Sampler):
    """The sampler, its records as dicts (what the candidates file holds)."""

    def sample(self, documents):
        return [[record.to_dict() for record in doc] for doc in super().sample(documents)]


class ScriptedBackend:
    """A GenerationBackend whose answers come from ``script(prompt_text, row) -> text``; records every call.

    Line prompts end at a newline and the model writes the line's marker: the backend writes ``"n."`` before the
    script's text (the script writes the line itself).
    """

    def __init__(self, script):
        self.script = script
        self.tokenizer = CharTokenizer()
        self.calls: list[tuple[list[str], GenerationParams]] = []

    def generate(self, prompts, params):
        texts = [self.tokenizer.decode(prompt) for prompt in prompts]
        self.calls.append((texts, params))
        outputs = []
        for row, text in enumerate(texts):
            answer = self.script(text, row)
            if text.endswith("\n") and answer != "\n":
                answer = f"{line_number(text)}.{answer}"
            ids = self.tokenizer.encode(answer)
            stopped = bool(ids) and ids[-1] in params.stop_token_ids
            outputs.append(
                GenerationOutput(token_ids=ids or [EOS], finish_reason="stop" if stopped or not ids else "length")
            )
        return outputs


class ScoreByLength:
    """Fake judge: score = 10 * length of the candidate (distinct lengths give distinct ranks)."""

    def __init__(self, fail_sources=()):
        self.fail_sources = set(fail_sources)
        self.calls: list[list] = []

    def score_lines(self, requests, *, raise_if_unreachable=False):
        self.calls.append(list(requests))
        results = []
        for request in requests:
            if request.source in self.fail_sources:
                results.append(JudgeResult(scores=None, votes=[], failed_reason="every vote failed: keys"))
            else:
                results.append(JudgeResult(scores=[10.0 * len(text) for text in request.candidates], votes=[]))
        return results


def line_number(prompt: str) -> int:
    """The number of the line the prompt asks for (the prompt ends after the numbered lines written so far)."""
    written = prompt.rsplit("Translation:\n", 1)[1]
    return written.count("\n") + 1


def doc_of(prompt: str) -> str:
    return re.search(r"\b(alpha|beta|gamma)\b", prompt).group(1)


def make_docs(lengths=(4, 4, 2)):
    names = ["alpha", "beta", "gamma"]
    return [
        Document(
            doc_id=f"d{i}",
            source_lines=[f"{names[i]} line {n}." for n in range(length)],
            target_lines=[f"ref {names[i]} {n}" for n in range(length)],
        )
        for i, length in enumerate(lengths)
    ]


def config(**overrides) -> SegmentwiseConfig:
    values = dict(source_language="en", target_language="fr", num_candidates=5, max_new_tokens=20, seed=3)
    return SegmentwiseConfig(**{**values, **overrides})


def distinct_words(prompt: str, row: int) -> str:
    return f"{doc_of(prompt)} {line_number(prompt)} v{'x' * row}\n"


def test_one_backend_call_and_one_judge_call_per_unit_index():
    backend, judge = ScriptedBackend(distinct_words), ScoreByLength()
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(documents_per_batch=3), judge)
    records = sampler.sample(make_docs((4, 4, 2)))
    # 4 unit indices: every active document's k rows share one call; the 2-line document drops out after 2
    assert [len(prompts) for prompts, _ in backend.calls] == [15, 15, 10, 10]
    assert [len(requests) for requests in judge.calls] == [3, 3, 2, 2]
    assert sampler.stats.backend_calls == 4
    assert [len(doc) for doc in records] == [4, 4, 2]
    params = backend.calls[0][1]
    assert (params.temperature, params.top_p, params.top_k) == (0.7, 0.9, 40)
    assert {ord("\n"), DOT_NEWLINE, EOS} <= set(params.stop_token_ids)
    # smaller batches: one call per (batch, unit index)
    backend = ScriptedBackend(distinct_words)
    SegmentwiseSampler(backend, backend.tokenizer, config(documents_per_batch=1), ScoreByLength()).sample(
        make_docs((4, 4, 2))
    )
    assert len(backend.calls) == 10


def test_records_follow_the_schema_and_prefix_is_the_chosen_translation():
    backend = ScriptedBackend(distinct_words)
    docs = make_docs((3,))
    [records] = SegmentwiseSampler(backend, backend.tokenizer, config(), ScoreByLength()).sample(docs)
    for index, record in enumerate(records):
        assert record["doc_id"] == "d0" and record["unit_index"] == index and record["line_ids"] == [index]
        assert record["source"] == docs[0].source_lines[index]
        assert record["reference"] == docs[0].target_lines[index]
        assert record["document_prompt"] == render_document_prompt(docs[0], "en", "fr")
        assert record["judge_failed"] is False
        assert all(isinstance(c["score"], float) for c in record["candidates"])
        # the prefix is the chosen candidate of every earlier unit, and the prompt of this unit contains it
        assert record["prefix"] == [r["candidates"][r["chosen_index"]]["text"] for r in records[:index]]
    last_prompt = backend.calls[-1][0][0]
    # the line prompt ends at the newline after the prefix: the model writes "3." itself
    prefix = "".join(f"{n + 1}.{text}\n" for n, text in enumerate(records[2]["prefix"]))
    assert last_prompt.endswith("Translation:\n" + prefix)


def test_duplicates_removed_and_reference_added_once():
    def script(prompt, row):  # rows 0-2 say the same thing; in doc beta the policy also writes the reference
        row %= 5  # row within the document's k = 5 rows
        if doc_of(prompt) == "beta" and row == 4:
            return f"ref beta {line_number(prompt) - 1}\n"
        return "same words\n" if row < 3 else f"other {row}\n"

    backend = ScriptedBackend(script)
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(), ScoreByLength())
    alpha, beta = sampler.sample(make_docs((1, 1)))
    assert [(c["text"], c["origin"]) for c in alpha[0]["candidates"]] == [
        ("same words", "policy"),
        ("other 3", "policy"),
        ("other 4", "policy"),
        ("ref alpha 0", "reference"),
    ]
    assert alpha[0]["num_distinct"] == 3
    assert [c["origin"] for c in beta[0]["candidates"]] == ["policy"] * 3  # the reference is not added twice
    assert sampler.stats.duplicates == 4 and sampler.stats.references_added == 1
    backend = ScriptedBackend(script)
    no_reference = SegmentwiseSampler(backend, backend.tokenizer, config(add_reference=False), ScoreByLength())
    [[record]] = no_reference.sample(make_docs((1,)))
    assert all(c["origin"] == "policy" for c in record["candidates"])


def test_prefix_is_drawn_from_the_top_three_with_the_seed():
    backend = ScriptedBackend(distinct_words)  # row r writes r+1 x's: longer = higher score
    docs = [Document(f"d{i}", [f"alpha line {n}." for n in range(6)], None) for i in range(8)]
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(num_candidates=6), ScoreByLength())
    records = [record for doc in sampler.sample(docs) for record in doc]
    chosen_ranks = set()
    for record in records:
        scores = [c["score"] for c in record["candidates"]]
        rank = sorted(scores, reverse=True).index(scores[record["chosen_index"]])
        chosen_ranks.add(rank)
    assert chosen_ranks == {0, 1, 2}  # only the top 3, and all of them over 48 draws
    again = SegmentwiseSampler(backend, backend.tokenizer, config(num_candidates=6), ScoreByLength()).sample(docs)
    assert [r for doc in again for r in doc] == records  # same seed, same choices
    other = SegmentwiseSampler(backend, backend.tokenizer, config(num_candidates=6, seed=4), ScoreByLength())
    assert [r["chosen_index"] for doc in other.sample(docs) for r in doc] != [r["chosen_index"] for r in records]


def test_sampling_seeds_depend_on_seed_batch_and_unit_index():
    backend = ScriptedBackend(distinct_words)
    SegmentwiseSampler(backend, backend.tokenizer, config(documents_per_batch=3), None).sample(make_docs((2, 2, 2)))
    seeds = [params.seed for _, params in backend.calls]
    assert len(set(seeds)) == 2
    backend2 = ScriptedBackend(distinct_words)
    SegmentwiseSampler(backend2, backend2.tokenizer, config(documents_per_batch=3), None).sample(make_docs((2, 2, 2)))
    assert [params.seed for _, params in backend2.calls] == seeds


def test_segment_units_sample_several_numbered_lines():
    def script(prompt, row):
        number = line_number(prompt)
        if number in (1, 4, 5):  # first line of a unit
            return f"w{row} first\n"
        return f"w{row} next.\n" if row != 4 else f"w{row} cut sh"  # budget ran out

    source = ["He said", "that it", "was late.", "Go!", "Now"]
    docs = [Document("d0", source, [f"r{n}" for n in range(5)])]
    backend = ScriptedBackend(script)
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(unit="segment"), ScoreByLength())
    [records] = sampler.sample(docs)
    assert [r["line_ids"] for r in records] == [[0, 1, 2], [3], [4]]
    first = records[0]
    assert first["source"] == "He said\nthat it\nwas late." and first["reference"] == "r0\nr1\nr2"
    texts = [c["text"] for c in first["candidates"] if c["origin"] == "policy"]
    assert texts == [f"w{row} first\nw{row} next.\nw{row} next." for row in range(4)]
    assert first["num_dropped"] == 1  # row 4 ran out of budget in its last line
    # 3 calls for the 3-line unit (rows still writing), then 1 per single-line unit
    assert [len(prompts) for prompts, _ in backend.calls] == [5, 5, 4, 5, 5]
    assert records[1]["prefix"] == first["candidates"][first["chosen_index"]]["text"].split("\n")
    assert sampler.stats.dropped_unterminated == 1


def test_unparsable_and_unterminated_candidates_are_dropped_and_counted():
    def script(prompt, row):
        return ["good one\n", "\n", "no newline in budget", "good two.\n", "ends the answer"][row]

    backend = ScriptedBackend(script)
    original = backend.generate

    def generate(prompts, params):  # row 4 ends with EOS instead of a newline: a valid last line
        outputs = original(prompts, params)
        for output in outputs[4::5]:
            output.token_ids.append(EOS)
            output.finish_reason = "stop"
        return outputs

    backend.generate = generate
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(add_reference=False), ScoreByLength())
    [[record]] = sampler.sample([Document("d0", ["alpha line."], None)])
    assert [c["text"] for c in record["candidates"]] == ["good one", "good two.", "ends the answer"]
    assert record["num_dropped"] == 2
    assert (sampler.stats.dropped_unparsable, sampler.stats.dropped_unterminated) == (1, 1)


def test_judge_failure_gates_the_unit_and_the_prefix_falls_back():
    backend = ScriptedBackend(distinct_words)
    judge = ScoreByLength(fail_sources={"alpha line 1."})
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(), judge)
    [records] = sampler.sample(make_docs((3,)))
    assert [r["judge_failed"] for r in records] == [False, True, False]
    failed = records[1]
    assert all(c["score"] is None for c in failed["candidates"]) and "every vote failed" in failed["judge_error"]
    assert failed["chosen_index"] is not None and len(records[2]["prefix"]) == 2
    assert sampler.stats.judge_failed_units == 1

    class Broken:
        def score_lines(self, requests, *, raise_if_unreachable=False):
            raise RuntimeError("socket exploded")

    backend = ScriptedBackend(distinct_words)
    [records] = SegmentwiseSampler(backend, backend.tokenizer, config(), Broken()).sample(make_docs((2,)))
    assert all(r["judge_failed"] and "socket exploded" in r["judge_error"] for r in records)


def test_real_judge_with_unusable_answers_marks_units_failed():
    with serve(fault=lambda request: Reply(content="They are all lovely.")) as server:
        judge = LLMJudge(JudgeConfig(base_url=server.base_url, model="m", num_shuffles=2, max_retries=1))
        backend = ScriptedBackend(distinct_words)
        [records] = SegmentwiseSampler(backend, backend.tokenizer, config(), judge).sample(make_docs((2,)))
    assert all(r["judge_failed"] and r["votes"] == 0 for r in records)
    assert len(records[1]["prefix"]) == 1


def test_unreachable_judge_stops_only_when_asked():
    class Unreachable:
        def score_lines(self, requests, *, raise_if_unreachable=False):
            from trl_seqpo.judge.client import JudgeUnreachableError

            raise JudgeUnreachableError("the LLM judge at http://x could not be reached")

    backend = ScriptedBackend(distinct_words)
    strict = SegmentwiseSampler(backend, backend.tokenizer, config(raise_if_unreachable=True), Unreachable())
    with pytest.raises(UserInputError, match="could not be reached"):
        strict.sample(make_docs((2,)))
    lenient = SegmentwiseSampler(backend, backend.tokenizer, config(), Unreachable())
    assert all(r["judge_failed"] for r in lenient.sample(make_docs((2,)))[0])


def test_judge_min_candidates_skips_small_sets():
    backend = ScriptedBackend(lambda prompt, row: "same\n")
    judge = ScoreByLength()
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(judge_min_candidates=4), judge)
    [[record]] = sampler.sample(make_docs((1,)))
    assert judge.calls == [] and record["judge_failed"] is False
    assert [c["score"] for c in record["candidates"]] == [None, None]


def test_segment_rule_and_newline_ids():
    lines = ["He said", "that it was late.", "Go!", "「好的。」", "and then", "more", "still", "going", "end"]
    assert segment_line_ids(lines, "segment", max_segment_lines=3) == [[0, 1], [2], [3], [4, 5, 6], [7, 8]]
    assert segment_line_ids(lines[:2], "line") == [[0], [1]]
    with pytest.raises(ValueError, match="unit"):
        segment_line_ids(lines, "sentence")
    assert newline_token_ids(CharTokenizer()) == (ord("\n"), DOT_NEWLINE)
    with pytest.raises(ValueError, match="unit"):
        SegmentwiseConfig(unit="paragraph")
    with pytest.raises(ValueError, match="num_candidates"):
        SegmentwiseConfig(num_candidates=0)


def test_an_empty_unit_keeps_the_numbered_format_in_later_prompts():
    """No readable candidate and no reference: the prefix shows the source line, never a bare ``"1."``."""
    backend = ScriptedBackend(lambda prompt, row: "\n" if line_number(prompt) == 1 else "fine\n")
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(num_candidates=2), None)
    [records] = sampler.sample([Document("d0", ["alpha line 0.", "alpha line 1."], None)])
    assert records[0]["candidates"] == [] and records[0]["chosen_index"] is None
    assert records[1]["prefix"] == ["alpha line 0."] and sampler.stats.empty_units == 1
    last_prompt = backend.calls[-1][0][0]
    assert last_prompt.endswith("Translation:\n1.alpha line 0.\n") and "\n1.\n" not in last_prompt


def test_a_unit_judged_with_one_vote_invalid_counts_as_judged():
    """4 shuffles asked, 3 valid: the unit is judged (``votes_needed`` 3), its document is not sampled again."""
    from trl_seqpo.alpo.records import CandidateRecord

    class ThreeOfFour(ScoreByLength):
        config = type("C", (), {"num_shuffles": 4})()

        def score_lines(self, requests, *, raise_if_unreachable=False):
            results = super().score_lines(requests)
            for result in results:
                result.votes = [object(), object(), object(), type("V", (), {"scores": None})()]
            return results

    backend = ScriptedBackend(distinct_words)
    sampler = SegmentwiseSampler(backend, backend.tokenizer, config(), ThreeOfFour())
    [[record]] = sampler.sample([Document("d0", ["alpha line."], None)])
    assert (record["votes_requested"], record["votes_needed"]) == (4, 3)
    parsed = CandidateRecord.from_dict({**record, "votes": 3})
    assert not parsed.under_voted and CandidateRecord.from_dict({**record, "votes": 2}).under_voted
    assert CandidateRecord.from_dict({**record, "votes": 3, "votes_needed": None}).under_voted  # older records
