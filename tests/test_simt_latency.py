"""Latency metrics: equal to SimulEval 1.1.4's own scorers on random instances, batched == per sentence."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from trl_seqpo.simt.latency import (
    LATENCY_METRICS,
    average_lagging,
    average_proportion,
    delays_from_steps,
    differentiable_average_lagging,
    latency_batch,
    length_adaptive_average_lagging,
    reference_length,
    sentence_latency,
    yet_another_average_lagging,
)

NUM_RANDOM = 3000


def _load_simuleval_latency_scorer() -> types.ModuleType:
    """Import SimulEval's latency_scorer module.

    simuleval is installed with --no-deps (it pins old versions of our dependencies), so its package ``__init__``
    files may fail on modules we do not install (requests, textgrid, ...). The scorer itself needs none of them:
    if the normal import fails, load ``instance.py`` and ``latency_scorer.py`` from their files, with the
    ``simuleval.evaluator`` packages as empty shells and a stub for ``textgrid`` (used only for speech alignment).
    """
    simuleval = importlib.import_module("simuleval")  # the real package: fails loudly when it is missing
    try:
        return importlib.import_module("simuleval.evaluator.scorers.latency_scorer")
    except ImportError:
        pass
    for name in [key for key in sys.modules if key.startswith("simuleval.evaluator")]:
        del sys.modules[name]
    root = Path(simuleval.__file__).parent / "evaluator"
    saved = {name: sys.modules.get(name) for name in ("simuleval.evaluator", "simuleval.evaluator.scorers")}
    has_textgrid = importlib.util.find_spec("textgrid") is not None
    try:
        for name, path in (("simuleval.evaluator", root), ("simuleval.evaluator.scorers", root / "scorers")):
            shell = types.ModuleType(name)
            shell.__path__ = [str(path)]
            sys.modules[name] = shell
        if not has_textgrid:
            sys.modules["textgrid"] = types.ModuleType("textgrid")
        loaded = None
        for name, path in (
            ("simuleval.evaluator.instance", root / "instance.py"),
            ("simuleval.evaluator.scorers.latency_scorer", root / "scorers" / "latency_scorer.py"),
        ):
            spec = importlib.util.spec_from_file_location(name, path)
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded
            spec.loader.exec_module(loaded)
        return loaded
    finally:
        for name in ("simuleval.evaluator.instance", "simuleval.evaluator.scorers.latency_scorer"):
            sys.modules.pop(name, None)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if not has_textgrid:
            sys.modules.pop("textgrid", None)


@pytest.fixture(scope="module")
def simuleval_scorers():
    module = _load_simuleval_latency_scorer()

    def score(metric: str, delays, source_length: int, reference_length: int | None) -> float:
        """Score one sentence with SimulEval's own scorer class and instance class (unit = word)."""
        info = {"index": 0, "delays": list(delays), "source_length": source_length, "prediction": ""}
        if reference_length is not None:
            info["reference"] = " ".join(["w"] * reference_length)
        instance = module.LogInstance(json.dumps(info), latency_unit="word")
        if reference_length is None:
            instance.reference = None  # SimulEval then uses the hypothesis length
        scorer = module.LATENCY_SCORERS_DICT[metric](use_ref_len=reference_length is not None)
        return scorer.compute(instance)

    return score


def _random_instance(rng: np.random.Generator) -> tuple[list[int], int, int]:
    source_length = int(rng.integers(1, 30))
    hypothesis_length = int(rng.integers(1, 40))
    kind = rng.integers(0, 4)
    if kind == 0:  # arbitrary non-decreasing delays, may start past the source
        delays = np.sort(rng.integers(0, source_length + 4, hypothesis_length))
    elif kind == 1:  # realistic: non-decreasing, capped at the source length
        delays = np.sort(rng.integers(1, source_length + 1, hypothesis_length))
    elif kind == 2:  # chunked rollout: delays are multiples of m capped at n
        chunk = int(rng.integers(1, 5))
        steps = np.sort(rng.integers(1, source_length // chunk + 3, hypothesis_length))
        delays = np.minimum(steps * chunk, source_length)
    else:  # unordered delays: SimulEval does not require monotonicity, neither do we
        delays = rng.integers(0, source_length + 2, hypothesis_length)
    reference_length = int(rng.integers(1, 40))
    return [int(d) for d in delays], source_length, reference_length


METRICS = {
    "AL": lambda d, n, r: average_lagging(d, n, r),
    "LAAL": lambda d, n, r: length_adaptive_average_lagging(d, n, r),
    "DAL": lambda d, n, r: differentiable_average_lagging(d, n),
    "AP": lambda d, n, r: average_proportion(d, n, r),
}


@pytest.mark.parametrize("use_reference", [True, False], ids=["reference-length", "no-use-ref-len"])
@pytest.mark.parametrize("metric", list(METRICS))
def test_equals_simuleval_on_random_instances(simuleval_scorers, metric, use_reference):
    rng = np.random.default_rng(2 * list(METRICS).index(metric) + use_reference)
    for _ in range(NUM_RANDOM):
        delays, source_length, reference_length = _random_instance(rng)
        reference = reference_length if use_reference else None
        expected = simuleval_scorers(metric, delays, source_length, reference)
        got = METRICS[metric](delays, source_length, reference)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (metric, delays, source_length, reference)


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize(
    ("delays", "source_length", "reference_length"),
    [
        ([3], 3, 1),  # a single unit, at the end of the source
        ([1], 5, 4),  # a single unit, early
        ([7, 8, 9], 5, 3),  # delays starting past the source length: AL/LAAL return delays[0]
        ([5, 5, 5, 5], 5, 2),  # offline translation, longer than the reference
        ([0, 0, 1], 4, 9),  # writing before reading anything
    ],
)
def test_edge_cases_equal_simuleval(simuleval_scorers, metric, delays, source_length, reference_length):
    for reference in (reference_length, None):
        expected = simuleval_scorers(metric, delays, source_length, reference)
        assert METRICS[metric](delays, source_length, reference) == pytest.approx(expected, rel=1e-12)


def test_delays_past_source_give_first_delay():
    assert average_lagging([7, 8, 9], 5) == 7.0
    assert length_adaptive_average_lagging([7, 8, 9], 5, 2) == 7.0


def test_known_values():
    # wait-2 on a 4-word source with a 4-word translation lags 2 words.
    assert average_lagging([2, 3, 4, 4], 4) == pytest.approx(2.0)
    # Over-generating (8 words for a 4-word reference) lowers AL with the hypothesis length but not LAAL.
    delays = [2, 2, 3, 3, 4, 4, 4, 4]
    assert average_lagging(delays, 4, 4) == pytest.approx((2 + 1 + 1 + 0 + 0) / 5)
    assert length_adaptive_average_lagging(delays, 4, 4) == pytest.approx(average_lagging(delays, 4))
    assert length_adaptive_average_lagging(delays, 4, 4) > average_lagging(delays, 4, 4)
    assert average_proportion([4, 4], 4) == 1.0
    # DAL never lets two target units share a delay: d' = (2, 3, 4) for gamma = 1.
    assert differentiable_average_lagging([2, 2, 2], 3) == pytest.approx((2 + 2 + 2) / 3)


def test_empty_hypothesis_is_scored_as_offline_translation():
    for reference in (None, 6):
        assert average_lagging([], 5, reference) == 5.0
        assert average_proportion([], 5, reference) == 1.0
    assert length_adaptive_average_lagging([], 5, 6) == 5.0
    assert differentiable_average_lagging([], 5) == 5.0


def test_empty_hypothesis_matches_a_full_sentence_hypothesis():
    # The defined value is what a hypothesis written entirely after the source gets.
    assert average_lagging([], 7) == average_lagging([7, 7, 7], 7)
    assert differentiable_average_lagging([], 7) == differentiable_average_lagging([7, 7, 7], 7)
    assert average_proportion([], 7) == average_proportion([7, 7, 7], 7)


@pytest.mark.parametrize("bad", [0, -1])
def test_invalid_lengths_raise_value_error(bad):
    with pytest.raises(ValueError, match="source_length"):
        average_lagging([1], bad)
    with pytest.raises(ValueError, match="reference_length"):
        average_lagging([1], 3, bad)
    with pytest.raises(ValueError, match="reference_length"):
        latency_batch([[1]], [3], [bad], metrics="AP")


def test_accepts_numpy_and_float_delays():
    assert average_lagging(np.array([1.5, 2.5, 4.0]), 4) == pytest.approx(average_lagging([1.5, 2.5, 4.0], 4))


def _random_corpus(seed: int, size: int):
    rng = np.random.default_rng(seed)
    rows = [_random_instance(rng) for _ in range(size)]
    rows[3] = ([], rows[3][1], rows[3][2])  # empty hypotheses inside the batch
    rows[-1] = ([], rows[-1][1], rows[-1][2])
    delays = [row[0] for row in rows]
    sources = np.array([row[1] for row in rows])
    references = np.array([row[2] for row in rows])
    return delays, sources, references


SINGLE = {
    "AL": lambda d, n, r: average_lagging(d, n, r),
    "LAAL": lambda d, n, r: length_adaptive_average_lagging(d, n, r),
    "DAL": lambda d, n, r: differentiable_average_lagging(d, n),
    "AP": lambda d, n, r: average_proportion(d, n, r),
    "YAAL": lambda d, n, r: yet_another_average_lagging(d, n, r),
    "LongYAAL": lambda d, n, r: yet_another_average_lagging(d, n, r, long_form=True),
}


@pytest.mark.parametrize("use_reference", [True, False])
def test_batched_equals_per_sentence_in_every_layout(use_reference):
    delays, sources, references = _random_corpus(7, 500)
    reference = references if use_reference else None
    rows = list(zip(delays, sources, reference if use_reference else [None] * 500))
    expected = {metric: np.array([single(*row) for row in rows]) for metric, single in SINGLE.items()}

    from_lists = latency_batch(delays, sources, reference)
    lengths = np.array([len(d) for d in delays])
    flat = np.concatenate([np.asarray(d, dtype=float) for d in delays])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    from_flat = latency_batch(flat, sources, reference, offsets=offsets)
    padded = np.full((len(delays), lengths.max()), -99.0)  # padding values must not matter
    for row, d in enumerate(delays):
        padded[row, : len(d)] = d
    from_padded = latency_batch(padded, sources, reference, lengths=lengths)

    for got in (from_lists, from_flat, from_padded):
        assert list(got) == list(LATENCY_METRICS)
        for metric, values in got.items():
            assert values.shape == (500,) and values.dtype == np.float64
            np.testing.assert_allclose(values, expected[metric], rtol=1e-12, atol=1e-12, err_msg=metric)


def test_batched_computes_only_the_metrics_asked_for():
    delays, sources, references = _random_corpus(5, 50)
    assert list(latency_batch(delays, sources, references, metrics=["DAL", "AL"])) == ["DAL", "AL"]
    only_al = latency_batch(delays, sources, references, metrics="AL")
    np.testing.assert_array_equal(only_al["AL"], latency_batch(delays, sources, references)["AL"])
    with pytest.raises(ValueError, match="unknown latency metric.*BLEU"):
        latency_batch(delays, sources, references, metrics=["AL", "BLEU"])


def test_batched_spans_several_blocks(monkeypatch):
    import trl_seqpo.simt.latency as latency
    import trl_seqpo.simt.latency_kernels as kernels

    monkeypatch.setattr(kernels, "_BLOCK_ELEMENTS", 1)
    delays, sources, references = _random_corpus(3, 300)
    expected = [average_lagging(d, n, r) for d, n, r in zip(delays, sources, references)]
    np.testing.assert_allclose(latency.latency_batch(delays, sources, references)["AL"], expected, rtol=1e-12)


def test_batched_rejects_inconsistent_layouts():
    with pytest.raises(ValueError, match="offsets"):
        latency_batch(np.array([1.0, 2.0, 3.0]), [3, 3], offsets=[0, 2, 4])
    with pytest.raises(ValueError, match="offsets"):
        latency_batch(np.array([1.0, 2.0]), [3])
    with pytest.raises(ValueError, match="one value per sentence"):
        latency_batch([[1, 2], [3]], [3, 3, 3])
    with pytest.raises(ValueError, match="lengths"):
        latency_batch(np.ones((2, 3)), [3, 3], lengths=[4, 1])


def test_batched_empty_batch():
    assert latency_batch([], [])["AL"].shape == (0,)


def test_delays_from_steps_follow_the_chunk_schedule():
    # m = 2, n = 5: steps read 2, 4, 5, 5 source words.
    assert delays_from_steps(["", "the cat", " sat", " down"], 2, 5, "word") == [4, 4, 5, 5]
    assert delays_from_steps(["尽管", "", "下着 大雨"], 3, 7, "char") == [3, 3, 7, 7, 7, 7]
    assert delays_from_steps([], 3, 7, "char") == []
    assert delays_from_steps(["a b c"], 10, 4, "word") == [4, 4, 4]


def test_delays_from_steps_match_the_joined_translation():
    outputs = ["", "the ca", "t", " sat", "  ", "on the", " mat"]
    delays = delays_from_steps(outputs, 1, 10, "word")
    assert len(delays) == len("".join(outputs).split()) == 6
    assert delays == [2, 2, 4, 6, 6, 7]  # "cat" counts once, at the step where it started


def test_delays_from_steps_validates_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        delays_from_steps(["a"], 0, 3, "word")
    with pytest.raises(ValueError, match="source_length"):
        delays_from_steps(["a"], 1, 0, "word")
    with pytest.raises(ValueError, match="unit"):
        delays_from_steps(["a"], 1, 3, "token")


def test_reference_length_rules():
    assert reference_length("lo  hundo vidas\n", "word") == 3
    assert reference_length("lo  hundo vidas\n", "word", "simuleval") == 4  # SimulEval splits on single spaces
    assert reference_length(" 下雨 了 ", "char") == 3
    assert reference_length(" 下雨 了 ", "char", "simuleval") == 4  # strip(), then spaces count
    assert reference_length("lo hundo", "word", "hypothesis") is None


def test_sentence_latency_is_every_registered_metric_with_one_reference_length():
    delays, n = [1, 1, 3, 4, 4], 4
    for ref_len in (None, 3, 7):
        got = sentence_latency(delays, n, ref_len)
        assert got == {
            "AL": average_lagging(delays, n, ref_len),
            "LAAL": length_adaptive_average_lagging(delays, n, ref_len),
            "DAL": differentiable_average_lagging(delays, n),
            "AP": average_proportion(delays, n, ref_len),
            "YAAL": yet_another_average_lagging(delays, n, ref_len),
            "LongYAAL": yet_another_average_lagging(delays, n, ref_len, long_form=True),
        }
    # a longer reference raises AL (the ideal writer would be further ahead); LAAL never uses less than |Y_hyp|
    assert sentence_latency(delays, n, 7)["AL"] > sentence_latency(delays, n, 3)["AL"]
    assert sentence_latency(delays, n, 3)["LAAL"] == sentence_latency(delays, n, None)["LAAL"]
    empty = sentence_latency([], n, 3)
    assert {k: empty[k] for k in ("AL", "LAAL", "DAL", "AP")} == {"AL": 4.0, "LAAL": 4.0, "DAL": 4.0, "AP": 1.0}
    assert np.isnan(empty["YAAL"]) and np.isnan(empty["LongYAAL"])  # OmniSTEval skips such sentences
