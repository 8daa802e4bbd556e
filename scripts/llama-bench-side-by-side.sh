#!/bin/sh
# Side-by-side speed against llama.cpp: llama-bench and `torchless bench` on
# the same GGUF files, alternating, with the same -p/-n/-r/-t.
#
#   scripts/llama-bench-side-by-side.sh MODEL.gguf [MODEL.gguf ...]
#
# Environment: P (prompt tokens, 128), N (generated tokens, 32), R
# (repetitions per run, 3), T (threads, 2), ROUNDS (alternations, 2), TL (the
# torchless binary, build/torchless), NLC (node-llama-cpp version whose
# bundled llama.cpp source is built, 3.6.0 = llama.cpp b4753 of February
# 2025, the build in issue 6's table; 3.22.1 is a 2026 one), LLAMA_DIR (where
# it is built, build/llama-cpp-$NLC).
#
# llama.cpp is not a Debian package. node-llama-cpp on the npm registry ships
# the llama.cpp source of its release as a git bundle; this script installs
# that package (without running its install scripts), clones the bundle and
# builds only llama-bench with CMake (-DGGML_NATIVE=ON, as a local build of
# llama.cpp would be). A test-time tool: nothing of it goes into torchless.
#
# The page cache is set up the same way for both tools: when root, it is
# dropped and each file read once with cat, which on current kernels fills
# 2 MiB folios, as a download or copy of the file would. (A file first faulted
# in through a plain mmap sits in 4 KiB pages, and then no reader gets huge
# page mappings of it, torchless included: tg moves by 10-20 % with this.)
set -eu
P=${P:-128} N=${N:-32} R=${R:-3} T=${T:-2} ROUNDS=${ROUNDS:-2} NLC=${NLC:-3.6.0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TL=${TL:-$ROOT/build/torchless}
LLAMA_DIR=${LLAMA_DIR:-$ROOT/build/llama-cpp-$NLC}
LB=$LLAMA_DIR/src/build/bin/llama-bench

[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf [MODEL.gguf ...]" >&2; exit 2; }
for f in "$@"; do [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 2; }; done
[ -x "$TL" ] || { echo "$0: no torchless binary at $TL (run make first)" >&2; exit 2; }

if [ ! -x "$LB" ]; then
  for tool in npm git cmake c++; do
    command -v $tool >/dev/null || { echo "$0: needs $tool to build llama-bench" >&2; exit 2; }
  done
  mkdir -p "$LLAMA_DIR/npm"
  echo "building llama-bench from node-llama-cpp@$NLC's llama.cpp source in $LLAMA_DIR" >&2
  (cd "$LLAMA_DIR/npm" && npm install --silent --ignore-scripts --omit=optional --no-save \
    --prefix . "node-llama-cpp@$NLC" >/dev/null)
  bundle=$LLAMA_DIR/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle
  [ -f "$bundle" ] || { echo "$0: node-llama-cpp@$NLC has no llama.cpp source bundle" >&2; exit 1; }
  rm -rf "$LLAMA_DIR/src"
  git clone -q "$bundle" "$LLAMA_DIR/src" 2>/dev/null
  log=$LLAMA_DIR/build.log
  if ! { cmake -S "$LLAMA_DIR/src" -B "$LLAMA_DIR/src/build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF &&
    cmake --build "$LLAMA_DIR/src/build" --target llama-bench -j "$(nproc)"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "$0: building llama-bench failed; the whole log is $log" >&2
    exit 1
  fi
fi
release=$(cat "$LLAMA_DIR/npm/node_modules/node-llama-cpp/llama/binariesGithubRelease.json" 2>/dev/null |
  tr -d ' \n' | sed 's/.*"release":"\([^"]*\)".*/\1/')

if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
  sync
  echo 1 >/proc/sys/vm/drop_caches
else
  echo "not root: the page cache is left as it is" >&2
fi
for f in "$@"; do cat "$f" >/dev/null; done

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "llama.cpp $release (node-llama-cpp $NLC) vs $("$TL" --version 2>/dev/null || echo torchless);" \
  "-p $P -n $N -r $R -t $T, $ROUNDS rounds, $(date -u '+%Y-%m-%d %H:%M UTC')"
# "MODEL TEST TOOL T/S" for each pp/tg row of a llama-bench style table on stdin
rows() {
  awk -F'|' -v m="$1" -v tool="$2" \
    '$7 ~ /(pp|tg)[0-9]/ { gsub(/ /, "", $7); split($8, v, "±"); print m, $7, tool, v[1] + 0 }'
}
i=1
while [ $i -le "$ROUNDS" ]; do
  for f in "$@"; do
    m=$(basename "$f")
    "$LB" -m "$f" -p "$P" -n "$N" -r "$R" -t "$T" 2>/dev/null | rows "$m" llama.cpp >>"$out"
    "$TL" bench -m "$f" -p "$P" -n "$N" -r "$R" -t "$T" 2>/dev/null | rows "$m" torchless >>"$out"
  done
  i=$((i + 1))
done
# one line per file and test: each round's figures and the ratio of the means
awk '{ k = $1 " " $2; if (!(k in seen)) { seen[k] = 1; order[n++] = k }
       s[k, $3] += $4; c[k, $3]++; runs[k, $3] = runs[k, $3] " " $4 }
     END { printf "%-28s %-6s %-26s %-26s %s\n", "model", "test", "llama.cpp t/s", "torchless t/s", "ratio"
           for (i = 0; i < n; i++) { k = order[i]; split(k, a, " ")
             l = c[k, "llama.cpp"] ? s[k, "llama.cpp"] / c[k, "llama.cpp"] : 0
             t = c[k, "torchless"] ? s[k, "torchless"] / c[k, "torchless"] : 0
             printf "%-28s %-6s %-26s %-26s %s\n", a[1], a[2], runs[k, "llama.cpp"], runs[k, "torchless"],
                    (l > 0 ? sprintf("%.2f", t / l) : "-") } }' "$out"
