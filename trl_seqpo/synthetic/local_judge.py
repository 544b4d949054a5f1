"""A small OpenAI-compatible judge server (stdlib only) for tests, benchmarks and the CPU demo.

It serves ``POST /v1/chat/completions`` (and ``GET /v1/models``) on 127.0.0.1 from a background thread. For each
request it reads the labelled candidates out of the prompt built by `trl_seqpo.judge.prompts`, asks a
*scorer* ``(candidates, messages) -> list[int]`` for one score per candidate, and answers a chat completion whose
content is the JSON object ``{"A": ..., "B": ...}`` the LLM judge expects. A *fault hook* can replace any reply (an
HTTP error with ``Retry-After``, a delay longer than the client's timeout, a dropped connection, or any answer text),
which is how the judge's retry and validation rules are tested against a real socket.

The demo's hidden preference is `SynonymPreferenceScorer`: the "judge" secretly likes some words better than
their synonyms, so a policy can only raise its score by learning that preference from the judge's feedback.

Usage::

    with serve(SynonymPreferenceScorer({"big": "huge"}), delay=0.01) as server:
        JudgeConfig(base_url=server.base_url, model=server.model)   # then LLMJudge(...)
        server.request_count                                       # requests received so far

    trl-seqpo judge-server --port 8000 --prefer big=huge --prefer small=tiny   # `trl_seqpo.cli.judge_server`
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trl_seqpo.judge.prompts import parse_candidates, parse_evaluated_lines

__all__ = [
    "Scorer",
    "Reply",
    "ReceivedRequest",
    "JudgeServer",
    "serve",
    "SynonymPreferenceScorer",
    "length_scorer",
]

Scorer = Callable[[list[str], list[dict]], list[int]]


@dataclass
class Reply:
    """How the server answers one request (returned by a fault hook; ``None`` from the hook means the default).

    Args:
        status: HTTP status; anything but 200 sends an OpenAI-style error body.
        content: Assistant message text for a 200 reply; ``None`` uses the scorer's JSON.
        delay: Seconds to wait before answering (more than the client's timeout simulates a timeout).
        close: Drop the connection without sending anything.
        headers: Extra response headers, e.g. ``{"Retry-After": "0.01"}``.
        raw: Send these bytes as the body instead (a truncated or malformed answer).
        error_message: The ``error.message`` of a non-200 reply (default ``"injected HTTP <status>"``).
    """

    status: int = 200
    content: str | None = None
    delay: float = 0.0
    close: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    error_message: str | None = None


@dataclass
class ReceivedRequest:
    """A request as the server saw it: arrival ``index`` (0-based), decoded JSON ``body``, ``time.monotonic()`` at
    arrival."""

    index: int
    body: dict
    arrived: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict]:
        """The chat messages."""
        return list(self.body.get("messages") or [])

    @property
    def candidates(self) -> dict[str, str]:
        """``{label: candidate}`` parsed from the prompt."""
        return parse_candidates(self.messages)

    @property
    def evaluated(self) -> list[str]:
        """The source line(s) being scored."""
        return parse_evaluated_lines(self.messages)

    @property
    def is_repair(self) -> bool:
        """Whether this request carries the judge's format-repair follow-up (more than system + user)."""
        return len(self.messages) > 2


FaultHook = Callable[[ReceivedRequest], "Reply | None"]


def length_scorer(candidates: list[str], messages: list[dict]) -> list[int]:
    """Default scorer: longer candidates score higher (rank-spread over 10-90), a stand-in for "more expressive".

    Args:
        candidates: Candidates in the order shown.
        messages: The request's messages (unused).

    Returns:
        One integer score per candidate.

    >>> length_scorer(["a", "abc", "ab"], [])
    [10, 90, 50]
    """
    if len(candidates) == 1:
        return [50]
    ranks = sorted(range(len(candidates)), key=lambda i: (len(candidates[i]), candidates[i]))
    scores = [0] * len(candidates)
    for rank, i in enumerate(ranks):
        scores[i] = round(10 + 80 * rank / (len(candidates) - 1))
    return scores


class SynonymPreferenceScorer:
    """The demo's hidden preference: every preferred synonym a candidate uses earns points, every plain word costs.

    ``score = clamp(base + step * (#preferred words used - #plain words used), 0, 100)``. Words match
    case-insensitively, as whole words (or as substrings with ``whole_words=False``, for scripts written without
    spaces). Candidates that use the same words tie; a vote of mostly ties is rejected by the judge exactly as a real
    judge's would be.

    Args:
        preferred: ``{plain word: preferred synonym}``, e.g. ``{"big": "huge", "said": "whispered"}``.
        base: Score of a candidate with none of the words.
        step: Points per preferred (plus) or plain (minus) word.
        whole_words: Match whole words only.

    >>> SynonymPreferenceScorer({"big": "huge"})(["a big dog", "a huge dog", "a dog"], [])
    [30, 70, 50]
    """

    def __init__(
        self, preferred: Mapping[str, str], *, base: int = 50, step: int = 20, whole_words: bool = True
    ) -> None:
        self.preferred = dict(preferred)
        self.base, self.step = base, step
        wrap = (lambda w: rf"(?<!\w){re.escape(w)}(?!\w)") if whole_words else re.escape
        self._plain = [re.compile(wrap(word), re.IGNORECASE) for word in self.preferred]
        self._liked = [re.compile(wrap(word), re.IGNORECASE) for word in self.preferred.values()]

    def score(self, text: str) -> int:
        """Score of one candidate."""
        plus, rest = 0, text
        for pattern in self._liked:  # taken out first, so that a plain word inside a preferred one does not count
            rest, found = pattern.subn(" ", rest)
            plus += found
        minus = sum(len(pattern.findall(rest)) for pattern in self._plain)
        return max(0, min(100, self.base + self.step * (plus - minus)))

    def __call__(self, candidates: list[str], messages: list[dict]) -> list[int]:
        return [self.score(text) for text in candidates]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
        pass

    def _send_json(self, status: int, payload: dict, headers: Mapping[str, str] = ()) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in dict(headers).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.server.owner.model, "object": "model", "owned_by": "trl_seqpo"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found", "code": 404}})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found", "code": 404}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request", "code": 400}})
            return
        received = owner._record(body, {name.lower(): value for name, value in self.headers.items()})
        reply = (owner.fault(received) if owner.fault is not None else None) or Reply()
        if owner.delay + reply.delay > 0:
            time.sleep(owner.delay + reply.delay)
        if reply.close:
            self.close_connection = True
            return
        if reply.raw is not None:  # a broken body, e.g. JSON cut short
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.raw)))
            self.end_headers()
            self.wfile.write(reply.raw)
            return
        if reply.status != 200:
            message = reply.error_message or f"injected HTTP {reply.status}"
            error = {"message": message, "type": "server_error", "code": reply.status}
            self._send_json(reply.status, {"error": error}, reply.headers)
            return
        content = reply.content
        if content is None:
            candidates = received.candidates
            scores = owner.scorer(list(candidates.values()), received.messages)
            content = json.dumps(dict(zip(candidates, (int(score) for score in scores))))
        prompt_chars = sum(len(str(m.get("content") or "")) for m in received.messages)
        usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{received.index}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or owner.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": usage,
            },
            reply.headers,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: JudgeServer

    def handle_error(self, request, client_address) -> None:  # clients that hang up early are expected here
        pass


class JudgeServer:
    """A running local judge; use `serve` to start and stop it.

    Args:
        scorer: ``(candidates, messages) -> scores``; defaults to `length_scorer`.
        fault: ``(ReceivedRequest) -> Reply | None`` to inject errors; ``None`` answers normally.
        delay: Seconds added before every reply (an artificial model latency).
        host: Interface to bind (keep 127.0.0.1).
        port: TCP port; 0 picks a free one.
        model: Model name reported by ``/v1/models``.
    """

    def __init__(
        self,
        scorer: Scorer | None = None,
        *,
        fault: FaultHook | None = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "local-judge",
    ) -> None:
        self.scorer = scorer or length_scorer
        self.fault = fault
        self.delay = delay
        self.model = model
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:40123/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the chat-completion requests received so far."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many chat-completion requests arrived."""
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget the received requests."""
        with self._lock:
            self._requests.clear()

    def _record(self, body: dict, headers: Mapping[str, str] | None = None) -> ReceivedRequest:
        with self._lock:
            received = ReceivedRequest(len(self._requests), body, time.monotonic(), dict(headers or {}))
            self._requests.append(received)
        return received

    def start(self) -> JudgeServer:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="judge-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()


@contextlib.contextmanager
def serve(scorer: Scorer | None = None, **options: Any) -> Iterator[JudgeServer]:
    """Run a `JudgeServer` for the duration of a ``with`` block (arguments as in `JudgeServer`).

    Yields:
        The running server; ``server.base_url`` goes into ``JudgeConfig(base_url=...)``.
    """
    server = JudgeServer(scorer, **options).start()
    try:
        yield server
    finally:
        server.stop()
