"""Test-wide settings: never touch the network, never use a GPU, keep runs deterministic."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture
def one_thread():
    """One torch thread (`pytest.mark.usefixtures("one_thread")`): on a busy shared CPU this is many times faster, and
    runs stay bit-identical."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_terminal_summary(terminalreporter):
    """The docs runner's count of README/docs blocks run and skipped (tests/test_docs.py)."""
    from tests.test_docs import summary_line

    line = summary_line(terminalreporter.stats)
    if line:
        terminalreporter.write_line(line)
