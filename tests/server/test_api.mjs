// torchless serve against the official `openai` npm client (and plain fetch
// for what the client will not send): the demo model, a real server on a
// free loopback port, no mocks. Usage: node test_api.mjs TORCHLESS MODEL BUILD_DIR
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";

import { metrics, sleep, startServer } from "./serverutil.mjs";

const [cli, model] = process.argv.slice(2);
const require = createRequire(path.join(process.env.TL_SERVER_PEER, "package.json"));
const { OpenAI } = require("openai");

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
const MODEL_ID = path.basename(model);
const chatMsgs = (text, system) => [
  ...(system ? [{ role: "system", content: system }] : []),
  { role: "user", content: text },
];

let srv, client;

async function post(url, body, headers = {}) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, json, text, headers: r.headers };
}

// A whole streamed reply through the client: text, chunks, finish, usage.
async function streamChat(c, params) {
  const stream = await c.chat.completions.create({ ...params, stream: true });
  let text = "", finish = null, usage = null, role = null, chunks = 0;
  const logprobs = [];
  for await (const ch of stream) {
    chunks++;
    assert.equal(ch.object, "chat.completion.chunk");
    assert.match(ch.id, /^chatcmpl-/);
    if (ch.usage) usage = ch.usage;
    for (const choice of ch.choices) {
      assert.equal(choice.index, 0);
      if (choice.delta.role) role = choice.delta.role;
      if (choice.delta.content) text += choice.delta.content;
      if (choice.logprobs && choice.logprobs.content) logprobs.push(...choice.logprobs.content);
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { text, finish, usage, role, chunks, logprobs };
}

function checkUsage(u) {
  assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, "usage.prompt_tokens");
  assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 0);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.ok(Number.isInteger(u.prompt_tokens_details.cached_tokens));
  assert.ok(u.prompt_tokens_details.cached_tokens < u.prompt_tokens);
}

function checkChat(r, maxTokens) {
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL_ID);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, "assistant");
  assert.equal(typeof c.message.content, "string");
  assert.ok(["stop", "length"].includes(c.finish_reason), c.finish_reason);
  checkUsage(r.usage);
  if (maxTokens !== undefined) {
    assert.ok(r.usage.completion_tokens <= maxTokens);
    if (c.finish_reason === "length") assert.equal(r.usage.completion_tokens, maxTokens);
  }
}

// ---- the endpoints --------------------------------------------------------------

test("health, models, metrics and the page", async () => {
  const h = await fetch(srv.url + "/health");
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: "ok" });
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, MODEL_ID);
  assert.equal(list.data[0].object, "model");
  const m = await fetch(srv.url + "/metrics");
  assert.equal(m.status, 200);
  assert.match(m.headers.get("content-type"), /^text\/plain/);
  const text = await m.text();
  for (const name of ["requests_total", "tokens_generated_total", "queue_length", "slots_busy",
    "slots_total", "tokens_per_second", "prompt_tokens_cached_total"])
    assert.match(text, new RegExp(`^# TYPE torchless_${name} (counter|gauge)$`, "m"), name);
  const page = await fetch(srv.url + "/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  const html = await page.text();
  assert.match(html, /<script>/);
  assert.match(html, /\/v1\/chat\/completions/);
});

test("non-streaming chat", async () => {
  const r = await client.chat.completions.create({
    model: MODEL_ID, messages: chatMsgs("Who was Moses?", "Answer briefly."), max_tokens: 16, seed: 7,
  });
  checkChat(r, 16);
  assert.ok(r.choices[0].message.content.length > 0, "an empty reply");
  assert.equal(r.choices[0].logprobs, null);
});

test("streaming chat: chunks, usage, and the same text as without streaming", async () => {
  const params = {
    model: MODEL_ID, messages: chatMsgs("Tell me of David."), max_tokens: 24, seed: 11,
    temperature: 0.9, top_p: 0.95,
  };
  const whole = await client.chat.completions.create(params);
  checkChat(whole, 24);
  const s = await streamChat(client, { ...params, stream_options: { include_usage: true } });
  assert.equal(s.role, "assistant");
  assert.ok(s.chunks >= 3, `only ${s.chunks} chunks`);
  assert.equal(s.text, whole.choices[0].message.content);
  assert.equal(s.finish, whole.choices[0].finish_reason);
  assert.ok(s.usage, "no usage chunk with include_usage");
  assert.equal(s.usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(s.usage.prompt_tokens, whole.usage.prompt_tokens);
  // without include_usage: no usage chunk
  const s2 = await streamChat(client, params);
  assert.equal(s2.usage, null);
  assert.equal(s2.text, s.text);
});

test("SSE wire format ends with data: [DONE]", async () => {
  const r = await fetch(srv.url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: chatMsgs("Hello"), max_tokens: 4, stream: true }),
  });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/event-stream/);
  const body = await r.text();
  const events = body.split("\n\n").filter((e) => e);
  for (const e of events) assert.match(e, /^data: /);
  assert.equal(events[events.length - 1], "data: [DONE]");
  assert.ok(body.endsWith("data: [DONE]\n\n"));
  for (const e of events.slice(0, -1)) JSON.parse(e.slice(6));
});

test("seed reproducibility", async () => {
  const p = (seed) => ({ messages: chatMsgs("Sing of the rivers."), max_tokens: 20, seed, temperature: 1 });
  const a = await client.chat.completions.create(p(1234));
  const b = await client.chat.completions.create(p(1234));
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const others = new Set();
  for (const seed of [1, 2, 3, 4]) {
    const r = await client.chat.completions.create(p(seed));
    others.add(r.choices[0].message.content);
  }
  assert.ok(others.size >= 2, "four seeds gave one text: the seed is not used");
});

test("completions: a string prompt, token ids, and the CLI's greedy text", async () => {
  const prompt = "In the beginning";
  const r = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 12, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 12);
  checkUsage(r.usage);
  // the same greedy tokens as `torchless run --temp 0` (prompt + text + "\n")
  const run = execFileSync(cli, ["run", "-m", model, "-p", prompt, "-n", "12", "--temp", "0", "-t", "1"],
    { stdio: ["ignore", "pipe", "ignore"] }).toString();
  assert.equal(prompt + r.choices[0].text + "\n", run);
  // token ids of the prompt give the same
  const ids = execFileSync(cli, ["tokenize", "-m", model, "-p", prompt]).toString().trim().split(/\s+/).map(Number);
  assert.equal(r.usage.prompt_tokens, ids.length);
  const r2 = await client.completions.create({ prompt: ids, max_tokens: 12, temperature: 0 });
  assert.equal(r2.choices[0].text, r.choices[0].text);
  // streamed completions
  const stream = await client.completions.create({ prompt, max_tokens: 12, temperature: 0, stream: true });
  let text = "", finish = null;
  for await (const ch of stream) {
    assert.equal(ch.object, "text_completion");
    text += ch.choices[0]?.text ?? "";
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, r.choices[0].text);
  assert.equal(finish, "length");
});

test("max_tokens and max_completion_tokens", async () => {
  for (const n of [1, 3, 9]) {
    const r = await client.chat.completions.create({ messages: chatMsgs("Speak."), max_tokens: n, seed: n, min_p: 0.05 });
    checkChat(r, n);
  }
  const r = await client.chat.completions.create({ messages: chatMsgs("Speak."), max_completion_tokens: 2, seed: 3 });
  checkChat(r, 2);
  // a limit beyond the context: capped, ends with "length" at the context's end
  const big = await client.completions.create({ prompt: "And", max_tokens: 100000, temperature: 0, stop: null,
    frequency_penalty: 0 });
  assert.ok(big.usage.total_tokens <= 512, `total ${big.usage.total_tokens} beyond the context`);
});

test("stop sequences (string and list, streaming too)", async () => {
  const base = { prompt: "And God said", max_tokens: 30, temperature: 0 };
  const full = (await client.completions.create(base)).choices[0].text;
  // a word from the middle of the greedy text
  const words = full.split(" ").filter((w) => w.length >= 3);
  assert.ok(words.length >= 3, `too few words in ${JSON.stringify(full)}`);
  const stop = words[Math.floor(words.length / 2)];
  const at = full.indexOf(stop);
  const r = await client.completions.create({ ...base, stop });
  assert.equal(r.choices[0].text, full.slice(0, at));
  assert.equal(r.choices[0].finish_reason, "stop");
  const r2 = await client.completions.create({ ...base, stop: ["zzzz-never", stop] });
  assert.equal(r2.choices[0].text, full.slice(0, at));
  const stream = await client.completions.create({ ...base, stop: [stop], stream: true });
  let text = "", finish = null;
  for await (const ch of stream) {
    text += ch.choices[0]?.text ?? "";
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, full.slice(0, at));
  assert.equal(finish, "stop");
  // a stop string that never comes changes nothing
  const r3 = await client.completions.create({ ...base, stop: "qqqqq" });
  assert.equal(r3.choices[0].text, full);
});

test("logprobs and top_logprobs", async () => {
  const r = await client.chat.completions.create({
    messages: chatMsgs("Who was Aaron?"), max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  checkChat(r, 10);
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  let text = "";
  for (const t of lp) {
    assert.equal(typeof t.token, "string");
    assert.ok(t.logprob <= 0 && Number.isFinite(t.logprob));
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    assert.equal(t.top_logprobs.length, 3);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
    // greedy: the token is the most likely one
    assert.equal(t.token, t.top_logprobs[0].token);
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6);
    text += t.token;
  }
  assert.equal(text.trimStart(), r.choices[0].message.content);
  // streamed: the same entries
  const s = await streamChat(client, { messages: chatMsgs("Who was Aaron?"), max_tokens: 10, temperature: 0,
    logprobs: true, top_logprobs: 3 });
  assert.deepEqual(s.logprobs.map((t) => t.token), lp.map((t) => t.token));
  // completions: the legacy shape
  const c = await client.completions.create({ prompt: "In the beginning", max_tokens: 5, temperature: 0, logprobs: 2 });
  const l = c.choices[0].logprobs;
  assert.equal(l.tokens.length, 5);
  assert.equal(l.token_logprobs.length, 5);
  assert.equal(l.top_logprobs.length, 5);
  assert.equal(l.tokens.join(""), c.choices[0].text);
  for (const d of l.top_logprobs) assert.ok(Object.keys(d).length >= 1 && Object.keys(d).length <= 2);
  // without logprobs: null
  const n = await client.chat.completions.create({ messages: chatMsgs("Hi"), max_tokens: 2 });
  assert.equal(n.choices[0].logprobs, null);
});

test("penalties and sampling options are accepted and change the text", async () => {
  const base = { prompt: "And the LORD", max_tokens: 40, temperature: 0 };
  const plain = (await client.completions.create(base)).choices[0].text;
  const pen = (await client.completions.create({ ...base, frequency_penalty: 2, presence_penalty: 2 })).choices[0].text;
  assert.notEqual(pen, plain, "frequency/presence penalties had no effect");
  const rep = (await client.completions.create({ ...base, repeat_penalty: 1.5 })).choices[0].text;
  assert.notEqual(rep, plain, "repeat_penalty had no effect");
  // top_k 1 at temperature 1 is greedy
  const k1 = (await client.completions.create({ ...base, temperature: 1, top_k: 1, seed: 5 })).choices[0].text;
  assert.equal(k1, plain);
});

test("a second turn reports its cached tokens", async () => {
  const sys = "You are a teacher of the scriptures; answer in one sentence.";
  const m1 = chatMsgs("Who built the ark?", sys);
  const r1 = await client.chat.completions.create({ messages: m1, max_tokens: 16, seed: 1 });
  const m2 = [...m1, { role: "assistant", content: r1.choices[0].message.content },
    { role: "user", content: "And how long did it rain?" }];
  const r2 = await client.chat.completions.create({ messages: m2, max_tokens: 8, seed: 1 });
  const cached = r2.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached >= r1.usage.prompt_tokens - 2, `cached ${cached} of the first turn's ${r1.usage.prompt_tokens}`);
  assert.ok(r2.usage.prompt_tokens > r1.usage.prompt_tokens);
  // cache_prompt: false (an extension, as llama-server's) reuses nothing
  const r3 = await post(srv.url + "/v1/chat/completions", { messages: m2, max_tokens: 8, seed: 1, cache_prompt: false });
  assert.equal(r3.status, 200);
  assert.equal(r3.json.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(r3.json.choices[0].message.content, r2.choices[0].message.content);
});

test("malformed bodies and bad parameters: 400 naming the parameter", async () => {
  const url = srv.url + "/v1/chat/completions";
  const ok = { messages: chatMsgs("x"), max_tokens: 2 };
  const cases = [
    ["{not json", null],
    ["[1, 2]", null],
    ["", null],
    ["\u0000\u00ff\u00fe", null],
    ["[".repeat(100000), null],
    [{ ...ok, messages: "hello" }, "messages"],
    [{ ...ok, messages: [] }, "messages"],
    [{ max_tokens: 2 }, "messages"],
    [{ ...ok, messages: [{ content: "x" }] }, "messages"],
    [{ ...ok, messages: [{ role: "wizard", content: "x" }] }, "messages"],
    [{ ...ok, messages: [{ role: "user", content: 5 }] }, "messages"],
    [{ ...ok, messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }, "messages"],
    [{ ...ok, temperature: "hot" }, "temperature"],
    [{ ...ok, temperature: 5 }, "temperature"],
    [{ ...ok, max_tokens: -1 }, "max_tokens"],
    [{ ...ok, max_tokens: 1.5 }, "max_tokens"],
    [{ ...ok, max_tokens: "10" }, "max_tokens"],
    [{ ...ok, max_completion_tokens: 0 }, "max_completion_tokens"],
    [{ ...ok, top_p: 0 }, "top_p"],
    [{ ...ok, top_p: 1.5 }, "top_p"],
    [{ ...ok, top_k: -3 }, "top_k"],
    [{ ...ok, min_p: 2 }, "min_p"],
    [{ ...ok, seed: "abc" }, "seed"],
    [{ ...ok, stop: 5 }, "stop"],
    [{ ...ok, stop: ["a", "b", "c", "d", "e"] }, "stop"],
    [{ ...ok, stop: [1] }, "stop"],
    [{ ...ok, presence_penalty: 3 }, "presence_penalty"],
    [{ ...ok, frequency_penalty: "x" }, "frequency_penalty"],
    [{ ...ok, repeat_penalty: 0 }, "repeat_penalty"],
    [{ ...ok, n: 2 }, "n"],
    [{ ...ok, stream: "yes" }, "stream"],
    [{ ...ok, stream: true, stream_options: 3 }, "stream_options"],
    [{ ...ok, logprobs: 1 }, "logprobs"],
    [{ ...ok, top_logprobs: 3 }, "top_logprobs"],
    [{ ...ok, logprobs: true, top_logprobs: 50 }, "top_logprobs"],
    [{ ...ok, model: 3 }, "model"],
    [{ ...ok, messages: [{ role: "user", content: "x".repeat(600000) }] }, "messages"],
  ];
  for (const [body, param] of cases) {
    const r = await post(url, body);
    const what = JSON.stringify(body).slice(0, 80);
    assert.equal(r.status, 400, `${what}: status ${r.status} ${r.text.slice(0, 200)}`);
    assert.ok(r.json && r.json.error, `${what}: no error object`);
    assert.equal(r.json.error.type, "invalid_request_error");
    assert.equal(typeof r.json.error.message, "string");
    assert.equal(r.json.error.param, param, `${what}: param ${r.json.error.param}, message ${r.json.error.message}`);
  }
  const curl = srv.url + "/v1/completions";
  for (const [body, param] of [
    [{ max_tokens: 2 }, "prompt"],
    [{ prompt: 5 }, "prompt"],
    [{ prompt: [1, -2] }, "prompt"],
    [{ prompt: [1, 999999] }, "prompt"],
    [{ prompt: [] }, "prompt"],
    [{ prompt: "x", logprobs: true }, "logprobs"],
    [{ prompt: "x", echo: true }, "echo"],
  ]) {
    const r = await post(curl, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.param, param, JSON.stringify(r.json));
  }
  // invalid UTF-8 in a string
  const bad = Buffer.concat([Buffer.from('{"prompt":"ab'), Buffer.from([0xff, 0xfe]), Buffer.from('c","max_tokens":2}')]);
  const r = await post(curl, new Uint8Array(bad));
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, "prompt");
  // the client's own error class
  await assert.rejects(client.chat.completions.create({ messages: chatMsgs("x"), temperature: 9 }),
    (e) => e.status === 400 && /temperature/.test(e.message));
});

test("fuzz: 400 mutated and random bodies get 200 or 400, never a crash", async () => {
  // a seeded generator, so that a failure can be replayed
  let st = 0x2545f491;
  const rnd = () => ((st = (st * 1103515245 + 12345) >>> 0) / 4294967296);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const values = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, "", "x", "\u0000", "\ud800",
    [], [1], ["a"], {}, { a: 1 }, "A".repeat(3000), [[[[]]]], -0, 3, 20, 100];
  const keys = ["messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
    "stop", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs", "top_logprobs", "n",
    "stream", "stream_options", "model", "cache_prompt", "max_completion_tokens", "echo"];
  const base = { messages: chatMsgs("Hi"), prompt: "Hi", max_tokens: 3 };
  const codes = {};
  for (let i = 0; i < 400; i++) {
    let body;
    if (i % 10 === 9) {
      body = Buffer.from(Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)));
      body = new Uint8Array(body);
    } else {
      const b = structuredClone(base);
      for (let k = 0, nk = 1 + Math.floor(rnd() * 3); k < nk; k++) b[pick(keys)] = pick(values);
      if (rnd() < 0.3) b.messages = [{ role: pick(["user", "system", "assistant", "bot", 5, null]), content: pick(values) }];
      if (b.stream === true) b.stream = false; // streams are covered above; keep the replies whole
      body = JSON.stringify(b);
    }
    const url = srv.url + (i % 2 ? "/v1/chat/completions" : "/v1/completions");
    const r = await post(url, body);
    codes[r.status] = (codes[r.status] || 0) + 1;
    assert.ok(r.status === 200 || r.status === 400, `${url} ${String(body).slice(0, 200)}: ${r.status} ${r.text.slice(0, 200)}`);
    assert.ok(r.json, `not JSON: ${r.text.slice(0, 100)}`);
    if (r.status === 400) assert.equal(typeof r.json.error.message, "string");
    else assert.ok(r.json.choices && r.json.usage);
  }
  console.log(`  statuses: ${JSON.stringify(codes)}`);
  assert.ok(codes[200] > 20 && codes[400] > 20, JSON.stringify(codes));
});

test("404, 405, 413", async () => {
  const r404 = await fetch(srv.url + "/v1/nothing");
  assert.equal(r404.status, 404);
  assert.equal((await r404.json()).error.type, "not_found_error");
  const r405 = await fetch(srv.url + "/v1/chat/completions");
  assert.equal(r405.status, 405);
  assert.match(r405.headers.get("allow"), /POST/);
  assert.ok((await r405.json()).error.message);
  const r405b = await post(srv.url + "/v1/models", {});
  assert.equal(r405b.status, 405);
  const huge = JSON.stringify({ prompt: "a".repeat(5 << 20) });
  const r413 = await post(srv.url + "/v1/completions", huge);
  assert.equal(r413.status, 413);
  assert.ok(r413.json.error.message);
});

test("the server survives it all", async () => {
  const h = await fetch(srv.url + "/health");
  assert.equal(h.status, 200);
  const r = await client.chat.completions.create({ messages: chatMsgs("Still there?"), max_tokens: 4 });
  checkChat(r, 4);
});

test("a client that disconnects mid-stream frees its slot", async () => {
  const one = await startServer(cli, model, ["--parallel", "1"]);
  try {
    const c = new OpenAI({ baseURL: one.url + "/v1", apiKey: "none", maxRetries: 0 });
    const before = await metrics(one.url);
    const ac = new AbortController();
    const stream = await c.chat.completions.create(
      { messages: chatMsgs("Tell a long story."), max_tokens: 400, stream: true, temperature: 1, seed: 3 },
      { signal: ac.signal });
    let n = 0;
    try {
      for await (const ch of stream) {
        if (ch.choices[0]?.delta?.content && ++n === 3) ac.abort();
      }
    } catch (e) {
      assert.ok(ac.signal.aborted, "the stream failed before the abort: " + e);
    }
    let m;
    for (let i = 0; i < 50; i++) {
      m = await metrics(one.url);
      if (m.torchless_slots_busy === 0) break;
      await sleep(100);
    }
    assert.equal(m.torchless_slots_busy, 0, "the slot is still busy after the client left");
    const gen = m.torchless_tokens_generated_total - before.torchless_tokens_generated_total;
    assert.ok(gen < 200, `${gen} tokens generated for a client that left after 3`);
    // the one slot serves the next request
    const r = await c.chat.completions.create({ messages: chatMsgs("Next."), max_tokens: 3 });
    checkChat(r, 3);
    // a non-streaming client that gives up is noticed too
    const ac2 = new AbortController();
    const p = c.chat.completions.create({ messages: chatMsgs("Another long story."), max_tokens: 450,
      temperature: 1, seed: 4 }, { signal: ac2.signal }).catch((e) => e);
    await sleep(150);
    ac2.abort();
    await p;
    for (let i = 0; i < 50; i++) {
      m = await metrics(one.url);
      if (m.torchless_slots_busy === 0) break;
      await sleep(100);
    }
    assert.equal(m.torchless_slots_busy, 0);
  } finally {
    const { code } = await one.stop();
    assert.equal(code, 0);
  }
});

test("32 concurrent clients x 4 requests: no failures, every reply well formed", async () => {
  // the greedy references, one at a time
  const prompts = ["In the beginning", "And Moses said", "Blessed are", "The LORD is my"];
  const ref = {};
  for (const p of prompts)
    ref[p] = (await client.completions.create({ prompt: p, max_tokens: 12, temperature: 0 })).choices[0].text;
  let greedy = 0, same = 0;
  const client32 = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0, timeout: 300000 });
  const one = async (i, k) => {
    const kind = (i + k) % 4;
    const prompt = prompts[(i * 4 + k) % 4];
    if (kind === 0) {
      const r = await client32.completions.create({ prompt, max_tokens: 12, temperature: 0 });
      assert.equal(r.usage.completion_tokens, 12);
      greedy++;
      if (r.choices[0].text === ref[prompt]) same++;
    } else if (kind === 1) {
      const r = await client32.chat.completions.create({ messages: chatMsgs(`Question ${i}.${k}: ${prompt}?`),
        max_tokens: 8 + (i % 9), seed: i * 10 + k });
      checkChat(r, 8 + (i % 9));
    } else if (kind === 2) {
      const s = await streamChat(client32, { messages: chatMsgs(prompt), max_tokens: 10, seed: i,
        stream_options: { include_usage: true } });
      assert.ok(s.finish === "stop" || s.finish === "length");
      assert.ok(s.usage && s.usage.completion_tokens <= 10);
      assert.equal(s.role, "assistant");
    } else {
      const stream = await client32.completions.create({ prompt, max_tokens: 12, temperature: 0, stream: true });
      let text = "";
      for await (const ch of stream) text += ch.choices[0]?.text ?? "";
      greedy++;
      if (text === ref[prompt]) same++;
    }
  };
  const failures = [];
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 32 }, async (_, i) => {
    for (let k = 0; k < 4; k++) {
      try {
        await one(i, k);
      } catch (e) {
        failures.push(`client ${i} request ${k}: ${e.stack || e}`);
      }
    }
  }));
  const secs = (Date.now() - t0) / 1000;
  assert.deepEqual(failures, [], failures.join("\n"));
  console.log(`  128 requests in ${secs.toFixed(1)} s; ${same} of ${greedy} greedy replies equal the one-at-a-time text`);
  // batched decoding gives the same greedy tokens (float sums in another
  // order may flip a near-tie now and then)
  assert.ok(same >= greedy * 0.9, `${same} of ${greedy} greedy replies match`);
  const m = await metrics(srv.url);
  assert.equal(m.torchless_slots_busy, 0);
  assert.equal(m.torchless_queue_length, 0);
});

test("a full queue answers 503", async () => {
  const small = await startServer(cli, model, ["--parallel", "1", "--queue", "1"]);
  try {
    const body = { prompt: "And it came to pass", max_tokens: 200, temperature: 0 };
    const rs = await Promise.all(Array.from({ length: 6 }, () => post(small.url + "/v1/completions", body)));
    const codes = rs.map((r) => r.status).sort();
    assert.ok(codes.includes(200), codes.join(","));
    assert.ok(codes.includes(503), codes.join(","));
    for (const r of rs)
      if (r.status === 503) {
        assert.equal(r.json.error.type, "unavailable_error");
        assert.match(r.json.error.message, /queue/);
      } else assert.equal(r.status, 200);
  } finally {
    await small.stop();
  }
});

test("--api-key: 401 without or with a wrong key, served with the key", async () => {
  const keyed = await startServer(cli, model, ["--api-key", "sesame-open"]);
  try {
    const wrong = new OpenAI({ baseURL: keyed.url + "/v1", apiKey: "sesame-shut", maxRetries: 0 });
    await assert.rejects(wrong.chat.completions.create({ messages: chatMsgs("x"), max_tokens: 2 }),
      (e) => e.status === 401);
    await assert.rejects(wrong.models.list(), (e) => e.status === 401);
    const prefix = new OpenAI({ baseURL: keyed.url + "/v1", apiKey: "sesame-ope", maxRetries: 0 });
    await assert.rejects(prefix.models.list(), (e) => e.status === 401);
    const none = await post(keyed.url + "/v1/completions", { prompt: "x", max_tokens: 1 });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.type, "authentication_error");
    assert.equal((await fetch(keyed.url + "/metrics")).status, 401);
    assert.equal((await fetch(keyed.url + "/health")).status, 200);
    const right = new OpenAI({ baseURL: keyed.url + "/v1", apiKey: "sesame-open", maxRetries: 0 });
    checkChat(await right.chat.completions.create({ messages: chatMsgs("x"), max_tokens: 2 }), 2);
  } finally {
    await keyed.stop();
  }
});

test("SIGTERM with a stream in flight: the stream ends, exit status 0", async () => {
  const s = await startServer(cli, model, []);
  const r = await fetch(s.url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: chatMsgs("A long tale."), max_tokens: 450, stream: true, temperature: 1 }),
  });
  const reader = r.body.getReader();
  await reader.read();
  const t0 = Date.now();
  s.proc.kill("SIGTERM");
  let body = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += Buffer.from(value).toString();
    }
  } catch {}
  const { code } = await s.exited;
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 10000, "shutdown took more than 10 s");
  if (body) assert.match(body, /shutting down|\[DONE\]/);
  const sigint = await startServer(cli, model, []);
  assert.equal((await sigint.stop("SIGINT")).code, 0);
});

// ---- run ---------------------------------------------------------------------------

srv = await startServer(cli, model, ["--parallel", "4"]);
client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0, timeout: 120000 });
let failed = 0, ran = 0;
const only = process.env.TL_TEST_FILTER;
for (const t of tests) {
  if (only && !t.name.includes(only)) continue;
  ran++;
  const t0 = Date.now();
  try {
    await t.fn();
    console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name}\n${e.stack || e}`);
  }
}
const { code } = await srv.stop();
if (code !== 0) {
  failed++;
  console.log(`FAIL the server exited with ${code} on SIGTERM\n${srv.log()}`);
}
console.log(failed ? `${failed} of ${ran} test(s) failed` : `all ${ran} tests passed`);
process.exit(failed ? 1 : 0);
