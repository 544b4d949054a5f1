"""``trl-seqpo serve simt``: a streaming simultaneous-translation server (an app: it imports the library, nothing
imports it). `create_app` builds the ASGI app around a `trl_seqpo.rollout.streaming.StreamingEngine`."""

from trl_seqpo.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
