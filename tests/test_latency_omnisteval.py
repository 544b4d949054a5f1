"""YAAL and LongYAAL equal OmniSTEval's own scorers (the IWSLT evaluation package), sentence by sentence and as
corpus scores; the latency registry reaches the reward, the batched metrics and the evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trl_seqpo.simt.latency import (
    corpus_latency,
    latency_batch,
    latency_metric_names,
    register_latency_metric,
    sentence_latency,
    unregister_latency_metric,
    yet_another_average_lagging,
)

omnisteval = pytest.importorskip("omnisteval", reason="OmniSTEval is in the dev extra (pip install omnisteval)")
from omnisteval.scoring import YAALScorer, evaluate_instances  # noqa: E402


def _instance(delays: list[float], source_length: float, reference_words: int | None, unit: str = "word"):
    # OmniSTEval counts a word reference with split(" "), a character one with len(strip())
    if reference_words is None:
        reference = None
    elif unit == "word":
        reference = " ".join(["w"] * reference_words)
    else:
        reference = "字" * reference_words
    return omnisteval.Instance(
        prediction="x", reference=reference, latency_unit=unit, source_length=source_length, emission_cu=delays
    )


def _random_instance(rng: np.random.Generator) -> tuple[list[float], int, int]:
    source_length = int(rng.integers(1, 30))
    hypothesis_length = int(rng.integers(1, 40))
    kind = rng.integers(0, 3)
    if kind == 0:  # delays past the source end, real-valued (speech ms-like)
        delays = np.sort(rng.uniform(0, source_length + 4, hypothesis_length))
    elif kind == 1:
        delays = np.sort(rng.integers(0, source_length + 1, hypothesis_length)).astype(float)
    else:  # unordered
        delays = rng.integers(0, source_length + 2, hypothesis_length).astype(float)
    return [float(d) for d in delays], source_length, int(rng.integers(1, 40))


def _real_instances() -> list[tuple[list[float], int, int]]:
    """Wait-k (k = 1..5) translations of the synthetic corpus by its gold alignment: each target word is written
    once its aligned source word and k - 1 more have been read (the real reordering of the language pair)."""
    from trl_seqpo.synthetic.language_pair import generate_corpus

    rows = []
    for k in range(1, 6):
        for example in generate_corpus(40, seed=k):
            n = len(example.source.split())
            read = 0
            delays = []
            for source_index, _ in sorted(example.alignment, key=lambda pair: pair[1]):
                read = max(read, min(source_index + k, n))
                delays.append(float(read))
            rows.append((delays, n, len(example.reference.split())))
    return rows


@pytest.mark.parametrize("long_form", [False, True], ids=["YAAL", "LongYAAL"])
def test_yaal_equals_omnisteval_sentence_by_sentence(long_form):
    rng = np.random.default_rng(int(long_form))
    cases = [_random_instance(rng) for _ in range(2000)] + _real_instances()
    cases += [([5.0, 6.0], 5, 2), ([], 4, 3)]  # waited for the whole source; empty: both undefined
    scorer = YAALScorer(is_longform=long_form)
    undefined = 0
    for delays, n, ref in cases:
        expected = scorer.compute(_instance(delays, n, ref)) if delays else None
        got = yet_another_average_lagging(delays, n, ref, long_form=long_form)
        if expected is None:
            undefined += 1
            assert math.isnan(got), (delays, n, ref)
        else:
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (delays, n, ref)
        name = "LongYAAL" if long_form else "YAAL"
        registered = sentence_latency(delays, n, ref)[name]
        assert registered == got or (math.isnan(registered) and math.isnan(got))
    assert 0 < undefined < len(cases)  # both branches ran


def test_yaal_with_a_recording_end_equals_omnisteval():
    rng = np.random.default_rng(3)
    for _ in range(500):
        delays, n, ref = _random_instance(rng)
        end = float(rng.uniform(1, n + 5))
        instance = _instance(delays, n, ref)
        instance.time_to_recording_end = end
        expected = YAALScorer(is_longform=True).compute(instance)
        got = yet_another_average_lagging(delays, n, ref, long_form=True, recording_end=end)
        assert (expected is None and math.isnan(got)) or got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("long_form", [False, True])
def test_corpus_scores_equal_omnisteval_evaluate_instances(long_form):
    """OmniSTEval's own pipeline (`evaluate_instances`) on random + real instances, word and character units."""
    rng = np.random.default_rng(10 + long_form)
    cases = [_random_instance(rng) for _ in range(300)] + _real_instances()
    instances = [_instance(d, n, r, unit="char" if i % 2 else "word") for i, (d, n, r) in enumerate(cases)]
    scores, _, _ = evaluate_instances(instances, compute_quality=False, is_longform=long_form)
    prefix = "long_" if long_form else ""
    ours = {name: [sentence_latency(d, n, r)[name] for d, n, r in cases] for name in latency_metric_names()}
    assert corpus_latency(ours["LongYAAL" if long_form else "YAAL"]) == pytest.approx(scores[f"{prefix}yaal"])
    for name in ("AL", "LAAL", "DAL", "AP"):  # OmniSTEval keeps SimulEval's scorers: ours agree with both
        assert corpus_latency(ours[name]) == pytest.approx(scores[f"{prefix}{name.lower()}"], rel=1e-12), name


def test_batched_yaal_equals_the_sentence_function():
    rng = np.random.default_rng(5)
    cases = [_random_instance(rng) for _ in range(200)] + [([], 3, 2)]
    batch = latency_batch([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    for name in ("YAAL", "LongYAAL"):
        expected = [sentence_latency(*case)[name] for case in cases]
        np.testing.assert_allclose(batch[name], expected, rtol=1e-12, equal_nan=True)


def test_a_registered_metric_reaches_sentence_batch_reward_and_evaluation(tmp_path):
    from trl_seqpo.rewards import get_reward

    @register_latency_metric("FIRST", reward="first_delay")
    def first_delay(delays, source_length, reference_length=None):
        return float(delays[0]) if len(delays) else float(source_length)

    try:
        assert "FIRST" in latency_metric_names()
        assert sentence_latency([2, 3], 4)["FIRST"] == 2.0
        assert latency_batch([[2, 3], [1]], [4, 4], metrics=["FIRST"])["FIRST"].tolist() == [2.0, 1.0]
        reward = get_reward("first_delay")
        assert reward.__name__ == "first_delay"
        assert reward(prompts=["p"], completions=["c"], delays=[[3, 4]], source_length=[4]) == [3.0]
        with pytest.raises(ValueError, match="already registered"):
            register_latency_metric("FIRST", reward="other")(first_delay)
        _reaches_training_logs_and_evaluation(tmp_path)
    finally:
        unregister_latency_metric("FIRST")
    assert "FIRST" not in latency_metric_names()
    with pytest.raises(ValueError, match="Unknown reward"):
        get_reward("first_delay")


def _reaches_training_logs_and_evaluation(tmp_path):
    """The registered FIRST (reward first_delay) as SeqPO's latency reward, in its logs, evaluate simt and plot."""
    from trl_seqpo import SeqPOConfig
    from trl_seqpo.evaluate.simt import SimTEvalConfig, _score
    from trl_seqpo.seqpo.reward import FusedSimultaneousReward, resolve_rewards

    cpu = {"use_cpu": True, "bf16": False, "report_to": "none", "num_generations": 2, "per_device_train_batch_size": 2}
    args = SeqPOConfig(output_dir=str(tmp_path / "train"), latency_reward="first_delay", quality_reward="chrf", **cpu)
    fused = FusedSimultaneousReward(*resolve_rewards(None, args), args)
    assert fused.latency.__name__ == "first_delay"
    logged = {}
    columns = {"reference": ["a b", "a b"], "delays": [[3, 4], [1, 4]], "source_length": [4, 4]}
    fused(["s", "s"], ["a b", "a b"], log_metric=logged.__setitem__, **columns)
    assert logged["simt/first_delay"] == 2.0  # mean of the first delays 3 and 1
    config = SimTEvalConfig(model="m", data="d.jsonl", output_dir=str(tmp_path / "eval"), metrics=("chrf",))
    row = {"id": "0", "source": "w x y z", "reference": "a b", "translation": "a b", "step_outputs": ["", "a b"],
           "delays": [2, 2], "source_length": 4}  # fmt: skip
    (tmp_path / "eval").mkdir()
    summary, _, _ = _score([row], tmp_path / "eval", config)
    assert summary["FIRST"] == 2.0
    # the results tables and `trl-seqpo plot --x`
    import argparse

    from trl_seqpo.cli import plot
    from trl_seqpo.evaluate.report import lower_is_better, metric_columns

    assert lower_is_better("FIRST") and metric_columns([{"metrics": {"AL_CA": 1, "FIRST": 2, "BLEU": 3}}]) == [
        "BLEU", "FIRST", "AL_CA"]  # fmt: skip
    parser = argparse.ArgumentParser()
    plot.add_parser(parser.add_subparsers())
    assert parser.parse_args(["plot", "r.json", "-o", "p.png", "--x", "FIRST"]).x == "FIRST"


def test_yaal_reward_scores_an_offline_translation_as_the_whole_source():
    from trl_seqpo.rewards import get_reward

    yaal = get_reward("yaal")
    # d_1 = n: undefined for OmniSTEval; as a reward it is the worst case, the source length (not None)
    assert yaal(prompts=["p"] * 2, completions=["c"] * 2, delays=[[4, 4], [1, 4]], source_length=[4, 4]) == [4.0, 1.0]
