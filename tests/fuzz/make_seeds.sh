#!/bin/sh
# Builds the seed corpora of the fuzz targets from the test fixtures:
#   make_seeds.sh BUILD_DIR
# writes BUILD_DIR/fuzz-corpus/<target>/ (generated files and copies of small
# fixtures; nothing here is committed), keeping what earlier runs added to the
# corpus. BUILD_DIR/gen_seeds must exist.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
data=$root/tests/data
out=$build/fuzz-corpus
for t in gguf safetensors hf_config tokenizer_json tokenizer_model tokenize native chat_template state; do
  mkdir -p "$out/$t"
done
"$build/gen_seeds" "$out" "$data"

# config.json of every fixture; with an index (sharded weights) after the marker
for d in "$data"/*/; do
  a=$(basename "$d")
  if [ -f "$d/config.json" ]; then cp -f "$d/config.json" "$out/hf_config/$a.json"; fi
done
{
  cat "$data/llama/config.json"
  printf '\n@@@@\n{"metadata":{},"weight_map":{"model.embed_tokens.weight":"shard.safetensors",'
  printf '"model.norm.weight":"shard.safetensors"}}'
} >"$out/hf_config/llama-sharded.json"

# tokenizer.json (alone, and with tokenizer_config.json after the marker)
for d in "$data"/*/; do
  a=$(basename "$d")
  [ -f "$d/tokenizer.json" ] || continue
  cp -f "$d/tokenizer.json" "$out/tokenizer_json/$a.json"
  if [ -f "$d/tokenizer_config.json" ]; then
    { cat "$d/tokenizer.json"; printf '\n@@@@\n'; cat "$d/tokenizer_config.json"; } \
      >"$out/tokenizer_json/$a-config.json"
  fi
done
for d in "$data"/*/; do
  a=$(basename "$d")
  if [ -f "$d/tokenizer.model" ]; then cp -f "$d/tokenizer.model" "$out/tokenizer_model/$a.model"; fi
done
cp -f "$out"/tokenizer_model/llama.model "$out/tokenizer_model/dup.model" 2>/dev/null || true

# text: option byte + text
i=0
for s in "In the beginning God created the heaven and the earth." \
         "  leading spaces, tabs	and
newlines" "<s>special</s> <unk> <|endoftext|> <|im_start|>user<|im_end|>" \
         "café naïve 中文 日本語 🙂 Ω≈ç√ 1234567890 don't we'll" \
         "$(printf 'bad \377 utf8 \300\200 \355\240\200')"; do
  printf '\003%s' "$s" >"$out/tokenize/t$i"
  i=$((i + 1))
done
for f in "$data"/vocab/*.inp "$root"/../shared/fixtures/vocab/*.inp; do
  [ -f "$f" ] || continue
  { printf '\001'; head -c 4000 "$f"; } >"$out/tokenize/$(basename "$f")"
done

# chat templates: the repository's, and the fixtures' with a conversation
for f in "$root"/tests/chat/templates/*.jinja; do
  cp -f "$f" "$out/chat_template/$(basename "$f")"
done
for d in "$data"/*/; do
  a=$(basename "$d")
  [ -f "$d/tokenizer_config.json" ] || continue
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1])).get("chat_template"); print(t if isinstance(t,str) else "", end="")' \
    "$d/tokenizer_config.json" >"$out/chat_template/$a.jinja" 2>/dev/null || rm -f "$out/chat_template/$a.jinja"
  { cat "$out/chat_template/$a.jinja" 2>/dev/null
    printf '\n@@@@\n{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"add_generation_prompt":false}'
  } >"$out/chat_template/$a-vars.jinja"
done

# state files of the demo model (run --prompt-cache), 3 and 9 tokens
if [ -x "$build/torchless" ]; then
  for p in "In the" "In the beginning God created the heaven"; do
    f="$out/state/$(echo "$p" | tr ' ' _).state"
    rm -f "$f"
    "$build/torchless" run -m "$data/demo/model-q8_0.gguf" -p "$p" -n 1 -t 1 --backend cpu \
      -c 64 --prompt-cache "$f" >/dev/null 2>&1 || true
  done
fi

chmod -R u+w "$out"
echo "seeds in $out: $(find "$out" -type f | wc -l) files"

