"""The SimulEval 1.1 agent: same prompts as the lockstep rollout, same hypotheses and AL as ``evaluate simt``."""

from __future__ import annotations

import csv
import json
import sys

import pytest

pytest.importorskip("simuleval")
pytest.importorskip("textgrid", reason="SimulEval's scorers import textgrid")

from tiny_models import word_emitting_model  # noqa: E402

from trl_seqpo.evaluate.simt import SimTEvalConfig, evaluate_simt  # noqa: E402
from trl_seqpo.integrations.simuleval import IncrementalTranslator  # noqa: E402
from trl_seqpo.rollout.engine import GenerationOutput  # noqa: E402
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig  # noqa: E402
from trl_seqpo.simt.policies import WaitKPolicy  # noqa: E402
from trl_seqpo.synthetic import language_pair as synthetic  # noqa: E402
from trl_seqpo.synthetic.tiny_models import IM_END, _rendered_templates, build_tokenizer  # noqa: E402


class RecordingBackend:
    """Answers with a word or a wait chosen from the prompt length, and records every prompt."""

    def __init__(self, tokenizer):
        self.prompts: list[list[int]] = []
        self.word = tokenizer(" lo", add_special_tokens=False)["input_ids"]
        self.end = tokenizer.convert_tokens_to_ids(IM_END)

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        return [GenerationOutput(self.word * (len(p) % 3) + [self.end], [], "stop") for p in prompts]


@pytest.mark.parametrize("prompt_format, policy", [("chat", None), ("paper", None), ("chat", WaitKPolicy(2))])
def test_incremental_steps_see_the_same_prompts_as_a_full_rollout(prompt_format, policy):
    tokenizer = build_tokenizer(
        synthetic.vocabulary(), extra_texts=[*synthetic.language_names(), *_rendered_templates()]
    )
    config = SimultaneousRolloutConfig(chunk_size=2, src_lang="English", tgt_lang="Synthetic",
                                       prompt_format=prompt_format, max_steps_after_source=2)  # fmt: skip
    for source in ("the big dog sees a cat", "a red bird sings today"):
        full = RecordingBackend(tokenizer)
        [expected] = SimultaneousRollout(full, tokenizer, config).run([source], policy=policy)
        streamed = RecordingBackend(tokenizer)
        translator = IncrementalTranslator(SimultaneousRollout(streamed, tokenizer, config), policy)
        words, outputs, count = source.split(), [], 0
        while not translator.finished:  # as SimulEval: push one more word (none after the last), then ask
            count = min(count + 1, len(words))
            outcome = translator.advance(words[:count], count == len(words))
            if outcome is not None:
                outputs.append(outcome[0])
        assert streamed.prompts == full.prompts
        assert outputs == [" ".join(step.split()) for step in expected.step_outputs]


def test_simuleval_run_matches_evaluate_simt(tmp_path, monkeypatch):
    import simuleval.cli

    model = word_emitting_model(tmp_path / "tiny")
    examples = synthetic.generate_corpus(5, seed=3, max_words=7)
    examples[1].reference = examples[1].reference.replace(" ", "  ", 1)  # SimulEval counts the empty "word"
    (tmp_path / "src.txt").write_text("".join(e.source + "\n" for e in examples))
    (tmp_path / "tgt.txt").write_text("".join(e.reference + "\n" for e in examples))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"source": e.source, "reference": e.reference}) + "\n" for e in examples))
    settings = [
        "--chunk-size",
        "2",
        "--source-lang",
        "English",
        "--target-lang",
        "Synthetic",
        "--max-new-tokens-per-step",
        "3",
    ]
    argv = ["simuleval", "--agent-class", "trl_seqpo.integrations.simuleval.SeqPOAgent", "--model-path", str(model),
            "--source", str(tmp_path / "src.txt"), "--target", str(tmp_path / "tgt.txt"), "--output",
            str(tmp_path / "simuleval"), "--latency-metrics", "AL", "LAAL", "AP", "DAL", "--no-progress-bar",
            *settings]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    simuleval.cli.main()
    with (tmp_path / "simuleval" / "scores.tsv").open() as handle:
        theirs = {name: float(value) for name, value in next(csv.DictReader(handle, delimiter="\t")).items()}
    instances = [json.loads(line) for line in (tmp_path / "simuleval" / "instances.log").read_text().splitlines()]

    common = dict(model=str(model), data=data, chunk_sizes=[2], batch_size=5, source_lang="English",
                  target_lang="Synthetic", max_new_tokens_per_step=3, progress=False)  # fmt: skip
    ours = evaluate_simt(SimTEvalConfig(**common, output_dir=tmp_path / "ours", reference_length="simuleval"))
    rows = [
        json.loads(line) for line in (tmp_path / "ours" / "model-m2" / "hypotheses.jsonl").read_text().splitlines()
    ]
    assert all(instance["delays"] for instance in instances)  # SimulEval skips empty ones; none here
    for instance, row in zip(instances, rows, strict=True):
        assert instance["prediction"].split() == row["translation"].split()
        assert instance["delays"] == row["delays"]
        assert instance["source_length"] == row["source_length"]
    metrics = ours["runs"][0]["metrics"]
    for name in ("AL", "LAAL", "AP", "DAL"):
        assert round(metrics[name], 3) == pytest.approx(theirs[name], abs=1e-9), name
    # the default rule counts reference *words*; the doubled space changes only SimulEval's |Y*|
    default = evaluate_simt(SimTEvalConfig(**common, output_dir=tmp_path / "units"))["runs"][0]["metrics"]
    assert default["DAL"] == metrics["DAL"] and default["AL"] != pytest.approx(metrics["AL"])


def _simuleval_score_only(run_dir, *extra: str) -> dict[str, float]:
    """`simuleval --score-only --output RUN_DIR ...` through SimulEval's own parser and evaluator."""
    from simuleval import options
    from simuleval.evaluator import SentenceLevelEvaluator

    parser = options.general_parser()
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser)
    options.add_dataloader_args(parser)
    args = parser.parse_args(["--score-only", "--output", str(run_dir), *extra])
    return {name: float(value) for name, value in SentenceLevelEvaluator.from_args(args).results.iloc[0].items()}


def test_instances_log_rescored_by_simuleval_gives_our_numbers(tmp_path):
    model = word_emitting_model(tmp_path / "tiny")
    examples = synthetic.generate_corpus(6, seed=8, max_words=7)  # single-spaced references: both count |Y*| alike
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"source": e.source, "reference": e.reference}) + "\n" for e in examples))
    config = SimTEvalConfig(model=str(model), data=data, output_dir=tmp_path / "ours", chunk_sizes=[2],
                            target_lang="Synthetic", max_new_tokens_per_step=3, progress=False)  # fmt: skip
    results = evaluate_simt(config)
    run = results["runs"][0]
    assert run["counts"]["empty"] == 0  # SimulEval would skip an empty hypothesis
    tokenizer = results["signatures"]["BLEU"].split("tok:")[1].split("|")[0]
    common = ["--latency-metrics", "AL", "LAAL", "AP", "DAL", "--eval-latency-unit", "word"]
    run_dir = tmp_path / "ours" / run["dir"]
    theirs = _simuleval_score_only(run_dir, *common, "--quality-metrics", "BLEU", "--sacrebleu-tokenizer", tokenizer)
    for name in ("AL", "LAAL", "AP", "DAL", "BLEU"):
        assert round(run["metrics"][name], 3) == pytest.approx(theirs[name], abs=1e-9), name
    aware = _simuleval_score_only(run_dir, *common, "--computation-aware")  # scores the logged `elapsed`
    for name in ("AL", "LAAL"):
        assert round(run["metrics"][f"{name}_CA"], 3) == pytest.approx(aware[name], abs=1e-9), name
    assert run["metrics"]["AL_CA"] > run["metrics"]["AL"]


def test_agent_flags_are_generated_from_the_evaluation_config():
    import argparse
    import dataclasses

    from trl_seqpo.integrations.simuleval import SeqPOAgent, _option_names

    parser = argparse.ArgumentParser()
    SeqPOAgent.add_args(parser)
    defaults = vars(parser.parse_args(["--model-path", "m"]))
    fields = {field.name: field for field in dataclasses.fields(SimTEvalConfig)}
    actions = {action.dest: action for action in parser._actions if action.help != argparse.SUPPRESS}
    options = _option_names(SimTEvalConfig)
    for name in options:  # the same default and help as `trl-seqpo evaluate simt --<name>`
        assert defaults[name] == fields[name].default, name
        assert fields[name].metadata["help"] in actions[name].help, name
    assert actions["policy"].choices == ("model", "wait-k", "full-sentence")
    assert {"latency_unit", "max_new_tokens_per_step", "temperature", "wait_k_rate", "source_lang"} <= set(options)
    # the earlier spelling still reaches the same setting
    assert parser.parse_args(["--model-path", "m", "--target-unit", "char"]).latency_unit == "char"
