"""What ``evaluate simt`` and ``evaluate subtitles`` share: the
command-line options for metrics, the judge and the output folder, and parsing of list-valued options.

Heavy imports (torch, transformers, vLLM) happen inside the functions, so ``trl-seqpo evaluate --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.errors import MissingDependencyError, UserInputError

__all__ = [
    "add_common_arguments",
    "check_metric_dependencies",
    "judge_config_from_args",
    "parse_int_list",
    "parse_metrics",
]


def parse_int_list(text: str | int | Sequence[int], option: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (positive integers, duplicates removed, order kept).

    Args:
        text: The option's value (or an int / list of ints from the Python API).
        option: Option name for the error message.

    Returns:
        The integers.

    Raises:
        UserInputError: Not a comma-separated list of positive integers.
    """
    if isinstance(text, int):
        items: Iterable[Any] = [text]
    elif isinstance(text, str):
        items = [part.strip() for part in text.split(",") if part.strip()]
    else:
        items = text
    values: list[int] = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            value = 0
        if value < 1 or str(item).strip() != str(value):
            raise UserInputError(f"{option} takes positive integers separated by commas (e.g. 1,3,5), got {text!r}")
        if value not in values:
            values.append(value)
    if not values:
        raise UserInputError(f"{option} needs at least one value")
    return values


def parse_metrics(text: str | Sequence[str], known: Sequence[str]) -> list[str]:
    """``"bleu,chrf,comet"`` -> ``["bleu", "chrf", "comet"]``, checked against ``known``."""
    items = [part.strip().lower() for part in (text.split(",") if isinstance(text, str) else text) if part.strip()]
    unknown = [item for item in items if item not in known]
    if unknown:
        raise UserInputError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(items))


def add_common_arguments(parser: argparse.ArgumentParser, default_metrics: str, known_metrics: Sequence[str]) -> None:
    """Options shared by the evaluate actions: model/backend, decoding batch, metrics, judge, output, resume."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", required=True, help="checkpoint directory (or a model id already in the HF cache)")
    model.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend (default: hf)")
    model.add_argument("--device", default=None, help="torch device for --backend hf (default: cuda if available)")
    model.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="model dtype"
    )
    model.add_argument("--batch-size", type=int, default=32, help="rows decoded together (default: 32)")
    model.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    model.add_argument("--src-lang", default=None, help="source language name or code used in prompts")
    model.add_argument("--tgt-lang", default=None, help="target language name or code used in prompts and BLEU")

    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        default=default_metrics,
        help=f"comma-separated metrics from {', '.join(known_metrics)} (default: {default_metrics})",
    )
    metrics.add_argument("--comet-model", default=None, help="COMET/XCOMET checkpoint (adds comet to --metrics)")
    metrics.add_argument("--bleurt-model", default=None, help="bleurt-pytorch checkpoint (adds bleurt to --metrics)")
    metrics.add_argument("--judge-base-url", default=None, help="OpenAI-compatible judge endpoint (adds judge)")
    metrics.add_argument("--judge-model", default=None, help="judge model name sent with each request")
    metrics.add_argument("--judge-max-concurrency", type=int, default=8, help="judge requests in flight")
    metrics.add_argument("--judge-max-retries", type=int, default=3, help="retries per judge request")
    metrics.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request")

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", type=Path, required=True, help="folder for hypotheses, scores and tables")
    output.add_argument("--resume", action="store_true", help="keep finished rows of an interrupted run")
    output.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")
    output.add_argument("--system-name", default=None, help="name of this system in tables and plots")
    output.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def judge_config_from_args(args: argparse.Namespace, aspect: str, cache_path: Path) -> Any:
    """A `JudgeConfig` from the ``--judge-*`` options (one vote: one candidate)."""
    from trl_seqpo.rewards.judge import JudgeConfig

    settings: dict[str, Any] = {
        "base_url": args.judge_base_url,
        "aspect": aspect,
        "num_shuffles": 1,  # a single candidate per request: shuffling would only repeat the same prompt
        "max_concurrency": args.judge_max_concurrency,
        "max_retries": args.judge_max_retries,
        "timeout": args.judge_timeout,
        "cache_path": str(cache_path),
        "source_language": args.src_lang,
        "target_language": args.tgt_lang,
    }
    if args.judge_model:
        settings["model"] = args.judge_model
    try:
        return JudgeConfig(**settings)
    except ValueError as error:
        raise UserInputError(f"judge settings: {error}") from error


def check_metric_dependencies(metrics: Sequence[str], bleurt_model: str | None) -> None:
    """Fail before any decoding when a requested model-based metric cannot run."""
    import importlib.util

    if {"comet", "xcomet"} & set(metrics):
        from trl_seqpo.rewards.comet import COMET_INSTALL_HINT, comet_available

        if not comet_available():
            raise MissingDependencyError(f"the comet metric needs unbabel-comet: {COMET_INSTALL_HINT}")
    if "bleurt" in metrics:
        from trl_seqpo.evaluate.metrics import BLEURT_INSTALL_HINT

        if importlib.util.find_spec("bleurt_pytorch") is None:
            raise MissingDependencyError(f"the bleurt metric needs bleurt-pytorch: {BLEURT_INSTALL_HINT}")
        if not bleurt_model:
            raise UserInputError("the bleurt metric needs --bleurt-model PATH (a bleurt-pytorch checkpoint)")
