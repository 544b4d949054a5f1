"""Prompt formats for simultaneous translation: the SeqPO paper's streaming template and a multi-turn chat format.

``paper`` (SeqPO-SiMT Fig. 2): every step re-renders one plain-text prompt holding the whole source read so far and
the translation written so far; the model continues the last line.

``chat``: one conversation per trajectory. The first user turn holds the instruction and chunk 1, each assistant
turn holds that step's output ``y_t`` (possibly empty: the model waited), each later user turn holds the next chunk.
Rendering goes through the tokenizer's own chat template (`render_chat`).

The end of the source is explicit in both formats: the last chunk is followed by `END_OF_SOURCE`, and in the
chat format every step after the last chunk is a user turn holding only `CONTINUE_MARKER`. The paper does not
say how its model learns that no more source is coming; these markers are our choice (see ``docs/latency.md``).
All fixed wording is short and exposed as constants (and `template_strings`) so that a tiny word-level
tokenizer can put every word of it in its vocabulary.
"""

from __future__ import annotations

from typing import Any, Literal

PromptFormat = Literal["chat", "paper"]

PROMPT_FORMATS: tuple[str, ...] = ("chat", "paper")

PAPER_INSTRUCTION = "Translate from {src_lang} to {tgt_lang} in a streaming style:"
"""First line of the paper's template (Fig. 2), verbatim."""

CHAT_INSTRUCTION = "Translate from {src_lang} to {tgt_lang} in a streaming style."
"""Instruction that opens the first user turn of the chat format."""

END_OF_SOURCE = "[END]"
"""Appended (after one space) to the last source chunk once the whole source has been read."""

CONTINUE_MARKER = "[CONTINUE]"
"""Sole content of a user turn for a step after the last chunk (no new source; finish the translation)."""


def _check_langs(src_lang: str, tgt_lang: str) -> None:
    for name, value in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            raise ValueError(f"{name} must be a non-empty one-line language name such as 'English', got {value!r}")


def render_paper_prompt(
    source_prefix: str,
    translation_prefix: str,
    src_lang: str,
    tgt_lang: str,
    source_complete: bool = False,
) -> str:
    """Render one step of the paper's streaming template (SeqPO-SiMT Fig. 2).

    The result is exactly::

        Translate from {src_lang} to {tgt_lang} in a streaming style:
        {src_lang}: {source_prefix}
        {tgt_lang}: {translation_prefix}

    and the model's output for this step is the continuation of the last line. ``source_prefix`` is stripped of
    surrounding whitespace (chunks keep their trailing space); ``translation_prefix`` is used verbatim so that
    prompt + output of step ``t`` is exactly the prefix of step ``t + 1`` (it is the concatenation of the step
    outputs). Deviation from the paper: when ``source_complete`` is true, `` [END]`` (`END_OF_SOURCE`) follows
    the source, so the model can tell that no more source will come.

    Args:
        source_prefix: Source chunks ``x_1..x_t`` read so far, concatenated.
        translation_prefix: Translation ``y_1..y_{t-1}`` written so far, concatenated.
        src_lang: Source language name as shown to the model (``"English"``).
        tgt_lang: Target language name (``"Chinese"``).
        source_complete: Whether ``source_prefix`` is the whole source.

    Returns:
        The prompt text; generation continues right after it.

    Examples:
        >>> print(render_paper_prompt("Despite the pouring ", "尽管", "English", "Chinese"))
        Translate from English to Chinese in a streaming style:
        English: Despite the pouring
        Chinese: 尽管
    """
    _check_langs(src_lang, tgt_lang)
    source = source_prefix.strip()
    if source_complete:
        source = f"{source} {END_OF_SOURCE}" if source else END_OF_SOURCE
    instruction = PAPER_INSTRUCTION.format(src_lang=src_lang, tgt_lang=tgt_lang)
    return f"{instruction}\n{src_lang}: {source}\n{tgt_lang}: {translation_prefix}"


def build_chat_messages(
    chunks_so_far: list[str],
    outputs_so_far: list[str],
    src_lang: str,
    tgt_lang: str,
    source_complete: bool,
    system_prompt: str | None = None,
    *,
    add_next_turn: bool = True,
) -> list[dict[str, str]]:
    """Build the chat-format conversation of one SiMT trajectory (SeqPO-SiMT Sec. 2.2, Eq. 1).

    User turn ``t`` carries chunk ``x_t`` (stripped of surrounding whitespace; the first one is preceded by the
    instruction and a newline); assistant turn ``t`` carries ``y_t`` verbatim (``""`` = the model waited). When the
    source is complete, the user turn of the last chunk ends with `` [END]`` and each step after it is a user turn
    holding only ``[CONTINUE]``.

    Args:
        chunks_so_far: Source chunks read so far, ``x_1..x_t`` (at least one).
        outputs_so_far: Step outputs written so far, ``y_1..y_s``.
        src_lang: Source language name as shown to the model.
        tgt_lang: Target language name.
        source_complete: Whether ``chunks_so_far`` holds the whole source.
        system_prompt: Optional system message put first.
        add_next_turn: If true (a prompt for step ``s + 1``), the conversation ends with user turn ``s + 1``; this
            needs ``t == s + 1``, or ``t <= s`` with a complete source (a ``[CONTINUE]`` step). If false (a whole
            trajectory, e.g. for training), it ends with assistant turn ``s``; this needs ``t == s``, or ``t < s``
            with a complete source.

    Returns:
        ``[{"role": ..., "content": ...}, ...]`` for ``tokenizer.apply_chat_template``.

    Examples:
        >>> for message in build_chat_messages(["the rain ", "fell"], ["la"], "English", "French", False):
        ...     print(message)
        {'role': 'user', 'content': 'Translate from English to French in a streaming style.\\nthe rain'}
        {'role': 'assistant', 'content': 'la'}
        {'role': 'user', 'content': 'fell'}
    """
    _check_langs(src_lang, tgt_lang)
    num_read, num_written = len(chunks_so_far), len(outputs_so_far)
    if num_read == 0:
        raise ValueError("chunks_so_far is empty: the first step needs the first source chunk")
    num_user_turns = num_written + 1 if add_next_turn else num_written
    if num_read > num_user_turns:
        raise ValueError(
            f"{num_read} chunks but only {num_user_turns} user turns ({num_written} outputs, "
            f"add_next_turn={add_next_turn}): each step reads exactly one new chunk"
        )
    if num_read < num_user_turns and not source_complete:
        raise ValueError(
            f"{num_user_turns} user turns but only {num_read} chunks: steps after the last chunk need "
            "source_complete=True"
        )

    messages: list[dict[str, str]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    for turn in range(num_user_turns):
        if turn < num_read:
            content = chunks_so_far[turn].strip()
            if source_complete and turn == num_read - 1:
                content = f"{content} {END_OF_SOURCE}" if content else END_OF_SOURCE
        else:
            content = CONTINUE_MARKER
        if turn == 0:
            content = CHAT_INSTRUCTION.format(src_lang=src_lang, tgt_lang=tgt_lang) + "\n" + content
        messages.append({"role": "user", "content": content})
        if turn < num_written:
            messages.append({"role": "assistant", "content": outputs_so_far[turn]})
    return messages


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Render chat messages to text with the tokenizer's chat template.

    Args:
        tokenizer: A Hugging Face tokenizer (or processor) with a ``chat_template``.
        messages: Output of `build_chat_messages`.
        add_generation_prompt: Append the template's assistant header so the model writes the next ``y_t``.

    Returns:
        The rendered text (not tokenized).

    Raises:
        ValueError: The tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
        raise ValueError(
            f"tokenizer {name!r} has no chat template: use an instruct/chat model's tokenizer, set "
            "tokenizer.chat_template, or use prompt_format='paper'"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def template_strings(src_lang: str, tgt_lang: str) -> list[str]:
    """Every fixed text the two formats can insert for a language pair, e.g. to build a tiny tokenizer's vocabulary.

    Args:
        src_lang: Source language name.
        tgt_lang: Target language name.

    Returns:
        The rendered instructions, the language labels (with their colon) and the two markers.
    """
    return [
        PAPER_INSTRUCTION.format(src_lang=src_lang, tgt_lang=tgt_lang),
        CHAT_INSTRUCTION.format(src_lang=src_lang, tgt_lang=tgt_lang),
        f"{src_lang}:",
        f"{tgt_lang}:",
        END_OF_SOURCE,
        CONTINUE_MARKER,
    ]
