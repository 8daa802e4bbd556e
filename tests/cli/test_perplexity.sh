#!/bin/sh
# torchless perplexity against llama-perplexity's figures on the demo model and
# its held-out text (tests/data/demo/llama-perplexity.txt: within 0.5 %), and the
# KL-divergence mode: a model against its own saved log-probabilities (KL 0,
# the same top token everywhere) and a q4_0 quantization of a float model
# against the float one (KL above 0, fewer top tokens agreeing).
#   tests/cli/test_perplexity.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
D=$ROOT/tests/data/demo
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
grep -v '^#' "$D/llama-perplexity.txt" | while read -r ctx ref se; do
  got=$("$TL" perplexity -m "$ROOT/models/kjv-llama-13m-q8_0.gguf" -f "$D/heldout.txt" -c "$ctx" -t 2 2>&1 |
    sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p')
  if [ -z "$got" ]; then echo "FAIL: -c $ctx: no final estimate"; exit 1; fi
  if python3 -c "import sys; sys.exit(0 if abs($got / $ref - 1) <= 0.005 else 1)"; then
    echo "ok: -c $ctx: PPL $got, llama-perplexity $ref"
  else
    echo "FAIL: -c $ctx: PPL $got, llama-perplexity $ref (more than 0.5 % apart)"
    exit 1
  fi
done || fail=1

M=$ROOT/tests/data/llama/model-f16.gguf
"$TL" perplexity -m "$M" -f "$D/heldout.txt" -c 64 -t 2 --kl-divergence-base "$T/base.kld" >"$T/base.txt" 2>&1 ||
  { echo "FAIL: saving the base: $(tail -1 "$T/base.txt")"; exit 1; }
"$TL" perplexity -m "$M" -f "$D/heldout.txt" -c 64 -t 2 --kl-divergence --kl-divergence-base "$T/base.kld" >"$T/self.txt" 2>&1 ||
  { echo "FAIL: against itself: $(tail -1 "$T/self.txt")"; exit 1; }
"$TL" perplexity -m "$M" --quant q4_0 -f "$D/heldout.txt" -c 64 -t 2 --kl-divergence --kl-divergence-base "$T/base.kld" >"$T/q4.txt" 2>&1 ||
  { echo "FAIL: q4_0 against f16: $(tail -1 "$T/q4.txt")"; exit 1; }
kl_self=$(sed -n 's/^KL divergence (base || this): mean \([0-9.e+-]*\) .*/\1/p' "$T/self.txt")
top_self=$(sed -n 's/^same top token: \([0-9.]*\) %/\1/p' "$T/self.txt")
kl_q4=$(sed -n 's/^KL divergence (base || this): mean \([0-9.e+-]*\) .*/\1/p' "$T/q4.txt")
top_q4=$(sed -n 's/^same top token: \([0-9.]*\) %/\1/p' "$T/q4.txt")
echo "KL against itself $kl_self (top-1 $top_self %), q4_0 against f16 $kl_q4 (top-1 $top_q4 %)"
python3 -c "import sys; sys.exit(0 if float('$kl_self') < 1e-6 and float('$top_self') == 100.0 else 1)" ||
  { echo "FAIL: a model against its own log-probabilities"; fail=1; }
python3 -c "import sys; sys.exit(0 if float('$kl_q4') > 1e-4 and float('$top_q4') < 100.0 else 1)" ||
  { echo "FAIL: q4_0 against f16 shows no divergence"; fail=1; }
# a base of another text is refused
head -c 20000 "$D/heldout.txt" >"$T/short.txt"
if "$TL" perplexity -m "$M" -f "$T/short.txt" -c 64 --kl-divergence --kl-divergence-base "$T/base.kld" >"$T/bad.txt" 2>&1; then
  echo "FAIL: a base saved for another text was accepted"; fail=1
else
  grep -q "was saved for" "$T/bad.txt" && echo "ok: a base of another text is refused" ||
    { echo "FAIL: wrong message: $(cat "$T/bad.txt")"; fail=1; }
fi
exit $fail
