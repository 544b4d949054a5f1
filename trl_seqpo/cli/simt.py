"""``trl-seqpo simt``: data preparation for SeqPO-SiMT.

``trl-seqpo simt align PAIRS.jsonl -o ALIGNED.jsonl --model NAME --base-url URL --source-lang zh --target-lang en``
    The LLM aligner (`trl_seqpo.seqpo.aligner`, SeqPO-SiMT App. A.2): for every ``source``/``reference`` row, the
    prefix of the reference that can be written after each source chunk. Every answer goes to a cache file
    (``--cache``, by default ``ALIGNED.aligner-cache.jsonl``) as it arrives; running the same command again resumes
    (a line cut short by a kill is dropped and asked again, nothing is paid twice). ``ALIGNED.jsonl`` (rows with
    ``source``, ``reference``, ``step_outputs``) is written at the end, atomically; it is the ``dataset_name`` of
    ``examples/scripts/sft_simt.py``. Invalid answers are counted and left out; failed requests make the exit code 1
    (run again to retry them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trl_seqpo.cli.options import add_action, add_command_group, add_dataclass_arguments, config_from_args
from trl_seqpo.errors import UserInputError
from trl_seqpo.outputs import check_output, claim_output, owned_output, read_record

_SHOWN_ERRORS = 5
COMMAND = "simt align"


_SIMT_HELP = "SeqPO-SiMT data preparation: the LLM aligner for partial-translation SFT data"
_SIMT_DESCRIPTION = "SeqPO-SiMT data preparation (paper App. A.2)."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo simt`` with its ``align`` action."""
    from trl_seqpo.seqpo.aligner import AlignerConfig

    actions = add_command_group(subparsers, "simt", help=_SIMT_HELP, description=_SIMT_DESCRIPTION)
    align = add_action(actions, "align", run_align)
    align.add_argument("pairs", type=Path, help=".jsonl with 'source' and 'reference' per line")
    align.add_argument("-o", "--output", type=Path, required=True, help="aligned rows .jsonl (for sft_simt.py)")
    align.add_argument("--cache", type=Path, help="answers cache .jsonl (default: OUTPUT.aligner-cache.jsonl)")
    align.add_argument(
        "--retry-invalid", action="store_true", help="ask again for pairs whose cached answer was invalid"
    )
    align.add_argument("--quiet", action="store_true", help="no progress bar")
    align.add_argument("--overwrite", action="store_true", help="replace an output this command did not write")
    add_dataclass_arguments(align, AlignerConfig, required=("model",))


def run_align(args: argparse.Namespace) -> int:
    """partial translations of sentence pairs from an LLM (resumable)

    Ask an LLM, through an OpenAI-compatible endpoint, which part of each reference can be written after each
    source chunk (SeqPO-SiMT App. A.2). Re-run the same command to resume.
    """
    from trl_seqpo.jsonl import atomic_write_jsonl, read_json_objects
    from trl_seqpo.seqpo.aligner import AlignerConfig, LLMAligner

    config = config_from_args(AlignerConfig, args)
    output = args.output
    cache = args.cache or output.with_name(output.stem + ".aligner-cache.jsonl")
    if _same_path(cache, output):
        raise UserInputError("--cache must differ from --output")
    # read-only checks first: neither the pairs nor a file that is not this command's cache is ever touched
    check_output(output, command=COMMAND, inputs=(args.pairs,), overwrite=args.overwrite)
    check_output(cache, command=f"{COMMAND} (cache)", inputs=(args.pairs, output), overwrite=True)
    if cache.exists() and (read_record(cache) or {}).get("command") != f"{COMMAND} (cache)":
        _check_cache_lines(cache)  # not recorded as this command's cache: every line must be an aligner answer
    rows = []
    for number, row in read_json_objects(args.pairs, missing="file not found (give the sentence pairs .jsonl)"):
        for name in ("source", "reference"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise UserInputError(f"needs a non-empty '{name}' string", path=str(args.pairs), line=number)
        rows.append(row)
    if not rows:
        raise UserInputError("no sentence pairs", path=str(args.pairs))
    aligner = LLMAligner(config)
    claim_output(cache, command=f"{COMMAND} (cache)")
    try:
        aligned, stats = aligner.align_rows(
            rows, cache_path=cache, progress=not args.quiet, retry_invalid=args.retry_invalid
        )
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    with owned_output(output, command=COMMAND):
        atomic_write_jsonl(output, aligned)
    invalid = stats.invalid + stats.cached_invalid
    print(
        f"{len(aligned)} of {len(rows)} pairs aligned -> {output} ({stats.aligned} new, {stats.cached} from "
        f"{cache}); {invalid} invalid answers ({stats.cached_invalid} of them cached), {stats.failed} failed requests"
    )
    if stats.dropped_partial_line:
        print(f"note: {cache} ended in a line cut short by a kill; it was dropped and asked again", file=sys.stderr)
    for message in stats.errors[:_SHOWN_ERRORS]:
        print(f"  {message}", file=sys.stderr)
    if len(stats.errors) > _SHOWN_ERRORS:
        print(f"  ... and {len(stats.errors) - _SHOWN_ERRORS} more", file=sys.stderr)
    if stats.failed:
        print(f"{stats.failed} requests failed: run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _check_cache_lines(cache: Path) -> None:
    """Refuse, without changing it, a ``--cache`` file whose complete lines are not all aligner answers."""
    import json

    try:
        text = cache.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    lines = [] if text is None else text[: text.rfind("\n") + 1].splitlines()
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if text is None or not isinstance(row, dict) or "key" not in row or not {"step_outputs", "error"} & set(row):
            break
    else:
        if text is not None:
            return
    raise UserInputError(
        "exists and is not an aligner cache written by `trl-seqpo simt align`; give another --cache path",
        path=str(cache),
    )
