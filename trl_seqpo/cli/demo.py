"""``trl-seqpo demo``: the synthetic SeqPO + ALPO demo (`trl_seqpo.demo.runner`) from the command line."""

from __future__ import annotations

import argparse
import sys

from trl_seqpo.cli.options import add_action
from trl_seqpo.errors import UserInputError
from trl_seqpo.rewards.fusion import TRUNCATION_MODES

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo demo``."""
    parser = add_action(subparsers, "demo", run)
    parser.add_argument("--output-dir", help="directory for data, models and results (resumable)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests; under a minute)")
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated stages to run now (the others are skipped; their outputs are reused); "
        "default: all. Stages: data, sft, seqpo, evaluate, alpo_data, alpo_sft, alpo_sample, alpo_train, "
        "alpo_evaluate, report",
    )
    parser.add_argument("--sft-steps", type=int, default=None, help="override the number of SFT steps")
    parser.add_argument("--seed", type=int, default=None, help="override the random seed")
    parser.add_argument(
        "--latency-truncation",
        choices=TRUNCATION_MODES,
        default=None,
        help="override SeqPO's latency truncation (default: the demo's, 'eager'; see docs/rewards.md)",
    )
    parser.add_argument("--latency-floor", type=float, default=None, help="the floor of --latency-truncation floor")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    parser.add_argument(
        "--claims-table",
        nargs="+",
        metavar="RUN",
        default=None,
        help="instead of running: print the Markdown table of the claim values over these runs' claims.json "
        "(output directories or files)",
    )


def run(args: argparse.Namespace) -> int:
    """run the synthetic-language demo end to end

    Build a synthetic language pair and tiny models, train SFT, SeqPO and ALPO, compare them, and check the
    documented claims (claims.json). Resumable: rerun with the same --output-dir.
    """
    if args.claims_table:
        from trl_seqpo.demo.report import claims_table

        try:
            sys.stdout.write(claims_table(args.claims_table))
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        return 0
    if not args.output_dir:
        raise UserInputError("--output-dir is required (or --claims-table RUN...)")
    from trl_seqpo.demo.common import DemoSettings
    from trl_seqpo.demo.runner import run_demo
    from trl_seqpo.outputs import check_output_folder

    check_output_folder(args.output_dir)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.sft_steps is not None:
        if args.sft_steps < 1:
            raise UserInputError(f"--sft-steps must be >= 1, got {args.sft_steps}")
        settings.sft_steps = args.sft_steps
    if args.seed is not None:
        settings.seed = args.seed
    if args.latency_truncation is not None:
        settings.seqpo_latency_truncation = args.latency_truncation
    if args.latency_floor is not None:
        settings.seqpo_latency_floor = args.latency_floor
    if args.num_threads < 0:
        raise UserInputError(f"--num-threads must be >= 0, got {args.num_threads}")
    stages = None if args.stages is None else [name.strip() for name in args.stages.split(",") if name.strip()]
    try:
        run_demo(args.output_dir, settings, num_threads=args.num_threads or None, stages=stages)
    except ValueError as exc:
        raise UserInputError(str(exc).replace("stage(s)", "--stages value(s)")) from None
    return 0
