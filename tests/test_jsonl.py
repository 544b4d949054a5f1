"""The shared JSON-lines helpers: atomic writes leave old or new content, resumable files survive a kill."""

from __future__ import annotations

import json
import os

import pytest

from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import ResumableJsonl, atomic_write, atomic_write_json, read_jsonl


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "a.json"
    atomic_write(path, "old\n")
    atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    atomic_write_json(path, {"x": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": "é"}
    assert sorted(os.listdir(path.parent)) == ["a.json"]


def test_atomic_write_fsyncs_before_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b)))
    atomic_write(tmp_path / "f.txt", "x")
    assert calls == ["fsync", "replace"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.jsonl"
    atomic_write(path, "kept\n")

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": Unserialisable()})
    assert path.read_text() == "kept\n"
    assert os.listdir(tmp_path) == ["a.jsonl"]


def test_read_jsonl_drops_only_a_cut_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n{"a"\n{"a": 2}\n')
    with pytest.raises(UserInputError, match=r"r\.jsonl:2"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []
    with pytest.raises(UserInputError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_resume_truncates_a_cut_line_and_reports_done_ids(tmp_path):
    path = tmp_path / "hyps.jsonl"
    store = ResumableJsonl(path)
    assert store.append([{"id": "0", "t": "a"}, {"id": "1", "t": "b"}]) == 2
    with path.open("a") as handle:
        handle.write('{"id": "2", "t": "c')
    store = ResumableJsonl(path, resume=True)
    assert store.done == {"0", "1"} and store.dropped_partial_line
    assert path.read_text().endswith("}\n")
    # nothing is written twice; the new row starts on its own line
    assert store.append([{"id": "1", "t": "b"}, {"id": "2", "t": "c"}]) == 1
    assert [row["id"] for row in read_jsonl(path)] == ["0", "1", "2"]
    assert ResumableJsonl(path, resume=True).rows["2"] == {"id": "2", "t": "c"}
    # without resume the file starts again
    assert ResumableJsonl(path).done == set() and path.read_text() == ""


def test_resume_drops_unfinished_groups(tmp_path):
    path = tmp_path / "cands.jsonl"
    rows = [{"doc": "a", "i": 0, "n": 2}, {"doc": "a", "i": 1, "n": 2}, {"doc": "b", "i": 0, "n": 2}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    store = ResumableJsonl(path, resume=True, key="doc", complete=lambda group: len(group) == group[0]["n"])
    assert store.done == {"a"} and store.dropped_keys == {"b"}
    assert [row["doc"] for row in read_jsonl(path)] == ["a", "a"]
    store.append([{"doc": "b", "i": 0, "n": 2}, {"doc": "b", "i": 1, "n": 2}])
    assert len(ResumableJsonl(path, resume=True, key="doc").groups["b"]) == 2


def test_corrupt_complete_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "hyps.jsonl"
    path.write_text('{"id": "0"}\nnot json\n')
    with pytest.raises(UserInputError, match=r"hyps\.jsonl:2"):
        ResumableJsonl(path, resume=True)
    path.write_text('{"id": "0"}\n{"other": 1}\n')
    with pytest.raises(UserInputError, match=r"hyps\.jsonl:2: row has no key"):
        ResumableJsonl(path, resume=True)
