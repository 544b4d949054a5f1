"""The paper setup installs: ``pip install ".[vllm,deepspeed,comet,peft,plot,track]"`` resolves in one environment,
with a vLLM inside the range the pinned TRL supports (``trl[vllm]``) and a protobuf that both vLLM and COMET accept.

The resolution test asks the package index (``pip install --dry-run``, no download of the big wheels where the
index serves metadata, about a minute); it is marked ``network`` and runs in ``make test``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
PAPER_EXTRAS = "vllm,deepspeed,comet,peft,plot,track"


def _extra(name: str) -> dict[str, Requirement]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {(r := Requirement(line)).name: r for line in extras[name]}


def _trl_vllm_requirement() -> Requirement:
    for line in requires("trl") or []:
        requirement = Requirement(line)
        if requirement.name == "vllm" and requirement.marker and requirement.marker.evaluate({"extra": "vllm"}):
            return requirement
    raise AssertionError("the installed trl declares no vllm extra")


def test_vllm_extra_is_the_range_trl_declares():
    assert _extra("vllm")["vllm"].specifier == _trl_vllm_requirement().specifier


def test_comet_extra_accepts_the_protobuf_vllm_needs():
    protobuf = _extra("comet")["protobuf"].specifier
    assert protobuf.contains("5.29.6") and protobuf.contains("6.33.0")  # vLLM 0.22-0.31 need protobuf >= 5.29.6


@pytest.mark.network
@pytest.mark.slow
def test_paper_extras_resolve_together(tmp_path):
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), f"{ROOT}[{PAPER_EXTRAS}]"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"the extras {PAPER_EXTRAS} no longer resolve:\n{result.stderr[-4000:]}"
    chosen = {item["metadata"]["name"].lower(): Version(item["metadata"]["version"]) for item in json.loads(
        report.read_text())["install"]}  # fmt: skip
    assert chosen["vllm"] in _trl_vllm_requirement().specifier
    assert chosen["protobuf"] >= Version("5.29.6")
    for name in ("deepspeed", "peft", "matplotlib", "tensorboard", "pytorch-lightning", "torchmetrics", "entmax"):
        assert name in chosen, name
