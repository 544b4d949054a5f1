"""Worker of `tests/test_lockstep.py`, started twice by torchrun (gloo on CPU): not a test module itself.

Rank 0 gets a one-chunk source, rank 1 a four-chunk source with two rows per step and one row per `generate` call,
so the two processes need different numbers of rollout steps and of `generate` calls. The backend runs with
`synced_gpus=True` (every decoding step is a collective, as under ZeRO-3/FSDP) and every forward pass makes a
collective as ZeRO-3's parameter gathering does; without lockstep the ranks block or fail.
Also checks the fused reward's per-rank slice with groups split across the two processes.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from accelerate import PartialState

from trl_seqpo.rewards.fusion import fuse_rewards
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig
from trl_seqpo.seqpo.reward import FusedSimultaneousReward
from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

WORDS = "the a big small dog cat runs sees red tree English French la le grand petit chien chat court".split()
QUALITY = [[0.9, 0.1, 0.5], [0.3, 0.7, 0.2]]  # per rank; groups of 2 -> the second group spans both ranks
LATENCY = [[1.0, 3.0, 2.0], [2.5, 1.5, 4.0]]


def main(out_dir: Path) -> None:
    state = PartialState(cpu=True, timeout=timedelta(seconds=90))
    rank = state.process_index
    tokenizer = build_tokenizer(WORDS)
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64)
    config = SimultaneousRolloutConfig(
        chunk_size=2, src_lang="English", tgt_lang="French", max_new_tokens_per_step=3, temperature=0
    )
    sources = ["a cat"] if rank == 0 else ["the big dog sees a red tree"]
    generations = 1 if rank == 0 else 2
    # ZeRO-3 gathers the parameters in every forward pass: a collective of its own shape, which must pair with the
    # same collective on the other process (a mismatch with generate's one-float flags fails or hangs)
    gather = model.register_forward_pre_hook(lambda module, args: torch.distributed.all_reduce(torch.zeros(3)))
    synced = HFGenerationBackend(model, tokenizer, max_batch_size=1, synced_gpus=True)
    trajectories = SimultaneousRollout(synced, tokenizer, config).run(sources, num_generations=generations)
    gather.remove()
    alone = HFGenerationBackend(model, tokenizer, max_batch_size=1, synced_gpus=False)
    expected = SimultaneousRollout(alone, tokenizer, config).run(sources, num_generations=generations)

    args = SimpleNamespace(
        fusion_lambda=2.0, chunk_size=2, latency_truncation="floor", latency_floor=0.0, num_generations=2,
        source_column="source", reference_column="reference", latency_unit="word", tgt_lang="French",
        latency_use_reference_length=False,
    )  # fmt: skip
    fused = FusedSimultaneousReward(lambda **kw: QUALITY[rank], lambda **kw: LATENCY[rank], args)
    fused.trainer = SimpleNamespace(
        accelerator=SimpleNamespace(process_index=rank), model=SimpleNamespace(training=True), num_generations=2
    )
    rewards = fused(prompts=["p"] * 3, completions=["c"] * 3, reference=["r"] * 3)
    everything = fuse_rewards(sum(QUALITY, []), sum(LATENCY, []), group_size=2, chunk_size=2, truncation="floor")
    result = {
        "rank": rank,
        "steps": [len(t.step_outputs) for t in trajectories],
        "same_as_alone": [t.completion_ids == e.completion_ids for t, e in zip(trajectories, expected)],
        "rewards": rewards,
        "expected_rewards": np.asarray(everything[rank * 3 : (rank + 1) * 3]).tolist(),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
