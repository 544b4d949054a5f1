"""The one numbered-line decoder: ALPO sampling, subtitle evaluation and ``subtitles translate`` (ALPO Alg. 1).

Every path that asks a model for numbered lines goes through `LineDecoder`, so they all see the same prompt ids
for the same line:

- prompt boundary: the prompt of line ``i`` is the document prompt and the numbered lines ``< i``, ending at the
  newline after line ``i - 1`` (`line_prompt`); the model writes the marker ``"i."`` itself. This is where the
  training pairs and the SFT format cut it, and a newline is a token boundary for any byte-level BPE, whereas a
  prompt ending after ``"12."`` is not a token prefix of ``"12.text"`` under a Qwen2-style pre-tokenizer;
- BOS rule: `encode_prompt` puts before the text exactly the special tokens the tokenizer puts there by itself
  (Llama-3's and GLM-4's BOS, nothing for Qwen2), which is how TRL's SFT and DPO trainers tokenize a plain-text
  prompt (``tokenizer(text=prompt)``); nothing is appended after it;
- stop: a row stops at the first token that decodes to a newline (`newline_token_ids`) or at an end id; the text
  is read back line by line with `strip_line_marker`;
- lockstep: the rows of every document advance together, one backend call per step.

`LineDecoder.write` is the sampling loop (ALPO's ``k`` rows per unit, several lines per segment unit);
`LineDecoder.complete` fills the missing lines of documents greedily, in order (evaluation's line mode, the
regeneration of `subtitles translate`); `LineDecoder.answer` is the whole-document answer (evaluation's document
mode, the first pass of `subtitles translate`), with `is_aligned` telling whether its numbering can be trusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trl_seqpo.rollout.engine import GenerationBackend, GenerationOutput, GenerationParams
from trl_seqpo.subtitles.documents import (
    Document,
    ParsedDocument,
    parse_numbered_output,
    render_document_prompt,
    render_numbered_lines,
)

__all__ = [
    "DocumentAnswer",
    "LineDecoder",
    "LineRow",
    "any_rank",
    "encode_prompt",
    "is_aligned",
    "line_prompt",
    "load_translator",
    "newline_token_ids",
    "prefix_lines",
    "strip_line_marker",
]

_MARKER = re.compile(r"^\s*(\d{1,5})\s*[.)．、:：]\s*(.*)$")
# parse repairs that mean the numbering itself went wrong (lines merged and renumbered, split, repeated)
_MISALIGNED = ("appears more than once", "comes after line", "ignored a line numbered", "joined unnumbered text")


def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Every non-special token id whose text contains a newline (``"\\n"``, ``".\\n"``, ``"\\n\\n"``, ...).

    Byte-level BPE vocabularies spell the newline byte ``"Ċ"``, SentencePiece ones ``"<0x0A>"``; candidates are
    filtered on the vocabulary string and confirmed by decoding, so one pass over the vocabulary is enough.

    Args:
        tokenizer: A Hugging Face tokenizer (``get_vocab``, ``decode``).

    Returns:
        The sorted ids.

    Raises:
        ValueError: No token decodes to text with a newline.
    """
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    found = []
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in special or not ("\n" in token or "Ċ" in token or "0x0A" in token):
            continue
        if "\n" in tokenizer.decode([token_id]):
            found.append(int(token_id))
    if not found:
        raise ValueError("the tokenizer has no token that decodes to a newline; numbered lines end at a newline")
    return tuple(sorted(found))


def line_prompt(document_prompt: str, prefix: Sequence[str]) -> str:
    """The prompt of the line after ``prefix``: the document prompt and the numbered prefix, ending at a newline.

    Examples:
        >>> line_prompt("Translation:\\n", ["Hi.", "Bye."])
        'Translation:\\n1.Hi.\\n2.Bye.\\n'
    """
    return document_prompt + render_numbered_lines(prefix)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt: the special tokens the tokenizer puts before ``text`` (a BOS), then ``text``.

    TRL's SFT and DPO trainers tokenize a plain-text prompt with ``tokenizer(text=prompt)``, which adds the
    tokenizer's BOS when it has that convention (Llama-3, GLM-4) and nothing otherwise (Qwen2). Generation prompts
    must start the same way. A special token the tokenizer appends (an EOS) is left out: the prompt continues.

    Examples:
        >>> encode_prompt(tokenizer, "Translation:\\n")  # doctest: +SKIP
        [128000, 28573, 512]
    """
    plain = list(tokenizer.encode(text, add_special_tokens=False))
    full = list(tokenizer.encode(text, add_special_tokens=True))
    for head in range(len(full) - len(plain) + 1):
        if full[head : head + len(plain)] == plain:
            return full[:head] + plain
    return plain


def strip_line_marker(text: str, number: int) -> str | None:
    """Line ``number`` as the model wrote it, without its marker and with spaces normalised.

    A line without a marker is taken as it is; one numbered for another line is ``None`` (unreadable), as is an
    empty one.

    Examples:
        >>> strip_line_marker("12. Hello  there", 12), strip_line_marker("Hi", 3), strip_line_marker("4. x", 3)
        ('Hello there', 'Hi', None)
    """
    match = _MARKER.match(text)
    if match is not None:
        if int(match.group(1)) != number:
            return None
        text = match.group(2)
    return " ".join(text.split()) or None


def is_aligned(parsed: ParsedDocument, stopped: bool) -> bool:
    """Whether a whole-document answer's line ``i`` can be taken as the translation of source line ``i``.

    Not when the parser had to drop a repeated or out-of-range number, reorder or join unnumbered text, nor when
    lines are missing at the end of an answer the model ended itself (``stopped``): that is a model that merged two
    lines and renumbered the rest, so every line after the merge holds the next line's text. Lines missing inside
    the answer, or at the end of an answer the token budget cut, leave the others where they are.

    Examples:
        >>> from trl_seqpo.subtitles.documents import parse_numbered_output
        >>> is_aligned(parse_numbered_output("1.a b\\n2.c\\n", 3), stopped=True)
        False
        >>> is_aligned(parse_numbered_output("1.a\\n3.c\\n", 3), stopped=True)
        True
    """
    if any(marker in problem for problem in parsed.problems for marker in _MISALIGNED):
        return False
    return not (stopped and parsed.lines and parsed.lines[-1] is None)


def prefix_lines(lines: Sequence[str | None], source_lines: Sequence[str]) -> list[str]:
    """The prefix as prompts show it: a line the model gave nothing readable for shows its source line, so the prompt
    stays in the numbered format (``"3.text"``) instead of holding a bare ``"3."`` (ALPO's sampler does the same).

    Examples:
        >>> prefix_lines(["Hallo", "", None], ["Hi", "So", "Go"])
        ['Hallo', 'So', 'Go']
    """
    return [line if line else source for line, source in zip(lines, source_lines)]


def any_rank(backend: object, flag: bool) -> bool:
    """`flag` or-ed over the processes when the backend keeps them in lockstep, else `flag`."""
    reduce = getattr(backend, "any_rank", None)
    return reduce(flag) if reduce is not None else flag


@dataclass
class LineRow:
    """One row writing ``lines`` numbered lines after its prompt."""

    prompt_ids: list[int]
    lines: int = 1
    generated: list[int] = field(default_factory=list)
    live: bool = True
    unterminated: bool = False


@dataclass
class DocumentAnswer:
    """A whole-document answer: the raw text, its parse, and whether the numbering can be trusted."""

    text: str
    parsed: ParsedDocument
    truncated: bool
    aligned: bool


class LineDecoder:
    """Numbered lines from a `GenerationBackend`, with one prompt boundary, one BOS rule and one newline scan.

    Args:
        backend: ``HFGenerationBackend`` or ``VLLMGenerationBackend`` (anything with ``generate``).
        tokenizer: The model's tokenizer.
        stop_token_ids: Extra ids that end a row besides the newline ids and the tokenizer's EOS (the ids of the
            checkpoint's ``generation_config.eos_token_id``).

    Examples:
        >>> decoder = LineDecoder(HFGenerationBackend(model, tok), tok)  # doctest: +SKIP
        >>> decoder.complete([document], "en", "zh", max_new_tokens=64)  # doctest: +SKIP
        ([['你好。', '再见。']], [0])
    """

    def __init__(self, backend: GenerationBackend, tokenizer: Any, stop_token_ids: Sequence[int] = ()) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.newline_ids = newline_token_ids(tokenizer)
        eos = getattr(tokenizer, "eos_token_id", None)
        self.end_ids = tuple(sorted({*(int(i) for i in stop_token_ids), *([] if eos is None else [int(eos)])}))
        self.stop_ids = tuple(sorted({*self.newline_ids, *self.end_ids}))
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        """`encode_prompt` with this decoder's tokenizer."""
        return encode_prompt(self.tokenizer, text)

    def line_prompt_ids(self, document_prompt: str, prefix: Sequence[str]) -> list[int]:
        """The prompt ids of the line after ``prefix``."""
        return self.encode(line_prompt(document_prompt, prefix))

    def write(self, rows: Sequence[LineRow], params: Callable[[int], GenerationParams]) -> None:
        """Advance ``rows`` in lockstep until each has written its lines, ended, or spent a call's token budget.

        Args:
            rows: The rows (updated in place).
            params: The `GenerationParams` of step ``0, 1, ...`` (a segment row makes one step per line).
        """
        step = 0
        while True:
            live = [row for row in rows if row.live]
            if not any_rank(self.backend, bool(live)):
                break
            outputs = self.backend.generate([row.prompt_ids + row.generated for row in live], params(step))
            self.calls += 1
            if len(outputs) != len(live):
                raise RuntimeError(f"the backend returned {len(outputs)} outputs for {len(live)} prompts")
            for row, output in zip(live, outputs):
                self._advance(row, output)
            step += 1

    def _advance(self, row: LineRow, output: GenerationOutput) -> None:
        row.generated.extend(output.token_ids)
        last = output.token_ids[-1] if output.token_ids else None
        if output.finish_reason != "stop" or last not in self.newline_ids:
            row.live = False
            row.unterminated = output.finish_reason != "stop"  # the budget ran out inside a line; EOS is fine
            return
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        row.live = text.count("\n") < row.lines  # a blank line counts as a line (and fails to read back)

    def read(self, row: LineRow, first_number: int) -> list[str] | None:
        """The row's lines without their markers, or ``None`` when one is missing, empty, misnumbered or cut."""
        if row.unterminated:
            return None
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        kept = text.split("\n")[: row.lines]
        lines = [strip_line_marker(line, first_number + i) for i, line in enumerate(kept)]
        if len(lines) < row.lines or not all(lines):
            return None
        return lines  # type: ignore[return-value]

    def complete(
        self,
        documents: Sequence[Document],
        src_lang: str,
        tgt_lang: str,
        max_new_tokens: int,
        lines: Sequence[Sequence[str | None]] | None = None,
    ) -> tuple[list[list[str]], list[int]]:
        """Write every missing line (``None``) of each document greedily, in order, the documents in lockstep.

        Line ``i`` is conditioned on the document and lines ``< i`` as they stand (the model's own lines, or the
        lines of an earlier answer), exactly as ALPO's sampler conditions a unit on its prefix.

        Args:
            documents: The documents.
            src_lang: Source language code or name of the prompt.
            tgt_lang: Target language code or name of the prompt.
            max_new_tokens: Token budget of one line.
            lines: Per document, the lines already there (``None`` for the ones to write); ``None``: write all.

        Returns:
            ``(lines, truncated)``: per document every line (``""`` where the model gave nothing readable), and
            how many of its lines the token budget cut.
        """
        filled = [
            [None] * len(document.source_lines) if lines is None else list(lines[d])
            for d, document in enumerate(documents)
        ]
        prompts = [render_document_prompt(document, src_lang, tgt_lang) for document in documents]
        truncated = [0] * len(documents)
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0, stop_token_ids=self.stop_ids)
        while True:
            todo = [(d, doc.index(None)) for d, doc in enumerate(filled) if None in doc]
            if not todo:
                break
            rows = [
                LineRow(self.line_prompt_ids(prompts[d], prefix_lines(filled[d][:i], documents[d].source_lines)))
                for d, i in todo
            ]
            self.write(rows, lambda step: params)
            for (d, i), row in zip(todo, rows):
                truncated[d] += row.unterminated
                got = self.read(row, i + 1)
                filled[d][i] = got[0] if got else ""
        return filled, truncated  # type: ignore[return-value]

    def answer(
        self, documents: Sequence[Document], src_lang: str, tgt_lang: str, max_new_tokens_per_line: int
    ) -> list[DocumentAnswer]:
        """Each document's whole numbered answer in one greedy generation (ALPO App. F.1), parsed and checked."""
        if not documents:
            return []
        budget = max_new_tokens_per_line * max(len(document.source_lines) for document in documents)
        params = GenerationParams(max_new_tokens=budget, temperature=0, stop_token_ids=self.end_ids)
        prompts = [self.encode(render_document_prompt(document, src_lang, tgt_lang)) for document in documents]
        outputs = self.backend.generate(prompts, params)
        self.calls += 1
        answers = []
        for document, output in zip(documents, outputs):
            text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            parsed = parse_numbered_output(text, len(document.source_lines))
            stopped = output.finish_reason != "length"
            answers.append(DocumentAnswer(text, parsed, not stopped, is_aligned(parsed, stopped)))
        return answers


def load_translator(
    model: str,
    src_lang: str,
    tgt_lang: str,
    *,
    backend: str = "hf",
    device: str | None = None,
    dtype: str = "auto",
    max_new_tokens_per_line: int = 64,
) -> tuple[Callable[[list[Document]], list[list[str | None]]], Callable[..., list[list[str]]]]:
    """Load ``model`` and return ``(translate, regenerate)`` for `trl_seqpo.subtitles.translate.translate_file`.

    ``translate`` answers whole documents (`LineDecoder.answer`) and returns ``None`` for every line the answer
    lost, and for all lines of an answer whose numbering is not aligned with the source (`is_aligned`);
    ``regenerate`` writes those lines one by one (`LineDecoder.complete`), so a translated file, an evaluation and
    ALPO's sampling see the same prompts.

    Raises:
        UserInputError: The model cannot be loaded or the backend is unknown.
        MissingDependencyError: ``backend="vllm"`` without vLLM.
    """
    import logging

    from trl_seqpo.rollout.loading import load_backend

    loaded = load_backend(model, backend, device=device, dtype=dtype)
    decoder = LineDecoder(loaded.backend, loaded.tokenizer, tuple(loaded.stop_token_ids))
    logger = logging.getLogger(__name__)

    def translate(documents: list[Document]) -> list[list[str | None]]:
        out = []
        for document, answer in zip(documents, decoder.answer(documents, src_lang, tgt_lang, max_new_tokens_per_line)):
            if not answer.aligned:
                logger.warning(
                    "%s: the answer's numbering does not match the %d source lines (%s); generating its lines one "
                    "by one", document.doc_id, len(document.source_lines), "; ".join(answer.parsed.problems)[:200],
                )  # fmt: skip
                out.append([None] * len(document.source_lines))
            else:
                out.append(list(answer.parsed.lines))
        return out

    def regenerate(documents: list[Document], lines: list[list[str | None]]) -> list[list[str]]:
        return decoder.complete(documents, src_lang, tgt_lang, max_new_tokens_per_line, lines)[0]

    return translate, regenerate
