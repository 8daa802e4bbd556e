// The measurements of scripts/serve-bench.sh (see there).
import { startServer } from "../tests/server/serverutil.mjs";

const [cli, model, threads, clients, tokens] = process.argv.slice(2);
const N = Number(clients), T = Number(tokens);
const srv = await startServer(cli, model, ["-t", threads, "--parallel", String(N), "-c", "1024"]);
console.log(srv.log().trim());

async function complete(prompt, extra = {}) {
  const t0 = performance.now();
  const r = await fetch(srv.url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: T, temperature: 0, cache_prompt: false, ...extra }),
  }).then((x) => x.json());
  if (r.error) throw new Error(r.error.message);
  return { tokens: r.usage.completion_tokens, ms: performance.now() - t0 };
}

// A streamed chat turn: milliseconds to the first generated token, and the reply.
async function turn(messages, cache_prompt, max_tokens) {
  const t0 = performance.now();
  const r = await fetch(srv.url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, max_tokens, temperature: 0, stream: true, logprobs: true,
      cache_prompt, stream_options: { include_usage: true } }),
  });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "", ttft = null, text = "", usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(6, at);
      buf = buf.slice(at + 2);
      if (ev === "[DONE]") continue;
      const j = JSON.parse(ev);
      if (j.error) throw new Error(j.error.message);
      if (j.usage) usage = j.usage;
      const c = j.choices[0];
      if (c && (c.delta.content || (c.logprobs && c.logprobs.content.length))) {
        if (ttft === null) ttft = performance.now() - t0;
        text += c.delta.content || "";
      }
    }
  }
  return { ttft, text, usage };
}

const prompts = Array.from({ length: N }, (_, i) => `Request ${i}: In the beginning God created the heaven and the earth.`);
await complete("warm up", { max_tokens: 4 });

// 1. one after another, then all together: alternated over ROUNDS rounds (the
// machine may be shared: each round's two runs see about the same load)
const rounds = Number(process.env.ROUNDS || 3);
const ratios = [], seqs = [], cons = [];
console.log(`\n${N} requests x ${T} tokens, -t ${threads}, ${rounds} rounds:`);
for (let k = 0; k < rounds; k++) {
  let seqTokens = 0;
  const s0 = performance.now();
  for (const p of prompts) seqTokens += (await complete(p)).tokens;
  const seqSec = (performance.now() - s0) / 1000;
  const c0 = performance.now();
  const rs = await Promise.all(prompts.map((p) => complete(p)));
  const conSec = (performance.now() - c0) / 1000;
  const conTokens = rs.reduce((a, r) => a + r.tokens, 0);
  const seqTps = seqTokens / seqSec, conTps = conTokens / conSec;
  seqs.push(seqTps);
  cons.push(conTps);
  ratios.push(conTps / seqTps);
  console.log(`  round ${k + 1}: sequential ${seqTokens} tokens in ${seqSec.toFixed(2)} s = ${seqTps.toFixed(2)} tok/s; ` +
    `concurrent ${conTokens} tokens in ${conSec.toFixed(2)} s = ${conTps.toFixed(2)} tok/s (summed); ${(conTps / seqTps).toFixed(2)}x`);
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`  median: sequential ${median(seqs).toFixed(2)} tok/s, concurrent ${median(cons).toFixed(2)} tok/s, ` +
  `speed-up ${median(ratios).toFixed(2)}x`);

// 2. a conversation's second turn, with and without the cached prefix
const system = "You are a scribe who answers with verses. " + "And the earth was without form, and void; and darkness was upon the face of the deep. ".repeat(12);
const res = { true: [], false: [] };
for (let rep = 0; rep < 3; rep++) {
  for (const cache of [true, false]) {
    const m1 = [{ role: "system", content: `${rep} ${cache} ${system}` }, { role: "user", content: "Who made the light?" }];
    const t1 = await turn(m1, true, 16);
    const m2 = [...m1, { role: "assistant", content: t1.text }, { role: "user", content: "And what came on the second day?" }];
    const t2 = await turn(m2, cache, 4);
    res[cache].push({ ttft: t2.ttft, prompt: t2.usage.prompt_tokens, cached: t2.usage.prompt_tokens_details.cached_tokens });
  }
}
const med = (a) => a.map((x) => x.ttft).sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`\nsecond turn of a conversation (${res.true[0].prompt} prompt tokens), time to first token, median of 3:`);
console.log(`  with prompt caching:    ${med(res.true).toFixed(0)} ms (cached ${res.true.map((x) => x.cached).join(", ")} tokens; all: ${res.true.map((x) => x.ttft.toFixed(0)).join(", ")} ms)`);
console.log(`  without (cache_prompt: false): ${med(res.false).toFixed(0)} ms (cached ${res.false.map((x) => x.cached).join(", ")}; all: ${res.false.map((x) => x.ttft.toFixed(0)).join(", ")} ms)`);
console.log(`  ratio: ${(med(res.false) / med(res.true)).toFixed(1)}x`);
const { code } = await srv.stop();
process.exit(code === 0 ? 0 : 1);
