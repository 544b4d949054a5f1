"""`trl-seqpo plot`: quality vs latency curves from `evaluate simt` results (library: `trl_seqpo.evaluate.plot`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trl_seqpo.cli.options import add_action

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register ``trl-seqpo plot``."""
    parser = add_action(subparsers, "plot", run)
    parser.add_argument("results", nargs="+", help="results.json files or evaluate --output-dir folders")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .png or .svg")
    from trl_seqpo.evaluate.simt import latency_columns

    # every registered metric and its computation-aware variants, as evaluate writes them
    parser.add_argument("--x", default="AL", choices=latency_columns(), help="latency axis (default AL)")
    parser.add_argument("--y", default=None, help="quality axis (default: COMET if present, else BLEURT, ... BLEU)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--label", action="append", default=None, help="legend name per results file (repeat)")
    parser.add_argument("--overwrite", action="store_true", help="replace an output this command did not write")


def run(args: argparse.Namespace) -> int:
    """draw quality-latency curves

    Quality vs latency curves from evaluate simt results (SeqPO-SiMT Fig. 3-4).
    """
    from trl_seqpo.evaluate.plot import load_results, plot_curves
    from trl_seqpo.outputs import check_output, owned_output

    inputs = [Path(item) / "results.json" if Path(item).is_dir() else item for item in args.results]
    check_output(args.output, command="plot", inputs=inputs, overwrite=args.overwrite)
    results = load_results(args.results)
    with owned_output(args.output, command="plot"):
        path = plot_curves(results, args.output, x=args.x, y=args.y, title=args.title, labels=args.label)
    print(f"wrote {path}")
    return 0
