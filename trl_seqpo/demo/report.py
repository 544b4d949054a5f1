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
    "seqpo_bleu_minus_waitk_curve": "SeqPO BLEU minus the SFT + wait-k curve's BLEU at SeqPO's AL (held-out, greedy; "
    "interpolated between the neighbouring wait-k points, the best wait-k BLEU beyond the curve's ends)",
    "seqpo_chrf_minus_waitk_curve": "the same for chrF (SeqPO's training signal: recorded, not claimed)",
    "seqpo_al_within_waitk_range": "whether SeqPO's AL lies between the fastest and the slowest wait-k point",
    "seqpo_al": "SeqPO's AL (source words)",
    "seqpo_al_minus_sft": "SeqPO AL minus its SFT start's AL (the SFT's own policy)",
    "seqpo_bleu_delta": "SeqPO BLEU minus its SFT start's BLEU (SeqPO trains on chrF, not on BLEU)",
    "seqpo_chrf_delta": "SeqPO chrF minus its SFT start's chrF",
    "seqpo_al_minus_oracle": "SeqPO AL minus the gold eager policy's AL (source words)",
    "alpo_slots": "held-out synonym slots (source words whose concept has two renderings)",
    "alpo_preferred_before": "% of held-out slots the SFT model renders with the preferred word (ground truth)",
    "alpo_preferred_after": "the same share for the ALPO model",
    "alpo_meaning_delta": "ALPO minus SFT: % of slots whose meaning is rendered (either word)",
    "alpo_exact_lines_delta": "ALPO minus SFT: % of held-out lines equal to the world's translation up to synonyms",
    "alpo_judge_failure_pct": "% of sampled units whose judge vote failed (ties, bad answers, HTTP errors)",
}

#: the fewest held-out slots for the ALPO claims: one slot moves a share by at most 1 point.
MIN_ALPO_SLOTS = 100


class Claim:
    """A documented statement and the test of ``claims.json`` values that decides whether a run supports it.

    ``sizes`` names the settings fields (``"seqpo.sft_steps"``, ``"alpo.alpo_steps"``, ...) the claim needs at
    least at the full demo's values: a run with smaller ones (``--quick``) measures the claim but cannot support it.
    """

    def __init__(
        self,
        name: str,
        statement: str,
        test: Callable[[dict[str, Any]], bool],
        needs: Sequence[str],
        sizes: Sequence[str] = (),
    ):
        self.name, self.statement, self.test, self.needs, self.sizes = name, statement, test, tuple(needs), sizes

    def holds(self, values: dict[str, Any]) -> bool | None:
        """``True``/``False``, or ``None`` when a needed value is missing (a stage was skipped)."""
        if any(values.get(key) is None for key in self.needs):
            return None
        return bool(self.test(values))


_SEQPO_SIZES = ("seqpo.num_train", "seqpo.num_test", "seqpo.sft_steps", "seqpo.seqpo_steps")
_ALPO_SIZES = ("alpo.num_sft_documents", "alpo.num_sample_documents", "alpo.sft_steps", "alpo.alpo_steps")

#: the claims ``README.md`` and ``docs/demo.md`` make about a full `make demo` run.
CLAIMS: list[Claim] = [
    Claim(
        "seqpo_above_waitk",
        "On held-out sentences SeqPO's BLEU (not its training signal) lies above the SFT + wait-k curve at SeqPO's AL",
        lambda v: v["seqpo_bleu_minus_waitk_curve"] > 0.0,
        ["seqpo_bleu_minus_waitk_curve"],
        _SEQPO_SIZES,
    ),
    Claim(
        "seqpo_quality_bleu",
        "SeqPO's BLEU is at most 2 points below its SFT start's",
        lambda v: v["seqpo_bleu_delta"] >= -2.0,
        ["seqpo_bleu_delta"],
        _SEQPO_SIZES,
    ),
    Claim(
        "alpo_preference",
        "ALPO renders at least 10 points more held-out synonym slots with the preferred word than SFT (ground truth)",
        lambda v: v["alpo_preferred_after"] - v["alpo_preferred_before"] >= 10.0,
        ["alpo_preferred_before", "alpo_preferred_after"],
        _ALPO_SIZES,
    ),
    Claim(
        "alpo_meaning",
        "while the shares of slots whose meaning is kept and of exact lines each fall by at most 2 points",
        lambda v: v["alpo_meaning_delta"] >= -2.0 and v["alpo_exact_lines_delta"] >= -2.0,
        ["alpo_meaning_delta", "alpo_exact_lines_delta"],
        _ALPO_SIZES,
    ),
]


def waitk_curve_at(points: Sequence[tuple[float, float]], al: float) -> float | None:
    """Quality of the wait-k curve at latency ``al``: linear between the neighbouring points (sorted by AL); outside
    the curve's AL range, the best quality of any point (a bound the curve cannot beat if quality rises with AL).

    Args:
        points: ``(AL, quality)`` of each wait-k point.
        al: The latency to read the curve at.

    Returns:
        The quality, or ``None`` without points.
    """
    ordered = sorted(points)
    if not ordered:
        return None
    if not ordered[0][0] <= al <= ordered[-1][0]:
        return max(q for _, q in ordered)
    found = []
    for (a0, q0), (a1, q1) in zip(ordered, ordered[1:]):
        if a0 <= al <= a1:
            found.append(max(q0, q1) if a1 == a0 else q0 + (q1 - q0) * (al - a0) / (a1 - a0))
    return max(found) if found else ordered[0][1]  # a single point at exactly ``al``


def _sft_waitk_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``results.jsonl`` rows of the SFT start decoded under wait-k schedules."""
    return [r for r in results if r["system"].startswith("sft+wait-")]


def _versus_waitk(results: list[dict[str, Any]]) -> dict[str, Any]:
    seqpo = next((r for r in results if r["system"] == "seqpo"), None)
    waitk = _sft_waitk_rows(results)
    if seqpo is None or not waitk:
        return {}
    als = [r["al"] for r in waitk]

    def above(metric: str) -> float:
        return seqpo[metric] - waitk_curve_at([(r["al"], r[metric]) for r in waitk], seqpo["al"])

    return {
        "seqpo_bleu_minus_waitk_curve": above("bleu"),
        "seqpo_chrf_minus_waitk_curve": above("chrf"),
        "seqpo_al_within_waitk_range": min(als) <= seqpo["al"] <= max(als),
    }


def claim_values(results: list[dict[str, Any]], alpo: dict[str, Any] | None) -> dict[str, Any]:
    """The values of `CLAIM_VALUES` from ``results.jsonl`` rows and the ALPO report (``None`` where not run)."""
    summary = seqpo_summary(results)
    values: dict[str, Any] = dict.fromkeys(CLAIM_VALUES)
    if summary:
        values["seqpo_al"] = summary["seqpo"]["al"]
        values["seqpo_al_minus_sft"] = summary["al_change"]
        values["seqpo_chrf_delta"] = summary["chrf_change"]
        values["seqpo_bleu_delta"] = summary["bleu_change"]
        values["seqpo_al_minus_oracle"] = summary.get("al_minus_oracle")
    values.update(_versus_waitk(results))
    if alpo:
        rows = {row["system"]: row for row in alpo.get("results", [])}
        if "sft" in rows and "alpo" in rows:
            sft, after = rows["sft"], rows["alpo"]
            values["alpo_slots"] = sft["slots"]
            values["alpo_preferred_before"] = sft["preferred_pct"]
            values["alpo_preferred_after"] = after["preferred_pct"]
            if sft["rendered_pct"] is not None and after["rendered_pct"] is not None:
                values["alpo_meaning_delta"] = after["rendered_pct"] - sft["rendered_pct"]
            values["alpo_exact_lines_delta"] = after["exact_pct"] - sft["exact_pct"]
        values["alpo_judge_failure_pct"] = (alpo.get("judging") or {}).get("failed_pct")
    return values


def size_shortfalls(claim: Claim, sizes: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Why this run's sizes cannot support ``claim``: each field below the full demo's, and too few ALPO slots.

    Args:
        claim: The claim.
        sizes: ``{"seqpo": DemoSettings-like dict, "alpo": AlpoDemoSettings-like dict}`` of the run.
        values: The run's claim values.
    """
    from trl_seqpo.demo.alpo import AlpoDemoSettings
    from trl_seqpo.demo.common import DemoSettings

    full = {"seqpo": DemoSettings().to_json(), "alpo": AlpoDemoSettings().to_json()}
    short = []
    for key in claim.sizes:
        part, name = key.split(".")
        given = (sizes.get(part) or {}).get(name)
        if given is not None and given < full[part][name]:
            short.append(f"{name} {given} < {full[part][name]}")
    slots = values.get("alpo_slots")
    if claim.name.startswith("alpo_") and slots is not None and slots < MIN_ALPO_SLOTS:
        short.append(f"{slots} held-out slots < {MIN_ALPO_SLOTS}")
    return short


def check_claims(values: dict[str, Any], sizes: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each claim of `CLAIMS` with ``holds`` (``True``/``False``/``None`` = not measured in this run) and
    ``unsupported``: why the run's ``sizes`` (see `size_shortfalls`) cannot support it, or ``None``."""
    checks = []
    for claim in CLAIMS:
        short = size_shortfalls(claim, sizes or {}, values)
        checks.append(
            {
                "name": claim.name,
                "statement": claim.statement,
                "holds": claim.holds(values),
                "unsupported": "; ".join(short) if short else None,
            }
        )
    return checks


def verdict(check: dict[str, Any]) -> str:
    """How a check reads in ``results.md`` and on the console."""
    measured = {True: "holds", False: "does not hold", None: "not measured"}[check["holds"]]
    if check.get("unsupported"):
        return f"cannot be supported at these sizes ({check['unsupported']}); measured: {measured}"
    return {True: "holds", False: "DOES NOT HOLD", None: "not measured"}[check["holds"]]


def stage_report(ctx: DemoContext) -> None:
    """Print the quality-latency table, the headline and the claim checks; write ``results.{json,md}``,
    ``claims.json`` and (with matplotlib) ``quality_latency.png``."""
    from trl_seqpo.demo.alpo import alpo_settings

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
    report["total_s"] = round(sum(ctx.timings.values()), 2)
    report["cpu_s"] = dict(ctx.cpu_timings)
    report["total_cpu_s"] = round(sum(ctx.cpu_timings.values()), 2)
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
    sizes = {"seqpo": ctx.settings.to_json(), "alpo": alpo_settings(ctx).to_json()}
    checks = check_claims(values, sizes)
    claims = {**values, "seed": ctx.settings.seed, "checks": checks}
    paths.claims.write_text(json.dumps(claims, indent=2))
    report["claims"] = claims
    lines += ["", "## Claims checked by this run", ""]
    for check in checks:
        lines.append(f"- {check['statement']}: **{verdict(check)}**")
        say(ctx, f"claim: {check['statement']}: {verdict(check)}")
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
    """BLEU against AL: the SFT + wait-k curve, SeqPO, the SFT start's own policy and the gold policy
    (`trl_seqpo.evaluate.plot.plot_curves`)."""
    from trl_seqpo.errors import MissingDependencyError
    from trl_seqpo.evaluate.plot import plot_curves

    def document(name: str, rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
        runs = [{"label": label(r), "metrics": {"AL": r["al"], "BLEU": r["bleu"]}} for r in rows]
        return {"system": name, "runs": runs}

    waitk = _sft_waitk_rows(results)
    documents = [document("SFT + wait-k", waitk, lambda r: r["policy"].replace("wait-", "k="))] if waitk else []
    documents += [document(r["name"], [r], lambda r: "") for r in results if r not in waitk]
    try:
        plot_curves(documents, path, x="AL", y="BLEU", title="held-out sentences, greedy")
    except MissingDependencyError:
        say(ctx, "matplotlib is not installed: no plot (pip install 'trl-seqpo[plot]')")
