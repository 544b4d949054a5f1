"""SeqPO-SiMT: simultaneous machine translation as a multi-step decision process, optimised with GRPO.

Paper: Xu et al., "SeqPO-SiMT: Sequential Policy Optimization for Simultaneous Machine Translation" (arXiv:2505.20622).
"""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation

from trl_seqpo import model_card
from trl_seqpo.model_card import seqpo_quick_start
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.rollout.settings import save_rollout_settings
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, Trajectory
from trl_seqpo.seqpo.config import SeqPOConfig
from trl_seqpo.seqpo.paper_format import PackedRow, PaperRows, pack_trajectory, step_logps_and_entropies
from trl_seqpo.seqpo.reward import FusedSimultaneousReward, RewardFunc, prompt_text, resolve_rewards

logger = logging.getLogger(__name__)


class SeqPOTrainer(GRPOTrainer):
    """GRPO over whole simultaneous-translation trajectories (SeqPO-SiMT, Alg. 1).

    What it changes in `GRPOTrainer`, through TRL's public hooks only:

    * ``rollout_func``: a lockstep multi-step rollout (`SimultaneousRollout`) replaces
      single-turn generation. Each trajectory is one sequence in the chat format; the tokens the environment inserts
      (user turns carrying the next source chunk) are excluded from the loss and the KL through ``env_mask``.
    * ``reward_funcs``: one fused reward ``r = lambda * q - L`` (Eq. 2) built from a quality reward and a latency
      reward, both z-normalised within each group of ``num_generations`` trajectories, latency truncated at the chunk
      size. Rewards are computed on the gathered batch so groups split across processes are normalised correctly.

    Everything else (reference model and per-token KL with ``beta``, PEFT, DeepSpeed, vLLM weight sync, logging) is
    GRPO's.

    Args:
        model: Model id/path or a loaded causal LM.
        reward_funcs: ``None`` (use ``args.quality_reward`` and ``args.latency_reward``), or one or two rewards
            (registry names or callables): the quality reward first, then optionally the latency reward.
        args: `SeqPOConfig`.
        train_dataset: Rows with ``args.source_column`` and ``args.reference_column``; a ``prompt`` column is added.
        eval_dataset: Same columns.
        processing_class: Tokenizer (needs a chat template ending assistant turns with ``<|im_end|>`` or
            the token TRL's chat templates use).
        callbacks, optimizers, peft_config, quantization_config: As in `GRPOTrainer` (a
            ``BitsAndBytesConfig`` from ``trl.get_quantization_config`` loads a model given by name in 4/8 bit).

    Examples:
        >>> trainer = SeqPOTrainer(model="Qwen/Qwen2.5-7B-Instruct", args=SeqPOConfig(chunk_size=3),
        ...                        train_dataset=ds)  # doctest: +SKIP
    """

    _tag_names = ["trl", "grpo", "seqpo", "simultaneous-translation"]
    _name = "SeqPO"
    _paper = {
        "title": "SeqPO-SiMT: Sequential Policy Optimization for Simultaneous Machine Translation",
        "id": "2505.20622",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{xu2025seqposimt,
                title        = {{SeqPO-SiMT: Sequential Policy Optimization for Simultaneous Machine Translation}},
                author       = {Ting Xu and Zhichao Huang and Jiankai Sun and Shanbo Cheng and Wai Lam},
                year         = 2025,
                eprint       = {arXiv:2505.20622},
            }"""),
    }

    def __init__(
        self,
        model: Any,
        reward_funcs: RewardFunc | Sequence[RewardFunc] | None = None,
        args: SeqPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | IterableDataset | None = None,
        processing_class: Any = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
        peft_config: Any = None,
        quantization_config: Any = None,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = SeqPOConfig(f"{str(name).split('/')[-1]}-SeqPO")
        if not isinstance(args, SeqPOConfig):
            raise TypeError(f"args must be a SeqPOConfig, got {type(args).__name__}")
        if args.use_vllm:
            from trl_seqpo.rollout.vllm import check_model_for_vllm

            check_model_for_vllm(model)
        quality, latency = resolve_rewards(reward_funcs, args)
        self.fused_reward = FusedSimultaneousReward(quality, latency, args)
        super().__init__(
            model=model,
            reward_funcs=[self.fused_reward],
            args=args,
            train_dataset=_with_prompt_column(train_dataset, args, "train_dataset"),
            eval_dataset=_with_prompt_column(eval_dataset, args, "eval_dataset"),
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            quantization_config=quantization_config,
            rollout_func=self._simultaneous_rollout,
        )
        self.fused_reward.trainer = self
        if self.use_vllm:
            from trl_seqpo.rollout.vllm import prepare_colocated_weight_sync

            prepare_colocated_weight_sync(self.vllm_generation)
        self.rollout_config = args.rollout_config()
        # TRL counts a completion as truncated (`completions/clipped_ratio`, `mask_truncated_completions`) unless it
        # ends in one of `eos_token_ids`; a base checkpoint lists only its EOS there, not the step-end token.
        stop_ids = SimultaneousRollout(None, self.processing_class, self.rollout_config).stop_token_ids
        self.eos_token_ids = [*self.eos_token_ids, *(i for i in stop_ids if i not in self.eos_token_ids)]
        self._budget_cut_marker = _budget_cut_marker(self.processing_class, self.eos_token_ids)
        self._paper_rows = PaperRows()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save as TRL does, plus the rollout settings (``seqpo_rollout.json``) that evaluate and serve default to."""
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_rollout_settings(self.rollout_config, output_dir if output_dir is not None else self.args.output_dir)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None) -> None:
        """TRL's hook, run on save: a card with ``base_model`` and a simultaneous-decoding quick start.

        See `trl_seqpo.model_card`; the quick start uses this run's rollout settings (chunk size, languages, units).
        """
        quick_start = seqpo_quick_start(model_card.model_id(self), dataclasses.asdict(self.rollout_config))
        method = (
            f"It translates {self.rollout_config.src_lang} into {self.rollout_config.tgt_lang} simultaneously: it "
            f"reads {self.rollout_config.chunk_size} source units at a time and after each chunk writes or waits."
        )
        model_card.write_model_card(self, quick_start, method, model_name, dataset_name, tags)

    # ------------------------------------------------------------------ rollout_func hook
    def _simultaneous_rollout(self, prompts: list[Any], trainer: GRPOTrainer) -> dict[str, list]:
        """``rollout_func`` of GRPO: one trajectory per incoming prompt (TRL already repeats each source B times)."""
        sources = [prompt_text(prompt) for prompt in prompts]
        tokenizer = self.processing_class
        if self.use_vllm:
            from trl_seqpo.rollout.vllm import VLLMGenerationBackend

            if self.args.vllm_mode == "server":
                # the main process pushed the new weights to the server; no rank may query it before that is done
                self.accelerator.wait_for_everyone()

            rollout = SimultaneousRollout(VLLMGenerationBackend.from_trainer(self), tokenizer, self.rollout_config)
            trajectories = rollout.run(sources)
        else:
            with (
                unwrap_model_for_generation(
                    self.model_wrapped,
                    self.accelerator,
                    gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    # re-enabled with the same kwargs afterwards (TRL forces use_reentrant for PEFT + ZeRO-3)
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                ) as unwrapped_model,
                torch.no_grad(),
            ):
                rollout = SimultaneousRollout(
                    HFGenerationBackend(unwrapped_model, tokenizer), tokenizer, self.rollout_config
                )
                trajectories = rollout.run(sources)
        self._log_rollout_metrics(trajectories)
        rows = self._rows(trajectories)
        return {
            "prompt_ids": [row.prompt_ids for row in rows],
            "completion_ids": [row.completion_ids for row in rows],
            "logprobs": [row.logprobs for row in rows],
            "env_mask": [row.env_mask for row in rows],
            # forwarded to the reward functions as keyword arguments
            "translation": [t.translation for t in trajectories],
            "delays": [t.delays for t in trajectories],
            "source_length": [t.source_length for t in trajectories],
            "num_steps": [len(t.step_outputs) for t in trajectories],
            "num_empty_steps": [t.num_empty_steps for t in trajectories],
        }

    def _rows(self, trajectories: list[Trajectory]) -> list[PackedRow]:
        """One GRPO row per trajectory: the chat sequence, or the paper format's steps packed (`paper_format`)."""
        paper = self.args.prompt_format == "paper"
        mode = "train" if self.model.training else "eval"
        if paper:
            self._paper_rows.new_rollout(mode)
        rows = []
        for trajectory in trajectories:
            if paper:
                row = pack_trajectory(trajectory)
            else:
                row = PackedRow(
                    trajectory.prompt_ids,
                    trajectory.completion_ids,
                    trajectory.completion_logprobs,
                    trajectory.env_mask,
                )
            if trajectory.finished_by == "budget" and row.completion_ids[-1] in self.eos_token_ids:
                # an empty last step ended on its stop token: close the row with a masked environment token so that
                # TRL sees the trajectory as truncated, as it is
                row.completion_ids.append(self._budget_cut_marker)
                row.logprobs.append(0.0)
                row.env_mask.append(0)
            if paper:
                self._paper_rows.add(row, mode)
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ log-prob hook (paper format only)
    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **kwargs,
    ):
        """TRL's log-prob hook; in the paper format each step is scored in its own sequence (`paper_format`)."""
        if self.args.prompt_format != "paper":
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **kwargs,
            )
        return step_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            self._paper_rows,
            batch_size=batch_size,
            compute_entropy=compute_entropy,
            compute_aux_loss=compute_aux_loss,
            autocast=self.accelerator.autocast,
        )

    def _log_rollout_metrics(self, trajectories: list[Trajectory]) -> None:
        mode = "train" if self.model.training else "eval"
        steps = sum(len(t.step_outputs) for t in trajectories)
        empty = sum(t.num_empty_steps for t in trajectories)
        stats = torch.tensor(
            [
                float(steps),
                float(empty),
                float(sum(t.finished_by == "budget" for t in trajectories)),
                float(len(trajectories)),
            ],
            device=self.accelerator.device,
        )
        steps, empty, cut, count = self.accelerator.reduce(stats, reduction="sum").tolist()
        self._metrics[mode]["simt/empty_step_fraction"].append(empty / max(steps, 1.0))
        self._metrics[mode]["simt/steps_per_trajectory"].append(steps / max(count, 1.0))
        self._metrics[mode]["simt/cut_by_budget_fraction"].append(cut / max(count, 1.0))


def _with_prompt_column(dataset: Dataset | IterableDataset | None, args: SeqPOConfig, name: str):
    """GRPO reads a ``prompt`` column; SeqPO's prompt is the source sentence itself."""
    if dataset is None:
        return None
    columns = dataset.column_names
    if columns is not None:
        missing = [c for c in (args.source_column, args.reference_column) if c not in columns]
        if missing:
            raise ValueError(
                f"{name} lacks the column(s) {missing} (has {columns}); set SeqPOConfig.source_column / "
                "reference_column to the names of the source and reference columns"
            )
        if isinstance(dataset, Dataset) and len(dataset) == 0:
            raise ValueError(f"{name} is empty: SeqPO needs at least one (source, reference) row")
        if isinstance(dataset, Dataset):
            _check_rows(dataset, args, name)
    if columns is not None and "prompt" in columns and args.source_column != "prompt":
        logger.warning(
            "%s has a 'prompt' column but source_column=%r: SeqPO translates %r and replaces 'prompt' with it",
            name,
            args.source_column,
            args.source_column,
        )
    if args.source_column == "prompt":
        return dataset
    return dataset.map(lambda row: {"prompt": row[args.source_column]})


def _budget_cut_marker(tokenizer: Any, end_ids: list[int]) -> int:
    """A token that is neither an end token nor padding (the newline the chat template puts after a turn)."""
    excluded = {*end_ids, tokenizer.pad_token_id}
    for candidate in (*tokenizer("\n", add_special_tokens=False)["input_ids"], *range(len(tokenizer))):
        if candidate not in excluded:
            return int(candidate)
    raise ValueError("The tokenizer has no token besides its end and padding tokens")


def _check_rows(dataset: Dataset, args: SeqPOConfig, name: str) -> None:
    """Refuse, before the first step, a row with an empty source or a missing reference, naming the row (0-based).

    An empty source has no chunk to read (T = 0, Alg. 1); a missing reference leaves the quality reward nothing to
    score against, so the run would train to the end on a zero reward.
    """
    for column, what in ((args.source_column, "source"), (args.reference_column, "reference")):
        for row, value in enumerate(dataset[column]):
            if value is None:
                raise ValueError(f"{name} row {row}: the {what} ({column!r}) is missing (None)")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} row {row}: the {what} ({column!r}) must be non-empty text, got {value!r}")
