#!/bin/sh
# --low-mem / --mem-budget (tl_context_params.low_mem, mem_budget_mb): the
# same logits and greedy tokens as the normal mode, byte for byte, on the demo
# model and a synthetic 4-layer TinyLlama-shape Q8_0 file (layers of 47 MiB,
# an output head of 66 MiB), with the default budget (the whole file fits:
# nothing dropped) and budgets of one and two layers; bench's peak RSS under
# 60 % of the normal mode's with a 100 MiB budget; bad budgets refused.
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
    "$TL" eval -m "$M" --ids $ids --kv $kv --logits "$T/a.f32" --greedy 12 -t 2 >"$T/a.txt" ||
      bad "eval $M"
    for mode in "--low-mem" "--low-mem --mem-budget 100" "--mem-budget 1"; do
      # shellcheck disable=SC2086
      "$TL" eval -m "$M" --ids $ids --kv $kv --logits "$T/b.f32" --greedy 12 -t 2 $mode \
        >"$T/b.txt" 2>"$T/err" && cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt" &&
        ok "$(basename "$M") kv $kv: the same logits and greedy tokens with $mode" ||
        bad "$(basename "$M") kv $kv: the same logits and greedy tokens with $mode: $(cat "$T/err")"
    done
  done
done
# every format: a Hugging Face folder (its safetensors mapping streamed), the
# folder quantized on load (--quant: a temporary GGUF, mapped), a Torchless
# .bin (int8), with one-layer budgets
"$TL" convert "$ROOT/tests/data/llama" "$T/l.bin" --quant int8 >/dev/null 2>&1 || bad "convert to .bin"
sids=1,45,220,13,77,90,31,8
for spec in "$ROOT/tests/data/llama|" "$ROOT/tests/data/llama|--quant q4_k_m" "$T/l.bin|" \
  "$ROOT/tests/data/phi3|"; do
  M=${spec%%|*} q=${spec#*|}
  # shellcheck disable=SC2086
  "$TL" eval -m "$M" $q --ids $sids --logits "$T/a.f32" --greedy 8 -t 2 >"$T/a.txt" 2>"$T/err" &&
    "$TL" eval -m "$M" $q --ids $sids --logits "$T/b.f32" --greedy 8 -t 2 --mem-budget 1 \
      >"$T/b.txt" 2>"$T/err" && cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt" &&
    ok "$(basename "$M") $q: the same logits and greedy tokens with --mem-budget 1" ||
    bad "$(basename "$M") $q: the same logits and greedy tokens with --mem-budget 1: $(cat "$T/err")"
done
# a mixture of experts (the stacked expert tensors streamed), where the
# shared fixtures are present
MX=$ROOT/../shared/fixtures/models/mixtral/model-q8_0.gguf
if [ -f "$MX" ]; then
  "$TL" eval -m "$MX" --ids $sids --logits "$T/a.f32" --greedy 8 -t 2 >"$T/a.txt" 2>"$T/err" &&
    "$TL" eval -m "$MX" --ids $sids --logits "$T/b.f32" --greedy 8 -t 2 --mem-budget 1 \
      >"$T/b.txt" 2>"$T/err" && cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt" &&
    ok "mixtral q8_0 (experts): the same logits and greedy tokens with --mem-budget 1" ||
    bad "mixtral q8_0 (experts) with --mem-budget 1: $(cat "$T/err")"
else
  echo "SKIPPED: --low-mem on a mixture of experts (no ../shared/fixtures/models/mixtral)"
fi
for v in 0 -5 abc 99999999999; do
  if "$TL" eval -m "$T/s.gguf" --ids $ids --mem-budget "$v" >/dev/null 2>"$T/err"; then
    bad "--mem-budget $v accepted"
  elif grep -q "mem-budget" "$T/err" && [ "$(wc -l <"$T/err")" -le 2 ]; then
    ok "--mem-budget $v refused: $(head -1 "$T/err")"
  else
    bad "--mem-budget $v: $(cat "$T/err")"
  fi
done
rss() { sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' "$1" | tail -1; }
"$TL" bench -m "$T/s.gguf" -p 0 -n 16 -r 1 -t 2 >"$T/n.txt" 2>&1 &&
  "$TL" bench -m "$T/s.gguf" -p 0 -n 16 -r 1 -t 2 --low-mem --mem-budget 100 >"$T/l.txt" 2>&1 ||
  bad "bench"
a=$(rss "$T/n.txt") b=$(rss "$T/l.txt")
if [ -n "$a" ] && [ -n "$b" ] && [ $((b * 100)) -lt $((a * 60)) ]; then
  ok "peak RSS $b MiB with --low-mem --mem-budget 100 against $a MiB (a $(du -m "$T/s.gguf" | cut -f1) MiB file)"
else
  bad "peak RSS with --low-mem --mem-budget 100 '$b' MiB not under 60 % of '$a' MiB"
fi
# under a real memory limit below the file's size: a memory cgroup (v2, else
# v1) of 160 MiB holding the run, the file's pages dropped first so that its
# reads are charged there; the same logits as the normal mode outside it
cg=""
if [ -w /sys/fs/cgroup/cgroup.procs ] && grep -q memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/tl_low_mem_$$
  mkdir "$cg" 2>/dev/null && echo $((160 << 20)) >"$cg/memory.max" 2>/dev/null || cg=""
elif [ -d /sys/fs/cgroup/memory ]; then
  base=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
  cg=$base/tl_low_mem_$$
  mkdir "$cg" 2>/dev/null && echo $((160 << 20)) >"$cg/memory.limit_in_bytes" 2>/dev/null || cg=""
fi
if [ -n "$cg" ] && command -v python3 >/dev/null 2>&1; then
  "$TL" eval -m "$T/s.gguf" --ids $ids --logits "$T/a.f32" --greedy 8 -t 2 >"$T/a.txt" 2>/dev/null
  python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)" "$T/s.gguf"
  sh -c "echo \$\$ >'$cg/cgroup.procs' && exec '$TL' eval -m '$T/s.gguf' --ids $ids --logits '$T/b.f32' --greedy 8 -t 2 --low-mem --mem-budget 64" \
    >"$T/b.txt" 2>"$T/err"
  rc=$?
  if [ $rc -eq 0 ] && cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt"; then
    ok "--low-mem inside a 160 MiB memory cgroup with a $(du -m "$T/s.gguf" | cut -f1) MiB file: the same logits"
  else
    bad "--low-mem inside a 160 MiB memory cgroup (exit $rc): $(cat "$T/err")"
  fi
  rmdir "$cg" 2>/dev/null
else
  echo "skipped: the run under a memory limit (no writable memory cgroup here)"
fi
if [ $fail -ne 0 ]; then
  echo "test_low_mem: FAILED"
  exit 1
fi
echo "test_low_mem: all $n cases pass"
