"""The SeqPO-SiMT part of `trl-seqpo demo`: synthetic language pair, SFT warm-ups, SeqPO, evaluation.

Stages (`SEQPO_STAGES`; each skipped when its output exists, so a killed demo resumes):

1. ``data``: a synthetic language pair (`trl_seqpo.synthetic.language_pair`), train and held-out test sets (no test
   source appears in the training set), and a tiny Qwen2-style model with a word-level tokenizer
   (`trl_seqpo.synthetic.tiny_models`);
2. ``sft``: SFT warm-up with TRL's ``SFTTrainer`` on exact partial translations (`trl_seqpo.seqpo.sft_data`,
   SeqPO-SiMT App. A.2) in the chat format. Each training conversation delays its writes by a number of source
   words drawn from ``extra_wait`` (default ``(0, 2, 2)``): the greedy SFT policy waits later than it needs to
   (room for SeqPO to cut latency) while sampling still explores the eager timing (a lag-4 mix that would cover
   wait-k's histories trained far worse, see ``docs/demo.md``, "SFT + wait-k");
3. ``sft_eager``: the same SFT without any delay (``extra_wait=(0,)``), a reference point for SeqPO;
4. ``seqpo``: SeqPO-SiMT from the delayed SFT model with `SeqPOTrainer` on the fused chrF + AL reward;
5. ``evaluate``: greedy simultaneous decoding of the test set (`SimultaneousRollout`) by every model with its own
   read/write policy, by the SFT model under wait-k (k in ``wait_k``, the paper's "SFT + wait-k"), and the gold
   alignment's eager policy; one JSON line per system in ``results.jsonl``, written as soon as it is scored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trl_seqpo.demo.common import DemoContext, done_marker, say, train_sft, training_arguments
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
    """SFT warm-up on exact, conservatively delayed partial translations (chat format, assistant-only loss).

    The undelayed SFT of ``sft_eager`` trains at the same time in a second process (one torch thread each: the
    two-core machine the demo is sized for runs both in the time of one); if that process fails, the ``sft_eager``
    stage trains it again in this process.
    """
    paths = ctx.paths
    child = None
    if (
        ctx.settings.eager_sft
        and not done_marker(paths.model("sft")).exists()
        and not done_marker(paths.model("sft_eager")).exists()
    ):
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(
            target=_train_sft_in_child, args=(ctx.settings, str(paths.root), "sft_eager", (0,)), daemon=True
        )
        child.start()
        say(ctx, "  training sft_eager beside it in process " + str(child.pid))
    try:
        _train_sft(ctx, "sft", ctx.settings.extra_wait)
    finally:
        if child is not None:
            child.join()


def stage_sft_eager(ctx: DemoContext) -> None:
    """The same SFT without delays (``extra_wait=(0,)``): what SFT alone reaches when it is not held back."""
    if ctx.settings.eager_sft:
        _train_sft(ctx, "sft_eager", (0,))


def _train_sft_in_child(settings: Any, root: str, name: str, extra_wait: tuple[int, ...]) -> None:
    import torch

    from trl_seqpo.demo.common import DemoPaths

    torch.set_num_threads(1)
    _train_sft(DemoContext(settings, DemoPaths(Path(root)), None), name, extra_wait, quiet=True)


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
EVALUATED_MODELS: dict[str, str] = {"sft": "SFT (delayed start)", "sft_eager": "SFT (no delay)", "seqpo": "SeqPO"}


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


def evaluate_model(ctx: DemoContext, model_name: str, label: str, policies: list[Any | None]) -> None:
    """Greedy simultaneous decoding of the test set with one model under each policy (``None`` = its own).

    Each (model, policy) pair becomes one ``results.jsonl`` line, skipped when already there.
    """
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo.rollout.hf import HFGenerationBackend
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout, SimultaneousRolloutConfig
    from trl_seqpo.synthetic import language_pair as synthetic

    s, paths = ctx.settings, ctx.paths
    done = {row["system"] for row in read_jsonl(paths.results, missing_ok=True)}
    todo = [(p, model_name if p is None else f"{model_name}+{p.name}") for p in policies]
    todo = [(p, system) for p, system in todo if system not in done]
    if not todo:
        return
    tokenizer = AutoTokenizer.from_pretrained(paths.model(model_name))
    model = AutoModelForCausalLM.from_pretrained(paths.model(model_name)).eval()
    config = SimultaneousRolloutConfig(
        chunk_size=s.chunk_size,
        src_lang=synthetic.SOURCE_LANGUAGE,
        tgt_lang=synthetic.TARGET_LANGUAGE,
        source_unit="word",
        target_unit="word",
        prompt_format="chat",
        max_new_tokens_per_step=s.max_new_tokens_per_step,
        max_steps_after_source=s.max_steps_after_source,
        temperature=0.0,
    )
    rollout = SimultaneousRollout(HFGenerationBackend(model, tokenizer), tokenizer, config)
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
    """SeqPO against its delayed SFT start, the undelayed SFT and the gold eager policy (what the headline states).

    Args:
        results: The rows of ``results.jsonl``.

    Returns:
        ``{}`` without both an ``sft`` and a ``seqpo`` row; else AL/chrF of each reference system and SeqPO's
        changes against them (``al_reduction_pct``, ``chrf_change`` and ``bleu_change`` are against the delayed SFT
        start).
    """
    by_system = {row["system"]: row for row in results}
    if "sft" not in by_system or "seqpo" not in by_system:
        return {}
    sft, seqpo = by_system["sft"], by_system["seqpo"]
    summary: dict[str, Any] = {
        "al_reduction_pct": 100.0 * (sft["al"] - seqpo["al"]) / sft["al"],
        "chrf_change": seqpo["chrf"] - sft["chrf"],
        "bleu_change": seqpo["bleu"] - sft["bleu"],  # BLEU is no training signal: the independent check
    }
    for key in ("sft", "sft_eager", "oracle", "seqpo"):
        if key in by_system:
            summary[key] = {"al": by_system[key]["al"], "chrf": by_system[key]["chrf"]}
    for key in ("sft_eager", "oracle"):
        if key in by_system:
            summary[f"al_minus_{key}"] = seqpo["al"] - by_system[key]["al"]
            summary[f"chrf_minus_{key}"] = seqpo["chrf"] - by_system[key]["chrf"]
    return summary


def seqpo_headline(summary: dict[str, Any]) -> str:
    """One sentence saying what the SeqPO part of the demo showed (see `seqpo_summary`)."""
    if not summary:
        return "SeqPO: not trained in this run"
    sft, seqpo = summary["sft"], summary["seqpo"]
    text = (
        f"SeqPO cut the delayed SFT start's AL {sft['al']:.2f} -> {seqpo['al']:.2f} "
        f"({summary['al_reduction_pct']:.1f}% lower) at chrF {summary['chrf_change']:+.2f}"
    )
    if "sft_eager" in summary:
        eager = summary["sft_eager"]
        text += f"; the undelayed SFT sits at AL {eager['al']:.2f}, chrF {eager['chrf']:.2f}"
    if "oracle" in summary:
        text += (
            f"; the gold eager policy at AL {summary['oracle']['al']:.2f} (SeqPO {summary['al_minus_oracle']:+.2f})"
        )
    return text


#: the SeqPO stages, in order.
SEQPO_STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("data", stage_data),
    ("sft", stage_sft),
    ("sft_eager", stage_sft_eager),
    ("seqpo", stage_seqpo),
    ("evaluate", stage_evaluate),
]
