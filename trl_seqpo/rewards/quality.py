"""Translation-quality rewards: ``bleu``, ``chrf`` (sacrebleu) and ``comet`` / ``xcomet`` (unbabel-comet).

SeqPO-SiMT (Sec. 2.3, Eq. 2) scores each finished trajectory with a quality scorer f_q(x, y_hat, y) against the gold
translation y; the paper uses COMET (Sec. 3). Every reward here reads the hypothesis from the rollout's
``translation`` column when present (else from ``completions``), the gold translation from the dataset column
``reference`` and, for COMET, the source from ``source``. Higher is better for all of them.

The rewards are small callable classes rather than closures so that they pickle (TRL's async rollout sends reward
functions to a child process); the COMET model itself is not pickled, it is loaded lazily in whichever process
scores.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from trl_seqpo.languages import bleu_tokenizer_for
from trl_seqpo.rewards.comet import COMET_INSTALL_HINT, comet_available
from trl_seqpo.rewards.inputs import optional_column, required_column, texts_to_score, warn_once
from trl_seqpo.rewards.registry import register_reward


@functools.lru_cache(maxsize=32)
def _sacrebleu_metric(metric: str, tokenize: str | None, word_order: int) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    if metric == "bleu":
        return BLEU(tokenize=tokenize, effective_order=True)
    return CHRF(word_order=word_order)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class SacreBleuReward:
    """Sentence-level BLEU or chrF from sacrebleu, one score (0-100) per row.

    Args:
        metric: ``"bleu"`` or ``"chrf"``.
        tokenize: sacrebleu tokenizer for BLEU; ``None`` picks one per row from the target language
            (`trl_seqpo.languages.bleu_tokenizer_for`), or ``"13a"`` when no language is known.
        target_lang: Target language for all rows; a ``target_lang`` dataset column overrides it per row.
        word_order: chrF word n-gram order (0 = chrF, 2 = chrF++). Ignored for BLEU.
    """

    def __init__(self, metric: str, tokenize: str | None = None, target_lang: str | None = None, word_order: int = 0):
        if metric not in ("bleu", "chrf"):
            raise ValueError(f"metric must be 'bleu' or 'chrf', got {metric!r}")
        if tokenize is not None:
            from sacrebleu.metrics.bleu import _TOKENIZERS

            if tokenize not in _TOKENIZERS:
                raise ValueError(f"Unknown sacrebleu tokenizer {tokenize!r}; choose one of {sorted(_TOKENIZERS)}.")
        self.metric = metric
        self.tokenize = tokenize
        self.target_lang = target_lang
        self.word_order = word_order
        self.__name__ = metric

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        hypotheses = texts_to_score(completions, columns)
        references = required_column(columns, "reference", len(completions), self.__name__)
        languages = optional_column(columns, "target_lang", len(completions))
        rewards: list[float | None] = []
        for hypothesis, reference, language in zip(hypotheses, references, languages):
            if hypothesis is None or not isinstance(reference, str):
                rewards.append(None)
                continue
            tokenize = self.tokenize or bleu_tokenizer_for(language or self.target_lang)
            try:
                scorer = _sacrebleu_metric(self.metric, tokenize if self.metric == "bleu" else None, self.word_order)
                rewards.append(_finite_or_none(scorer.sentence_score(hypothesis, [reference]).score))
            except Exception as error:  # a reward never crashes training: this row gets None
                warn_once(f"{self.__name__}-error", f"Reward '{self.__name__}' could not score a row ({error!r}).")
                rewards.append(None)
        return rewards


@register_reward("bleu", factory=True)
def make_bleu_reward(tokenize: str | None = None, target_lang: str | None = None) -> SacreBleuReward:
    """Sentence-level BLEU (sacrebleu, ``effective_order=True``), 0-100, higher is better.

    BLEU = BP * exp(sum_n 1/N log p_n) with clipped n-gram precisions p_n (N = 4, orders with no n-gram of the
    hypothesis are skipped, which sentence-level scoring needs) and brevity penalty BP = min(1, exp(1 - r/c)).

    Columns: ``reference`` (required), ``translation`` or ``completions`` (hypothesis), optional ``target_lang``.

    Args:
        tokenize: Force a sacrebleu tokenizer (``"13a"``, ``"zh"``, ``"char"``, ``"ja-mecab"``, ...).
        target_lang: Target language used to pick the tokenizer: ``zh`` -> ``"zh"``, ``ja``/``th`` -> ``"char"``,
            anything else -> ``"13a"``. A ``target_lang`` column overrides it per row.

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.

    Examples:
        >>> from trl_seqpo.rewards import get_reward
        >>> bleu = get_reward("bleu")
        >>> scores = bleu(prompts=["p"], completions=["the cat sat on the mat"], reference=["the cat sat on the mat"])
        >>> [round(s, 6) for s in scores]
        [100.0]
    """
    return SacreBleuReward("bleu", tokenize=tokenize, target_lang=target_lang)


@register_reward("chrf", factory=True)
def make_chrf_reward(word_order: int = 0) -> SacreBleuReward:
    """Sentence-level chrF (sacrebleu), 0-100, higher is better.

    chrF = (1 + beta^2) * chrP * chrR / (beta^2 * chrP + chrR) with beta = 2, averaged over character n-grams of order
    1-6 (whitespace removed, so it needs no tokenizer and works as is for zh/ja); ``word_order=2`` gives chrF++.

    Columns: ``reference`` (required), ``translation`` or ``completions`` (hypothesis).

    Args:
        word_order: Word n-gram order (0 = chrF, 2 = chrF++).

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.
    """
    return SacreBleuReward("chrf", word_order=word_order)


class CometReward:
    """COMET score per row from an unbabel-comet checkpoint (loaded once per process, scored in batches).

    Args:
        model: A local checkpoint (``.../checkpoints/model.ckpt`` or the directory holding ``checkpoints/``) or a
            Hugging Face Hub name such as ``"Unbabel/wmt22-comet-da"`` (needs network on first use).
        batch_size: Rows per forward pass.
        device: Torch device; ``None`` uses the device accelerate picked for this process.
        name: The reward's name (``"comet"`` or ``"xcomet"``).
    """

    def __init__(self, model: str, batch_size: int = 16, device: str | None = None, name: str = "comet"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = str(model)
        self.batch_size = batch_size
        self.device = device
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        from trl_seqpo.rewards.comet import load_comet_model, score_rows

        translations = texts_to_score(completions, columns)
        sources = required_column(columns, "source", len(completions), self.__name__)
        references = optional_column(columns, "reference", len(completions))
        comet_model = load_comet_model(self.model, device=self.device)
        return score_rows(comet_model, sources, translations, references, self.batch_size, self.__name__)


def _check_comet_installed() -> None:
    from trl_seqpo.errors import MissingDependencyError

    if not comet_available():
        raise MissingDependencyError(f"The COMET reward needs unbabel-comet. Install it with: {COMET_INSTALL_HINT}")


@register_reward("comet", factory=True)
def make_comet_reward(
    model: str = "Unbabel/wmt22-comet-da", batch_size: int = 16, device: str | None = None
) -> CometReward:
    """COMET (Rei et al., 2020), the quality reward f_q of SeqPO-SiMT (Sec. 3); higher is better.

    A reference-based checkpoint (``regression_metric``, e.g. wmt22-comet-da) maps the sentence embeddings of
    source s, hypothesis h and reference r to a score with a feed-forward head on [h; r; h*r; |h-r|; h*s; |h-s|].
    The model loads lazily on first call, once per process and device, on the device accelerate picked, and scores
    the batch in chunks of ``batch_size``. Needs the ``comet`` extra and the compat shim in
    `trl_seqpo.rewards.comet_compat` (applied automatically).

    Columns: ``source`` (required), ``reference`` (required by reference-based checkpoints), ``translation`` or
    ``completions`` (hypothesis).

    Args:
        model: Checkpoint path (``.ckpt`` file or COMET directory) or Hub name.
        batch_size: Rows per forward pass.
        device: Override the device (``"cpu"``, ``"cuda:1"``, ...).

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.

    Raises:
        MissingDependencyError: If unbabel-comet is not installed.
    """
    _check_comet_installed()
    return CometReward(model, batch_size=batch_size, device=device, name="comet")


@register_reward("xcomet", factory=True)
def make_xcomet_reward(
    model: str = "Unbabel/XCOMET-XL", batch_size: int = 8, device: str | None = None
) -> CometReward:
    """XCOMET (Guerreiro et al., 2024): `make_comet_reward` with an XCOMET checkpoint by default.

    XCOMET (``xcomet_metric``) encodes source, hypothesis and reference jointly and mixes a regression score with an
    MQM-style score from detected error spans. The Hub checkpoints are gated: accept the licence and log in first.

    Args:
        model: Checkpoint path or Hub name (``"Unbabel/XCOMET-XL"`` or ``"Unbabel/XCOMET-XXL"``).
        batch_size: Rows per forward pass.
        device: Override the device.

    Returns:
        A reward function ``(prompts, completions, **columns) -> list[float | None]``.
    """
    _check_comet_installed()
    return CometReward(model, batch_size=batch_size, device=device, name="xcomet")
