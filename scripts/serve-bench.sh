#!/bin/sh
# torchless serve under load (issue 20's "must show"): on a synthetic
# TinyLlama-1.1B-shape Q4_0 model (written by `torchless synth` if absent),
#  1. summed generation speed of N concurrent clients vs the same N requests
#     sent one after another (continuous batching);
#  2. time to first token of a conversation's second turn with and without
#     prompt caching (cache_prompt: false).
# Usage: scripts/serve-bench.sh [BUILD_DIR] (env: THREADS=2 CLIENTS=8 TOKENS=64 MODEL=...)
# Needs node (fetch only, no npm packages).
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
cli=$build/torchless
model=${MODEL:-$build/bench/tinyllama-1.1b-q4_0.gguf}
if [ ! -f "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$cli" synth --preset tinyllama-1.1b --type q4_0 -o "$model"
fi
grep -m1 'model name' /proc/cpuinfo || true
grep -m1 'cpu family' /proc/cpuinfo || true
exec node "$here/scripts/serve-bench.mjs" "$cli" "$model" "${THREADS:-2}" "${CLIENTS:-8}" "${TOKENS:-64}"
