"""`trl-seqpo demo --quick`: every stage runs, results are written, a rerun resumes without duplicates."""

from __future__ import annotations

import json

import pytest

from trl_seqpo.cli.main import main
from trl_seqpo.demo.runner import STAGES


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--output-dir", str(out), "--quick"]) == 0
    return out


def _systems(out):
    return [json.loads(line)["system"] for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_quick_demo_writes_every_stage_and_the_table(demo_dir, capsys):
    assert (demo_dir / "models" / "sft" / "DONE").exists()
    assert (demo_dir / "data" / "train.jsonl").exists()
    report = json.loads((demo_dir / "results.json").read_text())
    rows = {row["system"]: row for row in report["results"]}
    assert set(rows) == {"oracle", "sft", "sft+wait-1", "sft+wait-3", "seqpo"}  # one SFT warm-up
    assert not (demo_dir / "models" / "sft_eager").exists()
    assert (demo_dir / "models" / "seqpo" / "DONE").exists()
    summary = report["seqpo_vs_sft"]
    assert summary["al_change"] == pytest.approx(rows["seqpo"]["al"] - rows["sft"]["al"])
    assert summary["chrf_change"] == pytest.approx(rows["seqpo"]["chrf"] - rows["sft"]["chrf"])
    assert summary["al_minus_oracle"] == pytest.approx(rows["seqpo"]["al"] - rows["oracle"]["al"])
    # the ALPO stages ran too and their SFT-vs-ALPO table is part of the report
    assert "alpo" in report and "## ALPO" in (demo_dir / "results.md").read_text()
    assert rows["oracle"]["chrf"] == pytest.approx(100.0)
    for row in rows.values():
        assert 0.0 <= row["chrf"] <= 100.0 and row["al"] > 0 and row["laal"] >= row["al"] - 1e-9
    # a schedule can only delay the SFT policy's writes: wait-3 is never earlier than wait-1 on the same model
    assert rows["sft+wait-3"]["al"] >= rows["sft+wait-1"]["al"] - 1e-9
    markdown = (demo_dir / "results.md").read_text()
    assert markdown.startswith("| system | chrF | BLEU | AL | LAAL |") and "| SFT + wait-3 |" in markdown
    # the stage times are in results.json, and the plot is drawn
    assert {name for name, _ in STAGES} - {"report"} <= set(report["timings_s"])  # report times itself after
    assert report["total_s"] == pytest.approx(sum(report["timings_s"].values()))
    assert set(report["cpu_s"]) == set(report["timings_s"]) and report["cpu_s"]["sft"] > 0
    assert report["total_cpu_s"] == pytest.approx(sum(report["cpu_s"].values()))
    assert (demo_dir / "quality_latency.png").stat().st_size > 1000
    test_rows = (demo_dir / "data" / "test.jsonl").read_text().splitlines()
    translations = (demo_dir / "translations" / "sft.jsonl").read_text().splitlines()
    assert len(translations) == len(test_rows) == report["settings"]["num_test"]
    train_sources = {
        json.loads(line)["source"] for line in (demo_dir / "data" / "train.jsonl").read_text().splitlines()
    }
    assert not train_sources & {json.loads(line)["source"] for line in test_rows}  # held out


@pytest.mark.slow
def test_rerun_resumes_without_retraining_or_duplicates(demo_dir):
    model_file = demo_dir / "models" / "sft" / "model.safetensors"
    mtime = model_file.stat().st_mtime_ns
    seqpo_file = demo_dir / "models" / "seqpo" / "model.safetensors"
    seqpo_mtime = seqpo_file.stat().st_mtime_ns
    lines = (demo_dir / "results.jsonl").read_text().splitlines()
    # simulate a kill while the last system was being written: its line is cut in half
    (demo_dir / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
    assert main(["demo", "--output-dir", str(demo_dir), "--quick"]) == 0
    assert model_file.stat().st_mtime_ns == mtime  # the SFT stage was skipped
    assert seqpo_file.stat().st_mtime_ns == seqpo_mtime  # and so was SeqPO
    systems = _systems(demo_dir)
    assert len(systems) == len(set(systems)) == 5


def test_other_settings_in_the_same_dir_is_a_user_error(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"num_train": 1}))
    assert main(["demo", "--output-dir", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--output-dir" in err and "Traceback" not in err
    assert main(["demo", "--output-dir", str(tmp_path / "x"), "--quick", "--sft-steps", "0"]) == 2
    assert main(["demo", "--output-dir", str(tmp_path / "y"), "--quick", "--stages", "data,sfft"]) == 2
    assert "--stages" in capsys.readouterr().err
    assert main(["demo", "--claims-table", str(tmp_path / "nothing")]) == 2
    assert "no claims.json" in capsys.readouterr().err
    # the truncation flags reach the SeqPO settings (and a run with other ones is another run)
    other = tmp_path / "floor"
    args = ["demo", "--output-dir", str(other), "--quick", "--latency-truncation", "floor", "--latency-floor", "1.5"]
    assert main([*args, "--stages", "report"]) == 0
    saved = json.loads((other / "settings.json").read_text())
    assert saved["seqpo_latency_truncation"] == "floor" and saved["seqpo_latency_floor"] == 1.5
    assert main(["demo", "--output-dir", str(other), "--quick", "--stages", "report"]) == 2


@pytest.mark.slow
def test_claims_json_holds_the_values_and_a_verdict_per_claim(demo_dir, capsys):
    from trl_seqpo.demo.report import waitk_curve_at

    claims = json.loads((demo_dir / "claims.json").read_text())
    rows = {row["system"]: row for row in json.loads((demo_dir / "results.json").read_text())["results"]}
    alpo = {row["system"]: row for row in json.loads((demo_dir / "alpo_results.json").read_text())["results"]}
    waitk = [(rows[f"sft+wait-{k}"]["al"], rows[f"sft+wait-{k}"]["bleu"]) for k in (1, 3)]
    curve = waitk_curve_at(waitk, rows["seqpo"]["al"])
    assert claims["seqpo_bleu_minus_waitk_curve"] == pytest.approx(rows["seqpo"]["bleu"] - curve)
    assert claims["seqpo_bleu_delta"] == pytest.approx(rows["seqpo"]["bleu"] - rows["sft"]["bleu"])
    assert claims["alpo_preferred_before"] == alpo["sft"]["preferred_pct"]
    assert claims["alpo_preferred_after"] == alpo["alpo"]["preferred_pct"]
    assert claims["alpo_slots"] == alpo["sft"]["slots"] == alpo["alpo"]["slots"]
    checks = {check["name"]: check for check in claims["checks"]}
    assert set(checks) == {"seqpo_above_waitk", "seqpo_quality_bleu", "alpo_preference", "alpo_meaning"}
    assert checks["seqpo_above_waitk"]["holds"] == (claims["seqpo_bleu_minus_waitk_curve"] > 0)
    # --quick sizes measure every claim but support none, and say why instead of "DOES NOT HOLD"
    assert all("sft_steps 8 < " in check["unsupported"] for check in checks.values())
    assert "held-out slots < 100" in checks["alpo_preference"]["unsupported"]
    assert "DOES NOT HOLD" not in (demo_dir / "results.md").read_text()
    assert "cannot be supported at these sizes" in (demo_dir / "results.md").read_text()
    # the claims table of the docs is generated from runs
    assert main(["demo", "--claims-table", str(demo_dir), str(demo_dir / "claims.json")]) == 0
    table = capsys.readouterr().out
    assert "Measured over 2 run(s)" in table and "`seqpo_bleu_minus_waitk_curve`" in table


def test_every_training_run_gets_its_settings_and_the_shared_cpu_arguments(tmp_path):
    from trl_seqpo.demo.alpo import AlpoDemoSettings
    from trl_seqpo.demo.common import DemoSettings, training_arguments

    shared = {"save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False}
    sft = training_arguments(DemoSettings(seed=3), "sft", tmp_path / "sft_run", logs=8)
    assert sft == {"output_dir": str(tmp_path / "sft_run"), "max_steps": 400, "per_device_train_batch_size": 32,
                   "learning_rate": 3e-3, "logging_steps": 50, "seed": 3, **shared}  # fmt: skip
    alpo = training_arguments(AlpoDemoSettings.quick(), "alpo", tmp_path / "alpo_run", logs=5)
    assert alpo == {"output_dir": str(tmp_path / "alpo_run"), "max_steps": 2, "per_device_train_batch_size": 2,
                    "learning_rate": 2e-4, "logging_steps": 1, "seed": 0, **shared}  # fmt: skip


def test_demo_paths_lay_out_the_output_directory(tmp_path):
    from trl_seqpo.demo.common import DemoPaths

    paths = DemoPaths(tmp_path)
    layout = {"settings": "settings.json", "data": "data", "train": "data/train.jsonl", "test": "data/test.jsonl",
              "models": "models", "results": "results.jsonl", "translations": "translations",
              "claims": "claims.json", "timings": "timings.json", "cpu_timings": "cpu_timings.json"}  # fmt: skip
    assert {name: getattr(paths, name) for name in layout} == {name: tmp_path / p for name, p in layout.items()}
    assert paths.model("sft") == tmp_path / "models" / "sft"
    assert paths == DemoPaths(tmp_path) and paths != DemoPaths(tmp_path / "other")


def test_a_run_resumed_by_other_code_warns_and_keeps_the_history(tmp_path, capsys, monkeypatch):
    from trl_seqpo.demo import common

    out = tmp_path / "run"
    args = ["demo", "--output-dir", str(out), "--quick", "--stages", "report"]
    assert main(args) == 0
    first = json.loads((out / "code.json").read_text())
    assert first == [common.code_fingerprint()] and len(first[0]["source_sha256"]) == 64
    assert main(args) == 0  # the same code again: no warning, no new entry
    assert "other trl_seqpo code" not in capsys.readouterr().out
    assert json.loads((out / "code.json").read_text()) == first
    newer = {"version": "9.9", "source_sha256": "f" * 64}
    monkeypatch.setattr(common, "code_fingerprint", lambda: newer)
    assert main(args) == 0
    warning = " ".join(capsys.readouterr().out.split())
    assert "started by other trl_seqpo code" in warning and "new --output-dir" in warning
    assert json.loads((out / "code.json").read_text()) == [*first, newer]


def test_code_fingerprint_follows_the_package_source(tmp_path, monkeypatch):
    import trl_seqpo
    from trl_seqpo.demo.common import code_fingerprint

    package = tmp_path / "trl_seqpo"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(trl_seqpo, "__file__", str(package / "__init__.py"))
    before = code_fingerprint()["source_sha256"]
    (package / "sub" / "m.py").write_text("x = 2\n")
    assert code_fingerprint()["source_sha256"] != before
