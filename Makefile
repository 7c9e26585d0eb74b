# The two commands: `make run` (the main job on the default suite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0: the CPU build is what these machines carry; override for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
SUITE ?= suites/depthwise.yaml
PRESET ?= quick

.PHONY: run test lint venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[torch,dev]"
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/convbench run $(SUITE) --preset $(PRESET)

# The core tests, then each backend's own tests in a pytest process of their own:
# frameworks are never imported together into one process.
test: venv
	$(BIN)/ruff check convbench backends tests
	$(BIN)/python -m pytest -q tests --ignore=tests/backends
	$(BIN)/python -m pytest -q tests/backends/torch

lint: venv
	$(BIN)/ruff check convbench backends tests
	$(BIN)/ruff format --check convbench backends tests

clean:
	rm -rf $(VENV) build *.egg-info
