"""Re-run the ALPO half of a finished demo run with other ALPO settings, from the same SFT model.

Copies the SFT model (and the untrained one) of ``RUN/alpo/models`` into ``OUT``, applies ``--set`` to the run's
`trl_seqpo.demo.alpo.AlpoDemoSettings` and runs the ALPO stages after the SFT: data (again only when a size of the
data changed), sampling judged over HTTP, pairs and `ALPOTrainer`, the ground-truth evaluation. Prints one JSON line:
the settings changed and ALPO minus SFT on the held-out slots and lines (the values of the demo's ALPO claims).
This is how docs/demo.md's table of ALPO settings was measured.

    python scripts/alpo_demo_variants.py demo_out /tmp/variant --set num_candidates=8 --set alpo_steps=160
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

DATA_SIZES = ("num_sample_documents", "num_test_documents")
#: settings the SFT model depends on: a variant keeps the run's SFT model, so it cannot change them.
SFT_SETTINGS = ("seed", "lines_per_document", "max_words", "synonym_prob", "num_sft_documents", "sft_steps",
                "sft_batch_size", "sft_learning_rate")  # fmt: skip


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_variant(run: Path, out: Path, changes: dict[str, object]) -> dict[str, object]:
    """ALPO stages of ``run``'s settings with ``changes``, written under ``out``; the claims' values.

    Raises:
        ValueError: ``run`` has no finished ALPO SFT model, ``out`` exists, or a change names no setting or one the
            SFT model depends on.
    """
    import torch

    from trl_seqpo.demo.alpo import AlpoDemoSettings, stage_alpo_data, stage_alpo_sample, stage_alpo_train
    from trl_seqpo.demo.alpo_evaluate import stage_alpo_evaluate

    if not (run / "alpo" / "models" / "sft" / "DONE").exists():
        raise ValueError(f"{run} holds no finished ALPO SFT model (run `trl-seqpo demo` first)")
    if out.exists():
        raise ValueError(f"{out} exists; give a new directory")
    settings = json.loads((run / "alpo" / "settings.json").read_text())
    unknown = sorted(set(changes) - set(settings))
    if unknown:
        raise ValueError(f"no ALPO demo setting named {', '.join(unknown)}")
    fixed = sorted(set(changes) & set(SFT_SETTINGS))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} would change the SFT model; run `trl-seqpo demo` with it instead")
    settings.update(changes)
    alpo = out / "alpo"
    alpo.mkdir(parents=True)
    if not any(name in changes for name in DATA_SIZES):  # the same documents: reuse them
        shutil.copytree(run / "alpo" / "data", alpo / "data")
    for name in ("init", "sft"):
        shutil.copytree(run / "alpo" / "models" / name, alpo / "models" / name)
    (alpo / "settings.json").write_text(json.dumps(settings, indent=2))
    torch.set_num_threads(1)  # as the demo: the same numbers run after run
    ctx = SimpleNamespace(
        settings=SimpleNamespace(seed=settings["seed"]),
        paths=SimpleNamespace(root=out),
        console=None,
        alpo=AlpoDemoSettings(**settings),
    )
    start = time.process_time()
    for stage in (stage_alpo_data, stage_alpo_sample, stage_alpo_train, stage_alpo_evaluate):
        stage(ctx)
    report = json.loads((out / "alpo_results.json").read_text())
    sft, trained = ({row["system"]: row for row in report["results"]}[name] for name in ("sft", "alpo"))
    return {
        "run": str(run),
        "seed": settings["seed"],
        "changes": changes,
        "slots": sft["slots"],
        "preferred_before": sft["preferred_pct"],
        "preferred_gain": trained["preferred_pct"] - sft["preferred_pct"],
        "meaning_delta": trained["rendered_pct"] - sft["rendered_pct"],
        "exact_lines_delta": trained["exact_pct"] - sft["exact_pct"],
        "pair_rows": report.get("pair_rows"),
        "cpu_s": round(time.process_time() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `trl-seqpo demo` output directory")
    parser.add_argument("out", type=Path, help="new directory for the variant")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="an ALPO demo setting")
    args = parser.parse_args(argv)
    changes = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set wants NAME=VALUE, got {item!r}")
        changes[name] = _value(value)
    try:
        print(json.dumps(run_variant(args.run, args.out, changes)))
    except ValueError as error:
        print(f"alpo_demo_variants: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
