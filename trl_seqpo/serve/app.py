"""The ASGI app of ``trl-seqpo serve simt`` (FastAPI + uvicorn, WebSocket streaming).

Protocol (one WebSocket per session, JSON text messages; see docs/serving.md):

* client -> ``{"type": "start", "source_lang": ..., "target_lang": ..., "policy": "model" | "wait-k", "k": 3,
  "chunk_size": 3, "source_unit": "word" | "char" | null}`` (every key optional,
  `trl_seqpo.rollout.streaming.SessionSettings`); server -> ``{"type": "started", "session": id, "settings": {...}}``;
* client -> ``{"type": "source", "text": "...", "end": false}`` as the source arrives, and ``{"type": "end"}`` (or
  ``"end": true`` on the last piece);
* server -> ``{"type": "increment", "step", "text", "token_ids", "source_units_read", "finished", "ready_at",
  "emitted_at", "seconds"}`` as soon as each step is written, then ``{"type": "done", ...}`` with the whole
  translation (the fields of ``evaluate simt``'s ``hypotheses.jsonl``) and the server closes the socket;
* on a mistake: ``{"type": "error", "message": "..."}`` and the socket closes with a WebSocket error code.

Every session's steps run in one scheduler task: whenever sessions are ready, one backend call steps all of them
(`StreamingEngine.step`, in a worker thread so the event loop keeps receiving). A session's failure (bad input,
disconnect, timeout) closes that session only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from trl_seqpo.rollout.settings import DECODING_FIELDS, DecodingSettings, fill_from_model
from trl_seqpo.rollout.streaming import SessionSettings, StreamingEngine, StreamingSession

__all__ = ["ServeConfig", "create_app"]

logger = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455 / IANA)
_POLICY_VIOLATION, _INVALID_DATA, _TOO_BIG, _INTERNAL, _TRY_AGAIN = 1008, 1007, 1009, 1011, 1013


@dataclass(kw_only=True)
class ServeConfig(DecodingSettings):
    """Settings of ``trl-seqpo serve simt``; the command has one flag per field.

    The rollout's model-wide settings are `DecodingSettings` (as ``evaluate simt``'s); those left unset follow the
    model's ``seqpo_rollout.json`` (`trl_seqpo.rollout.settings.fill_from_model`).
    """

    model: str = field(metadata={"help": "checkpoint folder saved with save_pretrained"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (default: this machine only)"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    backend: Literal["hf", "vllm"] = field(default="hf", metadata={"help": "hf (keeps KV per session) or vllm"})
    device: str | None = field(default=None, metadata={"help": "torch device for hf (default: cuda if available)"})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="auto", metadata={"help": "model dtype"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    kv_cache: bool = field(default=True, metadata={"help": "keep each session's KV states between chunks (hf)"})
    token: str | None = field(
        default=None, metadata={"help": "bearer token clients must send (default: env TRL_SEQPO_SERVE_TOKEN, or none)"}
    )
    max_sessions: int = field(default=64, metadata={"help": "sessions open at once; more are refused"})
    idle_timeout: float = field(default=60.0, metadata={"help": "seconds a session may wait for its client"})
    max_message_bytes: int = field(default=65536, metadata={"help": "largest client message"})
    max_source_units: int = field(default=4096, metadata={"help": "longest source of one session, in units"})
    # defaults of the sessions that do not choose (and of SimulEval's remote evaluator, which cannot)
    source_lang: str = field(default="English", metadata={"help": "source language of sessions that do not say"})
    target_lang: str = field(default="Chinese", metadata={"help": "target language of sessions that do not say"})
    chunk_size: int = field(default=3, metadata={"help": "source units per step of sessions that do not say"})
    source_unit: Literal["word", "char"] | None = field(
        default=None, metadata={"help": "source unit of sessions that do not say (default: from the language)"}
    )
    target_unit: Literal["word", "char"] | None = field(
        default=None, metadata={"help": "target latency unit of sessions that do not say (default: from the language)"}
    )

    def session_defaults(self) -> dict[str, Any]:
        """Settings of a session that chooses none (`SessionSettings` fields)."""
        names = ("source_lang", "target_lang", "chunk_size", "source_unit", "target_unit")
        return {name: getattr(self, name) for name in names}

    def __post_init__(self) -> None:
        fill_from_model(self, self.model)
        for name in ("max_sessions", "max_message_bytes", "max_source_units", "max_new_tokens_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 seconds, got {self.idle_timeout}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")


class _ClientError(Exception):
    def __init__(self, message: str, code: int = _POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.code = code


class _Scheduler:
    """Steps every ready session with one backend call at a time, in a worker thread."""

    def __init__(self, engine: StreamingEngine) -> None:
        self.engine = engine
        self.queues: dict[int, asyncio.Queue] = {}
        self.to_close: list[StreamingSession] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            for session in self.to_close:  # between steps: the engine's caches are not in use
                self.engine.close(session)
                self.queues.pop(session.key, None)
            self.to_close.clear()
            ready = [session for session in self.engine.sessions.values() if session.ready]
            if not ready:
                continue
            for session in ready:
                session.in_flight = True
            try:
                stepped = await asyncio.to_thread(self.engine.step, ready)
            except Exception as error:  # noqa: BLE001 - the batch failed: its sessions end, the server stays up
                logger.exception("a step failed")
                for session in ready:
                    session.error = f"the model step failed: {type(error).__name__}: {error}"
                stepped = []
            for session in ready:
                session.in_flight = False
                queue = self.queues.get(session.key)
                if queue is None:
                    continue
                if session.error is not None:
                    queue.put_nowait(_ClientError(session.error, _INTERNAL))
                elif session in stepped:
                    queue.put_nowait(session.increments[-1])
            self.wake.set()  # sessions may be ready again (more source arrived meanwhile, or steps after the end)


def _authorized(headers: Any, token: str | None) -> bool:
    if not token:
        return True
    given = headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def _receive(websocket: Any, config: ServeConfig) -> dict[str, Any]:
    """The next client message as a dict; `_ClientError` for a timeout, an oversized or malformed message."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout=config.idle_timeout)
    except asyncio.TimeoutError:
        raise _ClientError(f"no message for {config.idle_timeout:g} s (--idle-timeout): session closed") from None
    if message["type"] == "websocket.disconnect":
        raise _Disconnected
    data = message.get("text")
    if data is None:
        data = (message.get("bytes") or b"").decode("utf-8", errors="replace")
    size = len(data.encode("utf-8"))
    if size > config.max_message_bytes:
        raise _ClientError(
            f"message of {size} bytes exceeds the limit of {config.max_message_bytes} bytes (--max-message-bytes)",
            _TOO_BIG,
        )
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as error:
        raise _ClientError(f"malformed JSON: {error}", _INVALID_DATA) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise _ClientError('every message is a JSON object with a "type"', _INVALID_DATA)
    return payload


class _Disconnected(Exception):
    pass


async def _send_increments(websocket: Any, session: StreamingSession, queue: asyncio.Queue) -> None:
    while True:
        item = await queue.get()
        if isinstance(item, _ClientError):
            raise item
        await websocket.send_json({"type": "increment", **item.to_dict()})
        if item.finished:
            await websocket.send_json({"type": "done", "session": session.key, **session.result()})
            return


async def _read_source(websocket: Any, session: StreamingSession, config: ServeConfig, scheduler: _Scheduler) -> None:
    while not session.source_finished:
        message = await _receive(websocket, config)
        kind = message["type"]
        if kind == "source":
            text = message.get("text", "")
            if not isinstance(text, str):
                raise _ClientError('"text" of a source message must be a string', _INVALID_DATA)
            try:
                session.feed(text, end=bool(message.get("end", False)))
            except ValueError as error:
                raise _ClientError(str(error), _INVALID_DATA) from None
        elif kind == "end":
            try:
                session.feed("", end=True)
            except ValueError as error:
                raise _ClientError(str(error), _INVALID_DATA) from None
        else:
            raise _ClientError(f'unknown message type {kind!r}: send "source" or "end"', _INVALID_DATA)
        if len(session.units) > config.max_source_units:
            raise _ClientError(f"source longer than {config.max_source_units} units (--max-source-units)", _TOO_BIG)
        scheduler.wake.set()


def create_app(engine: StreamingEngine, config: ServeConfig) -> Any:
    """The FastAPI app serving ``engine`` (``GET /health``, WebSocket ``/v1/simt/stream``)."""
    from contextlib import asynccontextmanager

    scheduler = _Scheduler(engine)

    @asynccontextmanager
    async def lifespan(app: Any):
        scheduler.wake = asyncio.Event()
        scheduler.task = asyncio.create_task(scheduler.run())
        try:
            yield
        finally:
            scheduler.task.cancel()

    app = FastAPI(title="trl-seqpo simultaneous translation", lifespan=lifespan)
    app.state.scheduler = scheduler
    from trl_seqpo.serve.simuleval_remote import add_simuleval_routes

    add_simuleval_routes(app, engine, config, scheduler)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "sessions": len(engine.sessions),
            "max_sessions": config.max_sessions,
            "model": config.model,
            "kv_cache": engine.cache is not None,
            **{name: getattr(config, name) for name in DECODING_FIELDS},
        }

    @app.websocket("/v1/simt/stream")
    async def stream(websocket: WebSocket) -> None:
        if not _authorized(websocket.headers, config.token):
            await websocket.close(code=_POLICY_VIOLATION, reason="missing or wrong bearer token")
            return
        await websocket.accept()
        session, sender, reader = None, None, None
        try:
            if len(engine.sessions) >= config.max_sessions:
                raise _ClientError(f"server busy: {config.max_sessions} sessions open (--max-sessions)", _TRY_AGAIN)
            start = await _receive(websocket, config)
            if start["type"] != "start":
                raise _ClientError('the first message must be {"type": "start", ...}', _INVALID_DATA)
            try:
                chosen = {k: v for k, v in start.items() if k != "type"}
                settings = SessionSettings.from_dict({**config.session_defaults(), **chosen})
                session = engine.open(settings)
            except (TypeError, ValueError) as error:
                raise _ClientError(f"bad session settings: {error}", _INVALID_DATA) from None
            queue: asyncio.Queue = asyncio.Queue()
            scheduler.queues[session.key] = queue
            await websocket.send_json({"type": "started", "session": session.key, "settings": settings.to_dict()})
            sender = asyncio.create_task(_send_increments(websocket, session, queue))
            reader = asyncio.create_task(_read_source(websocket, session, config, scheduler))
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise the first failure
            await sender
            await websocket.close()
        except (_Disconnected, WebSocketDisconnect, OSError):  # the client left (uvicorn raises OSError on send)
            pass
        except _ClientError as error:
            await _report(websocket, str(error), error.code)
        except Exception as error:  # noqa: BLE001 - never let one session take the server down
            logger.exception("session failed")
            await _report(websocket, f"internal error: {type(error).__name__}: {error}", _INTERNAL)
        finally:
            for task in (sender, reader):
                if task is not None and not task.done():
                    task.cancel()
            if session is not None:
                session.closed = True
                scheduler.to_close.append(session)
                scheduler.wake.set()

    return app


async def _report(websocket: Any, message: str, code: int) -> None:
    try:
        await websocket.send_json({"type": "error", "message": message})
        await websocket.close(code=code)
    except Exception:  # noqa: BLE001 - the client is gone already
        pass
