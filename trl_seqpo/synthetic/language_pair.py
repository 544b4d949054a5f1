"""A deterministic synthetic language pair for the demo and the tests.

The source is a small English-like language; the target is an invented language with a one-to-one word dictionary
(50 source words) and two reordering rules that make simultaneous translation non-trivial:

- **adjectives follow their noun** (``the big dog`` -> ``lo hundo grava``): the determiner can be translated at
  once, the adjective must wait for its noun;
- **the verb moves to the end of its clause** (SOV: ``the dog sees the cat`` -> ``lo hundo lo mizo vidas``): the
  verb must wait until the clause is complete.

So some words can be translated as soon as they are read and others require waiting, which is what a SiMT policy
has to learn (SeqPO-SiMT, Sec. 2). Every example carries its gold word alignment, from which
`trl_seqpo.seqpo.sft_data` builds exact partial-translation data (the synthetic counterpart of the paper's
App. A.2 aligner).

For the ALPO demo a few concepts have two valid target words (`TARGET_SYNONYMS`); with
``synonym_prob > 0`` references use the alternative word at that rate, and a judge can prefer one of the two
(a hidden preference that only a preference-trained model picks up).

Sentences are lowercase words separated by single spaces, without punctuation, so a word-level tokenizer
(`trl_seqpo.synthetic.tiny_models.build_tokenizer`) round-trips them exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

SOURCE_LANGUAGE = "English"
TARGET_LANGUAGE = "Synthetic"

DETERMINERS = {"the": "lo", "a": "un", "this": "ko", "every": "ci"}
ADJECTIVES = {
    "big": "grava",
    "small": "pika",
    "red": "roza",
    "old": "veka",
    "young": "jana",
    "happy": "goja",
    "quick": "rapa",
    "green": "verda",
    "dark": "nokta",
    "tall": "alta",
}
NOUNS = {
    "dog": "hundo",
    "cat": "mizo",
    "man": "viro",
    "woman": "dina",
    "child": "kido",
    "bird": "fogo",
    "house": "domo",
    "tree": "arbo",
    "river": "rivo",
    "car": "moto",
    "book": "libo",
    "teacher": "mestro",
    "farmer": "bauro",
    "city": "urbo",
    "garden": "gardo",
}
VERBS = {
    "sees": "vidas",
    "finds": "trovas",
    "likes": "amas",
    "takes": "prenas",
    "follows": "sekvas",
    "paints": "pentras",
    "buys": "kopas",
    "watches": "spektas",
    "carries": "portas",
    "helps": "helpas",
}
PREPOSITIONS = {"near": "apud", "behind": "malantau", "under": "sub", "in": "en", "with": "kun"}
ADVERBS = {"today": "hodiau", "again": "denove", "slowly": "lante", "quietly": "kviete", "often": "ofte"}
CONJUNCTIONS = {"and": "kaj"}

#: source word -> target word (the primary translation).
DICTIONARY: dict[str, str] = {
    **DETERMINERS,
    **ADJECTIVES,
    **NOUNS,
    **VERBS,
    **PREPOSITIONS,
    **ADVERBS,
    **CONJUNCTIONS,
}
#: primary target word -> an equally valid alternative (the hidden-preference variant for ALPO).
TARGET_SYNONYMS: dict[str, str] = {
    "grava": "mega",
    "veka": "antika",
    "goja": "felika",
    "domo": "kaso",
    "vidas": "miras",
    "amas": "sxatas",
}
_POS: dict[str, str] = {
    **dict.fromkeys(DETERMINERS, "det"),
    **dict.fromkeys(ADJECTIVES, "adj"),
    **dict.fromkeys(NOUNS, "noun"),
    **dict.fromkeys(VERBS, "verb"),
    **dict.fromkeys(PREPOSITIONS, "prep"),
    **dict.fromkeys(ADVERBS, "adv"),
    **dict.fromkeys(CONJUNCTIONS, "conj"),
}
_MIN_CLAUSE_WORDS = 3  # det noun verb


@dataclass
class SyntheticExample:
    """One sentence pair of the synthetic language.

    Attributes:
        source: Source sentence (space-separated words).
        reference: Gold target sentence.
        alignment: Gold word alignment as ``(source_index, target_index)`` pairs, one per word (the dictionary is
            one-to-one), sorted by target index.
    """

    source: str
    reference: str
    alignment: list[tuple[int, int]]


def vocabulary(include_synonyms: bool = True) -> list[str]:
    """All words of both languages: source words, target words and (optionally) target synonyms."""
    words = [*DICTIONARY, *DICTIONARY.values()]
    if include_synonyms:
        words += list(TARGET_SYNONYMS.values())
    return words


def language_names() -> list[str]:
    """The names used for the two languages in prompts."""
    return [SOURCE_LANGUAGE, TARGET_LANGUAGE]


def translate(
    source: str | list[str], synonym_prob: float = 0.0, rng: random.Random | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """Translate a source sentence of the synthetic language with its reordering rules.

    Args:
        source: A sentence (or its list of words) made of words of `DICTIONARY`.
        synonym_prob: Probability of writing the alternative of a word that has one (`TARGET_SYNONYMS`).
        rng: Random generator for the synonym choices (needed only when ``synonym_prob > 0``).

    Returns:
        ``(reference, alignment)`` where ``alignment`` holds ``(source_index, target_index)`` pairs.

    Raises:
        ValueError: If a word is not in the dictionary.
    """
    words = source.split() if isinstance(source, str) else list(source)
    unknown = [w for w in words if w not in DICTIONARY]
    if unknown:
        raise ValueError(f"words not in the synthetic dictionary: {unknown}")
    if synonym_prob > 0 and rng is None:
        rng = random.Random(0)
    order: list[int] = []  # source indices in target order
    clause: list[int] = []
    pending: list[int] = []  # determiner/adjectives waiting for their noun
    verbs: list[int] = []

    def close_clause() -> None:
        order.extend(clause + pending + verbs)
        clause.clear(), pending.clear(), verbs.clear()

    for i, word in enumerate(words):
        pos = _POS[word]
        if pos == "conj":
            close_clause()
            order.append(i)
        elif pos == "verb":
            clause.extend(pending)
            pending.clear()
            verbs.append(i)
        elif pos in ("det", "adj"):
            pending.append(i)
        elif pos == "noun":
            dets = [j for j in pending if _POS[words[j]] == "det"]
            adjs = [j for j in pending if _POS[words[j]] != "det"]
            clause.extend([*dets, i, *adjs])
            pending.clear()
        else:  # prepositions and adverbs keep their place
            clause.extend(pending)
            pending.clear()
            clause.append(i)
    close_clause()

    target = []
    for i in order:
        word = DICTIONARY[words[i]]
        if word in TARGET_SYNONYMS and synonym_prob > 0 and rng.random() < synonym_prob:
            word = TARGET_SYNONYMS[word]
        target.append(word)
    return " ".join(target), [(i, t) for t, i in enumerate(order)]


@dataclass
class SyntheticPair:
    """Seeded generator of sentence pairs.

    Args:
        seed: Seed; the same seed gives the same corpus.
        min_words: Shortest source sentence in words (at least 3: determiner, noun, verb).
        max_words: Longest source sentence in words.
        synonym_prob: Rate at which references use the alternative target word of `TARGET_SYNONYMS`.
    """

    seed: int = 0
    min_words: int = 4
    max_words: int = 14
    synonym_prob: float = 0.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.min_words < _MIN_CLAUSE_WORDS:
            raise ValueError(
                f"min_words must be >= {_MIN_CLAUSE_WORDS} (determiner, noun, verb), got {self.min_words}"
            )
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) must be >= min_words ({self.min_words})")
        if not 0.0 <= self.synonym_prob <= 1.0:
            raise ValueError(f"synonym_prob must be in [0, 1], got {self.synonym_prob}")
        self._rng = random.Random(self.seed)

    def _noun_phrase(self) -> list[str]:
        rng = self._rng
        n_adj = rng.choices([0, 1, 2], weights=[5, 4, 1])[0]
        return [rng.choice(list(DETERMINERS)), *rng.sample(list(ADJECTIVES), n_adj), rng.choice(list(NOUNS))]

    def _clause(self) -> list[str]:
        rng = self._rng
        words = self._noun_phrase() + [rng.choice(list(VERBS))]
        if rng.random() < 0.85:
            words += self._noun_phrase()
        if rng.random() < 0.35:
            words += [rng.choice(list(PREPOSITIONS)), *self._noun_phrase()]
        if rng.random() < 0.3:
            words.append(rng.choice(list(ADVERBS)))
        return words

    def sample_source(self) -> list[str]:
        """Draw one source sentence (a list of words) whose length is in ``[min_words, max_words]``."""
        for _ in range(10_000):
            words = self._clause()
            while len(words) < self.min_words and self._rng.random() < 0.9:
                words += ["and", *self._clause()]
            if self.min_words <= len(words) <= self.max_words:
                return words
        raise ValueError(f"could not draw a sentence of {self.min_words}-{self.max_words} words; widen the range")

    def sample(self) -> SyntheticExample:
        """Draw one sentence pair."""
        words = self.sample_source()
        reference, alignment = translate(words, self.synonym_prob, self._rng)
        return SyntheticExample(" ".join(words), reference, alignment)

    def generate(self, n: int) -> list[SyntheticExample]:
        """Draw ``n`` sentence pairs (continuing this generator's random stream)."""
        return [self.sample() for _ in range(n)]


def generate_corpus(
    n: int, seed: int = 0, min_words: int = 4, max_words: int = 14, synonym_prob: float = 0.0
) -> list[SyntheticExample]:
    """Generate ``n`` deterministic sentence pairs of the synthetic language.

    Args:
        n: Number of pairs.
        seed: Random seed; the same arguments always give the same corpus.
        min_words: Shortest source sentence in words (>= 3).
        max_words: Longest source sentence in words.
        synonym_prob: Rate at which references use the alternative target word (`TARGET_SYNONYMS`).

    Returns:
        A list of `SyntheticExample`.
    """
    return SyntheticPair(seed, min_words, max_words, synonym_prob).generate(n)


def to_dataset(examples: list[SyntheticExample]) -> Dataset:
    """Turn examples into a `datasets.Dataset` with columns ``source``, ``reference``, ``alignment``.

    ``alignment`` is stored as a list of ``[source_index, target_index]`` pairs.
    """
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "source": [ex.source for ex in examples],
            "reference": [ex.reference for ex in examples],
            "alignment": [[list(pair) for pair in ex.alignment] for ex in examples],
        }
    )
