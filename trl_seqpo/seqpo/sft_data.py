"""Partial-translation SFT warm-up data for simultaneous translation (SeqPO-SiMT Sec. 3.1 and App. A.2).

The paper warms its policy up with supervised fine-tuning on *partial translation* pairs: each full sentence pair
is aligned, and for each source prefix the model learns which prefix of the translation can already be written.
This module builds that data in two ways:

- **exactly, from a gold word alignment** (`gold_step_outputs`), for the synthetic language pair of
  `trl_seqpo.synthetic.language_pair`: at step ``t`` the policy has read ``min(t*m, n)`` source units and writes the
  longest target prefix whose aligned source units have all been read. ``extra_wait`` delays every decision by that
  many source units, giving a *conservative* policy that waits later than it needs to, so that RL has latency to
  cut (``DESIGN.md``, "Demo calibration");
- **with an LLM aligner** (`LLMAligner`) through any
  OpenAI-compatible endpoint, for real data (App. A.2 prompts an LLM to pair source and target chunks).

Either way the result is a list of *step outputs* ``y_1..y_T`` (one per source chunk, ``""`` = wait) that
`build_sft_dataset` turns into a `datasets.Dataset` for TRL's ``SFTTrainer``:

- ``chat`` format: a ``messages`` column, one conversation per sentence built with
  `trl_seqpo.simt.templates.build_chat_messages` (user turn = chunk, assistant turn = ``y_t``); train with
  ``assistant_only_loss=True``;
- ``paper`` format: ``prompt``/``completion`` rows, one per step, the prompt rendered with
  `trl_seqpo.simt.templates.render_paper_prompt` (SeqPO-SiMT Fig. 2).

How the model learns to stop (what `SimultaneousRollout` expects):

- chat: every assistant turn ends with the step-end token ``<|im_end|>`` (the chat template adds it; a wait step is
  just ``<|im_end|>``). The assistant turn after the last chunk (whose user turn ends with ``[END]``) holds the whole
  rest of the translation followed by ``end_of_translation`` (``<|endoftext|>``), so the rollout stops the
  trajectory at that token (its ``finished_by == "eos"``);
- paper: every completion ends with the tokenizer's EOS, which is the paper format's step end; after the last
  chunk (``[END]`` in the prompt) the completion is the rest of the translation, and the rollout ends the trajectory
  on a non-empty step once the source is complete.

Step outputs follow the rollout's spacing: the first non-empty output has no leading space and each later non-empty
output starts with one space, so ``"".join(outputs)`` is the translation and the paper-format prompt of step
``t + 1`` is exactly the prompt of step ``t`` plus its output.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trl_seqpo.simt.chunking import Unit, count_units, split_into_chunks, split_units
from trl_seqpo.simt.templates import build_chat_messages, render_paper_prompt

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

PromptFormat = Literal["chat", "paper"]
END_OF_TRANSLATION = "<|endoftext|>"


def join_with_spacing(pieces: Sequence[str], written_before: bool, unit: Unit) -> str:
    """Join target units into one step output, with a leading space if something was written before (word units)."""
    if not pieces:
        return ""
    if unit == "char":
        return "".join(pieces)
    return (" " if written_before else "") + " ".join(pieces)


def prefixes_to_step_outputs(prefix_lengths: Sequence[int], target_units: Sequence[str], unit: Unit) -> list[str]:
    """Turn the number of target units written after each step into step outputs ``y_1..y_T``.

    Args:
        prefix_lengths: Target units written after steps ``1..T``; non-decreasing, the last one ``len(target_units)``.
        target_units: The reference split into units.
        unit: ``"word"`` or ``"char"``.

    Returns:
        One string per step (``""`` = wait) with the spacing convention of this module.
    """
    outputs, written = [], 0
    for length in prefix_lengths:
        if length < written:
            raise ValueError(f"prefix lengths must be non-decreasing, got {list(prefix_lengths)}")
        outputs.append(join_with_spacing(list(target_units[written:length]), written > 0, unit))
        written = length
    return outputs


def gold_step_outputs(
    source: str,
    reference: str,
    alignment: Iterable[Sequence[int]],
    chunk_size: int,
    extra_wait: int = 0,
    source_unit: Unit = "word",
    target_unit: Unit = "word",
) -> list[str]:
    """Exact partial translations from a gold alignment (the synthetic counterpart of SeqPO-SiMT App. A.2).

    Target unit ``j`` *needs* ``1 + max`` of the source indices aligned to it (an unaligned target unit needs what
    the unit before it needs). After step ``t`` the policy has read ``r_t = min(t*m, n)`` source units and writes the
    longest target prefix all of whose units need at most ``r_t - extra_wait`` source units; at the last step it
    writes everything that is left.

    Args:
        source: Source sentence.
        reference: Its translation.
        alignment: ``(source_index, target_index)`` pairs over source and target units (0-based).
        chunk_size: Source units per chunk (the paper's ``m``).
        extra_wait: Source units by which every write decision is delayed (0 = write as early as the alignment
            allows). Larger values give a more conservative, higher-latency policy.
        source_unit: Unit of the source (chunking).
        target_unit: Unit of the target.

    Returns:
        Step outputs ``y_1..y_T``, ``T = ceil(n / m)``.

    Example:
        >>> gold_step_outputs("the big dog sees", "lo hundo grava vidas", [(0, 0), (2, 1), (1, 2), (3, 3)], 1)
        ['lo', '', ' hundo grava', ' vidas']
    """
    if extra_wait < 0:
        raise ValueError(f"extra_wait must be >= 0, got {extra_wait}")
    n = count_units(source, source_unit)
    target = split_units(reference, target_unit)
    needs = [0] * len(target)
    for src, tgt in alignment:
        if not (0 <= src < n and 0 <= tgt < len(target)):
            raise ValueError(f"alignment pair {(src, tgt)} out of range for {n} source and {len(target)} target units")
        needs[tgt] = max(needs[tgt], src + 1)
    running = 0  # cumulative max: a prefix is writable when its most demanding unit is
    for j, need in enumerate(needs):
        running = needs[j] = max(running, need)
    num_steps = len(split_into_chunks(source, chunk_size, source_unit))
    lengths, written = [], 0
    for step in range(1, num_steps + 1):
        budget = n if step == num_steps else min(step * chunk_size, n) - extra_wait
        while written < len(target) and needs[written] <= budget:
            written += 1
        lengths.append(written)
    return prefixes_to_step_outputs(lengths, target, target_unit)


def chat_messages(
    source: str,
    step_outputs: Sequence[str],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    source_unit: Unit = "word",
    system_prompt: str | None = None,
    end_of_translation: str = END_OF_TRANSLATION,
) -> list[dict[str, str]]:
    """One chat-format training conversation: user turn = chunk, assistant turn = ``y_t``, EOT after the last.

    Args:
        source: Source sentence.
        step_outputs: ``y_1..y_T``, one per chunk.
        chunk_size: Source units per chunk.
        src_lang: Source language name shown to the model.
        tgt_lang: Target language name.
        source_unit: Unit of the source.
        system_prompt: Optional system message.
        end_of_translation: Text appended to the last assistant turn (the tokenizer's end-of-translation token).

    Returns:
        The messages list for ``tokenizer.apply_chat_template``.
    """
    chunks = split_into_chunks(source, chunk_size, source_unit)
    if len(chunks) != len(step_outputs):
        raise ValueError(f"{len(step_outputs)} step outputs for {len(chunks)} chunks: give one output per chunk")
    outputs = list(step_outputs)
    outputs[-1] = outputs[-1] + end_of_translation
    return build_chat_messages(
        chunks, outputs, src_lang, tgt_lang, source_complete=True, system_prompt=system_prompt, add_next_turn=False
    )


def paper_rows(
    source: str,
    step_outputs: Sequence[str],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    source_unit: Unit = "word",
    eos_token: str = END_OF_TRANSLATION,
) -> list[dict[str, str]]:
    """Paper-format training rows (SeqPO-SiMT Fig. 2), one ``{"prompt", "completion"}`` per step.

    Args:
        source: Source sentence.
        step_outputs: ``y_1..y_T``, one per chunk.
        chunk_size: Source units per chunk.
        src_lang: Source language name.
        tgt_lang: Target language name.
        source_unit: Unit of the source.
        eos_token: Appended to every completion: the paper format's step end.

    Returns:
        ``T`` rows; the prompt of step ``t`` shows chunks ``1..t`` and ``y_1..y_{t-1}``.
    """
    chunks = split_into_chunks(source, chunk_size, source_unit)
    if len(chunks) != len(step_outputs):
        raise ValueError(f"{len(step_outputs)} step outputs for {len(chunks)} chunks: give one output per chunk")
    rows = []
    for step, output in enumerate(step_outputs, start=1):
        prompt = render_paper_prompt(
            "".join(chunks[:step]),
            "".join(step_outputs[: step - 1]),
            src_lang,
            tgt_lang,
            source_complete=step == len(chunks),
        )
        rows.append({"prompt": prompt, "completion": output + eos_token})
    return rows


def build_sft_dataset(
    rows: Iterable[Mapping[str, Any]],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    prompt_format: PromptFormat = "chat",
    source_unit: Unit = "word",
    system_prompt: str | None = None,
    end_of_translation: str = END_OF_TRANSLATION,
) -> Dataset:
    """Turn rows with ``source`` and ``step_outputs`` into a dataset TRL's ``SFTTrainer`` accepts.

    Args:
        rows: Mappings with ``source`` and ``step_outputs`` (from `gold_step_outputs` or the LLM aligner).
        chunk_size: Source units per chunk (must be the one the step outputs were built with).
        src_lang: Source language name shown to the model.
        tgt_lang: Target language name.
        prompt_format: ``"chat"`` (a ``messages`` column, one conversation per sentence) or ``"paper"``
            (``prompt``/``completion`` columns, one row per step).
        source_unit: Unit of the source.
        system_prompt: Optional system message (chat format).
        end_of_translation: The end-of-translation token: after the last chat turn, after every paper completion.

    Returns:
        A `datasets.Dataset`; chat rows also keep ``source`` and ``reference`` (when given).
    """
    from datasets import Dataset

    if prompt_format not in ("chat", "paper"):
        raise ValueError(f"prompt_format must be 'chat' or 'paper', got {prompt_format!r}")
    records: list[dict[str, Any]] = []
    for row in rows:
        source, outputs = row["source"], list(row["step_outputs"])
        if prompt_format == "chat":
            messages = chat_messages(
                source, outputs, chunk_size, src_lang, tgt_lang, source_unit, system_prompt, end_of_translation
            )
            records.append({"messages": messages, "source": source, "reference": row.get("reference", "")})
        else:
            records.extend(
                paper_rows(source, outputs, chunk_size, src_lang, tgt_lang, source_unit, end_of_translation)
            )
    if not records:
        raise ValueError("no rows to build an SFT dataset from")
    return Dataset.from_list(records)


def gold_sft_dataset(
    examples: Iterable[Any],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    prompt_format: PromptFormat = "chat",
    extra_wait: int | Sequence[int] = 0,
    seed: int = 0,
    source_unit: Unit = "word",
    target_unit: Unit = "word",
    system_prompt: str | None = None,
    end_of_translation: str = END_OF_TRANSLATION,
) -> Dataset:
    """Partial-translation SFT data from gold alignments, e.g. the synthetic pair's (App. A.2, exact variant).

    Args:
        examples: `SyntheticExample` objects or mappings (dataset rows) with
            ``source``, ``reference`` and ``alignment``.
        chunk_size: Source units per chunk (``m``).
        src_lang: Source language name.
        tgt_lang: Target language name.
        prompt_format: ``"chat"`` or ``"paper"`` (see `build_sft_dataset`).
        extra_wait: Source units every write decision is delayed by (see `gold_step_outputs`); a sequence
            draws one value per sentence from it (seeded), which mixes eager and late waiting in the SFT policy and
            keeps its timing stochastic for RL.
        seed: Seed for drawing ``extra_wait`` values.
        source_unit: Unit of the source.
        target_unit: Unit of the target.
        system_prompt: Optional system message (chat format).
        end_of_translation: The end-of-translation token.

    Returns:
        A `datasets.Dataset` (see `build_sft_dataset`).
    """
    waits = [extra_wait] if isinstance(extra_wait, int) else list(extra_wait)
    if not waits or any(not isinstance(w, int) or w < 0 for w in waits):
        raise ValueError(f"extra_wait must be an integer >= 0 or a non-empty list of them, got {extra_wait!r}")
    rng = random.Random(seed)
    rows = []
    for example in examples:
        get = example.get if isinstance(example, Mapping) else lambda key, ex=example: getattr(ex, key)
        source, reference, alignment = get("source"), get("reference"), get("alignment")
        wait = waits[0] if len(waits) == 1 else rng.choice(waits)
        outputs = gold_step_outputs(source, reference, alignment, chunk_size, wait, source_unit, target_unit)
        rows.append({"source": source, "reference": reference, "step_outputs": outputs})
    return build_sft_dataset(
        rows, chunk_size, src_lang, tgt_lang, prompt_format, source_unit, system_prompt, end_of_translation
    )


# ---------------------------------------------------------------------------------------------- LLM aligner
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
    """Extract the ``prefixes`` value from an answer that should be a JSON object (code fences tolerated)."""
    text = content.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("answer holds no JSON object")
    data = json.loads(text[start : end + 1])
    if not isinstance(data, dict) or "prefixes" not in data:
        raise ValueError("JSON answer has no 'prefixes' key")
    return data["prefixes"]


@dataclass
class AlignerStats:
    """Counts of one `LLMAligner.align_rows` run: ``aligned`` new, ``cached`` reused, ``invalid`` answers
    that broke a rule, ``failed`` requests (HTTP errors after the client's retries)."""

    aligned: int = 0
    cached: int = 0
    invalid: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class LLMAligner:
    """Partial translations from an LLM through any OpenAI-compatible endpoint (SeqPO-SiMT App. A.2).

    The LLM sees the source cut into the chunks the policy will read, and the full reference, and lists for every
    chunk the prefix of the reference that can be written by then (`ALIGNER_PROMPT`, our wording of the
    paper's idea of pairing semantically equivalent source and target chunks). Answers are validated
    (`validate_prefixes`); invalid ones are skipped and counted, never guessed.

    Args:
        model: Model name on the endpoint.
        base_url: Endpoint URL (``OPENAI_BASE_URL`` when ``None``).
        api_key: Key (``OPENAI_API_KEY``, else ``"EMPTY"`` for local servers).
        chunk_size: Source units per chunk.
        src_lang: Source language name.
        tgt_lang: Target language name.
        source_unit: Unit of the source.
        target_unit: Unit of the target.
        temperature: Sampling temperature of the aligner.
        max_concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries of the ``openai`` client (exponential back-off on 429/5xx/timeouts).
    """

    model: str
    base_url: str | None = None
    api_key: str | None = None
    chunk_size: int = 3
    src_lang: str = "English"
    tgt_lang: str = "Chinese"
    source_unit: Unit = "word"
    target_unit: Unit = "word"
    temperature: float = 0.0
    max_concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            from trl_seqpo.errors import MissingDependencyError

            raise MissingDependencyError("the LLM aligner needs the openai package: pip install openai") from exc
        self._client = openai.OpenAI(
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def messages(self, source: str, reference: str) -> list[dict[str, str]]:
        """The chat messages sent to the aligner for one sentence pair."""
        chunks = split_into_chunks(source, self.chunk_size, self.source_unit)
        numbered = "\n".join(f"{k}. {chunk.strip()}" for k, chunk in enumerate(chunks, start=1))
        user = ALIGNER_PROMPT.format(
            src_lang=self.src_lang,
            tgt_lang=self.tgt_lang,
            numbered_chunks=numbered,
            reference=reference.strip(),
            num_chunks=len(chunks),
        )
        return [{"role": "system", "content": ALIGNER_SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def align(self, source: str, reference: str) -> list[str]:
        """Ask the LLM for one sentence pair's partial translations.

        Returns:
            Step outputs ``y_1..y_T``.

        Raises:
            ValueError: The answer is not valid JSON or breaks a rule of `validate_prefixes`.
            openai.OpenAIError: The request failed after the client's retries.
        """
        response = self._client.chat.completions.create(
            model=self.model, messages=self.messages(source, reference), temperature=self.temperature
        )
        content = response.choices[0].message.content or ""
        num_chunks = len(split_into_chunks(source, self.chunk_size, self.source_unit))
        lengths = validate_prefixes(parse_aligner_answer(content), reference, num_chunks, self.target_unit)
        return prefixes_to_step_outputs(lengths, split_units(reference, self.target_unit), self.target_unit)

    def align_rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        cache_path: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> tuple[list[dict[str, Any]], AlignerStats]:
        """Align many ``source``/``reference`` rows concurrently, resumably.

        Every answer (valid or not) is appended to ``cache_path`` (JSON lines) as soon as it arrives; a rerun with
        the same cache reuses those lines and asks only for the rest, so a killed job loses nothing and never pays
        twice. Failed requests are not cached (a rerun retries them).

        Args:
            rows: Mappings with ``source`` and ``reference``.
            cache_path: JSON-lines file for results; ``None`` keeps nothing on disk.
            progress: Show a tqdm progress bar.

        Returns:
            ``(aligned_rows, stats)``: rows with ``source``, ``reference`` and ``step_outputs`` in input order
            (skipped pairs left out), ready for `build_sft_dataset`.
        """
        from openai import OpenAIError
        from tqdm.auto import tqdm

        rows = [{"source": r["source"], "reference": r["reference"]} for r in rows]
        stats = AlignerStats()
        cache: dict[str, dict[str, Any]] = {}
        if cache_path is not None and Path(cache_path).exists():
            for line in Path(cache_path).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    cache[entry["key"]] = entry
        lock = threading.Lock()
        handle = open(cache_path, "a", encoding="utf-8") if cache_path is not None else None  # noqa: SIM115
        keys = [self._key(row) for row in rows]
        results: dict[int, list[str] | None] = {}

        def work(index: int) -> None:
            row = rows[index]
            try:
                outputs: list[str] | None = self.align(row["source"], row["reference"])
                entry = {"key": keys[index], "step_outputs": outputs}
                with lock:
                    stats.aligned += 1
            except OpenAIError as exc:
                with lock:
                    stats.failed += 1
                    stats.errors.append(f"row {index}: request failed: {exc}")
                results[index] = None
                return
            except ValueError as exc:  # bad JSON or a broken rule
                outputs, entry = None, {"key": keys[index], "error": str(exc)}
                with lock:
                    stats.invalid += 1
                    stats.errors.append(f"row {index}: invalid answer: {exc}")
            results[index] = outputs
            if handle is not None:
                with lock:
                    handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    handle.flush()

        todo = []
        for index, key in enumerate(keys):
            if key in cache:
                stats.cached += 1
                results[index] = cache[key].get("step_outputs")
            else:
                todo.append(index)
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.max_concurrency)) as pool:
                for _ in tqdm(pool.map(work, todo), total=len(todo), disable=not progress, desc="aligning"):
                    pass
        finally:
            if handle is not None:
                handle.close()
        aligned = [{**rows[i], "step_outputs": results[i]} for i in range(len(rows)) if results.get(i) is not None]
        return aligned, stats

    def _key(self, row: Mapping[str, Any]) -> str:
        return json.dumps(
            [self.model, self.chunk_size, self.source_unit, self.target_unit, row["source"], row["reference"]],
            ensure_ascii=False,
        )
