"""Quality metrics of ``trl-seqpo evaluate``: corpus BLEU/chrF, COMET/XCOMET, BLEURT and LLM-judge scores.

SeqPO-SiMT (Sec. 3.1) reports BLEURT, COMET and a GPT-4 score (0-100, prompt in its Fig. 9) next to AL and LAAL;
ALPO (Sec. 4.2, App. C.1) reports judge scores for accuracy, naturalness and vividness and XCOMET. BLEU and chrF
(sacrebleu, corpus level) are added because they need no model. COMET, XCOMET and BLEURT are reported x100, as in
the papers' tables. Every model-based metric is optional and imported lazily; a metric that was asked for but cannot
run raises `MissingDependencyError` (what to install) or
`UserInputError` (what to fix), which the CLI turns into exit code 2.

Per-row scores are ``float`` or ``None`` ("could not score"); `mean_or_none` averages the scored rows only and
the caller reports how many were left unscored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from trl_seqpo.errors import MissingDependencyError, UserInputError

__all__ = [
    "BLEURT_INSTALL_HINT",
    "bleurt_scores",
    "check_judge_reachable",
    "comet_scores",
    "corpus_bleu",
    "corpus_chrf",
    "judge_scores",
    "mean_or_none",
]

BLEURT_INSTALL_HINT = "pip install bleurt-pytorch"


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the finite values, ``None`` when there are none."""
    kept = [float(value) for value in values if value is not None and math.isfinite(value)]
    return sum(kept) / len(kept) if kept else None


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str],
    target_lang: str | None = None,
    tokenize: str | None = None,
) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu) and its signature, tokenised for the target language as the `bleu` reward does.

    Args:
        hypotheses: System outputs.
        references: One reference per hypothesis.
        target_lang: Target language code or name; picks the tokeniser (`trl_seqpo.languages.bleu_tokenizer_for`:
            `zh` for Chinese, `ja-mecab` or `char` for Japanese, `char` for Thai, `13a` otherwise).
        tokenize: A sacrebleu tokeniser that overrides the language's.

    Returns:
        `(BLEU 0-100, sacrebleu signature)`, e.g. `"nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.5.1"`.
    """
    from sacrebleu.metrics import BLEU

    from trl_seqpo.languages import bleu_tokenizer_for

    metric = BLEU(tokenize=tokenize or bleu_tokenizer_for(target_lang))
    score = metric.corpus_score(list(hypotheses), [list(references)]).score
    return float(score), str(metric.get_signature())


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus chrF (sacrebleu, character n-grams 1-6, beta = 2), 0-100, and its sacrebleu signature."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    score = metric.corpus_score(list(hypotheses), [list(references)]).score
    return float(score), str(metric.get_signature())


def comet_scores(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    model: str | None = None,
    *,
    kind: str = "comet",
    batch_size: int = 16,
) -> list[float | None]:
    """Segment COMET (or XCOMET) scores x100 through the registered ``comet`` / ``xcomet`` reward.

    Args:
        sources: Source sentences.
        hypotheses: System outputs.
        references: References.
        model: COMET checkpoint path or Hub name; ``None`` uses the reward's default (``Unbabel/wmt22-comet-da`` or
            ``Unbabel/XCOMET-XL``, which need the Hub).
        kind: ``"comet"`` or ``"xcomet"``.
        batch_size: Rows per forward pass.

    Returns:
        One score per row (``None`` where COMET could not score it).
    """
    from trl_seqpo.rewards import get_reward

    settings = {"batch_size": batch_size} if model is None else {"model": model, "batch_size": batch_size}
    reward = get_reward(kind, **settings)
    try:
        scores = reward(
            prompts=list(sources), completions=list(hypotheses), source=list(sources), reference=list(references)
        )
    except (OSError, ValueError) as error:
        if isinstance(error, UserInputError):
            raise
        raise UserInputError(f"{kind} could not load its model {model or '(default)'}: {error}") from error
    return [None if score is None else 100.0 * score for score in scores]


def bleurt_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    model: str,
    *,
    batch_size: int = 16,
    device: str | None = None,
) -> list[float]:
    """Segment BLEURT scores x100 (Sellam et al., 2020; SeqPO-SiMT Sec. 3.1) with the PyTorch port ``bleurt-pytorch``.

    Args:
        hypotheses: System outputs.
        references: References.
        model: A BLEURT checkpoint directory in the ``bleurt-pytorch`` format (e.g. a local copy of
            ``lucadiliello/BLEURT-20``).
        batch_size: Rows per forward pass.
        device: Torch device; default CUDA when available.

    Returns:
        One score per row.

    Raises:
        MissingDependencyError: ``bleurt-pytorch`` is not installed.
        UserInputError: The checkpoint cannot be loaded.
    """
    try:
        from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    except ImportError as error:
        raise MissingDependencyError(f"the bleurt metric needs bleurt-pytorch: {BLEURT_INSTALL_HINT}") from error
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = BleurtTokenizer.from_pretrained(model)
        scorer = BleurtForSequenceClassification.from_pretrained(model).to(device).eval()
    except OSError as error:
        raise UserInputError(f"cannot load the BLEURT checkpoint {model!r}: {error}") from error
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(hypotheses), batch_size):
            inputs = tokenizer(
                list(references[start : start + batch_size]),
                list(hypotheses[start : start + batch_size]),
                padding="longest",
                truncation=True,
                return_tensors="pt",
            ).to(device)
            scores.extend(100.0 * value for value in scorer(**inputs).logits.flatten().tolist())
    return scores


def check_judge_reachable(config: object) -> None:
    """Send one cheap request to the judge and raise a clear error when the endpoint cannot be reached.

    Args:
        config: A `JudgeConfig`.

    Raises:
        JudgeUnreachableError: (a `UserInputError`) nothing answered.
    """
    from trl_seqpo.judge.client import JudgeRequest, LLMJudge

    probe = dataclasses.replace(config, cache_path=None, max_retries=1, num_shuffles=1, backoff_base=0.2)
    request = JudgeRequest(source="Good morning.", candidates=["Good morning."])
    LLMJudge(probe).score_lines([request], raise_if_unreachable=True)


def judge_scores(
    sources: Sequence[str | Sequence[str]],
    hypotheses: Sequence[str],
    config: object,
    *,
    progress: bool = True,
) -> list[float | None]:
    """Score each hypothesis alone, 0-100, with the LLM judge (SeqPO-SiMT Fig. 9; ALPO Sec. 4.2 per aspect).

    Each request holds one source (a sentence, or a document's lines) and one candidate, so the judge gives an
    absolute score as in the papers' evaluations; ``config.aspect`` selects accuracy, naturalness or vividness.
    Rows whose requests fail (endpoint down mid-run, unusable answers) get ``None``; nothing raises.

    Args:
        sources: Source sentence or lines per row.
        hypotheses: Translation per row (a document's lines joined by newlines).
        config: A `JudgeConfig` (with ``cache_path`` set, a rerun costs nothing).
        progress: Show a progress bar.

    Returns:
        One score or ``None`` per row.
    """
    from trl_seqpo.judge.client import JudgeRequest, LLMJudge

    requests = [
        JudgeRequest(source=source, candidates=[hypothesis]) for source, hypothesis in zip(sources, hypotheses)
    ]
    with LLMJudge(config) as judge:
        results = judge.score_lines(requests, progress=progress)
    return [None if result.scores is None else float(result.scores[0]) for result in results]
