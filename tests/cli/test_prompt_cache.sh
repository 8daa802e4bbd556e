#!/bin/sh
# run --prompt-cache FILE (issue 25: a prompt cache that survives a
# restart, tl_state_seq_save_file / _load_file): the same text with and
# without the cache, the cached tokens reused, --prompt-cache-ro, and one
# clear error for a damaged file, another model's, another KV type's.
#   tests/cli/test_prompt_cache.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
M="$ROOT/models/kjv-llama-13m-q8_0.gguf"
M2="$ROOT/tests/data/llama/model-q8_0.gguf"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok: $1"; }
bad() { n=$((n + 1)); fail=1; echo "FAIL: $1"; [ -f "$T/err" ] && sed 's/^/  | /' "$T/err"; }
P1="In the beginning God created the heaven and the earth. And the earth was"
P2="In the beginning God created the heaven and the earth. And God"
run() { "$TL" run -m "$M" -n 24 --temp 0 -t 2 "$@"; }

run -p "$P1" >"$T/plain1" 2>/dev/null && run -p "$P2" >"$T/plain2" 2>/dev/null || bad "plain runs"
# 1. a first run writes the cache; a second one reuses all of the prompt but its last token
run -p "$P1" --prompt-cache "$T/pc" -v >"$T/o1" 2>"$T/err" && [ -s "$T/pc" ] &&
  grep -q "prompt cache .*: 0 of [0-9]* prompt tokens reused" "$T/err" &&
  cmp -s "$T/o1" "$T/plain1" && ok "first run: the cache written, the same text" ||
  bad "first run: the cache written, the same text"
np=$(sed -n 's/.*: 0 of \([0-9]*\) prompt tokens reused.*/\1/p' "$T/err")
run -p "$P1" --prompt-cache "$T/pc" -v >"$T/o2" 2>"$T/err" &&
  grep -q "prompt cache .*: $((np - 1)) of $np prompt tokens reused" "$T/err" &&
  cmp -s "$T/o2" "$T/plain1" && ok "second run: $((np - 1)) of $np tokens from the cache, the same text" ||
  bad "second run: all but the last prompt token from the cache, the same text"
# 2. a prompt that shares a prefix: that much reused, the same text as without a cache
cp "$T/pc" "$T/pc.before"
run -p "$P2" --prompt-cache "$T/pc" --prompt-cache-ro -v >"$T/o3" 2>"$T/err" &&
  grep -Eq "prompt cache .*: ([1-9][0-9]*) of [0-9]+ prompt tokens reused" "$T/err" &&
  cmp -s "$T/o3" "$T/plain2" && cmp -s "$T/pc" "$T/pc.before" &&
  ok "a shared prefix reused, the same text; --prompt-cache-ro leaves the file" ||
  bad "a shared prefix reused, the same text; --prompt-cache-ro leaves the file"
run -p "$P2" --prompt-cache "$T/pc" >"$T/o4" 2>"$T/err" && ! cmp -s "$T/pc" "$T/pc.before" &&
  cmp -s "$T/o4" "$T/plain2" && ok "without -ro the file now holds the new prompt" ||
  bad "without -ro the file now holds the new prompt"
# 3. files it refuses: one error line, exit 1, the file left alone
expect_err() { # what pattern args...
  what=$1 pat=$2
  shift 2
  run "$@" >"$T/out" 2>"$T/err"
  rc=$?
  if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -Eq "$pat" "$T/err"; then
    ok "$what"
  else
    bad "$what (exit $rc)"
  fi
}
head -c 1000 "$T/pc" >"$T/cut"
expect_err "a truncated cache" "truncated" -p "$P1" --prompt-cache "$T/cut"
python3 -c "
import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[-100]^=0x40; open(sys.argv[2],'wb').write(b)" \
  "$T/pc" "$T/damaged"
expect_err "a damaged cache" "checksum mismatch" -p "$P1" --prompt-cache "$T/damaged"
printf 'not a state file at all' >"$T/text"
expect_err "not a state file" "not a torchless state file" -p "$P1" --prompt-cache "$T/text"
expect_err "another KV type" "saved from a f16 KV cache.*--kv f16" -p "$P1" --kv f32 \
  --prompt-cache "$T/pc"
if [ -f "$M2" ]; then
  "$TL" run -m "$M2" -p "$P1" -n 4 --temp 0 -t 2 --prompt-cache "$T/pc" >"$T/out" 2>"$T/err"
  rc=$?
  [ $rc -eq 1 ] && grep -q "holds the state of another model" "$T/err" &&
    ok "another model's cache" || bad "another model's cache (exit $rc)"
fi
mkdir "$T/dir"
expect_err "a folder as the cache" "cannot|Is a directory" -p "$P1" --prompt-cache "$T/dir"
expect_err "--prompt-cache-ro alone" "needs --prompt-cache FILE" -p "$P1" --prompt-cache-ro
expect_err "--prompt-cache with --lookup" "does not go with --draft or --lookup" -p "$P1" \
  --prompt-cache "$T/pc" --lookup 2

if [ $fail -ne 0 ]; then
  echo "test_prompt_cache: FAILED"
  exit 1
fi
echo "test_prompt_cache: all $n cases pass"
