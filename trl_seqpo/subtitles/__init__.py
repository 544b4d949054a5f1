"""Subtitle data for ALPO, framework-free (no torch, no TRL): read/write files, align two languages by time, and
cut aligned programmes into numbered-line documents (ALPO Sec. 3.2, Sec. 4.1, App. A.2, App. F.1)."""

from __future__ import annotations

from trl_seqpo.subtitles.align import AlignedGroup, AlignmentResult, align_cues
from trl_seqpo.subtitles.documents import (
    Document,
    ParsedDocument,
    make_documents,
    parse_numbered_output,
    render_document_prompt,
    render_line_prompt,
    render_numbered_lines,
    sft_examples,
)
from trl_seqpo.subtitles.io import Cue, read_subtitles, write_subtitles

__all__ = [
    "AlignedGroup",
    "AlignmentResult",
    "Cue",
    "Document",
    "ParsedDocument",
    "align_cues",
    "make_documents",
    "parse_numbered_output",
    "read_subtitles",
    "render_document_prompt",
    "render_line_prompt",
    "render_numbered_lines",
    "sft_examples",
    "write_subtitles",
]
