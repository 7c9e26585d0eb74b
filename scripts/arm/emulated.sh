#!/usr/bin/env bash
# Build an arm64 Debian bookworm userland and run convbench in it under qemu-user.
#
# Usage: scripts/arm/emulated.sh [all|rootfs|install|smoke|conformance|deploy|deploy-summary|shell]
#
# Stages (each is timed into $CACHE/timings.log; done stages are skipped on rerun):
#   rootfs       debootstrap --arch=arm64 --foreign, then the second stage inside it
#   install      python3 venv in the rootfs + convbench[torch,onnxruntime,dev] (aarch64
#                wheels from PyPI); the checkout is copied in fresh every time
#   smoke        convbench run suites/smoke.yaml --preset quick (torch/onnxruntime/reference)
#   conformance  tests/test_conformance.py for torch and onnxruntime (see CONFORMANCE_K)
#   deploy       the deploy runtimes' aarch64 wheels (litert, tvm into the venv; executorch
#                into a venv of its own, as scripts/setup-executorch.sh does) and each
#                backend's own tests (LITERT_K, TVM_K, EXECUTORCH_K; DEPLOY_BACKENDS picks
#                some); a runtime without an aarch64 wheel is a logged skip; results in
#                $OUT/deploy (deploy-summary rewrites its summary from the records)
# ARM_NO_COPY=1 leaves the checkout in the rootfs as it is (another stage runs from it).
#
# How aarch64 binaries run: binfmt_misc with qemu-aarch64-static registered with the
# "F" (fix binary) flag, so a plain chroot works and no qemu copy is needed inside the
# rootfs. Where binfmt_misc cannot be mounted or written (an unprivileged container),
# the script falls back to `proot -q qemu-aarch64-static` (slower: ptrace on every
# syscall). Force one with ARM_RUNNER=chroot|proot.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM_CACHE:-$HERE/.cache/arm64}
ROOTFS=$CACHE/rootfs
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE_NAME=${DEBIAN_SUITE:-bookworm}
TORCH_SPEC=${ARM_TORCH_SPEC:-torch==2.13.0}
OUT=${ARM_OUT:-$HERE/results/arm64-emulated}
# The CPU qemu emulates. Neoverse-N1 (Graviton2; NEON like the Cortex-A76 of a Pi 5 and
# the A78AE of a Jetson Orin) by default: with qemu's "max" CPU (SVE at 512 bits) torch
# 2.13.0 computes a wrong input gradient (docs/arm.md); "max,sve-max-vq=2" is 256-bit SVE.
QEMU_CPU_MODEL=${ARM_QEMU_CPU:-neoverse-n1}
# pytest -k selection of tests/test_conformance.py run under emulation
CONFORMANCE_K=${CONFORMANCE_K:-torch or onnxruntime}
# pytest -k selections of each deploy backend's own tests (the litert and tvm tests run
# their whole suite once in a module fixture whatever -k keeps; -k trims the executorch
# tests, which run in process)
LITERT_K=${LITERT_K:-}
TVM_K=${TVM_K:-}
EXECUTORCH_K=${EXECUTORCH_K:-info or small_network or depthwise_variants or float16 or training}
# copy: the executorch venv starts as a copy of the main venv (torch TORCH_SPEC already in
# it: minutes instead of reinstalling ~3 GB under qemu); fresh: python3 -m venv + torch
EXECUTORCH_VENV_FROM=${ARM_EXECUTORCH_VENV:-copy}
TIMINGS=$CACHE/timings.log
SRC_IN=/opt/convbench          # the checkout, copied into the rootfs
# The host's CA bundle: where HTTPS goes through a proxy with its own CA, the host trusts
# it and Debian's bundle in the rootfs does not.
HOST_CA=${ARM_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
HOST_CA_IN=/etc/ssl/certs/convbench-host-ca.crt
VENV_IN=/opt/venv
EXECUTORCH_VENV_IN=/opt/venv-executorch

log() { printf '\033[1m[arm64]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

timed() {  # timed NAME CMD...: run CMD, append "NAME SECONDS" to the timings log
  local name=$1; shift
  local start=$SECONDS
  "$@"
  local took=$((SECONDS - start))
  mkdir -p "$CACHE"
  printf '%s %s %ds\n' "$(date -u +%FT%TZ)" "$name" "$took" >>"$TIMINGS"
  log "$name took ${took}s"
}

need_root() { [ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"; }

ensure_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v proot >/dev/null || missing+=(proot)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

binfmt_ok() {  # true when aarch64 ELF files run through qemu via binfmt_misc
  local dir=/proc/sys/fs/binfmt_misc
  [ -e $dir/register ] || mount -t binfmt_misc binfmt_misc $dir 2>/dev/null || return 1
  if [ ! -e $dir/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || return 1
  fi
  grep -q '^enabled' $dir/qemu-aarch64 && grep -q '^flags: .*F' $dir/qemu-aarch64
}

choose_runner() {
  RUNNER=${ARM_RUNNER:-}
  if [ -z "$RUNNER" ]; then
    if binfmt_ok; then RUNNER=chroot; else RUNNER=proot; fi
  elif [ "$RUNNER" = chroot ]; then
    binfmt_ok || die "ARM_RUNNER=chroot but binfmt_misc cannot register qemu-aarch64"
  fi
  log "runner: $RUNNER"
}

MOUNTED=()
mount_fs() {
  [ "$RUNNER" = chroot ] || return 0
  local m
  # Not /sys: the host's sysfs lists x86 CPUs next to qemu's pass-through x86 /proc/cpuinfo,
  # and the cpuinfo library in torch and onnxruntime segfaults on that mix (without
  # /sys it warns and carries on).
  for m in proc dev; do
    mountpoint -q "$ROOTFS/$m" && continue
    case $m in
      proc) mount -t proc proc "$ROOTFS/proc" ;;
      *) mount --rbind "/$m" "$ROOTFS/$m"; mount --make-rslave "$ROOTFS/$m" ;;
    esac
    MOUNTED+=("$ROOTFS/$m")
  done
}
umount_fs() {
  local m
  for m in "${MOUNTED[@]}"; do umount -R "$m" 2>/dev/null || umount -lR "$m" 2>/dev/null || true; done
  MOUNTED=()
}
trap umount_fs EXIT

inside() {  # inside CMD...: run CMD in the arm64 userland (as root, HOME=/root)
  local env=(env -i HOME=/root PATH=$VENV_IN/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
             PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR=/var/cache/pip PIP_DEFAULT_TIMEOUT=180
             PIP_CERT=$HOST_CA_IN SSL_CERT_FILE=$HOST_CA_IN REQUESTS_CA_BUNDLE=$HOST_CA_IN
             QEMU_CPU=$QEMU_CPU_MODEL "${INSIDE_ENV[@]}")
  if [ "$RUNNER" = chroot ]; then
    chroot "$ROOTFS" "${env[@]}" "$@"
  else
    proot -0 -q qemu-aarch64-static -r "$ROOTFS" -b /proc -b /dev ${GUEST_CPUINFO:+-b "$GUEST_CPUINFO:/proc/cpuinfo" -b "$GUEST_SYS:/sys"} \
      -w / "${env[@]}" "$@"
  fi
}
INSIDE_ENV=()

stage_rootfs() {
  if [ -e "$CACHE/.rootfs-done" ]; then log "rootfs cached in $ROOTFS"; return; fi
  rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"
  timed debootstrap-first-stage debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,ca-certificates "$SUITE_NAME" "$ROOTFS" "$MIRROR"
  if [ "$RUNNER" = chroot ]; then
    timed debootstrap-second-stage chroot "$ROOTFS" /debootstrap/debootstrap --second-stage
  else
    timed debootstrap-second-stage proot -0 -q qemu-aarch64-static -r "$ROOTFS" -b /proc -b /sys -b /dev \
      -w / /debootstrap/debootstrap --second-stage
  fi
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
  inside uname -m | grep -qx aarch64 || die "the rootfs does not report aarch64"
  touch "$CACHE/.rootfs-done"
}

copy_source() {  # the checkout (tracked + untracked, not ignored files) into the rootfs
  rm -rf "${ROOTFS:?}$SRC_IN"; mkdir -p "$ROOTFS$SRC_IN"
  (cd "$HERE" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
     | tar --null -T - -cf -) | tar -xf - -C "$ROOTFS$SRC_IN"
}

host_files() {  # DNS and the CA bundle of the host, into the rootfs
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
  cp "$HOST_CA" "$ROOTFS$HOST_CA_IN" 2>/dev/null || cp "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$ROOTFS$HOST_CA_IN"
}

stage_install() {
  local stamp; stamp=$( (cat "$HERE/pyproject.toml"; echo "$TORCH_SPEC") | sha256sum | cut -c1-16)
  if [ "$(cat "$CACHE/.install-done" 2>/dev/null)" != "$stamp" ]; then
    [ -x "$ROOTFS$VENV_IN/bin/python" ] || timed venv inside python3 -m venv $VENV_IN
    timed pip-upgrade inside pip install -q --upgrade pip
    # PyPI's aarch64 torch wheel is the CPU build (no nvidia-* requirements): see docs/arm.md
    timed pip-install-torch inside pip install -q "$TORCH_SPEC"
    timed pip-install-convbench inside pip install -q -e "$SRC_IN[torch,onnxruntime]" pytest pytest-timeout
    echo "$stamp" >"$CACHE/.install-done"
  else
    timed pip-install-convbench-only inside pip install -q --no-deps -e "$SRC_IN"
  fi
  inside python -c 'import platform, torch, onnxruntime; print(platform.machine(), "torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'
}

stage_smoke() {
  rm -rf "$ROOTFS/tmp/smoke-run"
  # suites/smoke.yaml with onnxruntime added to every CPU matrix (it has torch and the
  # reference); its quick preset if it has one; CPU cases only (no GPU in the guest).
  inside python - "$SRC_IN/suites/smoke.yaml" /tmp/smoke-arm64.yaml <<'PY'
import sys, yaml
suite = yaml.safe_load(open(sys.argv[1]))
for m in suite["matrix"] if isinstance(suite["matrix"], list) else [suite["matrix"]]:
    if "cpu" in m.get("device", ["cpu"]):
        m["backend"] = list(dict.fromkeys([*m.get("backend", ["torch"]), "torch", "onnxruntime", "reference"]))
suite["name"] = "smoke-arm64"
yaml.safe_dump(suite, open(sys.argv[2], "w"), sort_keys=False)
print("quick" if "quick" in (suite.get("presets") or {}) else "")
PY
  local preset; preset=$(inside python -c 'import yaml; print("--preset quick" if "quick" in (yaml.safe_load(open("/tmp/smoke-arm64.yaml")).get("presets") or {}) else "")')
  timed smoke-run inside sh -c "cd $SRC_IN && convbench run /tmp/smoke-arm64.yaml $preset \
    --filter \"device == 'cpu'\" --out /tmp/smoke-run"
  # the run folder is $OUT itself; the other stages' outputs (deploy/, conformance/) stay
  mkdir -p "$OUT"
  find "$OUT" -mindepth 1 -maxdepth 1 ! -name deploy ! -name conformance -exec rm -rf {} +
  cp -r "$ROOTFS/tmp/smoke-run/." "$OUT/"
  inside python - /tmp/smoke-run <<'PY'
import json, sys
import pandas as pd
meta = json.load(open(sys.argv[1] + "/run.json"))
core = meta["environment"]["core"]
print(f"run folder: architecture={core.get('architecture')} emulated={core.get('emulated')} "
      f"emulator={core.get('emulator')} ({core.get('emulation_evidence')})")
for name, env in meta["environment"]["backends"].items():
    print(f"  {name}: {env.get('version') or ''} available={env.get('available')}")
cases = pd.read_parquet(sys.argv[1] + "/cases.parquet")
print(cases.groupby(["backend", "status"]).size().to_string())
if core.get("architecture") != "aarch64" or core.get("emulated") is not True:
    sys.exit("the emulated run must record architecture aarch64 and emulated: true")
if cases.status.isin(["error", "mismatch"]).any():
    sys.exit("the emulated smoke run has failing cases")
PY
  log "smoke run copied to $OUT"
}

stage_conformance() {
  INSIDE_ENV=(${CONFORMANCE_ENV:-})
  mkdir -p "$OUT/conformance"
  timed conformance inside sh -c "cd $SRC_IN && python -m pytest -q -p no:cacheprovider \
    tests/test_conformance.py -k '$CONFORMANCE_K'" 2>&1 | tee "$OUT/conformance/pytest.txt"
  INSIDE_ENV=()
}

# --- deploy: litert, tvm (main venv) and executorch (its own venv) from aarch64 wheels ---
DEPLOY_IN=/tmp/deploy            # per-backend records and pytest outputs, inside the rootfs
WHEELS_IN=/var/cache/convbench-wheels

deploy_spec() {  # deploy_spec EXTRA: the extra's first requirement (the runtime's pin)
  inside python -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"][sys.argv[2]][0])' \
    "$SRC_IN/pyproject.toml" "$1"
}

rec() {  # rec BACKEND KEY VALUE: one line of the backend's record
  printf '%s=%s\n' "$2" "$3" >>"$ROOTFS$DEPLOY_IN/$1.rec"
}

venv_bytes() { du -sb "$ROOTFS$1" 2>/dev/null | cut -f1; }

executorch_venv() {  # the executorch venv: a copy of the main one, or fresh
  [ -e "$ROOTFS$EXECUTORCH_VENV_IN/pyvenv.cfg" ] && return 0
  if [ "$EXECUTORCH_VENV_FROM" = copy ]; then
    cp -a "$ROOTFS$VENV_IN" "$ROOTFS$EXECUTORCH_VENV_IN"
    # a venv is not relocatable: its scripts' shebangs and activate name its path
    grep -rlI --null "$VENV_IN" "$ROOTFS$EXECUTORCH_VENV_IN/bin" "$ROOTFS$EXECUTORCH_VENV_IN/pyvenv.cfg" \
      | xargs -0 -r sed -i "s#$VENV_IN\\b#$EXECUTORCH_VENV_IN#g"
  else
    inside python3 -m venv $EXECUTORCH_VENV_IN
    inside $EXECUTORCH_VENV_IN/bin/python -m pip install -q --upgrade pip
    inside $EXECUTORCH_VENV_IN/bin/python -m pip install -q "$TORCH_SPEC"
  fi
}

deploy_one() {  # deploy_one BACKEND VENV TESTS K: probe, install, test one runtime
  local b=$1 venv=$2 tests=$3 k=$4 spec start took before after stamp
  local py=$venv/bin/python
  spec=$(deploy_spec "$b")
  rm -f "$ROOTFS$DEPLOY_IN/$b".*
  rec "$b" spec "$spec"; rec "$b" venv "$venv"; rec "$b" tests "$tests"; rec "$b" k "$k"
  # 1. an aarch64 wheel for this interpreter (no sdist: building one under qemu is not the point)
  [ -e "$ROOTFS$venv/pyvenv.cfg" ] || py=$VENV_IN/bin/python
  if ! inside $py -m pip download -q --no-deps --only-binary=:all: -d $WHEELS_IN "$spec" \
      >"$ROOTFS$DEPLOY_IN/$b.probe.txt" 2>&1; then
    if ! grep -q 'No matching distribution\|Could not find a version' "$ROOTFS$DEPLOY_IN/$b.probe.txt"; then
      rec "$b" status probe-failed
      rec "$b" reason "pip download $spec failed: $(tail -1 "$ROOTFS$DEPLOY_IN/$b.probe.txt")"
      log "$b: pip download failed (see $OUT/deploy/$b.probe.txt)"
      return 0
    fi
    rec "$b" status skipped
    rec "$b" reason "no aarch64 wheel of $spec for CPython $(inside python -c 'import sys; print("%d.%d" % sys.version_info[:2])'): $(grep -m1 -E 'ERROR|No matching' "$ROOTFS$DEPLOY_IN/$b.probe.txt" || tail -1 "$ROOTFS$DEPLOY_IN/$b.probe.txt")"
    log "$b: skipped (no aarch64 wheel of $spec)"
    return 0
  fi
  rec "$b" wheel "$(cd "$ROOTFS$WHEELS_IN" && ls -t | grep -i "^$(echo "${spec%%[=<>]*}" | tr - _)-" | head -1)"
  # 2. install: convbench[EXTRA] (editable), with TORCH_SPEC kept where the venv has torch
  [ "$b" = executorch ] && { timed deploy-executorch-venv executorch_venv; py=$venv/bin/python; }
  stamp=$( (cat "$HERE/pyproject.toml"; echo "$TORCH_SPEC $EXECUTORCH_VENV_FROM") | sha256sum | cut -c1-16)
  if [ "$(cat "$CACHE/.deploy-$b-done" 2>/dev/null)" = "$stamp" ] && [ -e "$CACHE/deploy-$b.install" ]; then
    cat "$CACHE/deploy-$b.install" >>"$ROOTFS$DEPLOY_IN/$b.rec"
    cp "$CACHE/deploy-$b.install.txt" "$ROOTFS$DEPLOY_IN/$b.install.txt" 2>/dev/null || true
    rec "$b" install_cached true
  else
    before=$(venv_bytes "$venv"); start=$SECONDS
    local extra=$b; [ "$b" = executorch ] && extra=torch,executorch
    local args=(-e "$SRC_IN[$extra]"); [ "$b" = executorch ] && args=("$TORCH_SPEC" "${args[@]}" pytest pytest-timeout)
    if ! inside $py -m pip install -q "${args[@]}" >"$ROOTFS$DEPLOY_IN/$b.install.txt" 2>&1; then
      rec "$b" status install-failed
      rec "$b" reason "$(grep -m1 -E '^ERROR' "$ROOTFS$DEPLOY_IN/$b.install.txt" || tail -1 "$ROOTFS$DEPLOY_IN/$b.install.txt")"
      log "$b: pip install failed (see $OUT/deploy/$b.install.txt)"
      return 0
    fi
    took=$((SECONDS - start)); after=$(venv_bytes "$venv")
    printf '%s deploy-install-%s %ds\n' "$(date -u +%FT%TZ)" "$b" "$took" >>"$TIMINGS"
    log "deploy-install-$b took ${took}s"
    printf 'install_s=%s\nvenv_growth_bytes=%s\nvenv_bytes=%s\n' "$took" "$((after - before))" "$after" \
      | tee "$CACHE/deploy-$b.install" >>"$ROOTFS$DEPLOY_IN/$b.rec"
    cp "$ROOTFS$DEPLOY_IN/$b.install.txt" "$CACHE/deploy-$b.install.txt"
    echo "$stamp" >"$CACHE/.deploy-$b-done"
  fi
  # tvm's `tuned` links shared libraries with the guest's C++ compiler, which the minbase
  # rootfs lacks (a skipped row without it): installed once, apt under qemu
  if [ "$b" = tvm ] && ! inside sh -c 'command -v g++' >/dev/null 2>&1; then
    start=$SECONDS
    if inside sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null'; then
      printf '%s deploy-tvm-gxx %ds\n' "$(date -u +%FT%TZ)" "$((SECONDS - start))" >>"$TIMINGS"
      rec "$b" compiler "g++ (apt-get install g++ in the rootfs, $((SECONDS - start)) s)"
    else
      rec "$b" compiler "none: apt-get install g++ failed, so tuned is a skipped row"
    fi
  fi
  # 3. the backend's own tests, in the backend's interpreter. A test that kills the
  # interpreter (a segfault in a native runtime) is recorded as crashed and deselected, and
  # pytest goes on with the others (up to DEPLOY_MAX_CRASHES times)
  start=$SECONDS
  local kopt="" desel="" crashed="" id n=0 one="$ROOTFS$DEPLOY_IN/$b.pytest.one"
  [ -n "$k" ] && kopt="-k '$k'"
  : >"$ROOTFS$DEPLOY_IN/$b.pytest.txt"
  while :; do
    if inside sh -c "cd $SRC_IN && $py -X faulthandler -m pytest -v --tb=short -rs -p no:cacheprovider \
        --timeout=1800 $tests $kopt $desel" 2>&1 | tee "$one" >&2; then
      rec "$b" status "$([ -z "$crashed" ] && echo ok || echo tests-crashed)"; break
    fi
    id=$(grep -B1000 -m1 'Fatal Python error' "$one" | grep -o 'tests/[^ ]*::[^ ]*' | tail -1 || true)
    if [ -z "$id" ] || [ $n -ge "${DEPLOY_MAX_CRASHES:-4}" ]; then rec "$b" status tests-failed; break; fi
    log "$b: $id crashed the interpreter; again without it"
    cat "$one" >>"$ROOTFS$DEPLOY_IN/$b.pytest.txt"
    printf '\n===== %s crashed the interpreter: pytest again without it =====\n\n' "$id" >>"$ROOTFS$DEPLOY_IN/$b.pytest.txt"
    crashed="$crashed${crashed:+ ; }$id"; desel="$desel --deselect '$id'"; n=$((n + 1))
  done
  cat "$one" >>"$ROOTFS$DEPLOY_IN/$b.pytest.txt"; rm -f "$one"
  [ -n "$crashed" ] && rec "$b" crashed "$crashed"
  took=$((SECONDS - start)); rec "$b" test_s "$took"
  printf '%s deploy-test-%s %ds\n' "$(date -u +%FT%TZ)" "$b" "$took" >>"$TIMINGS"
  # tvm: its tests' fixture runs the suite with a tuned case in one `convbench run` capped at
  # 600 s, which MetaSchedule under qemu outlasts. The same suite without the tuned case, run
  # directly, still shows whether the other cases build and verify on arm64
  if [ "$b" = tvm ] && ! grep -qx 'status=ok' "$ROOTFS$DEPLOY_IN/$b.rec" && [ "${DEPLOY_TVM_UNTUNED:-1}" = 1 ]; then
    start=$SECONDS
    inside sh -c "cd $SRC_IN && rm -rf /tmp/tvm-untuned && $py -c 'import tests.test_tvm_backend as t; open(\"/tmp/tvm-untuned.yaml\", \"w\").write(t.SUITE)' \
      && $py -m convbench.cli run /tmp/tvm-untuned.yaml --filter \"execution != 'tuned'\" --out /tmp/tvm-untuned; \
      $py -c 'import sys; from convbench.results import read_table; from pathlib import Path; f = read_table(Path(sys.argv[1])); print(f.groupby([\"status\"]).size().to_string()); print(f[[\"case_id\", \"status\", \"verify_error\", \"reason\"]].to_string())' /tmp/tvm-untuned" \
      >"$ROOTFS$DEPLOY_IN/$b.untuned-run.txt" 2>&1 || true
    rec "$b" untuned_run_s $((SECONDS - start))
    rec "$b" untuned_run "$(grep -E '^(ok|skipped|error|mismatch|unsupported) +[0-9]+$' "$ROOTFS$DEPLOY_IN/$b.untuned-run.txt" | tr -s ' ' | paste -sd, -)"
  fi
  log "deploy-test-$b took ${took}s"
}

# The guest's /proc/cpuinfo in the deploy stage. qemu 7.2 passes the host's x86 text through,
# which the cpuinfo library cannot parse for an aarch64 process: XNNPACK then fails to
# initialize (ExecuTorch's XNNPACK lowering raises "Failed to initialize cpuinfo!", LiteRT's
# XNNPACK delegate takes no ops). neoverse-n1 (default): the /proc/cpuinfo text of the CPU
# qemu emulates (ARM_QEMU_CPU), one entry per host CPU; host: the pass-through.
DEPLOY_CPUINFO=${ARM_DEPLOY_CPUINFO:-neoverse-n1}
GUEST_CPUINFO=
GUEST_SYS=
guest_cpuinfo() {
  [ "$DEPLOY_CPUINFO" = host ] && return 0
  [ "$DEPLOY_CPUINFO" = neoverse-n1 ] || die "ARM_DEPLOY_CPUINFO=$DEPLOY_CPUINFO: neoverse-n1 or host"
  GUEST_CPUINFO=$CACHE/cpuinfo-neoverse-n1
  local i
  for i in $(seq 0 $(($(nproc) - 1))); do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i"
  done >"$GUEST_CPUINFO"
  # and the CPU lists of /sys (the host's /sys stays out: see mount_fs): with the cpuinfo
  # text alone ExecuTorch's XNNPACK lowering still failed here, with both it verifies
  GUEST_SYS=$CACHE/guest-sys
  mkdir -p "$GUEST_SYS/devices/system/cpu"
  for i in possible present online; do echo "0-$(($(nproc) - 1))" >"$GUEST_SYS/devices/system/cpu/$i"; done
  if [ "$RUNNER" = chroot ]; then
    mount --bind "$GUEST_CPUINFO" "$ROOTFS/proc/cpuinfo"  # under /proc: umount_fs takes it
    mount --bind "$GUEST_SYS" "$ROOTFS/sys"; MOUNTED+=("$ROOTFS/sys")
  fi
  # convbench's emulation detection may no longer see another architecture in /proc/cpuinfo
  # (it still finds qemu in the memory map under chroot): say it
  INSIDE_ENV=(CONVBENCH_EMULATED=1)
  log "guest /proc/cpuinfo: Neoverse-N1 (ARM_DEPLOY_CPUINFO=host for the host's)"
}

stage_deploy() {
  # each backend's records are replaced when it runs (DEPLOY_BACKENDS=tvm keeps the others')
  mkdir -p "$ROOTFS$DEPLOY_IN" "$ROOTFS$WHEELS_IN"
  guest_cpuinfo
  local b
  for b in ${DEPLOY_BACKENDS:-executorch litert tvm}; do
    case $b in
      litert) deploy_one litert $VENV_IN tests/test_litert_backend.py "$LITERT_K" ;;
      tvm) deploy_one tvm $VENV_IN tests/test_tvm_backend.py "$TVM_K" ;;
      executorch) deploy_one executorch $EXECUTORCH_VENV_IN tests/backends/executorch "$EXECUTORCH_K" ;;
      *) die "unknown deploy backend $b (litert, tvm, executorch)" ;;
    esac
  done
  deploy_summary
}

deploy_summary() {  # summary.json and summary.md from the records, all into $OUT/deploy
  local rc=0
  inside python - $DEPLOY_IN $WHEELS_IN "$DEPLOY_CPUINFO" <<'PY' || rc=$?
import json, os, re, subprocess, sys
from pathlib import Path
out, wheels = Path(sys.argv[1]), Path(sys.argv[2])
DIST = {"litert": ["ai-edge-litert", "tensorflow"], "tvm": ["apache-tvm", "apache-tvm-ffi"],
        "executorch": ["executorch", "torch", "torchao"]}
summary = {}
for rec in sorted(out.glob("*.rec")):
    b = rec.stem
    r = dict(line.split("=", 1) for line in rec.read_text().splitlines() if "=" in line)
    if r.get("wheel") and (wheels / r["wheel"]).exists():
        r["wheel_bytes"] = (wheels / r["wheel"]).stat().st_size
    if r.get("status") in ("ok", "tests-failed"):
        code = ("import json, sys\nfrom importlib import metadata\nd = {}\n"
                "for n in sys.argv[1:]:\n"
                "    try:\n        dist = metadata.distribution(n)\n"
                "    except metadata.PackageNotFoundError:\n        continue\n"
                "    d[n] = {'version': dist.version, 'installed_bytes': sum(f.size or 0 for f in dist.files or [])}\n"
                "print(json.dumps(d))")
        got = subprocess.run([r["venv"] + "/bin/python", "-c", code, *DIST[b]], capture_output=True, text=True)
        r["packages"] = json.loads(got.stdout or "{}")
    text = (out / f"{b}.pytest.txt").read_text() if (out / f"{b}.pytest.txt").exists() else ""
    last = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    if last:
        r["pytest"] = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", last[-1])}
        r["pytest_line"] = last[-1].strip("= ")
    if r.get("crashed"):
        r["crashed"] = r["crashed"].split(" ; ")
        r.setdefault("pytest", {})["crashed"] = len(r["crashed"])
        r["pytest_line"] = (r.get("pytest_line", "") + f"; crashed (interpreter killed): {', '.join(c.split('::')[-1] for c in r['crashed'])}").lstrip("; ")
    summary[b] = r
meta = {"machine": os.uname().machine, "python": sys.version.split()[0],
        "qemu_cpu": os.environ.get("QEMU_CPU"), "guest_cpuinfo": sys.argv[3], "backends": summary,
        "note": "timings under qemu-user emulation: they say nothing about an arm64 CPU"}
(out / "summary.json").write_text(json.dumps(meta, indent=2) + "\n")
lines = [f"# deploy runtimes on {meta['machine']} (emulated, QEMU_CPU={meta['qemu_cpu']}, guest /proc/cpuinfo: {meta['guest_cpuinfo']}, CPython {meta['python']})", "",
         "| backend | status | versions | wheel | installed | install | tests | pytest |", "|---|---|---|---|---|---|---|---|"]
for b, r in summary.items():
    pk = r.get("packages", {})
    vers = ", ".join(f"{n} {v['version']}" for n, v in pk.items())
    inst = ", ".join(f"{n} {v['installed_bytes'] / 2**20:.0f} MiB" for n, v in pk.items())
    wheel = f"{r['wheel']} ({r['wheel_bytes'] / 2**20:.0f} MiB)" if r.get("wheel_bytes") else r.get("wheel", "")
    install = (f"{r['install_s']} s, venv +{int(r['venv_growth_bytes']) / 2**20:.0f} MiB" if r.get("install_s") else "")
    if r.get("install_cached"):
        install += " (cached: measured on the first install)"
    tests = f"`{r['tests']}`" + (f" -k `{r['k']}`" if r.get("k") else "")
    res = r.get("pytest_line") or r.get("reason", "")
    if r.get("untuned_run"):
        res += f"; its suite without the tuned case, `convbench run` directly ({r.get('untuned_run_s')} s): {r['untuned_run']}"
    lines.append(f"| {b} | {r.get('status')} | {vers} | {wheel} | {inst} | {install} | {tests}, {r.get('test_s', '-')} s | {res} |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
bad = [b for b, r in summary.items() if r.get("status") not in ("ok", "skipped")]
sys.exit(f"deploy: {', '.join(bad)} failed" if bad else 0)
PY
  rm -rf "$OUT/deploy"; mkdir -p "$OUT"
  cp -r "$ROOTFS$DEPLOY_IN" "$OUT/deploy"
  log "deploy results copied to $OUT/deploy"
  return $rc
}

main() {
  local what=${1:-all}
  need_root
  ensure_host_tools
  choose_runner
  mkdir -p "$CACHE"
  stage_rootfs
  mount_fs
  # ARM_NO_COPY=1: leave the copy in the rootfs alone (another stage is running from it)
  if [ "$what" != rootfs ]; then host_files; [ -n "${ARM_NO_COPY:-}" ] || copy_source; fi
  case $what in
    rootfs) ;;
    install) stage_install ;;
    smoke) stage_smoke ;;
    conformance) stage_conformance ;;
    deploy) stage_deploy ;;
    deploy-summary) deploy_summary ;;
    shell) inside bash ;;
    all) stage_install; stage_smoke; stage_conformance; stage_deploy ;;
    *) die "unknown stage $what (all, rootfs, install, smoke, conformance, deploy, deploy-summary, shell)" ;;
  esac
  log "timings so far ($TIMINGS):"; cat "$TIMINGS" >&2
}
main "$@"; exit  # one line: an edit of this file while it runs cannot feed bash the rest
