"""Make unbabel-comet 2.2.7 work beside transformers 5 (imported only when a COMET reward loads a model).

unbabel-comet 2.2.7 was written for transformers 4 and breaks with transformers 5 in two places:

1. **Encoder forward.** ``BERTEncoder.forward`` and ``XLMREncoder.forward`` (inherited by the MiniLM, RemBERT and
   XLM-R XL encoders) call the Hugging Face model with ``return_dict=False`` and unpack three values
   ``(last_hidden_state, pooler_output, hidden_states)``. Transformers 5 builds the tuple from the model output and
   drops ``None`` fields, and COMET's encoders are built with ``add_pooling_layer=False``, so only two values come
   back and the unpacking raises ``ValueError: not enough values to unpack``.
2. **Joint encoding.** ``Encoder.concat_sequences`` (used by ``unified_metric``/XCOMET models, which encode
   source, hypothesis and reference as one sequence) calls ``tokenizer.build_inputs_with_special_tokens``, which
   transformers 5 tokenizers no longer have (``AttributeError``).

A third problem is not fixed here: comet's ``torchmetrics<0.11`` imports ``pkg_resources`` at import time, which
setuptools >= 81 no longer ships; the ``comet`` extra pins ``setuptools<81`` and
`trl_seqpo.rewards.comet.import_comet` turns the failure into a clear install hint. (comet's own
``load_from_checkpoint`` also reads its version through ``pkg_resources``; our loader does not call it.)

What `apply_comet_compat` changes, exactly: in comet's encoder registry ``comet.encoders.str2encoder`` (the dict
``CometModel.__init__`` looks up by the checkpoint's ``encoder_model``), each of the five stock encoder classes is
replaced by a subclass defined here (``Transformers5BERTEncoder`` for ``"BERT"``, and so on) that

- overrides ``forward`` to call the model with ``return_dict=True`` and read the fields by name (same outputs as
  the original for transformers 4 and 5: ``sentemb`` is the pooler output for BERT, the first token's hidden state
  for the XLM-R family);
- overrides ``from_pretrained`` to build the subclass (the originals hard-code their own class);
- wraps the tokenizer in `PairJoiningTokenizer` when it lacks ``build_inputs_with_special_tokens``, adding
  that one method with the transformers 4 layout (``CLS a SEP b SEP`` for BERT/RemBERT, ``<s> a </s></s> b </s>``
  for the XLM-R family).

Nothing else is touched: no comet, transformers or TRL function or method is reassigned, the original classes are
unchanged, and calling `apply_comet_compat` again does nothing. Encoders registered by others (unknown
names) are left alone.
"""

from __future__ import annotations

from typing import Any

import torch
from comet.encoders import str2encoder
from comet.encoders.bert import BERTEncoder
from comet.encoders.minilm import MiniLMEncoder
from comet.encoders.rembert import RemBERTEncoder
from comet.encoders.xlmr import XLMREncoder
from comet.encoders.xlmr_xl import XLMRXLEncoder


class PairJoiningTokenizer:
    """A transformers tokenizer plus the ``build_inputs_with_special_tokens`` method transformers 5 removed.

    Every other attribute and call is forwarded to the wrapped tokenizer.

    Args:
        tokenizer: The tokenizer COMET's encoder loaded.
        separator_size: Separator tokens between the two segments (1 for BERT/RemBERT, 2 for the XLM-R family;
            COMET's ``Encoder.size_separator``).
    """

    def __init__(self, tokenizer: Any, separator_size: int) -> None:
        self.__dict__["_wrapped"] = tokenizer
        self.__dict__["_separator_size"] = separator_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_wrapped"], name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._wrapped)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """Add special tokens around one segment (``CLS a SEP``) or two (``CLS a SEP [SEP] b SEP``)."""
        cls_id, sep_id = self._wrapped.cls_token_id, self._wrapped.sep_token_id
        if token_ids_1 is None:
            return [cls_id, *token_ids_0, sep_id]
        return [cls_id, *token_ids_0, *([sep_id] * self._separator_size), *token_ids_1, sep_id]


class _Transformers5Encoder:
    """Mixin for COMET encoder classes; see the module docstring for what it overrides and why."""

    # True for the XLM-R family (sentence embedding = first token), False for BERT (pooler output).
    sentence_embedding_from_first_token: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.tokenizer, "build_inputs_with_special_tokens"):
            self.tokenizer = PairJoiningTokenizer(self.tokenizer, self.size_separator)

    @classmethod
    def from_pretrained(
        cls, pretrained_model: str, load_pretrained_weights: bool = True, local_files_only: bool = False
    ) -> Any:
        return cls(pretrained_model, load_pretrained_weights, local_files_only)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Encode a batch ``[batch, seq]``; returns ``sentemb [batch, hidden]``, ``wordemb [batch, seq, hidden]``,
        ``all_layers`` (num_layers tensors ``[batch, seq, hidden]``) and ``attention_mask``, as COMET expects."""
        model_kwargs: dict[str, Any] = {}
        if not self.sentence_embedding_from_first_token:
            model_kwargs["token_type_ids"] = token_type_ids  # the BERT encoder passes them, the XLM-R family does not
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
            **model_kwargs,
        )
        if self.sentence_embedding_from_first_token:
            sentence_embedding = output.last_hidden_state[:, 0, :]
        else:
            sentence_embedding = getattr(output, "pooler_output", None)
        return {
            "sentemb": sentence_embedding,
            "wordemb": output.last_hidden_state,
            "all_layers": output.hidden_states,
            "attention_mask": attention_mask,
        }


class Transformers5BERTEncoder(_Transformers5Encoder, BERTEncoder):
    """COMET's ``BERTEncoder`` fixed for transformers 5."""

    sentence_embedding_from_first_token = False


class Transformers5XLMREncoder(_Transformers5Encoder, XLMREncoder):
    """COMET's ``XLMREncoder`` fixed for transformers 5."""


class Transformers5MiniLMEncoder(_Transformers5Encoder, MiniLMEncoder):
    """COMET's ``MiniLMEncoder`` fixed for transformers 5."""


class Transformers5RemBERTEncoder(_Transformers5Encoder, RemBERTEncoder):
    """COMET's ``RemBERTEncoder`` fixed for transformers 5."""


class Transformers5XLMRXLEncoder(_Transformers5Encoder, XLMRXLEncoder):
    """COMET's ``XLMRXLEncoder`` fixed for transformers 5."""


COMPAT_ENCODERS: dict[type, type] = {
    BERTEncoder: Transformers5BERTEncoder,
    XLMREncoder: Transformers5XLMREncoder,
    MiniLMEncoder: Transformers5MiniLMEncoder,
    RemBERTEncoder: Transformers5RemBERTEncoder,
    XLMRXLEncoder: Transformers5XLMRXLEncoder,
}
"""Stock COMET encoder class -> its transformers-5 subclass."""


def apply_comet_compat() -> dict[str, type]:
    """Point ``comet.encoders.str2encoder`` at the transformers-5 encoder subclasses (idempotent).

    Returns:
        The names that were switched by this call (empty when already applied).
    """
    switched: dict[str, type] = {}
    for name, encoder_class in list(str2encoder.items()):
        compat_class = COMPAT_ENCODERS.get(encoder_class)
        if compat_class is not None:
            str2encoder[name] = compat_class
            switched[name] = compat_class
    return switched


def comet_compat_applied() -> bool:
    """Whether every stock encoder name in ``comet.encoders.str2encoder`` points at its transformers-5 subclass."""
    return not any(encoder_class in COMPAT_ENCODERS for encoder_class in str2encoder.values())
