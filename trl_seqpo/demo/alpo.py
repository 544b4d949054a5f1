"""The ALPO part of ``trl-seqpo demo``: line-level preference optimisation against a local judge, on a CPU.

ALPO (alpo-subtitles.txt, Sec. 3, Alg. 1, Eq. 2-9) end to end on the synthetic subtitle task of
`trl_seqpo.synthetic.subtitles`, with a real OpenAI-compatible judge served over HTTP on 127.0.0.1.

**The hidden preference.** Six target words have an equally correct synonym (``grava``/``mega``,
``veka``/``antika``, ``goja``/``felika``, ``domo``/``kaso``, ``vidas``/``miras``, ``amas``/``sxatas``;
`hidden_preference`). The judge
(`SynonymPreferenceScorer`) secretly likes the second word of each pair:
``score = clamp(50 + 20 * (#preferred - #plain), 0, 100)``. The references use the preferred word only 30% of the
time (``synonym_prob``), so the SFT model learns to write the plain word; only the judge's feedback can teach it
otherwise. Nothing in the training data or the prompts names the preference.

Stages (`ALPO_STAGES`, each skipped when its output exists, so a killed demo resumes), all under
``DIR/alpo/``:

1. ``alpo_data``: train / sampling / held-out documents of numbered lines, a word-level tokenizer and a tiny
   Qwen2-style model (`trl_seqpo.synthetic.tiny_models`);
2. ``alpo_sft``: TRL's ``SFTTrainer`` on prompt-completion pairs of the numbered-line format
   (`sft_examples`, ALPO Sec. 4.2), the policy ``pi_sft``;
3. ``alpo_sample``: the judge server starts on 127.0.0.1 (port 0) and ``trl-seqpo alpo sample``
   (`SegmentwiseSampler` + `LLMJudge`, Alg. 1)
   samples k candidates per line and has them judged over HTTP (resumable, with its sqlite judge cache);
4. ``alpo_train``: `build_preference_pairs` (gate, chosen/rejected, weights, betas,
   5 prefix-mixing stages) and `ALPOTrainer`;
5. ``alpo_evaluate``: greedy line-by-line translation of the held-out documents by the SFT and the ALPO model
   (`evaluate_subtitles`), one judge score 0-100 per document from the same
   judge over HTTP, the format check, chrF; ``DIR/alpo_results.json`` and ``DIR/alpo_results.md``.

Deviations from the paper, all for a CPU budget of a few minutes: 4-line documents (paper 35), k = 8 candidates
(paper 15) sampled at temperature 1.0 (Table 9; the authors' code uses 0.7), a 0.5 M-parameter model, learning rate
2e-4 (Table 9: 1e-6 for a 7B model), and the judge is a scripted scorer instead of Qwen3-14B.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError

__all__ = [
    "ALPO_STAGES",
    "AlpoDemoSettings",
    "alpo_settings",
    "stage_alpo_data",
    "stage_alpo_evaluate",
    "stage_alpo_sample",
    "stage_alpo_sft",
    "stage_alpo_train",
]

#: systems compared in the results table: model directory under ``alpo/models`` -> label.
SYSTEMS: dict[str, str] = {"sft": "SFT", "alpo": "ALPO"}
JUDGE_MODEL = "local-synonym-judge"


@dataclass
class AlpoDemoSettings:
    """Sizes and hyper-parameters of the ALPO demo (the full run; `quick` for tests).

    Measured on a shared 2-core CPU (see ``docs/alpo.md``): the SFT steps dominate (~0.5 s each); 300 steps reach
    chrF ~76 on held-out lines with every line well formed. ALPO at learning rate 1e-3 gained as much judge score but
    lost ~20 chrF (the loss reached ~0 by step 40 on 185 pairs); 2e-4 keeps chrF within a point of the SFT model.

    Args:
        seed: Seed of data, models, sampling and training.
        lines_per_document: Lines per document (paper: 35).
        max_words: Longest subtitle line in words (short lines keep the tiny model's task learnable in minutes).
        synonym_prob: Share of references that use the judge's preferred synonym (below 0.5, so the SFT model
            prefers the plain word and greedy decoding shows it).
        num_sft_documents: Documents of the SFT set.
        num_sample_documents: Documents sampled and judged for ALPO (another programme than the SFT set).
        num_test_documents: Held-out documents of the evaluation.
        sft_steps, sft_batch_size, sft_learning_rate: SFT warm-up.
        num_candidates: ``k`` samples per line (paper: 15).
        temperature: Sampling temperature (Table 9: 1.0).
        judge_shuffles: Shuffled votes per line (paper: 4).
        documents_per_batch: Documents sampled in lockstep.
        alpo_steps, alpo_batch_size, alpo_learning_rate, alpo_beta: ALPO training.
        eval_batch_size: Documents translated together in the evaluation.
    """

    seed: int = 0
    lines_per_document: int = 4
    max_words: int = 5
    synonym_prob: float = 0.3
    num_sft_documents: int = 600
    num_sample_documents: int = 48
    num_test_documents: int = 40
    sft_steps: int = 300
    sft_batch_size: int = 32
    sft_learning_rate: float = 5e-3
    num_candidates: int = 8
    temperature: float = 1.0
    judge_shuffles: int = 4
    documents_per_batch: int = 8
    alpo_steps: int = 100
    alpo_batch_size: int = 8
    alpo_learning_rate: float = 2e-4
    alpo_beta: float = 1.0
    eval_batch_size: int = 40

    @classmethod
    def quick(cls) -> AlpoDemoSettings:
        """Tiny sizes for tests: every stage runs, in well under a minute (no gain is expected)."""
        return cls(
            num_sft_documents=64,
            num_sample_documents=4,
            num_test_documents=4,
            sft_steps=8,
            sft_batch_size=8,
            num_candidates=4,
            judge_shuffles=2,
            documents_per_batch=4,
            alpo_steps=2,
            alpo_batch_size=2,
            eval_batch_size=4,
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


def alpo_settings(ctx: Any) -> AlpoDemoSettings:
    """The ALPO settings of a demo run: ``ctx.alpo`` or ``ctx.settings.alpo`` when set, else derived from the demo.

    Without explicit settings, the quick variant is used when the demo's own settings are its quick variant
    (``type(ctx.settings).quick()``, compared on ``num_train``), and the demo's ``seed`` is kept. The result is
    cached on ``ctx.alpo``.

    Args:
        ctx: The demo's `DemoContext` (anything with ``settings`` and ``paths.root``).

    Returns:
        The settings.
    """
    for owner in (ctx, getattr(ctx, "settings", None)):
        found = getattr(owner, "alpo", None)
        if isinstance(found, AlpoDemoSettings):
            return found
    demo = getattr(ctx, "settings", None)
    quick = False
    if demo is not None and hasattr(type(demo), "quick"):
        quick = getattr(demo, "num_train", None) == getattr(type(demo).quick(), "num_train", object())
    settings = AlpoDemoSettings.quick() if quick else AlpoDemoSettings()
    settings.seed = int(getattr(demo, "seed", settings.seed))
    ctx.alpo = settings
    return settings


# ------------------------------------------------------------------------------------------------------ helpers


class _Paths:
    """Where the ALPO stages write, under ``DIR/alpo``."""

    def __init__(self, root: Path) -> None:
        self.demo_root = root
        self.root = root / "alpo"
        self.data = self.root / "data"
        self.models = self.root / "models"
        self.candidates = self.root / "candidates.jsonl"
        self.sample_stats = self.root / "sample_stats.json"
        self.evaluation = self.root / "eval"
        self.results_json = root / "alpo_results.json"
        self.results_md = root / "alpo_results.md"

    def documents(self, split: str) -> Path:
        return self.data / f"{split}.jsonl"

    def model(self, name: str) -> Path:
        return self.models / name


def _setup(ctx: Any) -> tuple[AlpoDemoSettings, _Paths]:
    settings = alpo_settings(ctx)
    paths = _Paths(Path(ctx.paths.root))
    saved = paths.root / "settings.json"
    wanted = settings.to_json()
    if saved.exists():
        previous = json.loads(saved.read_text())
        if previous != wanted:
            changed = sorted(key for key in wanted if previous.get(key) != wanted[key])
            raise UserInputError(
                f"{paths.root} holds an ALPO demo run with other settings ({', '.join(changed)}); "
                "use another --output-dir or delete this one",
                path=str(saved),
            )
    else:
        paths.root.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(wanted, indent=2))
    return settings, paths


def _done(directory: Path) -> Path:
    return directory / "DONE"


def _print(ctx: Any, message: str) -> None:
    console = getattr(ctx, "console", None)
    if console is not None:
        console.print(message)


def _documents(settings: AlpoDemoSettings, count: int, seed: int, prefix: str) -> list[Any]:
    from trl_seqpo.subtitles.documents import make_documents
    from trl_seqpo.synthetic.subtitles import subtitle_lines

    lines = subtitle_lines(
        count * settings.lines_per_document, seed, synonym_prob=settings.synonym_prob, max_words=settings.max_words
    )
    return make_documents(lines, settings.lines_per_document, doc_id_prefix=prefix)


# ------------------------------------------------------------------------------------------------------ stages


def stage_alpo_data(ctx: Any) -> None:
    """Documents (SFT set, ALPO sampling set, held-out test set; three programmes) and the untrained tiny model."""
    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.subtitles import prompt_texts, write_documents
    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    settings, paths = _setup(ctx)
    if not _done(paths.data).exists():
        splits = {
            "sft": (settings.num_sft_documents, settings.seed),
            "sample": (settings.num_sample_documents, settings.seed + 1),
            "test": (settings.num_test_documents, settings.seed + 2),
        }
        for split, (count, seed) in splits.items():
            write_documents(_documents(settings, count, seed, f"alpo-{split}"), paths.documents(split))
        _done(paths.data).write_text("ok\n")
    init = paths.model("init")
    if not _done(init).exists():
        texts = [*synthetic.language_names(), *prompt_texts(settings.lines_per_document)]
        tokenizer = build_tokenizer(synthetic.vocabulary(), extra_texts=texts)
        model = build_tiny_model(tokenizer, seed=settings.seed)
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        _done(init).write_text("ok\n")


def stage_alpo_sft(ctx: Any) -> None:
    """SFT on the numbered-line format with TRL's ``SFTTrainer`` (prompt-completion, loss on the completion)."""
    settings, paths = _setup(ctx)
    out = paths.model("sft")
    if _done(out).exists():
        return
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_seqpo.subtitles.documents import read_documents, sft_examples
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE

    documents = read_documents(paths.documents("sft"))
    dataset = Dataset.from_list(sft_examples(documents, SOURCE_LANGUAGE, TARGET_LANGUAGE))
    tokenizer = AutoTokenizer.from_pretrained(paths.model("init"))
    model = AutoModelForCausalLM.from_pretrained(paths.model("init"))
    config = SFTConfig(
        output_dir=str(paths.root / "sft_run"),
        max_steps=settings.sft_steps,
        per_device_train_batch_size=settings.sft_batch_size,
        learning_rate=settings.sft_learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(10, settings.sft_steps // 10),
        completion_only_loss=True,
        max_length=512,
        logging_steps=max(1, settings.sft_steps // 6),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=settings.seed,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    metrics = {"train_runtime_s": result.metrics.get("train_runtime"), "train_loss": result.training_loss}
    (out / "sft_metrics.json").write_text(json.dumps(metrics, indent=2))
    _done(out).write_text("ok\n")


def stage_alpo_sample(ctx: Any) -> None:
    """ALPO Alg. 1 through ``trl-seqpo alpo sample``: k candidates per line, judged over HTTP by the local server."""
    settings, paths = _setup(ctx)
    if paths.sample_stats.exists():
        return
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, sample_candidates
    from trl_seqpo.synthetic.local_judge import SynonymPreferenceScorer, serve
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE, hidden_preference

    start = time.perf_counter()
    with serve(SynonymPreferenceScorer(hidden_preference()), model=JUDGE_MODEL) as server:
        _print(ctx, f"  judge server on {server.base_url} (hidden synonym preference)")
        # what `trl-seqpo alpo sample` runs; it appends per document and resumes after a kill
        config = AlpoSampleConfig(
            documents=str(paths.documents("sample")), output=str(paths.candidates), model=str(paths.model("sft")),
            source_lang=SOURCE_LANGUAGE, target_lang=TARGET_LANGUAGE, num_candidates=settings.num_candidates,
            temperature=settings.temperature, max_new_tokens=4 * settings.max_words, seed=settings.seed,
            documents_per_batch=settings.documents_per_batch, judge_min_candidates=1,
            judge_base_url=server.base_url, judge_model=JUDGE_MODEL, judge_num_shuffles=settings.judge_shuffles,
            judge_timeout=30.0,
        )  # fmt: skip
        report = sample_candidates(config)
        if report.unjudged_units:  # e.g. every candidate scored the same (rejected as ties); the pair gate drops them
            _print(ctx, f"  {report.unjudged_units} units have no valid judge vote; the pair builder gates them out")
        requests = server.request_count
    stats = {"judge_http_requests": requests, "seconds": round(time.perf_counter() - start, 2)}
    paths.sample_stats.write_text(json.dumps(stats, indent=2))


def stage_alpo_train(ctx: Any) -> None:
    """Preference pairs (gate, chosen/rejected, weights, betas, prefix mixing) and `ALPOTrainer`."""
    settings, paths = _setup(ctx)
    out = paths.model("alpo")
    if _done(out).exists():
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo import ALPOConfig, ALPOTrainer
    from trl_seqpo.alpo.pairs import build_preference_pairs, read_candidate_records

    dataset, stats = build_preference_pairs(read_candidate_records(paths.candidates), seed=settings.seed)
    pair_stats = stats.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    if len(dataset) == 0:
        raise RuntimeError(f"no preference pair survived the gate ({pair_stats}); sample more documents")
    tokenizer = AutoTokenizer.from_pretrained(paths.model("sft"))
    model = AutoModelForCausalLM.from_pretrained(paths.model("sft"))
    config = ALPOConfig(
        output_dir=str(paths.root / "alpo_run"),
        max_steps=settings.alpo_steps,
        per_device_train_batch_size=settings.alpo_batch_size,
        learning_rate=settings.alpo_learning_rate,
        beta=settings.alpo_beta,
        max_length=512,
        logging_steps=max(1, settings.alpo_steps // 5),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=settings.seed,
        dataset_num_proc=None,
    )
    trainer = ALPOTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, pair_stats=pair_stats
    )
    result = trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    metrics = {
        "train_runtime_s": result.metrics.get("train_runtime"),
        "train_loss": result.training_loss,
        "pair_rows": len(dataset),
        "pair_stats": pair_stats,
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
    }
    (out / "alpo_metrics.json").write_text(json.dumps(metrics, indent=2))
    _done(out).write_text("ok\n")


def preferred_share(lines: list[str]) -> tuple[int, int]:
    """Count the judge's preferred synonyms and their plain counterparts in translated lines.

    Args:
        lines: Translated lines.

    Returns:
        ``(preferred, plain)`` word counts.
    """
    from trl_seqpo.synthetic.subtitles import hidden_preference

    preference = hidden_preference()
    liked = set(preference.values())
    words = [word for line in lines for word in re.findall(r"[^\W\d_]+", line.lower())]
    return sum(word in liked for word in words), sum(word in preference for word in words)


def _chrf_synonyms_merged(hypotheses: list[str], references: list[str]) -> float:
    """chrF with every plain word replaced by its preferred synonym on both sides (accuracy, whatever the choice)."""
    import sacrebleu

    from trl_seqpo.synthetic.subtitles import hidden_preference

    preference = hidden_preference()

    def merge(text: str) -> str:
        return " ".join(preference.get(word, word) for word in text.replace(".", " . ").split())

    return sacrebleu.corpus_chrf([merge(h) for h in hypotheses], [[merge(r) for r in references]]).score


def _system_row(name: str, label: str, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run_dir / "line" / "hypotheses.jsonl").read_text().splitlines() if line]
    hypotheses = [line for row in rows for line in row["hypothesis_lines"]]
    references = [line for row in rows for line in row["reference_lines"]]
    counts = summary["counts"]
    bad = counts["missing_lines"] + counts["merged_lines"] + counts["truncated_lines"]
    preferred, plain = preferred_share(hypotheses)
    return {
        "system": name,
        "name": label,
        "judge_score": summary["metrics"].get("Vividness"),
        "unscored_documents": counts.get("unscored_vividness", 0),
        "lines_parsed": max(0, counts["lines"] - bad),
        "lines_expected": counts["lines"],
        "preferred_synonyms": preferred,
        "plain_synonyms": plain,
        "preferred_share": preferred / (preferred + plain) if preferred + plain else None,
        "chrf": summary["metrics"].get("chrF"),
        "chrf_synonyms_merged": _chrf_synonyms_merged(hypotheses, references),
        "documents": counts["documents"],
    }


def stage_alpo_evaluate(ctx: Any) -> None:
    """Greedy line-by-line translation of the held-out documents by SFT and ALPO, judged over HTTP; the table."""
    settings, paths = _setup(ctx)
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles
    from trl_seqpo.judge.client import JudgeConfig
    from trl_seqpo.synthetic.local_judge import SynonymPreferenceScorer, serve
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE, hidden_preference

    rows = []
    start = time.perf_counter()
    with serve(SynonymPreferenceScorer(hidden_preference()), model=JUDGE_MODEL) as server:
        judge = JudgeConfig(
            base_url=server.base_url,
            model=JUDGE_MODEL,
            aspect="vividness",
            source_language=SOURCE_LANGUAGE,
            target_language=TARGET_LANGUAGE,
            num_shuffles=1,  # one candidate per request: every order is the same
            timeout=30.0,
            seed=settings.seed,
            cache_path=str(paths.evaluation / "judge-cache.sqlite"),
        )
        for name, label in SYSTEMS.items():
            run_dir = paths.evaluation / name
            summary_path = run_dir / "line" / "summary.json"
            if not summary_path.exists():
                evaluate_subtitles(
                    SubtitleEvalConfig(
                        model=str(paths.model(name)),
                        documents=paths.documents("test"),
                        output_dir=run_dir,
                        mode="line",
                        source_lang=SOURCE_LANGUAGE,
                        target_lang=TARGET_LANGUAGE,
                        seed=settings.seed,
                        batch_size=settings.eval_batch_size,
                        max_new_tokens_per_line=4 * settings.max_words,
                        metrics=["bleu", "chrf", "judge"],
                        judge=judge,
                        judge_aspects=["vividness"],
                        resume=True,
                        system_name=label,
                        progress=False,
                    )
                )
            rows.append(_system_row(name, label, run_dir, json.loads(summary_path.read_text())))
        requests = server.request_count
    sample_stats = json.loads(paths.sample_stats.read_text()) if paths.sample_stats.exists() else {}
    train_metrics_path = paths.model("alpo") / "alpo_metrics.json"
    train_metrics = json.loads(train_metrics_path.read_text()) if train_metrics_path.exists() else {}
    by_name = {row["system"]: row for row in rows}
    gain = None
    if by_name["sft"]["judge_score"] is not None and by_name["alpo"]["judge_score"] is not None:
        gain = by_name["alpo"]["judge_score"] - by_name["sft"]["judge_score"]
    report = {
        "settings": settings.to_json(),
        "hidden_preference": hidden_preference(),
        "judge": {"model": JUDGE_MODEL, "scorer": "SynonymPreferenceScorer(base=50, step=20)"},
        "judge_http_requests": {"sample": sample_stats.get("judge_http_requests"), "evaluate": requests},
        "pair_stats": train_metrics.get("pair_stats"),
        "pair_rows": train_metrics.get("pair_rows"),
        "judge_score_gain": gain,
        "evaluate_seconds": round(time.perf_counter() - start, 2),
        "results": rows,
    }
    paths.results_json.write_text(json.dumps(report, indent=2))
    paths.results_md.write_text(_markdown(rows, gain))
    _show(ctx, rows, gain)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _markdown(rows: list[dict[str, Any]], gain: float | None) -> str:
    lines = [
        "| system | judge score (0-100) | lines parsed / expected | preferred synonyms | chrF "
        "| chrF (synonyms merged) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        share = "n/a" if row["preferred_share"] is None else f"{100 * row['preferred_share']:.0f}%"
        lines.append(
            f"| {row['name']} | {_fmt(row['judge_score'])} | {row['lines_parsed']} / {row['lines_expected']} | "
            f"{share} ({row['preferred_synonyms']}/{row['preferred_synonyms'] + row['plain_synonyms']}) | "
            f"{_fmt(row['chrf'])} | {_fmt(row['chrf_synonyms_merged'])} |"
        )
    lines.append("")
    lines.append(f"Judge score gain (ALPO - SFT): {_fmt(gain)} points on {rows[0]['documents']} held-out documents.")
    return "\n".join(lines) + "\n"


def _show(ctx: Any, rows: list[dict[str, Any]], gain: float | None) -> None:
    console = getattr(ctx, "console", None)
    if console is None:
        return
    from rich.table import Table

    table = Table(title="Synthetic subtitles, ALPO vs SFT (held-out documents, greedy, local judge over HTTP)")
    for header in ("system", "judge score", "lines parsed", "preferred synonyms", "chrF", "chrF (syn. merged)"):
        table.add_column(header, justify="left" if header == "system" else "right")
    for row in rows:
        share = "n/a" if row["preferred_share"] is None else f"{100 * row['preferred_share']:.0f}%"
        table.add_row(
            row["name"],
            _fmt(row["judge_score"]),
            f"{row['lines_parsed']}/{row['lines_expected']}",
            share,
            _fmt(row["chrf"]),
            _fmt(row["chrf_synonyms_merged"]),
        )
    console.print(table)
    console.print(f"judge score gain (ALPO - SFT): {_fmt(gain)} points")


#: the ALPO stages, in order; ``trl_seqpo.demo.seqpo`` appends them to its ``STAGES``.
ALPO_STAGES: list[tuple[str, Callable[[Any], None]]] = [
    ("alpo_data", stage_alpo_data),
    ("alpo_sft", stage_alpo_sft),
    ("alpo_sample", stage_alpo_sample),
    ("alpo_train", stage_alpo_train),
    ("alpo_evaluate", stage_alpo_evaluate),
]


def run_alpo_demo(output_dir: str | os.PathLike[str], settings: AlpoDemoSettings | None = None) -> dict[str, Any]:
    """Run (or resume) only the ALPO stages, outside ``trl-seqpo demo`` (one torch thread, rich console).

    Args:
        output_dir: The demo's output directory.
        settings: ALPO settings; defaults to the full run.

    Returns:
        The report written to ``alpo_results.json``.
    """
    import torch
    from rich.console import Console

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    ctx = argparse.Namespace(
        settings=None, paths=argparse.Namespace(root=Path(output_dir)), console=Console(), timings={}
    )
    ctx.alpo = settings or AlpoDemoSettings()
    for name, stage in ALPO_STAGES:
        start = time.perf_counter()
        ctx.console.print(f"[bold]stage {name}[/bold]")
        stage(ctx)
        ctx.timings[name] = round(time.perf_counter() - start, 2)
        ctx.console.print(f"  done in {ctx.timings[name]:.1f} s")
    report = json.loads(_Paths(Path(output_dir)).results_json.read_text())
    report["timings_s"] = ctx.timings
    return report


if __name__ == "__main__":  # pragma: no cover - manual runs: python -m trl_seqpo.demo.alpo DIR [--quick]
    import sys

    arguments = sys.argv[1:]
    quick = "--quick" in arguments
    target = next(arg for arg in arguments if not arg.startswith("--"))
    result = run_alpo_demo(target, AlpoDemoSettings.quick() if quick else None)
    print(json.dumps({"timings_s": result["timings_s"], "gain": result["judge_score_gain"]}))
