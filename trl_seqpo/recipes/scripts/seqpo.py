# Copyright 2025 trl_seqpo developers. Licensed under the Apache License, Version 2.0.
"""SeqPO-SiMT: GRPO over multi-step simultaneous-translation trajectories (arXiv:2505.20622, Alg. 1).

The dataset needs a source and a reference column. With ``dataset_name: synthetic`` the synthetic language pair is
generated locally; otherwise ``dataset_name`` is a JSON-lines/CSV/Parquet file or a Hub dataset id. Start from an
SFT warm-up checkpoint (``examples/scripts/sft_simt.py``): a model that has never seen the streaming format learns
nothing useful from RL alone. When ``model_name_or_path`` is a local directory that does not exist and
``build_tiny_model`` is true, an untrained tiny model is built there so the script runs anywhere (smoke tests).

Usage:

    # CPU, tiny synthetic setup (minutes)
    python examples/scripts/seqpo.py --config examples/configs/seqpo_synthetic.yaml

    # the same under accelerate (one process on CPU)
    accelerate launch --config_file examples/accelerate_configs/single_gpu.yaml --cpu \
        examples/scripts/seqpo.py --config examples/configs/seqpo_synthetic.yaml

    # the paper's En->Zh setup on 8 GPUs: DeepSpeed ZeRO-3 for training, vLLM colocated for the rollout
    accelerate launch --config_file examples/accelerate_configs/zero3.yaml \
        examples/scripts/seqpo.py --config examples/configs/seqpo_en_zh.yaml

    # the same from an installed wheel (no clone needed)
    trl-seqpo train seqpo --config seqpo_en_zh --accelerate_config zero3

Any field can be overridden on the command line, e.g. ``--max_steps 2 --output_dir /tmp/seqpo``. Run the same
command again after a crash: training resumes from the newest checkpoint in ``output_dir`` (or from
``--resume_from_checkpoint PATH``). With ``eval_strategy`` other than ``no``, ``dataset_test_split`` (Hub datasets)
or ``eval_dataset_name`` (a file) gives the evaluation rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset
from trl import ModelConfig, TrlParser

from trl_seqpo import SeqPOConfig, SeqPOTrainer
from trl_seqpo.errors import UserInputError
from trl_seqpo.recipes import runtime
from trl_seqpo.recipes.arguments import SyntheticCorpusArguments
from trl_seqpo.synthetic import language_pair as synthetic


@dataclass
class SeqPOScriptArguments(SyntheticCorpusArguments):
    """Data and model-building options of the SeqPO example."""

    dataset_name: str = field(
        default="synthetic",
        metadata={"help": "'synthetic', a local .jsonl/.json/.csv/.parquet file, or a Hub dataset id."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "Split to evaluate on (Hub datasets)."})
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Evaluation rows: a local file, or 'synthetic' (used when eval_strategy is not 'no')."},
    )
    num_train_examples: int = field(default=2000, metadata={"help": "Synthetic sentence pairs to train on."})
    synthetic_seed: int = field(default=1, metadata={"help": "Seed of the synthetic corpus (differs from SFT's)."})
    build_tiny_model: bool = field(
        default=False, metadata={"help": "Build an untrained tiny model at model_name_or_path if it does not exist."}
    )


def load_split(
    name: str, script_args: SeqPOScriptArguments, training_args: SeqPOConfig, split: str, evaluation: bool = False
):
    """One split as a dataset with only the source and reference columns."""
    if name == "synthetic":
        return synthetic.to_dataset(script_args.synthetic_corpus(evaluation)).remove_columns("alignment")
    path = Path(name)
    if path.suffix in {".jsonl", ".json", ".csv", ".parquet"}:
        if not path.exists():
            raise FileNotFoundError(f"dataset file {path} does not exist")
        if path.suffix != ".parquet":
            runtime.check_utf8(path)
        builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
        dataset = load_dataset(builder, data_files=str(path), split="train")
    else:
        dataset = load_dataset(name, script_args.dataset_config)[split]
    columns = {"source_column": training_args.source_column, "reference_column": training_args.reference_column}
    runtime.check_columns(dataset, columns, name)
    keep = {training_args.source_column, training_args.reference_column}
    return dataset.remove_columns([c for c in dataset.column_names if c not in keep])


def load_datasets(script_args: SeqPOScriptArguments, training_args: SeqPOConfig):
    """The training rows, and the evaluation rows when ``eval_strategy`` is not ``no`` (else ``None``)."""
    train = load_split(script_args.dataset_name, script_args, training_args, script_args.dataset_train_split)
    if training_args.eval_strategy == "no":
        return train, None
    name = script_args.eval_dataset_name or script_args.dataset_name
    if name == script_args.dataset_name and Path(name).suffix in {".jsonl", ".json", ".csv", ".parquet"}:
        strategy = training_args.eval_strategy
        raise UserInputError(f"eval_strategy={strategy!r} needs evaluation rows: set eval_dataset_name")
    evaluation = load_split(name, script_args, training_args, script_args.dataset_test_split, evaluation=True)
    return train, evaluation


def main(script_args: SeqPOScriptArguments, training_args: SeqPOConfig, model_args: ModelConfig):
    runtime.check_model_backends(model_args)
    checkpoint = runtime.resume_checkpoint(training_args, model_args.model_name_or_path)
    runtime.ensure_tiny_model(script_args.build_tiny_model, model_args, training_args)
    with training_args.main_process_first(desc="load data"):
        train_dataset, eval_dataset = load_datasets(script_args, training_args)
    return runtime.train_and_save(SeqPOTrainer, model_args, training_args, train_dataset, eval_dataset, checkpoint)


def make_parser(prog: str | None = None) -> TrlParser:
    """The script's ``TrlParser`` (as TRL's scripts define it; ``trl-seqpo train`` reads the settings with it)."""
    return TrlParser((SeqPOScriptArguments, SeqPOConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    runtime.run_recipe(main, make_parser())
