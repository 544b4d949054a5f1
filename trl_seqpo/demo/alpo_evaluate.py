"""The evaluation stage of the ALPO demo: SFT vs ALPO on held-out documents, with measures training never saw.

The claims are counted against the synthetic world's ground truth (`trl_seqpo.demo.alpo_truth`, which imports
nothing of the training judge): per source slot whose concept has two renderings, whether the output chose the
preferred one and whether it kept the meaning, and per line whether the output is the world's translation up to the
synonym choice. The training judge's score over HTTP is reported too, labelled as such, and claims nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trl_seqpo.demo.alpo import (
    JUDGE_MODEL,
    SYSTEMS,
    _setup,
    stage_alpo_data,
    stage_alpo_sample,
    stage_alpo_sft,
    stage_alpo_train,
    training_judge,
)

__all__ = ["ALPO_STAGES", "stage_alpo_evaluate"]


def _system_row(name: str, label: str, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    from trl_seqpo.demo.alpo_truth import score_lines

    rows = [json.loads(line) for line in (run_dir / "line" / "hypotheses.jsonl").read_text().splitlines() if line]
    sources = [line for row in rows for line in row["source_lines"]]
    hypotheses = [
        line
        for row in rows
        for line in [*row["hypothesis_lines"], *[""] * len(row["source_lines"])][: len(row["source_lines"])]
    ]
    counts = summary["counts"]
    bad = counts["missing_lines"] + counts["merged_lines"] + counts["truncated_lines"]
    return {
        "system": name,
        "name": label,
        **score_lines(sources, hypotheses),
        "judge_score": summary["metrics"].get("Vividness"),
        "unscored_documents": counts.get("unscored_vividness", 0),
        "lines_parsed": max(0, counts["lines"] - bad),
        "lines_expected": counts["lines"],
        "chrf": summary["metrics"].get("chrF"),
        "documents": counts["documents"],
    }


def stage_alpo_evaluate(ctx: Any) -> None:
    """Greedy line-by-line translation of the held-out documents by SFT and ALPO, judged over HTTP; the table."""
    settings, paths = _setup(ctx)
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles
    from trl_seqpo.judge.client import JudgeConfig
    from trl_seqpo.synthetic.local_judge import serve
    from trl_seqpo.synthetic.subtitles import SOURCE_LANGUAGE, TARGET_LANGUAGE, hidden_preference

    rows = []
    start = time.perf_counter()
    with serve(training_judge(settings), model=JUDGE_MODEL) as server:
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
        "judge": {"model": JUDGE_MODEL, "scorer": repr(training_judge(settings))},
        "judge_http_requests": {"sample": sample_stats.get("judge_http_requests"), "evaluate": requests},
        "judging": sample_stats.get("judging"),
        "pair_stats": train_metrics.get("pair_stats"),
        "pair_rows": train_metrics.get("pair_rows"),
        "judge_score_gain": gain,
        "evaluate_seconds": round(time.perf_counter() - start, 2),
        "results": rows,
    }
    paths.results_json.write_text(json.dumps(report, indent=2))
    paths.results_md.write_text(_markdown(rows, gain, report))
    _show(ctx, rows, gain, report)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


_HEADERS = ("system", "preferred rendering (slots)", "meaning preserved (slots)", "exact lines", "chrF",
            "lines parsed", "judge score (training judge)")  # fmt: skip


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["name"],
        f"{_fmt(row['preferred_pct'])}% ({row['slots_preferred']}/{row['slots']})",
        f"{_fmt(row['rendered_pct'])}% ({row['slots_rendered']}/{row['slots']})",
        f"{_fmt(row['exact_pct'])}% ({row['lines_exact']}/{row['lines']})",
        _fmt(row["chrf"]),
        f"{row['lines_parsed']}/{row['lines_expected']}",
        _fmt(row["judge_score"]),
    ]


def _notes(rows: list[dict[str, Any]], gain: float | None, report: dict[str, Any]) -> list[str]:
    by_name = {row["system"]: row for row in rows}
    sft, alpo = by_name["sft"], by_name["alpo"]
    notes = []
    if sft["slots"] and alpo["slots"]:
        change = {key: alpo[key] - sft[key] for key in ("preferred_pct", "rendered_pct", "exact_pct")}
        notes.append(
            f"ALPO - SFT on {rows[0]['documents']} held-out documents ({sft['slots']} synonym slots, ground truth): "
            f"preferred rendering {change['preferred_pct']:+.1f} points, meaning preserved "
            f"{change['rendered_pct']:+.1f}, exact lines {change['exact_pct']:+.1f}; "
            f"training judge {_fmt(gain)} points."
        )
    judging, pairs = report.get("judging"), report.get("pair_stats")
    if judging:
        notes.append(
            f"Judging: {judging['units']} sampled units, {judging['failed']} failed votes "
            f"({judging['failed_pct']:.1f}%)."
        )
    if pairs:
        gated = ", ".join(f"{reason} {count}" for reason, count in pairs["gated"].items() if count) or "none"
        notes.append(f"Gate: {pairs['kept']} of {pairs['units']} units kept (gated: {gated}); {pairs['rows']} rows.")
    return notes


def _markdown(rows: list[dict[str, Any]], gain: float | None, report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(_HEADERS) + " |", "|---|" + "---:|" * (len(_HEADERS) - 1)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += ["", *(f"{note}  " for note in _notes(rows, gain, report))]
    return "\n".join(lines).rstrip() + "\n"


def _show(ctx: Any, rows: list[dict[str, Any]], gain: float | None, report: dict[str, Any]) -> None:
    console = getattr(ctx, "console", None)
    if console is None:
        return
    from rich.table import Table

    table = Table(title="Synthetic subtitles, ALPO vs SFT (held-out documents, greedy)")
    for header in _HEADERS:
        table.add_column(header, justify="left" if header == "system" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    console.print(table)
    for note in _notes(rows, gain, report):
        console.print(note)


#: the ALPO stages, in order (`trl_seqpo.demo.runner` runs them after the SeqPO stages).
ALPO_STAGES: list[tuple[str, Callable[[Any], None]]] = [
    ("alpo_data", stage_alpo_data),
    ("alpo_sft", stage_alpo_sft),
    ("alpo_sample", stage_alpo_sample),
    ("alpo_train", stage_alpo_train),
    ("alpo_evaluate", stage_alpo_evaluate),
]
