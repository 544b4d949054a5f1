"""``trl-seqpo alpo``: the ALPO data pipeline (alpo-subtitles.txt, Sec. 3.2-3.4).

``trl-seqpo alpo sample DOCS.jsonl -o CANDIDATES.jsonl --model PATH --source-lang en --target-lang zh ...``
    Algorithm 1 (`trl_seqpo.rollout.segmentwise`): k candidates per line (or segment), judged over an
    OpenAI-compatible endpoint. Input: the JSONL of ``trl-seqpo subtitles documents``. Output: one JSON object per
    (document, unit), appended and synced to disk as each document finishes. A killed run is resumed by running the
    same command again: finished documents are skipped, a cut-off last line or unfinished document is removed, and
    the judge's sqlite cache (``--cache``, by default ``CANDIDATES.judge-cache.sqlite``) answers every judge request
    already paid for.
``trl-seqpo alpo pairs CANDIDATES.jsonl -o PAIRS.jsonl``
    The preference pairs (`trl_seqpo.alpo.pairs`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from trl_seqpo.errors import UserInputError
from trl_seqpo.jsonl import parse_json_lines, read_json_objects

# the fields of a document record (Document.to_dict, written by `trl-seqpo subtitles documents`)
_LIST_FIELDS = ("source_lines", "context_before", "context_after")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trl-seqpo alpo`` with its ``sample`` and ``pairs`` actions."""
    parser = subparsers.add_parser(
        "alpo",
        help="ALPO data pipeline: sample candidates, judge them, build pairs",
        description="ALPO data pipeline (paper Sec. 3): sample and judge candidates, then build preference pairs.",
    )
    parser.set_defaults(func=lambda args: _missing_action(parser))
    actions = parser.add_subparsers(dest="alpo_action", metavar="ACTION")
    _add_sample_parser(actions)
    try:
        from trl_seqpo.alpo.pairs import add_pairs_parser
    except ImportError as exc:  # the pair builder ships separately from the sampler
        reason = str(exc)
        pairs = actions.add_parser("pairs", help="build ALPO preference pairs (not available in this installation)")
        pairs.set_defaults(func=lambda args: _unavailable("pairs", reason))
    else:
        add_pairs_parser(actions)


def _add_sample_parser(actions: argparse._SubParsersAction) -> None:
    sample = actions.add_parser(
        "sample",
        help="sample k candidates per line/segment and judge them (ALPO Alg. 1); resumable",
        description="ALPO Algorithm 1: for each document and unit, sample k candidates conditioned on the chosen "
        "translations of the earlier units, add the reference, score them with an LLM judge and pick the prefix "
        "from the top 3. Re-run the same command to resume after an interruption.",
    )
    sample.add_argument("documents", type=Path, help="documents .jsonl from `trl-seqpo subtitles documents`")
    sample.add_argument("-o", "--output", type=Path, required=True, help="candidates .jsonl (appended, resumable)")
    sample.add_argument("--model", required=True, help="the SFT policy: a local checkpoint directory")
    sample.add_argument("--source-lang", required=True, help="source language, as used for SFT (e.g. en)")
    sample.add_argument("--target-lang", required=True, help="target language, as used for SFT (e.g. zh)")
    sample.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation backend")
    sample.add_argument("--k", type=int, default=15, help="candidates sampled per unit (paper: 15)")
    sample.add_argument("--unit", choices=("line", "segment"), default="line", help="preference unit")
    sample.add_argument("--max-segment-lines", type=int, default=4, help="most lines in one segment")
    sample.add_argument("--temperature", type=float, default=0.7, help="authors' code 0.7 (paper Table 9: 1.0)")
    sample.add_argument("--top-p", type=float, default=0.9)
    sample.add_argument("--top-k", type=int, default=40)
    sample.add_argument("--max-new-tokens", type=int, default=128, help="token budget of one line")
    sample.add_argument("--seed", type=int, default=0, help="seed of sampling and prefix choices")
    sample.add_argument("--documents-per-batch", type=int, default=8, help="documents sampled in lockstep")
    sample.add_argument("--max-batch-size", type=int, help="hf backend: rows per generate call (default: all)")
    sample.add_argument("--no-reference", action="store_true", help="do not add the reference as a candidate")
    sample.add_argument("--dtype", default="auto", help="hf backend: torch dtype of the model (auto, float32, ...)")
    judge = sample.add_argument_group("judge")
    judge.add_argument("--judge-base-url", help="OpenAI-compatible base URL (default: $TRL_SEQPO_JUDGE_BASE_URL)")
    judge.add_argument("--judge-model", default="Qwen/Qwen3-14B", help="model name sent to the judge")
    judge.add_argument("--judge-aspect", default="vividness", help="vividness (ALPO reward), accuracy, naturalness")
    judge.add_argument("--judge-shuffles", type=int, default=4, help="shuffled votes per unit (paper: 4)")
    judge.add_argument("--judge-concurrency", type=int, default=8, help="judge requests in flight")
    judge.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request")
    judge.add_argument("--judge-min-candidates", type=int, default=1, help="judge units with at least this many")
    judge.add_argument("--context-window", type=int, default=2, help="source lines shown to the judge each side")
    judge.add_argument("--cache", type=Path, help="judge sqlite cache (default: OUTPUT.judge-cache.sqlite)")
    sample.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    """Run ``trl-seqpo alpo sample``: resume, sample and judge, append one record per unit."""
    from tqdm.auto import tqdm

    from trl_seqpo.rollout.segmentwise import SegmentwiseConfig, SegmentwiseSampler, document_batches

    for flag, value in (("--k", args.k), ("--documents-per-batch", args.documents_per_batch)):
        if value < 1:
            raise UserInputError(f"{flag} must be >= 1, got {value}")
    documents = read_documents(args.documents)
    try:
        config = SegmentwiseConfig(
            source_language=args.source_lang,
            target_language=args.target_lang,
            num_candidates=args.k,
            unit=args.unit,
            max_segment_lines=args.max_segment_lines,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            max_new_tokens=args.max_new_tokens,
            add_reference=not args.no_reference,
            context_window=args.context_window,
            judge_min_candidates=args.judge_min_candidates,
            raise_if_unreachable=True,
            documents_per_batch=args.documents_per_batch,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    done = resume_output(args.output, args.unit)
    todo = [document for document in documents if document.doc_id not in done]
    skipped = len(documents) - len(todo)
    if not todo:
        print(f"all {len(documents)} documents are already in {args.output}; nothing to do", file=sys.stderr)
        return 0
    judge = _build_judge(args)
    backend, tokenizer, stop_ids = _build_backend(args)
    config.stop_token_ids = tuple(stop_ids)
    sampler = SegmentwiseSampler(backend, tokenizer, config, judge)
    written = 0
    bar = tqdm(total=len(documents), initial=skipped, desc="alpo sample", unit="doc", disable=None)
    try:
        with args.output.open("a", encoding="utf-8") as handle:
            # batches are cut from the full input so a resumed run samples each batch exactly as the first run did
            for batch in document_batches(documents, config.documents_per_batch):
                if all(document.doc_id in done for document in batch):
                    continue
                for document, records in sampler.sample_batch(batch):
                    if document.doc_id in done:
                        continue
                    handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
                    handle.flush()
                    os.fsync(handle.fileno())
                    written += 1
                    bar.update(1)
    finally:
        bar.close()
        judge.close()
    stats = judge.stats
    print(
        f"wrote {written} documents to {args.output} ({skipped} were already there); {sampler.stats.summary()}; "
        f"judge: {stats.http_requests} HTTP requests, {stats.cache_hits} cache hits",
        file=sys.stderr,
    )
    return 0


def read_documents(path: Path) -> list[Any]:
    """Read the documents JSONL of ``trl-seqpo subtitles documents``, naming the file and line of any problem.

    Args:
        path: The file.

    Returns:
        The `Document` objects, in order.

    Raises:
        UserInputError: Missing file, bad JSON, a missing or mistyped field, a duplicate ``doc_id``, no documents.
    """
    from trl_seqpo.subtitles.documents import Document

    documents, seen = [], set()
    missing = "documents file not found; make it with `trl-seqpo subtitles documents`"
    records = read_json_objects(
        path, missing=missing, expected="a JSON object (a document of `trl-seqpo subtitles documents`)"
    )
    for number, record in records:
        problem = _document_problem(record)
        if problem:
            raise UserInputError(problem, path=str(path), line=number)
        if record["doc_id"] in seen:
            raise UserInputError(f"doc_id {record['doc_id']!r} appears twice", path=str(path), line=number)
        seen.add(record["doc_id"])
        try:
            documents.append(Document.from_dict(record))
        except ValueError as exc:
            raise UserInputError(str(exc), path=str(path), line=number) from None
    if not documents:
        raise UserInputError("no documents in the file", path=str(path))
    return documents


def _document_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "expected a JSON object (a document of `trl-seqpo subtitles documents`)"
    if not isinstance(record.get("doc_id"), str) or not record["doc_id"]:
        return "missing field 'doc_id' (a non-empty string)"
    for name in _LIST_FIELDS:
        value = record.get(name, [] if name != "source_lines" else None)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"field {name!r} must be a list of strings"
    if not record["source_lines"]:
        return "field 'source_lines' is empty"
    targets = record.get("target_lines")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        return "field 'target_lines' must be a list of strings or null"
    return None


def resume_output(path: Path, unit: str) -> set[str]:
    """Make ``path`` hold only complete documents and return their ids (the resume step of ``alpo sample``).

    A document is complete when its records for every unit index ``0 .. num_units - 1`` are present. Bytes after the
    last newline (a line cut by a kill) are truncated away; the records of unfinished documents are removed (the file
    is rewritten through a temporary file and an atomic rename, so an interruption here loses nothing).

    Args:
        path: The candidates file (may not exist yet).
        unit: The ``--unit`` of this run; a file written with another unit is refused.

    Returns:
        The ids of the complete documents.

    Raises:
        UserInputError: A complete line is not a candidate record, or the file was written with another ``--unit``.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return set()
    if path.is_dir():
        raise UserInputError("is a folder; give a candidates .jsonl file", path=str(path))
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):
        with path.open("r+b") as handle:  # a line cut short by a kill
            handle.truncate(cut)
            handle.flush()
            os.fsync(handle.fileno())
    lines = data[:cut].decode("utf-8").split("\n")[:-1]
    units: dict[str, set[int]] = {}
    expected: dict[str, int] = {}
    for number, record in parse_json_lines(lines, path, hint="not a file written by `trl-seqpo alpo sample`?"):
        if not isinstance(record, dict) or not {"doc_id", "unit_index", "num_units"} <= set(record):
            raise UserInputError(
                "not a candidate record of `trl-seqpo alpo sample` (needs doc_id, unit_index, num_units); "
                "write to a new file",
                path=str(path),
                line=number,
            )
        if record.get("unit", unit) != unit:
            raise UserInputError(
                f"written with --unit {record['unit']}; resume with the same options or write to a new file",
                path=str(path),
                line=number,
            )
        units.setdefault(record["doc_id"], set()).add(int(record["unit_index"]))
        expected[record["doc_id"]] = int(record["num_units"])
    complete = {doc_id for doc_id, seen in units.items() if seen == set(range(expected[doc_id]))}
    if len(complete) < len(units):
        kept = [line for line in lines if line.strip() and json.loads(line)["doc_id"] in complete]
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in kept))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    return complete


def _build_judge(args: argparse.Namespace) -> Any:
    from trl_seqpo.languages import language_name
    from trl_seqpo.rewards.judge import JudgeConfig, LLMJudge

    cache = args.cache or args.output.with_name(args.output.name.removesuffix(".jsonl") + ".judge-cache.sqlite")
    try:
        config = JudgeConfig(
            base_url=args.judge_base_url,
            model=args.judge_model,
            aspect=args.judge_aspect,
            num_shuffles=args.judge_shuffles,
            max_concurrency=args.judge_concurrency,
            timeout=args.judge_timeout,
            source_language=language_name(args.source_lang),
            target_language=language_name(args.target_lang),
            seed=args.seed,
            cache_path=str(cache),
        )
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    return LLMJudge(config)


def _build_backend(args: argparse.Namespace) -> tuple[Any, Any, list[int]]:
    """The generation backend, the tokenizer and the model's own end-of-generation ids."""
    model_path = Path(args.model)
    if not model_path.is_dir():
        raise UserInputError("model not found: give a local checkpoint directory", path=args.model)
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the command has its own progress bar

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot load a tokenizer from the model folder ({exc})", path=args.model) from None
    if args.backend == "vllm":
        from transformers import GenerationConfig

        from trl_seqpo.rollout.vllm import VLLMGenerationBackend

        try:
            generation_config = GenerationConfig.from_pretrained(model_path)
        except OSError:  # no generation_config.json: the tokenizer's EOS only
            generation_config = None
        # vLLM requests ignore EOS (stop ids are exact), so the model's end-of-generation ids go in as stop ids
        backend = VLLMGenerationBackend.from_model(model_path, seed=args.seed)
        return backend, tokenizer, _eos_ids(tokenizer, generation_config)
    import torch
    from transformers import AutoModelForCausalLM

    from trl_seqpo.rollout.hf import HFGenerationBackend

    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype, None)
    if dtype is None:
        raise UserInputError(f"--dtype {args.dtype!r} is not a torch dtype (use auto, float32, bfloat16, float16)")
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot load the model ({exc})", path=args.model) from None
    if torch.cuda.is_available():
        model = model.to("cuda")
    try:
        backend = HFGenerationBackend(model, tokenizer, max_batch_size=args.max_batch_size)
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    return backend, tokenizer, _eos_ids(tokenizer, getattr(model, "generation_config", None))


def _eos_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    ids = []
    for source in (generation_config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        ids.extend(value if isinstance(value, list | tuple) else [] if value is None else [value])
    return sorted({int(i) for i in ids})


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _unavailable(name: str, reason: str) -> int:
    print(
        f"trl-seqpo: error: `trl-seqpo alpo {name}` is not available in this installation ({reason})", file=sys.stderr
    )
    return 2
