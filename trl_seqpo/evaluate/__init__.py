"""Evaluation and reporting: ``trl-seqpo evaluate simt|subtitles`` and the tables and plots built from them.

- `trl_seqpo.evaluate.simt`: simultaneous translation, quality (BLEU, chrF, COMET, BLEURT, LLM judge) and
  latency (AL, LAAL, DAL, AP), as SeqPO-SiMT Sec. 3.1 reports them;
- `trl_seqpo.evaluate.subtitles`: document-level subtitle translation with line-count checks and the judge's
  accuracy / naturalness / vividness scores of ALPO Sec. 4.2;
- `trl_seqpo.evaluate.report`: rich, JSON and Markdown tables; `trl_seqpo.evaluate.plot`: quality vs
  latency curves (``trl-seqpo plot``).

Importing this package is light: the actions import torch and the models only when they run.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``trl-seqpo evaluate`` with its ``simt`` and ``subtitles`` actions."""
    from trl_seqpo.evaluate import simt, subtitles

    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate simultaneous or subtitle translation",
        description="Translate an evaluation set with a model and report quality (and latency) tables.",
    )
    actions = parser.add_subparsers(dest="evaluate_action", metavar="ACTION")
    simt.add_parser(actions)
    subtitles.add_parser(actions)
    parser.set_defaults(func=_missing_action(parser))


def _missing_action(parser: argparse.ArgumentParser):
    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show_help
