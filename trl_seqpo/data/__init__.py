"""Dataset builders: the synthetic demo language pair, a tiny tokenizer/model, and SiMT SFT warm-up data.

- :mod:`trl_seqpo.data.synthetic`: seeded English-like -> invented-language pairs with gold word alignments.
- :mod:`trl_seqpo.data.tiny`: a tiny ChatML tokenizer and a tiny Qwen2 causal LM, built and saved locally.
- :mod:`trl_seqpo.data.simt_sft`: partial-translation SFT data (SeqPO-SiMT App. A.2) from gold alignments or an
  LLM aligner, in the ``chat`` or ``paper`` prompt format.

Nothing here imports torch or TRL at import time.
"""

from trl_seqpo.data.synthetic import SyntheticExample, SyntheticPair, generate_corpus, to_dataset
from trl_seqpo.data.tiny import build_tiny_model, build_tokenizer, save_tiny_model

__all__ = [
    "SyntheticExample",
    "SyntheticPair",
    "build_tiny_model",
    "build_tokenizer",
    "generate_corpus",
    "save_tiny_model",
    "to_dataset",
]
