"""What the ``trl-seqpo alpo sample`` tests share: the tiny line writer, documents of uneven lengths, the command."""

from __future__ import annotations

from pathlib import Path

from trl_seqpo.subtitles.documents import Document
from trl_seqpo.synthetic.subtitles import (
    SOURCE_LANGUAGE,
    TARGET_LANGUAGE,
    make_subtitle_documents,
    save_line_writer_model,
    write_documents,
)


def line_writer_model(path: Path) -> str:
    """Save the tiny model that writes 3-line documents line by line; returns its directory."""
    return str(save_line_writer_model(path, lines_per_document=3))


def documents(folder: Path, lengths: tuple[int, ...] = (2, 3, 3, 2)) -> tuple[Path, list[Document]]:
    """Documents of different lengths (in a batch of two the first one finishes first), written to
    ``folder/docs.jsonl``."""
    docs = make_subtitle_documents(len(lengths), 3, seed=5)
    docs = [Document(d.doc_id, d.source_lines[:n], d.target_lines[:n]) for d, n in zip(docs, lengths, strict=True)]
    return write_documents(docs, folder / "docs.jsonl"), docs


def sample_args(docs_path, output, model_dir, base_url, *extra) -> list[str]:
    """``trl-seqpo alpo sample`` on the tiny line writer: 3 candidates, 2 votes, 2 documents per batch."""
    return [
        "alpo", "sample", str(docs_path), "-o", str(output), "--model", model_dir,
        "--source-lang", SOURCE_LANGUAGE, "--target-lang", TARGET_LANGUAGE,
        "--judge-base-url", base_url, "--judge-model", "local", "--judge-num-shuffles", "2",
        "--num-candidates", "3", "--max-new-tokens", "12", "--documents-per-batch", "2", "--seed", "7",
        "--judge-min-candidates", "1", *extra,
    ]  # fmt: skip
