#!/bin/sh
# --low-mem (tl_context_params.low_mem, issue 24's first part): the same
# logits and greedy tokens as the normal mode, byte for byte, on the demo
# model and a synthetic 4-layer TinyLlama-shape Q8_0 file; and bench's peak
# RSS under 60 % of the normal mode's on the latter (each layer's weights
# released once it has run).
#   tests/cli/test_low_mem.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok: $1"; }
bad() { n=$((n + 1)); fail=1; echo "FAIL: $1"; }

"$TL" synth --preset tinyllama-1.1b --layers 4 --type q8_0 -t 2 -o "$T/s.gguf" >/dev/null 2>&1 ||
  { echo "FAIL: synth"; exit 1; }
ids=1,450,2201,13,77,900,31,8,120,3
for M in "$ROOT/models/kjv-llama-13m-q8_0.gguf" "$T/s.gguf"; do
  for kv in f16 q8_0; do
    "$TL" eval -m "$M" --ids $ids --kv $kv --logits "$T/a.f32" --greedy 12 -t 2 >"$T/a.txt" &&
      "$TL" eval -m "$M" --ids $ids --kv $kv --logits "$T/b.f32" --greedy 12 -t 2 --low-mem \
        >"$T/b.txt" && cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt" &&
      ok "$(basename "$M") kv $kv: the same logits and greedy tokens with --low-mem" ||
      bad "$(basename "$M") kv $kv: the same logits and greedy tokens with --low-mem"
  done
done
rss() { sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' "$1" | tail -1; }
"$TL" bench -m "$T/s.gguf" -p 0 -n 16 -r 1 -t 2 >"$T/n.txt" 2>&1 &&
  "$TL" bench -m "$T/s.gguf" -p 0 -n 16 -r 1 -t 2 --low-mem >"$T/l.txt" 2>&1 || bad "bench"
a=$(rss "$T/n.txt") b=$(rss "$T/l.txt")
if [ -n "$a" ] && [ -n "$b" ] && [ $((b * 100)) -lt $((a * 60)) ]; then
  ok "peak RSS $b MiB with --low-mem against $a MiB (a $(du -m "$T/s.gguf" | cut -f1) MiB file)"
else
  bad "peak RSS with --low-mem '$b' MiB not under 60 % of '$a' MiB"
fi
if [ $fail -ne 0 ]; then
  echo "test_low_mem: FAILED"
  exit 1
fi
echo "test_low_mem: all $n cases pass"
