"""``trl-seqpo demo``: the synthetic-language SiMT demo, end to end, on a CPU.

Stages, run in order (`STAGES`); each writes its output under ``--output-dir`` and is skipped when that output
already exists, so a killed demo resumes where it stopped:

1. ``data``: a synthetic language pair (`trl_seqpo.synthetic.language_pair`), train and held-out test sets (no test
   source appears in the training set), and a tiny Qwen2-style model with a word-level tokenizer
   (`trl_seqpo.synthetic.tiny_models`);
2. ``sft``: SFT warm-up with TRL's ``SFTTrainer`` on exact partial translations (`trl_seqpo.seqpo.sft_data`,
   SeqPO-SiMT App. A.2) in the chat format. Each training conversation delays its writes by 0 or 2 source words
   (``extra_wait = (0, 2, 2)``: two thirds wait one extra chunk), so the greedy SFT policy waits later than it needs
   to (room for SeqPO to cut latency) while sampling still explores the eager timing. A single fixed delay made the
   timing deterministic: SeqPO then barely moved AL (4.04 -> 3.75 in 300 steps, with chrF falling), because all
   trajectories of a group waited the same way (``DESIGN.md``, "Demo calibration" pitfalls);
3. ``evaluate``: greedy simultaneous decoding of the test set (`SimultaneousRollout`) with the SFT model's own
   read/write policy and with wait-k (k = 1..5) schedules on top of it
   (the paper's "SFT + wait-k" baseline), plus the gold alignment's eager policy as a reference point; one JSON line
   per system in ``results.jsonl``, written as soon as it is scored;
4. ``seqpo`` (between ``sft`` and ``evaluate``): SeqPO-SiMT from the SFT model with `SeqPOTrainer`
   on the fused chrF + AL reward;
5. ``alpo_*`` (`trl_seqpo.demo.alpo`): ALPO on synthetic subtitles with a local judge server over HTTP that has
   a hidden synonym preference: SFT, sampling + judging, pairs, ``ALPOTrainer``, SFT vs ALPO judge scores;
6. ``report``: the table of chrF / BLEU vs AL / LAAL printed with rich and written to ``results.json`` and
   ``results.md`` (with the ALPO table), and ``quality_latency.png`` when matplotlib is installed.

To add a stage (e.g. SeqPO training), write ``stage_x(ctx: DemoContext) -> None`` that produces a model directory in
``ctx.paths.models``, insert it into `STAGES`, and register the model in `EVALUATED_MODELS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_seqpo.demo.alpo import ALPO_STAGES
from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_write_jsonl, read_jsonl

# --------------------------------------------------------------------------------------------------- settings


@dataclass
class DemoSettings:
    """Sizes and hyper-parameters of the demo (the full run; `quick` for tests).

    SFT values start from ``DESIGN.md`` "Demo calibration" (hidden 128, 2 layers, batch 64) with a higher constant
    learning rate (3e-3 after 20 warm-up steps): the chat format with delayed writes learned slowly under lr 2e-3
    with cosine decay. One SFT step costs ~0.7 CPU-seconds (1 thread, ~140-token conversations).
    """

    seed: int = 0
    num_train: int = 4000
    num_test: int = 200
    min_words: int = 4
    max_words: int = 14
    chunk_size: int = 2
    extra_wait: tuple[int, ...] = (0, 2, 2)
    tokenizer_kind: str = "wordlevel"
    sft_steps: int = 600
    sft_batch_size: int = 64
    sft_learning_rate: float = 3e-3
    sft_lr_scheduler: str = "constant_with_warmup"
    seqpo_steps: int = 300
    seqpo_batch_size: int = 32
    seqpo_num_generations: int = 8
    seqpo_learning_rate: float = 5e-4
    seqpo_temperature: float = 1.0
    seqpo_beta: float = 0.02
    seqpo_max_new_tokens_per_step: int = 12
    wait_k: tuple[int, ...] = (1, 2, 3, 4, 5)
    max_new_tokens_per_step: int = 24
    max_steps_after_source: int = 2
    eval_batch_size: int = 64

    @classmethod
    def quick(cls) -> DemoSettings:
        """Tiny sizes for tests: the whole demo in well under a minute."""
        return cls(
            num_train=256,
            num_test=12,
            sft_steps=8,
            sft_batch_size=16,
            seqpo_steps=2,
            seqpo_batch_size=8,
            seqpo_num_generations=4,
            wait_k=(1, 3),
            eval_batch_size=12,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class DemoPaths:
    """Where every stage writes, under the output directory."""

    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def train(self) -> Path:
        return self.data / "train.jsonl"

    @property
    def test(self) -> Path:
        return self.data / "test.jsonl"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / name

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def translations(self) -> Path:
        return self.root / "translations"


@dataclass
class DemoContext:
    """What every stage receives."""

    settings: DemoSettings
    paths: DemoPaths
    console: Any
    timings: dict[str, float] = field(default_factory=dict)


def _done_marker(directory: Path) -> Path:
    return directory / "DONE"


# ------------------------------------------------------------------------------------------------------ stages


def stage_data(ctx: DemoContext) -> None:
    """Synthetic train/test pairs (test sources never seen in training) and the untrained tiny model."""
    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    s, paths = ctx.settings, ctx.paths
    if not _done_marker(paths.data).exists():
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
        _done_marker(paths.data).write_text("ok\n")
    init = paths.model("init")
    if not _done_marker(init).exists():
        save_tiny_model(init, kind=s.tokenizer_kind, seed=s.seed)
        _done_marker(init).write_text("ok\n")


def stage_sft(ctx: DemoContext) -> None:
    """SFT warm-up on exact, conservatively delayed partial translations (chat format, assistant-only loss)."""
    s, paths = ctx.settings, ctx.paths
    out = paths.model("sft")
    if _done_marker(out).exists():
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_seqpo.seqpo.sft_data import gold_sft_dataset
    from trl_seqpo.synthetic import language_pair as synthetic

    train = read_jsonl(paths.train)
    dataset = gold_sft_dataset(
        train,
        s.chunk_size,
        synthetic.SOURCE_LANGUAGE,
        synthetic.TARGET_LANGUAGE,
        prompt_format="chat",
        extra_wait=list(s.extra_wait),
        seed=s.seed,
    )
    tokenizer = AutoTokenizer.from_pretrained(paths.model("init"))
    model = AutoModelForCausalLM.from_pretrained(paths.model("init"))
    config = SFTConfig(
        output_dir=str(paths.root / "sft_run"),
        max_steps=s.sft_steps,
        per_device_train_batch_size=s.sft_batch_size,
        learning_rate=s.sft_learning_rate,
        lr_scheduler_type=s.sft_lr_scheduler,
        warmup_steps=min(20, s.sft_steps // 10),
        assistant_only_loss=True,
        max_length=256,
        logging_steps=max(1, s.sft_steps // 8),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=s.seed,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out))
    metrics = {"train_runtime_s": result.metrics.get("train_runtime"), "train_loss": result.training_loss}
    (out / "sft_metrics.json").write_text(json.dumps(metrics, indent=2))
    _done_marker(out).write_text("ok\n")


def stage_seqpo(ctx: DemoContext) -> None:
    """SeqPO-SiMT from the SFT model: GRPO on the fused chrF + AL reward (Eq. 2) with `SeqPOTrainer`."""
    s, paths = ctx.settings, ctx.paths
    out = paths.model("seqpo")
    if _done_marker(out).exists():
        return
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_seqpo import SeqPOConfig, SeqPOTrainer
    from trl_seqpo.synthetic import language_pair as synthetic

    train = read_jsonl(paths.train)
    dataset = Dataset.from_dict({"source": [r["source"] for r in train], "reference": [r["reference"] for r in train]})
    config = SeqPOConfig(
        output_dir=str(paths.root / "seqpo_run"),
        max_steps=s.seqpo_steps,
        per_device_train_batch_size=s.seqpo_batch_size,
        num_generations=s.seqpo_num_generations,
        learning_rate=s.seqpo_learning_rate,
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
        logging_steps=max(1, s.seqpo_steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=s.seed,
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
    _done_marker(out).write_text("ok\n")


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
        if not _done_marker(paths.model(model_name)).exists():
            continue
        policies = [None, *wait_k] if model_name == "sft" else [None]
        evaluate_model(ctx, model_name, label, policies)


def stage_report(ctx: DemoContext) -> None:
    """Print the quality-latency table and write it as JSON, Markdown and (with matplotlib) a PNG plot."""
    from rich.table import Table

    paths = ctx.paths
    results = read_jsonl(paths.results, missing_ok=True)
    columns = [("chrF", "chrf"), ("BLEU", "bleu"), ("AL", "al"), ("LAAL", "laal")]
    table = Table(title="Synthetic SiMT demo: quality vs latency (test set, greedy)")
    table.add_column("system")
    for header, _ in columns:
        table.add_column(header, justify="right")
    for row in results:
        table.add_row(row["name"], *(f"{row[key]:.2f}" for _, key in columns))
    ctx.console.print(table)
    report = {"settings": ctx.settings.to_json(), "timings_s": ctx.timings, "results": results}
    by_system = {row["system"]: row for row in results}
    if "sft" in by_system and "seqpo" in by_system:
        sft, seqpo = by_system["sft"], by_system["seqpo"]
        change = {
            "al_reduction_pct": 100.0 * (sft["al"] - seqpo["al"]) / sft["al"],
            "chrf_change": seqpo["chrf"] - sft["chrf"],
        }
        report["seqpo_vs_sft"] = change
        ctx.console.print(
            f"SeqPO vs its SFT start: AL {sft['al']:.2f} -> {seqpo['al']:.2f} "
            f"({change['al_reduction_pct']:.1f}% lower), chrF {change['chrf_change']:+.2f}"
        )
    lines = ["| system | chrF | BLEU | AL | LAAL |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | " + " | ".join(f"{r[k]:.2f}" for _, k in columns) + " |" for r in results]
    alpo_json, alpo_md = paths.root / "alpo_results.json", paths.root / "alpo_results.md"
    if alpo_json.exists() and alpo_md.exists():  # the ALPO stages' table (SFT vs ALPO judge score)
        report["alpo"] = json.loads(alpo_json.read_text())
        lines += ["", "## ALPO (synthetic subtitles, hidden-preference judge)", "", alpo_md.read_text().strip()]
    (paths.root / "results.md").write_text("\n".join(lines) + "\n")
    (paths.root / "results.json").write_text(json.dumps(report, indent=2))
    _plot(results, paths.root / "quality_latency.png", ctx.console)


def _plot(results: list[dict[str, Any]], path: Path, console: Any) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("matplotlib is not installed: no plot (pip install 'trl-seqpo[plot]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    waitk = [r for r in results if r["policy"].startswith("wait-")]
    if waitk:
        ax.plot([r["al"] for r in waitk], [r["chrf"] for r in waitk], "o-", color="grey", label="SFT + wait-k")
    for r in results:
        if not r["policy"].startswith("wait-"):
            ax.plot(r["al"], r["chrf"], "*" if r["policy"] == "oracle" else "s", markersize=10, label=r["name"])
    ax.set_xlabel("AL (source words)")
    ax.set_ylabel("chrF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the demo's stages, in order.
STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("data", stage_data),
    ("sft", stage_sft),
    ("seqpo", stage_seqpo),
    ("evaluate", stage_evaluate),
    *ALPO_STAGES,
    ("report", stage_report),
]

# ------------------------------------------------------------------------------------------------------ driver


def _check_settings(paths: DemoPaths, settings: DemoSettings) -> None:
    wanted = settings.to_json()
    if paths.settings.exists():
        saved = json.loads(paths.settings.read_text())
        if saved != wanted:
            changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
            raise UserInputError(
                f"{paths.root} holds a demo run with other settings ({', '.join(changed)}); "
                "use another --output-dir or delete this one",
                path=str(paths.settings),
            )
    else:
        paths.root.mkdir(parents=True, exist_ok=True)
        paths.settings.write_text(json.dumps(wanted, indent=2))


def run_demo(
    output_dir: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    console: Any = None,
    num_threads: int | None = 1,
) -> dict:
    """Run (or resume) every stage of the demo.

    Args:
        output_dir: Directory for data, models and results; reusing it resumes a previous run.
        settings: Sizes and hyper-parameters; defaults to the full demo.
        console: A ``rich.console.Console`` for output (a default one when ``None``).
        num_threads: torch intra-op threads; ``None`` keeps torch's default. One thread is the default because the
            tiny model's matrices gain little from more, and on a busy machine two threads were measured 4x slower
            per SFT step than one (threads waiting for each other).

    Returns:
        The report written to ``results.json``.
    """
    import torch
    from rich.console import Console

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    console = console or Console()
    settings = settings or DemoSettings()
    paths = DemoPaths(Path(output_dir))
    if paths.root.exists() and not paths.root.is_dir():
        raise UserInputError("--output-dir exists and is not a directory", path=str(paths.root))
    _check_settings(paths, settings)
    ctx = DemoContext(settings, paths, console)
    for name, stage in STAGES:
        start = time.perf_counter()
        console.print(f"[bold]stage {name}[/bold]")
        stage(ctx)
        ctx.timings[name] = round(time.perf_counter() - start, 2)
        console.print(f"  done in {ctx.timings[name]:.1f} s")
    return json.loads((paths.root / "results.json").read_text())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run the synthetic-language demo end to end",
        description="Build a synthetic language pair and a tiny model, SFT it, and compare SiMT policies.",
    )
    parser.add_argument("--output-dir", required=True, help="directory for data, models and results (resumable)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests; under a minute)")
    parser.add_argument("--sft-steps", type=int, default=None, help="override the number of SFT steps")
    parser.add_argument("--seed", type=int, default=None, help="override the random seed")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.sft_steps is not None:
        if args.sft_steps < 1:
            raise UserInputError(f"--sft-steps must be >= 1, got {args.sft_steps}")
        settings.sft_steps = args.sft_steps
    if args.seed is not None:
        settings.seed = args.seed
    if args.num_threads < 0:
        raise UserInputError(f"--num-threads must be >= 0, got {args.num_threads}")
    run_demo(args.output_dir, settings, num_threads=args.num_threads or None)
    return 0
