# The two commands: `make run` (the main job on the default suite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0: the CPU build is what these machines carry; override for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# pytest processes of the core tests (pytest-xdist, one test file per process at a time:
# their module fixtures stay whole). Two on a 2-core machine: the core tests take about
# 1,150 CPU seconds, most of them in subprocesses and framework imports.
TEST_WORKERS ?= 2
SUITE ?= suites/depthwise.yaml
PRESET ?= quick

.PHONY: run test lint venv clean report frameworks mxnet-venv executorch-venv arm-emulated

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[torch,kernels,dev]"
	touch $@

venv: $(BIN)/.installed

# The other frameworks' backends (tensorflow, onnxruntime, jax, litert) and ray (the fleet tests
# start a local Ray cluster: docs/fleet.md) in the same venv (litert: ai-edge-litert, a 21 MB
# wheel, ~60 MB installed, ~8 s on top of TensorFlow): the backends
# never share a process, each runs in its own worker. MXNet needs NumPy < 1.24, so it
# gets its own venv (scripts/setup-mxnet.sh), which the runner uses for mxnet.
# tvm: apache-tvm 0.27.0.post1 fits the same venv (it needs only apache-tvm-ffi, ml_dtypes,
# numpy, typing_extensions: pip install --dry-run changes nothing else); a 100.5 MB wheel,
# ~318 MB installed (tvm 305 MB + tvm_ffi 13 MB), 8.6 s to install here (the wheel already
# in pip's cache from a --dry-run); plus cloudpickle (2 s) for MetaSchedule's workers.
VENV_MXNET ?= .venv-mxnet
PYTHON_MXNET ?= python3.11
$(BIN)/.frameworks: $(BIN)/.installed
	$(BIN)/pip install -q -e ".[torch,tensorflow,onnxruntime,jax,litert,tvm,fleet,dev]"
	touch $@

$(VENV_MXNET)/.installed: pyproject.toml scripts/setup-mxnet.sh scripts/mxnet-constraints.txt
	PYTHON_MXNET=$(PYTHON_MXNET) scripts/setup-mxnet.sh $(VENV_MXNET)

# executorch 1.5.1 pins its torch and brings ~40 packages (~270 MB): its own venv
# (scripts/setup-executorch.sh), with torch $(TORCH_SPEC) and convbench[torch,executorch].
VENV_EXECUTORCH ?= .venv-executorch
$(VENV_EXECUTORCH)/.installed: pyproject.toml scripts/setup-executorch.sh
	TORCH_SPEC="$(TORCH_SPEC)" scripts/setup-executorch.sh $(VENV_EXECUTORCH)

# darknet: Debian's libdarknet (driven through ctypes, no pip package), by apt only where
# running as root with apt-get; never fails the target (its cases are then skipped rows).
frameworks: $(BIN)/.frameworks $(VENV_MXNET)/.installed $(VENV_EXECUTORCH)/.installed
	-@if [ -f /usr/lib/darknet/libdarknet.so ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y darknet >/dev/null 2>&1 || \
	  (apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y darknet >/dev/null 2>&1) || \
	  echo "darknet: apt-get install darknet failed; the darknet backend stays unavailable"; \
	else echo "darknet: not installed (as root: apt-get install darknet)"; fi
mxnet-venv: $(VENV_MXNET)/.installed
executorch-venv: $(VENV_EXECUTORCH)/.installed

run: venv
	$(BIN)/convbench run $(SUITE) --preset $(PRESET)

# The core tests (tests/test_conformance.py holds every registered backend, as its plugin
# declares), then each backend's own tests: every folder of tests/backends (a backend's,
# or the shared lowering's) in a pytest process of its own, with the interpreter that
# backend's workers get, TEST_WORKERS folders at a time (scripts/test-backends.sh):
# frameworks are never imported together into one process.
# The browser tests drive Debian's chromium (installed here where missing; run as root).
test: venv frameworks
	$(BIN)/ruff check convbench backends tests
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=12 tests --ignore=tests/backends --ignore=tests/browser
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pytest -q tests/browser
	PYTHON=$(BIN)/python JOBS=$(TEST_WORKERS) scripts/test-backends.sh

# `make report`: the quick preset of every suite that has one, run on this machine, then
# the HTML site of those runs in $(REPORT_OUT) (open its index.html).
REPORT_RUNS ?= results/report-quick
REPORT_OUT ?= reports/latest
report: venv frameworks
	rm -rf $(REPORT_RUNS)
	for s in suites/*.yaml; do \
	  $(BIN)/python -c "import sys; from convbench.suite import load_suite; sys.exit(0 if 'quick' in load_suite(sys.argv[1]).presets else 3)" $$s; \
	  rc=$$?; [ $$rc -eq 3 ] && continue; [ $$rc -eq 0 ] || exit 1; \
	  $(BIN)/convbench run $$s --preset quick --out $(REPORT_RUNS)/$$(basename $$s .yaml) || exit 1; \
	done
	$(BIN)/convbench report $(REPORT_RUNS) -o $(REPORT_OUT)

# `make arm-emulated`: an arm64 Debian bookworm userland (debootstrap + qemu-user-static,
# cached in .cache/arm64), convbench[torch,onnxruntime] installed in it from PyPI, then the
# smoke suite and the torch/onnxruntime conformance tests run there, then the deploy runtimes
# (litert, tvm, executorch) from their aarch64 wheels and their own tests (docs/arm.md). Needs root.
ARM_STAGE ?= all
arm-emulated:
	scripts/arm/emulated.sh $(ARM_STAGE)

lint: venv
	$(BIN)/ruff check convbench backends tests
	$(BIN)/zizmor --offline .github/workflows
	PYTHONPATH=backends $(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(VENV_MXNET) $(VENV_EXECUTORCH) build *.egg-info

# GPU evidence (docs/gpu.md). `make gpu-wheels` (here, with network): the wheels the GPU
# machine lacks (scripts/gpu/requirements.txt) for CPython 3.12 manylinux x86_64.
# `make gpu-evidence`: the one command for the GPU machine. `make gpu-rehearsal`: the same
# script on a CPU (tiny suite, TRITON_INTERPRET=1, fake nvidia-smi); not part of `make test`.
.PHONY: gpu-wheels gpu-evidence gpu-rehearsal
gpu-wheels:
	$(BIN)/pip download -q --dest scripts/gpu/wheelhouse --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  -r scripts/gpu/requirements.txt
	du -sh scripts/gpu/wheelhouse
gpu-evidence:
	scripts/gpu/evidence.sh
gpu-rehearsal: venv
	PYTHON=$(BIN)/python scripts/gpu/evidence.sh --rehearsal
