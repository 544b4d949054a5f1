"""Docs are tests: every fenced ```python and ```bash block of README.md and docs/*.md runs here.

How a block runs (see also CONTRIBUTING.md, "Docs are tests"):

- **Skip marker.** A block whose fence is directly preceded by the line ``<!-- docs-test: skip: REASON -->`` is not
  run; pytest reports it as skipped with ``FILE:LINE: REASON`` (``pytest -ra tests/test_docs.py`` lists them all, and
  the session summary ends with ``docs blocks: N run, M skipped``).
- **Working directory.** Every other block runs in a fresh temporary directory holding the tiny assets of
  `TINY_MODELS` and `DATA_FILES` (and a link to ``examples/``): Python blocks with ``python FILE.py``, Bash blocks
  with ``bash -euo pipefail``, both with this checkout first on ``PYTHONPATH`` and the venv's ``bin`` (``python``,
  ``trl-seqpo``, ``accelerate``) first on ``PATH``; nothing is downloaded (``HF_HUB_OFFLINE=1``).
- **Real model names -> tiny models.** `TINY_MODELS` maps each model name or path the docs use (a Hub name such as
  ``Qwen/Qwen2.5-7B-Instruct`` or a path such as ``path/to/your-sft-warmup``) to a tiny model built locally; the
  runner creates that path in the block's directory, so a Hub name resolves to the local directory before the Hub
  is asked. To use a new name in a runnable block, add it to `TINY_MODELS`; the block itself stays as users read it.
- **Cheap training.** With ``TRL_SEQPO_DOCS_TINY=1`` (set for every Bash block), ``python``/``accelerate launch``
  of an ``examples/scripts/NAME.py`` recipe and ``trl-seqpo train NAME`` get `TINY_RECIPE_ARGS` [NAME] appended
  (``--max_steps 1`` and tiny sizes; later flags win). The wrappers are the Bash functions of `BASH_PRELUDE`.
- Blocks that train or run a model are marked ``slow`` (`SLOW_PATTERN`); Python blocks print their traceback with
  the page's line numbers (the script is padded so that line N of the script is line N of the page).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = ("python", "bash")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)")
SKIP_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")
# a block that trains or runs a model (a trainer, a recipe, the demo, a rollout, an evaluation, a translation) or
# builds a COMET checkpoint takes seconds: it is marked slow
SLOW_PATTERN = re.compile(
    r"\.train\(\)|examples/scripts/|trl-seqpo (train|demo|evaluate|subtitles translate)\b|evaluate_simt\(|\.run\(|"
    r"build_tiny_comet_checkpoint\("
)

# Model names and paths used by runnable blocks -> the tiny model that stands in for them (built once per session):
# "policy" is a tiny Qwen2-style chat model with a byte-level BPE tokenizer (any text), "comet" a tiny COMET
# checkpoint.
TINY_MODELS = {
    "path/to/your-sft-warmup": "policy",
    "path/to/sft-model": "policy",
    "runs/sft": "policy",
    "runs/sft-simt": "policy",
    "runs/seqpo": "policy",
    "runs/seqpo-en-zh": "policy",
    "runs/alpo-en-zh": "policy",
    "Qwen/Qwen2.5-7B-Instruct": "policy",
    "Unbabel/wmt22-comet-da": "comet",
}
# Data files the runnable blocks read -> how they are made (a file of tests/data, or a synthetic generator).
DATA_FILES = {
    "harbour.en.srt": "tests/data/subtitles/harbour.en.srt",
    "harbour.zh.ass": "tests/data/subtitles/harbour.zh.ass",
    "show.en.srt": "tests/data/subtitles/harbour.en.srt",
    "show.zh.srt": "tests/data/subtitles/harbour.zh.srt",
    "subs/en/harbour.srt": "tests/data/subtitles/harbour.en.srt",
    "subs/zh/harbour.srt": "tests/data/subtitles/harbour.zh.srt",
    "subs/harbour.en.srt": "tests/data/subtitles/harbour.en.srt",
    "subs/harbour.zh.ass": "tests/data/subtitles/harbour.zh.ass",
    "train.jsonl": "synthetic:pairs",
    "test.jsonl": "synthetic:pairs",
    "data/newstest2021.jsonl": "synthetic:pairs",
    "candidates.jsonl": "synthetic:candidates",
}
# A block that fails with one of these messages is an expected failure until the named fix is merged (then the
# entry goes). TRL's configs default to bf16=True, which transformers refuses on a machine without a bf16 GPU: the
# SeqPO/ALPO snippets of README.md, seqpo.md and alpo.md (written for GPUs) stop there on a CPU-only machine.
PENDING_FIXES: dict[str, str] = {}
# Appended (TRL_SEQPO_DOCS_TINY=1) to the command line of a recipe run by a Bash block: one step at tiny sizes.
TINY_RECIPE_ARGS = {
    "sft_simt": "--max_steps 1 --num_train_examples 8 --per_device_train_batch_size 4 --save_strategy no",
    "seqpo": "--max_steps 1 --num_train_examples 4 --per_device_train_batch_size 4 --num_generations 2 "
    "--max_new_tokens_per_step 2",
    "alpo": "--max_steps 1 --synthetic_documents 2 --per_device_train_batch_size 1 --gradient_accumulation_steps 1 "
    "--save_strategy no",
}
BASH_PRELUDE = r"""
_docs_tiny_args() {  # the TINY_RECIPE_ARGS of the recipe named in "$@", if any
    [[ "${TRL_SEQPO_DOCS_TINY:-}" == 1 ]] || return 0
    local arg
    for arg in "$@"; do
        case "$arg" in
%(cases)s
        esac
    done
}
python() { command python "$@" $(_docs_tiny_args "$@"); }
accelerate() { command accelerate "$@" $(_docs_tiny_args "$@"); }
trl-seqpo() {
    if [[ "${1:-}" == train ]]; then command trl-seqpo "$@" $(_docs_tiny_args "examples/scripts/${2//-/_}.py");
    else command trl-seqpo "$@"; fi
}
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def collect_blocks(path: Path) -> list[Block]:
    """The ``python``/``bash`` fenced blocks of a Markdown file, with the skip reason of the marker above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence, lang = match["indent"], match["fence"], match["lang"]
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{index + 1}: the code fence is never closed")
        if lang in LANGUAGES:
            marker = SKIP_MARKER.match(lines[index - 1]) if index else None
            body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[index + 1 : end]]
            blocks.append(Block(path, index + 1, lang, "\n".join(body) + "\n", marker["reason"] if marker else None))
        index = end + 1
    return blocks


BLOCKS = [block for path in DOC_FILES for block in collect_blocks(path)]


def summary_line(stats: dict[str, list]) -> str | None:
    """``docs blocks: N run (P passed, F failed, X expected to fail), M skipped`` from pytest's reports, or None."""
    counts = {}
    for outcome in ("passed", "failed", "xfailed", "skipped", "error"):
        reports = [r for r in stats.get(outcome, []) if "test_docs.py::test_docs_block[" in getattr(r, "nodeid", "")]
        counts[outcome] = len({r.nodeid for r in reports})
    run = counts["passed"] + counts["failed"] + counts["xfailed"] + counts["error"]
    if not run and not counts["skipped"]:
        return None
    return (
        f"docs blocks: {run} run ({counts['passed']} passed, {counts['failed'] + counts['error']} failed, "
        f"{counts['xfailed']} expected to fail), {counts['skipped']} skipped (marked in the page; -ra lists them)"
    )


def _param(block: Block):
    marks = [pytest.mark.slow] if SLOW_PATTERN.search(block.code) else []
    if block.skip_reason is not None:  # skipped before the fixtures: a skipped block builds nothing
        marks = [pytest.mark.skip(reason=f"{block.where}: {block.skip_reason}")]
    return pytest.param(block, id=block.where, marks=marks)


# ---------------------------------------------------------------------------------------------------------- assets
def _synthetic_pairs(path: Path) -> None:
    from trl_seqpo.jsonl import atomic_write_jsonl
    from trl_seqpo.synthetic import language_pair

    examples = language_pair.generate_corpus(2, seed=0, min_words=3, max_words=5)
    atomic_write_jsonl(path, [{"source": e.source, "reference": e.reference} for e in examples])


def _synthetic_candidates(path: Path) -> None:
    from trl_seqpo.jsonl import atomic_write_jsonl
    from trl_seqpo.recipes.scripts.alpo import synthetic_candidate_records

    atomic_write_jsonl(path, synthetic_candidate_records(documents=1, lines_per_document=3, seed=0))


def _save_short_answer_model(path: Path, texts: list[str]) -> None:
    """The tiny policy: any text in (byte-level BPE), short answers out.

    Its next-token distribution is fixed (the trick of `trl_seqpo.synthetic.subtitles.save_line_writer_model`):
    the end of text with probability about 0.8, else one of a few word tokens, so greedy decoding stops at once and
    sampling writes a word or two. Generation, the costly part of evaluating or training an untrained model, then
    takes milliseconds.
    """
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_seqpo.synthetic.tiny_models import save_tiny_model

    save_tiny_model(path, kind="bpe", extra_texts=texts, hidden_size=64, num_heads=2, head_dim=32, num_layers=1,
                    intermediate_size=128, tie_word_embeddings=False)  # fmt: skip
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    words = sorted({tokenizer.convert_tokens_to_ids(token) for token in ("Ġthe", "Ġwe", "Ġgo")} - {None})
    logits = torch.full((len(tokenizer),), -30.0)
    logits[words] = 0.0
    logits[tokenizer.eos_token_id] = math.log(4 * max(len(words), 1))
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 30.0
        head = model.get_output_embeddings().weight
        head.zero_()
        head[:, 0] = logits / math.sqrt(model.config.hidden_size)
    model.save_pretrained(path)


@pytest.fixture(scope="session")
def docs_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny policy and the data files, built once; every block's directory links to them (COMET: `populate`)."""
    assets = tmp_path_factory.mktemp("docs-assets")
    texts = [
        "Despite the pouring rain, hikers kept going to the top.",
        "尽管下着大雨，徒步者们坚持向山顶前进。我们去公园散步",
    ]
    _save_short_answer_model(assets / "policy", texts)
    data = assets / "data"
    for name, source in DATA_FILES.items():
        target = data / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source == "synthetic:pairs":
            _synthetic_pairs(target)
        elif source == "synthetic:candidates":
            _synthetic_candidates(target)
        else:
            shutil.copy(ROOT / source, target)
    return assets


def populate(workdir: Path, assets: Path, code: str) -> None:
    """Give a block's directory the tiny models under the docs' names, the data files and ``examples/``.

    The tiny COMET checkpoint (seconds to build) is built the first time a block mentions COMET.
    """
    if "comet" in code.lower() and not (assets / "comet").exists():
        from trl_seqpo.synthetic.tiny_comet import build_tiny_comet_checkpoint

        build_tiny_comet_checkpoint(assets / "comet")
    links = {name: assets / kind for name, kind in TINY_MODELS.items()}
    links.update({name: assets / "data" / name for name in DATA_FILES})
    links["examples"] = ROOT / "examples"
    for name, target in links.items():
        if not target.exists():
            continue
        link = workdir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=target.is_dir())


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRL_SEQPO_DOCS_TINY="1")
    env.update(TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true", CUDA_VISIBLE_DEVICES="", MPLBACKEND="Agg")
    return env


def _bash_prelude() -> str:
    cases = "\n".join(
        f'            */examples/scripts/{name}.py|examples/scripts/{name}.py) echo "{args}"; return ;;'
        for name, args in TINY_RECIPE_ARGS.items()
    )
    return BASH_PRELUDE % {"cases": cases}


def run_block(block: Block, workdir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    if block.lang == "python":
        script = workdir / f"{block.path.name}-L{block.line}.py"
        script.write_text("\n" * block.line + block.code, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-euo", "pipefail", "-c", _bash_prelude() + block.code]
    return subprocess.run(
        command, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=timeout, check=False
    )


# ---------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_docs_block(block: Block, docs_assets: Path, tmp_path: Path) -> None:
    populate(tmp_path, docs_assets, block.code)
    result = run_block(block, tmp_path)
    for message, fix in PENDING_FIXES.items():
        if result.returncode != 0 and message in result.stderr:
            pytest.xfail(f"{block.where}: waits for {fix} ({message!r})")
    assert result.returncode == 0, (
        f"{block.where} ({block.lang}) exited with {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n"
        f"--- stderr\n{result.stderr[-6000:]}"
    )


# ---------------------------------------------------------------------------------------------------------- the runner
def test_collector_reads_the_skip_marker_only_directly_above_the_fence(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip: needs a GPU -->\n```bash\nnvidia-smi\n```\n"
        "<!-- docs-test: skip: too far -->\n\n```python\nprint(1)\n```\n"
        "- item\n\n  ```python\n  x = 1\n  ```\n```text\nnot code\n```\n",
        encoding="utf-8",
    )
    blocks = collect_blocks(page)
    assert [(b.line, b.lang, b.skip_reason) for b in blocks] == [(2, "bash", "needs a GPU"), (7, "python", None),
                                                                 (12, "python", None)]  # fmt: skip
    assert blocks[2].code == "x = 1\n"
    page.write_text("```python\nprint(1)\n", encoding="utf-8")
    with pytest.raises(ValueError, match="never closed"):
        collect_blocks(page)


def test_every_page_block_is_collected_and_the_tiny_names_exist():
    assert len(BLOCKS) >= 50 and {b.path.name for b in BLOCKS} >= {"README.md", "seqpo.md", "alpo.md"}
    runnable = "".join(b.code for b in BLOCKS if b.skip_reason is None)
    unused = [name for name in [*TINY_MODELS, *DATA_FILES] if name not in runnable and "/" not in name[:5]]
    assert not [name for name in unused if not name.startswith(("subs/", "Unbabel/"))], unused


def test_user_docs_cite_no_issue_numbers_and_no_unpublished_install():
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bissues? \d+", text, flags=re.IGNORECASE), f"{path.name} cites an issue number"
        assert not re.search(r"pip install (\"|')?trl-seqpo\b", text), f"{path.name}: trl-seqpo is not on PyPI"


def test_docstrings_use_examples_sections():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "trl_seqpo").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.fullmatch(r"\s+Example::?", line)
    ]
    assert not offenders, f"use 'Examples:' (rendered as an example block): {offenders}"
