"""`current_processes` under torchrun on a CPU-only machine: the processes split the work (issue 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# each process writes its own file: two processes printing to one pipe interleave their lines
SCRIPT = (
    "import sys; from pathlib import Path; from trl_seqpo.rollout.processes import current_processes as c; p = c(); "
    "Path(sys.argv[1], f'rank{p.index}.txt').write_text(f'RANK {p.index} {p.count}')"
)


@pytest.mark.slow
def test_cpu_processes_under_torchrun_get_distinct_ranks(tmp_path):
    """accelerate starts no process group for CPU processes: without one, each process did the whole job."""
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", script,
         tmp_path],
        capture_output=True, text=True, timeout=240, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = sorted(path.read_text(encoding="utf-8") for path in tmp_path.glob("rank*.txt"))
    assert ranks == ["RANK 0 2", "RANK 1 2"]
