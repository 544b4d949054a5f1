"""The LLM aligner: partial-translation SFT data for real sentence pairs (SeqPO-SiMT App. A.2).

The paper builds its SFT warm-up data by asking an LLM which part of the translation can already be written after
each source chunk. `LLMAligner` does that through any OpenAI-compatible endpoint: it shows the source cut into the
chunks the policy will read and the full reference, and asks for one prefix of the reference per chunk
(`ALIGNER_PROMPT`, our wording of the paper's idea). Answers are validated (`validate_prefixes`); an invalid one
is skipped and counted, never guessed. The result, rows with ``step_outputs``, is what
`trl_seqpo.seqpo.sft_data.build_sft_dataset` turns into SFT data. ``trl-seqpo simt align`` is the command.

Units follow the languages (`trl_seqpo.languages.default_unit`): a Chinese source is chunked by characters, an
English one by words, so both directions of the paper (En->Zh and Zh->En) work with the defaults.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from trl_seqpo.errors import check_at_least
from trl_seqpo.languages import Unit, default_unit, language_name
from trl_seqpo.secret import Secret, mask_credentials, resolve_api_key
from trl_seqpo.seqpo.sft_data import prefixes_to_step_outputs
from trl_seqpo.simt.chunking import UNITS, split_into_chunks, split_units

__all__ = [
    "ALIGNER_PROMPT",
    "ALIGNER_SYSTEM_PROMPT",
    "AlignerConfig",
    "AlignerStats",
    "LLMAligner",
    "parse_aligner_answer",
    "validate_prefixes",
]

ALIGNER_SYSTEM_PROMPT = "You prepare training data for simultaneous interpreting. You answer with JSON only."
ALIGNER_PROMPT = """An interpreter hears a {src_lang} sentence one numbered piece at a time and must speak the \
{tgt_lang} translation below as early as possible, but never say anything that depends on a piece not heard yet.

Pieces of the {src_lang} sentence:
{numbered_chunks}

{tgt_lang} translation:
{reference}

For every piece k (1 to {num_chunks}), write the beginning of the translation that can already be spoken after \
hearing pieces 1 to k. Copy the translation's text exactly; each answer must start with the previous answer; the \
answer for piece {num_chunks} is the whole translation; an answer may repeat the previous one (wait) or be empty.
Reply with one JSON object and nothing else: {{"prefixes": [<{num_chunks} strings>]}}"""


def validate_prefixes(prefixes: Any, reference: str, num_chunks: int, target_unit: Unit = "word") -> list[int]:
    """Check an aligner's answer and turn it into target-unit prefix lengths.

    Rules: exactly ``num_chunks`` strings; each (whitespace-normalised) is a prefix of the reference ending on a unit
    boundary; each extends the previous one. The last step always writes the whole reference (the policy has read
    everything), whatever the answer says for it.

    Args:
        prefixes: The ``prefixes`` value of the parsed JSON answer.
        reference: The full translation.
        num_chunks: Number of source chunks ``T``.
        target_unit: Unit of the target.

    Returns:
        Target units written after each step, non-decreasing, the last one the reference length.

    Raises:
        ValueError: The answer breaks a rule (the message says which).

    Examples:
        >>> validate_prefixes(["", "I", "I know"], "I know it", 3)
        [0, 1, 3]
    """
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise ValueError("'prefixes' must be a list of strings")
    if len(prefixes) != num_chunks:
        raise ValueError(f"expected {num_chunks} prefixes, got {len(prefixes)}")
    ref_units = split_units(reference, target_unit)
    lengths, previous = [], 0
    for k, prefix in enumerate(prefixes[:-1], start=1):
        units = split_units(prefix, target_unit)
        if units != ref_units[: len(units)]:
            raise ValueError(f"prefix {k} is not a beginning of the translation: {prefix!r}")
        if len(units) < previous:
            raise ValueError(f"prefix {k} is shorter than prefix {k - 1}")
        lengths.append(previous := len(units))
    lengths.append(len(ref_units))
    return lengths


def parse_aligner_answer(content: str) -> Any:
    """Extract the ``prefixes`` value from an answer that should be a JSON object (code fences tolerated).

    Examples:
        >>> parse_aligner_answer('```json\\n{"prefixes": ["a", "a b"]}\\n```')
        ['a', 'a b']
    """
    text = content.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("answer holds no JSON object")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "prefixes" not in data:
        raise ValueError("JSON answer has no 'prefixes' key")
    return data["prefixes"]


@dataclass
class AlignerConfig:
    """Settings of the LLM aligner (``trl-seqpo simt align`` takes one flag per field).

    Args:
        model: Model name on the endpoint.
        base_url: Endpoint URL (``OPENAI_BASE_URL`` when ``None``).
        api_key: Key for this endpoint, held as a `trl_seqpo.secret.Secret` (masked in ``repr`` and pickles).
        api_key_env: Environment variable holding the key (not visible in ``ps``, unlike ``--api-key``).
        api_key_file: File whose first line is the key. Without any of the three, ``$OPENAI_API_KEY`` is sent only
            to OpenAI's own API, ``"EMPTY"`` to every other endpoint (the judge's rule).
        chunk_size: Source units per chunk, the paper's ``m`` (must match the SFT and SeqPO runs).
        source_lang: Source language, a code (``zh``) or an English name; named in the prompt.
        target_lang: Target language, likewise.
        source_unit: ``"word"`` or ``"char"`` for the source chunks; ``None`` picks from ``source_lang``
            (characters for zh/ja/th).
        target_unit: ``"word"`` or ``"char"`` for the target prefixes; ``None`` picks from ``target_lang``.
        temperature: Sampling temperature of the aligner.
        max_concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries of the ``openai`` client (exponential back-off on 429/5xx/timeouts).
    """

    model: str | None = field(default=None, metadata={"help": "Model name on the OpenAI-compatible endpoint."})
    base_url: str | None = field(default=None, metadata={"help": "Endpoint URL (default: $OPENAI_BASE_URL)."})
    api_key: str | None = field(
        default=None, metadata={"help": "API key (visible in `ps`: prefer --api-key-env or --api-key-file)."}
    )
    api_key_env: str | None = field(default=None, metadata={"help": "Environment variable holding the API key."})
    api_key_file: str | None = field(
        default=None,
        metadata={"help": "File holding the API key. Default: $OPENAI_API_KEY for OpenAI's API only, else EMPTY."},
    )
    chunk_size: int = field(default=3, metadata={"help": "Source units per chunk (the paper's m)."})
    source_lang: str = field(default="en", metadata={"help": "Source language code or English name."})
    target_lang: str = field(default="zh", metadata={"help": "Target language code or English name."})
    source_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for source chunks; default from the source language."}
    )
    target_unit: str | None = field(
        default=None, metadata={"help": "'word' or 'char' for target prefixes; default from the target language."}
    )
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature of the aligner."})
    max_concurrency: int = field(default=8, metadata={"help": "Requests in flight at once."})
    timeout: float = field(default=60.0, metadata={"help": "Seconds per request."})
    max_retries: int = field(default=3, metadata={"help": "Retries per request (back-off on 429/5xx/timeouts)."})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required: the model name the endpoint serves")
        check_at_least(self, 1, "chunk_size")
        for name in ("source_unit", "target_unit"):
            if getattr(self, name) not in (None, *UNITS):
                raise ValueError(f"{name} must be one of {UNITS} or None, got {getattr(self, name)!r}")
        check_at_least(self, 1, "max_concurrency")
        check_at_least(self, 0, "temperature", "max_retries")
        if not self.timeout > 0:  # also NaN
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        for name in ("source_lang", "target_lang"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} must be a language code or name, got {getattr(self, name)!r}")
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            self.api_key = Secret(self.api_key)

    @property
    def resolved_source_unit(self) -> Unit:
        return self.source_unit or default_unit(self.source_lang)  # type: ignore[return-value]

    @property
    def resolved_target_unit(self) -> Unit:
        return self.target_unit or default_unit(self.target_lang)  # type: ignore[return-value]


@dataclass
class AlignerStats:
    """Counts of one `LLMAligner.align_rows` run.

    Attributes:
        aligned: New valid answers.
        cached: Rows answered by the cache file (valid or not) without a request.
        invalid: New answers that broke a rule (bad JSON, wrong count, not a prefix, ...); cached like valid ones.
        failed: Requests that failed after the client's retries (not cached: a rerun asks again).
        cached_invalid: Of ``cached``, the rows whose cached answer was invalid.
        dropped_partial_line: Whether the cache file ended in a line cut short by a kill (it was removed).
        errors: One message per invalid answer or failed request.
    """

    aligned: int = 0
    cached: int = 0
    invalid: int = 0
    failed: int = 0
    cached_invalid: int = 0
    dropped_partial_line: bool = False
    errors: list[str] = field(default_factory=list)


class LLMAligner:
    """Partial translations from an LLM through any OpenAI-compatible endpoint (SeqPO-SiMT App. A.2).

    Args:
        config: An `AlignerConfig`; or give its fields as keyword arguments.

    Examples:
        >>> aligner = LLMAligner(model="Qwen/Qwen2.5-72B-Instruct", source_lang="zh", target_lang="en")
        >>> aligner.config.resolved_source_unit, aligner.config.resolved_target_unit
        ('char', 'word')
        >>> [m["role"] for m in aligner.messages("我知道了", "I know")]
        ['system', 'user']
    """

    def __init__(self, config: AlignerConfig | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise TypeError("give either an AlignerConfig or its fields as keyword arguments, not both")
        self.config = config if config is not None else AlignerConfig(**settings)
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            from trl_seqpo.errors import MissingDependencyError

            raise MissingDependencyError("the LLM aligner needs the openai package: pip install openai") from exc
        cfg = self.config
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=resolve_api_key(cfg.api_key, cfg.api_key_env, cfg.api_key_file, base_url, what="the aligner key"),
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
        )

    def chunks(self, source: str) -> list[str]:
        """The source chunks the policy will read (and the aligner is shown)."""
        return split_into_chunks(source, self.config.chunk_size, self.config.resolved_source_unit)

    def messages(self, source: str, reference: str) -> list[dict[str, str]]:
        """The chat messages sent to the aligner for one sentence pair."""
        chunks = self.chunks(source)
        numbered = "\n".join(f"{k}. {chunk.strip()}" for k, chunk in enumerate(chunks, start=1))
        user = ALIGNER_PROMPT.format(
            src_lang=language_name(self.config.source_lang),
            tgt_lang=language_name(self.config.target_lang),
            numbered_chunks=numbered,
            reference=reference.strip(),
            num_chunks=len(chunks),
        )
        return [{"role": "system", "content": ALIGNER_SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def align(self, source: str, reference: str) -> list[str]:
        """Ask the LLM for one sentence pair's partial translations.

        Returns:
            Step outputs ``y_1..y_T``, one per chunk of `chunks`.

        Raises:
            ValueError: The answer is not valid JSON or breaks a rule of `validate_prefixes`.
            openai.OpenAIError: The request failed after the client's retries.
        """
        cfg = self.config
        response = self._client.chat.completions.create(
            model=cfg.model, messages=self.messages(source, reference), temperature=cfg.temperature
        )
        content = response.choices[0].message.content or ""
        unit = cfg.resolved_target_unit
        lengths = validate_prefixes(parse_aligner_answer(content), reference, len(self.chunks(source)), unit)
        return prefixes_to_step_outputs(lengths, split_units(reference, unit), unit)

    def align_rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        cache_path: str | os.PathLike[str] | None = None,
        progress: bool = True,
        retry_invalid: bool = False,
    ) -> tuple[list[dict[str, Any]], AlignerStats]:
        """Align many ``source``/``reference`` rows concurrently, resumably.

        Every answer (valid or not) is appended to ``cache_path`` (JSON lines, one per row, flushed and synced) as
        soon as it arrives, through `trl_seqpo.jsonl.ResumableJsonl`. A rerun with the same cache reuses those
        lines and asks only for the rest, so a killed job loses at most the line being written (a last line cut
        short is dropped and asked again) and never pays twice. Failed requests are not cached (a rerun retries
        them); invalid answers are, unless ``retry_invalid``.

        Args:
            rows: Mappings with ``source`` and ``reference``.
            cache_path: JSON-lines file of answers; ``None`` keeps nothing on disk.
            progress: Show a tqdm progress bar.
            retry_invalid: Ask again for rows whose cached answer was invalid (useful with ``temperature > 0``).

        Returns:
            ``(aligned_rows, stats)``: rows with ``source``, ``reference`` and ``step_outputs`` in input order
            (skipped pairs left out), ready for `build_sft_dataset`.

        Raises:
            ValueError: A row lacks ``source`` or ``reference``, or a complete line of the cache is corrupt.
        """
        from openai import OpenAIError
        from tqdm.auto import tqdm

        from trl_seqpo.jsonl import ResumableJsonl

        pairs = []
        for index, row in enumerate(rows):
            if not isinstance(row.get("source"), str) or not isinstance(row.get("reference"), str):
                raise ValueError(f"row {index} needs 'source' and 'reference' strings")
            pairs.append({"source": row["source"], "reference": row["reference"]})
        stats = AlignerStats()
        store = None
        if cache_path is not None:
            complete = (lambda group: "step_outputs" in group[-1]) if retry_invalid else None
            store = ResumableJsonl(
                cache_path,
                resume=True,
                key="key",
                complete=complete,
                hint="the aligner cache is damaged; move it away to start again",
            )
            stats.dropped_partial_line = store.dropped_partial_line
        cached = store.rows if store is not None else {}
        keys = [self._key(pair) for pair in pairs]
        results: dict[int, list[str] | None] = {}
        lock = threading.Lock()

        def work(index: int) -> None:
            pair = pairs[index]
            try:
                outputs: list[str] | None = self.align(pair["source"], pair["reference"])
                entry = {"key": keys[index], "step_outputs": outputs}
            except OpenAIError as exc:
                with lock:
                    stats.failed += 1
                    stats.errors.append(f"row {index}: request failed: {exc}")
                return
            except ValueError as exc:  # bad JSON or a broken rule
                outputs, entry = None, {"key": keys[index], "error": str(exc)}
            with lock:
                results[index] = outputs
                if outputs is None:
                    stats.invalid += 1
                    stats.errors.append(f"row {index}: invalid answer: {entry['error']}")
                else:
                    stats.aligned += 1
                if store is not None:
                    store.append([entry])

        todo, first_of = [], {}
        for index, key in enumerate(keys):
            if key in first_of:  # a repeated pair is asked once
                continue
            first_of[key] = index
            if key in cached:
                stats.cached += 1
                results[index] = cached[key].get("step_outputs")
                stats.cached_invalid += results[index] is None
            else:
                todo.append(index)
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            futures = [pool.submit(work, index) for index in todo]
            bar = tqdm(total=len(pairs), initial=stats.cached, disable=not progress, desc="aligning", unit="pair")
            with bar:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
                    bar.set_postfix(invalid=stats.invalid + stats.cached_invalid, failed=stats.failed)
        for index, key in enumerate(keys):  # repeats of a pair share its answer
            if index not in results and first_of[key] in results:
                results[index] = results[first_of[key]]
        aligned = [{**pairs[i], "step_outputs": results[i]} for i in range(len(pairs)) if results.get(i) is not None]
        return aligned, stats

    def _key(self, pair: Mapping[str, Any]) -> str:
        cfg = self.config
        return json.dumps(
            [cfg.model, cfg.chunk_size, cfg.resolved_source_unit, cfg.resolved_target_unit]
            + [pair["source"], pair["reference"]],
            ensure_ascii=False,
        )

    def __repr__(self) -> str:
        settings = {k: mask_credentials(v) for k, v in asdict(self.config).items() if k != "api_key"}
        return f"LLMAligner({settings})"
