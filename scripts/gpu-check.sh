#!/bin/bash
# On a machine with an NVIDIA GPU: the CUDA backend's checks in one run.
#   scripts/gpu-check.sh [BUILD_DIR] [--quick]
# 1. test_backend_ops --backend cuda (every operation against the reference);
# 2. the reference fixture table and the sequence tests on the cuda backend
#    (TL_TEST_BACKENDS=cuda);
# 3. eval --logits / --greedy, cuda against cpu (llama fixture, F16 GGUF and
#    the Hugging Face folder; the demo model's greedy tokens);
# 4. torchless bench --backend cuda -p 512 -n 128 on synthetic Mistral-7B
#    files of each type (made here with `torchless synth`; skipped with --quick).
# Prints a summary at the end; exits non-zero if a check failed.
set -u
B=${1:-build}
QUICK=0; [ "${2:-}" = "--quick" ] && QUICK=1
T=$(mktemp -d)
sum=()
ok() { sum+=("PASS $1"); }
bad() { sum+=("FAIL $1"); fail=1; }
fail=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== test_backend_ops --backend cuda"
if "$B/test_backend_ops" --backend cuda >"$T/ops.log" 2>&1; then ok "test_backend_ops"; else bad "test_backend_ops"; fi
grep -E "seed|checks, worst|SKIPPED|ERROR|skipped|over the bound" "$T/ops.log"
# on a failure: which of the newer paths it follows (each turned off alone)
if grep -q "FAILED" "$T/ops.log"; then
  for e in TL_CUDA_PDL=0 TL_CUDA_MERGE=0 TL_CUDA_MMQ=0 TL_CUDA_GRAPHS=0; do
    env $e "$B/test_backend_ops" --backend cuda >"$T/ops1.log" 2>&1 && r=passes || r=fails
    echo "with $e: test_backend_ops $r"; grep -E "over the bound" "$T/ops1.log" | head -3
  done
fi

# the kernels a batch takes without cuBLAS, and the float kernels of every
# type (the paths TL_CUDA_CUBLAS=0 and TL_CUDA_MMVQ=0 keep)
if TL_CUDA_CUBLAS=0 TL_CUDA_MMVQ=0 "$B/test_backend_ops" --backend cuda >"$T/ops0.log" 2>&1; then
  ok "test_backend_ops, no cuBLAS, no 8-bit matvec"
else
  bad "test_backend_ops, no cuBLAS, no 8-bit matvec"
fi
grep -E "checks, worst|ERROR" "$T/ops0.log"

for t in test_reference test_sequences; do
  [ -x "$B/$t" ] || continue
  echo "== $t on cuda"
  if TL_TEST_BACKENDS=cuda "$B/$t" >"$T/$t.log" 2>&1; then ok "$t (cuda)"; else bad "$t (cuda)"; fi
  grep -E "FAILED|ERROR|SKIPPED|PASSED" "$T/$t.log" | head -40
  # what failed: the assertion and the measurements printed before it
  grep -B3 -E "error: Failure|\[  ERROR|\[  FAILED" "$T/$t.log" | grep -vE "^\[ +(RUN|OK) " | head -60
done

echo "== eval --logits and --greedy, cuda against cpu"
# float weights (the CPU multiplies them with f32 activations): DESIGN.md's
# bounds, 1e-4 with an f32 KV cache and 2e-3 with f16, greedy tokens equal
ids=1,45,220,13,77,90,31,400,51,8,120,3,99,250,7,64
for M in tests/data/llama/model-f16.gguf tests/data/llama; do
  for kv in f32 f16; do
    "$B/torchless" eval -m $M --ids $ids --kv $kv --backend cpu --logits "$T/cpu.f32" --greedy 16 >"$T/cpu.txt" &&
    "$B/torchless" eval -m $M --ids $ids --kv $kv --backend cuda --logits "$T/cuda.f32" --greedy 16 >"$T/cuda.txt" || { bad "eval $M kv $kv"; continue; }
    r=$(python3 -c "
import numpy as np
a=np.fromfile('$T/cpu.f32',np.float32);b=np.fromfile('$T/cuda.f32',np.float32)
print('%.3g'%(np.linalg.norm(a-b)/np.linalg.norm(a)))")
    same=$(cmp -s "$T/cpu.txt" "$T/cuda.txt" && echo same || echo different)
    echo "$M kv $kv: relative error $r, greedy tokens $same"
    [ "$same" = same ] && python3 -c "import sys; sys.exit(0 if $r <= (1e-4 if '$kv'=='f32' else 2e-3) else 1)" &&
      ok "eval $M kv $kv ($r)" || bad "eval $M kv $kv ($r, greedy $same)"
  done
done
# --gpu-layers 1: the first layer on the GPU, the second and the output
# head on the CPU (the same bound as the whole model on the GPU)
M=tests/data/llama/model-f16.gguf
"$B/torchless" eval -m $M --ids $ids --kv f32 --backend cpu --logits "$T/cpu.f32" --greedy 16 >"$T/cpu.txt" &&
"$B/torchless" eval -m $M --ids $ids --kv f32 --backend cuda --gpu-layers 1 -v --logits "$T/cuda.f32" --greedy 16 >"$T/cuda.txt" 2>"$T/split.log" &&
grep -q "and the output on the cpu" "$T/split.log" && {
  r=$(python3 -c "
import numpy as np
a=np.fromfile('$T/cpu.f32',np.float32);b=np.fromfile('$T/cuda.f32',np.float32)
print('%.3g'%(np.linalg.norm(a-b)/np.linalg.norm(a)))")
  cmp -s "$T/cpu.txt" "$T/cuda.txt" && python3 -c "import sys; sys.exit(0 if $r <= 1e-4 else 1)" &&
    ok "eval --gpu-layers 1 ($r)" || bad "eval --gpu-layers 1 ($r)"
} || bad "eval --gpu-layers 1 (did not run split)"
# a quantized model: the CPU multiplies it with 8-bit activations, the GPU
# with f32 ones, so they differ by the CPU's activation rounding (the
# reference table above bounds each against the fixtures' reference)
M=models/kjv-llama-13m-q8_0.gguf
"$B/torchless" eval -m $M --ids 1,450,2201,13,77,900 --backend cpu --greedy 24 >"$T/cpu.txt" &&
"$B/torchless" eval -m $M --ids 1,450,2201,13,77,900 --backend cuda --greedy 24 >"$T/cuda.txt" &&
  echo "demo q8_0 greedy 24: cpu $(cat $T/cpu.txt | tr -d '\n') / cuda $(cat $T/cuda.txt | tr -d '\n')"

if [ $QUICK = 0 ]; then
  echo "== bench --backend cuda, synthetic mistral-7b"
  # BENCH_TYPES: the types (default all four); PROFILE=1: also one run with
  # each operation timed (TL_CUDA_PROFILE)
  for ty in ${BENCH_TYPES:-q4_k_m q4_0 q8_0 f16}; do
    f=$T/mistral-$ty.gguf
    "$B/torchless" synth --preset mistral-7b --type $ty -o "$f" >/dev/null 2>&1 || { bad "synth $ty"; continue; }
    "$B/torchless" bench -m "$f" --backend cuda -p 512 -n 128 -r 3 2>&1 | grep -E "^\| (llama|mistral)|GB/s|error|GPU"
    # EXTRA_ENV="A=0 B=0 ...": bench again with each variable set, for comparison
    # EXTRA_<type> (e.g. EXTRA_q4_0) instead of EXTRA_ENV for one type
    xv=EXTRA_$ty
    for e in ${!xv:-${EXTRA_ENV:-}}; do
      echo "with $e:"; env $e "$B/torchless" bench -m "$f" --backend cuda -p 512 -n 128 -r 2 2>&1 | grep -E "^\| (llama|mistral)"
    done
    [ "${PROFILE:-0}" = 1 ] && TL_CUDA_PROFILE=1 "$B/torchless" bench -m "$f" --backend cuda -p 512 -n 128 -r 1 2>&1 | grep -E "profile|^\| (llama|mistral)"
    rm -f "$f"
  done
fi
rm -rf "$T"
echo "== summary"
printf '%s\n' "${sum[@]}"
exit $fail
