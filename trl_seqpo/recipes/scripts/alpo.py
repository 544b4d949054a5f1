# Copyright 2025 trl_seqpo developers. Licensed under the Apache License, Version 2.0.
"""ALPO preference training on line-level pairs (ALPO paper Sec. 3.4, Eq. 2-9) with `trl_seqpo.ALPOTrainer`.

The pairs come either from ``pairs_file`` (written by ``trl-seqpo alpo pairs``, with its ``.stats.json`` beside it)
or from ``candidates_file`` (written by ``trl-seqpo alpo sample``), in which case they are built here with the
prefix-mixing schedule of the script arguments (``prefix_mix_start``, ``prefix_mix_end``, ``prefix_mix_stages``).

With ``synthetic: true`` the script is self-contained: when missing, it builds a tiny Qwen2-style model at
``model_name_or_path`` (nothing is downloaded) and a small candidates file of the synthetic language pair whose
scores follow a documented hidden preference (synonyms of `trl_seqpo.synthetic.language_pair.TARGET_SYNONYMS` are
preferred; dropped, repeated or swapped words are penalised).

Usage (CPU, tiny synthetic setup, 40 steps in about a minute):

    python examples/scripts/alpo.py --config examples/configs/alpo_synthetic.yaml

The paper's setup (8 GPUs, 1 pair per device, 12 accumulation steps = 96 pairs per step, DeepSpeed ZeRO-3):

    accelerate launch --config_file examples/accelerate_configs/zero3.yaml \
        examples/scripts/alpo.py --config examples/configs/alpo_en_zh.yaml

    # the same from an installed wheel (no clone needed)
    trl-seqpo train alpo --config alpo_en_zh --accelerate_config zero3

Any field can be overridden on the command line, e.g. ``--max_steps 2 --output_dir /tmp/alpo``. Run the same
command again after a crash: training resumes from the newest checkpoint in ``output_dir`` (or from
``--resume_from_checkpoint PATH``). With ``eval_strategy`` other than ``no``, ``eval_pairs_file`` gives the
evaluation pairs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset
from trl import ModelConfig, TrlParser

from trl_seqpo import ALPOConfig, ALPOTrainer
from trl_seqpo.alpo.pairs import build_preference_pairs, read_candidate_records, stats_path_for
from trl_seqpo.errors import UserInputError
from trl_seqpo.recipes import runtime


@dataclass
class ALPOScriptArguments:
    """Data options of the ALPO example."""

    pairs_file: str | None = field(
        default=None, metadata={"help": "Pairs JSONL written by `trl-seqpo alpo pairs` (stats read beside it)."}
    )
    candidates_file: str | None = field(
        default=None,
        metadata={"help": "Candidates JSONL written by `trl-seqpo alpo sample`; pairs are built with the config."},
    )
    eval_pairs_file: str | None = field(
        default=None,
        metadata={"help": "Pairs JSONL to evaluate on (used when eval_strategy is not 'no')."},
    )
    synthetic: bool = field(
        default=False,
        metadata={"help": "Build a tiny model and a synthetic candidates file where they are missing (CPU demo)."},
    )
    synthetic_documents: int = field(default=16, metadata={"help": "Synthetic documents to write."})
    synthetic_lines_per_document: int = field(default=4, metadata={"help": "Lines per synthetic document."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic corpus and scores."})
    prefix_mix_start: float = field(default=0.2, metadata={"help": "Lambda of the first prefix-mixing stage (Eq. 6)."})
    prefix_mix_end: float = field(default=0.6, metadata={"help": "Lambda of the last prefix-mixing stage."})
    prefix_mix_stages: int = field(default=5, metadata={"help": "Stages of the lambda schedule; 0 = continuous."})


def synthetic_candidate_records(documents: int, lines_per_document: int, seed: int) -> list[dict]:
    """Judged candidates for the synthetic language pair, in the format of ``trl-seqpo alpo sample``.

    The hidden preference: each target synonym of `TARGET_SYNONYMS` adds 15 points
    to a base of 60; a dropped word costs 25, a repeated word 20, two swapped words 15; plus up to 3 points of noise.
    The chosen prefix of each line is the reference.
    """
    from trl_seqpo.subtitles.documents import make_documents, render_document_prompt
    from trl_seqpo.synthetic import language_pair as synthetic

    rng = random.Random(seed)
    corpus = synthetic.generate_corpus(documents * lines_per_document, seed=seed, max_words=7)
    docs = make_documents([(ex.source, ex.reference) for ex in corpus], lines_per_document, doc_id_prefix="syn")

    def variants(reference: str) -> list[tuple[str, float]]:
        words = reference.split()
        preferred = [synthetic.TARGET_SYNONYMS.get(word, word) for word in words]
        bonus = 15.0 * sum(a != b for a, b in zip(words, preferred))
        out = [(reference, 60.0), (" ".join(preferred), 60.0 + bonus)]
        out.append((" ".join(words[:-1]), 35.0))  # dropped word
        out.append((" ".join(words + words[-1:]), 40.0))  # repeated word
        swapped = words[1:2] + words[:1] + words[2:]
        out.append((" ".join(swapped), 45.0))
        out.append((" ".join(preferred[:-1]), 35.0 + bonus))
        return out

    records = []
    for doc in docs:
        prompt = render_document_prompt(doc, synthetic.SOURCE_LANGUAGE, synthetic.TARGET_LANGUAGE)
        for index, (source, reference) in enumerate(zip(doc.source_lines, doc.target_lines)):
            candidates = [
                {"text": text, "origin": "reference" if i == 0 else "policy", "score": score + rng.uniform(0, 3)}
                for i, (text, score) in enumerate(variants(reference))
            ]
            records.append(
                {
                    "doc_id": doc.doc_id,
                    "unit_index": index,
                    "line_ids": [index],
                    "source": source,
                    "reference": reference,
                    "document_prompt": prompt,
                    "prefix": list(doc.target_lines[:index]),
                    "candidates": candidates,
                    "judge_failed": False,
                }
            )
    return records


def prepare_synthetic(script_args: ALPOScriptArguments, model_args: ModelConfig) -> None:
    """Write the synthetic candidates file and the tiny model where they do not exist yet."""
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    if script_args.candidates_file is None and script_args.pairs_file is None:
        raise UserInputError("synthetic: true needs candidates_file (where to write the synthetic candidates)")
    records = synthetic_candidate_records(
        script_args.synthetic_documents, script_args.synthetic_lines_per_document, script_args.synthetic_seed
    )
    if script_args.candidates_file is not None and not Path(script_args.candidates_file).exists():
        path = Path(script_args.candidates_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    model_dir = Path(model_args.model_name_or_path)
    if not model_dir.exists():
        prompts = sorted({record["document_prompt"] for record in records})
        save_tiny_model(model_dir, extra_texts=prompts, hidden_size=64, num_layers=2, num_heads=2, head_dim=32,
                        intermediate_size=128, seed=script_args.synthetic_seed)  # fmt: skip


def load_pairs(script_args: ALPOScriptArguments, training_args: ALPOConfig):
    """The training pairs and their build counts (or None)."""
    if script_args.candidates_file is not None:
        records = read_candidate_records(script_args.candidates_file)
        dataset, stats = build_preference_pairs(
            records,
            prefix_mix_start=script_args.prefix_mix_start,
            prefix_mix_end=script_args.prefix_mix_end,
            prefix_mix_stages=script_args.prefix_mix_stages,
            seed=training_args.seed,
        )
        return dataset, stats.to_dict()
    if script_args.pairs_file is None:
        raise UserInputError("set pairs_file (from `trl-seqpo alpo pairs`) or candidates_file (from `alpo sample`)")
    if not Path(script_args.pairs_file).is_file():
        raise FileNotFoundError(f"pairs_file {script_args.pairs_file} does not exist")
    runtime.check_utf8(script_args.pairs_file)
    dataset = load_dataset("json", data_files=script_args.pairs_file, split="train")
    needed = {name: name for name in ("prompt", "chosen", "rejected")}
    runtime.check_columns(dataset, needed, script_args.pairs_file, "write the pairs with `trl-seqpo alpo pairs`")
    stats_path = stats_path_for(script_args.pairs_file)
    stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else None
    return dataset, stats


def main(script_args: ALPOScriptArguments, training_args: ALPOConfig, model_args: ModelConfig):
    runtime.check_model_backends(model_args)
    checkpoint = runtime.resume_checkpoint(training_args, model_args.model_name_or_path)
    if script_args.synthetic:
        prepare_synthetic(script_args, model_args)
    train_dataset, stats = load_pairs(script_args, training_args)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        if script_args.eval_pairs_file is None:
            raise UserInputError(
                f"eval_strategy={training_args.eval_strategy!r} needs evaluation pairs: set eval_pairs_file"
            )
        eval_dataset = load_dataset("json", data_files=script_args.eval_pairs_file, split="train")
    return runtime.train_and_save(
        ALPOTrainer, model_args, training_args, train_dataset, eval_dataset, checkpoint, pair_stats=stats
    )


def make_parser(prog: str | None = None) -> TrlParser:
    """The script's ``TrlParser`` (as TRL's scripts define it; ``trl-seqpo train`` reads the settings with it)."""
    return TrlParser((ALPOScriptArguments, ALPOConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    runtime.run_recipe(main, make_parser())
