#!/bin/bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that cannot install
# packages and gets only the checkout: the stripped binaries and the CUDA
# backend from BUILD (default build), the shared libraries they link
# (cJSON, PCRE2, cmocka), gpu-check.sh, and the few fixtures of
# ../shared/fixtures that fit the transfer limit. Writes .devbin/ (add
# /.devbin/ to .git/info/exclude and carry it). On the GPU machine:
#   R=$PWD; P=$(dirname $R); mkdir -p /work; [ -e /work/main ] || ln -s $R /work/main
#   mkdir -p build .db $P/shared && tar -C .db -xJf .devbin/bundle.tar.xz &&
#   tar -C $P/shared -xf .devbin/fix.tar && cp .db/torchless .db/libtorchless-cuda.so build/
#   LD_LIBRARY_PATH=$R/.db .db/gpu-check.sh .db [--quick]
# (/work/main: the tests have this checkout's absolute paths compiled in.)
set -eu
B=${1:-build}
S=$(mktemp -d) F=$(mktemp -d)
trap 'rm -rf "$S" "$F"' EXIT
cp "$B"/torchless "$B"/test_backend_ops "$B"/test_reference "$B"/test_sequences \
  "$B"/libtorchless-cuda.so "$S"/
strip --strip-unneeded "$S"/*
for l in libcjson.so.1 libpcre2-8.so.0 libcmocka.so.0; do cp -L /usr/lib/x86_64-linux-gnu/$l "$S"/; done
cp scripts/gpu-check.sh "$S"/
M=../shared/fixtures/models
mkdir -p "$F"/fixtures/models/{llama,gemma,qwen2}
cp $M/llama/model-q4_0.gguf $M/llama/model-q6_k.gguf "$F"/fixtures/models/llama/
cp $M/gemma/model-q4_k_m.gguf "$F"/fixtures/models/gemma/
cp $M/qwen2/model-q4_0.gguf "$F"/fixtures/models/qwen2/
cp -r ../shared/fixtures/peer "$F"/fixtures/
rm -rf .devbin && mkdir .devbin
tar -C "$S" -cJf .devbin/bundle.tar.xz .
tar -C "$F" -cf .devbin/fix.tar .
ls -la .devbin
