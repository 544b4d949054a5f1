"""The SeqPO example script runs with python, accelerate launch and two processes, and saves a checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "scripts" / "seqpo.py"
CONFIG = ROOT / "examples" / "configs" / "seqpo_synthetic.yaml"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _args(tmp_path: Path, name: str) -> list[str]:
    return [
        str(SCRIPT), "--config", str(CONFIG), "--max_steps", "2", "--output_dir", str(tmp_path / name),
        "--model_name_or_path", str(tmp_path / "tiny"), "--per_device_train_batch_size", "8",
        "--num_train_examples", "32",
    ]  # fmt: skip


def test_python_runs_and_saves_a_checkpoint(tmp_path):
    _run([sys.executable, *_args(tmp_path, "python")], tmp_path)
    assert (tmp_path / "python" / "model.safetensors").exists()
    assert (tmp_path / "tiny" / "config.json").exists()  # the tiny model was built because it was missing


def test_accelerate_launch_runs_and_saves_a_checkpoint(tmp_path):
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    single = ROOT / "examples" / "accelerate_configs" / "single_gpu.yaml"
    _run([*accelerate, "--config_file", str(single), "--cpu", *_args(tmp_path, "accelerate")], tmp_path)
    assert (tmp_path / "accelerate" / "model.safetensors").exists()


def test_two_processes_with_groups_split_across_ranks(tmp_path):
    # 3 rows per process and groups of 2: one group has a trajectory on each rank, so the fused reward must be
    # normalised on the gathered batch
    args = _args(tmp_path, "ddp")
    args[args.index("--per_device_train_batch_size") + 1] = "3"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    result = _run([*torchrun, *args, "--num_generations", "2"], tmp_path)
    assert "simt/fused_reward" in result.stdout + result.stderr
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_jsonl_dataset_with_renamed_columns_learns(tmp_path):
    import ast
    import json

    from trl_seqpo.synthetic import language_pair as synthetic

    rows = synthetic.to_dataset(synthetic.generate_corpus(16, seed=3, min_words=4, max_words=7))
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"src": r["source"], "ref": r["reference"]}) + "\n" for r in rows))
    args = _args(tmp_path, "jsonl")
    args[args.index("--max_steps") + 1] = "1"
    extra = [
        "--dataset_name",
        str(path),
        "--source_column",
        "src",
        "--reference_column",
        "ref",
        "--logging_steps",
        "1",
    ]
    result = _run([sys.executable, *args, *extra], tmp_path)
    logs = [
        ast.literal_eval(line) for line in result.stdout.splitlines() if line.startswith("{") and "reward_std" in line
    ]
    assert logs and float(logs[0]["reward_std"]) > 0, result.stdout[-2000:]
