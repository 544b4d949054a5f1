"""A SimulEval 1.1 agent that runs a trl_seqpo simultaneous translator (SeqPO-SiMT Sec. 2.2) inside SimulEval.

SimulEval (text-to-text) streams the source one whitespace-separated token at a time and calls the agent after each
one; the agent answers *read* or *write*. `SeqPOAgent` reads until a chunk of ``--chunk-size`` source units is
complete (or the source has ended), then runs **one step** of the same lockstep rollout that ``trl-seqpo evaluate
simt`` and training use (`SimultaneousRollout`), with the same prompts, stop
rules and fixed policies: an empty step output is a read, a non-empty one a write, and the last step's write carries
``finished=True``. SimulEval then records, for every target unit, the number of source tokens read, which equals
``min(t * m, n)``, the delay ``evaluate simt`` records, so both report the same AL for the same hypotheses when they
count the reference the same way (``evaluate simt --reference-length simuleval``, or any single-spaced reference).

Usage (SimulEval reads plain text files, one sentence per line)::

    simuleval --agent-class trl_seqpo.integrations.simuleval.SeqPOAgent \\
        --source test.en --target test.zh --model-path runs/seqpo --chunk-size 3 \\
        --source-lang English --target-lang Chinese --eval-latency-unit char --sacrebleu-tokenizer zh \\
        --quality-metrics BLEU --latency-metrics AL LAAL AP DAL --output runs/simuleval

Sources measured in characters (Chinese, Japanese): write the source file with the characters separated by spaces
(SimulEval splits sources on whitespace) and pass ``--source-unit char``; the agent glues them back together.

Needs ``simuleval==1.1.4`` and, at run time, its dependencies ``pandas``, ``pyyaml``, ``requests``, ``tornado``,
``textgrid`` and ``sacrebleu``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from trl_seqpo.errors import MissingDependencyError
from trl_seqpo.rollout.incremental import IncrementalTranslator

SIMULEVAL_INSTALL_HINT = (
    "the SimulEval agent needs SimulEval 1.1: pip install --no-deps simuleval==1.1.4 && "
    "pip install pandas pyyaml requests tornado textgrid sacrebleu"
)

try:
    from simuleval.agents import ReadAction, TextToTextAgent, WriteAction
except ImportError:  # the module stays importable (docs, doctests); the agent itself raises on construction
    ReadAction = WriteAction = None
    TextToTextAgent = object

__all__ = ["SIMULEVAL_INSTALL_HINT", "IncrementalTranslator", "SeqPOAgent", "operating_point"]

# the agent's options that are fields of `SimTEvalConfig`: the same flag, type, choices, default and help as in
# `trl-seqpo evaluate simt`, generated from the dataclass (`_add_config_flags`), and handed to it unchanged; besides
# these, every rollout setting `SimTEvalConfig` holds (`_option_names`)
_EVAL_OPTIONS = ("backend", "dtype", "policy", "wait_k_rate", "seed")


def _option_names(config_cls: type) -> list[str]:
    """`_EVAL_OPTIONS` and every field of ``config_cls`` that `rollout_config_from` reads (`rollout_fields`)."""
    import dataclasses

    from trl_seqpo.rollout.settings import rollout_names

    rollout = rollout_names()
    return [*_EVAL_OPTIONS, *(f.name for f in dataclasses.fields(config_cls) if f.name in rollout)]


def operating_point(args: argparse.Namespace) -> tuple[Any, Any]:
    """The `SimTEvalConfig` and `OperatingPoint` of the agent's options: what ``evaluate simt`` would decode."""
    from trl_seqpo.evaluate.simt import OperatingPoint, SimTEvalConfig

    settings = SimTEvalConfig(
        model=args.model_path, data="-", output_dir=".", chunk_sizes=(args.chunk_size,), wait_k=(args.wait_k,),
        **{name: getattr(args, name) for name in _option_names(SimTEvalConfig)},
    )  # fmt: skip
    point = OperatingPoint(args.policy, args.chunk_size, args.wait_k if args.policy == "wait-k" else None)
    return settings, point


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type, names: Sequence[str]) -> None:
    """One ``--flag`` per named field of the dataclass `config_cls`: type, choices, default and help from the field."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(config_cls)
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    for name in names:
        annotation = hints[name]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None
        default = fields[name].default
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=type(choices[0]) if choices else annotation,
            choices=choices,
            default=default,
            help=fields[name].metadata.get("help", "") + ("" if default is None else f" (default: {default})"),
        )


class SeqPOAgent(TextToTextAgent):
    """SimulEval text-to-text agent for a trl_seqpo SiMT model (module docstring); options: ``--help``."""

    def __init__(self, args: argparse.Namespace) -> None:
        if TextToTextAgent is object:
            raise MissingDependencyError(SIMULEVAL_INSTALL_HINT)
        self.translator: IncrementalTranslator | None = None
        super().__init__(args)
        from trl_seqpo.evaluate.simt import rollout_config
        from trl_seqpo.rollout.loading import load_backend
        from trl_seqpo.rollout.simultaneous import SimultaneousRollout

        # the settings `trl-seqpo evaluate simt` would decode this operating point with (validated the same way)
        settings, point = operating_point(args)
        loaded = load_backend(
            args.model_path, args.backend, device=getattr(args, "device", None), dtype=args.dtype, seed=args.seed
        )
        tokenizer, backend = loaded.tokenizer, loaded.backend
        rollout = SimultaneousRollout(backend, tokenizer, rollout_config(settings, point))
        self.translator = IncrementalTranslator(rollout, point.schedule(args.wait_k_rate), seed=args.seed)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        """The agent's options (SimulEval adds its own: ``--source``, ``--target``, ``--output``, ...).

        Every option but ``--model-path`` (SimulEval's name for the model), ``--chunk-size`` and ``--wait-k`` (one
        value each here, a list in ``evaluate simt``) is generated from `SimTEvalConfig`, so the agent and
        ``trl-seqpo evaluate simt`` spell, default and document a setting the same way.
        """
        from trl_seqpo.evaluate.simt import SimTEvalConfig

        parser.add_argument("--model-path", required=True, help="trl_seqpo checkpoint directory")
        parser.add_argument("--chunk-size", type=int, default=3, help="source units per chunk (the paper's m)")
        parser.add_argument("--wait-k", type=int, default=3, help="k of --policy wait-k")
        _add_config_flags(parser, SimTEvalConfig, _option_names(SimTEvalConfig))
        # the agent's earlier spelling of --latency-unit
        parser.add_argument("--target-unit", dest="latency_unit", choices=("word", "char"), help=argparse.SUPPRESS)

    def reset(self) -> None:
        """Start a new sentence."""
        super().reset()
        if getattr(self, "translator", None) is not None:
            self.translator.reset()

    def policy(self) -> Any:
        """Read until the next chunk is complete, then write that step's output (read again if it is empty)."""
        outcome = self.translator.advance(self.states.source, self.states.source_finished)
        if outcome is None:
            return ReadAction()
        text, finished = outcome
        if not text and not finished:
            return ReadAction()  # the policy waits (after the source ended: SimulEval calls again, nothing is read)
        return WriteAction(text, finished=finished)
