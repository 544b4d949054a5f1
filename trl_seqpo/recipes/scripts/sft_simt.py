# Copyright 2025 trl_seqpo developers. Licensed under the Apache License, Version 2.0.
"""SFT warm-up for simultaneous translation on partial-translation data (SeqPO-SiMT Sec. 3.1, App. A.2).

The policy learns, for each source prefix, which prefix of the translation it may already write. With
``dataset_name: synthetic`` the data comes from the synthetic language pair's gold alignments
(`trl_seqpo.seqpo.sft_data.gold_sft_dataset`); with a JSON-lines file, each row holds ``source`` and
``reference`` plus either ``alignment`` (gold ``[source_index, target_index]`` pairs) or ``step_outputs`` (e.g. from
``trl-seqpo simt align``). Source and target units default from the languages (characters for zh/ja/th), so
``--src_lang Chinese --tgt_lang English`` trains Zh->En. When ``model_name_or_path`` is a local directory that does
not exist yet and ``build_tiny_model`` is true, a tiny Qwen2-style model and tokenizer for the synthetic pair are
built there first (nothing is downloaded).

Usage (CPU, the tiny synthetic setup, a few minutes):

    python examples/scripts/sft_simt.py --config examples/configs/sft_simt_synthetic.yaml

    accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml \
        examples/scripts/sft_simt.py --config examples/configs/sft_simt_synthetic.yaml --use_cpu false

Any field can be overridden on the command line, e.g. ``--max_steps 20 --output_dir /tmp/sft``. A real model (on
GPUs) uses its own chat template; set ``end_of_translation`` to a token of that tokenizer that is not its
end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser

from trl_seqpo.errors import UserInputError
from trl_seqpo.recipes import runtime
from trl_seqpo.recipes.arguments import SyntheticCorpusArguments
from trl_seqpo.seqpo.sft_data import END_OF_TRANSLATION, build_sft_dataset, gold_sft_dataset
from trl_seqpo.synthetic import language_pair as synthetic


@dataclass
class SimtSFTScriptArguments(SyntheticCorpusArguments):
    """Data and model-building options of the SiMT SFT example."""

    dataset_name: str = field(
        default="synthetic",
        metadata={"help": "'synthetic', or a JSON-lines file with source, reference and alignment or step_outputs."},
    )
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Evaluation rows, like dataset_name (used when eval_strategy is not 'no')."},
    )
    chunk_size: int = field(default=2, metadata={"help": "Source units per chunk (the paper's m)."})
    extra_wait: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Source units each write is delayed by (gold data); several values: one drawn per row."},
    )
    prompt_format: str = field(default="chat", metadata={"help": "'chat' (messages) or 'paper' (prompt/completion)."})
    src_lang: str = field(default=synthetic.SOURCE_LANGUAGE, metadata={"help": "Source language name."})
    tgt_lang: str = field(default=synthetic.TARGET_LANGUAGE, metadata={"help": "Target language name."})
    source_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for source chunks; default from src_lang (char: zh/ja/th)."}
    )
    target_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for the target (gold alignments); default from tgt_lang."}
    )
    end_of_translation: str = field(
        default=END_OF_TRANSLATION, metadata={"help": "Token that ends the whole translation."}
    )
    build_tiny_model: bool = field(
        default=True, metadata={"help": "Build a tiny model at model_name_or_path if that directory does not exist."}
    )
    tiny_tokenizer_kind: str = field(default="wordlevel", metadata={"help": "'wordlevel' or 'bpe' (tiny model)."})


def load_rows(path: str) -> list[dict]:
    """Read a JSON-lines file of sentence pairs; errors name the file and line."""
    from trl_seqpo.jsonl import read_json_objects

    rows = []
    for number, row in read_json_objects(path):
        if "source" not in row or ("alignment" not in row and "step_outputs" not in row):
            raise UserInputError("each row needs 'source' and 'alignment' or 'step_outputs'", path=path, line=number)
        rows.append(row)
    return rows


def build_dataset(script_args: SimtSFTScriptArguments, dataset_name: str | None = None, evaluation: bool = False):
    """Partial-translation SFT rows from ``dataset_name`` (default: the training data)."""
    dataset_name = dataset_name or script_args.dataset_name
    seed = script_args.seed_for(evaluation)
    common = {"chunk_size": script_args.chunk_size, "src_lang": script_args.src_lang, "tgt_lang": script_args.tgt_lang}
    common.update(prompt_format=script_args.prompt_format, end_of_translation=script_args.end_of_translation)
    common.update(source_unit=script_args.source_unit)
    gold = {"extra_wait": script_args.extra_wait, "seed": seed, "target_unit": script_args.target_unit}
    if dataset_name == "synthetic":
        return gold_sft_dataset(script_args.synthetic_corpus(evaluation), **gold, **common)
    rows = load_rows(dataset_name)
    if all("step_outputs" in row for row in rows):
        return build_sft_dataset(rows, **common)
    return gold_sft_dataset(rows, **gold, **common)


def main(script_args: SimtSFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    if script_args.prompt_format not in ("chat", "paper"):
        raise UserInputError(f"prompt_format must be 'chat' or 'paper', got {script_args.prompt_format!r}")
    if script_args.prompt_format == "paper" and training_args.assistant_only_loss:
        raise UserInputError("prompt_format 'paper' has no assistant turns: set assistant_only_loss: false")
    runtime.check_model_backends(model_args)
    checkpoint = runtime.resume_checkpoint(training_args, model_args.model_name_or_path)
    runtime.ensure_tiny_model(
        script_args.build_tiny_model, model_args, training_args, kind=script_args.tiny_tokenizer_kind
    )
    with training_args.main_process_first(desc="build partial-translation data"):
        train_dataset = build_dataset(script_args)
        eval_dataset = None
        if training_args.eval_strategy != "no":
            if script_args.eval_dataset_name is None:
                raise UserInputError(
                    f"eval_strategy={training_args.eval_strategy!r} needs evaluation rows: set eval_dataset_name"
                )
            eval_dataset = build_dataset(script_args, script_args.eval_dataset_name, evaluation=True)
    return runtime.train_and_save(SFTTrainer, model_args, training_args, train_dataset, eval_dataset, checkpoint)


def make_parser(prog: str | None = None) -> TrlParser:
    """The script's ``TrlParser`` (as TRL's scripts define it; ``trl-seqpo train`` reads the settings with it)."""
    return TrlParser((SimtSFTScriptArguments, SFTConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    runtime.run_recipe(main, make_parser())
