"""Script arguments that more than one recipe reads: the synthetic language pair's corpus.

``dataset_name: synthetic`` makes the SFT warm-up (``sft_simt.py``) and SeqPO (``seqpo.py``) generate their sentence
pairs with `trl_seqpo.synthetic.language_pair.generate_corpus`; both read the sizes and the seed from
`SyntheticCorpusArguments`, which their script arguments extend (a recipe overrides a field to change its default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl_seqpo.synthetic.language_pair import SyntheticExample, generate_corpus

__all__ = ["EVAL_SEED_OFFSET", "SyntheticCorpusArguments"]

#: added to ``synthetic_seed`` for the evaluation rows, so that they are drawn apart from the training rows
EVAL_SEED_OFFSET = 10_000


@dataclass
class SyntheticCorpusArguments:
    """Sizes and seed of the synthetic corpus (used when a dataset name is ``synthetic``)."""

    num_train_examples: int = field(default=4000, metadata={"help": "Synthetic sentence pairs to train on."})
    num_eval_examples: int = field(default=64, metadata={"help": "Synthetic sentence pairs to evaluate on."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic corpus."})

    def seed_for(self, evaluation: bool) -> int:
        """The seed of the training rows, or of the evaluation rows (`EVAL_SEED_OFFSET` later)."""
        return self.synthetic_seed + (EVAL_SEED_OFFSET if evaluation else 0)

    def synthetic_corpus(self, evaluation: bool = False) -> list[SyntheticExample]:
        """The synthetic sentence pairs to train on, or to evaluate on."""
        count = self.num_eval_examples if evaluation else self.num_train_examples
        return generate_corpus(count, seed=self.seed_for(evaluation))
