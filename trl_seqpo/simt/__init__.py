"""Simultaneous MT building blocks without any deep-learning framework (no torch import).

Chunking of the source (`chunking`), the two prompt formats
(`templates`), latency metrics that agree with SimulEval (`latency`) and
fixed baseline policies such as wait-k (`policies`).
"""

from trl_seqpo.simt.chunking import (
    Unit,
    count_units,
    default_unit,
    num_chunks,
    split_into_chunks,
    split_units,
)
from trl_seqpo.simt.latency import (
    LATENCY_METRICS,
    average_lagging,
    average_proportion,
    delays_from_steps,
    differentiable_average_lagging,
    latency_batch,
    length_adaptive_average_lagging,
    reference_length,
    sentence_latency,
)
from trl_seqpo.simt.policies import (
    FullSentencePolicy,
    ReadWritePolicy,
    WaitKPolicy,
    constrain_step,
    full_sentence,
    policy_from_name,
    simulate_policy,
    truncate_to_units,
)
from trl_seqpo.simt.templates import (
    CHAT_INSTRUCTION,
    CONTINUE_MARKER,
    END_OF_SOURCE,
    PAPER_INSTRUCTION,
    PromptFormat,
    build_chat_messages,
    render_chat,
    render_paper_prompt,
    template_strings,
)

__all__ = [
    "CHAT_INSTRUCTION",
    "CONTINUE_MARKER",
    "END_OF_SOURCE",
    "LATENCY_METRICS",
    "PAPER_INSTRUCTION",
    "FullSentencePolicy",
    "PromptFormat",
    "ReadWritePolicy",
    "Unit",
    "WaitKPolicy",
    "average_lagging",
    "average_proportion",
    "build_chat_messages",
    "constrain_step",
    "count_units",
    "default_unit",
    "delays_from_steps",
    "differentiable_average_lagging",
    "full_sentence",
    "latency_batch",
    "length_adaptive_average_lagging",
    "num_chunks",
    "policy_from_name",
    "reference_length",
    "render_chat",
    "render_paper_prompt",
    "sentence_latency",
    "simulate_policy",
    "split_into_chunks",
    "split_units",
    "template_strings",
    "truncate_to_units",
]
