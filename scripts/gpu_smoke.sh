#!/usr/bin/env bash
# GPU smoke test: SeqPO and ALPO for a few steps on CUDA in bf16 with a randomly initialised Qwen2-shaped model of
# Qwen2.5-0.5B's layer shapes, plain and under DeepSpeed ZeRO-3 (one process), printing step times and peak memory.
# Fits in 10 minutes on one H100 with nothing fetched there.
#
#   scripts/gpu_smoke.sh --build-wheels    # here, with the package index: trl, datasets, deepspeed, this package and
#                                          # their dependencies as wheels in .whl/ (git-ignored; travels with the tree)
#   scripts/gpu_smoke.sh                   # on the GPU machine (torch, transformers, accelerate, peft installed)
#   scripts/gpu_smoke.sh --tiny            # a 2-layer model on CPU, no DeepSpeed: checks the script itself
#   scripts/gpu_smoke.sh --dry-run         # print the commands only
#
# Environment: PYTHON (default python3), WHEEL_PYTHON_VERSION (the GPU machine's Python for --build-wheels, 3.11),
# SMOKE_OUT (gpu_smoke_out), SMOKE_STEPS (4).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="$ROOT/.whl"
OUT="${SMOKE_OUT:-gpu_smoke_out}"
STEPS="${SMOKE_STEPS:-4}"
MODE="${1:-gpu}"

run() {
    echo "+ $*" >&2
    [[ "$MODE" == "--dry-run" ]] || "$@"
}

if [[ "$MODE" == "--build-wheels" ]]; then
    mkdir -p "$WHEELS"
    pyver="${WHEEL_PYTHON_VERSION:-3.11}"
    run "$PYTHON" -m pip wheel -q --no-deps -w "$WHEELS" "$ROOT"
    # deepspeed is an sdist: build its (pure Python, ops compiled just in time) wheel here
    run env DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" "deepspeed>=0.18.6"
    # what the GPU machine lacks: trl, datasets and this package's other dependencies (torch & co. are there)
    run "$PYTHON" -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version "$pyver" \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        "trl==1.16.0" "datasets>=4.7" sacrebleu pysubs2 openai rich hjson ninja py-cpuinfo msgpack nvidia-ml-py
    ls "$WHEELS"
    exit 0
fi

TINY=()
if [[ "$MODE" == "--tiny" ]]; then
    TINY=(--tiny)
else
    # install what travelled as wheels; --no-index: nothing is fetched, what is already installed stays
    if ! "$PYTHON" -c "import trl, datasets, deepspeed, trl_seqpo" 2>/dev/null; then
        run "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" trl datasets deepspeed trl-seqpo
    fi
    run nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS
for stage in seqpo alpo; do
    run "$PYTHON" "$ROOT/scripts/gpu_smoke.py" --stage "$stage" --output "$OUT" --steps "$STEPS" "${TINY[@]}"
done
if [[ "$MODE" != "--tiny" ]]; then
    for stage in seqpo alpo; do
        run "$PYTHON" -m accelerate.commands.launch --num_processes 1 \
            --config_file "$ROOT/trl_seqpo/recipes/accelerate_configs/zero3.yaml" \
            "$ROOT/scripts/gpu_smoke.py" --stage "$stage" --output "$OUT/zero3" --steps "$STEPS" --label zero3
    done
fi
echo "gpu smoke done in $((SECONDS - start)) s" >&2
