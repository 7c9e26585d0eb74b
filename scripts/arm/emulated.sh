#!/usr/bin/env bash
# Build an arm64 Debian bookworm userland and run convbench in it under qemu-user.
#
# Usage: scripts/arm/emulated.sh [all|rootfs|install|smoke|conformance|shell]
#
# Stages (each is timed into $CACHE/timings.log; done stages are skipped on rerun):
#   rootfs       debootstrap --arch=arm64 --foreign, then the second stage inside it
#   install      python3 venv in the rootfs + convbench[torch,onnxruntime,dev] (aarch64
#                wheels from PyPI); the checkout is copied in fresh every time
#   smoke        convbench run suites/smoke.yaml --preset quick (torch/onnxruntime/reference)
#   conformance  tests/test_conformance.py for torch and onnxruntime (see CONFORMANCE_K)
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
TIMINGS=$CACHE/timings.log
SRC_IN=/opt/convbench          # the checkout, copied into the rootfs
# The host's CA bundle: where HTTPS goes through a proxy with its own CA, the host trusts
# it and Debian's bundle in the rootfs does not.
HOST_CA=${ARM_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
HOST_CA_IN=/etc/ssl/certs/convbench-host-ca.crt
VENV_IN=/opt/venv

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
    proot -0 -q qemu-aarch64-static -r "$ROOTFS" -b /proc -b /dev -w / "${env[@]}" "$@"
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
  rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"
  cp -r "$ROOTFS/tmp/smoke-run" "$OUT"
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
  timed conformance inside sh -c "cd $SRC_IN && python -m pytest -q -p no:cacheprovider \
    tests/test_conformance.py -k '$CONFORMANCE_K'"
  INSIDE_ENV=()
}

main() {
  local what=${1:-all}
  need_root
  ensure_host_tools
  choose_runner
  mkdir -p "$CACHE"
  stage_rootfs
  mount_fs
  if [ "$what" != rootfs ]; then host_files; copy_source; fi
  case $what in
    rootfs) ;;
    install) stage_install ;;
    smoke) stage_smoke ;;
    conformance) stage_conformance ;;
    shell) inside bash ;;
    all) stage_install; stage_smoke; stage_conformance ;;
    *) die "unknown stage $what (all, rootfs, install, smoke, conformance, shell)" ;;
  esac
  log "timings so far ($TIMINGS):"; cat "$TIMINGS" >&2
}
main "$@"
