"""Result tables of ``trl-seqpo evaluate``: printed with rich, saved as JSON and Markdown.

A *results* document describes one system (one model with one policy) evaluated at one or more operating points
(a wait-k ``k`` or a chunk size ``m``), the way SeqPO-SiMT Tables 2-3 and Fig. 3-4 compare systems::

    {"task": "simt", "system": "SFT + wait-k", "model": "...", "settings": {...},
     "runs": [{"label": "k=3", "policy": "wait-k", "k": 3, "chunk_size": 1, "dir": "wait-k3-m1",
               "metrics": {"BLEU": 21.3, "COMET": 80.2, "AL": 3.1, ...}, "counts": {"rows": 1000, ...}}]}

Next to the runs: `signatures` (sacrebleu signature of BLEU and chrF), `metric_models` (the checkpoint or judge
behind each model-based metric), `environment` (package versions, Python, platform, hardware) and `notes`; the
Markdown file lists them under the table. `trl-seqpo plot` reads these files; every run directory also holds its
own `summary.json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.jsonl import atomic_write, atomic_write_json
from trl_seqpo.judge.prompts import ASPECTS as JUDGE_ASPECTS

__all__ = ["LOWER_IS_BETTER", "lower_is_better", "metric_columns", "print_table", "render_markdown", "write_results"]

#: Metrics where a smaller value is better besides the latency columns (`lower_is_better`).
LOWER_IS_BETTER: frozenset[str] = frozenset({"missing_lines", "merged_lines"})


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric ``name`` is better: every latency column (registered metrics and their
    computation-aware variants, `trl_seqpo.evaluate.simt.latency_columns`), and `LOWER_IS_BETTER`."""
    from trl_seqpo.evaluate.simt import latency_columns

    return name in LOWER_IS_BETTER or name in latency_columns()


# Column order of the tables: quality first, as in the papers' tables, then latency.
_ORDER = (
    "BLEU",
    "chrF",
    "BLEURT",
    "COMET",
    "XCOMET",
    "Judge",
)


def metric_columns(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metric names present in any run, in table order (known metrics first, then the rest alphabetically)."""
    present = {name for run in runs for name in run.get("metrics", {})}
    from trl_seqpo.evaluate.simt import latency_columns

    aspects = (aspect.capitalize() for aspect in sorted(JUDGE_ASPECTS))  # `evaluate subtitles`' judge columns
    order = (*_ORDER, *aspects, *latency_columns())  # quality, then latency (computation-aware last)
    return [name for name in order if name in present] + sorted(present - set(order))


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def _header(name: str) -> str:
    return f"{name} {'↓' if lower_is_better(name) else '↑'}"


def _table_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    runs = list(results.get("runs", []))
    columns = metric_columns(runs)
    count_names = sorted({name for run in runs for name in run.get("counts", {})})
    header = ["system", "point", *(_header(name) for name in columns), *count_names]
    rows = []
    for run in runs:
        metrics, counts = run.get("metrics", {}), run.get("counts", {})
        rows.append(
            [
                str(results.get("system", "")),
                str(run.get("label", "")),
                *(_format(metrics.get(name)) for name in columns),
                *(_format(counts.get(name)) for name in count_names),
            ]
        )
    return header, rows


def render_markdown(results: Mapping[str, Any]) -> str:
    """The results as a Markdown document: a title, the settings, and one table row per operating point.

    Args:
        results: A results document (module docstring).

    Returns:
        Markdown text ending in a newline.
    """
    header, rows = _table_rows(results)
    lines = [f"# {results.get('task', 'evaluation')}: {results.get('system', '')}", ""]
    settings = results.get("settings") or {}
    if settings:
        lines += [", ".join(f"{key}={value}" for key, value in settings.items() if value is not None), ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(header))) + " |")
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines + _provenance(results)) + "\n"


def _provenance(results: Mapping[str, Any]) -> list[str]:
    """How the numbers were made: sacrebleu signatures, metric models, notes, package versions and hardware."""
    lines: list[str] = []
    for name, signature in (results.get("signatures") or {}).items():
        lines.append(f"- {name} signature (sacrebleu): `{signature}`")
    for name, model in (results.get("metric_models") or {}).items():
        lines.append(f"- {name} model: `{model}`")
    lines += [f"- {note}" for note in results.get("notes") or ()]
    environment = results.get("environment") or {}
    packages = ", ".join(f"{name} {version}" for name, version in environment.get("packages", {}).items() if version)
    if packages:
        lines.append(f"- packages: {packages}; Python {environment.get('python')}")
    if environment.get("hardware"):
        lines.append(f"- hardware: {environment['hardware']}")
    return ["", *lines] if lines else []


def print_table(results: Mapping[str, Any], console: Any = None) -> None:
    """Print the results table with rich (to stdout unless ``console`` is given)."""
    from rich.console import Console
    from rich.table import Table

    header, rows = _table_rows(results)
    metrics = len(metric_columns(results.get("runs", []))) + 2  # the system is the title; counts go below
    runs = list(results.get("runs", []))
    counts = [", ".join(f"{name}={value}" for name, value in run.get("counts", {}).items()) for run in runs]
    caption = "; ".join(f"{run.get('label', '')}: {text}" for run, text in zip(runs, counts) if text)
    table = Table(title=f"{results.get('task', 'evaluation')}: {results.get('system', '')}", caption=caption or None)
    for index, name in enumerate(header[1:metrics]):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row[1:metrics])
    (console or Console()).print(table)


def write_results(results: Mapping[str, Any], output_dir: str | Path, *, show: bool = True) -> tuple[Path, Path]:
    """Save ``results.json`` and ``results.md`` in ``output_dir`` and print the table.

    Args:
        results: A results document.
        output_dir: Where to write.
        show: Print the rich table.

    Returns:
        The paths of the JSON and Markdown files.
    """
    output_dir = Path(output_dir)
    json_path, markdown_path = output_dir / "results.json", output_dir / "results.md"
    atomic_write_json(json_path, results)
    atomic_write(markdown_path, render_markdown(results))
    if show:
        print_table(results)
    return json_path, markdown_path
