"""`trl-seqpo evaluate simt|subtitles`: flags generated from `SimTEvalConfig` / `SubtitleEvalConfig`.

Every flag but the `--judge-*` ones is a config field (`trl_seqpo.cli.options`); the judge flags build the
`JudgeConfig` the config receives. Library errors name the field; they are reworded here with the flag.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trl_seqpo.cli.options import add_action, add_command_group, add_dataclass_arguments, config_from_args
from trl_seqpo.errors import UserInputError

__all__ = ["add_parser"]

_JUDGE_ASPECTS = ("accuracy", "naturalness", "vividness")


def _add_judge_arguments(parser: argparse.ArgumentParser, aspect: bool) -> None:
    judge = parser.add_argument_group("LLM judge (adds judge to --metrics)")
    judge.add_argument("--judge-base-url", default=None, help="OpenAI-compatible judge endpoint")
    judge.add_argument("--judge-model", default=None, help="judge model name sent with each request")
    judge.add_argument("--judge-max-concurrency", type=int, default=8, help="judge requests in flight (default: 8)")
    judge.add_argument("--judge-max-retries", type=int, default=3, help="retries per judge request (default: 3)")
    judge.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request (default: 60)")
    if aspect:
        judge.add_argument(
            "--judge-aspect",
            default="accuracy",
            choices=_JUDGE_ASPECTS,
            help="what the judge scores (default: accuracy, closest to SeqPO-SiMT Fig. 9)",
        )


def _judge_config(args: argparse.Namespace, aspect: str) -> Any:
    """A `JudgeConfig` from the `--judge-*` flags (one candidate per request), or `None` without `--judge-base-url`."""
    if not args.judge_base_url:
        return None
    from trl_seqpo.judge.client import JudgeConfig

    settings: dict[str, Any] = {
        "base_url": args.judge_base_url,
        "aspect": aspect,
        "num_shuffles": 1,  # a single candidate per request: shuffling would only repeat the same prompt
        "max_concurrency": args.judge_max_concurrency,
        "max_retries": args.judge_max_retries,
        "timeout": args.judge_timeout,
        "cache_path": str(Path(args.output_dir) / "judge_cache.sqlite"),
        "source_language": getattr(args, "source_lang", None),
        "target_language": getattr(args, "target_lang", None),
    }
    if args.judge_model:
        settings["model"] = args.judge_model
    try:
        return JudgeConfig(**settings)
    except ValueError as error:
        raise UserInputError(f"judge settings: {error}") from None


_EVALUATE_HELP = "evaluate simultaneous or subtitle translation"
_EVALUATE_DESCRIPTION = "Translate an evaluation set with a model and report quality (and latency) tables."


def add_parser(subparsers: Any) -> None:
    """Register `trl-seqpo evaluate` with its `simt` and `subtitles` actions."""
    from trl_seqpo.evaluate.simt import SimTEvalConfig
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig

    actions = add_command_group(subparsers, "evaluate", help=_EVALUATE_HELP, description=_EVALUATE_DESCRIPTION)
    simt = add_action(actions, "simt", run_simt)
    add_dataclass_arguments(simt, SimTEvalConfig, exclude=("judge",), required=("data", "output_dir"))
    _add_judge_arguments(simt, aspect=True)
    simt.add_argument("--overwrite", action="store_true", help="replace results.json/.md this command did not write")
    subtitles = add_action(actions, "subtitles", run_subtitles)
    add_dataclass_arguments(
        subtitles, SubtitleEvalConfig, exclude=("judge",), required=("model", "documents", "output_dir")
    )
    _add_judge_arguments(subtitles, aspect=False)
    subtitles.add_argument(
        "--overwrite", action="store_true", help="replace results.json/.md this command did not write"
    )


_RESULT_FILES = ("results.json", "results.md")


def _guard_outputs(args: argparse.Namespace, command: str, data: str) -> None:
    """The output guard (`trl_seqpo.outputs`) for the output folder, before the model loads; then claim it."""
    from trl_seqpo.outputs import check_output, check_output_folder, claim_output, read_record
    from trl_seqpo.rollout.loading import check_device

    if getattr(args, "backend", "hf") == "hf":
        check_device(getattr(args, "device", None))  # before run.json exists
    folder = check_output_folder(args.output_dir, inputs=(data, args.model), names=("hypotheses.jsonl", "run.json"))
    for name in _RESULT_FILES:
        check_output(folder / name, command=command, inputs=(data, args.model), overwrite=args.overwrite)
    for subfolder in folder.iterdir() if folder.is_dir() else ():
        if subfolder.is_dir():
            check_output_folder(subfolder, inputs=(data,), names=("hypotheses.jsonl", "run.json", "scores.jsonl"))
    for name in _RESULT_FILES:  # not sealed: a killed run rewrites them on resume (the folder is the command's)
        if (read_record(folder / name) or {}).get("command") != command:
            claim_output(folder / name, command=command)


def run_simt(args: argparse.Namespace) -> int:
    """simultaneous translation: BLEU/chrF/COMET/BLEURT/judge and AL/LAAL/DAL/AP

    Decode chunk by chunk (SeqPO-SiMT Sec. 2.2) and report quality and latency (Sec. 3.1).
    """
    from trl_seqpo.evaluate.simt import SimTEvalConfig, evaluate_simt

    if not hasattr(args, "model"):  # --server decodes without a local model; results name the server
        if not getattr(args, "server", None):
            raise UserInputError("give --model DIR, or --server URL of a running `trl-seqpo serve simt`")
        args.model = args.server
    config = config_from_args(SimTEvalConfig, args, judge=_judge_config(args, args.judge_aspect))
    _guard_outputs(args, "evaluate simt", args.data)
    evaluate_simt(config)
    return 0


def run_subtitles(args: argparse.Namespace) -> int:
    """subtitle documents: line-format checks, BLEU/chrF/COMET, judge accuracy/naturalness/vividness

    Translate numbered-line documents (ALPO Sec. 4.1) and report quality (Sec. 4.2).
    """
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles

    config = config_from_args(SubtitleEvalConfig, args, judge=_judge_config(args, "accuracy"))
    _guard_outputs(args, "evaluate subtitles", args.documents)
    evaluate_subtitles(config)
    return 0
