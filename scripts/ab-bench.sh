#!/bin/bash
# Old build against new, side by side on this machine: ROUNDS rounds, each
# running `bench -r 1` of both binaries back to back on every model (the
# order alternating between rounds), then per model and test the means over
# the rounds, the ratio of means (new / old) and the median of the per-round
# ratios.
#   scripts/ab-bench.sh OLD_TORCHLESS NEW_TORCHLESS ROUNDS MODEL... [-- BENCH_ARGS]
# BENCH_ARGS default: -p 128 -n 32 -t 2
set -eu
old=$1 new=$2 rounds=$3
shift 3
models=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do models+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-p 128 -n 32 -t 2)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
grep -m1 "model name" /proc/cpuinfo
grep -m1 "cpu family" /proc/cpuinfo
for m in "${models[@]}"; do cat "$m" >/dev/null; done
for ((r = 0; r < rounds; r++)); do
  for m in "${models[@]}"; do
    if ((r % 2 == 0)); then order=(old new); else order=(new old); fi
    for which in "${order[@]}"; do
      bin=$old; [ $which = new ] && bin=$new
      "$bin" bench -m "$m" -r 1 --json "${args[@]}" 2>/dev/null |
        python3 -c '
import json, sys
for x in json.load(sys.stdin):
    t = "pp%d" % x["n_prompt"] if x["n_prompt"] else "tg%d" % x["n_gen"]
    print(sys.argv[1], sys.argv[2], sys.argv[3], t, x["avg_ts"])
' "$r" "$which" "$(basename "$m")" >>"$log"
    done
  done
  echo "round $((r + 1))/$rounds done" >&2
done
python3 - "$log" <<'EOF'
import sys, statistics as st
from collections import defaultdict
v = defaultdict(dict)
for line in open(sys.argv[1]):
    r, which, m, test, ts = line.split()
    v[(m, test)].setdefault(which, {})[int(r)] = float(ts)
print("| model | test | rounds | old mean | new mean | ratio of means | median ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for (m, test), d in sorted(v.items()):
    rs = sorted(set(d.get("old", {})) & set(d.get("new", {})))
    if not rs: continue
    o = [d["old"][r] for r in rs]; n = [d["new"][r] for r in rs]
    print("| %s | %s | %d | %.1f | %.1f | %.3f | %.3f |" % (m, test, len(rs), st.mean(o), st.mean(n),
          st.mean(n) / st.mean(o), st.median([b / a for a, b in zip(o, n)])))
EOF
