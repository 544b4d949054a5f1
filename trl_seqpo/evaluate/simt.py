"""``trl-seqpo evaluate simt``: quality and latency of a simultaneous translator (SeqPO-SiMT Sec. 3.1).

Each source is read chunk by chunk by the lockstep rollout
(`SimultaneousRollout`), either with the model's own read/write decisions
(``--policy model``: an empty step output means "wait") or under a fixed schedule (``--policy wait-k``, the paper's
"SFT + wait-k" baseline, or ``full-sentence``). Every operating point (each ``k`` of ``--k``, each ``m`` of
``--chunk-size``) is one run in its own folder under ``--output-dir``:

* ``hypotheses.jsonl``: one row per sentence (``id``, ``source``, ``reference``, ``translation``, ``chunks``,
  ``step_outputs``, per-target-unit ``delays``, ``source_length``), appended batch by batch and fsync-ed; ``--resume``
  keeps the finished rows and decodes only the others;
* ``scores.jsonl``: per-sentence latency and model-based scores (COMET, BLEURT, judge), reused on ``--resume``;
* ``summary.json``; and for all points together ``results.json`` / ``results.md`` (``trl-seqpo plot`` reads them).

Latency (`trl_seqpo.simt.latency`, as SimulEval): a target unit first written at step ``t`` has delay
``min(t * m, n)``; AL, LAAL, DAL and AP are computed per sentence and averaged over sentences. Reference length
``|Y*|`` (``--reference-length``): ``units`` (default) counts the reference in the latency unit (words, or non-space
characters); ``simuleval`` copies SimulEval 1.1's rule (``len(reference.split(" "))`` words, or
``len(reference.strip())`` characters, spaces included); ``hypothesis`` uses the hypothesis length (SimulEval's
``--no-use-ref-len``). The three agree for single-spaced word references and space-free character references.
An empty hypothesis gets AL = LAAL = DAL = ``n`` and AP = 1 (SimulEval skips such sentences).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError
from trl_seqpo.evaluate.records import ScoreFile, load_pairs, text_digest
from trl_seqpo.jsonl import ResumableJsonl, atomic_write_json
from trl_seqpo.simt.chunking import Unit, default_unit
from trl_seqpo.simt.latency import REFERENCE_LENGTH_RULES, reference_length, sentence_latency

__all__ = [
    "KNOWN_METRICS",
    "OperatingPoint",
    "SimTEvalConfig",
    "add_parser",
    "evaluate_simt",
]

KNOWN_METRICS: tuple[str, ...] = ("bleu", "chrf", "comet", "xcomet", "bleurt", "judge")
METRIC_NAMES: dict[str, str] = {
    "bleu": "BLEU",
    "chrf": "chrF",
    "comet": "COMET",
    "xcomet": "XCOMET",
    "bleurt": "BLEURT",
    "judge": "Judge",
}
POLICIES: tuple[str, ...] = ("model", "wait-k", "full-sentence")


@dataclass(frozen=True)
class OperatingPoint:
    """One point of a quality-latency curve: a policy with its ``k`` (wait-k) and a chunk size ``m``."""

    policy: str
    chunk_size: int
    k: int | None = None

    @property
    def label(self) -> str:
        if self.policy == "wait-k":
            return f"k={self.k}, m={self.chunk_size}"
        if self.policy == "full-sentence":
            return f"full, m={self.chunk_size}"
        return f"m={self.chunk_size}"

    @property
    def slug(self) -> str:
        if self.policy == "wait-k":
            return f"wait-k{self.k}-m{self.chunk_size}"
        return f"{self.policy}-m{self.chunk_size}"

    def schedule(self, rate: float = 1.0) -> Any:
        """The fixed read/write schedule of this point (``None`` for the model's own policy)."""
        from trl_seqpo.simt.policies import FullSentencePolicy, WaitKPolicy

        if self.policy == "wait-k":
            return WaitKPolicy(int(self.k), rate)
        if self.policy == "full-sentence":
            return FullSentencePolicy()
        return None


@dataclass
class SimTEvalConfig:
    """Settings of `evaluate_simt` (one field per ``evaluate simt`` option).

    Args:
        model: Checkpoint directory.
        data: JSONL/TSV file or ``datasets`` folder with ``source`` and ``reference``.
        output_dir: Where results go.
        policy: ``"model"``, ``"wait-k"`` or ``"full-sentence"``.
        ks: Values of ``k`` for wait-k (one run each).
        chunk_sizes: Chunk sizes ``m`` (one run each); ``None``: 1 for wait-k, 3 otherwise.
        wait_k_rate: Target units per source unit of wait-k (e.g. 1.5 for word -> character pairs).
        backend: ``"hf"`` or ``"vllm"``.
        device, dtype: Model placement for the HF backend.
        temperature: 0 = greedy (default); > 0 samples.
        top_p: Nucleus sampling threshold when sampling.
        seed: Sampling seed (batch ``b`` uses ``seed + first row position``).
        batch_size: Sentences per lockstep rollout.
        src_lang, tgt_lang: Language names/codes in prompts; ``None`` keeps the rollout's defaults (English,
            Chinese).
        source_unit, latency_unit: Units of the source chunks and of the target delays; ``None`` picks characters
            for zh/ja/th and words otherwise.
        reference_length: ``"units"``, ``"simuleval"`` or ``"hypothesis"`` (module docstring).
        prompt_format: ``"chat"`` or ``"paper"``.
        max_new_tokens_per_step, max_steps_after_source: Rollout budgets.
        metrics: Quality metrics to compute (``KNOWN_METRICS``).
        comet_model, bleurt_model: Checkpoints of the model-based metrics.
        judge: A `JudgeConfig`, required when ``"judge"`` is in ``metrics``.
        resume: Keep finished rows of an earlier run in the same folder.
        limit: Only the first ``limit`` rows.
        system_name: Name in tables and plots.
        progress: Show progress bars.
    """

    model: str
    data: str | Path
    output_dir: str | Path
    policy: str = "model"
    ks: list[int] = field(default_factory=lambda: [3])
    chunk_sizes: list[int] | None = None
    wait_k_rate: float = 1.0
    backend: str = "hf"
    device: str | None = None
    dtype: str = "auto"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32
    src_lang: str | None = None
    tgt_lang: str | None = None
    source_unit: Unit | None = None
    latency_unit: Unit | None = None
    reference_length: str = "units"
    prompt_format: str = "chat"
    max_new_tokens_per_step: int = 32
    max_steps_after_source: int = 2
    metrics: list[str] = field(default_factory=lambda: ["bleu", "chrf"])
    comet_model: str | None = None
    bleurt_model: str | None = None
    judge: Any = None
    resume: bool = False
    limit: int | None = None
    system_name: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UserInputError(f"--policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.reference_length not in REFERENCE_LENGTH_RULES:
            raise UserInputError(f"--reference-length must be one of {', '.join(REFERENCE_LENGTH_RULES)}")
        if self.batch_size < 1:
            raise UserInputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"--limit must be >= 1, got {self.limit}")
        if self.temperature < 0:
            raise UserInputError(f"--temperature must be >= 0 (0 = greedy), got {self.temperature}")
        unknown = [metric for metric in self.metrics if metric not in KNOWN_METRICS]
        if unknown:
            raise UserInputError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_METRICS)}")
        if "judge" in self.metrics and self.judge is None:
            raise UserInputError("the judge metric needs --judge-base-url (an OpenAI-compatible endpoint)")
        if self.chunk_sizes is None:
            self.chunk_sizes = [1] if self.policy == "wait-k" else [3]

    @property
    def resolved_tgt_lang(self) -> str:
        return self.tgt_lang or "Chinese"

    @property
    def resolved_latency_unit(self) -> Unit:
        return self.latency_unit or default_unit(self.resolved_tgt_lang)

    def points(self) -> list[OperatingPoint]:
        """The operating points, one run each."""
        if self.policy == "wait-k":
            return [OperatingPoint("wait-k", m, k) for k in self.ks for m in self.chunk_sizes]
        return [OperatingPoint(self.policy, m) for m in self.chunk_sizes]

    def run_settings(self, point: OperatingPoint) -> dict[str, Any]:
        """Settings that change the hypotheses of ``point`` (checked on ``--resume``)."""
        return {
            "model": str(self.model),
            "data": str(self.data),
            **asdict(point),
            "wait_k_rate": self.wait_k_rate,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "source_unit": self.source_unit,
            "latency_unit": self.resolved_latency_unit,
            "prompt_format": self.prompt_format,
            "max_new_tokens_per_step": self.max_new_tokens_per_step,
            "max_steps_after_source": self.max_steps_after_source,
        }


def _rollout_config(config: SimTEvalConfig, point: OperatingPoint) -> Any:
    from trl_seqpo.rollout.simultaneous import SimultaneousRolloutConfig

    languages = {key: value for key, value in (("src_lang", config.src_lang), ("tgt_lang", config.tgt_lang)) if value}
    try:
        return SimultaneousRolloutConfig(
            chunk_size=point.chunk_size,
            source_unit=config.source_unit,
            target_unit=config.resolved_latency_unit,
            prompt_format=config.prompt_format,
            max_new_tokens_per_step=config.max_new_tokens_per_step,
            max_steps_after_source=config.max_steps_after_source,
            temperature=config.temperature,
            top_p=config.top_p,
            **languages,
        )
    except ValueError as error:
        raise UserInputError(str(error)) from error


def _check_resume(run_dir: Path, settings: dict[str, Any], resume: bool) -> None:
    path = run_dir / "run.json"
    if resume and path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"{key}: {previous.get(key)!r} -> {value!r}"
            for key, value in settings.items()
            if previous.get(key) != value
        ]
        if changed:
            raise UserInputError(
                f"--resume: {run_dir} holds a run with other settings ({'; '.join(changed)}); use another "
                "--output-dir or drop --resume to start over"
            )
    atomic_write_json(path, settings)


def _decode(
    rows: list[dict],
    store: ResumableJsonl,
    rollout: Any,
    policy: Any,
    config: SimTEvalConfig,
    label: str,
    on_batch: Callable[[int], None] | None,
) -> int:
    """Decode the rows not yet in ``store``, batch by batch; returns how many were decoded now."""
    from tqdm.auto import tqdm

    done = store.done
    generated = 0
    with tqdm(
        total=len(rows),
        initial=sum(row["id"] in done for row in rows),
        desc=f"simt {label}",
        unit="sent",
        disable=not config.progress,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, len(rows), config.batch_size):
            batch = [row for row in rows[start : start + config.batch_size] if row["id"] not in done]
            if not batch:
                continue
            sources = [" ".join(row["source"].split()) for row in batch]
            trajectories = rollout.run(sources, num_generations=1, policy=policy, seed=config.seed + start)
            store.append(
                [
                    {
                        "id": row["id"],
                        "source": source,
                        "reference": row["reference"],
                        "translation": trajectory.translation,
                        "chunks": trajectory.chunks,
                        "step_outputs": trajectory.step_outputs,
                        "delays": trajectory.delays,
                        "source_length": trajectory.source_length,
                        "finished_by": trajectory.finished_by,
                    }
                    for row, source, trajectory in zip(batch, sources, trajectories)
                ]
            )
            generated += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(generated)
    return generated


def _score(hypotheses: list[dict], run_dir: Path, config: SimTEvalConfig) -> tuple[dict, dict]:
    """Corpus metrics and counts of one run; per-row scores go to ``scores.jsonl`` (reused on resume)."""
    from trl_seqpo.evaluate import metrics as quality

    unit = config.resolved_latency_unit
    scores = ScoreFile(
        run_dir / "scores.jsonl", {row["id"]: text_digest(row["translation"]) for row in hypotheses}, config.resume
    )
    by_id = {row["id"]: row for row in hypotheses}
    for row in hypotheses:
        ref_length = reference_length(row["reference"], unit, config.reference_length)
        latency = sentence_latency(row["delays"], row["source_length"], ref_length)
        for name, value in latency.items():
            scores.rows[row["id"]][name] = value
    translations = [row["translation"] for row in hypotheses]
    references = [row["reference"] for row in hypotheses]
    summary: dict[str, float | None] = {}
    if "bleu" in config.metrics:
        summary["BLEU"] = quality.corpus_bleu(translations, references, config.tgt_lang)
    if "chrf" in config.metrics:
        summary["chrF"] = quality.corpus_chrf(translations, references)
    counts = {"rows": len(hypotheses), "empty": sum(not text.strip() for text in translations)}
    for metric in ("comet", "xcomet", "bleurt", "judge"):
        if metric not in config.metrics:
            continue
        name = METRIC_NAMES[metric]
        # cached under the scoring model too: a folder re-scored with another checkpoint or judge never mixes them
        scorer = {"judge": getattr(config.judge, "model", None), "bleurt": config.bleurt_model}
        key = f"{name}@{scorer.get(metric, config.comet_model)}"
        todo = [by_id[row_id] for row_id in scores.missing(key)]
        if todo:
            hyps, refs, srcs = ([row[column] for row in todo] for column in ("translation", "reference", "source"))
            if metric in ("comet", "xcomet"):
                new = quality.comet_scores(srcs, hyps, refs, config.comet_model, kind=metric)
            elif metric == "bleurt":
                new = quality.bleurt_scores(hyps, refs, str(config.bleurt_model))
            else:
                new = quality.judge_scores(srcs, hyps, config.judge, progress=config.progress)
            scores.update(key, {row["id"]: value for row, value in zip(todo, new)})
            scores.save()
        values = scores.values(key)
        summary[name] = quality.mean_or_none(values)
        counts[f"unscored_{metric}"] = sum(value is None for value in values)
    scores.save()
    for name in ("AL", "LAAL", "DAL", "AP"):
        summary[name] = quality.mean_or_none(scores.values(name))
    return summary, counts


def evaluate_simt(config: SimTEvalConfig, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Decode and score every operating point of ``config``; write the result files (module docstring).

    Args:
        config: The settings.
        on_batch: Called after each decoded batch with the number of rows decoded so far in this run (tests use it
            to interrupt a run).

    Returns:
        The results document (`trl_seqpo.evaluate.report`), with ``generated`` (rows decoded now) per run.

    Raises:
        UserInputError: Bad data, model path, settings, or an unreachable judge.
        MissingDependencyError: A requested metric or backend is not installed.
    """
    from trl_seqpo.evaluate.common import check_metric_dependencies
    from trl_seqpo.evaluate.metrics import check_judge_reachable
    from trl_seqpo.evaluate.report import write_results
    from trl_seqpo.rollout.loading import load_backend
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout

    rows = load_pairs(config.data, ("source", "reference"))[: config.limit]
    check_metric_dependencies(config.metrics, config.bleurt_model)
    if "judge" in config.metrics:
        check_judge_reachable(config.judge)
    output_dir = Path(config.output_dir)
    loaded = load_backend(config.model, config.backend, device=config.device, dtype=config.dtype, seed=config.seed)
    tokenizer, backend = loaded.tokenizer, loaded.backend
    policy_name = {"model": "", "wait-k": " + wait-k", "full-sentence": " (full sentence)"}[config.policy]
    results: dict[str, Any] = {
        "task": "simt",
        "system": config.system_name or f"{Path(config.model).name}{policy_name}",
        "model": str(config.model),
        "data": str(config.data),
        "settings": {
            "src_lang": config.src_lang,
            "tgt_lang": config.resolved_tgt_lang,
            "latency_unit": config.resolved_latency_unit,
            "reference_length": config.reference_length,
            "temperature": config.temperature,
            "prompt_format": config.prompt_format,
        },
        "runs": [],
    }
    for point in config.points():
        run_dir = output_dir / point.slug
        _check_resume(run_dir, config.run_settings(point), config.resume)
        store = ResumableJsonl(run_dir / "hypotheses.jsonl", resume=config.resume)
        try:
            rollout = SimultaneousRollout(backend, tokenizer, _rollout_config(config, point))
        except ValueError as error:
            raise UserInputError(f"--model {config.model}: {error}") from error
        generated = _decode(rows, store, rollout, point.schedule(config.wait_k_rate), config, point.label, on_batch)
        hypotheses = [store.rows[row["id"]] for row in rows]
        summary, counts = _score(hypotheses, run_dir, config)
        run = {
            "label": point.label,
            **asdict(point),
            "dir": point.slug,
            "metrics": summary,
            "counts": counts,
            "generated": generated,
        }
        atomic_write_json(run_dir / "summary.json", run)
        results["runs"].append(run)
        write_results(results, output_dir, show=False)
    write_results(results, output_dir, show=True)
    return results


# ---------------------------------------------------------------------------------------------------- command line
def add_parser(subparsers: Any) -> None:
    """Register ``evaluate simt`` on the ``evaluate`` action's subparsers."""
    from trl_seqpo.evaluate.common import add_common_arguments

    parser = subparsers.add_parser(
        "simt",
        help="simultaneous translation: BLEU/chrF/COMET/BLEURT/judge and AL/LAAL/DAL/AP",
        description="Decode chunk by chunk (SeqPO-SiMT Sec. 2.2) and report quality and latency (Sec. 3.1).",
    )
    parser.add_argument("--data", required=True, help="JSONL/TSV file or datasets folder with source, reference")
    policy = parser.add_argument_group("read/write policy")
    policy.add_argument("--policy", choices=POLICIES, default="model", help="who decides when to write")
    policy.add_argument("--k", default="3", help="wait-k values, comma-separated (one run each; default 3)")
    policy.add_argument("--wait-k-rate", type=float, default=1.0, help="target units per source unit for wait-k")
    policy.add_argument(
        "--chunk-size", default=None, help="chunk sizes m, comma-separated (default 1 for wait-k, else 3)"
    )
    policy.add_argument("--prompt-format", choices=("chat", "paper"), default="chat")
    policy.add_argument("--max-new-tokens-per-step", type=int, default=32)
    policy.add_argument("--max-steps-after-source", type=int, default=2)
    sampling = policy.add_mutually_exclusive_group()
    sampling.add_argument("--greedy", action="store_true", help="greedy decoding (the default)")
    sampling.add_argument("--temperature", type=float, default=None, help="sample at this temperature instead")
    policy.add_argument("--top-p", type=float, default=1.0)
    units = parser.add_argument_group("latency")
    units.add_argument(
        "--latency-unit",
        choices=("word", "char"),
        default=None,
        help="target unit of delays (default: char for zh/ja/th targets, else word)",
    )
    units.add_argument("--source-unit", choices=("word", "char"), default=None, help="unit of source chunks")
    units.add_argument(
        "--reference-length",
        choices=REFERENCE_LENGTH_RULES,
        default="units",
        help="|Y*| of AL/LAAL/AP: units (default), simuleval, or hypothesis",
    )
    add_common_arguments(parser, "bleu,chrf", KNOWN_METRICS)
    parser.add_argument(
        "--judge-aspect",
        default="accuracy",
        choices=("accuracy", "naturalness", "vividness"),
        help="what the judge scores (default: accuracy, closest to SeqPO-SiMT Fig. 9)",
    )
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimTEvalConfig:
    """Turn parsed ``evaluate simt`` options into a `SimTEvalConfig`."""
    from trl_seqpo.evaluate.common import judge_config_from_args, parse_int_list, parse_metrics

    metrics = parse_metrics(args.metrics, KNOWN_METRICS)
    for metric, given in (("comet", args.comet_model), ("bleurt", args.bleurt_model), ("judge", args.judge_base_url)):
        if given and metric not in metrics and not (metric == "comet" and "xcomet" in metrics):
            metrics.append(metric)
    judge = None
    if "judge" in metrics:
        if not args.judge_base_url:
            raise UserInputError("the judge metric needs --judge-base-url (an OpenAI-compatible endpoint)")
        judge = judge_config_from_args(args, args.judge_aspect, Path(args.output_dir) / "judge_cache.sqlite")
    return SimTEvalConfig(
        model=args.model,
        data=args.data,
        output_dir=args.output_dir,
        policy=args.policy,
        ks=parse_int_list(args.k, "--k"),
        chunk_sizes=None if args.chunk_size is None else parse_int_list(args.chunk_size, "--chunk-size"),
        wait_k_rate=args.wait_k_rate,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        temperature=0.0 if args.temperature is None else args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        src_lang=args.src_lang,
        tgt_lang=args.tgt_lang,
        source_unit=args.source_unit,
        latency_unit=args.latency_unit,
        reference_length=args.reference_length,
        prompt_format=args.prompt_format,
        max_new_tokens_per_step=args.max_new_tokens_per_step,
        max_steps_after_source=args.max_steps_after_source,
        metrics=metrics,
        comet_model=args.comet_model,
        bleurt_model=args.bleurt_model,
        judge=judge,
        resume=args.resume,
        limit=args.limit,
        system_name=args.system_name,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``trl-seqpo evaluate simt``."""
    evaluate_simt(config_from_args(args))
    return 0
