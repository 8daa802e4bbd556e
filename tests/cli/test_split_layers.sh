#!/bin/sh
# --gpu-layers hands the residual stream from one backend to the next once
# per step. With TL_SPLIT_CPU=1 the split is made between two CPU backends,
# whose kernels are the same as one CPU backend's: the logits (prefill) and
# the greedy tokens (decode steps) must then be byte-identical to the
# unsplit run, for every split point tried.
#   tests/cli/test_split_layers.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0
ids=1,45,220,13,77,90,31,400,51,8,120,3
for M in "$ROOT/models/kjv-llama-13m-q8_0.gguf" "$ROOT/tests/data/llama/model-f16.gguf" \
  "$ROOT/tests/data/gemma2" "$ROOT/tests/data/phi2"; do
  [ -e "$M" ] || { echo "SKIPPED: no $M"; continue; }
  "$TL" eval -m "$M" --ids $ids --kv f32 -t 2 --logits "$T/a.f32" --greedy 8 >"$T/a.txt" 2>"$T/err" ||
    { echo "FAIL: eval $M: $(cat "$T/err")"; fail=1; continue; }
  for k in 0 1; do
    TL_SPLIT_CPU=1 "$TL" eval -m "$M" --ids $ids --kv f32 -t 2 --gpu-layers $k --logits "$T/b.f32" \
      --greedy 8 -v >"$T/b.txt" 2>"$T/err" || { echo "FAIL: eval $M --gpu-layers $k: $(cat "$T/err")"; fail=1; continue; }
    grep -q "and the output on the cpu" "$T/err" ||
      { echo "FAIL: $M --gpu-layers $k: the context was not split"; fail=1; continue; }
    n=$((n + 1))
    if cmp -s "$T/a.f32" "$T/b.f32" && cmp -s "$T/a.txt" "$T/b.txt"; then
      echo "ok: $M split after $k layers: logits and greedy tokens identical"
    else
      echo "FAIL: $M split after $k layers differs from the unsplit run"
      fail=1
    fi
  done
done
[ $n -gt 0 ] || { echo "FAIL: nothing was compared"; exit 1; }
exit $fail
