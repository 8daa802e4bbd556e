#!/bin/sh
# Shapes from the metadata (issue 22's gap): a Phi-2 checkpoint with
# grouped-query attention (2 kv heads of 4; Phi-2's fixture sliced to it:
# k_proj / v_proj keep their first 2 heads' rows, num_key_value_heads 2)
# loads as a Hugging Face folder and as GGUF files written from it (F32:
# within 1e-5 relative of the folder's logits, the same greedy tokens; Q8_0:
# within 0.05), and a LLaMA one the same way (the llama fixture, 1 of its 2
# kv heads kept).
#   tests/cli/test_gqa_shapes.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
PY=/usr/bin/python3
if ! $PY -c "import numpy" 2>/dev/null; then
  echo "SKIPPED: test_gqa_shapes (needs Debian's python3-numpy)"
  exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok: $1"; }
bad() { n=$((n + 1)); fail=1; echo "FAIL: $1"; }
for arch in phi2 llama; do
  cp -rL "$ROOT/tests/data/$arch" "$T/$arch"
  $PY - "$T/$arch" <<'PYEOF' || { bad "$arch: slicing the checkpoint"; continue; }
import json, struct, sys
import numpy as np
d = sys.argv[1]
c = json.load(open(d + "/config.json"))
heads = c["num_attention_heads"]
kv_old = c.get("num_key_value_heads") or heads
kv = kv_old // 2
hd = c.get("head_dim") or c["hidden_size"] // heads
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
dts = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16}
out, blobs, off = {}, [], 0
for k, v in hdr.items():
    if k == "__metadata__":
        continue
    s, e = v["data_offsets"]
    a = np.frombuffer(raw[8 + n + s:8 + n + e], dtype=dts[v["dtype"]]).reshape(v["shape"])
    if "k_proj" in k or "v_proj" in k:
        a = np.ascontiguousarray(a[:kv * hd])
    b = a.tobytes()
    out[k] = {"dtype": v["dtype"], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(out).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(d + "/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
c["num_key_value_heads"] = kv
json.dump(c, open(d + "/config.json", "w"))
PYEOF
  ids=1,20,30,40,50,60,70
  "$TL" eval -m "$T/$arch" --ids $ids --greedy 6 --logits "$T/hf.f32" -t 2 >"$T/hf.txt" 2>"$T/err" ||
    { bad "$arch with fewer kv heads as a folder: $(cat "$T/err")"; continue; }
  for ty in f32 q8_0; do
    "$TL" quantize "$T/$arch" "$T/$arch-$ty.gguf" $ty >/dev/null 2>"$T/err" &&
      "$TL" eval -m "$T/$arch-$ty.gguf" --ids $ids --greedy 6 --logits "$T/$ty.f32" -t 2 \
        >"$T/$ty.txt" 2>"$T/err" || { bad "$arch $ty GGUF with fewer kv heads: $(cat "$T/err")"; continue; }
    lim=0.05
    [ $ty = f32 ] && lim=0.00001
    e=$($PY -c "import numpy as np,sys; a=np.fromfile(sys.argv[1],np.float32); b=np.fromfile(sys.argv[2],np.float32); print('%.2e' % (np.linalg.norm(a-b)/np.linalg.norm(a)) if a.size==b.size else 'size')" "$T/hf.f32" "$T/$ty.f32")
    if [ "$e" != size ] && $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$e" $lim &&
      { [ $ty != f32 ] || cmp -s "$T/hf.txt" "$T/$ty.txt"; }; then
      ok "$arch with fewer kv heads: $ty GGUF within $e of the folder (bound $lim)"
    else
      bad "$arch with fewer kv heads: $ty GGUF relative error $e (bound $lim)"
    fi
  done
done
[ $fail -eq 0 ] || { echo "test_gqa_shapes: FAILED"; exit 1; }
echo "test_gqa_shapes: all $n cases pass"
