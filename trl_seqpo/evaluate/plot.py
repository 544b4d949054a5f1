"""``trl-seqpo plot``: quality vs latency curves from ``evaluate simt`` results (SeqPO-SiMT Fig. 3-4, 10-12).

Each results file (``results.json`` of one ``evaluate simt`` run, or a folder holding one) is one system; its
operating points (each wait-k ``k`` or chunk size ``m``) become the points of one line, sorted by latency and
labelled with the point's name. Files that carry the same system name are merged into one line. The figure is drawn
with matplotlib's non-interactive Agg backend and saved as PNG or SVG (by the output's suffix).

Examples:
    ```bash
    trl-seqpo plot runs/sft-waitk runs/seqpo -o comet_vs_al.png --x AL --y COMET
    ```
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.errors import MissingDependencyError, UserInputError

__all__ = ["load_results", "plot_curves"]

_QUALITY_PREFERENCE = ("COMET", "XCOMET", "BLEURT", "Judge", "BLEU", "chrF")


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read results documents (``results.json`` files or folders holding one).

    Args:
        paths: Files or folders.

    Returns:
        The documents, in order.

    Raises:
        UserInputError: A path is missing or is not a results document.
    """
    documents = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            path = path / "results.json"
        if not path.is_file():
            raise UserInputError("no results.json here; give an evaluate --output-dir or its results.json", path=path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserInputError(f"not valid JSON ({error.msg})", path=path, line=error.lineno) from error
        except UnicodeDecodeError:
            raise UserInputError("not UTF-8 text; give a results.json of trl-seqpo evaluate", path=path) from None
        if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
            raise UserInputError("not a results file of trl-seqpo evaluate (no 'runs' list)", path=path)
        documents.append(document)
    return documents


def _default_quality(documents: Sequence[dict[str, Any]]) -> str:
    present = {name for document in documents for run in document["runs"] for name in run.get("metrics", {})}
    for name in _QUALITY_PREFERENCE:
        if name in present:
            return name
    raise UserInputError("the results hold no quality metric to plot; evaluate with --metrics bleu,chrf,comet,...")


def plot_curves(
    documents: Sequence[dict[str, Any]],
    output: str | Path,
    *,
    x: str = "AL",
    y: str | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Draw one quality-latency line per system and save the figure.

    Args:
        documents: Results documents (`load_results`).
        output: ``.png`` or ``.svg`` file.
        x: Latency metric on the x axis (``AL``, ``LAAL``, ``DAL`` or ``AP``).
        y: Quality metric on the y axis; default the first present of COMET, XCOMET, BLEURT, Judge, BLEU, chrF.
        title: Figure title.
        labels: Legend names replacing the documents' system names (one per document).

    Returns:
        The output path.

    Raises:
        UserInputError: Unknown suffix, metric absent from every run, or wrong number of labels.
        MissingDependencyError: matplotlib is not installed.
    """
    output = Path(output)
    if output.suffix.lower() not in (".png", ".svg"):
        raise UserInputError(f"the plot is saved as .png or .svg, not {output.suffix or 'no suffix'!r}", path=output)
    if labels is not None and len(labels) != len(documents):
        raise UserInputError(f"--label given {len(labels)} times for {len(documents)} results files")
    y = y or _default_quality(documents)
    systems: dict[str, list[tuple[float, float, str]]] = {}
    for index, document in enumerate(documents):
        name = labels[index] if labels else str(document.get("system") or f"system {index + 1}")
        for run in document["runs"]:
            metrics = run.get("metrics", {})
            if metrics.get(x) is not None and metrics.get(y) is not None:
                try:
                    point = (float(metrics[x]), float(metrics[y]), str(run.get("label", "")))
                except (TypeError, ValueError):
                    raise UserInputError(
                        f"{name}, run {run.get('label', '?')!r}: {x} and {y} must be numbers, got "
                        f"{metrics[x]!r} and {metrics[y]!r}; give results.json files written by trl-seqpo evaluate"
                    ) from None
                systems.setdefault(name, []).append(point)
    if not systems:
        raise UserInputError(f"no run has both {x} and {y}; pick metrics with --x/--y that the results contain")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError('plotting needs matplotlib: pip install "trl-seqpo[plot]"') from error
    figure, axes = plt.subplots(figsize=(5.5, 4.0), dpi=150)
    markers = "osD^vP*X"
    for number, (name, points) in enumerate(systems.items()):
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        axes.plot(xs, ys, marker=markers[number % len(markers)], linewidth=1.6, markersize=5, label=name)
        for px, py, label in points:
            axes.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7, alpha=0.8)
    axes.set_xlabel(f"{x} (lower is better)")
    axes.set_ylabel(f"{y} (higher is better)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    return output
