"""COMET for real: tiny local checkpoints scored by unbabel-comet's own model classes, through get_reward("comet").

The checkpoints are built in the test (random weights, COMET's directory layout), so nothing is downloaded.
"""

from __future__ import annotations

import math
import sys

import pytest

pytest.importorskip("comet", reason="needs the comet extra")
pytest.importorskip("pytorch_lightning", reason="needs the comet extra")

import torch  # noqa: E402
import transformers  # noqa: E402

from trl_seqpo.errors import MissingDependencyError  # noqa: E402
from trl_seqpo.rewards import comet as comet_model_module  # noqa: E402
from trl_seqpo.rewards import get_reward  # noqa: E402
from trl_seqpo.synthetic.tiny_comet import build_tiny_comet_checkpoint  # noqa: E402

SOURCES = ["die katze sitzt", "der hund", "das haus ist rot", "hallo welt", "guten morgen"]
TRANSLATIONS = ["the cat sat", "the dog", "the house is red", "good morning", "hello world"]
REFERENCES = ["the cat sits", "the dog", "the house is red", "hello world", "good morning"]


@pytest.fixture(scope="module")
def regression_checkpoint(tmp_path_factory):
    """XLM-R encoder + RegressionMetric, the architecture of Unbabel/wmt22-comet-da."""
    return build_tiny_comet_checkpoint(tmp_path_factory.mktemp("comet-regression"))


@pytest.fixture(scope="module")
def unified_checkpoint(tmp_path_factory):
    """BERT encoder + UnifiedMetric: source, hypothesis and reference encoded jointly, as in XCOMET."""
    return build_tiny_comet_checkpoint(
        tmp_path_factory.mktemp("comet-unified"), encoder="bert", model="unified_metric", seed=1
    )


def _score(reward, translations=TRANSLATIONS, sources=SOURCES, references=REFERENCES):
    return reward(prompts=[""] * len(translations), completions=translations, source=sources, reference=references)


def test_scores_are_finite_deterministic_and_text_dependent(regression_checkpoint):
    reward = get_reward("comet", model=regression_checkpoint)
    assert reward.__name__ == "comet"
    scores = _score(reward)
    assert len(scores) == len(TRANSLATIONS)
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert len(set(scores)) > 1  # the score depends on the text
    assert _score(reward) == scores  # eval mode: no dropout noise


def test_batched_scoring_equals_one_by_one(regression_checkpoint):
    batched = _score(get_reward("comet", model=regression_checkpoint, batch_size=4))
    single = _score(get_reward("comet", model=regression_checkpoint, batch_size=1))
    assert batched == pytest.approx(single, abs=1e-5)


def test_model_loads_once_per_process_and_device(regression_checkpoint):
    first = comet_model_module.load_comet_model(regression_checkpoint)
    # The directory and the .ckpt path name the same checkpoint: same cached model object.
    assert comet_model_module.load_comet_model(regression_checkpoint.parents[1]) is first
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    from accelerate import PartialState

    assert next(first.parameters()).device == torch.device(PartialState().device)


def test_translation_column_and_unscorable_rows(regression_checkpoint):
    reward = get_reward("comet", model=regression_checkpoint)
    expected = _score(reward)[:2]
    scores = reward(
        prompts=["", "", ""],
        completions=["<src> die katze </src> the cat sat", "ignored", "x"],
        translation=[TRANSLATIONS[0], TRANSLATIONS[1], None],
        source=SOURCES[:3],
        reference=REFERENCES[:3],
    )
    assert scores[:2] == pytest.approx(expected, abs=1e-5)
    assert scores[2] is None
    missing_reference = reward(prompts=[""], completions=["the cat"], source=["die katze"], reference=[None])
    assert missing_reference == [None]  # reference-based model, row without reference
    with pytest.raises(ValueError, match="needs a 'source' column"):
        reward(prompts=[""], completions=["the cat"], reference=["the cat"])


def test_joint_encoding_model_and_xcomet_alias(unified_checkpoint):
    reward = get_reward("xcomet", model=unified_checkpoint.parents[1], batch_size=2)
    assert reward.__name__ == "xcomet"
    scores = _score(reward)
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == pytest.approx(_score(get_reward("comet", model=unified_checkpoint, batch_size=5)), abs=1e-5)


def test_compat_shim_is_needed_and_idempotent(regression_checkpoint):
    from comet.encoders import str2encoder
    from comet.encoders.xlmr import XLMREncoder

    from trl_seqpo.rewards.comet_compat import (
        Transformers5XLMREncoder,
        apply_comet_compat,
        comet_compat_applied,
    )

    get_reward("comet", model=regression_checkpoint)(prompts=[""], completions=["a"], source=["b"], reference=["c"])
    assert comet_compat_applied() and str2encoder["XLM-RoBERTa"] is Transformers5XLMREncoder
    assert apply_comet_compat() == {}  # second application changes nothing

    encoder_dir = str(regression_checkpoint.parents[1] / "encoder")
    stock = XLMREncoder.from_pretrained(encoder_dir, load_pretrained_weights=True, local_files_only=True)
    fixed = Transformers5XLMREncoder.from_pretrained(encoder_dir, load_pretrained_weights=True, local_files_only=True)
    inputs = stock.prepare_sample(["the cat sat", "hello"])
    if int(transformers.__version__.split(".")[0]) >= 5:
        with pytest.raises(ValueError, match="not enough values to unpack"):
            stock(inputs["input_ids"], inputs["attention_mask"])
        with pytest.raises(AttributeError, match="build_inputs_with_special_tokens"):
            stock.concat_sequences([inputs, inputs])
    output = fixed(inputs["input_ids"], inputs["attention_mask"])
    assert output["sentemb"].shape == (2, 32) and len(output["all_layers"]) == fixed.num_layers
    joined, _, _ = fixed.concat_sequences([inputs, inputs])
    tokens = fixed.tokenizer.convert_ids_to_tokens(joined["input_ids"][0].tolist())
    assert tokens == ["<s>", "▁the", "▁cat", "▁sat", "</s>", "</s>", "▁the", "▁cat", "▁sat", "</s>"]
    # Same layout as the tokenizer's own sentence-pair template.
    assert joined["input_ids"][0].tolist() == fixed.tokenizer("the cat sat", "the cat sat")["input_ids"]


def test_missing_comet_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "comet", None)  # makes `import comet` fail as if not installed
    hint = 'pip install "trl-seqpo[comet]" && pip install --no-deps unbabel-comet==2.2.7'
    with pytest.raises(MissingDependencyError) as error:
        get_reward("comet", model="whatever")
    assert hint in str(error.value)
    with pytest.raises(MissingDependencyError) as error:
        comet_model_module.import_comet()
    assert hint in str(error.value)


def test_bad_locations_raise_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        comet_model_module.resolve_checkpoint(str(tmp_path / "nope" / "model.ckpt"))
    with pytest.raises(ValueError, match="has no checkpoints/model.ckpt"):
        comet_model_module.resolve_checkpoint(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        comet_model_module.resolve_checkpoint("Unbabel/not-a-cached-model")


# ------------------------------------------------------------------------------ unbabel-comet's own predict as oracle


def _comet_predict(checkpoint, sources, translations, references):
    """Scores from unbabel-comet's own entry points: `load_from_checkpoint` + `model.predict` (Lightning loop)."""
    from comet import load_from_checkpoint

    from trl_seqpo.rewards.comet_compat import apply_comet_compat

    apply_comet_compat()  # the installed transformers needs it for COMET's encoders (see the compat test above)
    model = load_from_checkpoint(str(checkpoint), reload_hparams=False, local_files_only=True)
    samples = [{"src": s, "mt": t, "ref": r} for s, t, r in zip(sources, translations, references)]
    prediction = model.predict(samples, batch_size=2, gpus=0, accelerator="cpu", progress_bar=False, num_workers=0)
    return [float(score) for score in prediction.scores]


@pytest.mark.parametrize("kind", ["regression", "unified"])
def test_reward_equals_unbabel_comet_predict_and_is_not_symmetric(kind, regression_checkpoint, unified_checkpoint):
    checkpoint = regression_checkpoint if kind == "regression" else unified_checkpoint
    oracle = _comet_predict(checkpoint, SOURCES, TRANSLATIONS, REFERENCES)
    reward = get_reward("xcomet" if kind == "unified" else "comet", model=checkpoint, batch_size=3)
    tolerance = 2e-6  # float32 noise between batchings; the random tiny unified model moves by ~1e-5 to 1e-4
    assert _score(reward) == pytest.approx(oracle, abs=tolerance)
    # the oracle tells the roles apart on these rows, so the equality above pins which column is which:
    # scoring the reference as the hypothesis, or the reference as the source, moves some score well past it
    swapped_mt_ref = _comet_predict(checkpoint, SOURCES, REFERENCES, TRANSLATIONS)
    swapped_src_ref = _comet_predict(checkpoint, REFERENCES, TRANSLATIONS, SOURCES)
    for swapped in (swapped_mt_ref, swapped_src_ref):
        assert max(abs(a - b) for a, b in zip(swapped, oracle)) > 10 * tolerance
