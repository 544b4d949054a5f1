"""`trl-seqpo serve simt`: the streaming SiMT server (`trl_seqpo.serve`), flags generated from `ServeConfig`."""

from __future__ import annotations

import argparse
import os
from typing import Any

from trl_seqpo.cli.options import add_action, add_command_group, add_dataclass_arguments, config_from_args
from trl_seqpo.errors import MissingDependencyError, UserInputError

__all__ = ["add_parser"]

SERVE_INSTALL_HINT = 'the server needs FastAPI and uvicorn: pip install "trl-seqpo[serve]"'


def add_parser(subparsers: Any) -> None:
    """Register `trl-seqpo serve` with its `simt` action."""
    from trl_seqpo.serve.app import ServeConfig

    actions = add_command_group(
        subparsers, "serve", help="serve a model over HTTP", description="Serve a model to streaming clients."
    )
    simt = add_action(actions, "simt", run_simt)
    from trl_seqpo.rollout.settings import DECODING_FIELDS

    # the server's own flags first, then the decoding ones shared with `evaluate simt`
    add_dataclass_arguments(simt, ServeConfig, required=("model",), exclude=DECODING_FIELDS)
    add_dataclass_arguments(simt, ServeConfig, include=DECODING_FIELDS)


def engine_for(config: Any, backend: Any, tokenizer: Any) -> Any:
    """The `StreamingEngine` of a `ServeConfig`: every rollout field the config holds, by name."""
    from trl_seqpo.rollout.settings import rollout_fields
    from trl_seqpo.rollout.streaming import StreamingEngine

    return StreamingEngine(backend, tokenizer, seed=config.seed, keep_kv=config.kv_cache, **rollout_fields(config))


def run_simt(args: argparse.Namespace) -> int:
    """stream simultaneous translation over WebSocket (sessions batched in lockstep)

    Clients open a session, send source chunks as they arrive and receive each target increment as soon as the policy
    writes it (docs/serving.md). Binds 127.0.0.1 unless --host says otherwise.
    """
    try:
        import uvicorn

        from trl_seqpo.serve.app import ServeConfig, create_app
    except ImportError as error:
        raise MissingDependencyError(f"{SERVE_INSTALL_HINT} ({error})") from None
    from trl_seqpo.rollout.loading import load_backend

    config = config_from_args(ServeConfig, args)
    if config.token is None:
        config.token = os.environ.get("TRL_SEQPO_SERVE_TOKEN") or None
    loaded = load_backend(config.model, config.backend, device=config.device, dtype=config.dtype, seed=config.seed)
    try:
        try:
            engine = engine_for(config, loaded.backend, loaded.tokenizer)
        except ValueError as error:
            raise UserInputError(f"--model {config.model}: {error}") from None
        app = create_app(engine, config)
        # uvicorn refuses frames past ws_max_size itself; ours are checked (with a clear error) below that
        ws_max_size = max(4 * config.max_message_bytes, 1 << 20)
        print(f"trl-seqpo: serving {config.model} on ws://{config.host}:{config.port}/v1/simt/stream", flush=True)
        uvicorn.run(app, host=config.host, port=config.port, ws_max_size=ws_max_size, log_level="warning")
    finally:
        loaded.close()
    return 0
