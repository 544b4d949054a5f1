"""The recipes ship inside the package, resume after a kill, honour the model options and fail early on a backend
that is not installed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from trl_seqpo import recipes
from trl_seqpo.errors import MissingDependencyError, UserInputError
from trl_seqpo.recipes.checkpoints import RUN_RECORD
from trl_seqpo.recipes.runtime import check_model_backends, model_init_kwargs, resume_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
ENV["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
SHIPPED_ACCELERATE = ["fsdp", "multi_gpu", "single_gpu", "zero2", "zero3"]


# ---------------------------------------------------------------------------------------------- shipped files
def test_every_recipe_and_config_is_inside_the_package():
    for name in recipes.RECIPES:
        assert recipes.recipe_script(name).is_file()
    assert recipes.available_accelerate_configs() == SHIPPED_ACCELERATE
    assert {"seqpo_synthetic", "seqpo_en_zh", "alpo_en_zh", "sft_simt_en_zh"} <= set(recipes.available_configs())
    # the repository's examples/ folders are the package's folders, not copies that could drift
    for folder in ("scripts", "configs", "accelerate_configs"):
        assert (ROOT / "examples" / folder).resolve() == (recipes.RECIPES_DIR / folder)


def test_names_and_files_resolve_and_mistakes_are_user_errors(tmp_path):
    assert recipes.resolve_config("seqpo_synthetic") == recipes.CONFIGS_DIR / "seqpo_synthetic.yaml"
    assert recipes.resolve_config("seqpo_synthetic.yaml") == recipes.CONFIGS_DIR / "seqpo_synthetic.yaml"
    mine = tmp_path / "mine.yaml"
    mine.write_text("max_steps: 1\n")
    assert recipes.resolve_config(mine) == mine
    assert recipes.resolve_accelerate_config("fsdp").name == "fsdp.yaml"
    with pytest.raises(UserInputError, match="unknown recipe 'grpo'"):
        recipes.recipe_script("grpo")
    with pytest.raises(UserInputError, match=r"zero4.*zero3"):
        recipes.resolve_accelerate_config("zero4")
    with pytest.raises(UserInputError, match="neither a file"):
        recipes.resolve_config(tmp_path / "missing.yaml")


def test_real_model_configs_save_checkpoints_and_name_a_tracker():
    import yaml

    for name in ("seqpo_en_zh", "alpo_en_zh", "sft_simt_en_zh"):
        config = yaml.safe_load(recipes.resolve_config(name).read_text())
        assert config["save_strategy"] == "steps" and config["save_total_limit"] >= 1, name
        assert config["report_to"] not in ("none", None), name


def test_the_en_zh_recipe_comment_states_the_trajectories_of_one_optimizer_step():
    """Issue 22: the comment gave the paper's "batch 32" for a config that trains on 320 trajectories a step."""
    import yaml

    path = recipes.resolve_config("seqpo_en_zh")
    config = yaml.safe_load(path.read_text())
    processes = yaml.safe_load(recipes.resolve_accelerate_config("multi_gpu").read_text())["num_processes"]
    per_device, accumulation = config["per_device_train_batch_size"], config["gradient_accumulation_steps"]
    trajectories = per_device * accumulation * processes
    stated = f"{per_device} x {accumulation} x {processes} = {trajectories} trajectories"
    assert stated in " ".join(path.read_text().split()), stated
    assert f"({trajectories // config['num_generations']} sources) a step" in " ".join(path.read_text().split())


@pytest.mark.slow
def test_built_wheel_carries_scripts_and_configs(tmp_path):
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files + [str(p.relative_to(ROOT)) for p in recipes.RECIPES_DIR.rglob("*") if p.is_file()]:
        target = source / name
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, env=ENV, timeout=300)
    (wheel,) = tmp_path.glob("trl_seqpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"trl_seqpo/recipes/scripts/{script}" for script in recipes.RECIPES.values()}
    expected |= {f"trl_seqpo/recipes/accelerate_configs/{name}.yaml" for name in SHIPPED_ACCELERATE}
    expected |= {f"trl_seqpo/recipes/configs/{name}.yaml" for name in recipes.available_configs()}
    assert expected <= names, sorted(expected - names)


# ---------------------------------------------------------------------------------------------- resume
def _checkpoint(folder: Path, step: int, *, weights=True, state=True, record=None) -> Path:
    """A checkpoint folder as transformers leaves it (``state=False``/``weights=False``: killed while saving)."""
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    if weights:
        (checkpoint / "model.safetensors").write_bytes(b"weights")
    if state:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if record is not None:
        (checkpoint / RUN_RECORD).write_text(json.dumps(record))
    return checkpoint


def _args(output_dir, resume=None, config_class=SimpleNamespace):
    return config_class(resume_from_checkpoint=resume, output_dir=str(output_dir))


def test_resume_prefers_the_explicit_checkpoint_then_the_newest_in_output_dir(tmp_path):
    for step in (5, 10, 2):
        _checkpoint(tmp_path, step)
    assert resume_checkpoint(_args(tmp_path)) == str(tmp_path / "checkpoint-10")  # numeric, not lexicographic order
    assert resume_checkpoint(_args(tmp_path, str(tmp_path / "checkpoint-5"))) == str(tmp_path / "checkpoint-5")
    with pytest.raises(UserInputError, match="checkpoint-7"):
        resume_checkpoint(_args(tmp_path, str(tmp_path / "checkpoint-7")))
    assert resume_checkpoint(_args(tmp_path / "new")) is None


def test_a_checkpoint_killed_while_saving_is_skipped_for_the_last_complete_one(tmp_path, caplog):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3, weights=False)  # killed before the weights were written
    broken = _checkpoint(tmp_path, 4, state=False)  # killed while writing trainer_state.json
    (broken / "trainer_state.json").write_text('{"global_st')
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(_args(tmp_path)) == str(tmp_path / "checkpoint-2")
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skipped) == 2 and "checkpoint-4: incomplete (no readable trainer_state.json" in skipped[0]
    assert "checkpoint-3: incomplete (no model weights" in skipped[1]
    with pytest.raises(UserInputError, match="checkpoint-4.* is incomplete"):
        resume_checkpoint(_args(tmp_path, str(broken)))


def test_checkpoints_of_another_recipe_or_model_are_refused(tmp_path):
    import torch
    from trl import SFTConfig

    from trl_seqpo import SeqPOConfig
    from trl_seqpo.recipes.checkpoints import RunRecord

    seqpo = SeqPOConfig(output_dir=str(tmp_path / "sft"), use_cpu=True, bf16=False, num_generations=4)
    sft = _checkpoint(tmp_path / "sft", 3)  # written by `trl sft` or an older release: no run record
    torch.save(SFTConfig(output_dir=str(tmp_path / "sft"), use_cpu=True, bf16=False), sft / "training_args.bin")
    before = {path.name: path.read_bytes() for path in sft.iterdir()}
    with pytest.raises(UserInputError, match=r"written by the sft-simt recipe \(SFTConfig\), this is the seqpo"):
        resume_checkpoint(seqpo, "Qwen/Qwen2.5-0.5B")
    seqpo.resume_from_checkpoint = str(sft)
    with pytest.raises(UserInputError, match="sft-simt recipe"):
        resume_checkpoint(seqpo, "Qwen/Qwen2.5-0.5B")
    assert {path.name: path.read_bytes() for path in sft.iterdir()} == before
    model = tmp_path / "model"
    model.mkdir()
    record = RunRecord("SeqPOConfig", str(model)).record
    _checkpoint(tmp_path / "rl", 1, record=record)
    rl = SeqPOConfig(output_dir=str(tmp_path / "rl"), use_cpu=True, bf16=False, num_generations=4)
    assert resume_checkpoint(rl, str(model)) == str(tmp_path / "rl" / "checkpoint-1")
    with pytest.raises(UserInputError, match=f"a run of model {model}, this run trains Qwen/Qwen2.5-7B"):
        resume_checkpoint(rl, "Qwen/Qwen2.5-7B")
    with pytest.raises(UserInputError, match="is model_name_or_path"):
        resume_checkpoint(SeqPOConfig(output_dir=str(model), use_cpu=True, bf16=False, num_generations=4), str(model))


def test_run_record_is_written_into_each_saved_checkpoint(tmp_path):
    from trl_seqpo.recipes.checkpoints import RunRecord, written_by

    _checkpoint(tmp_path, 7)
    state = SimpleNamespace(global_step=7, is_world_process_zero=True)
    RunRecord("ALPOConfig", "org/model").on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    assert written_by(tmp_path / "checkpoint-7") == {"config_class": "ALPOConfig", "model": "org/model"}
    assert [p.name for p in (tmp_path / "checkpoint-7").glob(".*")] == []  # no temporary file left


_KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
import transformers
save = transformers.Trainer._save_checkpoint
def save_then_die(self, *args, **kwargs):  # a crash right after checkpoint N is complete on disk
    save(self, *args, **kwargs)
    if self.state.global_step >= int(os.environ["KILL_AFTER_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save_checkpoint = save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _fingerprint(checkpoint: Path) -> dict[str, tuple[int, str]]:
    return {
        path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(checkpoint.iterdir())
        if path.is_file()
    }


@pytest.mark.slow
def test_killed_run_continues_after_its_last_checkpoint_when_started_again(tmp_path):
    output = tmp_path / "sft"
    command = [
        str(recipes.recipe_script("sft-simt")), "--config", str(recipes.resolve_config("sft_simt_synthetic")),
        "--model_name_or_path", str(tmp_path / "tiny"), "--output_dir", str(output), "--max_steps", "4",
        "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1", "--num_train_examples", "64",
        "--per_device_train_batch_size", "8", "--warmup_steps", "0",
    ]  # fmt: skip
    kill_env = {**ENV, "KILL_AFTER_STEP": "2"}
    killed = subprocess.run([sys.executable, "-c", _KILL_AFTER_CHECKPOINT, *command], cwd=tmp_path, env=kill_env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    before = {name: _fingerprint(output / name) for name in ("checkpoint-1", "checkpoint-2")}

    resumed = subprocess.run([sys.executable, *command], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {output / 'checkpoint-2'}" in resumed.stderr
    assert sorted(p.name for p in output.glob("checkpoint-*")) == [f"checkpoint-{n}" for n in (1, 2, 3, 4)]
    assert {name: _fingerprint(output / name) for name in before} == before  # earlier checkpoints untouched
    state = json.loads((output / "checkpoint-4" / "trainer_state.json").read_text())
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 from the second, none twice
    assert (output / "model.safetensors").exists()


def test_seqpo_data_file_without_a_column_or_not_utf8_is_one_line_naming_it(tmp_path, capsys):
    from trl_seqpo.recipes import runtime
    from trl_seqpo.recipes.scripts import seqpo

    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text('{"src": "a b", "reference": "x y"}\n')
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"source": "café", "reference": "x"}\n'.encode("latin-1"))
    training = SimpleNamespace(source_column="source", reference_column="reference")
    with pytest.raises(
        UserInputError, match=r"has no column 'source' \(its columns: src, reference\); .*source_column"
    ):
        seqpo.load_split(str(renamed), seqpo.SeqPOScriptArguments(), training, "train")
    with pytest.raises(UserInputError, match=r"latin.jsonl: not UTF-8 \(byte 0xe9 at offset 15\)"):
        seqpo.load_split(str(latin), seqpo.SeqPOScriptArguments(), training, "train")
    args = ["--model_name_or_path", "m", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false",
            "--num_generations", "4", "--dataset_name", str(latin)]  # fmt: skip
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        runtime.run_recipe(lambda s, t, m: seqpo.load_split(s.dataset_name, s, t, "train"), seqpo.make_parser(), args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {latin}: not UTF-8")
    assert latin.read_bytes() == '{"source": "café", "reference": "x"}\n'.encode("latin-1")


def test_alpo_pairs_file_without_the_pair_columns_is_refused_naming_them(tmp_path):
    from trl_seqpo.recipes.scripts import alpo

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejectd": "b"}\n')
    script_args = alpo.ALPOScriptArguments(pairs_file=str(pairs))
    with pytest.raises(UserInputError, match=r"has no column 'rejected' \(its columns: prompt, chosen, rejectd\)"):
        alpo.load_pairs(script_args, SimpleNamespace(seed=0))


# ---------------------------------------------------------------------------------------------- model options
def _model_args(**overrides):
    base = {"attn_implementation": None, "load_in_4bit": False, "load_in_8bit": False, "model_revision": "main",
            "dtype": None}  # fmt: skip
    return SimpleNamespace(**{**base, **overrides})


@pytest.mark.parametrize(
    ("overrides", "module", "message"),
    [
        ({"attn_implementation": "flash_attention_2"}, "flash_attn", "flash_attn package"),
        ({"attn_implementation": "kernels-community/flash-attn"}, "kernels", "pip install kernels"),
        ({"load_in_4bit": True}, "bitsandbytes", "load_in_4bit=true needs bitsandbytes"),
        ({"load_in_8bit": True}, "bitsandbytes", "load_in_8bit=true needs bitsandbytes"),
    ],
)
def test_requested_backend_that_is_not_installed_is_an_error(monkeypatch, overrides, module, message):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match=message):
        check_model_backends(_model_args(**overrides))


def test_installed_or_builtin_backends_pass():
    check_model_backends(_model_args(attn_implementation="sdpa"))
    check_model_backends(_model_args(attn_implementation="eager"))
    with pytest.raises(UserInputError, match="at most one"):
        check_model_backends(_model_args(load_in_4bit=True, load_in_8bit=True))


def test_model_init_kwargs_carry_every_model_option():
    kwargs = model_init_kwargs(
        _model_args(attn_implementation="sdpa", model_revision="v2", dtype="bfloat16"),
        SimpleNamespace(trust_remote_code=True, model_init_kwargs=None),
    )
    assert kwargs == {"revision": "v2", "trust_remote_code": True, "dtype": "bfloat16", "attn_implementation": "sdpa"}


@pytest.mark.slow
def test_script_stops_before_training_when_flash_attn_is_missing(tmp_path):
    pytest.importorskip("trl")
    if __import__("importlib").util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    command = [sys.executable, str(recipes.recipe_script("seqpo")), "--config",
               str(recipes.resolve_config("seqpo_synthetic")), "--model_name_or_path", str(tmp_path / "tiny"),
               "--output_dir", str(tmp_path / "out"), "--attn_implementation", "flash_attention_2"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: attn_implementation='flash_attention_2'")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "tiny").exists()  # nothing was built or trained


@pytest.mark.slow
def test_model_options_reach_the_trained_model(tmp_path):
    import torch
    from trl import ModelConfig, SFTConfig, TrlParser

    from trl_seqpo.recipes.scripts import sft_simt

    parser = TrlParser((sft_simt.SimtSFTScriptArguments, SFTConfig, ModelConfig))
    args = parser.parse_args_and_config(
        args=[
            "--config",
            str(recipes.resolve_config("sft_simt_synthetic")),
            "--model_name_or_path",
            str(tmp_path / "tiny"),
            "--output_dir",
            str(tmp_path / "out"),
            "--max_steps",
            "1",
            "--num_train_examples",
            "16",
            "--per_device_train_batch_size",
            "8",
            "--dtype",
            "bfloat16",
            "--attn_implementation",
            "eager",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "1",
            "--eval_dataset_name",
            "synthetic",
            "--num_eval_examples",
            "8",
        ]  # fmt: skip
    )
    trainer = sft_simt.main(*args)
    assert trainer.model.dtype == torch.bfloat16
    assert trainer.model.config._attn_implementation == "eager"
    assert len(trainer.eval_dataset) == 8
    assert any("eval_loss" in entry for entry in trainer.state.log_history)


def test_sft_and_seqpo_recipes_share_the_synthetic_corpus_arguments_with_their_own_defaults():
    from trl_seqpo.recipes.arguments import SyntheticCorpusArguments
    from trl_seqpo.recipes.scripts import seqpo, sft_simt
    from trl_seqpo.synthetic.language_pair import generate_corpus

    sft, rl = sft_simt.SimtSFTScriptArguments(), seqpo.SeqPOScriptArguments()
    assert isinstance(sft, SyntheticCorpusArguments) and isinstance(rl, SyntheticCorpusArguments)
    assert (sft.num_train_examples, sft.num_eval_examples, sft.synthetic_seed) == (4000, 64, 0)
    assert (rl.num_train_examples, rl.num_eval_examples, rl.synthetic_seed) == (2000, 64, 1)  # SeqPO sees new pairs
    small = seqpo.SeqPOScriptArguments(num_train_examples=5, num_eval_examples=3)
    assert small.synthetic_corpus() == generate_corpus(5, seed=1)
    assert small.synthetic_corpus(evaluation=True) == generate_corpus(3, seed=10_001)
    train_sources = {example.source for example in small.synthetic_corpus()}
    assert not train_sources & {example.source for example in small.synthetic_corpus(evaluation=True)}


# ---------------------------------------------------------------------------------------------- scripts/gpu_smoke.sh
def test_gpu_smoke_plans_plain_and_zero3_runs_of_both_methods():
    result = subprocess.run(["bash", str(ROOT / "scripts/gpu_smoke.sh"), "--dry-run"], capture_output=True,
                            text=True, timeout=60, check=True)  # fmt: skip
    runs = [line for line in result.stderr.splitlines() if "gpu_smoke.py" in line]
    assert len(runs) == 4 and sum("zero3.yaml" in line for line in runs) == 2
    assert sorted(line.split("--stage ")[1].split()[0] for line in runs) == ["alpo", "alpo", "seqpo", "seqpo"]


def test_gpu_smoke_arguments_parse_into_the_recipes_configs(tmp_path):
    from trl import ModelConfig, TrlParser

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_smoke
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from trl_seqpo import ALPOConfig, SeqPOConfig
    from trl_seqpo.recipes.scripts import alpo, seqpo

    for stage, dataclasses in (("seqpo", (seqpo.SeqPOScriptArguments, SeqPOConfig, ModelConfig)),
                               ("alpo", (alpo.ALPOScriptArguments, ALPOConfig, ModelConfig))):  # fmt: skip
        args = gpu_smoke.recipe_args(stage, tmp_path / "m", tmp_path, 3, tiny=True)
        _, training, model = TrlParser(dataclasses).parse_args_and_config(args=args)
        assert training.max_steps == 3 and training.gradient_checkpointing and model.model_name_or_path.endswith("m")
    assert gpu_smoke.SHAPES["0.5b"]["num_layers"] == 24 and gpu_smoke.SHAPES["0.5b"]["hidden_size"] == 896
