"""Partial-translation SFT warm-up data for simultaneous translation (SeqPO-SiMT Sec. 3.1 and App. A.2).

The paper warms its policy up with supervised fine-tuning on *partial translation* pairs: each full sentence pair
is aligned, and for each source prefix the model learns which prefix of the translation can already be written.
This module builds that data in two ways:

- **exactly, from a gold word alignment** (`gold_step_outputs`), for the synthetic language pair of
  `trl_seqpo.synthetic.language_pair`: at step ``t`` the policy has read ``min(t*m, n)`` source units and writes the
  longest target prefix whose aligned source units have all been read. ``extra_wait`` delays every decision by that
  many source units, giving a *conservative* policy that waits later than it needs to, so that RL has latency to
  cut (``DESIGN.md``, "Demo calibration");
- **with an LLM aligner** (`trl_seqpo.seqpo.aligner.LLMAligner`, command ``trl-seqpo simt align``) through any
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

Units follow the languages unless given (`trl_seqpo.languages.default_unit`): a Chinese, Japanese or Thai source
is chunked by characters and a target in those languages is written character by character, so En->Zh and Zh->En
both work with the defaults (``source_unit``/``target_unit`` override them).

Step outputs follow the rollout's spacing: the first non-empty output has no leading space and each later non-empty
output starts with one space, so ``"".join(outputs)`` is the translation and the paper-format prompt of step
``t + 1`` is exactly the prompt of step ``t`` plus its output.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from trl_seqpo.languages import default_unit
from trl_seqpo.simt.chunking import Unit, count_units, split_into_chunks, split_units
from trl_seqpo.simt.templates import build_chat_messages, render_paper_prompt

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

PromptFormat = Literal["chat", "paper"]
END_OF_TRANSLATION = "<|endoftext|>"


def resolve_units(
    src_lang: str, tgt_lang: str, source_unit: Unit | None = None, target_unit: Unit | None = None
) -> tuple[Unit, Unit]:
    """``(source_unit, target_unit)``: the given ones, else each language's default (characters for zh/ja/th).

    Examples:
        >>> resolve_units("Chinese", "English"), resolve_units("en", "zh", target_unit="word")
        (('char', 'word'), ('word', 'word'))
    """
    return source_unit or default_unit(src_lang), target_unit or default_unit(tgt_lang)


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

    Examples:
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


def sentence_records(
    source: str,
    step_outputs: Sequence[str],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    prompt_format: PromptFormat = "chat",
    *,
    reference: str = "",
    source_unit: Unit | None = None,
    system_prompt: str | None = None,
    end_of_translation: str = END_OF_TRANSLATION,
) -> list[dict[str, Any]]:
    """The SFT rows of one sentence, in either prompt format (SeqPO-SiMT Sec. 2.1, Fig. 2).

    Chat format: one row, ``{"messages", "source", "reference"}``, a conversation whose user turn ``t`` is chunk
    ``t`` and whose assistant turn ``t`` is ``y_t``; the end-of-translation token closes the last assistant turn.
    Paper format: ``T`` rows ``{"prompt", "completion"}``; the prompt of step ``t`` shows chunks ``1..t`` and
    ``y_1..y_{t-1}``, and every completion ends with the end-of-translation token (the paper format's step end).

    Args:
        source: Source sentence.
        step_outputs: ``y_1..y_T``, one per chunk.
        chunk_size: Source units per chunk.
        src_lang: Source language name shown to the model.
        tgt_lang: Target language name.
        prompt_format: ``"chat"`` or ``"paper"``.
        reference: Kept in the chat row (the SeqPO reward's ``reference`` column).
        source_unit: Unit of the source; ``None`` picks from ``src_lang``.
        system_prompt: Optional system message (chat format).
        end_of_translation: The end-of-translation token.

    Returns:
        The rows, ready for `datasets.Dataset.from_list`.
    """
    unit = source_unit or default_unit(src_lang)
    chunks = split_into_chunks(source, chunk_size, unit)
    if len(chunks) != len(step_outputs):
        raise ValueError(
            f"{len(step_outputs)} step outputs for {len(chunks)} chunks of {chunk_size} {unit}s of "
            f"{source!r}: give one output per chunk (were they built with another chunk_size or source_unit?)"
        )
    if prompt_format == "chat":
        outputs = [*step_outputs[:-1], step_outputs[-1] + end_of_translation]
        messages = build_chat_messages(
            chunks, outputs, src_lang, tgt_lang, source_complete=True, system_prompt=system_prompt, add_next_turn=False
        )
        return [{"messages": messages, "source": source, "reference": reference}]
    if prompt_format != "paper":
        raise ValueError(f"prompt_format must be 'chat' or 'paper', got {prompt_format!r}")
    return [
        {
            "prompt": render_paper_prompt(
                "".join(chunks[:step]),
                "".join(step_outputs[: step - 1]),
                src_lang,
                tgt_lang,
                source_complete=step == len(chunks),
            ),
            "completion": output + end_of_translation,
        }
        for step, output in enumerate(step_outputs, start=1)
    ]


def build_sft_dataset(
    rows: Iterable[Mapping[str, Any]],
    chunk_size: int,
    src_lang: str,
    tgt_lang: str,
    prompt_format: PromptFormat = "chat",
    source_unit: Unit | None = None,
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
        source_unit: Unit of the source (must be the one the step outputs were built with); ``None`` picks from
            ``src_lang`` (characters for zh/ja/th).
        system_prompt: Optional system message (chat format).
        end_of_translation: The end-of-translation token: after the last chat turn, after every paper completion.

    Returns:
        A `datasets.Dataset`; chat rows also keep ``source`` and ``reference`` (when given).
    """
    from datasets import Dataset

    records: list[dict[str, Any]] = []
    for row in rows:
        records.extend(
            sentence_records(
                row["source"], list(row["step_outputs"]), chunk_size, src_lang, tgt_lang, prompt_format,
                reference=row.get("reference", ""), source_unit=source_unit, system_prompt=system_prompt,
                end_of_translation=end_of_translation,
            )
        )  # fmt: skip
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
    source_unit: Unit | None = None,
    target_unit: Unit | None = None,
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
        source_unit: Unit of the source (alignment indices count it); ``None`` picks from ``src_lang``.
        target_unit: Unit of the target; ``None`` picks from ``tgt_lang``.
        system_prompt: Optional system message (chat format).
        end_of_translation: The end-of-translation token.

    Returns:
        A `datasets.Dataset` (see `build_sft_dataset`).
    """
    waits = [extra_wait] if isinstance(extra_wait, int) else list(extra_wait)
    if not waits or any(not isinstance(w, int) or w < 0 for w in waits):
        raise ValueError(f"extra_wait must be an integer >= 0 or a non-empty list of them, got {extra_wait!r}")
    source_unit, target_unit = resolve_units(src_lang, tgt_lang, source_unit, target_unit)
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
