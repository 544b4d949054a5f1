"""Zh->En, the paper's second direction: SFT on Chinese-source partial translations, then one SeqPO step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_seqpo import recipes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    ("我们明天去北京开会", "We will go to Beijing for a meeting tomorrow",
     ["We", " will go to", " Beijing for a meeting tomorrow"]),
    ("他昨天买了一本书", "He bought a book yesterday", ["He", " bought a", " book yesterday"]),
    ("今天天气很好", "The weather is nice today", ["", " The weather is nice today"]),
]  # fmt: skip


def test_zh_en_sft_then_seqpo_on_a_chinese_source(tmp_path):
    from trl import ModelConfig, SFTConfig, TrlParser

    from trl_seqpo.recipes.scripts import sft_simt

    sft_rows = tmp_path / "zh_en.sft.jsonl"
    sft_rows.write_text(
        "".join(
            json.dumps({"source": s, "reference": r, "step_outputs": o}, ensure_ascii=False) + "\n"
            for s, r, o in PAIRS * 4
        ),
        encoding="utf-8",
    )
    parser = TrlParser((sft_simt.SimtSFTScriptArguments, SFTConfig, ModelConfig))
    args = parser.parse_args_and_config(
        args=[
            "--config",
            str(recipes.resolve_config("sft_simt_synthetic")),
            "--model_name_or_path",
            str(tmp_path / "tiny"),
            "--output_dir",
            str(tmp_path / "sft"),
            "--max_steps",
            "2",
            "--dataset_name",
            str(sft_rows),
            "--src_lang",
            "Chinese",
            "--tgt_lang",
            "English",
            "--chunk_size",
            "3",
            "--per_device_train_batch_size",
            "4",
        ]  # fmt: skip
    )
    trainer = sft_simt.main(*args)
    messages = trainer.train_dataset[0]["messages"] if "messages" in trainer.train_dataset.column_names else None
    if messages is None:  # SFTTrainer tokenised the rows: check the data the script built instead
        messages = sft_simt.build_dataset(args[0])[0]["messages"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert len(users) == 3 and "我们明" in users[0]  # characters, not one "word" for the whole sentence
    assert (tmp_path / "sft" / "model.safetensors").exists()

    pairs = tmp_path / "zh_en.jsonl"
    pairs.write_text(
        "".join(json.dumps({"source": s, "reference": r}, ensure_ascii=False) + "\n" for s, r, _ in PAIRS * 2),
        encoding="utf-8",
    )
    command = [
        sys.executable, str(ROOT / "examples" / "scripts" / "seqpo.py"), "--config",
        str(recipes.resolve_config("seqpo_synthetic")), "--model_name_or_path", str(tmp_path / "sft"),
        "--dataset_name", str(pairs), "--src_lang", "Chinese", "--tgt_lang", "English", "--source_unit", "char",
        "--latency_unit", "word", "--chunk_size", "3", "--max_steps", "1", "--per_device_train_batch_size", "4",
        "--num_generations", "2", "--max_new_tokens_per_step", "4", "--output_dir", str(tmp_path / "seqpo"),
        "--logging_steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "simt/" in result.stdout + result.stderr
    assert (tmp_path / "seqpo" / "model.safetensors").exists()
