"""Training the paper's prompt format: every step is its own sequence (SeqPO-SiMT Fig. 2, Eq. 3).

In the `paper` format the Fig. 2 template is re-rendered at every step, so step t's output `y_t` is conditioned on
its own prompt `P_t` (the source read so far and the translation so far), not on the previous steps' token
sequences. GRPO still needs one row per trajectory (rewards and advantages are per trajectory), so a trajectory is
packed into one row `P_1 y_1 P_2 y_2 ... P_T y_T`, with `P_2 ... P_T` marked as environment tokens (`env_mask` 0,
outside the loss and the KL) and `y_1 ... y_T` as policy tokens. The row is never run as one sequence: the
log-probs of `y_t` are computed from the sequence `P_t y_t` alone, by `SeqPOTrainer._get_per_token_logps_and_entropies`
(TRL's hook for the policy, old-policy and reference log-probs), which calls `step_logps_and_entropies` here. Every
`y_t` token then carries its trajectory's advantage, and the KL is taken over policy tokens only (Eq. 3).

`PaperRows` remembers the step boundaries of the rows of the latest training rollout and of the latest evaluation
rollout, keyed by the row's tokens (the hook only sees token ids). The training rows stay until the next training
rollout, so every GRPO option that reuses a generation batch finds them: `num_iterations > 1`, `steps_per_generation`
above gradient accumulation, and evaluations (of any number of batches) run between the optimizer steps of one
generation batch. A row whose completion TRL masked out of attention (`mask_truncated_completions=True` on a
trajectory cut by the step budget) is not in the loss; the hook gives it zero log-probs without looking it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from trl_seqpo.rollout.simultaneous import Trajectory

Segment = tuple[int, int, int]  # (prompt start, output start, output end) in the unpadded row


@dataclass
class PackedRow:
    """A paper-format trajectory as one GRPO row plus the position of each step inside it."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)


def pack_trajectory(trajectory: Trajectory) -> PackedRow:
    """Pack the steps of a paper-format trajectory into `P_1 | y_1 P_2 y_2 ... P_T y_T` (prompt | completion)."""
    if not trajectory.step_prompt_ids or len(trajectory.step_prompt_ids) != len(trajectory.step_token_ids):
        raise ValueError("pack_trajectory needs a paper-format trajectory with one prompt per step")
    row = PackedRow(prompt_ids=list(trajectory.step_prompt_ids[0]))
    length = len(row.prompt_ids)
    for step, (prompt, output, logprobs) in enumerate(
        zip(trajectory.step_prompt_ids, trajectory.step_token_ids, trajectory.step_logprobs)
    ):
        start = 0
        if step > 0:
            start = length
            row.completion_ids.extend(prompt)
            row.logprobs.extend([0.0] * len(prompt))
            row.env_mask.extend([0] * len(prompt))
            length += len(prompt)
        row.completion_ids.extend(output)
        row.logprobs.extend(list(logprobs) if len(logprobs) == len(output) else [0.0] * len(output))
        row.env_mask.extend([1] * len(output))
        row.segments.append((start, length, length + len(output)))
        length += len(output)
    return row


class PaperRows:
    """Step boundaries of packed rows, looked up by the row's token ids.

    One store per mode (`"train"`, `"eval"`): a rollout replaces only its own mode's rows, so an evaluation between
    the optimizer steps of one training generation batch leaves that batch's rows in place.
    """

    def __init__(self) -> None:
        self._rows: dict[str, dict[tuple[int, ...], list[Segment]]] = {}

    def new_rollout(self, mode: str = "train") -> None:
        self._rows[mode] = {}

    def add(self, row: PackedRow, mode: str = "train") -> None:
        self._rows.setdefault(mode, {})[tuple(row.prompt_ids + row.completion_ids)] = row.segments

    def segments(self, ids: list[int]) -> list[Segment]:
        key = tuple(ids)
        for rows in self._rows.values():
            if key in rows:
                return rows[key]
        raise ValueError(
            "A paper-format row reached the log-prob hook without a record of its steps; paper-format rows must "
            "come from SeqPOTrainer's own rollout"
        )


def step_logps_and_entropies(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    rows: PaperRows,
    batch_size: int | None = None,
    compute_entropy: bool = False,
    compute_aux_loss: bool = False,
    autocast: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of packed rows, each step scored in its own sequence `P_t y_t`.

    Same contract as TRL's `GRPOTrainer._get_per_token_logps_and_entropies`: `[B, logits_to_keep]` tensors aligned
    with the completion tokens; the model is called with `fused_lm_head=True`, so the temperature TRL attached to
    the head applies exactly as for the chat format. Environment positions (`P_2 ... P_T`) get 0, and so do rows
    whose completion is masked out of attention.
    """
    width = input_ids.size(1)
    offset = width - logits_to_keep
    sequences: list[torch.Tensor] = []
    targets: list[tuple[int, torch.Tensor, int]] = []  # (row, completion columns, output start in the sequence)
    for row in range(input_ids.size(0)):
        if not attention_mask[row, offset:].any():
            continue  # completion masked out by TRL (mask_truncated_completions): not in the loss
        columns = attention_mask[row].nonzero().squeeze(-1)
        ids = input_ids[row, columns]
        for start, out_start, out_end in rows.segments(ids.tolist()):
            sequences.append(ids[start:out_end])
            targets.append((row, columns[out_start:out_end] - offset, out_start - start))
    placeholder = not sequences
    if placeholder:
        # every completion masked: still run the model once (on the first prompt), so that the loss keeps a graph
        # and every process takes part in the same forward/backward collectives (DDP, ZeRO-3)
        prompt = input_ids[0, :offset][attention_mask[0, :offset].bool()]
        sequences.append(prompt)
        targets.append((0, prompt.new_zeros(0), min(1, len(prompt))))
    logps = torch.zeros(input_ids.size(0), logits_to_keep, device=input_ids.device)
    entropies = torch.zeros_like(logps) if compute_entropy else None
    aux_losses = []
    chunk = batch_size or len(sequences)
    for first in range(0, len(sequences), chunk):
        batch = sequences[first : first + chunk]
        longest = max(len(s) for s in batch)
        ids = input_ids.new_zeros((len(batch), longest))
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for k, sequence in enumerate(batch):
            ids[k, : len(sequence)] = sequence
            mask[k, : len(sequence)] = 1
            out_start = targets[first + k][2]
            labels[k, out_start : len(sequence)] = sequence[out_start:]
        kwargs = {"output_router_logits": True} if compute_aux_loss else {}
        context = autocast() if autocast is not None else torch.autocast("cpu", enabled=False)
        with context:
            outputs = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, **kwargs)
        for k, sequence in enumerate(batch):
            # `log_probs[:, i]` scores token `i + 1` (the fused head shifts the labels)
            row, columns, out_start = targets[first + k]
            if not len(columns):
                continue
            logps = logps.index_put(
                (torch.full_like(columns, row), columns),
                outputs.log_probs[k, out_start - 1 : len(sequence) - 1].float(),
            )
            if entropies is not None:
                entropies = entropies.index_put(
                    (torch.full_like(columns, row), columns),
                    outputs.entropy[k, out_start - 1 : len(sequence) - 1].float(),
                )
        if placeholder:
            logps = logps + 0.0 * outputs.log_probs.float().sum()
        if compute_aux_loss:
            aux_losses.append(outputs.aux_loss)
    aux_loss = torch.stack(aux_losses).mean() if compute_aux_loss else None
    return logps, entropies, aux_loss
