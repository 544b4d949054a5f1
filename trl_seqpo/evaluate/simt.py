"""`evaluate_simt`: quality and latency of a simultaneous translator (SeqPO-SiMT Sec. 3.1), as a library.

Each source is read chunk by chunk by the lockstep rollout (`SimultaneousRollout`), either with the model's own
read/write decisions (`policy="model"`: an empty step output means "wait") or under a fixed schedule
(`policy="wait-k"`, the paper's "SFT + wait-k" baseline, or `"full-sentence"`). Every operating point (each `k` of
`wait_k`, each `m` of `chunk_sizes`) is one run in its own folder under `output_dir`:

* `hypotheses.jsonl`: one row per sentence (`id`, `source`, `reference`, `translation`, `chunks`, `step_outputs`,
  per-target-unit `delays`, `source_length`, and `step_seconds`, the wall-clock of each lockstep step of the
  sentence's batch), appended batch by batch and fsync-ed; `resume=True` keeps the finished rows;
* `scores.jsonl`: per-sentence latency and model-based scores (COMET, BLEURT, judge), reused on resume;
* `instances.log`: the hypotheses in SimulEval's log format, so `simuleval --score-only` re-scores them;
* `summary.json`; and for all points together `results.json` / `results.md` (`trl-seqpo plot` reads them).

Two passes: every point is decoded first, then the model is freed (`LoadedModel.close`) and only then are the
metrics scored, so a COMET or BLEURT model never shares the GPU with the vLLM engine.

Latency (`trl_seqpo.simt.latency.sentence_latency`, as SimulEval): a target unit first written at step `t` has
delay `min(t * m, n)`; AL, LAAL, DAL and AP are computed per sentence and averaged over sentences, with `|Y*|` from
`trl_seqpo.simt.latency.reference_length` (`reference_length="units"`, `"simuleval"` or `"hypothesis"`). An empty
hypothesis gets AL = LAAL = DAL = `n` and AP = 1 (SimulEval skips such sentences). Computation-aware AL and LAAL
(`AL_CA`, `LAAL_CA`) add to each delay the wall-clock time the model had spent on the sentence's steps up to the one
that wrote the unit, converted to source units at `source_unit_seconds` per unit (the pace of the incoming
source); they depend on the hardware, which `results.json` records.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from trl_seqpo.errors import UserInputError
from trl_seqpo.evaluate.common import EvalConfig, check_resume, decode_pending, split_names
from trl_seqpo.evaluate.records import ScoreFile, load_pairs, text_digest, write_simuleval_log
from trl_seqpo.jsonl import ResumableJsonl, atomic_write_json
from trl_seqpo.languages import default_unit
from trl_seqpo.outputs import file_fingerprint
from trl_seqpo.rollout.settings import DecodingSettings, fill_from_model
from trl_seqpo.simt.chunking import Unit
from trl_seqpo.simt.latency import (
    corpus_latency,
    delays_from_steps,
    latency_metric_names,
    reference_length,
    sentence_latency,
)

__all__ = [
    "COMPUTATION_AWARE",
    "KNOWN_METRICS",
    "OperatingPoint",
    "SimTEvalConfig",
    "computation_aware_delays",
    "evaluate_simt",
    "latency_columns",
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
#: Registered latency metrics also reported computation-aware (``NAME_CA``: delays plus compute time, module doc).
COMPUTATION_AWARE: tuple[str, ...] = ("AL", "LAAL", "YAAL")


def latency_columns() -> tuple[str, ...]:
    """Every latency column of the results: each registered metric, then the `COMPUTATION_AWARE` ones (``AL_CA``)."""
    return (*latency_metric_names(), *(f"{name}_CA" for name in COMPUTATION_AWARE))


_LATER_SETTINGS = ("top_k", "system_prompt", "step_end_token", "end_of_translation_token")


def _later_settings(config: Any) -> dict[str, Any]:
    """The `_LATER_SETTINGS` of ``config`` that are set: recorded only then, so that folders written before these
    settings existed still resume."""
    return {name: getattr(config, name) for name in _LATER_SETTINGS if getattr(config, name) not in (None, 0)}


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


@dataclass(kw_only=True)
class SimTEvalConfig(DecodingSettings, EvalConfig):
    """Settings of `evaluate_simt`; `trl-seqpo evaluate simt` has one flag per field (`--wait-k`, ...).

    The rollout's model-wide settings (prompt format, step budgets, sampling, system prompt, step tokens) are
    `DecodingSettings`, shared with the server; those left unset follow the model's ``seqpo_rollout.json`` (what
    `SeqPOTrainer` saved), else the defaults of training (`SeqPOConfig`): the chat prompt, 60 new tokens per step and
    2 steps after the source. Chunks of 3 units, English -> Chinese; decoding is greedy.
    """

    known_metrics: ClassVar[tuple[str, ...]] = KNOWN_METRICS

    data: str | Path = field(metadata={"help": "JSONL/TSV file or datasets folder with source and reference columns"})
    policy: Literal["model", "wait-k", "full-sentence"] = field(
        default="model", metadata={"help": "who decides when to write: the model, wait-k, or full-sentence"}
    )
    wait_k: tuple[int, ...] = field(default=(3,), metadata={"help": "k values of --policy wait-k (one run each)"})
    chunk_sizes: tuple[int, ...] | None = field(
        default=None, metadata={"help": "chunk sizes m, one run each (default: 1 for wait-k, else 3 as training)"}
    )
    wait_k_rate: float = field(default=1.0, metadata={"help": "target units written per source unit by wait-k"})
    source_lang: str | None = field(default="English", metadata={"help": "source language in prompts"})
    target_lang: str | None = field(
        default="Chinese", metadata={"help": "target language in prompts; picks the BLEU tokeniser and latency unit"}
    )
    source_unit: Literal["word", "char"] | None = field(
        default=None, metadata={"help": "unit of source chunks (default: char for zh/ja/th, else word)"}
    )
    latency_unit: Literal["word", "char"] | None = field(
        default=None, metadata={"help": "unit of target delays (default: char for zh/ja/th targets, else word)"}
    )
    reference_length: Literal["units", "simuleval", "hypothesis"] = field(
        default="units", metadata={"help": "|Y*| of AL/LAAL/AP: units, simuleval or hypothesis"}
    )
    source_unit_seconds: float = field(
        default=0.4, metadata={"help": "seconds between two source units, for computation-aware AL_CA/LAAL_CA"}
    )
    bleurt_model: str | None = field(
        default=None, metadata={"help": "bleurt-pytorch checkpoint (adds bleurt to --metrics)"}
    )
    server: str | None = field(
        default=None, metadata={"help": "http://HOST:PORT of a running `trl-seqpo serve simt`: decode through it"}
    )
    server_token: str | None = field(default=None, metadata={"help": "bearer token of --server"})

    def __post_init__(self) -> None:
        try:
            fill_from_model(self, self.model)
        except ValueError as error:
            raise UserInputError(f"--model {self.model}: {error}") from None
        if self.bleurt_model and "bleurt" not in split_names(self.metrics):
            self.metrics = (*split_names(self.metrics), "bleurt")
        super().__post_init__()
        if self.policy not in POLICIES:
            raise UserInputError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.temperature < 0:
            raise UserInputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.source_unit_seconds <= 0:
            raise UserInputError(f"source_unit_seconds must be > 0, got {self.source_unit_seconds}")
        self.wait_k = tuple(self.wait_k)
        if self.chunk_sizes is None:
            self.chunk_sizes = (1,) if self.policy == "wait-k" else (3,)
        self.chunk_sizes = tuple(self.chunk_sizes)
        for name in ("wait_k", "chunk_sizes"):
            values = getattr(self, name)
            if not values or any(not isinstance(value, int) or value < 1 for value in values):
                raise UserInputError(f"{name} takes positive integers, got {values!r}")

    @property
    def resolved_latency_unit(self) -> Unit:
        return self.latency_unit or default_unit(self.target_lang or "Chinese")

    def points(self) -> list[OperatingPoint]:
        """The operating points, one run each."""
        if self.policy == "wait-k":
            return [OperatingPoint("wait-k", m, k) for k in dict.fromkeys(self.wait_k) for m in self.chunk_sizes]
        return [OperatingPoint(self.policy, m) for m in dict.fromkeys(self.chunk_sizes)]

    def run_settings(self, point: OperatingPoint) -> dict[str, Any]:
        """Settings that change the hypotheses of `point` (checked on resume)."""
        return {
            "model": str(self.model),
            "data": str(self.data),
            "data_file": file_fingerprint(self.data),  # an edited data file is not resumed under the same name
            **asdict(point),
            "wait_k_rate": self.wait_k_rate,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "source_lang": self.source_lang,
            "target_lang": self.target_lang,
            "source_unit": self.source_unit,
            "latency_unit": self.resolved_latency_unit,
            "prompt_format": self.prompt_format,
            "max_new_tokens_per_step": self.max_new_tokens_per_step,
            "max_steps_after_source": self.max_steps_after_source,
            **_later_settings(self),
        }


def rollout_config(config: SimTEvalConfig, point: OperatingPoint) -> Any:
    """The `SimultaneousRolloutConfig` of one operating point: what `evaluate_simt` and the SimulEval agent decode.

    Every rollout field ``config`` holds is read by name (`trl_seqpo.rollout.settings.rollout_config_from`); the
    point gives the chunk size, and the latency unit is resolved from the target language as in `run_settings`.
    """
    from trl_seqpo.rollout.settings import rollout_config_from

    try:
        return rollout_config_from(config, chunk_size=point.chunk_size, target_unit=config.resolved_latency_unit)
    except ValueError as error:
        raise UserInputError(str(error)) from error


class _StepClock:
    """Wall-clock seconds of each lockstep step of one batch (`SimultaneousRollout.run(on_step=...)`)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last = time.perf_counter()

    def tick(self, step: int) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


def _decode(
    rows: list[dict],
    store: ResumableJsonl,
    rollout: Any,
    policy: Any,
    config: SimTEvalConfig,
    label: str,
    on_batch: Callable[[int], None] | None,
) -> int:
    """Decode the rows not yet in `store`, batch by batch; returns how many were decoded now."""

    def decode(start: int, batch: list[dict]) -> list[dict]:
        sources = [" ".join(row["source"].split()) for row in batch]
        clock = _StepClock()
        trajectories = rollout.run(sources, 1, policy, seed=config.seed + start, on_step=clock.tick)
        return [
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
                "step_seconds": [round(s, 6) for s in clock.seconds[: len(trajectory.step_outputs)]],
            }
            for row, source, trajectory in zip(batch, sources, trajectories)
        ]

    return decode_pending(
        rows, lambda row: row["id"], store, config.batch_size, decode,
        desc=f"simt {label}", unit="sent", progress=config.progress, on_batch=on_batch,
    )  # fmt: skip


def computation_aware_delays(
    step_outputs: list[str], delays: list[float], step_seconds: list[float], unit: Unit, source_unit_seconds: float
) -> list[float]:
    """Delays plus the compute time spent before each unit was written, in source units (for `AL_CA`, `LAAL_CA`).

    A unit written at step `t` gets `d_i + (seconds of steps 1..t) / source_unit_seconds`: the source units that
    would have arrived, at `source_unit_seconds` per unit, while the model was computing.

    Examples:
        >>> computation_aware_delays(["", "a b", " c"], [2, 2, 3], [0.1, 0.2, 0.4], "word", 0.5)
        [2.6, 2.6, 4.4]
    """
    written_at = delays_from_steps(step_outputs, 1, len(step_outputs), unit)  # the step of each target unit
    spent = list(itertools.accumulate(step_seconds))
    return [round(d + spent[t - 1] / source_unit_seconds, 6) for d, t in zip(delays, written_at)]


def _latency(hypotheses: list[dict], config: SimTEvalConfig, scores: ScoreFile) -> list[list[float] | None]:
    """Per-row AL/LAAL/DAL/AP (and the computation-aware AL_CA/LAAL_CA) into `scores`; returns the CA delays."""
    unit = config.resolved_latency_unit
    elapsed: list[list[float] | None] = []
    for row in hypotheses:
        ref_length = reference_length(row["reference"], unit, config.reference_length)
        values = sentence_latency(row["delays"], row["source_length"], ref_length)
        aware = None
        if len(row.get("step_seconds", ())) == len(row["step_outputs"]):  # rows decoded before 0.1 have no clock
            aware = computation_aware_delays(
                row["step_outputs"], row["delays"], row["step_seconds"], unit, config.source_unit_seconds
            )
            timed = sentence_latency(aware, row["source_length"], ref_length)
            values |= {f"{name}_CA": timed[name] for name in COMPUTATION_AWARE}
        scores.update_row(row["id"], values)
        elapsed.append(aware)
    return elapsed


def _score(hypotheses: list[dict], run_dir: Path, config: SimTEvalConfig) -> tuple[dict, dict, dict]:
    """Corpus metrics, counts and sacrebleu signatures of one run; per-row scores go to `scores.jsonl`."""
    from trl_seqpo.evaluate import metrics as quality

    scores = ScoreFile(
        run_dir / "scores.jsonl", {row["id"]: text_digest(row["translation"]) for row in hypotheses}, config.resume
    )
    elapsed = _latency(hypotheses, config, scores)
    write_simuleval_log(run_dir / "instances.log", hypotheses, elapsed)
    by_id = {row["id"]: row for row in hypotheses}
    translations = [row["translation"] for row in hypotheses]
    references = [row["reference"] for row in hypotheses]
    summary: dict[str, float | None] = {}
    signatures: dict[str, str] = {}
    if "bleu" in config.metrics:
        summary["BLEU"], signatures["BLEU"] = quality.corpus_bleu(
            translations, references, config.target_lang, config.bleu_tokenizer
        )
    if "chrf" in config.metrics:
        summary["chrF"], signatures["chrF"] = quality.corpus_chrf(translations, references)
    counts = {"rows": len(hypotheses), "empty": sum(not text.strip() for text in translations)}
    for metric in ("comet", "xcomet", "bleurt", "judge"):
        if metric not in config.metrics:
            continue
        name = METRIC_NAMES[metric]
        # cached under the scoring model too: a folder re-scored with another checkpoint or judge never mixes them
        scorer = {"judge": getattr(config.judge, "model", None), "bleurt": config.bleurt_model}
        key = f"{name}@{scorer.get(metric, config.comet_model)}"

        def score(todo: list[dict], metric: str = metric) -> list:
            hyps, refs, srcs = ([row[column] for row in todo] for column in ("translation", "reference", "source"))
            if metric in ("comet", "xcomet"):
                return quality.comet_scores(
                    srcs, hyps, refs, config.comet_model, kind=metric, batch_size=config.comet_batch_size
                )
            if metric == "bleurt":
                return quality.bleurt_scores(hyps, refs, str(config.bleurt_model))
            return quality.judge_scores(srcs, hyps, config.judge, progress=config.progress)

        values = scores.fill(key, by_id, score)
        summary[name] = quality.mean_or_none(values)
        counts[f"unscored_{metric}"] = sum(value is None for value in values)
    scores.save()
    for name in latency_columns():  # every registered latency metric, and the computation-aware ones
        summary[name] = corpus_latency(scores.values(name))  # undefined (NaN) sentences left out, as OmniSTEval
    return summary, counts, signatures


def _decode_all(
    config: SimTEvalConfig, rows: list[dict], on_batch: Callable[[int], None] | None
) -> tuple[dict[OperatingPoint, ResumableJsonl], dict[OperatingPoint, int]]:
    """Pass 1: decode every operating point (the model is loaded only if a row is missing), then free the model."""
    from trl_seqpo.rollout.loading import load_backend
    from trl_seqpo.rollout.simultaneous import SimultaneousRollout

    stores, generated, loaded = {}, {}, None
    try:
        for point in config.points():
            run_dir = Path(config.output_dir) / point.slug
            check_resume(run_dir, config.run_settings(point), config.resume)
            stores[point] = ResumableJsonl(run_dir / "hypotheses.jsonl", resume=config.resume, unique=True)
            generated[point] = 0
            if all(row["id"] in stores[point].done for row in rows):
                continue
            if config.server:  # the server decodes (the real network path), with the same rollout code
                from trl_seqpo.evaluate.remote import decode_with_server

                generated[point] = decode_with_server(rows, stores[point], config, point, on_batch)
                continue
            if loaded is None:
                loaded = load_backend(config.model, config.backend, **config.engine_options())
            try:
                rollout = SimultaneousRollout(loaded.backend, loaded.tokenizer, rollout_config(config, point))
            except ValueError as error:
                raise UserInputError(f"--model {config.model}: {error}") from error
            policy = point.schedule(config.wait_k_rate)
            generated[point] = _decode(rows, stores[point], rollout, policy, config, point.label, on_batch)
    finally:
        if loaded is not None:
            loaded.close()  # the engine's GPU memory is free before COMET / BLEURT load
    return stores, generated


def evaluate_simt(config: SimTEvalConfig, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Decode every operating point of `config`, free the model, score, and write the result files (module doc).

    Args:
        config: The settings.
        on_batch: Called after each decoded batch with the number of rows decoded so far in this run (tests use it
            to interrupt a run).

    Returns:
        The results document (`trl_seqpo.evaluate.report`), with `generated` (rows decoded now) per run.

    Raises:
        UserInputError: Bad data, model path, settings, or an unreachable judge.
        MissingDependencyError: A requested metric or backend is not installed.
    """
    from trl_seqpo.evaluate.common import (
        check_metric_dependencies,
        metric_models,
        refuse_several_processes,
        run_environment,
    )
    from trl_seqpo.evaluate.metrics import check_judge_reachable
    from trl_seqpo.evaluate.report import write_results

    refuse_several_processes("trl-seqpo evaluate simt")
    rows = load_pairs(config.data, ("source", "reference"))[: config.limit]
    check_metric_dependencies(config.metrics, config.bleurt_model)
    if "judge" in config.metrics:
        check_judge_reachable(config.judge)
    environment = run_environment(config.backend, config.device)
    stores, generated = _decode_all(config, rows, on_batch)
    policy_name = {"model": "", "wait-k": " + wait-k", "full-sentence": " (full sentence)"}[config.policy]
    results: dict[str, Any] = {
        "task": "simt",
        "system": config.system_name or f"{Path(config.model).name}{policy_name}",
        "model": str(config.model),
        "data": str(config.data),
        "settings": {
            "source_lang": config.source_lang,
            "target_lang": config.target_lang,
            "latency_unit": config.resolved_latency_unit,
            "reference_length": config.reference_length,
            "temperature": config.temperature,
            "prompt_format": config.prompt_format,
            "max_new_tokens_per_step": config.max_new_tokens_per_step,
            **_later_settings(config),
            "source_unit_seconds": config.source_unit_seconds,
        },
        "signatures": {},
        "metric_models": metric_models(config, config.bleurt_model),
        "environment": environment,
        "notes": [
            f"AL_CA/LAAL_CA: computation-aware, delays plus wall-clock of the steps at {config.source_unit_seconds} "
            f"s per source unit, measured on {environment['hardware']} with batches of {config.batch_size}",
        ],
        "runs": [],
    }
    for point, store in stores.items():
        run_dir = Path(config.output_dir) / point.slug
        summary, counts, signatures = _score([store.rows[row["id"]] for row in rows], run_dir, config)
        results["signatures"].update(signatures)
        run = {"label": point.label, **asdict(point), "dir": point.slug, "metrics": summary, "counts": counts}
        run["generated"] = generated[point]
        atomic_write_json(run_dir / "summary.json", run)
        results["runs"].append(run)
        write_results(results, config.output_dir, show=False)
    write_results(results, config.output_dir, show=True)
    return results
