"""A synthetic subtitle task for ALPO tests, benchmarks and the CPU demo.

Documents of numbered lines (ALPO Sec. 4.1, App. F.1) built from the synthetic language pair of
`trl_seqpo.synthetic.language_pair`:

- every sentence ends with ``"."`` on both sides, so the sampler's *segment* rule (a run of lines up to sentence-final
  punctuation, see `trl_seqpo.alpo.sampler.segment_line_ids`) has something to find;
- a sentence may run over several subtitle lines, as a long utterance is spread over several cues: with probability
  ``continue_prob`` it goes on with ``and`` + another clause on the next line (at most ``max_lines_per_sentence``
  lines). The synthetic translation closes each clause before ``kaj`` (`translate`),
  so the target splits at the same place and line ``i`` of the reference translates exactly line ``i`` of the
  source;
- some target words have an equally valid synonym (`TARGET_SYNONYMS`); references use
  the alternative with probability ``synonym_prob``. `hidden_preference` is the mapping a
  `SynonymPreferenceScorer` judge secretly prefers, so candidates that differ
  only in synonym choice get different scores, which is the signal ALPO learns from.

Sentences are lowercase words separated by single spaces; the only punctuation is the final ``"."``.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trl_seqpo.subtitles.documents import Document, make_documents, render_document_prompt
from trl_seqpo.synthetic.language_pair import (
    DICTIONARY,
    SOURCE_LANGUAGE,
    TARGET_LANGUAGE,
    TARGET_SYNONYMS,
    SyntheticPair,
    translate,
)

__all__ = [
    "AccuracyTasteScorer",
    "SOURCE_LANGUAGE",
    "TARGET_LANGUAGE",
    "hidden_preference",
    "make_subtitle_documents",
    "prompt_texts",
    "save_line_writer_model",
    "subtitle_lines",
    "write_documents",
]

_CONJUNCTION = "and"


def hidden_preference() -> dict[str, str]:
    """``{plain target word: preferred synonym}``, the demo judge's hidden taste (for ``SynonymPreferenceScorer``).

    Returns:
        A copy of `TARGET_SYNONYMS`.
    """
    return dict(TARGET_SYNONYMS)


_WORD_RE = re.compile(r"[^\W\d_]+")


class AccuracyTasteScorer:
    """A scripted judge for the synthetic subtitles: mostly accuracy, plus a hidden taste for some synonyms.

    For a candidate translating the source line(s) of a judge request (``[Evaluate]`` lines of
    `trl_seqpo.judge.prompts`), the judge translates those lines itself with the synthetic dictionary (`translate`,
    plain words) and scores

    ``accuracy_points * (F1 of words + F1 of adjacent word pairs) / 2 + taste_points * taste``

    rounded to an integer, where both F1s count each synonym pair as one word, and ``taste`` in ``[0, 1]`` is
    ``#preferred / #slots``, capped at 1, with ``#slots`` the words of the judge's translation that have a synonym
    (``taste = 1`` without slots: such a line has nothing to prefer). So its order is the preferred word, then the
    plain word, then a wrong or missing word: the plain word loses only the taste points, a wrong word loses
    accuracy as well. (A taste of ``(#preferred - #plain) / #slots`` scored a wrong word above the plain one, and a
    policy trained on it learned to replace plain words by wrong ones.) The scores are fine-grained, so candidates
    that differ rarely tie, and a candidate cannot gain by inserting preferred words: every inserted word costs
    precision and the taste term is capped at the slots the source offers.

    Args:
        preferred: ``{plain word: preferred synonym}`` (`hidden_preference`).
        accuracy_points: Points for a perfect word and word-pair match.
        taste_points: Points for the preferred word in every slot (all of them for a line without slots).

    >>> judge = AccuracyTasteScorer({"domo": "kaso"})
    >>> messages = [{"role": "user", "content": "[Evaluate] the dog sees the house."}]
    >>> judge.expected(["the dog sees the house."])
    ['lo', 'hundo', 'lo', 'domo', 'vidas']
    >>> judge(["lo hundo lo domo vidas.", "lo hundo lo kaso vidas.", "lo hundo lo kaso kaso vidas.",
    ...        "lo hundo lo urbo vidas."], messages)
    [70, 100, 93, 46]
    """

    def __init__(self, preferred: Mapping[str, str], *, accuracy_points: float = 70.0, taste_points: float = 30.0):
        if accuracy_points < 0 or taste_points < 0 or accuracy_points + taste_points > 100:
            raise ValueError(f"points must be >= 0 and sum to <= 100, got {accuracy_points} + {taste_points}")
        self.preferred = dict(preferred)
        self.accuracy_points, self.taste_points = accuracy_points, taste_points
        self._plain_of = {liked: plain for plain, liked in self.preferred.items()}

    def __repr__(self) -> str:
        return f"AccuracyTasteScorer(accuracy_points={self.accuracy_points:g}, taste_points={self.taste_points:g})"

    def expected(self, source_lines: list[str]) -> list[str]:
        """The judge's own translation of source lines, as words (plain synonyms; unknown words are left out)."""
        words: list[str] = []
        for line in source_lines:
            known = [word for word in _WORD_RE.findall(line.lower()) if word in DICTIONARY]
            if known:
                words.extend(translate(known)[0].split())
        return words

    def score(self, candidate: str, expected: list[str]) -> int:
        """Score of one candidate against the judge's translation ``expected`` (from `expected`)."""
        words = _WORD_RE.findall(candidate.lower())
        merged = [self._plain_of.get(word, word) for word in words]
        accuracy = (_f1(merged, expected) + _f1(_pairs(merged), _pairs(expected))) / 2
        slots = sum(word in self.preferred for word in expected)
        liked = sum(word in self._plain_of for word in words)
        taste = min(1.0, liked / slots) if slots else 1.0
        return max(0, min(100, round(self.accuracy_points * accuracy + self.taste_points * taste)))

    def __call__(self, candidates: list[str], messages: list[dict]) -> list[int]:
        from trl_seqpo.judge.prompts import parse_evaluated_lines

        expected = self.expected(parse_evaluated_lines(messages))
        return [self.score(text, expected) for text in candidates]


def _pairs(words: list[str]) -> list[str]:
    return [f"{a} {b}" for a, b in zip(words, words[1:])]


def _f1(found: list[str], wanted: list[str]) -> float:
    if not found or not wanted:
        return float(found == wanted)
    overlap = sum((Counter(found) & Counter(wanted)).values())
    return 2 * overlap / (len(found) + len(wanted))


def subtitle_lines(
    num_lines: int,
    seed: int = 0,
    *,
    continue_prob: float = 0.4,
    max_lines_per_sentence: int = 3,
    synonym_prob: float = 0.3,
    min_words: int = 3,
    max_words: int = 8,
) -> list[tuple[str, str]]:
    """A programme of ``num_lines`` aligned ``(source, reference)`` subtitle lines.

    Args:
        num_lines: Lines to produce (the last sentence may be cut short to fit, and then ends without ``"."``).
        seed: Seed; the same arguments give the same lines.
        continue_prob: Probability that a sentence goes on with ``and`` + another clause on the next line.
        max_lines_per_sentence: Most lines one sentence spans.
        synonym_prob: Probability that a reference uses the alternative of a word that has a synonym.
        min_words: Shortest line in words (>= 3).
        max_words: Longest line in words (not counting ``and``).

    Returns:
        ``[(source_line, reference_line), ...]``.

    Raises:
        ValueError: ``num_lines < 0`` or a probability outside ``[0, 1]``.
    """
    if num_lines < 0:
        raise ValueError(f"num_lines must be >= 0, got {num_lines}")
    if max_lines_per_sentence < 1:
        raise ValueError(f"max_lines_per_sentence must be >= 1, got {max_lines_per_sentence}")
    for name, value in (("continue_prob", continue_prob), ("synonym_prob", synonym_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    generator = SyntheticPair(seed=seed, min_words=min_words, max_words=max_words)
    rng = random.Random(f"{seed}:subtitles")
    lines: list[tuple[str, str]] = []
    while len(lines) < num_lines:
        clauses = [generator.sample_source()]
        while len(clauses) < max_lines_per_sentence and rng.random() < continue_prob:
            clauses.append([_CONJUNCTION, *generator.sample_source()])
        for position, clause in enumerate(clauses):
            reference, _ = translate(clause, synonym_prob, rng)
            source = " ".join(clause)
            if position == len(clauses) - 1:
                source, reference = source + ".", reference + "."
            lines.append((source, reference))
    return lines[:num_lines]


def make_subtitle_documents(
    num_documents: int,
    lines_per_document: int = 6,
    seed: int = 0,
    *,
    context: int = 0,
    with_references: bool = True,
    doc_id_prefix: str = "synthetic",
    **line_options: Any,
) -> list[Document]:
    """Documents of ``lines_per_document`` numbered lines from one synthetic programme (ALPO Sec. 4.1).

    Args:
        num_documents: Number of documents.
        lines_per_document: Lines per document (paper: 35; a few lines keep tests fast).
        seed: Seed of the programme.
        context: Untranslated source lines shown before and after each document.
        with_references: Keep the reference translations (``target_lines``); ``False`` gives source-only documents.
        doc_id_prefix: Prefix of the document ids (``"<prefix>-0000"``, ...).
        **line_options: How the programme's lines are drawn: the keyword settings of `subtitle_lines`
            (``continue_prob``, ``synonym_prob``, ``min_words``, ...), with its defaults.

    Returns:
        The documents, as ``trl-seqpo subtitles documents`` would cut them.
    """
    pairs = subtitle_lines(num_documents * lines_per_document, seed, **line_options)
    items: list = pairs if with_references else [source for source, _ in pairs]
    return make_documents(items, lines_per_document, context, doc_id_prefix=doc_id_prefix)


def write_documents(documents: list[Document], path: str | os.PathLike[str]) -> Path:
    """Write documents as JSON lines in the format of ``trl-seqpo subtitles documents`` (input of ``alpo sample``).

    Args:
        documents: The documents.
        path: Output ``.jsonl`` file (parent folders are created).

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(json.dumps(document.to_dict(), ensure_ascii=False) + "\n")
    return path


def prompt_texts(lines_per_document: int = 6) -> list[str]:
    """Texts of the document prompt, to pass as ``extra_texts`` to `trl_seqpo.synthetic.tiny_models.save_tiny_model`.

    The tiny word-level tokenizer then encodes the instruction of
    `render_document_prompt` one token per word, which keeps prompts short.

    Args:
        lines_per_document: Line count written into the instruction.

    Returns:
        The rendered prompt of an example document (without and with context) split into lines.
    """
    example = Document("example", ["the dog"] * lines_per_document, context_before=["a cat"], context_after=["a cat"])
    text = render_document_prompt(example, SOURCE_LANGUAGE, TARGET_LANGUAGE)
    return [line for line in text.splitlines() if line.strip()]


def save_line_writer_model(
    output_dir: str | os.PathLike[str],
    *,
    words_per_line: float = 4.0,
    temperature: float = 0.7,
    lines_per_document: int = 6,
    seed: int = 0,
) -> Path:
    """Save a tiny untrained model that writes short lines of target words, for tests and benchmarks of sampling.

    A randomly initialised tiny model almost never emits a newline, so ALPO's line sampler (which stops at the
    newline) would get no usable candidate from it. This model is the tiny Qwen2 of
    `build_tiny_model` with its output layer set so that the next-token distribution is
    (nearly) fixed: every target word and synonym of the synthetic language with equal weight, and the newline
    with a weight giving about ``words_per_line`` words per line; every other token is practically impossible.
    Candidates are then random word sequences, many of them distinct, some with the judge's preferred synonyms.
    Nothing is trained; segment units (whose later lines must start with the right number) mostly fail to parse.

    How: embedding coordinate 0 is set to a large constant for every token, so after the final RMSNorm the hidden
    state is close to ``sqrt(hidden_size)`` on coordinate 0 and close to 0 elsewhere; the (untied) output layer reads
    only coordinate 0.

    Args:
        output_dir: Where to save the model and tokenizer (``from_pretrained`` loads them offline).
        words_per_line: Mean words per line when sampling at ``temperature`` (without top-k/top-p truncation).
        temperature: The sampling temperature the model is tuned for.
        lines_per_document: Line count of the prompts whose words the tokenizer should know (see
            `prompt_texts`).
        seed: Seed of the random initialisation.

    Returns:
        The output directory.
    """
    import math

    import torch

    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    if words_per_line <= 0 or temperature <= 0:
        raise ValueError(f"words_per_line and temperature must be > 0, got {words_per_line}, {temperature}")
    tokenizer = build_tokenizer(
        synthetic.vocabulary(), extra_texts=[*synthetic.language_names(), *prompt_texts(lines_per_document)]
    )
    model = build_tiny_model(tokenizer, tie_word_embeddings=False, seed=seed)
    targets = sorted({*synthetic.DICTIONARY.values(), *synthetic.TARGET_SYNONYMS.values()})
    word_ids = sorted({tokenizer.convert_tokens_to_ids("Ġ" + word) for word in targets})
    newline_id = tokenizer.convert_tokens_to_ids("Ċ")
    scale = math.sqrt(model.config.hidden_size)  # coordinate 0 after the final RMSNorm (weight 1)
    logits = torch.full((len(tokenizer),), -30.0)
    logits[word_ids] = 0.0
    # P(newline) = p with mean words per line (1 - p) / p = words_per_line, after dividing logits by temperature
    logits[newline_id] = temperature * math.log(len(word_ids) / words_per_line)
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 30.0
        head = model.get_output_embeddings().weight
        head.zero_()
        head[:, 0] = logits / scale
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
