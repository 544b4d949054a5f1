"""One GPU smoke run of a shipped recipe (SeqPO or ALPO) on a randomly initialised Qwen2-shaped model.

Driven by ``scripts/gpu_smoke.sh`` (see there). Builds the model (Qwen2.5-0.5B's layer shapes: hidden 896, 24 layers,
14 query / 2 key-value heads of 64, MLP 4864, over the synthetic tokenizer's vocabulary, about 0.36 B parameters)
unless it exists, runs the recipe's own ``main`` for a few steps in bf16 and prints one result line:
``stage, steps, mean/max step seconds, peak GPU memory``. ``--tiny`` uses a 2-layer model on CPU (tests).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHAPES = {
    "0.5b": {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_key_value_heads": 2, "head_dim": 64,
             "intermediate_size": 4864},
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "head_dim": 32, "intermediate_size": 128},
}  # fmt: skip


def build_model(path: Path, shape: str) -> None:
    """The smoke model: the synthetic pair's tokenizer (it also covers the ALPO synthetic prompts), random weights."""
    from trl_seqpo.recipes.scripts.alpo import synthetic_candidate_records
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    prompts = sorted({record["document_prompt"] for record in synthetic_candidate_records(16, 4, 0)})
    save_tiny_model(path, extra_texts=prompts, seed=0, **SHAPES[shape])


def recipe_args(stage: str, model: Path, output: Path, steps: int, tiny: bool) -> list[str]:
    from trl_seqpo.recipes import resolve_config

    device = ["--use_cpu", "true", "--bf16", "false"] if tiny else ["--use_cpu", "false", "--bf16", "true"]
    common = ["--model_name_or_path", str(model), "--output_dir", str(output / stage), "--max_steps", str(steps),
              "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", *device]  # fmt: skip
    if stage == "seqpo":
        return ["--config", str(resolve_config("seqpo_synthetic")), *common, "--build_tiny_model", "false",
                "--per_device_train_batch_size", "16", "--num_generations", "8", "--num_train_examples", "256",
                "--gradient_checkpointing", "true"]  # fmt: skip
    return ["--config", str(resolve_config("alpo_synthetic")), *common, "--candidates_file",
            str(output / "alpo_candidates.jsonl"), "--per_device_train_batch_size", "4",
            "--gradient_checkpointing", "true"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("seqpo", "alpo"), required=True)
    parser.add_argument("--output", type=Path, default=Path("gpu_smoke_out"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tiny", action="store_true", help="2-layer model on CPU (checks the script, not the GPU)")
    parser.add_argument("--label", default="", help="shown in the result line (e.g. zero3)")
    args = parser.parse_args()

    import torch
    from accelerate import PartialState
    from trl import ModelConfig, TrlParser

    state = PartialState()
    model = args.output / ("model-tiny" if args.tiny else "model-0.5b")
    if state.is_main_process and not model.exists():
        build_model(model, "tiny" if args.tiny else "0.5b")
    state.wait_for_everyone()
    if args.stage == "seqpo":
        from trl_seqpo import SeqPOConfig as Config
        from trl_seqpo.recipes.scripts import seqpo as recipe

        dataclasses = (recipe.SeqPOScriptArguments, Config, ModelConfig)
    else:
        from trl_seqpo import ALPOConfig as Config
        from trl_seqpo.recipes.scripts import alpo as recipe

        dataclasses = (recipe.ALPOScriptArguments, Config, ModelConfig)
    parsed = TrlParser(dataclasses).parse_args_and_config(
        args=recipe_args(args.stage, model, args.output, args.steps, args.tiny)
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = recipe.main(*parsed)
    wall = time.perf_counter() - start
    step_times = [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]
    runtime = next((e["train_runtime"] for e in trainer.state.log_history if "train_runtime" in e), wall)
    mean_step = sum(step_times) / len(step_times) if step_times else runtime / max(trainer.state.global_step, 1)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    parameters = sum(p.numel() for p in trainer.model.parameters()) / 1e9
    if state.is_main_process:
        result = {"stage": args.stage + (f" ({args.label})" if args.label else ""), "steps": trainer.state.global_step,
                  "params_b": round(parameters, 3), "mean_step_s": round(mean_step, 2),
                  "max_step_s": round(max(step_times), 2) if step_times else None, "peak_gib": round(peak, 2),
                  "wall_s": round(wall, 1)}  # fmt: skip
        print("GPU_SMOKE_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
