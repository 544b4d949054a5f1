"""``trl-seqpo judge-server``: the local OpenAI-compatible judge (`trl_seqpo.synthetic.local_judge`) in the foreground.

``trl-seqpo judge-server --port 8000 --prefer big=huge --prefer said=whispered`` serves on 127.0.0.1 until Ctrl-C;
without preferences the scorer is `trl_seqpo.synthetic.local_judge.length_scorer`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from trl_seqpo.cli.options import add_action
from trl_seqpo.errors import UserInputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo judge-server``."""
    parser = add_action(subparsers, "judge-server", run)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (default: 8000)")
    parser.add_argument("--model", default="local-judge", help="model name the server answers as")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added before each reply")
    parser.add_argument(
        "--prefer", action="append", default=[], metavar="PLAIN=PREFERRED", help="hidden preference (repeatable)"
    )
    parser.add_argument("--preferences", help="JSON file {plain word: preferred synonym}")


def preferences_from(prefer: Sequence[str], path: str | None) -> dict[str, str]:
    """The hidden preference from ``--preferences FILE`` and ``--prefer PLAIN=PREFERRED`` items."""
    preferred: dict[str, str] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"cannot read the preferences ({exc})", path=path) from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise UserInputError("expected a JSON object {plain word: preferred synonym}", path=path)
        preferred.update(loaded)
    for item in prefer:
        plain, sep, liked = item.partition("=")
        if not sep or not plain or not liked:
            raise UserInputError(f"--prefer expects PLAIN=PREFERRED, got {item!r}")
        preferred[plain] = liked
    return preferred


def run(args: argparse.Namespace) -> int:
    """serve the local OpenAI-compatible judge (hidden synonym preference) for demos and tests

    Local OpenAI-compatible judge with a hidden synonym preference (for demos and tests).
    """
    from trl_seqpo.synthetic.local_judge import SynonymPreferenceScorer, serve

    preferred = preferences_from(args.prefer, args.preferences)
    scorer = SynonymPreferenceScorer(preferred) if preferred else None
    with serve(scorer, delay=args.delay, host=args.host, port=args.port, model=args.model) as server:
        print(f"judge server on {server.base_url} (model {server.model!r}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0
