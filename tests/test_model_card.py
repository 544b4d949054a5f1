"""The model card the trainers write on save: base_model, the trl-seqpo tag, and a quick start that really runs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from tests.tiny_models import save_seqpo_tiny_model, seqpo_config, seqpo_train_rows
from trl_seqpo import model_card
from trl_seqpo.evaluate.simt import SimTEvalConfig
from trl_seqpo.rollout.settings import saved_rollout_settings

COMMON = {"use_cpu": True, "report_to": "none", "bf16": False, "gradient_checkpointing": False, "save_strategy": "no"}


def read_card(output_dir: Path) -> tuple[dict, str, str]:
    """(metadata, body, the quick start's Python) of ``output_dir/README.md``."""
    text = (output_dir / "README.md").read_text(encoding="utf-8")
    _, metadata, body = text.split("---\n", 2)
    quick_start = re.search(r"## Quick start.*?```python\n(.*?)```", body, flags=re.DOTALL)
    assert quick_start, body
    return yaml.safe_load(metadata), body, quick_start.group(1)


def run_quick_start(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "model-card-quick-start", "exec"), namespace)
    return namespace


@pytest.mark.usefixtures("one_thread")
def test_seqpo_card_names_the_base_model_and_decodes_simultaneously(tmp_path, capsys):
    from trl_seqpo import SeqPOTrainer

    model_path, _ = save_seqpo_tiny_model(tmp_path / "sft-start")
    args = seqpo_config(tmp_path, output_dir=str(tmp_path / "seqpo-run"), beta=0.0)  # no reference model to build
    trainer = SeqPOTrainer(model=model_path, args=args, train_dataset=seqpo_train_rows())
    trainer.save_model()  # what the quick start loads
    trainer.create_model_card(model_name="seqpo-run")  # what TRL runs on every checkpoint save
    # the rollout settings next to the weights, which evaluation and the server default to
    saved = saved_rollout_settings(tmp_path / "seqpo-run")
    assert saved == dataclasses.asdict(trainer.rollout_config)
    evaluation = SimTEvalConfig(model=str(tmp_path / "seqpo-run"), data="d.jsonl", output_dir=str(tmp_path / "e"))
    # the run's budgets (4 tokens, 1 step after the source), not evaluation's defaults (60, 2)
    assert (evaluation.max_new_tokens_per_step, evaluation.max_steps_after_source) == (4, 1)

    metadata, body, code = read_card(tmp_path / "seqpo-run")
    assert metadata["base_model"] == model_path
    assert {"trl-seqpo", "seqpo", "trl"} <= set(metadata["tags"])
    assert "pipeline(" not in body and "SeqPO-SiMT" in body and "arxiv.org/abs/2505.20622" in body
    namespace = run_quick_start(code)
    # the run's own rollout settings, decoded greedily
    expected = dataclasses.replace(trainer.rollout_config, temperature=0.0, top_p=1.0, top_k=0)
    assert namespace["config"] == expected
    trajectory = namespace["trajectory"]
    chunks = -(-len(model_card.example_source(args.src_lang).split()) // args.chunk_size)
    assert len(trajectory.step_outputs) >= chunks
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == trajectory.translation and len(printed) == 3


@pytest.mark.usefixtures("one_thread")
def test_alpo_card_names_the_base_model_and_translates_a_document(tmp_path, capsys):
    from trl_seqpo.alpo.config import ALPOConfig
    from trl_seqpo.alpo.trainer import ALPOTrainer
    from trl_seqpo.synthetic.subtitles import save_line_writer_model

    model_path = str(save_line_writer_model(tmp_path / "sft"))
    prompt = "Translate to Synthetic :\n1. the dog\nTranslation:\n1. "
    pairs = Dataset.from_dict({"prompt": [prompt] * 2, "chosen": ["lo hundo\n"] * 2, "rejected": ["lo\n"] * 2,
                               "weight": [1.0] * 2, "beta_scale": [1.0] * 2, "ends_document": [True] * 2})  # fmt: skip
    args = ALPOConfig(output_dir=str(tmp_path / "alpo-run"), per_device_train_batch_size=2, **COMMON)
    trainer = ALPOTrainer(model=model_path, args=args, train_dataset=pairs)
    trainer.save_model()
    trainer.create_model_card(tags="my-tag")

    metadata, body, code = read_card(tmp_path / "alpo-run")
    assert metadata["base_model"] == model_path
    assert {"trl-seqpo", "alpo", "my-tag"} <= set(metadata["tags"])
    assert "From Utterance to Vividity" in body and "# Model Card for alpo-run" in body
    namespace = run_quick_start(code)
    assert len(namespace["lines"]) == len(model_card.EXAMPLE_SUBTITLES)
    assert capsys.readouterr().out.count("\n") >= len(model_card.EXAMPLE_SUBTITLES)


def test_card_links_a_hub_base_model_and_quotes_a_local_one():
    kwargs = dict(model_name="m", model_id="out", quick_start="pass", trainer_name="ALPO", method="", paper={},
                  tags=["alpo"])  # fmt: skip
    hub = str(model_card.build_model_card(base_model="Qwen/Qwen2.5-7B-Instruct", **kwargs))
    assert "[Qwen/Qwen2.5-7B-Instruct](https://huggingface.co/Qwen/Qwen2.5-7B-Instruct)" in hub
    local = str(model_card.build_model_card(base_model="/runs/sft/final", **kwargs))
    assert "`/runs/sft/final`" in local and "base_model: /runs/sft/final" in local
