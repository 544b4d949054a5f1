"""The ``trl-seqpo`` command line.

Each subcommand lives next to the code it drives and is registered here by ``"module:function"``; the module is
imported only when its subcommand runs, so ``trl-seqpo --help`` does not import torch. A registered function has
the signature ``add_parser(subparsers) -> None`` and registers each command or action with the function that runs
it through `trl_seqpo.cli.options.add_action`; that function receives the parsed ``argparse.Namespace`` and returns
an exit code (or ``None`` for 0).

Mistakes a user can fix raise `UserInputError`: they are printed as one line on stderr
and the command exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from trl_seqpo import __version__
from trl_seqpo.errors import MissingDependencyError, UserInputError
from trl_seqpo.secret import mask_credentials

# subcommand name -> (help, "module:add_parser")
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("run the synthetic-language demo end to end", "trl_seqpo.cli.demo:add_parser"),
    "subtitles": ("read, align and cut subtitle files into documents", "trl_seqpo.cli.subtitles:add_parser"),
    "alpo": ("ALPO data pipeline: sample candidates, judge them, build pairs", "trl_seqpo.cli.alpo:add_parser"),
    "judge-server": ("serve the local OpenAI-compatible test judge", "trl_seqpo.cli.judge_server:add_parser"),
    "simt": ("SeqPO-SiMT data: the LLM aligner for partial-translation SFT data", "trl_seqpo.cli.simt:add_parser"),
    "evaluate": ("evaluate simultaneous or subtitle translation", "trl_seqpo.cli.evaluate:add_parser"),
    "plot": ("draw quality-latency curves", "trl_seqpo.cli.plot:add_parser"),
    "train": ("train with a shipped recipe (seqpo, alpo, sft-simt)", "trl_seqpo.cli.train:add_parser"),
    "serve": ("serve a model to streaming clients (simt)", "trl_seqpo.cli.serve:add_parser"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trl-seqpo",
        description="SeqPO-SiMT and ALPO training utilities for Hugging Face TRL.",
    )
    parser.add_argument("--version", action="version", version=f"trl-seqpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _requested_command(argv)
    for name, (help_text, target) in COMMANDS.items():
        if name == wanted:
            module_name, func_name = target.split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    raise UserInputError(f"'{name}' is not available in this version of trl-seqpo") from exc
                raise
            getattr(module, func_name)(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _requested_command(argv: Sequence[str] | None) -> str | None:
    args = list(sys.argv[1:] if argv is None else argv)
    for arg in args:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trl-seqpo`` console script; returns the exit code."""
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr if args.command is None else sys.stdout)
            return 2 if args.command is None else 0
        code = args.func(args)
        return 0 if code is None else int(code)
    except UserInputError as exc:
        print(f"trl-seqpo: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, a path under a file: name the path, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"trl-seqpo: error: {where}{_one_line(exc.strerror or exc)}", file=sys.stderr)
        return 2
    except MissingDependencyError as exc:
        print(f"trl-seqpo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trl-seqpo: interrupted", file=sys.stderr)
        return 130


def _one_line(message: object) -> str:
    """The message on one line, with the credentials of any URL in it masked."""
    return " ".join(mask_credentials(str(message)).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
