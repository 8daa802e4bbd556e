#!/bin/sh
# A user's first hour with the command-line tool (issue 25, "CLI"): mistyped
# commands, --help and --version, checked values, tokenize --show-pieces,
# bench's rows as they come, Ctrl-C, and the error categories of a model
# folder. Each case checks the exit status and the message; one line a case.
#   tests/cli/first_hour.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
M="$ROOT/models/kjv-llama-13m-q8_0.gguf"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0

ok() {
  n=$((n + 1))
  echo "ok: $1"
}
bad() {
  n=$((n + 1))
  fail=1
  echo "FAIL: $1"
  [ -f "$T/out" ] && sed 's/^/  stdout: /' "$T/out" | head -5
  [ -f "$T/err" ] && sed 's/^/  stderr: /' "$T/err" | head -5
}

# expect NAME STATUS PATTERN COMMAND...: the command (torchless's arguments)
# exits with STATUS and its stdout or stderr matches the extended regex
# PATTERN
expect() {
  name=$1 want=$2 pat=$3
  shift 3
  "$TL" "$@" >"$T/out" 2>"$T/err"
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    bad "$name: exit $rc, wanted $want"
  elif ! cat "$T/out" "$T/err" | grep -Eq -- "$pat"; then
    bad "$name: no '$pat' in the output"
  else
    ok "$name"
  fi
}

# absent NAME PATTERN: the last expect's output does not match PATTERN
absent() {
  if cat "$T/out" "$T/err" | grep -Eq -- "$2"; then
    bad "$1: '$2' should not be in the output"
  else
    ok "$1"
  fi
}

# ---- 1. mistyped commands, a model path with spaces -----------------------
expect "runn -p hi" 2 "unknown command 'runn' \(did you mean 'run'\?\)" runn -p hi
expect "tokenise -m M -p hi" 2 "unknown command 'tokenise' \(did you mean 'tokenize'\?\)" \
  tokenise -m "$M" -p hi
expect "quantise a b c" 2 "unknown command 'quantise' \(did you mean 'quantize'\?\)" quantise a b c
expect "frobnicate: unknown, nothing close" 2 "unknown command 'frobnicate'" frobnicate -p hi
absent "frobnicate: no suggestion" "did you mean"
cp "$M" "$T/my model.gguf"
expect "a model path with spaces, and a prompt" 0 "^And God said" "$T/my model.gguf" "And God said" \
  -n 4 -t 1
expect "a model path with spaces alone" 0 "^In the beginning" "$T/my model.gguf" -n 4 -t 1
expect "a prompt as the first word still runs" 0 "^And God said" "And God said" -n 2 -t 1

# ---- 2. --help on every command, --version ----------------------------------
for c in run eval tokenize quantize synth convert bench template chat; do
  expect "$c --help" 0 "usage: torchless $c" $c --help
  expect "$c -h" 0 "-h, --help" $c -h
done
expect "run --help: -n's default" 0 "-n, --n-predict N .*default: 128" run --help
for pat in "--temp T .*default: [0-9.]+" "--top-k K .*default: [0-9]+" \
  "--top-p P .*default: [0-9.]+" "--min-p P .*default: [0-9.]+" "--seed S .*from the clock" \
  "-t, --threads N .*default: " "-c, --ctx N .*default: the model's training context"; do
  expect "run --help: $pat" 0 "$pat" run --help
done
expect "bench --help: defaults" 0 "-p, --n-prompt N .*default: 512" bench --help
expect "synth --help: presets" 0 "--preset NAME .*tinyllama-1.1b" synth --help
expect "--version: the version" 0 "^torchless [0-9]+\.[0-9]+\.[0-9]+" --version
expect "--version: the CPU kernel sets" 0 "^CPU kernel sets.* scalar" --version
expect "--version: the backends" 0 "^backends: cpu" --version

# ---- 3. values ------------------------------------------------------------------
expect "--temp -1" 1 "--temp must be >= 0" run -m "$M" -p hi -n 1 --temp -1
expect "--top-p 0" 1 "--top-p must be in \(0, 1\]" run -m "$M" -p hi -n 1 --top-p 0
expect "--top-p 1.5" 1 "--top-p must be in \(0, 1\]" run -m "$M" -p hi -n 1 --top-p 1.5
expect "--min-p -0.1" 1 "--min-p must be in \[0, 1\]" run -m "$M" -p hi -n 1 --min-p -0.1
expect "--min-p 1.5" 1 "--min-p must be in \[0, 1\]" chat -m "$M" --min-p 1.5
expect "the edges are accepted" 0 "tok/s" run -m "$M" -p hi -n 1 -t 1 --temp 0 --top-p 1 --min-p 0
expect "-c above the training context: a warning" 0 \
  "warning: -c 2048 is larger than the model's training context \(512" run -m "$M" -p hi -n 2 -t 1 \
  -c 2048
expect "-c within the training context" 0 "tok/s" run -m "$M" -p hi -n 2 -t 1 -c 256
absent "-c within the training context: no warning" "warning"
export TL_CPU_KERNELS=nosuch
expect "TL_CPU_KERNELS=nosuch" 1 \
  "CPU kernel set 'nosuch' is not available on this CPU \(it has: scalar" run -m "$M" -p hi -n 1
expect "TL_CPU_KERNELS=nosuch before loading (tokenize)" 1 \
  "CPU kernel set 'nosuch' is not available on this CPU \(it has: scalar" tokenize -m "$M" -p hi
export TL_CPU_KERNELS=scalar
expect "TL_CPU_KERNELS=scalar is taken" 0 "tok/s" run -m "$M" -p hi -n 1 -t 1
unset TL_CPU_KERNELS
expect "eval without --logits or --greedy" 1 "--logits OUT.f32 .*--greedy N" eval -m "$M" --ids 1,2

# ---- 4. tokenize --show-pieces ---------------------------------------------------
expect "tokenize: ids on one line" 0 "^[0-9]+( [0-9]+)+$" tokenize -m "$M" -p "In the beginning"
if [ "$(wc -l <"$T/out")" -eq 1 ]; then ok "tokenize: one line"; else bad "tokenize: one line"; fi
n_ids=$(wc -w <"$T/out")
expect "tokenize --show-pieces" 0 "^ *[0-9]+ -> ' beginning'$" tokenize -m "$M" -p "In the beginning" \
  --show-pieces
if [ "$(grep -Ec "^ *[0-9]+ -> '.*'$" "$T/out")" -eq "$n_ids" ] && [ "$(wc -l <"$T/out")" -eq "$n_ids" ]; then
  ok "tokenize --show-pieces: a line per id"
else
  bad "tokenize --show-pieces: a line per id ($n_ids ids)"
fi

# ---- 5. bench: the header at once, each row as it ends -------------------------
: >"$T/bench"
"$TL" bench -m "$M" -p 64 -n 256 -r 3 -t 1 >"$T/bench" 2>"$T/err" &
pid=$!
saw_header=0 saw_pp_alone=0
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 3000 ]; do
  if grep -q "^| model |" "$T/bench"; then
    grep -q "| tg256 |" "$T/bench" || saw_header=1
    grep -q "| pp64 |" "$T/bench" && ! grep -q "| tg256 |" "$T/bench" && saw_pp_alone=1
  fi
  [ $saw_pp_alone = 1 ] && break
  sleep 0.01
  i=$((i + 1))
done
wait $pid
rc=$?
rm -f "$T/out"
cp "$T/bench" "$T/out"
if [ $rc -eq 0 ] && [ $saw_header = 1 ]; then ok "bench: the header before the results"; else
  bad "bench: the header before the results (exit $rc)"; fi
if [ $rc -eq 0 ] && [ $saw_pp_alone = 1 ] && grep -q "| tg256 |" "$T/bench"; then
  ok "bench: the pp row before the tg test ends"
else
  bad "bench: the pp row before the tg test ends (exit $rc)"
fi

# ---- 6. Ctrl-C ---------------------------------------------------------------------
# interrupt FILE PATTERN COMMAND...: start torchless COMMAND, wait until FILE
# (its stdout $T/out or stderr $T/err) matches PATTERN, then Ctrl-C it (the
# process stopped meanwhile, so the signal comes before it could finish);
# leaves its exit status in rc
interrupt() {
  file=$1 pat=$2
  shift 2
  rm -f "$T/out" "$T/err"
  "$TL" "$@" >"$T/out" 2>"$T/err" &
  pid=$!
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 3000 ] && ! grep -Eq -- "$pat" "$file" 2>/dev/null; do
    sleep 0.01
    i=$((i + 1))
  done
  kill -STOP $pid 2>/dev/null
  kill -INT $pid 2>/dev/null
  kill -CONT $pid 2>/dev/null
  wait $pid
  rc=$?
}

interrupt "$T/out" "In the beginning" run -m "$M" -p "In the beginning" -n 100000 -t 1
if [ $rc -eq 130 ] && grep -q "tok/s" "$T/err" && grep -q "interrupted" "$T/err" &&
  [ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ]; then
  ok "run: Ctrl-C stops, the newline and the speed line, exit 130"
else
  bad "run: Ctrl-C (exit $rc, wanted 130, the newline, 'tok/s' and 'interrupted')"
fi

# check_cancelled NAME OUT: the last interrupt of a writer said "interrupted"
# (no "i/o error"), exited 130 and left neither OUT nor its temporary file
check_cancelled() {
  if [ $rc -eq 130 ] && grep -q "interrupted" "$T/err" && ! grep -q "i/o error" "$T/err" &&
    [ ! -e "$2" ] && [ -z "$(ls "$2".tmp* 2>/dev/null)" ]; then
    ok "$1: Ctrl-C says interrupted, no output left, exit 130"
  else
    bad "$1: Ctrl-C (exit $rc, wanted 130, 'interrupted', no $2)"
  fi
}

"$TL" synth --preset tinyllama-1.1b --layers 2 --type q8_0 -t 1 -o "$T/src.gguf" >/dev/null 2>"$T/err" ||
  bad "synth the input of the Ctrl-C cases"
interrupt "$T/err" "^\[ *1/" synth --preset tinyllama-1.1b --layers 2 --type q8_0 -t 1 -o "$T/s.gguf"
check_cancelled "synth" "$T/s.gguf"
interrupt "$T/err" "^\[ *1/" quantize "$T/src.gguf" "$T/q.gguf" q4_0 -t 1
check_cancelled "quantize" "$T/q.gguf"
interrupt "$T/err" "^\[ *1/" convert "$T/src.gguf" "$T/c.bin" --quant int8
check_cancelled "convert" "$T/c.bin"
rm -f "$T/src.gguf"

# ---- progress: a bar on a terminal, a line per tensor when piped -------------------
CR=$(printf '\r')
"$TL" quantize "$M" "$T/p.gguf" q4_0 -t 1 >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 0 ] && grep -Eq "^\[ *1/ *[0-9]+\] " "$T/err" &&
  ! grep -q "$CR" "$T/err" && ! grep -q '\[#' "$T/err"; then
  ok "quantize piped: a line per tensor, no bar"
else
  bad "quantize piped: a line per tensor, no bar (exit $rc)"
fi
if command -v script >/dev/null 2>&1; then
  rm -f "$T/p.gguf"
  script -qec "'$TL' quantize '$M' '$T/p.gguf' q4_0 -t 1" /dev/null >"$T/tty" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q "$CR\[#*\.*\] " "$T/tty" && ! grep -Eq "^\[ *1/ *[0-9]+\] " "$T/tty" &&
    grep -q "wrote " "$T/tty" && [ -s "$T/p.gguf" ]; then
    ok "quantize on a terminal: a progress bar"
  else
    cp "$T/tty" "$T/err"
    bad "quantize on a terminal: a progress bar (exit $rc)"
  fi
else
  echo "skipped: quantize on a terminal (no script(1) for a pseudo-terminal)"
fi
rm -f "$T/p.gguf"
# --quant on load: nothing extra when piped, a bar on a terminal
"$TL" run -m "$M" --quant q4_0 -p "In the beginning" -n 4 -t 1 >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 0 ] && ! grep -q "$CR" "$T/err" && ! grep -Eq '\[#|^\[ *1/' "$T/err" &&
  grep -q "^In the beginning" "$T/out"; then
  ok "run --quant piped: no progress lines"
else
  bad "run --quant piped: no progress lines (exit $rc)"
fi
if command -v script >/dev/null 2>&1; then
  script -qec "'$TL' run -m '$M' --quant q4_0 -p 'In the beginning' -n 4 -t 1" /dev/null \
    >"$T/tty" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q "$CR\[#*\.*\] " "$T/tty" && grep -q "In the beginning" "$T/tty"; then
    ok "run --quant on a terminal: a progress bar while quantizing"
  else
    cp "$T/tty" "$T/err"
    bad "run --quant on a terminal: a progress bar while quantizing (exit $rc)"
  fi
fi

# a model file not in the page cache: read ahead with a bar on a terminal
# (TL_CLI_PREFETCH_MIN_MB=1: the bar's threshold, 64 MiB, lowered), nothing
# when piped
"$TL" synth --preset tinyllama-1.1b --layers 2 --type q8_0 -t 1 -o "$T/cold.gguf" >/dev/null 2>&1 ||
  bad "synth the cold-load model"
drop() { python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)" "$1"; }
if command -v python3 >/dev/null 2>&1 && command -v script >/dev/null 2>&1; then
  drop "$T/cold.gguf"
  TL_CLI_PREFETCH_MIN_MB=1 "$TL" run -m "$T/cold.gguf" -p hi -n 2 -t 1 >"$T/out" 2>"$T/err"
  rc=$?
  [ $rc -eq 0 ] && ! grep -q "loading \[" "$T/err" && ok "a cold load piped: no bar" ||
    bad "a cold load piped: no bar (exit $rc)"
  drop "$T/cold.gguf"
  TL_CLI_PREFETCH_MIN_MB=1 script -qec "'$TL' run -m '$T/cold.gguf' -p hi -n 2 -t 1" /dev/null \
    >"$T/tty" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q "loading \[#*\.*\] [0-9]*/[0-9]* MiB" "$T/tty"; then
    ok "a cold load on a terminal: a progress bar while the file is read"
  else
    cp "$T/tty" "$T/err"
    bad "a cold load on a terminal: a progress bar while the file is read (exit $rc)"
  fi
else
  echo "skipped: a cold load's bar (needs python3 and script(1))"
fi
rm -f "$T/cold.gguf"

# ---- 7. a model folder without config.json or tokenizer files --------------------
mkdir "$T/empty" "$T/notok"
expect "a folder without config.json: a format error" 1 "has no config.json \(invalid file format\)" \
  run -m "$T/empty" -p hi
cp "$ROOT/tests/data/phi2/config.json" "$ROOT/tests/data/phi2/model.safetensors" "$T/notok/"
expect "a folder without tokenizer files: a format error" 1 \
  "neither tokenizer.json nor tokenizer.model \(invalid file format\)" run -m "$T/notok" -p hi

if [ $fail -ne 0 ]; then
  echo "first_hour: FAILED"
  exit 1
fi
echo "first_hour: all $n cases pass"
