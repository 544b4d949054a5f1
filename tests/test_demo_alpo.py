"""The ALPO part of the demo (quick variant): every stage runs, the judge answers over HTTP, the table is written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from trl_seqpo.demo.alpo import AlpoDemoSettings, alpo_settings, held_out_documents, judging_stats
from trl_seqpo.demo.alpo_evaluate import ALPO_STAGES
from trl_seqpo.demo.alpo_truth import score_lines, world_translation
from trl_seqpo.errors import UserInputError


class _Console:
    def __init__(self) -> None:
        self.printed: list[str] = []

    def print(self, *items, **kwargs) -> None:
        self.printed.append(" ".join(str(item) for item in items))


def _context(root: Path, settings: AlpoDemoSettings | None = None) -> SimpleNamespace:
    ctx = SimpleNamespace(settings=SimpleNamespace(seed=0), paths=SimpleNamespace(root=root), console=_Console())
    ctx.alpo = settings or AlpoDemoSettings.quick()
    return ctx


def _run(ctx: SimpleNamespace) -> None:
    for _, stage in ALPO_STAGES:
        stage(ctx)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("alpo_demo") / "run"
        _run(_context(root))
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.slow
def test_quick_alpo_demo_writes_the_table_of_both_systems(demo_dir):
    report = json.loads((demo_dir / "alpo_results.json").read_text())
    rows = {row["system"]: row for row in report["results"]}
    assert set(rows) == {"sft", "alpo"}
    settings = AlpoDemoSettings.quick()
    expected_lines = settings.num_test_documents * settings.lines_per_document
    for row in rows.values():
        assert row["documents"] == settings.num_test_documents
        assert row["lines_expected"] == expected_lines and 0 <= row["lines_parsed"] <= expected_lines
        assert row["judge_score"] is not None and 0.0 <= row["judge_score"] <= 100.0
        assert row["unscored_documents"] == 0
    assert report["judge_score_gain"] == pytest.approx(rows["alpo"]["judge_score"] - rows["sft"]["judge_score"])
    sources = [
        line
        for row in (demo_dir / "alpo" / "data" / "test.jsonl").read_text().splitlines()
        for line in json.loads(row)["source_lines"]
    ]
    for row in rows.values():  # counted per source slot against the world's ground truth
        assert row["lines"] == expected_lines and row["slots"] == score_lines(sources, sources)["slots"]
        assert 0 <= row["slots_preferred"] <= row["slots"] and 0 <= row["slots_rendered"] <= row["slots"]
    markdown = (demo_dir / "alpo_results.md").read_text()
    assert markdown.startswith("| system | preferred rendering (slots) | meaning preserved (slots) | exact lines |")
    assert "| SFT |" in markdown and "| ALPO |" in markdown
    # judge failures and gate counts are reported, not hidden
    judging = report["judging"]
    assert judging["units"] > 0 and 0 <= judging["failed"] <= judging["units"]
    assert "failed votes" in markdown and "Gate:" in markdown and "units kept" in markdown
    for name in ("init", "sft", "alpo"):
        assert (demo_dir / "alpo" / "models" / name / "DONE").exists()


@pytest.mark.slow
def test_the_judge_was_called_over_http_for_sampling_and_evaluation(demo_dir):
    report = json.loads((demo_dir / "alpo_results.json").read_text())
    assert report["judge_http_requests"]["sample"] > 0
    # a reachability probe per system plus the scoring requests (identical translations share one cached answer)
    assert report["judge_http_requests"]["evaluate"] >= 3
    records = [json.loads(line) for line in (demo_dir / "alpo" / "candidates.jsonl").read_text().splitlines()]
    scored = [c["score"] for r in records for c in r["candidates"] if c["score"] is not None]
    assert scored and all(0 <= score <= 100 for score in scored)
    assert report["pair_rows"] > 0  # the ALPO model was trained on judged pairs


@pytest.mark.slow
def test_rerun_skips_every_stage(demo_dir):
    model_file = demo_dir / "alpo" / "models" / "alpo" / "model.safetensors"
    mtime = model_file.stat().st_mtime_ns
    candidates = (demo_dir / "alpo" / "candidates.jsonl").read_text()
    ctx = _context(demo_dir)
    _run(ctx)
    assert model_file.stat().st_mtime_ns == mtime
    assert (demo_dir / "alpo" / "candidates.jsonl").read_text() == candidates
    report = json.loads((demo_dir / "alpo_results.json").read_text())
    assert report["judge_http_requests"]["evaluate"] == 0  # hypotheses and judge scores were reused


def test_other_settings_in_the_same_dir_is_a_user_error(tmp_path):
    (tmp_path / "alpo").mkdir()
    (tmp_path / "alpo" / "settings.json").write_text(json.dumps({**AlpoDemoSettings.quick().to_json(), "seed": 7}))
    with pytest.raises(UserInputError, match="other settings \\(seed\\)"):
        ALPO_STAGES[0][1](_context(tmp_path))


def test_held_out_documents_share_no_line_with_training(demo_dir):
    def lines(split):
        path = demo_dir / "alpo" / "data" / f"{split}.jsonl"
        return [line for row in path.read_text().splitlines() for line in json.loads(row)["source_lines"]]

    training = set(lines("sft")) | set(lines("sample"))
    assert lines("test") and not training & set(lines("test"))


def test_held_out_documents_drop_every_document_with_a_training_line():
    settings = AlpoDemoSettings.quick()
    everything = held_out_documents(settings, seed=5, seen=set())
    seen = {everything[1].source_lines[2], everything[3].source_lines[0]}  # one line of documents 1 and 3
    kept = held_out_documents(settings, seed=5, seen=seen)
    assert len(kept) == settings.num_test_documents
    assert not seen & {line for document in kept for line in document.source_lines}
    assert kept[0].source_lines == everything[0].source_lines and kept[1].source_lines == everything[2].source_lines
    # a training set that already holds every sentence start leaves nothing to hold out: a clear error
    starts = {line for d in everything for line in d.source_lines}
    bigger = dataclasses.replace(settings, num_test_documents=4 * settings.num_test_documents)
    many = held_out_documents(bigger, 5, set())
    with pytest.raises(ValueError, match="share no line"):
        held_out_documents(settings, seed=5, seen=starts | {line for d in many for line in d.source_lines})


def test_judging_stats_count_failed_votes():
    stats = judging_stats([{"judge_failed": True}, {"judge_failed": False}, {}, {"judge_failed": True}])
    assert stats == {"units": 4, "failed": 2, "failed_pct": 50.0}


def test_settings_follow_the_demo_quick_flag():
    from trl_seqpo.demo.common import DemoSettings

    quick = SimpleNamespace(settings=DemoSettings.quick(), paths=None)
    full = SimpleNamespace(settings=DemoSettings(seed=3), paths=None)
    assert alpo_settings(quick) == AlpoDemoSettings.quick()
    assert alpo_settings(full) == AlpoDemoSettings(seed=3)
    assert full.alpo is alpo_settings(full)  # cached on the context


def test_quick_settings_shrink_only_the_sizes():
    from trl_seqpo.demo.common import DemoSettings

    def changed(settings_class):
        full, quick = settings_class().to_json(), settings_class.quick().to_json()
        return {name: quick[name] for name in full if quick[name] != full[name]}

    assert changed(DemoSettings) == {
        "num_train": 256, "num_test": 12, "sft_steps": 8, "sft_batch_size": 16, "seqpo_steps": 2,
        "seqpo_batch_size": 8, "seqpo_num_generations": 4, "wait_k": [1, 3], "eval_batch_size": 12,
    }  # fmt: skip
    assert changed(AlpoDemoSettings) == {
        "num_sft_documents": 64, "num_sample_documents": 4, "num_test_documents": 4, "sft_steps": 8,
        "sft_batch_size": 8, "num_candidates": 4, "judge_shuffles": 2, "documents_per_batch": 4, "alpo_steps": 2,
        "alpo_batch_size": 2, "eval_batch_size": 4,
    }  # fmt: skip


def test_slots_are_counted_per_source_word_against_the_world():
    source = ["the big dog sees the old house.", "and a happy cat likes the house"]
    assert world_translation(source[0]) == "lo hundo grava lo domo veka vidas .".split()
    perfect = score_lines(source, ["lo hundo mega lo kaso antika miras.", "kaj un mizo felika lo kaso sxatas"])
    assert perfect == {"lines": 2, "lines_exact": 2, "slots": 7, "slots_preferred": 7, "slots_rendered": 7,
                       "preferred_pct": 100.0, "rendered_pct": 100.0, "exact_pct": 100.0}  # fmt: skip
    plain = score_lines(source, ["lo hundo grava lo domo veka vidas.", "kaj un mizo goja lo domo amas"])
    assert (plain["slots_preferred"], plain["slots_rendered"], plain["lines_exact"]) == (0, 7, 2)
    # padding with preferred words earns nothing beyond the slots; dropping plain words loses meaning, not taste
    padded = score_lines(source[:1], ["lo hundo lo domo vidas mega mega mega."])
    assert (padded["slots_preferred"], padded["slots_rendered"], padded["lines_exact"]) == (1, 3, 0)
    dropped = score_lines(source[:1], ["lo hundo mega lo kaso."])
    assert (dropped["slots_preferred"], dropped["slots_rendered"], dropped["preferred_pct"]) == (2, 2, 50.0)
    # word order is part of the meaning of a line
    assert score_lines(source[:1], ["lo hundo grava lo domo vidas veka."])["lines_exact"] == 0
    assert score_lines([], [])["preferred_pct"] is None
    with pytest.raises(ValueError, match="2 source lines but 1"):
        score_lines(source, source[:1])


def test_ground_truth_scoring_imports_nothing_of_the_training_judge():
    import ast
    import subprocess
    import sys

    code = (
        "import sys, trl_seqpo.demo.alpo_truth; "
        "print(sorted(m for m in sys.modules if m.startswith(('trl_seqpo', 'torch', 'transformers'))))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(output.strip())
    assert "trl_seqpo.demo.alpo_truth" in loaded and "trl_seqpo.synthetic.language_pair" in loaded
    judge_path = ("trl_seqpo.judge", "trl_seqpo.synthetic.local_judge", "trl_seqpo.synthetic.subtitles")
    # neither the judge, nor the judge's scorer module, nor the demo's ALPO stages (which serve the judge)
    assert not [m for m in loaded if m.startswith(judge_path) or m in ("trl_seqpo.demo.alpo", "torch")], loaded


def _variants_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "alpo_demo_variants.py"
    spec = importlib.util.spec_from_file_location("alpo_demo_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_variants_script_retrains_alpo_from_the_runs_sft_model(demo_dir, tmp_path):
    # scripts/alpo_demo_variants.py measured docs/demo.md's table of ALPO settings
    script = _variants_script()
    out = tmp_path / "variant"
    assert script.main([str(demo_dir), str(out), "--set", "alpo_steps=1", "--set", "judge_taste_points=10"]) == 0
    result = json.loads((out / "alpo_results.json").read_text())
    original = json.loads((demo_dir / "alpo_results.json").read_text())
    assert result["settings"]["alpo_steps"] == 1 and "taste_points=10" in result["judge"]["scorer"]
    rows = {row["system"]: row for row in result["results"]}
    before = {row["system"]: row for row in original["results"]}
    for name in ("slots", "slots_preferred", "slots_rendered", "lines_exact"):  # the same SFT model, same test set
        assert rows["sft"][name] == before["sft"][name]
    assert (out / "alpo" / "models" / "sft" / "model.safetensors").read_bytes() == (
        demo_dir / "alpo" / "models" / "sft" / "model.safetensors"
    ).read_bytes()
    for bad in (["--set", "sft_steps=3"], ["--set", "no_such=1"]):
        assert script.main([str(demo_dir), str(tmp_path / "bad"), *bad]) == 2
        assert not (tmp_path / "bad").exists()
