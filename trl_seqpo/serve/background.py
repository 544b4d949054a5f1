"""Run the server in a background thread of this process (tests, benchmarks, the docs' client example)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from trl_seqpo.rollout.streaming import StreamingEngine
from trl_seqpo.serve.app import ServeConfig, create_app

__all__ = ["serve_in_background"]


@contextmanager
def serve_in_background(engine: StreamingEngine, config: ServeConfig, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``engine`` with uvicorn in a daemon thread; yields the base URL (``http://127.0.0.1:PORT``).

    ``config.port = 0`` picks a free port. The server stops when the block ends.

    Examples:
        >>> with serve_in_background(engine, ServeConfig(model="m", port=0)) as url:  # doctest: +SKIP
        ...     print(url)
        http://127.0.0.1:54321
    """
    import uvicorn

    app = create_app(engine, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            ws_max_size=max(4 * config.max_message_bytes, 1 << 20),
        )
    )
    thread = threading.Thread(target=server.run, name="trl-seqpo-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {config.host}:{config.port}")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{config.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
