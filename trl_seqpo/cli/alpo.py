"""``trl-seqpo alpo``: the ALPO data pipeline (alpo-subtitles.txt, Sec. 3.2-3.4).

``trl-seqpo alpo sample DOCS.jsonl -o CANDIDATES.jsonl --model PATH --source-lang en --target-lang zh ...``
    Algorithm 1 (`trl_seqpo.alpo.sampling.sample_candidates`): candidates per line (or segment), judged over an
    OpenAI-compatible endpoint. Resumed by running the same command again. Exit codes: 0 done; 1 some units have no
    or too few valid judge votes (run again to re-judge them); 2 bad input or settings, a refusing or unreachable
    judge.
``trl-seqpo alpo pairs CANDIDATES.jsonl -o PAIRS.jsonl``
    The preference pairs (`trl_seqpo.alpo.pairs`).

The flags come from `trl_seqpo.alpo.sampling.AlpoSampleConfig` (the ``--judge-*`` ones from its ``judge``, a
`trl_seqpo.judge.config.JudgeConfig`: `trl_seqpo.cli.judge_options`) and `trl_seqpo.alpo.pairs.PairSettings`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trl_seqpo.cli.judge_options import add_judge_arguments, judge_config_from_args
from trl_seqpo.cli.options import add_action, add_command_group, add_dataclass_arguments, config_from_args, flag_name
from trl_seqpo.errors import UserInputError
from trl_seqpo.outputs import check_output, claim_output, seal_output

_ALPO_HELP = "ALPO data pipeline: sample candidates, judge them, build pairs"
_ALPO_DESCRIPTION = "ALPO data pipeline (paper Sec. 3): sample and judge candidates, then build preference pairs."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo alpo`` with its ``sample`` and ``pairs`` actions."""
    actions = add_command_group(subparsers, "alpo", help=_ALPO_HELP, description=_ALPO_DESCRIPTION)
    _add_sample_parser(actions)
    _add_pairs_parser(actions)


def _add_sample_parser(actions: argparse._SubParsersAction) -> None:
    from trl_seqpo.alpo.sampling import AlpoSampleConfig

    sample = add_action(actions, "sample", run_sample)
    sample.add_argument("documents", help="documents .jsonl from `trl-seqpo subtitles documents`")
    sample.add_argument("-o", "--output", required=True, help="candidates .jsonl (appended, resumable)")
    add_dataclass_arguments(sample, AlpoSampleConfig, exclude=("documents", "output", "judge"), required=("model",))
    add_judge_arguments(sample, title="LLM judge", set_by_command=JUDGE_SET_BY_SAMPLE)


#: `JudgeConfig` fields that ``alpo sample`` sets itself (no ``--judge-*`` flag), and why.
JUDGE_SET_BY_SAMPLE: dict[str, str] = {
    "seed": "--seed seeds the sampling and the judge's votes alike (--judge-seed is send_seed)",
    "source_language": "--source-lang names the source language for the policy and the judge",
    "target_language": "--target-lang names the target language for the policy and the judge",
    "cache_path": "--cache (default: beside OUTPUT)",
}


def run_sample(args: argparse.Namespace) -> int:
    """sample candidates per line/segment and judge them (ALPO Alg. 1); resumable

    ALPO Algorithm 1: for each document and unit, sample candidates conditioned on the chosen translations of the
    earlier units, add the reference, score them with an LLM judge and pick the prefix from the top 3. Re-run the
    same command to resume after an interruption or to re-judge failed units. Exit 1: some units still lack valid
    judge votes; exit 2: bad input or settings.
    """
    from trl_seqpo.alpo.sampling import AlpoSampleConfig, sample_candidates

    config = config_from_args(AlpoSampleConfig, args, judge=judge_config_from_args(args))
    _check_before_writing(config)
    report = sample_candidates(config)
    # under `accelerate launch` every process returns the job's counts; the main one prints them
    say = print if report.main_process else (lambda *args, **kwargs: None)
    if report.skipped == report.documents:
        say(f"all {report.documents} documents are already in {config.output}; nothing to do", file=sys.stderr)
        return 0
    say(report.summary(config.output), file=sys.stderr)
    if report.unjudged_units:
        say(
            f"trl-seqpo: {report.unjudged_units} units in {report.unjudged_documents} documents have no or too few "
            "valid judge votes; run the same command again to re-judge them",
            file=sys.stderr,
        )
        return 1
    return 0


# sampler values the generation backends would only refuse once the output exists: (field, allowed, what is allowed)
_SAMPLER_RANGES = (
    ("temperature", lambda v: v >= 0, ">= 0 (0 = greedy)"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("top_k", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("max_segment_lines", lambda v: v >= 1, ">= 1"),
    ("context_window", lambda v: v >= 0, ">= 0"),
    ("judge_min_candidates", lambda v: v >= 0, ">= 0"),
    ("max_batch_size", lambda v: v is None or v >= 1, ">= 1"),
    ("seed", lambda v: v >= 0, ">= 0"),
)


def _check_before_writing(config: Any) -> None:
    """Refuse every bad option value before `sample_candidates` creates OUTPUT, its run.json or the judge cache.

    A value refused only after those exist would be recorded in run.json and make the corrected command be refused
    as "other settings"; so the sampler's ranges, the model folder and the languages are all checked here first
    (read-only), as the judge's settings and key were when `judge_config_from_args` built them.
    """
    from pathlib import Path

    for name, allowed, what in _SAMPLER_RANGES:
        value = getattr(config, name)
        if not allowed(value):
            raise UserInputError(f"{flag_name(name)} must be {what}, got {value}")
    for name in ("source_lang", "target_lang"):
        if not getattr(config, name).strip():
            raise UserInputError(f"{flag_name(name)} must be a language code or name, got {getattr(config, name)!r}")
    if not Path(config.model).is_dir():
        raise UserInputError("model checkpoint not found: no such folder (--model)", path=config.model)


def _add_pairs_parser(actions: argparse._SubParsersAction) -> None:
    from trl_seqpo.alpo.pairs import PairSettings

    parser = add_action(actions, "pairs", run_pairs)
    parser.add_argument("candidates", help="candidates JSONL written by `trl-seqpo alpo sample`")
    parser.add_argument("-o", "--output", required=True, help="pairs JSONL to write")
    add_dataclass_arguments(parser, PairSettings)
    parser.add_argument("--overwrite", action="store_true", help="replace outputs this command did not write")


def run_pairs(args: argparse.Namespace) -> int:
    """build ALPO preference pairs (gate, chosen/rejected, weights, betas, prefix mixing)

    Build ALPO's line-level preference pairs from judged candidates (paper Sec. 3.3-3.4). Writes PAIRS.jsonl and
    the gating counts to PAIRS.stats.json.
    """
    from trl_seqpo.alpo.pairs import PairSettings, build_pair_rows, read_candidate_records, stats_path_for, write_pairs

    settings = config_from_args(PairSettings, args)
    for path in (args.output, stats_path_for(args.output)):
        check_output(path, command="alpo pairs", inputs=(args.candidates,), overwrite=args.overwrite)
    records = read_candidate_records(args.candidates)
    try:
        rows, stats = build_pair_rows(records, settings)
    except UserInputError as exc:
        raise UserInputError(exc.message, path=args.candidates) from None
    for path in (args.output, stats_path_for(args.output)):
        claim_output(path, command="alpo pairs")
    output = write_pairs(rows, stats, args.output)
    for path in (output, stats_path_for(output)):
        seal_output(path)
    print(f"{stats.summary()}\nwrote {output} and {stats_path_for(output)}")
    if not rows:
        print("warning: no unit passed the gate; check the judge scores or loosen --min-score-spread")
    return 0
