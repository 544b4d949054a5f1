"""Speed of the lockstep SiMT rollout (issue 4), as ratios against the obvious alternatives, in one run.

1. Lockstep: all sources x B trajectories advance together, one batched ``generate`` per step, versus a naive loop
   that rolls out one trajectory at a time (same model, same sources, same budgets).
2. Multi-step overhead: the lockstep rollout versus ONE batched ``generate`` call per trajectory that produces the
   same number of policy tokens (what a non-simultaneous GRPO step would cost); with the key/value states kept
   between steps (the default) and, for comparison, re-encoding the growing prefix at every step. Both sides run
   the same backend (`HFGenerationBackend`), model, dtype, threads and rows (every trajectory's first prompt); the
   one-shot call generates the longest trajectory's policy-token count for every row. The script prints what each
   side encodes and generates, and how many forward passes it makes: the rollout also encodes the tokens the
   environment inserts at each step (end of turn, the next user turn with its chunk, the start of the assistant
   turn), which one-shot generation never sees.
3. Training tokens per trajectory: the ``chat`` format trains one sequence per trajectory, the ``paper`` format one
   sequence per step (prompt re-rendered each time).

Usage:
    python benchmarks/rollout.py                      # tiny random model built on the fly
    python benchmarks/rollout.py --model runs/sft-simt-synthetic --sources 8 --generations 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_seqpo.rollout.engine import GenerationParams
from trl_seqpo.rollout.hf import HFGenerationBackend
from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig
from trl_seqpo.synthetic import language_pair as synthetic
from trl_seqpo.synthetic.tiny_models import save_tiny_model


def _timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _interleaved(functions: dict, repeats: int) -> dict:
    """Median time of each function, the runs interleaved (A B C A B C ...) so that load changes hit all alike."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _work(backend: HFGenerationBackend, function) -> tuple[int, int]:
    """Prompt tokens the model encoded and forward passes it made while running ``function`` once."""
    calls = []
    hook = backend.model.register_forward_pre_hook(lambda *_: calls.append(1))
    before = backend.encoded_prompt_tokens
    try:
        function()
    finally:
        hook.remove()
    return backend.encoded_prompt_tokens - before, len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: a tiny random model)")
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=2)
    parser.add_argument("--max-new-tokens-per-step", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads()))

    model_dir = args.model
    if model_dir is None:
        model_dir = tempfile.mkdtemp(prefix="tiny-simt-")
        save_tiny_model(model_dir, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    sources = [ex.source for ex in synthetic.generate_corpus(args.sources, seed=7, min_words=6, max_words=10)]
    src, tgt = synthetic.language_names()
    config = SimultaneousRolloutConfig(
        chunk_size=args.chunk_size,
        src_lang=src,
        tgt_lang=tgt,
        source_unit="word",
        target_unit="word",
        max_new_tokens_per_step=args.max_new_tokens_per_step,
        max_steps_after_source=1,
        temperature=1.0,
    )
    backend = HFGenerationBackend(model, tokenizer)
    rollout = SimultaneousRollout(backend, tokenizer, config)
    B = args.generations

    trajectories = rollout.run(sources, num_generations=B, seed=0)

    def naive():
        return [t for s in sources for _ in range(B) for t in rollout.run([s], num_generations=1, seed=0)]

    naive_time, _ = _timed(naive, 1)

    no_reuse = SimultaneousRollout(HFGenerationBackend(model, tokenizer, reuse_cache=False), tokenizer, config)
    no_reuse_trajectories = no_reuse.run(sources, num_generations=B, seed=0)
    if [t.step_token_ids for t in no_reuse_trajectories] != [t.step_token_ids for t in trajectories]:
        print("WARNING: the rollouts with and without key/value reuse sampled different tokens")

    # one-shot: every trajectory's prompt, one generate producing as many tokens as the longest policy output
    policy_tokens = [sum(t.env_mask) for t in trajectories]
    budget = max(policy_tokens)
    prompts = [t.prompt_ids for t in trajectories]
    params = GenerationParams(max_new_tokens=budget, temperature=1.0, stop_token_ids=())
    rollout_work = _work(backend, lambda: rollout.run(sources, num_generations=B, seed=0))
    no_reuse_work = _work(no_reuse.backend, lambda: no_reuse.run(sources, num_generations=B, seed=0))
    oneshot_work = _work(backend, lambda: backend.generate(prompts, params))
    median = _interleaved(
        {
            "lockstep": lambda: rollout.run(sources, num_generations=B, seed=0),
            "no_reuse": lambda: no_reuse.run(sources, num_generations=B, seed=0),
            "oneshot": lambda: backend.generate(prompts, params),
        },
        args.repeats,
    )
    lockstep_time, no_reuse_time, oneshot_time = median["lockstep"], median["no_reuse"], median["oneshot"]

    paper = SimultaneousRollout(
        backend, tokenizer, SimultaneousRolloutConfig(**{**config.__dict__, "prompt_format": "paper"})
    )
    paper_trajectories = paper.run(sources, num_generations=1, seed=0)
    chat_tokens = statistics.mean(len(t.prompt_ids) + len(t.completion_ids) for t in trajectories)
    paper_tokens = statistics.mean(
        sum(len(p) + len(o) for p, o in zip(t.step_prompt_ids, t.step_token_ids)) for t in paper_trajectories
    )
    steps = statistics.mean(len(t.step_outputs) for t in trajectories)

    n = len(trajectories)
    dtype = next(model.parameters()).dtype
    print(f"model: {model_dir}  dtype: {dtype}  sources: {len(sources)}  B: {B}  trajectories: {n}")
    print(f"threads: {torch.get_num_threads()}  mean steps: {steps:.1f}  rows per call: {n} (rollout: live ones)")
    print()
    print("| run | prompt tokens encoded | tokens generated | forward passes |")
    print("|---|---|---|---|")
    env_tokens = sum(len(t.env_mask) - sum(t.env_mask) for t in trajectories)
    print(
        f"| one-shot generate | {oneshot_work[0]} (first prompts) | {n} x {budget} = {n * budget} | "
        f"{oneshot_work[1]} |"
    )
    print(
        f"| multi-step rollout | {rollout_work[0]} (first prompts, then per step what the cache lacks: "
        f"{env_tokens} tokens inserted by the environment in all, each row's last sampled token) | "
        f"{sum(policy_tokens)} policy tokens | {rollout_work[1]} |"
    )
    print(
        f"| multi-step rollout without key/value reuse | {no_reuse_work[0]} (every step's whole prompt) | "
        f"{sum(policy_tokens)} policy tokens | {no_reuse_work[1]} |"
    )
    print()
    print("| comparison | time (s) | baseline (s) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| lockstep rollout vs per-trajectory loop | {lockstep_time:.3f} | {naive_time:.3f} | "
        f"{naive_time / lockstep_time:.1f}x faster |"
    )
    print(
        f"| multi-step rollout vs one-shot generate ({budget} tokens) | {lockstep_time:.3f} | {oneshot_time:.3f} | "
        f"{lockstep_time / oneshot_time:.2f}x the one-shot time |"
    )
    print(
        f"| multi-step rollout without key/value reuse vs one-shot generate ({budget} tokens) | {no_reuse_time:.3f} | "
        f"{oneshot_time:.3f} | {no_reuse_time / oneshot_time:.2f}x the one-shot time |"
    )
    print()
    print("| format | training tokens per trajectory | forward passes per trajectory |")
    print("|---|---|---|")
    print(f"| chat | {chat_tokens:.1f} | 1 |")
    print(
        f"| paper | {paper_tokens:.1f} | {statistics.mean(len(t.step_prompt_ids) for t in paper_trajectories):.1f} |"
    )
    print(f"| ratio paper/chat | {paper_tokens / chat_tokens:.2f} | |")


if __name__ == "__main__":
    main()
