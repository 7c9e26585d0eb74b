#!/usr/bin/env bash
# The one command for the GPU machine (docs/gpu.md): `make gpu-evidence`.
#   scripts/gpu/evidence.sh              on a CUDA machine (H100/H200), within GPU_BUDGET_S (480 s)
#   scripts/gpu/evidence.sh --rehearsal  the same steps on a CPU: tiny suite, TRITON_INTERPRET=1,
#                                        fake nvidia-smi, device cpu (`make gpu-rehearsal`)
# Each step runs under `timeout` of what is left of the budget; a step that fails or runs
# out is recorded in steps.tsv and the script goes on; whatever finished is kept.
# Writes results/published/<gpu>-<date>/<step>/ (run folders), report/ and steps.tsv.
set -u
cd "$(dirname "$0")/../.."
REHEARSAL=0
[ "${1:-}" = "--rehearsal" ] && REHEARSAL=1
BUDGET=${GPU_BUDGET_S:-480}
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

if [ $REHEARSAL = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}
  export TRITON_INTERPRET=1 CONVBENCH_GPU_TELEMETRY=always CONVBENCH_NVIDIA_SMI=$PWD/scripts/gpu/fake-nvidia-smi
  GPU=rehearsal-cpu
  OUT=${GPU_OUT:-results/rehearsal/$GPU-$(date +%Y%m%d-%H%M%S)}
else
  PY=${PYTHON:-python3}
  # The wheelhouse (make gpu-wheels) into a private target: the machine has no network.
  DEPS=$PWD/.gpu-deps
  if [ -d scripts/gpu/wheelhouse ]; then
    $PY -m pip install -q --no-index --find-links scripts/gpu/wheelhouse --target "$DEPS" \
      -r scripts/gpu/requirements.txt || echo "evidence: wheelhouse install failed" >&2
  fi
  export PYTHONPATH="$DEPS:$PWD:$PWD/backends${PYTHONPATH:+:$PYTHONPATH}"
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9_.-')
  GPU=${GPU:-unknown-gpu}
  OUT=${GPU_OUT:-results/published/$GPU-$(date +%Y%m%d)}
fi
# convbench from this checkout, its backends registered by name (no install needed)
export CONVBENCH_EXTRA_BACKENDS="torch=convbench_torch:TorchBackend,jax=convbench_jax.backend:JaxBackend"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT"
STEPS=$OUT/steps.tsv
printf 'step\tstatus\tseconds\n' > "$STEPS"
CB="$PY -m convbench"

step() {  # step NAME MIN_SECONDS MAX_SECONDS CMD...: run CMD for at most MAX_SECONDS of what is
  # left, unless under MIN_SECONDS are left (the caps keep time for the later steps)
  local name=$1 need=$2 cap=$3; shift 3
  local t0 rc=0 remaining
  remaining=$(left)
  if [ "$remaining" -lt "$need" ]; then printf '%s\tskipped: %ss left\t0\n' "$name" "$remaining" >> "$STEPS"; return; fi
  [ "$remaining" -gt "$cap" ] && remaining=$cap
  t0=$(date +%s)
  echo "== $name (up to $remaining s)" >&2
  timeout --signal=INT --kill-after=10 "$remaining" "$@" || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$([ $rc = 0 ] && echo ok || echo "rc=$rc")" $(( $(date +%s) - t0 )) >> "$STEPS"
}

# The GPU command's suites and filters (tests/test_gpu_command.py dry-runs each of them
# against the suites: every one must parse and select cases). Caps sum to 460 of 480 s.
FIDELITY="$PY scripts/gpu/fidelity.py"
if [ $REHEARSAL = 1 ]; then
  T=scripts/gpu/rehearsal/tiny.yaml
  step depthwise 5 120 $CB run $T --out "$OUT/depthwise"
  step fidelity 5 60 $FIDELITY --cpu-stand-in --suite $T --filter "variant == 'native' and mode == 'inference'" --rounds 2 --out "$OUT/fidelity"
  step kernels 5 110 $CB run $T --filter "variant == 'kernel'" --out "$OUT/kernels"
  step shift 5 90 $CB run suites/shift.yaml --filter "device == 'cpu' and workload == 'addrshift_tiny'" --out "$OUT/shift"
  step paper 5 80 $CB run $T --filter "variant in ['native', 'diagonalwise']" --out "$OUT/paper"
  step profile 5 40 $CB profile $T --filter "mode == 'training' and variant == 'native'" --steps 2 --out "$OUT/profile"
else
  step depthwise 60 120 $CB run suites/depthwise.yaml --filter "device == 'cuda' and batch == 64" --out "$OUT/depthwise"
  step fidelity 30 60 $FIDELITY --suite suites/depthwise.yaml --out "$OUT/fidelity"
  step kernels 40 110 $CB run suites/kernels.yaml --preset quick --filter "device == 'cuda'" --out "$OUT/kernels"
  step shift 15 30 $CB run suites/shift.yaml --filter "device == 'cuda' and workload.str.startswith('addrshift')" --out "$OUT/shift"
  step paper 60 80 $CB run suites/paper.yaml --filter "device == 'cuda' and backend in ['torch', 'jax']" --out "$OUT/paper"
  step profile 30 40 $CB profile suites/networks.yaml --filter "device == 'cuda' and mode == 'training' and workload == 'mobilenet_v1_1.0_224'" --steps 10 --out "$OUT/profile"
fi
runs=()
for d in depthwise kernels shift paper; do [ -d "$OUT/$d" ] && runs+=("$OUT/$d"); done
if [ ${#runs[@]} -gt 0 ]; then
  step report 5 60 $CB report "${runs[@]}" -o "$OUT/report"
fi
cat "$STEPS" >&2
echo "$OUT"
