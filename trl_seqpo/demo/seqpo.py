"""The SeqPO-SiMT part of `trl-seqpo demo`: synthetic language pair, SFT warm-ups, SeqPO, evaluation.

Stages (`SEQPO_STAGES`; each skipped when its output exists, so a killed demo resumes):

1. ``data``: a synthetic language pair (`trl_seqpo.synthetic.language_pair`), train and held-out test sets (no test
   source appears in the training set), and a tiny Qwen2-style model with a word-level tokenizer
   (`trl_seqpo.synthetic.tiny_models`);
2. ``sft``: SFT warm-up with TRL's ``SFTTrainer`` on exact partial translations (`trl_seqpo.seqpo.sft_data`,
   SeqPO-SiMT App. A.2) in the chat format, on the data as it is: each write as early as the gold alignment allows
   (``extra_wait=(0,)``; other values delay writes on purpose, for experiments);
3. ``seqpo``: SeqPO-SiMT from the SFT model with `SeqPOTrainer` on the fused chrF + AL reward;
4. ``evaluate``: greedy simultaneous decoding of the test set (`SimultaneousRollout`) by every model with its own
   read/write policy, by the SFT model under wait-k (k in ``wait_k``, the paper's "SFT + wait-k"), and the gold
   alignment's eager policy; one JSON line per system in ``results.jsonl``, written as soon as it is scored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from trl_seqpo.demo.common import DemoContext, done_marker, train_sft, training_arguments
from trl_seqpo.jsonl import atomic_write_jsonl, read_jsonl

__all__ = ["EVALUATED_MODELS", "SEQPO_STAGES", "evaluate_model", "seqpo_summary"]


def stage_data(ctx: DemoContext) -> None:
    """Synthetic train/test pairs (test sources never seen in training) and the untrained tiny model."""
    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    s, paths = ctx.settings, ctx.paths
    if not done_marker(paths.data).exists():
        paths.data.mkdir(parents=True, exist_ok=True)
        train = synthetic.generate_corpus(s.num_train, seed=s.seed, min_words=s.min_words, max_words=s.max_words)
        seen = {ex.source for ex in train}
        pool = synthetic.SyntheticPair(s.seed + 1, s.min_words, s.max_words)
        test: list[synthetic.SyntheticExample] = []
        while len(test) < s.num_test:
            example = pool.sample()
            if example.source not in seen:
                seen.add(example.source)
                test.append(example)
        for path, examples in ((paths.train, train), (paths.test, test)):
            atomic_write_jsonl(path, [dataclasses.asdict(ex) for ex in examples])
        done_marker(paths.data).write_text("ok\n")
    init = paths.model("init")
    if not done_marker(init).exists():
        save_tiny_model(init, kind=s.tokenizer_kind, seed=s.seed)
        done_marker(init).write_text("ok\n")


def stage_sft(ctx: DemoContext) -> None:
    """SFT warm-up on exact partial translations (chat format, assistant-only loss), written as early as the gold
    alignment allows unless ``extra_wait`` asks for delays."""
    _train_sft(ctx, "sft", ctx.settings.extra_wait)


def _train_sft(ctx: DemoContext, name: str, extra_wait: tuple[int, ...], quiet: bool = False) -> None:
    s, paths = ctx.settings, ctx.paths
    out = paths.model(name)
    if done_marker(out).exists():
        return
    from trl_seqpo.seqpo.sft_data import gold_sft_dataset
    from trl_seqpo.synthetic import language_pair as synthetic

    train = read_jsonl(paths.train)
    dataset = gold_sft_dataset(
        train,
        s.chunk_size,
        synthetic.SOURCE_LANGUAGE,
        synthetic.TARGET_LANGUAGE,
        prompt_format="chat",
        extra_wait=list(extra_wait),
        seed=s.seed,
    )
    train_sft(
        dataset,
        paths.model("init"),
        out,
        **training_arguments(s, "sft", paths.root / f"{name}_run", logs=8),
        lr_scheduler_type=s.sft_lr_scheduler,
        warmup_steps=min(20, s.sft_steps // 10),
        assistant_only_loss=True,
        max_length=256,
        disable_tqdm=quiet or None,
        log_level="warning" if quiet else "passive",
    )


def stage_seqpo(ctx: DemoContext) -> None:
    """SeqPO-SiMT from the SFT model: GRPO on the fused chrF + AL reward (Eq. 2) with `SeqPOTrainer`."""
    s, paths = ctx.settings, ctx.paths
    out = paths.model("seqpo")
    if done_marker(out).exists():
        return
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_seqpo import SeqPOConfig, SeqPOTrainer
    from trl_seqpo.synthetic import language_pair as synthetic

    train = read_jsonl(paths.train)
    dataset = Dataset.from_dict({"source": [r["source"] for r in train], "reference": [r["reference"] for r in train]})
    config = SeqPOConfig(
        **training_arguments(s, "seqpo", paths.root / "seqpo_run", logs=10),
        gradient_checkpointing=False,
        num_generations=s.seqpo_num_generations,
        temperature=s.seqpo_temperature,
        beta=s.seqpo_beta,
        chunk_size=s.chunk_size,
        src_lang=synthetic.SOURCE_LANGUAGE,
        tgt_lang=synthetic.TARGET_LANGUAGE,
        source_unit="word",
        latency_unit="word",
        max_new_tokens_per_step=s.seqpo_max_new_tokens_per_step,
        max_steps_after_source=s.max_steps_after_source,
        quality_reward="chrf",
        latency_reward="average_lagging",
        latency_truncation=s.seqpo_latency_truncation,
        latency_floor=s.seqpo_latency_floor,
    )
    sft = str(paths.model("sft"))
    trainer = SeqPOTrainer(
        model=sft, args=config, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(sft)
    )
    result = trainer.train()
    trainer.save_model(str(out))
    curve = [
        {k: entry[k] for k in ("step", "simt/average_lagging", "simt/quality", "kl") if k in entry}
        for entry in trainer.state.log_history
        if "simt/average_lagging" in entry
    ]
    metrics = {"train_runtime_s": result.metrics.get("train_runtime"), "training_curve": curve}
    (out / "seqpo_metrics.json").write_text(json.dumps(metrics, indent=2))
    done_marker(out).write_text("ok\n")


#: model name under ``models/`` -> label in the results table; a stage that trains a model adds itself here.
EVALUATED_MODELS: dict[str, str] = {"sft": "SFT", "seqpo": "SeqPO"}


def _score(rows: list[dict[str, Any]], hypotheses: list[str], delays: list[list[int]]) -> dict[str, float]:
    import sacrebleu

    from trl_seqpo.simt.chunking import count_units
    from trl_seqpo.simt.latency import reference_length, sentence_latency

    references = [row["reference"] for row in rows]
    als, laals = [], []
    for row, hyp_delays in zip(rows, delays):
        n = count_units(row["source"], "word")
        latency = sentence_latency(hyp_delays, n, reference_length(row["reference"], "word"))
        als.append(latency["AL"])
        laals.append(latency["LAAL"])
    return {
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "al": sum(als) / len(als),
        "laal": sum(laals) / len(laals),
    }


def _record(ctx: DemoContext, result: dict[str, Any], translations: list[dict[str, Any]]) -> None:
    ctx.paths.translations.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(ctx.paths.translations / f"{result['system']}.jsonl", translations)
    with ctx.paths.results.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(result) + "\n")


def evaluation_rollout_config(settings: Any) -> Any:
    """The rollout of the demo's evaluation: the settings' rollout fields by name (chunk size, step budget, ...),
    greedy, in the synthetic language pair's words."""
    from trl_seqpo.rollout.settings import rollout_config_from
    from trl_seqpo.synthetic import language_pair as synthetic

    return rollout_config_from(
        settings, src_lang=synthetic.SOURCE_LANGUAGE, tgt_lang=synthetic.TARGET_LANGUAGE, source_unit="word",
        target_unit="word", prompt_format="chat", temperature=0.0,
    )  # fmt: skip


def evaluate_model(ctx: DemoContext, model_name: str, label: str, policies: list[Any | None]) -> None:
    """Greedy simultaneous decoding of the test set with one model under each policy (``None`` = its own).

    Each (model, policy) pair becomes one ``results.jsonl`` line, skipped when already there.
    """
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo.rollout.hf import HFGenerationBackend
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout

    s, paths = ctx.settings, ctx.paths
    done = {row["system"] for row in read_jsonl(paths.results, missing_ok=True)}
    todo = [(p, model_name if p is None else f"{model_name}+{p.name}") for p in policies]
    todo = [(p, system) for p, system in todo if system not in done]
    if not todo:
        return
    tokenizer = AutoTokenizer.from_pretrained(paths.model(model_name))
    model = AutoModelForCausalLM.from_pretrained(paths.model(model_name)).eval()
    rollout = SimultaneousRollout(HFGenerationBackend(model, tokenizer), tokenizer, evaluation_rollout_config(s))
    rows = read_jsonl(paths.test)
    for policy, system in todo:
        trajectories = []
        batches = range(0, len(rows), s.eval_batch_size)
        for start in tqdm(batches, desc=f"decode {system}", leave=False):
            sources = [row["source"] for row in rows[start : start + s.eval_batch_size]]
            trajectories.extend(rollout.run(sources, num_generations=1, policy=policy, seed=s.seed))
        scores = _score(rows, [t.translation for t in trajectories], [t.delays for t in trajectories])
        name = label if policy is None else f"{label} + {policy.name}"
        result = {"system": system, "name": name, "policy": "own" if policy is None else policy.name, **scores}
        translations = [
            {"source": r["source"], "reference": r["reference"], "translation": t.translation, "steps": t.step_outputs}
            for r, t in zip(rows, trajectories)
        ]
        _record(ctx, result, translations)


def stage_evaluate(ctx: DemoContext) -> None:
    """Score the gold eager policy, then every trained model with its own policy and under wait-k schedules."""
    from trl_seqpo.seqpo.sft_data import gold_step_outputs
    from trl_seqpo.simt.latency import delays_from_steps
    from trl_seqpo.simt.policies import WaitKPolicy

    s, paths = ctx.settings, ctx.paths
    if paths.results.exists():  # drop a line cut by a kill so that appends start on a fresh line
        atomic_write_jsonl(paths.results, read_jsonl(paths.results, missing_ok=True))
    if "oracle" not in {row["system"] for row in read_jsonl(paths.results, missing_ok=True)}:
        rows = read_jsonl(paths.test)
        steps = [gold_step_outputs(r["source"], r["reference"], r["alignment"], s.chunk_size) for r in rows]
        hypotheses = ["".join(outputs) for outputs in steps]
        delays = [
            delays_from_steps(outputs, s.chunk_size, len(r["source"].split()), "word")
            for outputs, r in zip(steps, rows)
        ]
        result = {"system": "oracle", "name": "gold alignment (eager)", "policy": "oracle"}
        result.update(_score(rows, hypotheses, delays))
        _record(ctx, result, [{"source": r["source"], "translation": h} for r, h in zip(rows, hypotheses)])
    wait_k = [WaitKPolicy(k) for k in s.wait_k]
    for model_name, label in EVALUATED_MODELS.items():
        if not done_marker(paths.model(model_name)).exists():
            continue
        policies = [None, *wait_k] if model_name == "sft" else [None]
        evaluate_model(ctx, model_name, label, policies)


def seqpo_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """SeqPO against its SFT start (the SFT model's own policy) and the gold eager policy.

    Args:
        results: The rows of ``results.jsonl``.

    Returns:
        ``{}`` without both an ``sft`` and a ``seqpo`` row; else AL/chrF/BLEU of each system and SeqPO's changes
        against its start (``al_change``, ``chrf_change``, ``bleu_change``) and ``al_minus_oracle``.
    """
    by_system = {row["system"]: row for row in results}
    if "sft" not in by_system or "seqpo" not in by_system:
        return {}
    sft, seqpo = by_system["sft"], by_system["seqpo"]
    summary: dict[str, Any] = {
        "al_change": seqpo["al"] - sft["al"],
        "chrf_change": seqpo["chrf"] - sft["chrf"],
        "bleu_change": seqpo["bleu"] - sft["bleu"],  # BLEU is no training signal: the independent check
    }
    for key in ("sft", "oracle", "seqpo"):
        if key in by_system:
            summary[key] = {metric: by_system[key][metric] for metric in ("al", "chrf", "bleu")}
    if "oracle" in by_system:
        summary["al_minus_oracle"] = seqpo["al"] - by_system["oracle"]["al"]
    return summary


def seqpo_headline(summary: dict[str, Any]) -> str:
    """One sentence saying what the SeqPO part of the demo showed (see `seqpo_summary`)."""
    if not summary:
        return "SeqPO: not trained in this run"
    sft, seqpo = summary["sft"], summary["seqpo"]
    text = (
        f"SeqPO moved its SFT start from AL {sft['al']:.2f} / BLEU {sft['bleu']:.2f} to AL {seqpo['al']:.2f} / "
        f"BLEU {seqpo['bleu']:.2f} (chrF {summary['chrf_change']:+.2f})"
    )
    if "oracle" in summary:
        text += f"; the gold eager policy is at AL {summary['oracle']['al']:.2f}"
    return text


#: the SeqPO stages, in order.
SEQPO_STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("data", stage_data),
    ("sft", stage_sft),
    ("seqpo", stage_seqpo),
    ("evaluate", stage_evaluate),
]
