"""``trl-seqpo subtitles translate``: a subtitle file through a model trained on numbered-line documents (ALPO)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trl_seqpo.cli.options import add_action
from trl_seqpo.errors import UserInputError
from trl_seqpo.outputs import check_output, claim_output, file_fingerprint, owned_output, release_output
from trl_seqpo.rollout.linewise import load_translator
from trl_seqpo.subtitles.io import output_format, read_subtitle_file
from trl_seqpo.subtitles.translate import left_out_cues, translate_file


def add_translate_action(actions: argparse._SubParsersAction) -> None:
    """Register ``subtitles translate`` and its flags."""
    translate = add_action(actions, "translate", run_translate)
    translate.add_argument("input", type=Path, help="subtitle file to translate")
    translate.add_argument("-o", "--output", type=Path, required=True, help="output subtitle file (.srt/.ass/.vtt)")
    translate.add_argument("--model", required=True, help="checkpoint directory of the translation model")
    translate.add_argument("--tgt-lang", required=True, help="target language code, e.g. 'zh'")
    translate.add_argument("--src-lang", default="en", help="source language code (default: en)")
    translate.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend")
    translate.add_argument("--bilingual", action="store_true", help="keep the original line under each translation")
    translate.add_argument("--lines", type=int, default=35, help="lines per document, as in training (paper: 35)")
    translate.add_argument(
        "--context", type=int, default=0, help="untranslated context lines on each side (as documents: 0)"
    )
    translate.add_argument(
        "--keep", nargs="+", default=(), metavar="REASON",
        help="translate these non-dialogue cues too (song, sign, credit, ... or all), as align's --keep",
    )  # fmt: skip
    translate.add_argument(
        "--allow-untranslated", action="store_true", help="exit 0 even when dialogue lines stay untranslated"
    )
    translate.add_argument("--cps", type=float, help="reading-speed limit, characters per second (default: by script)")
    translate.add_argument("--chars-per-line", type=int, help="characters per line allowed (default: by script)")
    translate.add_argument("--batch-size", type=int, default=8, help="documents per generation call")
    translate.add_argument("--max-new-tokens-per-line", type=int, default=64, help="token budget of one line")
    translate.add_argument("--device", help="torch device for --backend hf (default: cuda if available)")
    translate.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    translate.add_argument("--encoding", help="force the input's text encoding")
    translate.add_argument(
        "--overwrite", action="store_true", help="replace an output (or a partial file) this command did not write"
    )


def run_translate(args: argparse.Namespace) -> int:
    """translate a subtitle file with a trained model, keeping times, styles and tags

    Translate INPUT into OUTPUT with a model trained on numbered-line documents (ALPO).
    """
    if (args.cps is not None and args.cps <= 0) or (args.chars_per_line is not None and args.chars_per_line < 1):
        raise UserInputError("--cps and --chars-per-line must be positive")
    if args.lines < 1 or args.context < 0 or args.batch_size < 1 or args.max_new_tokens_per_line < 1:
        raise UserInputError("--lines, --batch-size and --max-new-tokens-per-line must be >= 1, --context >= 0")
    if not args.input.is_file():
        raise UserInputError("file not found", path=str(args.input))
    output_format(args.output)  # an extension it can write, before the model loads
    command, inputs = "subtitles translate", (args.input, args.model)
    check_output(args.output, command=command, inputs=inputs, overwrite=args.overwrite)
    # the partial file resumes only the same input, model and language; --overwrite starts it again
    partial = args.output.with_name(args.output.name + ".partial.jsonl")
    resume = {
        "input": file_fingerprint(args.input),
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "src_lang": args.src_lang,
        "tgt_lang": args.tgt_lang,
        "lines": args.lines,
        "context": args.context,
        "keep": sorted(args.keep or []),
    }
    check_output(partial, command=f"{command} (partial)", inputs=inputs, overwrite=args.overwrite, settings=resume)
    # bad input fails before the model loads
    file = read_subtitle_file(args.input, args.encoding)
    for message in file.warnings(args.input):
        print(f"trl-seqpo: warning: {message}", file=sys.stderr)
    try:
        left_out_cues(file.cues, args.keep)
    except ValueError as exc:
        raise UserInputError(f"--keep: {exc}") from exc
    translate, regenerate = load_translator(
        args.model,
        args.src_lang,
        args.tgt_lang,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens_per_line=args.max_new_tokens_per_line,
    )
    if args.overwrite:
        partial.unlink(missing_ok=True)
    claim_output(partial, command=f"{command} (partial)", settings=resume)
    with owned_output(args.output, command=command):
        counts = translate_file(
            args.input,
            args.output,
            translate,
            regenerate,
            source_lang=args.src_lang,
            lines_per_document=args.lines,
            context=args.context,
            batch_size=args.batch_size,
            bilingual=args.bilingual,
            encoding=args.encoding,
            target_lang=args.tgt_lang,
            keep=args.keep,
            cps_limit=args.cps,
            line_limit=args.chars_per_line,
        )
    release_output(partial)
    print(
        f"wrote {args.output}: {counts['dialogue']} dialogue cues: {counts['translated']} translated, "
        f"{counts['regenerated']} regenerated one by one, {counts['failed']} failed (left in the source language); "
        f"{counts['not_dialogue']} not dialogue (left as they were; --keep to translate them); {counts['events']} "
        f"events, {counts['documents']} documents ({counts['resumed']} resumed)",
        file=sys.stderr,
    )
    print(f"trl-seqpo: {counts['reading'].summary()}", file=sys.stderr)
    if counts["failed"]:
        shown = ", ".join(str(n) for n in counts["failed_cues"][:10]) + (", ..." if counts["failed"] > 10 else "")
        flag = "" if args.allow_untranslated else " (exit 1; --allow-untranslated accepts it)"
        print(f"trl-seqpo: untranslated dialogue cues: {shown}{flag}", file=sys.stderr)
        if not args.allow_untranslated:
            return 1
    return 0
