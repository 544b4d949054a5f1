"""A client of ``trl-seqpo serve simt``: stream sources through a running server (``evaluate simt --server``).

Each source is sent as the chunks the offline rollout would read (`split_into_chunks`, the last one marked as the
end of the source), in a session of its own; sessions run concurrently, so the server batches them in lockstep. The
server's ``done`` message carries the fields of ``hypotheses.jsonl``; ``step_seconds`` are the server's wall-clock
times from each step's chunk arrival to its increment, which the computation-aware latency (``AL_CA``) uses.
Needs the ``websockets`` package (``pip install "trl-seqpo[serve]"``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Sequence
from typing import Any

from trl_seqpo.errors import MissingDependencyError, UserInputError
from trl_seqpo.simt.chunking import split_into_chunks

__all__ = ["RemoteSessionError", "server_settings", "stream_source", "translate_with_server"]


class RemoteSessionError(RuntimeError):
    """The server answered a session with an error message."""


def _websocket_url(url: str) -> str:
    base = url.rstrip("/")
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(http):
            base = ws + base[len(http) :]
    if not base.startswith(("ws://", "wss://")):
        raise UserInputError(f"--server {url!r}: give the server's address as http://HOST:PORT")
    return base + "/v1/simt/stream"


def server_settings(url: str, token: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """The server's ``GET /health`` answer (prompt format and decoding settings), or `UserInputError`."""
    request = urllib.request.Request(url.rstrip("/") + "/health")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's own server
            return json.loads(response.read())
    except (OSError, ValueError) as error:
        raise UserInputError(f"--server {url}: cannot reach a trl-seqpo server ({error})") from None


async def stream_source(
    url: str,
    chunks: Sequence[str],
    settings: dict[str, Any],
    *,
    token: str | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """One session: send ``chunks`` (the last as the end of the source), return the ``done`` message + increments.

    Raises:
        RemoteSessionError: The server sent an error for this session.
    """
    try:
        from websockets.asyncio.client import connect
    except ImportError:
        raise MissingDependencyError('evaluate --server needs websockets: pip install "trl-seqpo[serve]"') from None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(_websocket_url(url), additional_headers=headers, open_timeout=timeout) as websocket:
        await websocket.send(json.dumps({"type": "start", **settings}))
        for index, chunk in enumerate(chunks):
            message = {"type": "source", "text": chunk, "end": index == len(chunks) - 1}
            await websocket.send(json.dumps(message, ensure_ascii=False))
        increments = []
        while True:
            message = json.loads(await asyncio.wait_for(websocket.recv(), timeout))
            if message["type"] == "increment":
                increments.append(message)
            elif message["type"] == "done":
                return {**message, "increments": increments}
            elif message["type"] == "error":
                raise RemoteSessionError(message["message"])


def translate_with_server(
    url: str,
    sources: Sequence[str],
    settings: dict[str, Any],
    *,
    chunk_size: int,
    source_unit: str,
    concurrency: int = 16,
    token: str | None = None,
) -> list[dict[str, Any]]:
    """Translate ``sources`` through the server, ``concurrency`` sessions at a time; results in source order."""

    async def run_all() -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(source: str) -> dict[str, Any]:
            async with limit:
                chunks = split_into_chunks(source, chunk_size, source_unit)  # type: ignore[arg-type]
                return await stream_source(url, chunks, settings, token=token)

        return list(await asyncio.gather(*(one(source) for source in sources)))

    try:
        return asyncio.run(run_all())
    except RemoteSessionError as error:
        raise UserInputError(f"--server {url}: {error}") from None
    except OSError as error:
        raise UserInputError(f"--server {url}: {error}") from None


def decode_with_server(rows: list[dict], store: Any, config: Any, point: Any, on_batch: Any = None) -> int:
    """`evaluate_simt`'s decoding pass through ``config.server``: the rows of ``point`` not yet in ``store``.

    The server decodes with its own `DECODING_FIELDS` (prompt format, budgets, sampling, system prompt, step tokens);
    they must equal the evaluation's (else
    `UserInputError` naming the flag), so the hypotheses are what ``--model`` would give.
    """
    from trl_seqpo.evaluate.common import decode_pending
    from trl_seqpo.rollout.settings import DECODING_FIELDS

    health = server_settings(config.server, config.server_token)
    for name in DECODING_FIELDS:
        if name in health and health[name] != getattr(config, name):
            flag = "--" + name.replace("_", "-")
            raise UserInputError(
                f"{flag} {getattr(config, name)} differs from the server's {health[name]}: start the server with "
                f"the same {flag} (or pass it here)"
            )
    if point.policy not in ("model", "wait-k"):
        raise UserInputError(f"--server serves --policy model or wait-k, not {point.policy}")
    settings = {
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "policy": point.policy,
        "k": point.k or 1,
        "chunk_size": point.chunk_size,
        "source_unit": config.source_unit,
        "target_unit": config.resolved_latency_unit,
    }
    source_unit = config.source_unit or _default_unit(config.source_lang)

    def decode(start: int, batch: list[dict]) -> list[dict]:
        sources = [" ".join(row["source"].split()) for row in batch]
        results = translate_with_server(
            config.server, sources, settings, chunk_size=point.chunk_size, source_unit=source_unit,
            concurrency=config.batch_size, token=config.server_token,
        )  # fmt: skip
        fields = ("translation", "chunks", "step_outputs", "delays", "source_length", "finished_by", "step_seconds")
        return [
            {"id": row["id"], "source": source, "reference": row["reference"], **{key: result[key] for key in fields}}
            for row, source, result in zip(batch, sources, results)
        ]

    return decode_pending(
        rows, lambda row: row["id"], store, config.batch_size, decode,
        desc=f"simt {point.label} (server)", unit="sent", progress=config.progress, on_batch=on_batch,
    )  # fmt: skip


def _default_unit(language: str | None) -> str:
    from trl_seqpo.languages import default_unit

    return default_unit(language or "English")
