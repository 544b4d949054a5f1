"""Training the paper's prompt format: every step is its own sequence (SeqPO-SiMT Fig. 2, Eq. 3).

In the `paper` format the Fig. 2 template is re-rendered at every step, so step t's output `y_t` is conditioned on
its own prompt `P_t` (the source read so far and the translation so far), not on the previous steps' token
sequences. GRPO still needs one row per trajectory (rewards and advantages are per trajectory), so a trajectory is
packed into one row `P_1 y_1 P_2 y_2 ... P_T y_T`, with `P_2 ... P_T` marked as environment tokens (`env_mask` 0,
outside the loss and the KL) and `y_1 ... y_T` as policy tokens. The row is never run as one sequence: the
log-probs of `y_t` are computed from the sequence `P_t y_t` alone, by `SeqPOTrainer._get_per_token_logps_and_entropies`
(TRL's hook for the policy, old-policy and reference log-probs), which calls `step_logps_and_entropies` here. Every
`y_t` token then carries its trajectory's advantage, and the KL is taken over policy tokens only (Eq. 3).

`PaperRows` remembers the step boundaries of the rows of the latest rollouts, keyed by the row's tokens (the hook
only sees token ids).
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
    """Step boundaries of packed rows, looked up by the row's token ids (two generations of rollouts are kept)."""

    def __init__(self) -> None:
        self._current: dict[tuple[int, ...], list[Segment]] = {}
        self._previous: dict[tuple[int, ...], list[Segment]] = {}

    def new_rollout(self) -> None:
        self._previous, self._current = self._current, {}

    def add(self, row: PackedRow) -> None:
        self._current[tuple(row.prompt_ids + row.completion_ids)] = row.segments

    def segments(self, ids: list[int]) -> list[Segment]:
        key = tuple(ids)
        found = self._current.get(key, self._previous.get(key))
        if found is None:
            raise ValueError(
                "A paper-format row reached the log-prob hook without a record of its steps; paper-format rows must "
                "come from SeqPOTrainer's own rollout"
            )
        return found


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
    the head applies exactly as for the chat format. Environment positions (`P_2 ... P_T`) get 0.
    """
    width = input_ids.size(1)
    offset = width - logits_to_keep
    sequences: list[torch.Tensor] = []
    targets: list[tuple[int, torch.Tensor, int]] = []  # (row, completion columns, output start in the sequence)
    for row in range(input_ids.size(0)):
        columns = attention_mask[row].nonzero().squeeze(-1)
        ids = input_ids[row, columns]
        for start, out_start, out_end in rows.segments(ids.tolist()):
            sequences.append(ids[start:out_end])
            targets.append((row, columns[out_start:out_end] - offset, out_start - start))
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
            logps = logps.index_put(
                (torch.full_like(columns, row), columns),
                outputs.log_probs[k, out_start - 1 : len(sequence) - 1].float(),
            )
            if entropies is not None:
                entropies = entropies.index_put(
                    (torch.full_like(columns, row), columns),
                    outputs.entropy[k, out_start - 1 : len(sequence) - 1].float(),
                )
        if compute_aux_loss:
            aux_losses.append(outputs.aux_loss)
    aux_loss = torch.stack(aux_losses).mean() if compute_aux_loss else None
    return logps, entropies, aux_loss
