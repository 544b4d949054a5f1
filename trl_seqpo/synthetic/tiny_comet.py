"""Build tiny, randomly initialised COMET checkpoints on disk, for tests, docs and offline smoke runs.

Real COMET models (``Unbabel/wmt22-comet-da``, ``Unbabel/XCOMET-XL``) are gigabytes and live on the Hugging Face
Hub, which tests cannot reach. This module writes a checkpoint with exactly the same layout and classes, only tiny
and random, so the scoring code path (`trl_seqpo.rewards.get_reward` ``("comet", model=path)``) can run for
real in a few seconds on a CPU:

```
<directory>/
  encoder/                 a tiny BERT or XLM-R encoder + tokenizer (save_pretrained)
  hparams.yaml             class_identifier, pretrained_model -> encoder/, ...
  checkpoints/model.ckpt   a PyTorch Lightning checkpoint (state_dict + hyper_parameters)
```

The scores it produces are meaningless (random weights); they are finite, deterministic and depend on the text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

# Enough vocabulary for short English / German test sentences; any other character falls back to single
# characters (BERT: "##x" pieces; XLM-R: unigram characters) or to the unknown token.
_WORDS = (
    "the a an cat dog sat on mat is was big small red house der die das ist ein eine katze hund haus "
    "i you we they he she it and or not to of in at with hello world good morning thank translation"
).split()
_CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;äöüß")

EncoderKind = Literal["xlm-roberta", "bert"]
ModelKind = Literal["regression_metric", "unified_metric"]


def _build_encoder(directory: Path, encoder: EncoderKind, hidden_size: int, num_layers: int, seed: int) -> None:
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        XLMRobertaConfig,
        XLMRobertaModel,
        XLMRobertaTokenizer,
    )

    torch.manual_seed(seed)
    if encoder == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        pieces = specials + _WORDS + _CHARACTERS + ["##" + c for c in _CHARACTERS]
        tokenizer = BertTokenizer(vocab={piece: i for i, piece in enumerate(dict.fromkeys(pieces))})
        config = BertConfig(**_sizes(tokenizer, hidden_size, num_layers))
        model = BertModel(config, add_pooling_layer=False)
    elif encoder == "xlm-roberta":
        # Unigram scores: whole words are cheaper than spelling them out, so they win the segmentation.
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("<mask>", 0.0), ("▁", -3.0)]
        vocab += [("▁" + word, -2.0) for word in _WORDS]
        vocab += [(c, -4.0) for c in _CHARACTERS] + [("▁" + c, -4.5) for c in _CHARACTERS]
        tokenizer = XLMRobertaTokenizer(vocab=vocab)
        config = XLMRobertaConfig(
            **_sizes(tokenizer, hidden_size, num_layers),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = XLMRobertaModel(config, add_pooling_layer=False)
    else:
        raise ValueError(f"encoder must be 'xlm-roberta' or 'bert', got {encoder!r}")
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)


def build_tiny_comet_checkpoint(
    directory: str | os.PathLike,
    *,
    encoder: EncoderKind = "xlm-roberta",
    model: ModelKind = "regression_metric",
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random COMET checkpoint in COMET's own layout and return the ``model.ckpt`` path.

    The model is built with unbabel-comet's real classes (``RegressionMetric`` as in ``wmt22-comet-da``, or
    ``UnifiedMetric`` as in XCOMET, which joins source/translation/reference into one sequence), so loading and
    scoring it exercises the same code as a downloaded checkpoint.

    Args:
        directory: Where to write (created if missing).
        encoder: ``"xlm-roberta"`` (COMET's default encoder family) or ``"bert"``.
        model: COMET ``class_identifier``: ``"regression_metric"`` or ``"unified_metric"``.
        hidden_size: Encoder hidden size (tiny by default).
        num_layers: Encoder layers.
        seed: Seed for the random weights, so two builds with the same arguments score identically.

    Returns:
        Path to ``<directory>/checkpoints/model.ckpt``; pass it (or ``directory``) as ``model=`` to the comet reward.

    Examples:
        >>> from trl_seqpo.rewards import get_reward
        >>> from trl_seqpo.synthetic.tiny_comet import build_tiny_comet_checkpoint
        >>> ckpt = build_tiny_comet_checkpoint("/tmp/tiny-comet")  # doctest: +SKIP
        >>> comet = get_reward("comet", model=ckpt)  # doctest: +SKIP
        >>> comet(prompts=[""], completions=["the cat"], source=["die katze"], reference=["a cat"])  # doctest: +SKIP
        [0.0123...]
    """
    import pytorch_lightning
    import torch
    import yaml

    from trl_seqpo.rewards.comet import import_comet

    import_comet()  # clear MissingDependencyError when the comet extra is absent
    from comet.models import str2model

    directory = Path(directory)
    encoder_dir = directory / "encoder"
    encoder_dir.mkdir(parents=True, exist_ok=True)
    _build_encoder(encoder_dir, encoder, hidden_size, num_layers, seed)

    hparams: dict = {
        "encoder_model": {"xlm-roberta": "XLM-RoBERTa", "bert": "BERT"}[encoder],
        "pretrained_model": str(encoder_dir.resolve()),
        "layer_transformation": "softmax",
        "hidden_sizes": [hidden_size],
        "dropout": 0.1,
        "nr_frozen_epochs": 0.3,
        "local_files_only": True,
    }
    if model == "regression_metric":
        hparams.update(layer="mix", pool="avg")
    elif model == "unified_metric":
        hparams.update(sent_layer="mix", word_layer=num_layers, input_segments=["mt", "src", "ref"])
    else:
        raise ValueError(f"model must be 'regression_metric' or 'unified_metric', got {model!r}")

    torch.manual_seed(seed)
    comet_model = str2model[model](load_pretrained_weights=True, **hparams)
    saved_hparams = dict(comet_model.hparams)
    (directory / "hparams.yaml").write_text(yaml.safe_dump(saved_hparams))
    ckpt = directory / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": comet_model.state_dict(),
            "hyper_parameters": saved_hparams,
            "pytorch-lightning_version": pytorch_lightning.__version__,
            "epoch": 0,
            "global_step": 0,
        },
        ckpt,
    )
    return ckpt


def _sizes(tokenizer: Any, hidden_size: int, num_layers: int) -> dict[str, int]:
    """The encoder shape shared by the BERT and XLM-R stand-ins (2 heads, 130 positions)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden_size,
        "max_position_embeddings": 130,
        "pad_token_id": tokenizer.pad_token_id,
    }
