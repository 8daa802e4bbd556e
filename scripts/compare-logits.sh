#!/bin/bash
# Byte-identity check between two builds of torchless: for every model under
# the given folders (GGUF files, Hugging Face folders, Torchless .bin files)
# and every CPU kernel set named, `eval --logits` (one prefill pass) and
# `eval --greedy` (token by token with the KV cache) with each KV cache type,
# compared with cmp. Prints one line per difference and a count at the end.
#   scripts/compare-logits.sh OLD_BIN NEW_BIN "scalar avx2 avx512vnni" DIR...
set -u
old=$1 new=$2 sets=$3
shift 3
ids=1,17,40,33,250,7,99,3,128,64,5,300,12,77,200,31,8,444,61,19,150,2,90,11
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
models=()
for d in "$@"; do
  while IFS= read -r f; do models+=("$f"); done < <(find "$d" -name '*.gguf' -o -name '*.bin' | sort)
  while IFS= read -r f; do models+=("$(dirname "$f")"); done < <(find "$d" -name config.json | sort)
done
n=0 diff=0 skip=0
for m in "${models[@]}"; do
  for s in $sets; do
    for kv in f16 f32 q8_0; do
      for b in old new; do
        bin=$old; [ $b = new ] && bin=$new
        TL_CPU_KERNELS=$s "$bin" eval -m "$m" --ids $ids --kv $kv -t 2 --logits "$tmp/$b.f32" \
          >"$tmp/$b.out" 2>"$tmp/$b.err" || echo "exit $?" >>"$tmp/$b.out"
        TL_CPU_KERNELS=$s "$bin" eval -m "$m" --ids $ids --kv $kv -t 2 --greedy 12 \
          >>"$tmp/$b.out" 2>>"$tmp/$b.err" || echo "exit $?" >>"$tmp/$b.out"
      done
      if grep -q "^exit" "$tmp/old.out" && grep -q "^exit" "$tmp/new.out"; then
        skip=$((skip + 1)); continue  # neither build runs it (e.g. q8_0 KV with head size 16)
      fi
      n=$((n + 1))
      if ! cmp -s "$tmp/old.f32" "$tmp/new.f32" || ! cmp -s "$tmp/old.out" "$tmp/new.out"; then
        diff=$((diff + 1))
        echo "DIFFERENT: $m kernels=$s kv=$kv"
      fi
      rm -f "$tmp/old.f32" "$tmp/new.f32"
    done
  done
done
echo "compared $n (model, kernel set, KV type) cases: $diff different, $skip not run by either build"
