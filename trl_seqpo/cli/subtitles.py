"""``trl-seqpo subtitles``: align bilingual subtitle files and cut them into numbered-line documents.

``trl-seqpo subtitles align SOURCE TARGET -o OUT.jsonl``
    One programme: writes one JSON object per aligned group, in time order (see
    `to_dict`), and prints a summary to stderr.
``trl-seqpo subtitles align SRC_DIR TGT_DIR -o OUT_DIR`` / ``align DIR -o OUT_DIR --source-lang en --target-lang zh``
    Many programmes: files are matched by their stem without the language suffix (``show.en.srt`` with
    ``show.zh.srt``, or ``show.srt`` in both folders); each pair goes to ``OUT_DIR/<stem>.jsonl``. Outputs that
    already exist are skipped, so a killed run resumes where it stopped.
``trl-seqpo subtitles align BILINGUAL.ass -o OUT.jsonl --source-lang en --target-lang zh``
    One file holding both languages: split by script (see ``split``), then aligned.
``trl-seqpo subtitles split BILINGUAL.srt --langs zh,en -o DIR``
    Writes ``DIR/STEM.zh.srt`` and ``DIR/STEM.en.srt``, styles and tags kept.
``trl-seqpo subtitles translate IN.srt -o OUT.srt --model M --tgt-lang zh [--bilingual]``
    Translates a file with a trained model; times, styles and tags are kept (resumes after an interruption).
``trl-seqpo subtitles documents ALIGNED.jsonl [...] -o DOCS.jsonl --lines 35``
    Documents of n lines per programme (``--format sft`` writes prompt/completion pairs for SFTTrainer instead).

Every output is written to a temporary file and renamed, so a failed run leaves no partial file. Every output goes
through the output guard (`trl_seqpo.outputs`): an output that is an input is refused, and an existing file that the
same action did not write is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from trl_seqpo.cli.options import add_action, add_command_group
from trl_seqpo.cli.translate import add_translate_action
from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import atomic_output, parse_json_lines
from trl_seqpo.outputs import (
    check_output,
    check_output_folder,
    owned_output,
)
from trl_seqpo.subtitles.align import AlignmentResult, align_dialogue
from trl_seqpo.subtitles.bilingual import split_bilingual, split_output_paths
from trl_seqpo.subtitles.documents import make_documents, sft_examples
from trl_seqpo.subtitles.hygiene import HYGIENE_REASONS, clean_pairs
from trl_seqpo.subtitles.io import EXTENSION_FORMATS, Cue, SubtitleFile, read_subtitle_file

_LANGUAGE_SUFFIX = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


_SUBTITLES_HELP = "read, align and cut subtitle files into documents"
_SUBTITLES_DESCRIPTION = "Bilingual subtitle data for ALPO: align two subtitle files by time, build documents."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo subtitles`` with its ``align`` and ``documents`` actions."""
    actions = add_command_group(subparsers, "subtitles", help=_SUBTITLES_HELP, description=_SUBTITLES_DESCRIPTION)

    align = add_action(actions, "align", run_align)
    align.add_argument(
        "source", type=Path, help="source subtitle file, a folder of them, or one file holding both languages"
    )
    align.add_argument(
        "target",
        type=Path,
        nargs="?",
        help="target subtitle file or folder; omit it when SOURCE is one folder holding STEM.SRC.ext and "
        "STEM.TGT.ext, or one bilingual file (then --source-lang and --target-lang say which languages to split)",
    )
    align.add_argument("-o", "--output", type=Path, required=True, help="output .jsonl (a folder in folder mode)")
    align.add_argument(
        "--max-start-diff", type=float, default=0.7, help="seconds; pair cues whose starts differ <= this"
    )
    align.add_argument("--min-overlap", type=float, default=0.5, help="overlap share for split/merged cues to join")
    align.add_argument("--source-lang", help="source language code (file suffix in folder mode, e.g. 'en')")
    align.add_argument("--target-lang", help="target language code (e.g. 'zh'); a zh/ja cue wrap gets no space")
    align.add_argument("--encoding", help="force this text encoding for both files instead of detecting it")
    align.add_argument("--source-encoding", help="force the source file's text encoding")
    align.add_argument("--target-encoding", help="force the target file's text encoding")
    align.add_argument(
        "--strict",
        action="store_true",
        help="refuse a file with an event that ends before it starts (default: drop it)",
    )
    align.add_argument("--fps", type=float, help="frame rate for MicroDVD files that do not state it")
    align.add_argument(
        "--keep",
        default="",
        help="comma-separated reasons to keep cues that are not dialogue (sign, credit, song, karaoke, description, "
        "other_script, overlay, layered, positioned, flash, zero_length, ...; 'all' keeps everything)",
    )
    align.add_argument(
        "--keep-sdh", action="store_true", help="keep SDH speaker labels, [descriptions] and furigana in the text"
    )
    align.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output file another command wrote (folder mode: redo programmes already aligned)",
    )
    align.add_argument("--skip-bad", action="store_true", help="folder mode: report unreadable files and go on")

    split = add_action(actions, "split", run_split)
    split.add_argument("file", type=Path, help="bilingual subtitle file")
    split.add_argument("--langs", required=True, help="the two language codes, e.g. 'zh,en' or 'ja,zh'")
    split.add_argument("-o", "--output", type=Path, required=True, help="output folder (STEM.LANG.EXT per language)")
    split.add_argument("--encoding", help="force the file's text encoding")
    split.add_argument("--overwrite", action="store_true", help="replace output files that exist")

    add_translate_action(actions)

    documents = add_action(actions, "documents", run_documents)
    documents.add_argument("inputs", type=Path, nargs="+", help="aligned .jsonl files, or folders of them")
    documents.add_argument("-o", "--output", type=Path, required=True, help="output .jsonl")
    documents.add_argument("--lines", type=int, default=35, help="lines per document (paper: 35)")
    documents.add_argument("--context", type=int, default=0, help="untranslated context lines before and after")
    documents.add_argument(
        "--format",
        choices=("documents", "sft"),
        default="documents",
        help="'documents': one Document per line; 'sft': prompt/completion pairs for TRL's SFTTrainer",
    )
    documents.add_argument(
        "--no-filter",
        action="store_true",
        help="keep identical-text pairs and SDH-only lines, and leave SDH labels in the text",
    )
    documents.add_argument("--source-lang", help="source language, needed for --format sft")
    documents.add_argument("--target-lang", help="target language, needed for --format sft")
    documents.add_argument("--overwrite", action="store_true", help="replace an output this command did not write")


def run_align(args: argparse.Namespace) -> int:
    """pair the cues of a source and a target subtitle file by time (ALPO App. A.2)

    Align SOURCE and TARGET subtitle files (or folders of them) by cue start time.
    """
    if args.max_start_diff < 0:
        raise UserInputError(f"--max-start-diff must be >= 0 seconds, got {args.max_start_diff}")
    if not 0 < args.min_overlap <= 1:
        raise UserInputError(f"--min-overlap must be in (0, 1], got {args.min_overlap}")
    if args.source.is_dir():
        return _align_folders(args)
    if args.target is None:
        if not (args.source_lang and args.target_lang):
            raise UserInputError(
                "give SOURCE and TARGET files, a folder as SOURCE for folder mode, or one bilingual file with "
                "--source-lang and --target-lang"
            )
    elif args.target.is_dir():
        raise UserInputError("is a folder but SOURCE is a file; give two files or two folders", path=str(args.target))
    if args.output.is_dir():
        raise UserInputError("is a folder; give an output .jsonl file", path=str(args.output))
    check_output(args.output, command="subtitles align", inputs=(args.source, args.target), overwrite=args.overwrite)
    result = _align_pair(args.source, args.target, args.output, args, args.source_lang, args.target_lang)
    names = f"{args.source.name} + {args.target.name}" if args.target else f"{args.source.name} (bilingual)"
    print(f"{names}: {result.summary()}", file=sys.stderr)
    return 0


def run_split(args: argparse.Namespace) -> int:
    """split a subtitle file holding two languages into one file per language

    Split a bilingual subtitle file (two lines per cue, or separate events/styles) by script.
    """
    langs = tuple(lang.strip() for lang in args.langs.split(",") if lang.strip())
    if len(langs) != 2:
        raise UserInputError(f"--langs needs two language codes such as 'zh,en', got {args.langs!r}")
    check_output_folder(args.output, inputs=(args.file,))
    paths = split_output_paths(args.file, langs, args.output)
    for path in paths.values():  # the bilingual original is never replaced, even with --overwrite
        check_output(path, command="subtitles split", inputs=(args.file,), overwrite=args.overwrite)
    file = read_subtitle_file(args.file, args.encoding)
    _print_warnings(file, args.file)
    try:
        halves = split_bilingual(file, langs)
    except ValueError as exc:
        raise UserInputError(str(exc), path=str(args.file)) from exc
    for lang, path in paths.items():
        content = halves[lang].subs.to_string(file.format if file.format != "microdvd" else "srt")
        with owned_output(path, command="subtitles split"), atomic_output(path) as handle:
            handle.write(content)
    print(
        ", ".join(f"wrote {paths[lang]} ({len(halves[lang].cues)} cues)" for lang in langs),
        file=sys.stderr,
    )
    return 0


def run_documents(args: argparse.Namespace) -> int:
    """cut aligned programmes into numbered-line documents (ALPO Sec. 4.1)

    Cut aligned JSONL files (one programme each) into documents of --lines lines.
    """
    if args.lines < 1:
        raise UserInputError(f"--lines must be >= 1, got {args.lines}")
    if args.context < 0:
        raise UserInputError(f"--context must be >= 0, got {args.context}")
    if args.format == "sft" and not (args.source_lang and args.target_lang):
        raise UserInputError("--format sft needs --source-lang and --target-lang (e.g. en zh)")
    files: list[Path] = []
    for path in args.inputs:
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise UserInputError("folder holds no .jsonl files", path=str(path))
            files.extend(found)
        elif not path.exists():
            raise UserInputError("file not found", path=str(path))
        else:
            files.append(path)
    check_output(args.output, command="subtitles documents", inputs=files, overwrite=args.overwrite)
    all_documents = []
    filtered: Counter[str] = Counter()
    for path in files:
        groups = _read_aligned(path)
        if not args.no_filter:
            groups, counts = clean_pairs(groups)
            filtered.update(counts)
        try:
            all_documents.extend(make_documents(groups, args.lines, args.context, doc_id_prefix=path.stem))
        except ValueError as exc:
            raise UserInputError(str(exc), path=str(path)) from exc
    if args.format == "sft":
        try:
            records: list[dict[str, Any]] = sft_examples(all_documents, args.source_lang, args.target_lang)
        except ValueError as exc:
            raise UserInputError(f"{exc} (input has no 'target' field)") from exc
    else:
        records = [document.to_dict() for document in all_documents]
    with owned_output(args.output, command="subtitles documents"), atomic_output(args.output) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    lines = sum(len(document.source_lines) for document in all_documents)
    print(
        f"wrote {len(records)} {'SFT examples' if args.format == 'sft' else 'documents'} ({lines} lines) "
        f"from {len(files)} file(s) to {args.output}{_filter_summary(filtered, args.no_filter)}",
        file=sys.stderr,
    )
    return 0


def _filter_summary(counts: Counter[str], disabled: bool) -> str:
    if disabled:
        return ""
    dropped = ", ".join(f"{reason} {counts[reason]}" for reason in HYGIENE_REASONS if counts[reason]) or "none"
    return f"; pairs left out: {dropped}; SDH labels/descriptions removed from {counts['cleaned']} pair(s)"


def programme_key(path: Path, lang: str | None = None) -> tuple[str, str | None]:
    """Split ``show.en.srt`` into ``("show", "en")``; ``show.srt`` gives ``("show", None)``.

    Args:
        path: A subtitle file.
        lang: The language suffix expected; ``None`` accepts any suffix that looks like a language code.

    Returns:
        The programme stem and the language suffix found (or ``None``).
    """
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    base, dot, suffix = stem.rpartition(".")
    if dot and base and (suffix == lang if lang else _LANGUAGE_SUFFIX.match(suffix)):
        return base, suffix
    return stem, None


def _align_pair(
    source: Path,
    target: Path | None,
    output: Path,
    args: argparse.Namespace,
    source_lang: str | None,
    target_lang: str | None,
    claim: bool = True,
) -> AlignmentResult:
    if target is None:
        file = read_subtitle_file(source, args.source_encoding or args.encoding, fps=args.fps, strict=args.strict)
        _print_warnings(file, source)
        try:
            halves = split_bilingual(file, (source_lang or "", target_lang or ""))
        except ValueError as exc:
            raise UserInputError(str(exc), path=str(source)) from exc
        source_cues, target_cues = halves[source_lang or ""].cues, halves[target_lang or ""].cues
    else:
        source_cues = _read(source, args.source_encoding or args.encoding, args)
        target_cues = _read(target, args.target_encoding or args.encoding, args)
    keep = [reason.strip() for reason in args.keep.split(",") if reason.strip()]
    try:
        result = align_dialogue(
            source_cues,
            target_cues,
            max_start_diff=args.max_start_diff,
            min_overlap=args.min_overlap,
            source_lang=source_lang,
            target_lang=target_lang,
            keep=keep,
            strip_sdh=not args.keep_sdh,
        )
    except ValueError as exc:
        raise UserInputError(f"--keep: {exc}") from exc
    # folder mode needs no record: an output that exists is skipped, or replaced with --overwrite
    owner = owned_output(output, command="subtitles align") if claim else contextlib.nullcontext()
    with owner, atomic_output(output) as handle:
        for record in result.records(source_cues, target_cues):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return result


def _read(path: Path, encoding: str | None, args: argparse.Namespace) -> list[Cue]:
    result = read_subtitle_file(path, encoding, fps=args.fps, strict=args.strict)
    _print_warnings(result, path)
    return result.cues


def _print_warnings(file: SubtitleFile, path: Path) -> None:
    for message in file.warnings(path):
        print(f"trl-seqpo: warning: {message}", file=sys.stderr)


def _subtitle_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in EXTENSION_FORMATS)


def _programmes(folder: Path, lang: str | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _subtitle_files(folder):
        stem, suffix = programme_key(path, lang)
        if lang and suffix != lang:
            continue
        if stem in found:
            raise UserInputError(
                f"two files for programme {stem!r}: {found[stem].name} and {path.name}", path=str(folder)
            )
        found[stem] = path
    return found


def _align_folders(args: argparse.Namespace) -> int:
    if args.target is None:
        if not (args.source_lang and args.target_lang):
            raise UserInputError(
                "one folder needs --source-lang and --target-lang to pair STEM.SRC.ext with STEM.TGT.ext",
                path=str(args.source),
            )
        sources, targets = _programmes(args.source, args.source_lang), _programmes(args.source, args.target_lang)
    elif not args.target.is_dir():
        raise UserInputError("SOURCE is a folder, so TARGET must be a folder too", path=str(args.target))
    else:
        sources, targets = _programmes(args.source, args.source_lang), _programmes(args.target, args.target_lang)
    if args.output.exists() and not args.output.is_dir():
        raise UserInputError(
            "folder mode writes one .jsonl per programme; give an output folder", path=str(args.output)
        )
    check_output_folder(args.output)
    paired = sorted(set(sources) & set(targets))
    if not paired:
        raise UserInputError("no programme has both a source and a target file", path=str(args.source))
    done = skipped = failed = 0
    totals = {"groups": 0, "unmatched_source": 0, "unmatched_target": 0}
    for stem in tqdm(paired, desc="aligning", unit="programme", disable=None):
        output = args.output / f"{stem}.jsonl"
        if output.exists() and not args.overwrite:
            skipped += 1
            continue
        check_output(output, command="subtitles align", inputs=(sources[stem], targets[stem]), overwrite=True)
        _, source_lang = programme_key(sources[stem], args.source_lang)
        _, target_lang = programme_key(targets[stem], args.target_lang)
        try:
            result = _align_pair(sources[stem], targets[stem], output, args, source_lang, target_lang, claim=False)
        except UserInputError as exc:
            if not args.skip_bad:
                raise
            print(f"trl-seqpo: skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        done += 1
        totals["groups"] += len(result.groups)
        totals["unmatched_source"] += len(result.unmatched_source)
        totals["unmatched_target"] += len(result.unmatched_target)
    alone = sorted(set(sources) ^ set(targets))
    print(
        f"aligned {done} programme(s), {skipped} already done, {failed} unreadable, {len(alone)} without a partner"
        f"{' (' + ', '.join(alone[:8]) + (', ...' if len(alone) > 8 else '') + ')' if alone else ''}; "
        f"{totals['groups']} groups; unmatched cues: source {totals['unmatched_source']}, "
        f"target {totals['unmatched_target']}",
        file=sys.stderr,
    )
    return 0


def _read_aligned(path: Path) -> list[dict[str, Any]]:
    groups = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            "not UTF-8 JSON lines; give the output of 'trl-seqpo subtitles align'", path=str(path)
        ) from exc
    for number, record in parse_json_lines(text.split("\n"), path):
        if isinstance(record, dict) and "excluded" in record:
            continue  # a cue 'align' left out as not dialogue, listed for the record
        if not isinstance(record, dict) or not isinstance(record.get("source"), str):
            raise UserInputError("expected an object with a string 'source' field", path=str(path), line=number)
        if "target" in record and not isinstance(record["target"], str):
            raise UserInputError("'target' must be a string", path=str(path), line=number)
        groups.append(record)
    if not groups:
        raise UserInputError("no aligned groups in the file", path=str(path))
    return groups
