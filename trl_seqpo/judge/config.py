"""Settings of the LLM judge client (`trl_seqpo.judge.client.LLMJudge`), with its secrets kept out of sight."""

from __future__ import annotations

import math
import os
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trl_seqpo.errors import check_at_least
from trl_seqpo.judge.prompts import ASPECTS
from trl_seqpo.secret import Secret, mask_credentials, resolve_api_key

__all__ = ["JudgeConfig", "judge_option", "redact_url"]


def _help(text: str, choices: tuple[str, ...] | None = None, **extra: Any) -> Any:
    metadata = {"help": text} if choices is None else {"help": text, "choices": choices}
    return field(metadata=metadata, **extra)


def judge_option(name: str) -> str:
    """The option of `JudgeConfig` field ``name`` in a command or run record: ``judge_<name>``, except
    ``send_seed``, which has always been ``judge_seed`` (``--judge-seed`` / ``--no-judge-seed``).

    Examples:
        >>> judge_option("num_shuffles"), judge_option("send_seed")
        ('judge_num_shuffles', 'judge_seed')
    """
    return "judge_seed" if name == "send_seed" else f"judge_{name}"


def redact_url(url: str | None) -> str:
    """``url`` without the ``user:password@`` part and without query values (safe to print or log).

    Examples:
        >>> redact_url("http://bob:secret@host:8000/v1?key=abc")
        'http://***@host:8000/v1?key=***'
    """
    if not url:
        return "the default OpenAI endpoint"
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{name}=***" for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass
class JudgeConfig:
    """Settings of `LLMJudge`.

    Parameters:
        > Endpoint

        base_url (`str` or `None`): OpenAI-compatible base URL, e.g. ``http://localhost:8000/v1`` for ``vllm serve``.
            Defaults to ``$TRL_SEQPO_JUDGE_BASE_URL``, then ``$OPENAI_BASE_URL``, then OpenAI's own API.
        model (`str`): Model name sent with each request (paper: Qwen3-14B).
        api_key (`str` or `None`): The key for this endpoint, held as a `trl_seqpo.secret.Secret` (masked in ``repr``,
            pickles and `to_dict`).
        api_key_env (`str` or `None`): Name of an environment variable holding the key for this endpoint.
        api_key_file (`str` or `None`): File holding the key for this endpoint (first line).
            Without any of the three, ``$OPENAI_API_KEY`` is sent only when the endpoint is OpenAI's own API;
            every other endpoint gets ``"EMPTY"`` (what a local vLLM accepts).
        timeout (`float`): Seconds before one HTTP request counts as timed out.
        max_tokens (`int` or `None`): Answer length limit (leave room for ``<think>`` blocks of reasoning models).
        extra_body (`dict` or `None`): Extra JSON fields of each request, e.g.
            ``{"chat_template_kwargs": {"enable_thinking": False}}`` for Qwen3 on vLLM.
        send_seed (`bool`): Send the vote's seed as ``seed`` (reproducible sampling where the server supports it).

        > Scoring (ALPO Sec. 3.2, App. F.2; authors' code)

        aspect (`str`): ``"vividness"`` (the ALPO reward), ``"accuracy"`` or ``"naturalness"`` (Sec. 4.2).
        source_language, target_language (`str` or `None`): Language names for the prompt, e.g. ``"English"``.
        temperature (`float`): Sampling temperature of the judge (authors: 0.3).
        num_shuffles (`int`): Votes per line, each with its own candidate order; scores are averaged (paper: 4).
        max_retries (`int`): Extra tries per vote after the first, for a rejected answer or a transport error
            (authors: 3), so at most ``1 + max_retries`` HTTP requests per vote.
        min_distinct_ratio (`float`): Reject a vote whose distinct scores / candidates is below this (authors: 0.25).
        seed (`int`): Seed of the candidate orders (and of the per-request ``seed``).

        > Throughput and resilience

        max_concurrency (`int`): Requests in flight at once.
        backoff_base (`float`): First back-off delay in seconds after a 429 / 5xx / timeout / connection error;
            doubles per failure, with jitter (x0.5-1.0).
        backoff_max (`float`): Upper bound of every wait, the exponential back-off and a ``Retry-After`` header.
        cache_path (`str` or `None`): sqlite file of raw answers; ``None`` disables the cache.
    """

    # every field but `api_key` is a `--judge-*` flag of `alpo sample` and `evaluate` (`trl_seqpo.cli.judge_options`)
    base_url: str | None = _help(
        "OpenAI-compatible base URL, e.g. http://localhost:8000/v1 (unset: $TRL_SEQPO_JUDGE_BASE_URL, then "
        "$OPENAI_BASE_URL, then OpenAI's API)",
        default=None,
    )
    model: str = _help("judge model name sent with each request (paper: Qwen3-14B)", default="Qwen/Qwen3-14B")
    api_key: str | None = _help("the key itself (a secret: never a flag)", default=None, repr=False)
    api_key_env: str | None = _help("environment variable holding the judge's key", default=None)
    api_key_file: str | None = _help("file holding the judge's key (first line)", default=None)
    timeout: float = _help("seconds per judge request", default=60.0)
    max_tokens: int | None = _help("answer length limit of the judge (room for <think> blocks)", default=1024)
    extra_body: dict | None = _help(
        'extra JSON fields of each judge request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'',
        default=None,
    )
    send_seed: bool = _help("send each vote's seed (off for endpoints that refuse it)", default=True)
    aspect: str = _help(
        "what the judge scores: vividness (the ALPO reward), accuracy or naturalness",
        default="vividness",
        choices=tuple(ASPECTS),
    )
    source_language: str | None = _help("source language name in the judge's prompt", default=None)
    target_language: str | None = _help("target language name in the judge's prompt", default=None)
    temperature: float = _help("sampling temperature of the judge (authors: 0.3)", default=0.3)
    num_shuffles: int = _help("votes per unit, each with its own candidate order, averaged (paper: 4)", default=4)
    max_retries: int = _help("extra tries per vote (authors: 3)", default=3)
    min_distinct_ratio: float = _help(
        "reject a vote whose distinct scores / candidates is below this (authors: 0.25)", default=0.25
    )
    seed: int = _help("seed of the candidate orders and of each request's seed", default=0)
    max_concurrency: int = _help("judge requests in flight", default=8)
    backoff_base: float = _help("first wait after a 429 / 5xx / timeout (seconds; doubles per failure)", default=0.5)
    backoff_max: float = _help("longest wait between tries, Retry-After included (seconds)", default=30.0)
    cache_path: str | None = _help("sqlite file of raw answers (unset: no cache)", default=None)

    def __post_init__(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            self.api_key = Secret(self.api_key)
        if self.base_url is None:
            self.base_url = os.environ.get("TRL_SEQPO_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or None
        if self.aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {sorted(ASPECTS)}, got {self.aspect!r}")
        check_at_least(self, 1, "num_shuffles", "max_concurrency")
        check_at_least(self, 0, "max_retries", "backoff_base", "backoff_max", "temperature")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if not 0 <= self.min_distinct_ratio <= 1:
            raise ValueError(f"min_distinct_ratio must be in [0, 1], got {self.min_distinct_ratio}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")
        if self.extra_body is not None and not isinstance(self.extra_body, dict):
            raise ValueError(f"extra_body must be a JSON object (dict), got {type(self.extra_body).__name__}")
        for name in ("temperature", "timeout", "backoff_base", "backoff_max", "min_distinct_ratio"):
            if math.isnan(getattr(self, name)):
                raise ValueError(f"{name} must be a number, got NaN")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "api_key": None}  # a pickle never carries the key; use api_key_env / api_key_file

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={mask_credentials(getattr(self, f.name))!r}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({shown})"

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict, the key redacted and the URL without credentials."""
        data = asdict(self)
        data["api_key"] = None if self.api_key is None else "<redacted>"
        data["base_url"] = None if self.base_url is None else redact_url(self.base_url)
        return data

    def resolve_api_key(self) -> str:
        """The key to send to this endpoint (see ``api_key``, ``api_key_env``, ``api_key_file``).

        Raises:
            UserInputError: The named key file or environment variable does not exist or is empty.
        """
        return resolve_api_key(self.api_key, self.api_key_env, self.api_key_file, self.base_url, what="the judge key")

    def cache_settings(self) -> dict:
        """What, besides the messages and the seed, changes an answer: part of every cache key."""
        return {
            "base_url": redact_url(self.base_url),
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "extra_body": self.extra_body,
            "send_seed": self.send_seed,
        }
