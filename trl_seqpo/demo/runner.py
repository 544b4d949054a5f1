"""`trl-seqpo demo`: the stages in order, the run directory, and resuming.

Every stage is a function ``stage(ctx: DemoContext) -> None`` that writes its output under the output directory
and returns at once when that output already exists, so a killed demo resumes where it stopped and a rerun
retrains nothing. `run_demo` runs all of them, or the ones named in ``stages`` (the others are skipped, their
outputs reused): on a busy machine, run ``--stages data,sft`` now and the rest later.

Stages: the SeqPO part (`trl_seqpo.demo.seqpo`), the ALPO part (`trl_seqpo.demo.alpo`), then ``report``
(`trl_seqpo.demo.report`: tables, plot, ``claims.json``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trl_seqpo.demo.alpo_evaluate import ALPO_STAGES
from trl_seqpo.demo.common import DemoContext, DemoPaths, DemoSettings, check_saved_settings, record_code, say
from trl_seqpo.demo.report import stage_report
from trl_seqpo.demo.seqpo import SEQPO_STAGES

__all__ = ["STAGES", "run_demo", "stage_names"]

#: the demo's stages, in order.
STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [*SEQPO_STAGES, *ALPO_STAGES, ("report", stage_report)]


def stage_names() -> list[str]:
    """The names of `STAGES`, in order."""
    return [name for name, _ in STAGES]


def run_demo(
    output_dir: str | os.PathLike[str],
    settings: DemoSettings | None = None,
    console: Any = None,
    num_threads: int | None = 1,
    stages: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the stages of the demo.

    Args:
        output_dir: Directory for data, models and results; reusing it resumes a previous run.
        settings: Sizes and hyper-parameters; defaults to the full demo.
        console: A ``rich.console.Console`` for output (a default one when ``None``).
        num_threads: torch intra-op threads; ``None`` keeps torch's default. One thread is the default because the
            tiny model's matrices gain little from more, and on a busy machine two threads were measured 4x slower
            per SFT step than one (threads waiting for each other).
        stages: Names of the stages to run (see `stage_names`); ``None`` runs them all.

    Returns:
        ``{"timings_s": {stage: wall seconds}, "cpu_s": {stage: CPU seconds of this process}, "claims":
        claims.json's content or None}``. With one torch thread the CPU seconds are about the wall time the stage
        takes on an idle machine, whatever else shares the CPU.

    Raises:
        ValueError: An unknown stage name, or ``output_dir`` is a file.
        UserInputError: ``output_dir`` holds a run with other settings.
    """
    import json

    import torch
    from rich.console import Console

    wanted = list(stages) if stages is not None else stage_names()
    unknown = [name for name in wanted if name not in stage_names()]
    if unknown:
        raise ValueError(f"unknown demo stage(s) {unknown}; the stages are {stage_names()}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    settings = settings or DemoSettings()
    paths = DemoPaths(Path(output_dir))
    if paths.root.exists() and not paths.root.is_dir():
        raise ValueError(f"{paths.root} exists and is not a directory")
    check_saved_settings(paths.root, settings.to_json())
    ctx = DemoContext(settings, paths, console or Console())
    record_code(paths.root, ctx)
    if paths.timings.exists():  # stages run by earlier invocations (a resumed or staged run)
        ctx.timings.update(json.loads(paths.timings.read_text()))
    if paths.cpu_timings.exists():
        ctx.cpu_timings.update(json.loads(paths.cpu_timings.read_text()))
    for name, stage in STAGES:
        if name not in wanted:
            continue
        start, cpu_start = time.perf_counter(), time.process_time()
        say(ctx, f"[bold]stage {name}[/bold]")
        stage(ctx)
        wall, cpu = round(time.perf_counter() - start, 2), round(time.process_time() - cpu_start, 2)
        say(ctx, f"  done in {wall:.1f} s ({cpu:.1f} s of CPU)")
        # a stage whose output already exists returns at once: keep the times of the run that did the work
        for times, path, value in ((ctx.timings, paths.timings, wall), (ctx.cpu_timings, paths.cpu_timings, cpu)):
            saved = json.loads(path.read_text()) if path.exists() else {}
            times[name] = max(value, saved.get(name, 0.0))
            path.write_text(json.dumps({**saved, name: times[name]}, indent=2))
    claims = json.loads(paths.claims.read_text()) if paths.claims.exists() else None
    return {"timings_s": ctx.timings, "cpu_s": ctx.cpu_timings, "claims": claims}
