"""Two processes (gloo on CPU) that need different numbers of rollout steps stay in lockstep under `synced_gpus`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_with_different_rollout_lengths_finish_and_slice_their_rewards(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "lockstep_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert max(ranks[0]["steps"]) < min(ranks[1]["steps"])  # really unequal numbers of steps
    for rank in ranks:
        # the lockstep changes nothing in what each process generates
        assert all(rank["same_as_alone"]), rank
        # each process keeps its own slice of the rewards fused over the gathered batch
        assert rank["rewards"] == pytest.approx(rank["expected_rewards"])
    assert ranks[0]["rewards"] != pytest.approx(ranks[1]["rewards"])
