"""`trl-seqpo alpo sample` in two processes (gloo on CPU) with ZeRO-3's per-forward collective emulated, and
`trl-seqpo evaluate` refusing a multi-process launch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from alpo_lockstep_worker import sample

from trl_seqpo.errors import UserInputError
from trl_seqpo.subtitles.documents import Document
from trl_seqpo.synthetic.subtitles import make_subtitle_documents, save_line_writer_model, write_documents

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (1, 2, 3, 1, 1)  # lines per document; one document per lockstep batch


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_two_processes(argv: list, cwd: Path, timeout: float = 240) -> None:
    """Start the worker as rank 0 and rank 1 of a gloo group (what torchrun sets, without its agent process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }  # fmt: skip
    workers = [
        subprocess.Popen(
            [sys.executable, *map(str, argv)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    try:
        outputs = [worker.communicate(timeout=timeout)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]


@pytest.mark.slow
def test_two_processes_resume_a_killed_run_in_lockstep_and_write_each_document_once(tmp_path):
    model_dir = str(save_line_writer_model(tmp_path / "model", lines_per_document=3))
    docs = make_subtitle_documents(len(LENGTHS), 3, seed=5)
    docs = [Document(d.doc_id, d.source_lines[:n], d.target_lines[:n]) for d, n in zip(docs, LENGTHS, strict=True)]
    documents = str(write_documents(docs, tmp_path / "docs.jsonl"))
    # the reference: one process, nothing interrupted
    alone = tmp_path / "alone" / "candidates.jsonl"
    assert sample(model_dir, documents, str(alone), synced=False)["written"] == len(docs)
    rows = {doc.doc_id: [] for doc in docs}
    for line in alone.read_text(encoding="utf-8").splitlines(keepends=True):
        rows[json.loads(line)["doc_id"]].append(line)
    # a two-process run killed mid-way: document 1 merged into the output (and still in rank 0's part: killed before
    # the part was deleted), document 3 and the first line of document 2 in rank 1's part (its second line cut)
    output = tmp_path / "run" / "candidates.jsonl"
    output.parent.mkdir()
    shutil.copy(alone.with_name("candidates.run.json"), output.with_name("candidates.run.json"))
    output.write_text(rows[docs[1].doc_id][0] + rows[docs[1].doc_id][1], encoding="utf-8")
    part = rows[docs[3].doc_id][0] + rows[docs[2].doc_id][0] + rows[docs[2].doc_id][1][:40]
    output.with_name("candidates.part-1.jsonl").write_text(part, encoding="utf-8")
    output.with_name("candidates.part-0.jsonl").write_text("".join(rows[docs[1].doc_id]), encoding="utf-8")

    worker = ROOT / "tests" / "alpo_lockstep_worker.py"
    failing = tmp_path / "down" / "candidates.jsonl"
    run_two_processes([worker, model_dir, documents, output, failing, tmp_path], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]

    for seen in ranks:
        assert "error" not in seen, seen
        assert seen["parts_left"] == []
        # the job's counts: documents 1 and 3 were kept, 0, 2 and 4 sampled (2 again, from its first line)
        assert (seen["skipped"], seen["written"], seen["unjudged"]) == (2, 3, 0)
    # the work really was uneven (rank 0: two one-line documents; rank 1: one three-line document, then an empty
    # batch) yet both made the same generate calls, the idle one with one-row dummies
    assert [len(seen["generate_batches"]) for seen in ranks] == [len(ranks[0]["generate_batches"])] * 2
    assert ranks[0]["generate_batches"] != ranks[1]["generate_batches"]
    assert 1 in ranks[0]["generate_batches"] or 1 in ranks[1]["generate_batches"]
    # each document exactly once, in input order, byte-identical to the uninterrupted one-process run
    assert output.read_text(encoding="utf-8") == alone.read_text(encoding="utf-8")

    # a judge that goes down on rank 1 only stops both processes instead of leaving rank 0 waiting
    assert ranks[1]["judge_down"]["error"].startswith("UserInputError: judge endpoint unreachable")
    assert ranks[0]["judge_down"]["error"].startswith("RuntimeError: another process stopped")


@pytest.mark.parametrize("command", ["simt", "subtitles"])
def test_evaluate_refuses_several_processes(command, tmp_path, monkeypatch):
    from trl_seqpo.evaluate.simt import SimTEvalConfig, evaluate_simt
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles

    monkeypatch.setenv("WORLD_SIZE", "2")
    if command == "simt":
        run, config = evaluate_simt, SimTEvalConfig(model="m", data="missing.jsonl", output_dir=tmp_path / "out")
    else:
        run, config = evaluate_subtitles, SubtitleEvalConfig(model="m", documents="x.jsonl", output_dir=tmp_path)
    with pytest.raises(UserInputError, match=f"`trl-seqpo evaluate {command}` runs in one process, but 2 were"):
        run(config)
    assert not (tmp_path / "out").exists()


def test_alpo_sample_with_vllm_refuses_several_processes(tmp_path, monkeypatch):
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, sample_candidates

    docs = write_documents(make_subtitle_documents(1, 2, seed=5), tmp_path / "docs.jsonl")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = AlpoSampleConfig(documents=str(docs), output=str(tmp_path / "c.jsonl"), model="m", backend="vllm")
    with pytest.raises(UserInputError, match="--backend vllm runs in one process"):
        sample_candidates(config)
    assert list(tmp_path.iterdir()) == [docs]
