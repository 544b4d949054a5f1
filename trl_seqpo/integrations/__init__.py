"""Adapters that plug trl_seqpo into other tools' APIs (SimulEval)."""
