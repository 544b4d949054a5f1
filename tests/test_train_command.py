"""``trl-seqpo train`` behaves like ``trl grpo``/``trl dpo``: help without a config, accelerate's launcher options
from the command line or the YAML, always through ``accelerate launch``, and one line with exit code 2 for every
mistake in the settings (issue 20 item 5, issue 23)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_seqpo import recipes
from trl_seqpo.cli.main import main
from trl_seqpo.recipes import launch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
ENV["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
SCRIPT = str(recipes.recipe_script("seqpo"))
SYNTHETIC = str(recipes.CONFIGS_DIR / "seqpo_synthetic.yaml")
BASE = "model_name_or_path: m\nuse_cpu: true\nbf16: false\nnum_generations: 4\nper_device_train_batch_size: 8\n"


@pytest.fixture(autouse=True)
def no_user_accelerate_config(monkeypatch, tmp_path):
    """Tests see the machine as if `accelerate config` had never been run."""
    import accelerate.commands.config

    monkeypatch.setattr(accelerate.commands.config, "default_config_file", str(tmp_path / "none.yaml"))


def _run(capsys, *args):
    """Exit code, stdout and the stderr lines of ``trl-seqpo train ...``."""
    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def _config(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_help_without_a_config_lists_the_shipped_configs_and_the_fields(capsys):
    code, out, _ = _run(capsys, "seqpo", "--help")
    assert code == 0
    assert "usage: trl-seqpo train seqpo" in out
    for name in ("--max_steps", "--chunk_size", "--num_generations", "--dataset_name", "--model_name_or_path"):
        assert name in out, name
    flat = " ".join(out.split())
    assert all(name in flat for name in recipes.available_configs()) and "zero3" in flat and "--num_processes" in flat


def test_a_run_without_launcher_options_is_one_process_under_accelerate_launch(capsys):
    code, _, err = _run(capsys, "seqpo", "--config", "seqpo_synthetic", "--max_steps", "1", "--dry_run")
    assert code == 0
    assert err[-1].split() == ["accelerate", "launch", *launch.SINGLE_PROCESS, SCRIPT, "--config", SYNTHETIC,
                               "--max_steps", "1"]  # fmt: skip


def test_launcher_options_go_to_accelerate_and_fields_to_the_script(capsys):
    code, _, err = _run(capsys, "seqpo", "--config", "seqpo_synthetic", "--num_processes", "2", "--max_steps", "1",
                        "--mixed_precision=no", "--output_dir", "X", "--dry_run")  # fmt: skip
    assert code == 0
    launched = err[-1].split()
    assert launched[2:4] == ["--num_processes", "2"] and "--mixed_precision=no" in launched
    assert launched[launched.index(SCRIPT) :] == [
        SCRIPT,
        "--config",
        SYNTHETIC,
        "--max_steps",
        "1",
        "--output_dir",
        "X",
    ]


def test_accelerate_config_by_name_flag_or_yaml_key(capsys, tmp_path):
    zero3 = str(recipes.ACCELERATE_CONFIGS_DIR / "zero3.yaml")
    config = _config(tmp_path, BASE)
    code, _, err = _run(capsys, "seqpo", f"--config={config}", "--accelerate_config", "zero3", "--dry_run")
    assert code == 0 and err[-1].split()[2:7] == ["--config_file", zero3, SCRIPT, "--config", config]
    config = _config(tmp_path, BASE + "accelerate_config: fsdp\n")
    code, _, err = _run(capsys, "seqpo", "--config", config, "--num_processes", "4", "--dry_run")
    fsdp = str(recipes.ACCELERATE_CONFIGS_DIR / "fsdp.yaml")
    assert code == 0 and err[-1].split()[2:7] == ["--config_file", fsdp, "--num_processes", "4", SCRIPT]
    code, _, err = _run(capsys, "seqpo", "--config", config, "--accelerate_config", "zero3", "--dry_run")
    assert code == 0 and err[-1].split()[2:5] == ["--config_file", zero3, SCRIPT]  # the command line wins


@pytest.mark.parametrize(
    ("args", "yaml", "message"),
    [
        (["--max_stepz", "1"], "", "unknown field 'max_stepz' on the command line (did you mean 'max_steps'?)"),
        ([], "max_stepz: 1\n", "unknown field 'max_stepz' in config"),
        ([], "max_stepz: 1\nnum_generations: 3\n", "unknown field 'max_stepz' in config"),  # named before values
        (["--max_steps", "ten"], "", "argument --max_steps/--max-steps: invalid int value: 'ten'"),
        ([], "max_steps: ten\n", "invalid int value: 'ten'"),
        (["--fp16", "true", "--bf16", "true"], "", "invalid setting (config"),
        (["--temperature", "-1"], "", "temperature must be > 0"),
        (["--num_generations", "0"], "", "invalid setting"),  # ZeroDivisionError inside TRL's checks
        ([], "report_to: tensorboard\n", "report_to: tensorboard needs the tensorboard package"),
        ([], "report_to: tensorbord\n", "unknown tracker 'tensorbord' (did you mean 'tensorboard'?)"),
        (["--attn_implementation", "flash_attention_2"], "", "attn_implementation='flash_attention_2' needs"),
        (["--num_processes", "two"], "", "--num_processes/--num-processes: invalid int value: 'two'"),
        (["--accelerate_config", "zero4"], "", "accelerate config 'zero4' is neither a file"),
        (["stray"], "", "unexpected argument 'stray'"),
        (["--config", "seqpo_en_de"], None, "config 'seqpo_en_de' is neither a file nor a shipped config"),
        ([], "max_steps: [1\n", "cannot read it"),
        ([], "- max_steps\n", "must be a YAML mapping"),
    ],
)
def test_every_bad_setting_is_one_line_naming_it_and_exit_2(capsys, tmp_path, args, yaml, message):
    if "tensorboard" in message and __import__("importlib").util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    if "flash_attn" in str(args) and __import__("importlib").util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    config = [] if yaml is None else ["--config", _config(tmp_path, yaml if yaml.startswith("-") else BASE + yaml)]
    code, out, err = _run(capsys, "seqpo", *config, *args, "--output_dir", str(tmp_path / "out"), "--dry_run")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("trl-seqpo: error: ") and message in err[0], err[0]
    assert not (tmp_path / "out").exists()


def test_checkpoints_of_another_recipe_are_refused_before_launching(capsys, tmp_path):
    import json

    checkpoint = tmp_path / "sft" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"w")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (checkpoint / "trl_seqpo_run.json").write_text(json.dumps({"config_class": "SFTConfig", "model": "m"}))
    config = _config(tmp_path, BASE)
    code, _, err = _run(capsys, "seqpo", "--config", config, "--output_dir", str(tmp_path / "sft"), "--dry_run")
    assert code == 2 and len(err) == 1 and "written by the sft-simt recipe (SFTConfig)" in err[0], err
    assert "accelerate launch" not in " ".join(err)  # refused before anything was launched


def test_an_output_dir_that_is_a_file_goes_through_the_shared_output_guard(capsys, tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    config = _config(tmp_path, BASE)
    code, _, err = _run(capsys, "seqpo", "--config", config, "--output_dir", str(taken), "--dry_run")
    assert code == 2 and len(err) == 1 and "is a file" in err[0] and str(taken) in err[0], err
    assert taken.read_text() == "keep me"


def test_a_config_is_required_to_run_and_named_in_the_message(capsys):
    code, _, err = _run(capsys, "alpo", "--max_steps", "1")
    assert code == 2 and len(err) == 1 and "needs --config" in err[0] and "alpo_synthetic" in err[0]


@pytest.mark.slow
def test_train_seqpo_trains_one_step_through_accelerate_launch(tmp_path):
    command = [sys.executable, "-m", "trl_seqpo.cli.main", "train", "seqpo", "--config", "seqpo_synthetic",
               "--num_processes", "1", "--max_steps", "1", "--output_dir", str(tmp_path / "X"),
               "--model_name_or_path", str(tmp_path / "tiny"), "--num_train_examples", "8",
               "--per_device_train_batch_size", "8", "--num_generations", "4"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.startswith("accelerate launch --num_processes 1 ")
    assert (tmp_path / "X" / "model.safetensors").exists()
