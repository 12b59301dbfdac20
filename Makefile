# qa_lightning -- `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Torch is installed only when the venv has none; override for another build, e.g. TORCH="torch==2.14.1".
TORCH  ?= torch==2.13.0

.PHONY: help install test test-fast debug demo bench bench-learn clean

help:  ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install:  ## Create .venv and install qa_lightning + test tools (torch only if missing)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[dev]"

test:  ## Run the whole test suite (slow DDP/resume/CLI runs included), offline
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

test-fast:  ## Unit tests only (skips the multi-process and end-to-end runs)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

debug:  ## Tiny random BERT on tiny local data: fit + validation on CPU in seconds
	HF_HUB_OFFLINE=1 $(PY) -m qa_lightning fit --config configs/debug.yaml

clean:  ## Remove run outputs and caches
	rm -rf runs lightning_logs .pytest_cache
