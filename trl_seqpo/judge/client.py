"""The LLM judge client: scores candidate translations of a subtitle line over any OpenAI-compatible endpoint.

ALPO (alpo-subtitles.txt, Sec. 3.2, App. B.2.1, App. F.2) scores every candidate translation of a line 0-100 with an
LLM (Qwen3-14B served by vLLM in the paper), shows the candidates labelled A, B, ... next to the surrounding lines,
shuffles the order 4 times and averages the scores. The authors' public code adds the rules implemented here: the
judge samples at temperature 0.3; each vote is retried up to 3 times; a vote is rejected when its JSON keys are not
exactly the labels, a score is not an int in 0-100, or the scores are mostly ties (distinct / total < 0.25).

On top of that: bounded concurrency, exponential back-off with jitter on 429 / 5xx / timeouts / connection errors
(``Retry-After`` respected up to ``backoff_max``), one retry that carries a short format-repair message, and an on-disk
sqlite cache of the validated answers (`trl_seqpo.judge.cache`) so a repeated run pays no vote twice.

Failure semantics: a vote that gets no valid answer leaves the line with fewer valid votes
(``num_valid_votes``), a line with none gets ``scores=None``; neither is cached, so the next run asks again. A 4xx
answer other than 408/409/429 (a bad request, a wrong key, an unknown model) is a configuration error: the call stops
at once with `JudgeRequestError` carrying the server's message. Keys: ``api_key`` (or the file / environment variable
named for this endpoint) is sent; ``$OPENAI_API_KEY`` only to OpenAI's own host; keys never appear in ``repr``,
pickles or `JudgeConfig.to_dict`, and URLs in messages are shown without credentials.

Example (with the local server of `trl_seqpo.synthetic.local_judge`)::

    from trl_seqpo.judge.client import JudgeConfig, JudgeRequest, LLMJudge
    from trl_seqpo.synthetic.local_judge import SynonymPreferenceScorer, serve

    with serve(SynonymPreferenceScorer({"big": "huge"})) as server:
        judge = LLMJudge(JudgeConfig(base_url=server.base_url, model="local"))
        [result] = judge.score_lines([JudgeRequest(source="c'est grand", candidates=["it is big", "it is huge"])])
    result.scores  # [30.0, 70.0]
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from trl_seqpo.counts import Counts
from trl_seqpo.errors import UserInputError
from trl_seqpo.judge.cache import JudgeCache, request_key
from trl_seqpo.judge.config import JudgeConfig, redact_url
from trl_seqpo.judge.prompts import (
    AnswerError,
    JudgeRequest,
    build_messages,
    candidate_labels,
    extract_json_object,
    repair_message,
    validate_scores,
)

__all__ = [
    "JudgeConfig",
    "JudgeRequest",
    "JudgeVote",
    "JudgeResult",
    "JudgeStats",
    "LLMJudge",
    "JudgeUnreachableError",
    "JudgeRequestError",
    "redact_url",
]

# failures that say "there is no usable endpoint here" (raise_if_unreachable) rather than "this request went wrong"
_ENDPOINT_ERRORS = ("connection", "timeout", "unreachable", "http 429", "http 5")
# HTTP statuses that are worth retrying; any other 4xx is a configuration error that stops the run
_RETRY_STATUSES = (408, 409, 429)


class JudgeUnreachableError(UserInputError):
    """Every judge request of a run failed to reach the endpoint (raised only with ``raise_if_unreachable=True``)."""


class JudgeRequestError(UserInputError):
    """The endpoint refused a request with a 4xx status (bad request, key, model): fix the configuration."""


@dataclass
class JudgeVote:
    """One shuffled vote: candidate ``order[k]`` was shown under the k-th label; ``scores`` are index-aligned with the
    request's candidates (``None`` if the vote failed); ``errors`` lists why earlier tries were rejected."""

    order: list[int]
    scores: list[int] | None = None
    answers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    http_requests: int = 0
    cache_hits: int = 0


@dataclass
class JudgeResult:
    """Scores of one request: ``scores[i]`` is the mean over valid votes of candidate i's score (0-100), or ``None``
    when every vote failed (``failed_reason`` says why)."""

    scores: list[float] | None
    votes: list[JudgeVote]
    failed_reason: str | None = None

    @property
    def num_valid_votes(self) -> int:
        """How many votes passed validation."""
        return sum(vote.scores is not None for vote in self.votes)


@dataclass
class JudgeStats(Counts):
    """Counters accumulated over the judge's lifetime (they add up with ``+``)."""

    http_requests: int = 0
    cache_hits: int = 0
    rejected_answers: int = 0
    transport_errors: int = 0
    failed_votes: int = 0


@dataclass
class _RunState:
    """Shared by the tasks of one ``ascore_lines`` call."""

    semaphore: asyncio.Semaphore
    responded: bool = False
    fatal: str | None = None
    endpoint_failures: int = 0
    unreachable: bool = False


class LLMJudge:
    """Scores candidate translations with an LLM over an OpenAI-compatible API (ALPO Sec. 3.2).

    Args:
        config: Settings; see `JudgeConfig`.
    """

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()
        self.stats = JudgeStats()
        self.cache = JudgeCache(self.config.cache_path) if self.config.cache_path else None
        self._jitter = random.Random()

    # ---------------------------------------------------------------- public API
    def score_lines(
        self, requests: Sequence[JudgeRequest], *, raise_if_unreachable: bool = False, progress: bool = False
    ) -> list[JudgeResult]:
        """Blocking version of `ascore_lines` (safe to call from inside a running event loop)."""
        coroutine = self.ascore_lines(requests, raise_if_unreachable=raise_if_unreachable, progress=progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        outcome: dict[str, object] = {}

        def run_in_thread() -> None:
            try:
                outcome["value"] = asyncio.run(coroutine)
            except BaseException as error:  # re-raised in the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=run_in_thread, name="llm-judge")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    async def ascore_lines(
        self, requests: Sequence[JudgeRequest], *, raise_if_unreachable: bool = False, progress: bool = False
    ) -> list[JudgeResult]:
        """Score every request with ``num_shuffles`` shuffled votes each, ``max_concurrency`` requests in flight.

        Args:
            requests: Lines to score.
            raise_if_unreachable: Raise `JudgeUnreachableError` when every request failed to reach the
                endpoint (connection refused, timeouts, 401/403/404); otherwise such lines just get ``None``.
            progress: Show a tqdm bar over lines.

        Returns:
            One `JudgeResult` per request, in order.
        """
        if not requests:
            return []
        import openai  # a core dependency, imported here so that importing this module stays cheap

        client = openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self.config.resolve_api_key(),
            max_retries=0,
            timeout=self.config.timeout,
        )
        state = _RunState(semaphore=asyncio.Semaphore(self.config.max_concurrency))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), desc=f"judge ({self.config.aspect})", unit="line")

        async def score_one(request: JudgeRequest) -> JudgeResult:
            result = await self._score_request(client, state, request)
            if bar is not None:
                bar.update(1)
            return result

        try:
            results = await asyncio.gather(*(score_one(request) for request in requests))
        finally:
            if bar is not None:
                bar.close()
            await client.close()
        if state.fatal is not None:
            raise JudgeRequestError(
                f"the LLM judge at {redact_url(self.config.base_url)} refused the request: {state.fatal}; fix the "
                "judge settings (model name, key, --judge-extra-body, --no-judge-seed) and run again"
            )
        if raise_if_unreachable:
            self._raise_if_all_unreachable(results)
        return list(results)

    def close(self) -> None:
        """Close the cache."""
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---------------------------------------------------------------- internals
    def _raise_if_all_unreachable(self, results: Sequence[JudgeResult]) -> None:
        errors = [error for result in results for vote in result.votes for error in vote.errors]
        failed = all(result.scores is None for result in results)
        if failed and errors and all(error.startswith(_ENDPOINT_ERRORS) for error in errors):
            where = redact_url(self.config.base_url)
            first = next((error for error in errors if not error.startswith("unreachable")), errors[0])
            raise JudgeUnreachableError(
                f"the LLM judge at {where} could not be reached ({first}); start the server or point "
                "base_url / TRL_SEQPO_JUDGE_BASE_URL at a running OpenAI-compatible endpoint"
            )

    def vote_plan(self, request: JudgeRequest) -> list[tuple[int, list[int]]]:
        """``(seed, order)`` of each vote: seeded by the config seed and the request's content (reproducible).

        The orders are distinct permutations while there are enough of them (a repeated order would add no
        information about position bias), then repeat.
        """
        content = json.dumps(
            [
                self.config.seed,
                request.source if isinstance(request.source, str) else list(request.source),
                list(request.candidates),
                list(request.context_before),
                list(request.context_after),
            ],
            ensure_ascii=False,
        )
        seed = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:6], "big")
        rng, n = random.Random(seed), len(request.candidates)
        plan: list[tuple[int, list[int]]] = []
        seen: set[tuple[int, ...]] = set()
        for vote_index in range(self.config.num_shuffles):
            if len(seen) == math.factorial(n):
                seen.clear()
            order = list(range(n))
            rng.shuffle(order)
            while tuple(order) in seen:
                rng.shuffle(order)
            seen.add(tuple(order))
            plan.append((seed + vote_index, order))
        return plan

    async def _score_request(self, client, state: _RunState, request: JudgeRequest) -> JudgeResult:
        if len(request.candidates) == 0:
            return JudgeResult(scores=None, votes=[], failed_reason="no candidates to score")
        votes = await asyncio.gather(
            *(self._run_vote(client, state, request, seed, order) for seed, order in self.vote_plan(request))
        )
        valid = [vote.scores for vote in votes if vote.scores is not None]
        if not valid:
            reasons = sorted({vote.errors[-1] if vote.errors else "no answer" for vote in votes})
            return JudgeResult(
                scores=None, votes=list(votes), failed_reason="every vote failed: " + "; ".join(reasons)
            )
        means = [sum(scores[i] for scores in valid) / len(valid) for i in range(len(request.candidates))]
        return JudgeResult(scores=means, votes=list(votes))

    async def _run_vote(
        self, client, state: _RunState, request: JudgeRequest, seed: int, order: list[int]
    ) -> JudgeVote:
        """One of ALPO's 4 shuffled votes: up to ``1 + max_retries`` tries, one of them with a repair message."""
        config = self.config
        labels = candidate_labels(len(order))
        base = build_messages(
            request.source,
            [request.candidates[i] for i in order],
            aspect=config.aspect,
            context_before=request.context_before,
            context_after=request.context_after,
            target_context_before=request.target_context_before,
            target_context_after=request.target_context_after,
            source_language=config.source_language,
            target_language=config.target_language,
        )
        vote = JudgeVote(order=order)
        messages, repaired, transport_failures = base, False, 0
        key = request_key(config.cache_settings(), base, seed)
        cached = self.cache.get(key) if self.cache is not None else None
        for attempt in range(1 + config.max_retries):
            if state.fatal is not None:
                vote.errors.append("stopped: " + state.fatal)
                break
            answer_index = len(vote.answers)
            if cached is not None:  # a validated answer of an earlier run: no HTTP request
                text, cached = cached, None
                vote.cache_hits += 1
                self.stats.cache_hits += 1
            else:
                text, error, retry_after = await self._post(client, state, vote, messages, seed + answer_index)
                if text is None:
                    vote.errors.append(error)
                    self.stats.transport_errors += 1
                    if retry_after is False or attempt == config.max_retries:
                        break
                    delay = config.backoff_base * 2**transport_failures * self._jitter.uniform(0.5, 1.0)
                    transport_failures += 1
                    await asyncio.sleep(min(config.backoff_max, delay if retry_after is None else retry_after))
                    continue
            vote.answers.append(text)
            try:
                scores = validate_scores(
                    extract_json_object(text), labels, min_distinct_ratio=config.min_distinct_ratio
                )
            except AnswerError as problem:
                vote.errors.append(str(problem))
                self.stats.rejected_answers += 1
                if not repaired:  # one retry carries the answer and a short note on the expected format
                    messages = [*base, {"role": "assistant", "content": text}, repair_message(labels, str(problem))]
                    repaired = True
                else:
                    messages = base
                continue
            vote.scores = [0] * len(order)
            for position, candidate in enumerate(order):
                vote.scores[candidate] = scores[position]
            if self.cache is not None and not vote.cache_hits:
                self.cache.put(key, config.model, text)  # only an answer that passed validation is cached
            return vote
        self.stats.failed_votes += 1
        return vote

    async def _post(self, client, state: _RunState, vote: JudgeVote, messages: list[dict], seed: int):
        """One HTTP request. Returns ``(text, None, None)`` on success, else ``(None, error, retry)`` where
        ``retry`` is ``False`` (do not retry), ``None`` (retry after back-off) or the ``Retry-After`` seconds.

        While no request of this run has had an answer, failures that point at the endpoint itself (connection,
        timeout, 401/403/404) are counted; past ``2 * max_concurrency`` of them the endpoint is taken as unreachable
        and every request still waiting fails at once instead of retrying for hours.
        """
        text, error, retry = await self._send(client, state, vote, messages, seed)
        if error is not None and error.startswith(_ENDPOINT_ERRORS) and not state.responded:
            state.endpoint_failures += 1
            state.unreachable = state.endpoint_failures >= 2 * self.config.max_concurrency
        return text, error, retry

    async def _send(self, client, state: _RunState, vote: JudgeVote, messages: list[dict], seed: int):
        import openai

        config = self.config
        kwargs: dict = {"model": config.model, "messages": messages, "temperature": config.temperature}
        if config.max_tokens is not None:
            kwargs["max_tokens"] = config.max_tokens
        if config.send_seed:
            kwargs["seed"] = seed
        if config.extra_body:
            kwargs["extra_body"] = config.extra_body
        try:
            async with state.semaphore:
                if state.unreachable:
                    return None, "unreachable: earlier requests could not reach the endpoint", False
                self.stats.http_requests += 1
                vote.http_requests += 1
                completion = await client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            return None, f"timeout after {config.timeout:g} s", None
        except openai.APIConnectionError as error:
            return None, f"connection error: {type(error).__name__}", None
        except openai.APIStatusError as error:
            status = error.status_code
            message = f"http {status}: {_server_message(error)}"
            if status in _RETRY_STATUSES or status >= 500:
                return None, message, _retry_after_seconds(error.response.headers.get("retry-after"))
            state.fatal = state.fatal or message
            return None, message, False
        except Exception as error:  # malformed response bodies and the like: a failed try, never a crash
            return None, f"bad response: {type(error).__name__}: {str(error)[:200]}", None
        state.responded = True
        choices = getattr(completion, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message is not None else None
        return content or "", None, None


def _server_message(error) -> str:
    """The endpoint's own error message (OpenAI-style ``{"error": {"message": ...}}``), else the body's start."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)[:300]
    return str(getattr(error, "message", error))[:300]


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
