"""SimulEval 1.1's remote-agent protocol on the server: ``simuleval --remote-eval`` evaluates a running server.

SimulEval's ``RemoteEvaluator`` drives one sentence at a time over plain HTTP: ``POST /reset`` (a new sentence),
``PUT /input`` (one source segment: a word, or ``EmptySegment(finished=True)`` after the last one) and
``GET /output`` (the agent's answer: a ``TextSegment`` to write, or an ``EmptySegment`` to read more). Here each
sentence is a server session with the server's session defaults (``--source-lang``, ``--chunk-size``, ...), stepped
by the same scheduler as the WebSocket sessions; one step answers one ``GET /output``, as the in-process
`trl_seqpo.integrations.simuleval.SeqPOAgent` does, so SimulEval records the same delays. SimulEval sends no
credentials: with ``--token`` these routes answer 401.

Usage::

    trl-seqpo serve simt --model runs/seqpo --port 8000 --chunk-size 3
    simuleval --remote-eval --remote-address 127.0.0.1 --remote-port 8000 \\
        --source test.en --target test.zh --output runs/simuleval-remote
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import HTTPException, Request

from trl_seqpo.rollout.streaming import SessionSettings

__all__ = ["add_simuleval_routes"]


def _segment(content: str, finished: bool) -> dict[str, Any]:
    """A SimulEval ``TextSegment`` (``content``) or ``EmptySegment`` (no content) as its JSON."""
    if content:
        return {"index": 0, "content": content, "finished": finished, "is_empty": False, "data_type": "text",
                "tgt_lang": None, "config": {}}  # fmt: skip
    return {"index": 0, "content": [], "finished": finished, "is_empty": True, "data_type": None, "tgt_lang": None,
            "config": {}}  # fmt: skip


def add_simuleval_routes(app: Any, engine: Any, config: Any, scheduler: Any) -> None:
    """Add ``/reset``, ``/input`` and ``/output`` (SimulEval's agent service) to the app."""
    state: dict[str, Any] = {"session": None}

    def check(request: Request) -> None:
        if config.token:
            raise HTTPException(401, "SimulEval's remote evaluator sends no token: restart the server without --token")

    def close() -> None:
        session = state["session"]
        if session is not None:
            session.closed = True
            scheduler.to_close.append(session)
            scheduler.wake.set()
            state["session"] = None

    def current() -> Any:
        if state["session"] is None:
            raise HTTPException(409, "no sentence in progress: POST /reset first")
        return state["session"]

    @app.post("/reset")
    async def reset(request: Request) -> dict:
        check(request)
        close()
        if len(engine.sessions) >= config.max_sessions:
            raise HTTPException(503, f"server busy: {config.max_sessions} sessions open (--max-sessions)")
        session = engine.open(SessionSettings(**config.session_defaults()))
        scheduler.queues[session.key] = asyncio.Queue()
        state["session"] = session
        return {}

    @app.put("/input")
    async def push(request: Request) -> dict:
        check(request)
        session = current()
        body = await request.body()
        if len(body) > config.max_message_bytes:
            raise HTTPException(413, f"segment of {len(body)} bytes exceeds --max-message-bytes")
        try:
            segment = json.loads(body)
            if segment.get("is_empty"):
                if not session.source_finished:
                    session.feed("", end=True)
            else:
                content = segment.get("content")
                if not isinstance(content, str):
                    raise ValueError("a text segment's content must be a string")
                session.feed(content + " ", end=bool(segment.get("finished")))
        except (ValueError, AttributeError) as error:
            raise HTTPException(400, f"bad segment: {error}") from None
        if len(session.units) > config.max_source_units:
            raise HTTPException(413, f"source longer than {config.max_source_units} units (--max-source-units)")
        scheduler.wake.set()
        return {}

    @app.get("/output")
    async def pop(request: Request) -> dict:
        check(request)
        session = current()
        queue = scheduler.queues[session.key]
        while True:
            if queue.empty() and not session.in_flight:
                if session.finished:
                    return _segment("", True)
                if not session.ready:
                    return _segment("", False)  # read more source
            try:
                item = await asyncio.wait_for(queue.get(), timeout=config.idle_timeout)
            except asyncio.TimeoutError:
                raise HTTPException(504, "the step did not finish in --idle-timeout seconds") from None
            if isinstance(item, Exception):
                raise HTTPException(500, str(item))
            text = " ".join(item.text.split())
            if text or item.finished:
                return _segment(text, item.finished)
