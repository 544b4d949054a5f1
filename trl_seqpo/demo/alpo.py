"""The ALPO part of ``trl-seqpo demo``: line-level preference optimisation against a local judge, on a CPU.

ALPO (alpo-subtitles.txt, Sec. 3, Alg. 1, Eq. 2-9) end to end on the synthetic subtitle task of
`trl_seqpo.synthetic.subtitles`, with a real OpenAI-compatible judge served over HTTP on 127.0.0.1.

**The hidden preference.** Six target words have an equally correct synonym (``grava``/``mega``,
``veka``/``antika``, ``goja``/``felika``, ``domo``/``kaso``, ``vidas``/``miras``, ``amas``/``sxatas``;
`hidden_preference`). The references use the second word of each pair only 30% of the time (``synonym_prob``), so
the SFT model learns to write the first. The training judge
(`trl_seqpo.synthetic.subtitles.AccuracyTasteScorer`) grades like a careful reader with a taste: up to 70 points
for accuracy (word and word-pair overlap with its own dictionary translation of the source, synonyms counted as
equal) and up to 30 for using the preferred synonym wherever the line has room for one, so it ranks the preferred
word above the plain one and the plain one above a wrong or missing word. Its scores are fine-grained, so a vote
rarely ties (the judge rule rejects votes of mostly ties), and a candidate cannot win by inserting words.
Nothing in the training data or the prompts names the preference.

**Evaluation the training never saw.** The held-out documents (whose every line differs from every SFT and sampling
line) are scored without the judge, against the synthetic world's ground truth (`trl_seqpo.demo.alpo_truth`): per
source slot, whether the output chose the preferred rendering and whether it kept the slot's meaning; per line,
whether the output is the world's translation up to the synonym choice. The judge's score is reported too, labelled
as such.

Stages (`ALPO_STAGES`, each skipped when its output exists, so a killed demo resumes), all under
``DIR/alpo/``:

1. ``alpo_data``: train / sampling / held-out documents of numbered lines, a word-level tokenizer and a tiny
   Qwen2-style model (`trl_seqpo.synthetic.tiny_models`);
2. ``alpo_sft``: TRL's ``SFTTrainer`` on prompt-completion pairs of the numbered-line format
   (`sft_examples`, ALPO Sec. 4.2), the policy ``pi_sft``;
3. ``alpo_sample``: the judge server starts on 127.0.0.1 (port 0) and ALPO's sampling
   (`SegmentwiseSampler` + `LLMJudge`, Alg. 1) samples k candidates per line and has them judged over HTTP
   (resumable, with its sqlite judge cache); the share of units whose vote failed is reported;
4. ``alpo_train``: `build_preference_pairs` (gate, chosen/rejected, weights, betas,
   5 prefix-mixing stages) and `ALPOTrainer`;
5. ``alpo_evaluate``: greedy line-by-line translation of the held-out documents by the SFT and the ALPO model
   (`evaluate_subtitles`): preference and accuracy as above, the format check, chrF, and the training judge's
   score over HTTP; ``DIR/alpo_results.json`` and ``DIR/alpo_results.md``.

Deviations from the paper, all for a CPU budget of a few minutes: 4-line documents (paper 35), k = 12 candidates
(paper 15) sampled at temperature 1.0 (Table 9; the authors' code uses 0.7), a 0.5 M-parameter model, learning rate
2e-4 (Table 9: 1e-6 for a 7B model) for 120 steps with beta 2.0, and the judge is a scripted scorer instead of
Qwen3-14B.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_seqpo.demo.common import (
    QuickSettings,
    check_saved_settings,
    done_marker,
    say,
    setting,
    train_sft,
    training_arguments,
)

__all__ = [
    "AlpoDemoSettings",
    "alpo_settings",
    "held_out_documents",
    "judging_stats",
    "stage_alpo_data",
    "stage_alpo_sample",
    "stage_alpo_sft",
    "stage_alpo_train",
    "training_judge",
]

#: systems compared in the results table: model directory under ``alpo/models`` -> label.
SYSTEMS: dict[str, str] = {"sft": "SFT", "alpo": "ALPO"}
JUDGE_MODEL = "local-synonym-judge"


@dataclass
class AlpoDemoSettings(QuickSettings):
    """Sizes and hyper-parameters of the ALPO demo (the full run; `quick` for tests).

    The SFT steps dominate (240 steps of 32; half as many rows, in batches of 16, left the SFT model at chrF 31 on
    held-out lines, seed 0). The ALPO sizes were chosen on the SFT models of seeds 0-2 (``docs/demo.md``): 48
    sampled documents of 8 candidates left seed 2 with too few pairs that show the preferred word (it learned to
    avoid the plain word instead, losing meaning); 96 documents of 12 candidates at 120 steps keep every ALPO claim on
    the three seeds, and 160 steps gave seed 2 more preference at 2.6 points less meaning.

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
        judge_accuracy_points, judge_taste_points: Weights of the training judge (`AccuracyTasteScorer`).
        eval_batch_size: Documents translated together in the evaluation.
    """

    seed: int = 0
    lines_per_document: int = 4
    max_words: int = 5
    synonym_prob: float = 0.3
    num_sft_documents: int = setting(600, quick=64)
    num_sample_documents: int = setting(96, quick=4)
    num_test_documents: int = setting(80, quick=4)
    sft_steps: int = setting(240, quick=8)
    sft_batch_size: int = setting(32, quick=8)
    sft_learning_rate: float = 5e-3
    num_candidates: int = setting(12, quick=4)
    temperature: float = 1.0
    judge_shuffles: int = setting(4, quick=2)
    documents_per_batch: int = setting(8, quick=4)
    alpo_steps: int = setting(120, quick=2)
    alpo_batch_size: int = setting(8, quick=2)
    alpo_learning_rate: float = 2e-4
    alpo_beta: float = 2.0
    judge_accuracy_points: float = 70.0
    judge_taste_points: float = 30.0
    eval_batch_size: int = setting(80, quick=4)

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
    check_saved_settings(paths.root, settings.to_json(), "an ALPO demo run")
    return settings, paths


def _documents(settings: AlpoDemoSettings, count: int, seed: int, prefix: str) -> list[Any]:
    from trl_seqpo.subtitles.documents import make_documents
    from trl_seqpo.synthetic.subtitles import subtitle_lines

    lines = subtitle_lines(
        count * settings.lines_per_document, seed, synonym_prob=settings.synonym_prob, max_words=settings.max_words
    )
    return make_documents(lines, settings.lines_per_document, doc_id_prefix=prefix)


def held_out_documents(settings: AlpoDemoSettings, seed: int, seen: set[str], prefix: str = "alpo-test") -> list[Any]:
    """``settings.num_test_documents`` documents none of whose source lines is in ``seen`` (the training lines).

    Documents are cut from a programme of the given seed as usual; a document sharing any source line with ``seen``
    is dropped whole (dropping single lines would break sentences that run over several lines).

    Raises:
        ValueError: Too few documents survive (the synthetic language is too small for the sizes asked).
    """
    from trl_seqpo.subtitles.documents import Document

    kept: list[Any] = []
    pool = _documents(settings, 4 * settings.num_test_documents, seed, prefix)
    for document in pool:
        if not seen.intersection(document.source_lines):
            kept.append(Document(f"{prefix}-{len(kept):04d}", document.source_lines, document.target_lines))
        if len(kept) == settings.num_test_documents:
            return kept
    raise ValueError(f"only {len(kept)} of {len(pool)} held-out documents share no line with the training data")


# ------------------------------------------------------------------------------------------------------ stages


def stage_alpo_data(ctx: Any) -> None:
    """Documents (SFT set, ALPO sampling set, held-out test set whose lines all differ from the first two) and the
    untrained tiny model."""
    from trl_seqpo.synthetic import language_pair as synthetic
    from trl_seqpo.synthetic.subtitles import prompt_texts, write_documents
    from trl_seqpo.synthetic.tiny_models import build_tiny_model, build_tokenizer

    settings, paths = _setup(ctx)
    if not done_marker(paths.data).exists():
        seen: set[str] = set()
        for split, count, seed in (
            ("sft", settings.num_sft_documents, settings.seed),
            ("sample", settings.num_sample_documents, settings.seed + 1),
        ):
            documents = _documents(settings, count, seed, f"alpo-{split}")
            seen.update(line for document in documents for line in document.source_lines)
            write_documents(documents, paths.documents(split))
        write_documents(held_out_documents(settings, settings.seed + 2, seen), paths.documents("test"))
        done_marker(paths.data).write_text("ok\n")
    init = paths.model("init")
    if not done_marker(init).exists():
        texts = [*synthetic.language_names(), *prompt_texts(settings.lines_per_document)]
        tokenizer = build_tokenizer(synthetic.vocabulary(), extra_texts=texts)
        model = build_tiny_model(tokenizer, seed=settings.seed)
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        done_marker(init).write_text("ok\n")


def stage_alpo_sft(ctx: Any) -> None:
    """SFT on the numbered-line format with TRL's ``SFTTrainer`` (prompt-completion, loss on the completion)."""
    settings, paths = _setup(ctx)
    out = paths.model("sft")
    if done_marker(out).exists():
        return
    from datasets import Dataset

    from trl_seqpo.subtitles.documents import read_documents, sft_examples
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE

    documents = read_documents(paths.documents("sft"))
    dataset = Dataset.from_list(sft_examples(documents, SOURCE_LANGUAGE, TARGET_LANGUAGE))
    train_sft(
        dataset,
        paths.model("init"),
        out,
        **training_arguments(settings, "sft", paths.root / "sft_run", logs=6),
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(10, settings.sft_steps // 10),
        completion_only_loss=True,
        max_length=512,
    )


def training_judge(settings: AlpoDemoSettings | None = None) -> Any:
    """The scorer behind the demo's judge server (`AccuracyTasteScorer` with the hidden preference and the weights of
    ``settings``, the defaults without)."""
    from trl_seqpo.synthetic.subtitles import AccuracyTasteScorer, hidden_preference

    settings = settings or AlpoDemoSettings()
    return AccuracyTasteScorer(
        hidden_preference(),
        accuracy_points=settings.judge_accuracy_points,
        taste_points=settings.judge_taste_points,
    )


def _sample(ctx: Any, settings: AlpoDemoSettings, paths: _Paths, base_url: str) -> None:
    """ALPO sampling (`trl_seqpo.alpo.sampling.sample_candidates`, what ``trl-seqpo alpo sample`` runs): appends per
    document and resumes after a kill."""
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, sample_candidates
    from trl_seqpo.judge.config import JudgeConfig
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE

    config = AlpoSampleConfig(
        documents=str(paths.documents("sample")), output=str(paths.candidates), model=str(paths.model("sft")),
        source_lang=SOURCE_LANGUAGE, target_lang=TARGET_LANGUAGE, num_candidates=settings.num_candidates,
        temperature=settings.temperature, max_new_tokens=4 * settings.max_words, seed=settings.seed,
        documents_per_batch=settings.documents_per_batch, judge_min_candidates=1,
        judge=JudgeConfig(base_url=base_url, model=JUDGE_MODEL, num_shuffles=settings.judge_shuffles, timeout=30.0),
    )  # fmt: skip
    report = sample_candidates(config, progress=False)
    if report.unjudged_units:  # e.g. every candidate scored the same (rejected as ties); the pair gate drops them
        say(ctx, f"  {report.unjudged_units} units have no valid judge vote; the pair builder gates them out")


def judging_stats(records: list[Any]) -> dict[str, Any]:
    """How many units were sampled, and for how many the judge gave no valid vote (ties or malformed answers).

    Args:
        records: `CandidateRecord`s (or their dicts), one per unit.
    """
    failed = sum(
        bool(record.get("judge_failed") if isinstance(record, dict) else record.judge_failed) for record in records
    )
    return {"units": len(records), "failed": failed, "failed_pct": 100.0 * failed / len(records) if records else 0.0}


def stage_alpo_sample(ctx: Any) -> None:
    """ALPO Alg. 1: k candidates per line, judged over HTTP by the local judge server; the judging counts."""
    settings, paths = _setup(ctx)
    if paths.sample_stats.exists():
        return
    from trl_seqpo.alpo.pairs import read_candidate_records
    from trl_seqpo.synthetic.local_judge import serve

    start = time.perf_counter()
    with serve(training_judge(settings), model=JUDGE_MODEL) as server:
        say(ctx, f"  judge server on {server.base_url} (accuracy + hidden synonym preference)")
        _sample(ctx, settings, paths, server.base_url)
        requests = server.request_count
    judging = judging_stats(read_candidate_records(paths.candidates))
    stats = {"judge_http_requests": requests, "seconds": round(time.perf_counter() - start, 2), "judging": judging}
    paths.sample_stats.write_text(json.dumps(stats, indent=2))
    say(ctx, f"  judged {judging['units']} units; {judging['failed']} votes failed ({judging['failed_pct']:.1f}%)")


def stage_alpo_train(ctx: Any) -> None:
    """Preference pairs (gate, chosen/rejected, weights, betas, prefix mixing) and `ALPOTrainer`."""
    settings, paths = _setup(ctx)
    out = paths.model("alpo")
    if done_marker(out).exists():
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo import ALPOConfig, ALPOTrainer
    from trl_seqpo.alpo.pairs import build_preference_pairs, read_candidate_records

    dataset, stats = build_preference_pairs(read_candidate_records(paths.candidates), seed=settings.seed)
    pair_stats = stats.to_dict()
    gated = ", ".join(f"{reason} {count}" for reason, count in (pair_stats.get("gated") or {}).items() if count)
    say(ctx, f"  {pair_stats.get('units')} units: kept {pair_stats.get('kept')}, gated: {gated or 'none'}; "
             f"{len(dataset)} pair rows")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if len(dataset) == 0:
        raise RuntimeError(f"no preference pair survived the gate ({pair_stats}); sample more documents")
    tokenizer = AutoTokenizer.from_pretrained(paths.model("sft"))
    model = AutoModelForCausalLM.from_pretrained(paths.model("sft"))
    config = ALPOConfig(
        **training_arguments(settings, "alpo", paths.root / "alpo_run", logs=5),
        beta=settings.alpo_beta,
        max_length=512,
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
    done_marker(out).write_text("ok\n")
