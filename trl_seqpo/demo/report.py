"""The last stage of `trl-seqpo demo`: the results table, the plot, and the claims the demo checks itself.

``claims.json`` holds the measured values (`CLAIM_VALUES`) and, for each claim the documentation makes (`CLAIMS`),
whether this run supports it. `claims_table` turns several runs' ``claims.json`` (other seeds, other machines) into
the Markdown table of ranges that ``docs/demo.md`` includes, so the documented numbers come from runs, not by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.demo.common import DemoContext, say
from trl_seqpo.demo.seqpo import seqpo_headline, seqpo_summary
from trl_seqpo.jsonl import read_jsonl

__all__ = ["CLAIMS", "CLAIM_VALUES", "Claim", "check_claims", "claims_table", "stage_report"]

#: the values written to ``claims.json``, with what each one measures.
CLAIM_VALUES: dict[str, str] = {
    "seqpo_al_reduction_pct": "SeqPO's AL reduction against its delayed SFT start, in % (test set, greedy)",
    "seqpo_chrf_delta": "SeqPO chrF minus the delayed SFT start's chrF",
    "seqpo_bleu_delta": "SeqPO BLEU minus the delayed SFT start's BLEU (SeqPO trains on chrF, not on BLEU)",
    "seqpo_al_minus_eager_sft": "SeqPO AL minus the undelayed SFT's AL (source words)",
    "seqpo_al_minus_oracle": "SeqPO AL minus the gold eager policy's AL (source words)",
    "seqpo_al_minus_fastest_waitk": "SeqPO AL minus the lowest AL of SFT + wait-k over k (source words)",
    "waitk_chrf_rises_with_k": "SFT + wait-k chrF never falls by more than 1 point from one k to the next larger k",
    "alpo_preference_before": "% of synonym slots where the SFT model writes the hidden preferred word (held-out)",
    "alpo_preference_after": "the same share for the ALPO model",
    "alpo_accuracy_delta": "ALPO minus SFT chrF with synonyms merged (accuracy whatever the synonym choice)",
    "alpo_judge_failure_pct": "% of sampled units whose judge vote failed (ties, bad answers, HTTP errors)",
}


class Claim:
    """A documented statement and the test of ``claims.json`` values that decides whether a run supports it."""

    def __init__(self, name: str, statement: str, test: Callable[[dict[str, Any]], bool], needs: Sequence[str]):
        self.name, self.statement, self.test, self.needs = name, statement, test, tuple(needs)

    def holds(self, values: dict[str, Any]) -> bool | None:
        """``True``/``False``, or ``None`` when a needed value is missing (a stage was skipped)."""
        if any(values.get(key) is None for key in self.needs):
            return None
        return bool(self.test(values))


#: the claims ``README.md`` and ``docs/demo.md`` make about a full `make demo` run.
CLAIMS: list[Claim] = [
    Claim(
        "seqpo_latency",
        "SeqPO cuts AL by at least 30% against its delayed SFT start",
        lambda v: v["seqpo_al_reduction_pct"] >= 30.0,
        ["seqpo_al_reduction_pct"],
    ),
    Claim(
        "seqpo_quality",
        "at a chrF within 2 points of that SFT start",
        lambda v: abs(v["seqpo_chrf_delta"]) <= 2.0,
        ["seqpo_chrf_delta"],
    ),
    Claim(
        "seqpo_quality_bleu",
        "and a BLEU, which SeqPO does not train on, at most 2 points below it",
        lambda v: v["seqpo_bleu_delta"] >= -2.0,
        ["seqpo_bleu_delta"],
    ),
    Claim(
        "seqpo_vs_waitk",
        "SeqPO writes earlier than its SFT start under any wait-k schedule (lower AL than every SFT + wait-k point)",
        lambda v: v["seqpo_al_minus_fastest_waitk"] < 0.0,
        ["seqpo_al_minus_fastest_waitk"],
    ),
    Claim(
        "alpo_preference",
        "ALPO raises the hidden preference by at least 10 points on held-out documents",
        lambda v: v["alpo_preference_after"] - v["alpo_preference_before"] >= 10.0,
        ["alpo_preference_before", "alpo_preference_after"],
    ),
    Claim(
        "alpo_accuracy",
        "while accuracy (chrF, synonyms merged) stays within 1 point of SFT or improves",
        lambda v: v["alpo_accuracy_delta"] >= -1.0,
        ["alpo_accuracy_delta"],
    ),
]


def _sft_waitk_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``results.jsonl`` rows of the SFT start decoded under wait-k schedules."""
    return [r for r in results if r["system"].startswith("sft+wait-")]


def _waitk_rises(results: list[dict[str, Any]]) -> bool | None:
    rows = sorted((int(r["policy"].split("-")[1]), r["chrf"]) for r in _sft_waitk_rows(results))
    if len(rows) < 2:
        return None
    return all(later >= earlier - 1.0 for (_, earlier), (_, later) in zip(rows, rows[1:]))


def _seqpo_minus_fastest_waitk(results: list[dict[str, Any]]) -> float | None:
    seqpo = next((r for r in results if r["system"] == "seqpo"), None)
    waitk = [r["al"] for r in _sft_waitk_rows(results)]
    return seqpo["al"] - min(waitk) if seqpo and waitk else None


def claim_values(results: list[dict[str, Any]], alpo: dict[str, Any] | None) -> dict[str, Any]:
    """The values of `CLAIM_VALUES` from ``results.jsonl`` rows and the ALPO report (``None`` where not run)."""
    summary = seqpo_summary(results)
    values: dict[str, Any] = dict.fromkeys(CLAIM_VALUES)
    if summary:
        values["seqpo_al_reduction_pct"] = summary["al_reduction_pct"]
        values["seqpo_chrf_delta"] = summary["chrf_change"]
        values["seqpo_bleu_delta"] = summary["bleu_change"]
        values["seqpo_al_minus_eager_sft"] = summary.get("al_minus_sft_eager")
        values["seqpo_al_minus_oracle"] = summary.get("al_minus_oracle")
    values["seqpo_al_minus_fastest_waitk"] = _seqpo_minus_fastest_waitk(results)
    values["waitk_chrf_rises_with_k"] = _waitk_rises(results)
    if alpo:
        rows = {row["system"]: row for row in alpo.get("results", [])}
        if "sft" in rows and "alpo" in rows:
            values["alpo_preference_before"] = rows["sft"]["preference"]
            values["alpo_preference_after"] = rows["alpo"]["preference"]
            values["alpo_accuracy_delta"] = rows["alpo"]["chrf_synonyms_merged"] - rows["sft"]["chrf_synonyms_merged"]
        values["alpo_judge_failure_pct"] = (alpo.get("judging") or {}).get("failed_pct")
    return values


def check_claims(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim of `CLAIMS` with ``holds`` (``True``/``False``/``None`` = not measured in this run)."""
    return [{"name": c.name, "statement": c.statement, "holds": c.holds(values)} for c in CLAIMS]


def stage_report(ctx: DemoContext) -> None:
    """Print the quality-latency table, the headline and the claim checks; write ``results.{json,md}``,
    ``claims.json`` and (with matplotlib) ``quality_latency.png``."""
    paths = ctx.paths
    results = read_jsonl(paths.results, missing_ok=True)
    columns = [("chrF", "chrf"), ("BLEU", "bleu"), ("AL", "al"), ("LAAL", "laal")]
    if ctx.console is not None:
        from rich.table import Table

        table = Table(title="Synthetic SiMT demo: quality vs latency (test set, greedy)")
        table.add_column("system")
        for header, _ in columns:
            table.add_column(header, justify="right")
        for row in results:
            table.add_row(row["name"], *(f"{row[key]:.2f}" for _, key in columns))
        ctx.console.print(table)
    report: dict[str, Any] = {"settings": ctx.settings.to_json(), "timings_s": ctx.timings, "results": results}
    summary = seqpo_summary(results)
    headline = seqpo_headline(summary)
    if summary:
        report["seqpo_vs_sft"] = summary
    say(ctx, headline)
    lines = ["| system | chrF | BLEU | AL | LAAL |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | " + " | ".join(f"{r[k]:.2f}" for _, k in columns) + " |" for r in results]
    lines += ["", headline + "."]
    alpo_json, alpo_md = paths.root / "alpo_results.json", paths.root / "alpo_results.md"
    alpo = None
    if alpo_json.exists() and alpo_md.exists():  # the ALPO stages' table
        alpo = report["alpo"] = json.loads(alpo_json.read_text())
        lines += ["", "## ALPO (synthetic subtitles, hidden-preference judge)", "", alpo_md.read_text().strip()]
    values = claim_values(results, alpo)
    checks = check_claims(values)
    claims = {**values, "seed": ctx.settings.seed, "checks": checks}
    paths.claims.write_text(json.dumps(claims, indent=2))
    report["claims"] = claims
    lines += ["", "## Claims checked by this run", ""]
    for check in checks:
        verdict = {True: "holds", False: "DOES NOT HOLD", None: "not measured"}[check["holds"]]
        lines.append(f"- {check['statement']}: **{verdict}**")
        say(ctx, f"claim: {check['statement']}: {verdict}")
    (paths.root / "results.md").write_text("\n".join(lines) + "\n")
    (paths.root / "results.json").write_text(json.dumps(report, indent=2))
    if results:
        _plot(results, paths.root / "quality_latency.png", ctx)


def claims_table(claim_files: Sequence[str | Path]) -> str:
    """A Markdown table of each claim value's range over several runs' ``claims.json`` (seeds or machines).

    Args:
        claim_files: Paths of ``claims.json`` files (or of demo output directories holding one).

    Returns:
        Markdown: one row per value with min, max and each run's value, then how many runs support each claim.

    Raises:
        ValueError: A file is missing or is not a claims file.
    """
    runs = []
    for item in claim_files:
        path = Path(item)
        path = path / "claims.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{path}: no claims.json here (run `trl-seqpo demo` first)")
        data = json.loads(path.read_text())
        if "checks" not in data:
            raise ValueError(f"{path}: not a claims.json written by `trl-seqpo demo` (no 'checks')")
        runs.append(data)
    seeds = ", ".join(str(run.get("seed")) for run in runs)
    lines = [
        f"Measured over {len(runs)} run(s) (seeds {seeds}).",
        "",
        "| value | min | max | per run |",
        "|---|---:|---:|---|",
    ]
    for key, meaning in CLAIM_VALUES.items():
        numbers = [run.get(key) for run in runs]
        present = [float(x) for x in numbers if isinstance(x, (int, float)) and not math.isnan(float(x))]
        if not present:
            continue
        shown = ", ".join("n/a" if x is None else (str(x) if isinstance(x, bool) else f"{x:.2f}") for x in numbers)
        lines.append(f"| `{key}`: {meaning} | {min(present):.2f} | {max(present):.2f} | {shown} |")
    lines += ["", "| claim | runs where it holds |", "|---|---:|"]
    for claim in CLAIMS:
        verdicts = [next((c["holds"] for c in run["checks"] if c["name"] == claim.name), None) for run in runs]
        measured = [v for v in verdicts if v is not None]
        lines.append(f"| {claim.statement} | {sum(measured)} / {len(measured)} |")
    return "\n".join(lines) + "\n"


def _plot(results: list[dict[str, Any]], path: Path, ctx: Any) -> None:
    """SeqPO, both SFT models, the gold policy and the SFT + wait-k curve on one quality-latency plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say(ctx, "matplotlib is not installed: no plot (pip install 'trl-seqpo[plot]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    waitk = sorted((r for r in results if r["policy"].startswith("wait-")), key=lambda r: r["al"])
    if waitk:
        ax.plot([r["al"] for r in waitk], [r["chrf"] for r in waitk], "o-", color="grey", label="SFT + wait-k")
        for r in waitk:
            ax.annotate(r["policy"].replace("wait-", "k="), (r["al"], r["chrf"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")  # fmt: skip
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
