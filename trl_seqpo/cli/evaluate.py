"""`trl-seqpo evaluate simt|subtitles`: flags generated from `SimTEvalConfig` / `SubtitleEvalConfig`.

Every flag but the `--judge-*` ones is a config field (`trl_seqpo.cli.options`); the judge flags are the fields of
`JudgeConfig` (`trl_seqpo.cli.judge_options`) and build the `JudgeConfig` the config receives. Library errors name
the field; they are reworded here with the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from trl_seqpo.cli.judge_options import add_judge_arguments, judge_config_from_args
from trl_seqpo.cli.options import add_action, add_command_group, add_dataclass_arguments, config_from_args
from trl_seqpo.errors import UserInputError

__all__ = ["add_parser"]

#: `JudgeConfig` fields that ``evaluate simt|subtitles`` set themselves (no ``--judge-*`` flag), and why.
JUDGE_SET_BY_EVALUATE: dict[str, str] = {
    "num_shuffles": "one candidate per request: there is no order to shuffle, so each row gets one vote",
    "seed": "the votes' seed stays 0, so a rerun hits the judge cache (--judge-seed is send_seed)",
    "source_language": "--source-lang names the source language for the model and the judge",
    "target_language": "--target-lang names the target language for the model and the judge",
    "cache_path": "OUTPUT_DIR/judge_cache.sqlite",
}
#: ... and the aspect, in ``evaluate subtitles``.
JUDGE_SET_BY_EVALUATE_SUBTITLES: dict[str, str] = {
    **JUDGE_SET_BY_EVALUATE,
    "aspect": "--judge-aspects (each aspect is scored)",
}
_JUDGE_GROUP = "LLM judge (--judge-base-url adds judge to --metrics)"
_JUDGE_ASPECT_HELP = "what the judge scores (default: accuracy, closest to SeqPO-SiMT Fig. 9)"


def _judge_config(args: argparse.Namespace, config_cls: type, **settings: Any) -> Any:
    """The `JudgeConfig` of the `--judge-*` flags (one candidate per request), or `None` without `--judge-base-url`.

    The judge's languages are the evaluation's (``--source-lang``/``--target-lang`` or ``config_cls``'s defaults);
    ``settings`` are the other fields the command sets.
    """
    if not getattr(args, "judge_base_url", None):
        return None
    from trl_seqpo.languages import language_name

    defaults = {field.name: field.default for field in dataclasses.fields(config_cls)}
    source, target = (getattr(args, name, defaults[name]) for name in ("source_lang", "target_lang"))
    return judge_config_from_args(
        args,
        num_shuffles=1,
        cache_path=str(Path(args.output_dir) / "judge_cache.sqlite"),
        source_language=language_name(source) if source else None,
        target_language=language_name(target) if target else None,
        **settings,
    )


_EVALUATE_HELP = "evaluate simultaneous or subtitle translation"
_EVALUATE_DESCRIPTION = "Translate an evaluation set with a model and report quality (and latency) tables."


def add_parser(subparsers: Any) -> None:
    """Register `trl-seqpo evaluate` with its `simt` and `subtitles` actions."""
    from trl_seqpo.evaluate.simt import SimTEvalConfig
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig

    actions = add_command_group(subparsers, "evaluate", help=_EVALUATE_HELP, description=_EVALUATE_DESCRIPTION)
    simt = add_action(actions, "simt", run_simt)
    add_dataclass_arguments(simt, SimTEvalConfig, exclude=("judge",), required=("data", "output_dir"))
    add_judge_arguments(
        simt, title=_JUDGE_GROUP, set_by_command=JUDGE_SET_BY_EVALUATE, defaults={"aspect": "accuracy"},
        help_overrides={"aspect": _JUDGE_ASPECT_HELP},
    )  # fmt: skip
    simt.add_argument("--overwrite", action="store_true", help="replace results.json/.md this command did not write")
    subtitles = add_action(actions, "subtitles", run_subtitles)
    add_dataclass_arguments(
        subtitles, SubtitleEvalConfig, exclude=("judge",), required=("model", "documents", "output_dir")
    )
    add_judge_arguments(subtitles, title=_JUDGE_GROUP, set_by_command=JUDGE_SET_BY_EVALUATE_SUBTITLES)
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
        from trl_seqpo.evaluate.remote import server_settings
        from trl_seqpo.rollout.settings import FROM_MODEL

        health = server_settings(args.server, getattr(args, "server_token", None))
        for name in FROM_MODEL:  # the prompts the server's model gets (its seqpo_rollout.json), unless given here
            if not hasattr(args, name) and name in health:
                setattr(args, name, health[name])
    config = config_from_args(SimTEvalConfig, args, judge=_judge_config(args, SimTEvalConfig))
    _guard_outputs(args, "evaluate simt", args.data)
    evaluate_simt(config)
    return 0


def run_subtitles(args: argparse.Namespace) -> int:
    """subtitle documents: line-format checks, BLEU/chrF/COMET, judge accuracy/naturalness/vividness

    Translate numbered-line documents (ALPO Sec. 4.1) and report quality (Sec. 4.2).
    """
    from trl_seqpo.evaluate.subtitles import SubtitleEvalConfig, evaluate_subtitles

    judge = _judge_config(args, SubtitleEvalConfig, aspect="accuracy")  # replaced by each of --judge-aspects
    config = config_from_args(SubtitleEvalConfig, args, judge=judge)
    _guard_outputs(args, "evaluate subtitles", args.documents)
    evaluate_subtitles(config)
    return 0
