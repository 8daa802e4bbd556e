#!/bin/bash
# Whether the CUDA backend's GPU code is the same at two revisions, without a
# GPU and without cuobjdump: backend_cuda.cu of each is compiled as CMake
# compiles it (nvcc, sm_90 by default) with --keep, and the sections of the
# two cubins are compared byte for byte. The kernels' machine code is in
# their .text.* sections: identical bytes there are identical SASS. Line
# information (-lineinfo: .debug_line, .debug_str) follows the source lines
# and is listed but not counted. The host code of the object (x86) and its
# strings are compared too.
#   scripts/cuda-same-code.sh BASE [NEW]   (revisions; NEW: the work tree)
# Exit 0 when the kernels and the host code are identical, 1 otherwise.
set -euo pipefail
base=${1:?usage: $0 BASE_REVISION [NEW_REVISION]}
new=${2:-}
arch=${TL_CUDA_ARCHS:-90}
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
top=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

tree() { # tree REV DIR: the sources at REV (the work tree when REV is empty)
  mkdir -p "$2"
  if [ -n "$1" ]; then git -C "$top" archive "$1" src include | tar -x -C "$2"; else cp -r "$top/src" "$top/include" "$2/"; fi
}
build() { # build DIR: the object, its cubin and its host disassembly
  (cd "$1" && "$nvcc" -forward-unknown-to-host-compiler -D_GNU_SOURCE -Dtorchless_cuda_EXPORTS \
    -I"$1/include" -I"$1/src" -O3 -DNDEBUG "--generate-code=arch=compute_$arch,code=[compute_$arch,sm_$arch]" \
    -Xcompiler=-fPIC -Xcompiler=-fvisibility=hidden -lineinfo -std=c++17 -x cu \
    -c "$1/src/backend/cuda/backend_cuda.cu" -o obj.o --keep --keep-dir "$1" >/dev/null)
  objdump -d --no-show-raw-insn "$1/obj.o" | sed 1,3d >"$1/host.dis"
  objdump -s -j .rodata -j .rodata.str1.1 -j .rodata.str1.8 "$1/obj.o" 2>/dev/null | sed 1,3d >"$1/host.rodata"
}
tree "$base" "$tmp/a"
tree "$new" "$tmp/b"
build "$tmp/a"
build "$tmp/b"
cat >"$tmp/cmp.py" <<'EOF'
import struct, sys
def sections(path):
    d = open(path, 'rb').read()
    assert d[:4] == b'\x7fELF' and d[4] == 2, path
    shoff, = struct.unpack_from('<Q', d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', d, 0x3A)
    hdrs = [struct.unpack_from('<IIQQQQIIQQ', d, shoff + i * shentsize) for i in range(shnum)]
    stro = hdrs[shstrndx][4]
    out = {}
    for h in hdrs:
        name = d[stro + h[0]:d.index(b'\0', stro + h[0])].decode()
        out[name] = d[h[4]:h[4] + h[5]] if h[1] != 8 else b'\0' * h[5]  # 8: NOBITS
    return out
a, b = sections(sys.argv[1]), sections(sys.argv[2])
debug = ('.debug_line', '.debug_str', '.rela.debug_line', '.nv_debug_line_sass')
bad = 0
for n in sorted(set(a) | set(b)):
    if a.get(n) == b.get(n):
        continue
    what = 'line information, not counted' if n in debug else 'DIFFERS'
    bad += n not in debug
    print('%-60s %s (%s vs %s bytes)' % (n, what, len(a.get(n, b'')), len(b.get(n, b''))))
kernels = sum(1 for n in a if n.startswith('.text.'))
print('cubin: %d kernels (.text sections); %d code/data sections differ' % (kernels, bad))
sys.exit(1 if bad else 0)
EOF
rc=0
python3 "$tmp/cmp.py" "$tmp/a/backend_cuda.sm_$arch.cubin" "$tmp/b/backend_cuda.sm_$arch.cubin" || rc=1
if cmp -s "$tmp/a/host.dis" "$tmp/b/host.dis" && cmp -s "$tmp/a/host.rodata" "$tmp/b/host.rodata"; then
  echo "host code and strings: identical"
else
  echo "host code or strings: DIFFER"
  rc=1
fi
exit $rc
