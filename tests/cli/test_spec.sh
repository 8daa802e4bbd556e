#!/bin/sh
# Speculative decoding through the CLI (issue 23). Greedy text must be
# byte-identical with and without --draft, and with --lookup, on 20 prompts
# of different lengths (the default backend: the CPU here, CUDA where the
# build and the machine have it); run and chat print the statistics; seeded
# sampling repeats; bad flags and a draft of another vocabulary give one
# error line and exit 1.
#   tests/cli/test_spec.sh TORCHLESS REPO_ROOT
set -u
TL=$1 ROOT=$2
M="$ROOT/models/kjv-llama-13m-q8_0.gguf"
D="$ROOT/models/kjv-llama-1.5m-draft-q4_0.gguf"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0 n=0
bad() { echo "FAIL: $*"; fail=1; }

i=0
while IFS= read -r p; do
  i=$((i + 1))
  "$TL" run -m "$M" -p "$p" -n 48 --temp 0 -t 2 >"$T/a" 2>"$T/ea" || { bad "run prompt $i: $(cat "$T/ea")"; continue; }
  for mode in "--draft $D" "--draft $D --draft-max 4 --draft-p-min 0" "--lookup 3" "--lookup 1 --draft-max 8"; do
    # shellcheck disable=SC2086
    "$TL" run -m "$M" -p "$p" -n 48 --temp 0 -t 2 $mode >"$T/b" 2>"$T/eb" ||
      { bad "run prompt $i $mode: $(cat "$T/eb")"; continue; }
    n=$((n + 1))
    cmp -s "$T/a" "$T/b" || { bad "prompt $i ($(wc -c <"$T/a") bytes) differs with $mode"; continue; }
    grep -q "^speculative: drafted [0-9]*, accepted [0-9]* (.*%) | [0-9]* target passes for [0-9]* tokens" "$T/eb" ||
      bad "prompt $i $mode: no statistics line"
  done
done <<'PROMPTS'
And
In the beginning
And God said,
The LORD is my shepherd
Blessed are the meek: for they
And the LORD spake unto Moses, saying,
In the beginning God created the heaven and the earth.
And it came to pass, when men began to multiply on the face of the earth,
Now the serpent was more subtil than any beast of the field which the LORD God had made.
For God so loved the world, that he gave his only begotten Son,
And he said unto them, Go ye into all the world, and preach the gospel to every creature.
Let not your heart be troubled: ye believe in God, believe also in me. In my Father's house are many mansions:
The heavens declare the glory of God; and the firmament sheweth his handywork. Day unto day uttereth speech, and night unto night sheweth knowledge.
Honour thy father and thy mother: that thy days may be long upon the land which the LORD thy God giveth thee. Thou shalt not kill. Thou shalt not commit adultery. Thou shalt not steal.
And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God said, Let there be light: and there was light.
To every thing there is a season, and a time to every purpose under the heaven: A time to be born, and a time to die; a time to plant, and a time to pluck up that which is planted; A time to kill, and a time to heal;
Though I speak with the tongues of men and of angels, and have not charity, I am become as sounding brass, or a tinkling cymbal. And though I have the gift of prophecy, and understand all mysteries, and all knowledge; and though I have all faith, so that I could remove mountains, and have not charity, I am nothing.
The LORD bless thee, and keep thee: The LORD make his face shine upon thee, and be gracious unto thee: The LORD lift up his countenance upon thee, and give thee peace. The LORD bless thee, and keep thee: The LORD make his face shine upon thee,
Vanity of vanities, saith the Preacher, vanity of vanities; all is vanity. What profit hath a man of all his labour which he taketh under the sun? One generation passeth away, and another generation cometh: but the earth abideth for ever. The sun also ariseth, and the sun goeth down, and hasteth to his place where he arose. The wind goeth toward the south, and turneth about unto the north;
Repeat this: In the beginning was the Word, and the Word was with God, and the Word was God. The same was in the beginning with God. All things were made by him; and without him was not any thing made that was made. In him was life; and the life was the light of men. Again: In the beginning was the Word, and the Word was with God, and the Word was God. The same was in the beginning with God. All things were made by him;
PROMPTS
[ $i -eq 20 ] || bad "read $i prompts, not 20"
echo "ok: $n greedy runs with --draft / --lookup compared with the target alone on $i prompts"

# chat: the same replies, the statistics at the end
printf 'Who made the heaven?\nAnd the earth?\n' >"$T/in"
"$TL" chat -m "$M" --temp 0 -n 40 -t 2 <"$T/in" >"$T/a" 2>"$T/ea" || bad "chat: $(cat "$T/ea")"
for mode in "--draft $D" "--lookup 2"; do
  # shellcheck disable=SC2086
  "$TL" chat -m "$M" --temp 0 -n 40 -t 2 $mode <"$T/in" >"$T/b" 2>"$T/eb" || bad "chat $mode: $(cat "$T/eb")"
  cmp -s "$T/a" "$T/b" || bad "chat replies differ with $mode"
  grep -q "^speculative: drafted" "$T/eb" || bad "chat $mode: no statistics line"
done

# sampling: a seed repeats
for k in 1 2; do
  "$TL" run -m "$M" -p "And God said" -n 40 --temp 0.8 --seed 7 -t 2 --draft "$D" >"$T/s$k" 2>"$T/es" ||
    bad "sampling with --draft: $(cat "$T/es")"
done
cmp -s "$T/s1" "$T/s2" || bad "sampling with --draft and --seed 7 does not repeat"

# the draft in another format: the Hugging Face folder of ../shared (when present)
HF="$ROOT/../shared/fixtures/models/draft"
if [ -f "$HF/config.json" ]; then
  "$TL" run -m "$M" -p "And God said" -n 40 --temp 0 -t 2 >"$T/a" 2>"$T/ea" || bad "run: $(cat "$T/ea")"
  "$TL" run -m "$M" -p "And God said" -n 40 --temp 0 -t 2 --draft "$HF" >"$T/b" 2>"$T/eb" ||
    bad "--draft $HF: $(cat "$T/eb")"
  cmp -s "$T/a" "$T/b" || bad "greedy text differs with the Hugging Face folder as the draft"
else
  echo "SKIPPED: $HF (fixture not found)"
fi

# bench --draft / --lookup: both rows, the same tokens, the JSON fields
"$TL" bench -m "$M" -p 0 -n 24 -r 1 -t 2 --draft "$D" >"$T/o" 2>"$T/e" || bad "bench --draft: $(cat "$T/e")"
grep -q "tg24 --draft" "$T/o" && grep -q "tokens identical" "$T/o" || bad "bench --draft: $(cat "$T/o")"
"$TL" bench -m "$M" -p 0 -n 24 -r 1 -t 2 --lookup 2 --json >"$T/o" 2>"$T/e" || bad "bench --lookup: $(cat "$T/e")"
grep -q '"test": "spec_lookup".*"acceptance": [0-9.]*, "target_passes_per_token": [0-9.]*, "same_tokens": true' "$T/o" ||
  bad "bench --lookup --json: $(cat "$T/o")"

# bad flags, another vocabulary: one error line, exit 1
check_err() {
  want=$1
  shift
  "$TL" "$@" >"$T/o" 2>"$T/e"
  rc=$?
  lines=$(wc -l <"$T/e")
  if [ $rc -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q "^torchless: error: .*$want" "$T/e"; then
    bad "'$*': exit $rc, $lines lines: $(cat "$T/e")"
  else
    echo "ok: $(cat "$T/e")"
  fi
}
check_err "token 450" run -m "$M" -p hi --draft "$ROOT/tests/data/llama/model-q8_0.gguf"
check_err "draft model" run -m "$M" -p hi --draft "$T/none.gguf"
check_err "give one of them" run -m "$M" -p hi --draft "$D" --lookup 2
check_err "needs --draft MODEL or --lookup N" run -m "$M" -p hi --draft-max 4
check_err "needs --draft MODEL or --lookup N" chat -m "$M" --draft-p-min 0.5
check_err "1..64" run -m "$M" -p hi --lookup 2 --draft-max 0
check_err "1..64" run -m "$M" -p hi --lookup 2 --draft-max 65
check_err "in \[0, 1\]" run -m "$M" -p hi --draft "$D" --draft-p-min 1.5
check_err "1..16" run -m "$M" -p hi --lookup 0
check_err "larger than --draft-max" run -m "$M" -p hi --lookup 2 --draft-min 9 --draft-max 4
check_err "needs a value" run -m "$M" -p hi --draft
exit $fail
