"""ALPOTrainer: TRL's DPOTrainer with ALPO's weighted, per-line-beta preference loss (ALPO paper Sec. 3.4, Eq. 2-9)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from torch.utils.data import Sampler
from trl import DPOTrainer

from trl_seqpo import model_card
from trl_seqpo.alpo.config import ALPOConfig
from trl_seqpo.alpo.losses import (
    ALPO_LOSSES,
    REFERENCE_FREE_LOSSES,
    LossSettings,
    PairLogps,
    reduce_weighted_loss,
)

# batch key -> what it carries; the collator adds them, the loss reads them, the model never sees them
WEIGHT_KEY = "alpo_weight"
BETA_SCALE_KEY = "alpo_beta_scale"
CHOSEN_ADVANTAGE_KEY = "alpo_chosen_advantage"
REJECTED_ADVANTAGE_KEY = "alpo_rejected_advantage"
ALPO_BATCH_KEYS: frozenset[str] = frozenset({WEIGHT_KEY, BETA_SCALE_KEY, CHOSEN_ADVANTAGE_KEY, REJECTED_ADVANTAGE_KEY})
_NON_MODEL_KEYS: frozenset[str] = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})
ADVANTAGE_COLUMNS: tuple[str, str] = ("chosen_advantage", "rejected_advantage")


@dataclass
class DataCollatorForWeightedPreference:
    """Wrap a preference collator so per-row float columns (weight, beta scale, advantages) survive collation.

    TRL's ``DataCollatorForPreference`` keeps only token ids and reference log-probs; this wrapper calls it and adds
    one ``[batch]`` float tensor per entry of ``columns`` (batch key -> dataset column). A column missing from the
    examples (an eval set built without it) is filled with 1.0 for the weight and beta scale and left out otherwise.

    Args:
        base: The collator to wrap.
        columns: Batch key -> dataset column.
    """

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    columns: Mapping[str, str]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        for key, column in self.columns.items():
            if column in examples[0]:
                batch[key] = torch.tensor([float(example[column]) for example in examples], dtype=torch.float32)
            elif key in (WEIGHT_KEY, BETA_SCALE_KEY):
                batch[key] = torch.ones(len(examples), dtype=torch.float32)
        return batch


class StageOrderedSampler(Sampler[int]):
    """Visit rows stage by stage (shuffled inside a stage), so the prefix-mixing ``lambda`` rises during training.

    Args:
        stages: The ``stage`` of each row.
        seed: Seed of the shuffle inside a stage; the epoch (``set_epoch``) is added to it.
    """

    def __init__(self, stages: Sequence[int], seed: int = 0) -> None:
        self.stages = [int(stage) for stage in stages]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle inside each stage for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.stages)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        by_stage: dict[int, list[int]] = {}
        for index, stage in enumerate(self.stages):
            by_stage.setdefault(stage, []).append(index)
        for stage in sorted(by_stage):
            rows = by_stage[stage]
            yield from (rows[i] for i in torch.randperm(len(rows), generator=generator).tolist())


def _check_rows(dataset: Dataset, args: ALPOConfig) -> None:
    """Refuse rows that would train on nothing or on NaN, naming the row (0-based)."""
    names = set(dataset.column_names)
    for column in ("prompt", "chosen", "rejected"):
        if column in names:
            for row, value in enumerate(dataset[column]):
                if isinstance(value, str) and not value.strip():
                    raise ValueError(f"train_dataset row {row}: {column!r} is empty")
                if value is None:
                    raise ValueError(f"train_dataset row {row}: {column!r} is missing (None)")
    for column, low in ((args.weight_column, 0.0), (args.beta_scale_column, 0.0)):
        if column is None or column not in names:
            continue
        for row, value in enumerate(dataset[column]):
            if value is None or not math.isfinite(float(value)) or float(value) < low:
                raise ValueError(f"train_dataset row {row}: {column!r} must be a finite number >= {low}, got {value}")


def _check_lengths(dataset: Dataset, max_length: int, name: str) -> None:
    lengths = [
        len(prompt) + max(len(chosen), len(rejected))
        for prompt, chosen, rejected in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])
    ]
    longest = max(range(len(lengths)), key=lengths.__getitem__, default=None)
    if longest is not None and lengths[longest] > max_length:
        too_long = sum(length > max_length for length in lengths)
        raise ValueError(
            f"{name} dataset: {too_long} rows are longer than max_length={max_length} tokens (the longest, row "
            f"{longest}, has {lengths[longest]}); DPOTrainer would drop or cut them. Set max_length=None or >= "
            f"{lengths[longest]}, or build documents with fewer lines"
        )


def _column_names(dataset: Dataset | IterableDataset) -> list[str]:
    if dataset.column_names is not None:
        return list(dataset.column_names)
    return list(next(iter(dataset)).keys())


class ALPOTrainer(DPOTrainer):
    """Trainer for Adaptive Local Preference Optimization (ALPO), the line-level preference loss of "From Utterance
    to Vividity" (Cui et al.), on top of TRL's `DPOTrainer`.

    Each row is one subtitle line (or segment) of a document: the prompt holds the source document and the
    translations of the earlier lines (prefix-mixed, Eq. 6), chosen/rejected are two judged candidates for the line.
    The loss (Eq. 4 and 7) is

        ``sum_i w_i * L_po(i; beta_i) / normaliser``, ``beta_i = beta * beta_scale_i`` (Eq. 5)

    with ``L_po`` from `ALPO_LOSSES` (``sigmoid`` = DPO, ``simpo``, ``grpo``)
    and the normaliser set by ``normalize_weights`` (see `reduce_weighted_loss`).
    With one line per document, weight 1 and ``beta_scale`` 1, the ``sigmoid`` loss equals TRL's DPO loss.

    Hooks overridden (everything else - reference model or precomputed reference log-probs, PEFT, DeepSpeed ZeRO-3,
    gradient accumulation, logging - is DPOTrainer's):

    - ``_compute_loss``: the policy forward as DPOTrainer does it (fused LM head, summed log-probs), the reference
      log-probs from the batch or from `compute_ref_log_probs`, then the ALPO loss and its metrics.
    - ``_prepare_dataset``: calls DPOTrainer's, then removes the EOS that TRL appends to every completion from the
      rows that do not end a document (``eos_at_document_end``).
    - ``_set_signature_columns_if_needed``: keeps the weight, beta-scale and advantage columns when
      ``remove_unused_columns=True``; a `DataCollatorForWeightedPreference` carries them into the batch.
    - ``_get_train_sampler``: with ``prefix_mix_order="stages"``, trains the prefix-mixing stages in order.
    - ``compute_ref_log_probs``: drops the ALPO batch keys before calling DPOTrainer's.
    - ``_precompute_ref_logps``: computes nothing for a reference-free loss (``simpo``), so that no reference model is
      loaded for it.

    Args:
        model: Model id/path or a model instance, as for DPOTrainer.
        ref_model: Reference model; ``None`` lets DPOTrainer create one (or use PEFT / precomputed log-probs).
        args: An `ALPOConfig`.
        data_collator: Base preference collator; ``None`` uses DPOTrainer's. It is wrapped either way.
        train_dataset: Pairs from `trl_seqpo.alpo.pairs.build_preference_pairs` (or their JSONL).
        pair_stats: Build counts of the pairs (``PairStats.to_dict()`` from `build_preference_pairs`, or the
            ``.stats.json`` next to the pairs). Used to log ``alpo/gated_fraction``.
        **kwargs: Other DPOTrainer arguments (``eval_dataset``, ``processing_class``, ``peft_config``, ...).
    """

    _tag_names = ["trl", "dpo", "alpo", "trl-seqpo"]
    _name = "ALPO"
    _paper = {
        "title": "From Utterance to Vividity: Training Expressive Subtitle Translation LLM via Adaptive Local "
        "Preference Optimization",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{cui2025alpo,
                title   = {{From Utterance to Vividity: Training Expressive Subtitle Translation LLM
                            via Adaptive Local Preference Optimization}},
                author  = {Chaoqun Cui and Shijing Wang and Liangbin Huang and Qingqing Gu and
                           Zhaolong Huang and Xiao Zeng and Wenji Mao},
                year    = 2025,
                url     = {https://github.com/CcQunResearch/ALPO},
            }"""),
    }

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: ALPOConfig | None = None,
        data_collator: Callable | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        *,
        pair_stats: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = ALPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-ALPO")
        if not isinstance(args, ALPOConfig):
            raise TypeError(f"args must be an ALPOConfig, got {type(args).__name__}; wrap your settings in ALPOConfig")
        if train_dataset is not None:
            self._check_columns(train_dataset, args)
            if isinstance(train_dataset, Dataset):
                _check_rows(train_dataset, args)
        self.pair_stats = dict(pair_stats) if pair_stats is not None else None
        self.loss_settings = LossSettings(args.simpo_gamma, args.grpo_epsilon, args.grpo_kl_coef)
        self.loss_function = ALPO_LOSSES[args.alpo_loss_type]
        # a reference-free loss (SimPO) needs no reference model: DPOTrainer builds none when it is told the reference
        # log-probs are precomputed, and `_precompute_ref_logps` below then computes nothing
        reference_free = args.alpo_loss_type in REFERENCE_FREE_LOSSES and ref_model is None
        precompute = args.precompute_ref_log_probs
        if reference_free:
            args.precompute_ref_log_probs = True
        try:
            super().__init__(model, ref_model=ref_model, args=args, data_collator=data_collator,
                             train_dataset=train_dataset, **kwargs)  # fmt: skip
        finally:
            args.precompute_ref_log_probs = precompute
        self.data_collator = DataCollatorForWeightedPreference(self.data_collator, self._extra_columns(args))
        self.mean_weight = self._dataset_mean_weight()

    def create_model_card(self, model_name=None, dataset_name=None, tags=None) -> None:
        """TRL's hook, run on save: a card with ``base_model`` and a quick start that translates a subtitle document.

        See `trl_seqpo.model_card`.
        """
        method = "It translates subtitle documents of numbered lines, one translated line per source line."
        quick_start = model_card.alpo_quick_start(model_card.model_id(self))
        model_card.write_model_card(self, quick_start, method, model_name, dataset_name, tags)

    # ----- dataset and collation -------------------------------------------------------------------------------------

    @staticmethod
    def _extra_columns(args: ALPOConfig) -> dict[str, str]:
        columns = {CHOSEN_ADVANTAGE_KEY: ADVANTAGE_COLUMNS[0], REJECTED_ADVANTAGE_KEY: ADVANTAGE_COLUMNS[1]}
        if args.weight_column is not None:
            columns[WEIGHT_KEY] = args.weight_column
        if args.beta_scale_column is not None:
            columns[BETA_SCALE_KEY] = args.beta_scale_column
        return columns

    @staticmethod
    def _check_columns(dataset: Dataset | IterableDataset, args: ALPOConfig) -> None:
        names = _column_names(dataset)
        wanted = {"weight_column": args.weight_column, "beta_scale_column": args.beta_scale_column}
        for field_name, column in wanted.items():
            if column is not None and column not in names:
                raise ValueError(
                    f"train_dataset has no column {column!r} ({field_name}); build the pairs with "
                    f"`trl-seqpo alpo pairs`, or set {field_name}=None to train without it"
                )
        if args.alpo_loss_type == "grpo" and not set(ADVANTAGE_COLUMNS) <= set(names):
            raise ValueError(
                f"alpo_loss_type='grpo' needs the columns {list(ADVANTAGE_COLUMNS)}; rebuild the pairs with "
                "`trl-seqpo alpo pairs` or choose alpo_loss_type='sigmoid'"
            )
        if args.normalize_weights == "document" and args.weight_column is not None and dataset.column_names is None:
            raise ValueError(
                "normalize_weights='document' needs the mean weight of the whole training set, which an "
                "IterableDataset cannot give; pass a datasets.Dataset or set normalize_weights='micro_batch'"
            )

    def _dataset_mean_weight(self) -> float:
        column = self.args.weight_column
        if column is None or self.args.normalize_weights != "document" or self.train_dataset is None:
            return 1.0
        weights = self.train_dataset[column]
        mean = float(sum(weights) / len(weights)) if len(weights) else 1.0
        if mean <= 0:
            raise ValueError(f"the {column!r} column must hold positive weights; its mean is {mean}")
        return mean

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # DPOTrainer drops rows whose prompt reaches max_length and the collator cuts longer ones: tokenize without a
        # limit, then refuse a dataset that does not fit instead of losing rows silently
        max_length, args.max_length = args.max_length, None
        try:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        finally:
            args.max_length = max_length
        if max_length is not None and isinstance(dataset, Dataset) and "prompt_ids" in dataset.column_names:
            _check_lengths(dataset, max_length, dataset_name)
        if not getattr(args, "eos_at_document_end", False) or "ends_document" not in _column_names(dataset):
            return dataset
        eos_token_id = self._tokenizer.eos_token_id

        def drop_inner_eos(example: dict[str, Any]) -> dict[str, Any]:
            if example["ends_document"]:
                return {}
            return {
                key: ids[:-1] if ids and ids[-1] == eos_token_id else ids
                for key, ids in ((k, example[k]) for k in ("chosen_ids", "rejected_ids"))
            }

        map_kwargs: dict[str, Any] = {}
        if isinstance(dataset, Dataset):
            map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Keeping EOS at document ends ({dataset_name})"}
        return dataset.map(drop_inner_eos, **map_kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in self._extra_columns(self.args).values():
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset
        if (
            self.args.prefix_mix_order == "stages"
            and isinstance(dataset, Dataset)
            and "stage" in dataset.column_names
            and (train_dataset is None or len(train_dataset) == len(dataset))
        ):
            return StageOrderedSampler(dataset["stage"], seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    # ----- loss ------------------------------------------------------------------------------------------------------

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.args.alpo_loss_type in REFERENCE_FREE_LOSSES:
            return dataset  # the loss reads no reference log-probs
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def compute_ref_log_probs(self, model, inputs):
        """DPOTrainer's reference pass, without the ALPO-only batch keys (they are not model inputs)."""
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in ALPO_BATCH_KEYS})

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS | ALPO_BATCH_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        # prompt-learning PEFT prepends virtual tokens: keep the positions of the real tokens, as DPOTrainer does
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        lengths = completion_mask[:, 1:].sum(dim=1).to(logps.dtype)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        chosen_lengths, rejected_lengths = lengths.chunk(2, dim=0)

        if self.args.alpo_loss_type in REFERENCE_FREE_LOSSES:
            ref_chosen, ref_rejected = torch.zeros_like(chosen_logps), torch.zeros_like(rejected_logps)
        elif self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
        ref_chosen, ref_rejected = ref_chosen.to(logps.dtype), ref_rejected.to(logps.dtype)

        ones = torch.ones_like(chosen_logps)
        weights = inputs.get(WEIGHT_KEY, ones).to(logps.dtype)
        betas = self.beta * inputs.get(BETA_SCALE_KEY, ones).to(logps.dtype)
        pair = PairLogps(
            chosen=chosen_logps,
            rejected=rejected_logps,
            ref_chosen=ref_chosen,
            ref_rejected=ref_rejected,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            chosen_advantages=inputs.get(CHOSEN_ADVANTAGE_KEY),
            rejected_advantages=inputs.get(REJECTED_ADVANTAGE_KEY),
        )
        per_pair = self.loss_function(pair, betas, self.loss_settings)
        loss = reduce_weighted_loss(per_pair, weights, self.args.normalize_weights, self.mean_weight)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        self._log_alpo_metrics(mode, pair, betas, weights, inputs["attention_mask"])
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    def _log_alpo_metrics(self, mode, pair: PairLogps, betas, weights, attention_mask) -> None:
        gather = self.accelerator.gather
        chosen_rewards = (betas * pair.chosen_logratios).detach()
        rejected_rewards = (betas * pair.rejected_logratios).detach()
        margins = gather(chosen_rewards - rejected_rewards)
        weights, betas = gather(weights.detach()), gather(betas.detach())
        correct = (margins > 0).to(weights.dtype)
        total_weight = weights.sum().clamp(min=torch.finfo(weights.dtype).tiny)
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/margins"].append(margins.mean().item())
        metrics["rewards/accuracies"].append(correct.mean().item())
        metrics["logps/chosen"].append(gather(pair.chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(pair.rejected.detach()).mean().item())
        metrics["alpo/mean_beta"].append(betas.mean().item())
        metrics["alpo/weighted_margin"].append(((weights * margins).sum() / total_weight).item())
        metrics["alpo/weighted_accuracy"].append(((weights * correct).sum() / total_weight).item())
        if self.pair_stats is not None and "gated_fraction" in self.pair_stats:
            metrics["alpo/gated_fraction"] = [float(self.pair_stats["gated_fraction"])]
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(attention_mask.sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
