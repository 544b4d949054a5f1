"""Worker of `tests/test_alpo_lockstep.py`: ALPO sampling in two processes (gloo on CPU); not a test module itself.

Started twice by torchrun. Every forward pass of the model makes a collective of its own shape, as ZeRO-3's
parameter gathering does, and `generate` runs with `synced_gpus=True`: a process that makes fewer forward passes than
the other leaves it blocked (or pairs two different collectives, which gloo reports), so the run finishes only when
the job keeps both processes in lockstep. The test hands over documents that split unevenly: after resuming a killed
run, rank 0 samples two one-line documents and rank 1 one three-line document and then nothing. Then a fresh run
whose judge goes down on rank 1 only must stop both processes.

Also run in the test's own process (one process, no collectives) for the reference output.

Usage: `alpo_lockstep_worker.py MODEL_DIR DOCUMENTS OUTPUT FAILING_OUTPUT RESULT_DIR`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch

from trl_seqpo.alpo.sampling import AlpoSampleConfig, sample_candidates
from trl_seqpo.errors import UserInputError
from trl_seqpo.judge.config import JudgeConfig
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE


@dataclass
class Verdict:
    scores: list[float] | None
    votes: list[int] = field(default_factory=lambda: [0, 1])
    failed_reason: str | None = None

    @property
    def num_valid_votes(self) -> int:
        return len(self.votes)


class LengthJudge:
    """Scores a candidate by its length, two valid votes per unit; with `fails`, the endpoint is down."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails

    def score_lines(self, requests, *, raise_if_unreachable=False):
        if self.fails:
            raise UserInputError("judge endpoint unreachable (emulated)")
        return [Verdict([float(len(text)) for text in request.candidates]) for request in requests]


def config(documents: str, output: str, model_dir: str) -> AlpoSampleConfig:
    return AlpoSampleConfig(
        documents=documents, output=output, model=model_dir, source_lang=SOURCE_LANGUAGE,
        target_lang=TARGET_LANGUAGE, num_candidates=3, max_new_tokens=12, documents_per_batch=1, seed=7,
        judge_min_candidates=1, judge=JudgeConfig(num_shuffles=2), max_batch_size=2,
    )  # fmt: skip


def sample(model_dir: str, documents: str, output: str, synced: bool, judge_fails: bool = False) -> dict:
    """Run the job once; returns what this process saw (its `_generate_batch` calls, dummies included)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo.rollout.loading import eos_token_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    backend = HFGenerationBackend(model, tokenizer, max_batch_size=2, synced_gpus=synced)
    calls = []
    generate_batch = backend._generate_batch
    backend._generate_batch = lambda prompts, params: calls.append(len(prompts)) or generate_batch(prompts, params)
    hook = None
    if synced:  # ZeRO-3 gathers the parameters in every forward pass: a collective that must pair across processes
        hook = model.register_forward_pre_hook(lambda module, args: torch.distributed.all_reduce(torch.zeros(3)))
    seen: dict = {"generate_batches": calls}
    try:
        report = sample_candidates(
            config(documents, output, model_dir),
            backend=backend,
            tokenizer=tokenizer,
            stop_token_ids=eos_token_ids(tokenizer, model.generation_config),
            judge=LengthJudge(fails=judge_fails),
            progress=False,
        )
        seen.update(written=report.written, skipped=report.skipped, unjudged=report.unjudged_units)
    except Exception as error:  # noqa: BLE001 - reported to the test
        seen["error"] = f"{type(error).__name__}: {error}"
    finally:
        if hook is not None:
            hook.remove()
    return seen


def main(model_dir: str, documents: str, output: str, failing_output: str, result_dir: Path) -> None:
    from accelerate import PartialState

    state = PartialState(cpu=True, timeout=timedelta(seconds=20))
    rank = state.process_index
    # 1. resume a killed run: the documents left split unevenly over the two processes
    seen = sample(model_dir, documents, output, synced=True)
    seen["parts_left"] = sorted(path.name for path in Path(output).parent.glob("*.part-*.jsonl"))
    # 2. a fresh run whose judge goes down on rank 1 only: both processes stop, neither waits for the other
    seen["judge_down"] = sample(model_dir, documents, failing_output, synced=True, judge_fails=rank == 1)
    (result_dir / f"rank{rank}.json").write_text(json.dumps(seen))
    torch.distributed.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:5], Path(sys.argv[5]))
