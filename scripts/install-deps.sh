#!/bin/sh
# Installs the Debian/Ubuntu packages torchless needs to build and test.
# As root it runs apt-get; otherwise it names the missing packages and stops.
# With --fuzz: the clang toolchain of `make fuzz` instead (Debian 12: clang 14,
# whose libFuzzer runtime is in libclang-rt-14-dev).
# With --neon: the AArch64 cross build of `make test-neon`: Debian's cross gcc,
# qemu-user to run the tests, and the arm64 libraries from Debian multiarch
# (adds the arm64 architecture to dpkg).
# With --hip: hipcc and the HIP runtime headers of `make hip` (Debian 12: ROCm
# 5.2; hipcc brings clang-15, llvm-15, lld-15 and rocm-device-libs).
set -e
PKGS="build-essential cmake pkg-config libcjson-dev libcmocka-dev libpcre2-dev libmicrohttpd-dev"
# Python's jinja2 (and numpy) run at test time: the chat templates are compared
# with jinja2 byte for byte, and reference scripts use numpy.
PKGS="$PKGS python3 python3-jinja2 python3-numpy"
FUZZ=0
NEON=0
HIP=0
if [ "${1:-}" = "--hip" ]; then
  HIP=1
  PKGS="$PKGS hipcc libamdhip64-dev"
fi
if [ "${1:-}" = "--fuzz" ]; then
  FUZZ=1
  rt=libclang-rt-dev
  if apt-cache show libclang-rt-14-dev >/dev/null 2>&1; then rt=libclang-rt-14-dev; fi
  PKGS="$PKGS clang $rt"
fi
if [ "${1:-}" = "--neon" ]; then
  NEON=1
  PKGS="$PKGS gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libcjson-dev:arm64"
  PKGS="$PKGS libpcre2-dev:arm64 libcmocka-dev:arm64"
fi
# chromium (headless): the browser test of the chat page of `torchless serve`
if [ "$FUZZ" = 0 ] && [ "$NEON" = 0 ] && [ "$HIP" = 0 ]; then PKGS="$PKGS chromium"; fi
# OpenCL: the headers to build the OpenCL backend, the ICD loader it opens at
# run time, and PoCL's CPU device that its tests run on
if [ "$FUZZ" = 0 ] && [ "$NEON" = 0 ] && [ "$HIP" = 0 ]; then
  PKGS="$PKGS opencl-c-headers ocl-icd-opencl-dev pocl-opencl-icd"
fi
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
# Node.js and npm run the tokenizer peer at test time (any Node.js >= 18 will do).
if [ "$FUZZ" = 0 ] && [ "$NEON" = 0 ] && [ "$HIP" = 0 ] && ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "torchless: missing packages:$missing (no apt-get found; install them with your package manager)" >&2
  exit 1
fi
arm64=0
if [ "$NEON" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then arm64=1; fi
if [ "$(id -u)" != "0" ]; then
  echo "torchless: missing packages:$missing" >&2
  if [ "$arm64" = 1 ]; then echo "first enable arm64 packages: sudo dpkg --add-architecture arm64" >&2; fi
  echo "install them with: sudo apt-get update && sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "torchless: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if [ "$arm64" = 1 ]; then dpkg --add-architecture arm64; fi
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
