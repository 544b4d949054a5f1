"""transformers ``generate`` as a `GenerationBackend`.

Prompts of different lengths are left-padded into one batch (split into micro-batches of ``max_batch_size`` rows)
and continued with a single ``model.generate`` call. A call's ``seed`` seeds the random generator once, before its
first micro-batch, so the micro-batches draw independent samples whatever ``max_batch_size`` is.
Log-probabilities are recomputed from the raw logits that ``generate`` returns, scaled by the sampling temperature,
which is how TRL's GRPO scores the same tokens during training (``log_softmax(logits / temperature)``, before
top-k/top-p filtering).

Sampling is on-policy: the checkpoint's own ``generation_config`` (e.g. Qwen2.5-Instruct's
``repetition_penalty=1.05``, its ``top_p``/``top_k``) is set aside for the call, so the only logits processors are
the ones `GenerationParams` asks for and, at ``top_p=1, top_k=0``, tokens are drawn from exactly the
``softmax(logits / temperature)`` whose log-probabilities are recorded.

Inside `HFGenerationBackend.cache_session` the backend keeps the key/value states of every row between calls
(`trl_seqpo.rollout.prefix_cache`): a prompt that extends an earlier prompt + its output only encodes its new
tokens. The lockstep SiMT rollout opens one session per rollout, so step t does not re-encode steps < t.

Every call, in a session or not, hands ``generate`` a cache that reserves the call's whole width up front
(`trl_seqpo.rollout.kv_buffer`), so decoding writes each token's states in place instead of copying the cache per
token; models with other than full-attention layers keep transformers' own cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import DynamicCache

from trl_seqpo.rollout.engine import GenerationOutput, GenerationParams
from trl_seqpo.rollout.kv_buffer import reserved_cache
from trl_seqpo.rollout.prefix_cache import PrefixKVCache

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class HFGenerationBackend:
    """Batched, left-padded ``model.generate``.

    Args:
        model: A causal LM (already unwrapped from DDP/DeepSpeed by the caller when training).
        tokenizer: Its tokenizer; only ``pad_token_id`` (falling back to ``eos_token_id``) is used.
        max_batch_size: Rows per ``generate`` call; ``None`` puts every prompt in one call.
        synced_gpus: Keep the processes in lockstep, as ``generate(synced_gpus=True)`` needs under DeepSpeed ZeRO-3
            or FSDP (every decoding step is a collective): every process makes the same number of ``generate``
            calls, an idle one with a one-token dummy prompt. ``None`` (default) decides as transformers does:
            on when ZeRO-3 or FSDP shards the model and more than one process runs. Rollouts that loop until every
            row is done ask `any_rank` whether any process still has work.
        reuse_cache: Keep key/value states between calls made inside `cache_session` (``False``: every call
            encodes its prompts from scratch, as outside a session).

    Examples:
        >>> backend = HFGenerationBackend(model, tokenizer)  # doctest: +SKIP
        >>> backend.generate([[1, 2, 3]], GenerationParams(max_new_tokens=8, temperature=0))  # doctest: +SKIP
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_batch_size: int | None = None,
        synced_gpus: bool | None = None,
        reuse_cache: bool = True,
    ) -> None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has neither a pad_token_id nor an eos_token_id; set tokenizer.pad_token.")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.pad_token_id = int(pad_id)
        self.max_batch_size = max_batch_size
        self.synced_gpus = _needs_synced_gpus(model) if synced_gpus is None else synced_gpus
        self.reuse_cache = reuse_cache
        self._prefix_cache: PrefixKVCache | None = None
        self.encoded_prompt_tokens = 0  # prompt tokens the model encoded (cached ones excluded), for benchmarks/tests

    @contextmanager
    def cache_session(self) -> Iterator[HFGenerationBackend]:
        """Reuse key/value states across the `generate` calls made inside the ``with`` block.

        Each call keeps the states of its rows (prompt + output); the next call starts every prompt from the
        cached row sharing its longest token prefix and encodes only the rest. Between calls only the rows of the
        latest call are held (an earlier call's rows are dropped once the next call has read them), and everything
        is released when the block ends, also on an exception. The states belong to the current weights: never let
        a session span an optimiser step.
        """
        outer = self._prefix_cache
        session = PrefixKVCache() if self.reuse_cache else None
        self._prefix_cache = session
        try:
            yield self
        finally:
            self._prefix_cache = outer
            if session is not None:
                session.clear()

    def any_rank(self, flag: bool) -> bool:
        """`flag` of this process or-ed over all processes (just `flag` when not in lockstep)."""
        if not self.synced_gpus:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.model.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)

    def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[GenerationOutput]:
        if any(len(p) == 0 for p in prompts):
            raise ValueError("Every prompt needs at least one token")
        step = self.max_batch_size or max(len(prompts), 1)
        starts = list(range(0, len(prompts), step))
        calls = len(starts)
        if self.synced_gpus:  # every process makes as many generate calls as the busiest one
            count = torch.tensor([float(calls)], device=self.model.device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            calls = int(count.item())
        outputs: list[GenerationOutput] = []
        if self._prefix_cache is not None:
            self._prefix_cache.next_call()
        if params.seed is not None:
            # once per call, not per micro-batch: re-seeding each micro-batch would draw the same random stream for
            # every micro-batch, so the k rows of a unit (or two documents) would sample alike
            torch.manual_seed(params.seed)
        for call in range(calls):
            if call < len(starts):
                outputs.extend(self._generate_batch(prompts[starts[call] : starts[call] + step], params))
            else:  # an idle process follows the others' decoding steps with a dummy row
                self._generate_batch([[self.pad_token_id]], GenerationParams(max_new_tokens=1, temperature=0))
        if self._prefix_cache is not None:
            self._prefix_cache.end_call()
        return outputs

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], params: GenerationParams) -> list[GenerationOutput]:
        device = self.model.device
        past_states = None
        if self._prefix_cache is not None:
            prepared = self._prefix_cache.prepare(prompts, self.pad_token_id)
            input_ids, attention_mask = prepared.input_ids, prepared.attention_mask
            past_states = prepared.past_states
            self.encoded_prompt_tokens += prepared.encoded_tokens
        else:
            width = max(len(p) for p in prompts)
            input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for row, ids in enumerate(prompts):
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, width - len(ids) :] = 1
            self.encoded_prompt_tokens += sum(len(p) for p in prompts)
        # a cache with room for the whole call: no copy of the cache per generated token (`kv_buffer`)
        past_key_values = reserved_cache(self.model.config, input_ids.shape[1] + params.max_new_tokens, past_states)
        if past_key_values is None and past_states is not None:
            past_key_values = DynamicCache(ddp_cache_data=past_states)
        width = input_ids.shape[1]
        stop_ids = list(params.stop_token_ids)
        generation_kwargs = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": stop_ids or None,
            "return_dict_in_generate": True,
            "output_logits": True,
            "synced_gpus": self.synced_gpus,
        }
        if not params.greedy:
            generation_kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
        else:
            generation_kwargs.update(temperature=None, top_p=None, top_k=None)
        if not stop_ids:
            # no stop token: the budget ends every row (otherwise generate falls back to the model's own eos ids)
            generation_kwargs["min_new_tokens"] = params.max_new_tokens
        if past_key_values is not None:
            generation_kwargs.update(past_key_values=past_key_values, use_cache=True)
        elif self._prefix_cache is not None:
            generation_kwargs["use_cache"] = True
        was_training = self.model.training
        self.model.eval()
        try:
            with _without_checkpoint_generation_config(self.model):
                result = self.model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **generation_kwargs
                )
        finally:
            self.model.train(was_training)
        new_tokens = result.sequences[:, width:].cpu()
        # logits: tuple of [batch, vocab] per generated position
        temperature = 1.0 if params.greedy else params.temperature
        logits = torch.stack(result.logits, dim=1).float() / temperature
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.to(logits.device).unsqueeze(-1))
        token_logprobs = token_logprobs.squeeze(-1).cpu()
        stop_set = set(stop_ids)
        outputs = []
        for row in range(len(prompts)):
            ids = new_tokens[row].tolist()
            end, reason = len(ids), "length"
            for pos, token in enumerate(ids):
                if token in stop_set:
                    end, reason = pos + 1, "stop"
                    break
            outputs.append(
                GenerationOutput(
                    token_ids=ids[:end], logprobs=token_logprobs[row, :end].tolist(), finish_reason=reason
                )
            )
        if self._prefix_cache is not None:
            self._prefix_cache.remember(
                result.sequences, attention_mask, [len(o.token_ids) for o in outputs], result.past_key_values
            )
        return outputs


def _needs_synced_gpus(model: PreTrainedModel) -> bool:
    """transformers' own rule for `generate(synced_gpus=None)`: ZeRO-3 or FSDP with more than one process."""
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.fsdp import is_fsdp_managed_module

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    return torch.distributed.get_world_size() > 1 and (is_deepspeed_zero3_enabled() or is_fsdp_managed_module(model))


@contextmanager
def _without_checkpoint_generation_config(model: PreTrainedModel) -> Iterator[None]:
    """Generate with transformers' neutral defaults instead of the checkpoint's `generation_config`.

    `generate` fills every option the call leaves unset from `model.generation_config`, so a checkpoint's
    `repetition_penalty`, `top_k`, `min_p`, ... would silently change the sampling distribution.
    """
    from transformers import GenerationConfig

    saved = getattr(model, "generation_config", None)
    if saved is None:
        yield
        return
    model.generation_config = GenerationConfig(
        bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id, pad_token_id=saved.pad_token_id
    )
    try:
        yield
    finally:
        model.generation_config = saved
