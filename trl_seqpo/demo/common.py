"""What every stage of `trl-seqpo demo` shares: settings, paths, the context, and small file helpers.

The demo is an app on top of the library (`CONTRIBUTING.md`, "apps on top"): nothing in `trl_seqpo` outside
`demo/` and `cli/` imports it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from trl_seqpo.errors import UserInputError

__all__ = [
    "DemoContext",
    "DemoPaths",
    "DemoSettings",
    "QuickSettings",
    "check_saved_settings",
    "code_fingerprint",
    "done_marker",
    "record_code",
    "say",
    "setting",
    "train_sft",
    "training_arguments",
]


def training_arguments(settings: Any, prefix: str, output_dir: Path, *, logs: int) -> dict[str, Any]:
    """The `TrainingArguments` every demo training run shares, as keyword arguments of a TRL config.

    Steps, batch size and learning rate are the settings' ``PREFIX_steps``, ``PREFIX_batch_size`` and
    ``PREFIX_learning_rate`` fields (``sft_steps``, ...), the seed is ``settings.seed``; the run writes to
    ``output_dir``, logs about ``logs`` times, and runs on the CPU in float32 with no checkpoints and no reports.
    """
    steps = getattr(settings, f"{prefix}_steps")
    return {
        "output_dir": str(output_dir),
        "max_steps": steps,
        "per_device_train_batch_size": getattr(settings, f"{prefix}_batch_size"),
        "learning_rate": getattr(settings, f"{prefix}_learning_rate"),
        "logging_steps": max(1, steps // logs),
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "seed": settings.seed,
    }


def setting(default: Any, *, quick: Any) -> Any:
    """A settings field whose quick run (`QuickSettings.quick`) uses ``quick`` instead of ``default``."""
    return field(default=default, metadata={"quick": quick})


class QuickSettings:
    """Base of the demo's settings dataclasses: `quick` builds the tiny variant from the fields' `setting` values."""

    @classmethod
    def quick(cls) -> Any:
        """Tiny sizes for tests: every stage runs, in well under a minute (no gain is expected)."""
        return cls(**{f.name: f.metadata["quick"] for f in dataclasses.fields(cls) if "quick" in f.metadata})


@dataclass
class DemoSettings(QuickSettings):
    """Sizes and hyper-parameters of the SeqPO part of the demo (the full run; `quick` for tests).

    SFT values start from ``DESIGN.md`` "Demo calibration" (hidden 128, 2 layers) with a constant learning rate of
    3e-3 after 20 warm-up steps. Sized for a demo under 10 minutes on an idle 2-core CPU: one SFT warm-up on the
    data as it is (``extra_wait=(0,)``: every write as early as the gold alignment allows), sentences of at most 10
    words, 400 steps of batch 32. ``extra_wait`` other than ``(0,)`` delays the SFT start's writes on purpose (an
    experiment; the claims are about the undelayed start).
    """

    seed: int = 0
    num_train: int = setting(4000, quick=256)
    num_test: int = setting(200, quick=12)
    min_words: int = 4
    max_words: int = 10
    chunk_size: int = 2
    extra_wait: tuple[int, ...] = (0,)
    tokenizer_kind: str = "wordlevel"
    sft_steps: int = setting(400, quick=8)
    sft_batch_size: int = setting(32, quick=16)
    sft_learning_rate: float = 3e-3
    sft_lr_scheduler: str = "constant_with_warmup"
    seqpo_steps: int = setting(100, quick=2)
    seqpo_batch_size: int = setting(32, quick=8)
    seqpo_num_generations: int = setting(8, quick=4)
    seqpo_learning_rate: float = 5e-4
    seqpo_temperature: float = 1.0
    seqpo_beta: float = 0.02
    seqpo_max_new_tokens_per_step: int = 12
    seqpo_latency_truncation: str = "eager"
    seqpo_latency_floor: float = 0.0
    wait_k: tuple[int, ...] = setting((1, 2, 3, 4, 5), quick=(1, 3))
    max_new_tokens_per_step: int = 24
    max_steps_after_source: int = 2
    eval_batch_size: int = setting(64, quick=12)

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class _Under:
    """A path attribute of `DemoPaths`: ``train = _Under("data", "train.jsonl")`` is ``root/data/train.jsonl``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, paths: None, owner: type) -> _Under: ...

    @overload
    def __get__(self, paths: DemoPaths, owner: type | None = None) -> Path: ...

    def __get__(self, paths: DemoPaths | None, owner: type | None = None) -> Path | _Under:
        return self if paths is None else paths.root.joinpath(*self.parts)


@dataclass(frozen=True)
class DemoPaths:
    """Where every stage writes, under the output directory."""

    root: Path
    settings = _Under("settings.json")
    data = _Under("data")
    train = _Under("data", "train.jsonl")
    test = _Under("data", "test.jsonl")
    models = _Under("models")
    results = _Under("results.jsonl")
    translations = _Under("translations")
    claims = _Under("claims.json")
    timings = _Under("timings.json")
    cpu_timings = _Under("cpu_timings.json")

    def model(self, name: str) -> Path:
        return self.models / name


@dataclass
class DemoContext:
    """What every stage receives: settings, paths, a rich console (or ``None``), stage wall and CPU times, ALPO
    settings."""

    settings: DemoSettings
    paths: DemoPaths
    console: Any
    timings: dict[str, float] = field(default_factory=dict)
    alpo: Any = None
    cpu_timings: dict[str, float] = field(default_factory=dict)


def say(ctx: Any, message: str) -> None:
    """Print on the context's console, if it has one."""
    console = getattr(ctx, "console", None)
    if console is not None:
        console.print(message)


def done_marker(directory: Path) -> Path:
    """The file whose presence marks a stage's output directory as complete."""
    return directory / "DONE"


def check_saved_settings(directory: Path, wanted: dict[str, Any], what: str = "a demo run") -> None:
    """Save ``wanted`` as ``directory/settings.json``, or check it equals the saved one (resuming other settings
    would mix two runs).

    Raises:
        UserInputError: The directory holds a run with other settings (the differing keys are named).
    """
    path = directory / "settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != wanted:
            changed = sorted(k for k in {*wanted, *saved} if saved.get(k) != wanted.get(k))
            raise UserInputError(
                f"{directory} holds {what} with other settings ({', '.join(changed)}); "
                "use another --output-dir or delete this one",
                path=str(path),
            )
    else:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2))


def code_fingerprint() -> dict[str, str]:
    """The version and a SHA-256 of every ``.py`` file of the `trl_seqpo` package that runs now."""
    import hashlib

    import trl_seqpo

    package = Path(trl_seqpo.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return {"version": trl_seqpo.__version__, "source_sha256": digest.hexdigest()}


def record_code(directory: Path, ctx: Any = None) -> bool:
    """Append the running code's `code_fingerprint` to ``directory/code.json`` and warn when the run was started by
    other code: the stages it finished are reused as they are, so its results would mix two versions.

    Returns:
        Whether every earlier invocation on this directory ran the same code.
    """
    path = directory / "code.json"
    history = json.loads(path.read_text()) if path.exists() else []
    current = code_fingerprint()
    same = all(entry == current for entry in history)
    if not same:
        say(
            ctx,
            f"[yellow]warning:[/yellow] {directory} was started by other trl_seqpo code (source sha256 "
            f"{history[0]['source_sha256'][:12]}, now {current['source_sha256'][:12]}); the stages it finished are "
            "reused as they are, so its results may mix two versions: use a new --output-dir for a clean run",
        )
    if not history or history[-1] != current:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([*history, current], indent=2))
    return same


def train_sft(dataset: Any, init: Path, out: Path, **arguments: Any) -> None:
    """Train the model and tokenizer saved in ``init`` on ``dataset`` with TRL's ``SFTTrainer``, save both to
    ``out`` with ``sft_metrics.json``, and mark ``out`` done.

    Args:
        dataset: The SFT rows (a `datasets.Dataset`).
        init: Directory of the starting model and tokenizer.
        out: Directory of the trained model.
        **arguments: The run's `SFTConfig` fields (`training_arguments`, loss, lengths, ...).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init)
    config = SFTConfig(dataset_num_proc=None, **arguments)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out))  # saves the tokenizer too (the trainer's processing class)
    metrics = {"train_runtime_s": result.metrics.get("train_runtime"), "train_loss": result.training_loss}
    (out / "sft_metrics.json").write_text(json.dumps(metrics, indent=2))
    done_marker(out).write_text("ok\n")
