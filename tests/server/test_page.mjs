// The chat page of torchless serve in a real browser: Debian's chromium,
// headless, driven by puppeteer-core. Loads the page, sends a message, waits
// for the streamed reply and checks it (against the API's reply for the same
// request, and that it arrived in pieces), stops a long reply with the Stop
// button, and keeps screenshots under BUILD_DIR/test-artifacts/.
// Usage: node test_page.mjs TORCHLESS MODEL BUILD_DIR (TL_CHROMIUM: the browser)
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

import { metrics, sleep, startServer } from "./serverutil.mjs";

const [cli, model, build] = process.argv.slice(2);
const require = createRequire(path.join(process.env.TL_SERVER_PEER, "package.json"));
const puppeteer = require("puppeteer-core");
const artifacts = path.join(build, "test-artifacts");
fs.mkdirSync(artifacts, { recursive: true });

const srv = await startServer(cli, model, ["--parallel", "2"]);
let browser, failed = false;
try {
  browser = await puppeteer.launch({
    executablePath: process.env.TL_CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.setViewport({ width: 900, height: 700 });
  await page.goto(srv.url + "/", { waitUntil: "load" });
  assert.equal(await page.title(), "torchless chat");
  // the model's name comes from /v1/models
  await page.waitForFunction(() => document.getElementById("model").textContent !== "…", { timeout: 10000 });
  assert.equal(await page.$eval("#model", (e) => e.textContent), path.basename(model));

  // a conversation: the reply streams in (the text grows) and ends
  await page.$eval("#temperature", (e) => { e.value = "0"; });
  await page.$eval("#max_tokens", (e) => { e.value = "40"; });
  await page.type("#input", "Who was the first king of Israel?");
  // watch the reply's length while it streams
  await page.evaluate(() => {
    window.lengths = [];
    new MutationObserver(() => {
      const t = document.querySelector(".msg.assistant .text");
      if (t) window.lengths.push(t.textContent.length);
    }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
  });
  await page.click("#send");
  await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: 60000 });
  const reply = await page.$eval(".msg.assistant .text", (e) => e.textContent);
  const lengths = await page.evaluate(() => window.lengths);
  console.log(`reply (${reply.length} chars, ${new Set(lengths).size} sizes seen): ${JSON.stringify(reply)}`);
  assert.ok(reply.length > 0, "no reply appeared");
  // streamed: the page applied the reply as several server-sent events (the
  // sizes the observer happens to see depend on how the reads batch them)
  const pieces = Number(await page.$eval(".msg.assistant", (e) => e.dataset.pieces || 0));
  console.log(`${pieces} streamed pieces applied`);
  assert.ok(pieces >= 3, "the reply did not stream in pieces");
  assert.equal(await page.$$eval(".msg.error", (e) => e.length), 0, "the page shows an error");
  // the same request through the API gives the same greedy text
  const api = await fetch(srv.url + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Who was the first king of Israel?" }],
      temperature: 0, max_tokens: 40 }),
  }).then((r) => r.json());
  assert.equal(reply, api.choices[0].message.content);
  const stats = await page.$eval("#stats", (e) => e.textContent);
  assert.match(stats, /tok\/s/);
  await page.screenshot({ path: path.join(artifacts, "server-page.png") });

  // a second turn with a system prompt, stopped with the Stop button
  await page.click("summary");
  await page.type("#system", "Speak as a prophet.");
  await page.$eval("#temperature", (e) => { e.value = "1"; });
  await page.$eval("#max_tokens", (e) => { e.value = "450"; });
  await page.type("#input", "Tell a long story.");
  await page.click("#send");
  await page.waitForFunction(() => {
    const all = document.querySelectorAll(".msg.assistant .text");
    return all.length === 2 && all[1].textContent.length > 0;
  }, { timeout: 30000 });
  await page.click("#stop");
  await page.waitForSelector('.msg.assistant:nth-of-type(4)[data-state="done"]', { timeout: 10000 });
  assert.equal(await page.$eval("#send", (e) => e.disabled), false);
  let m;
  for (let i = 0; i < 50; i++) {
    m = await metrics(srv.url);
    if (m.torchless_slots_busy === 0) break;
    await sleep(100);
  }
  assert.equal(m.torchless_slots_busy, 0, "the stopped reply still holds a slot");
  await page.screenshot({ path: path.join(artifacts, "server-page-stopped.png") });
  assert.deepEqual(errors, []);
  console.log(`ok   the chat page (screenshots: ${artifacts}/server-page.png, server-page-stopped.png)`);
} catch (e) {
  failed = true;
  console.log(`FAIL the chat page\n${e.stack || e}`);
} finally {
  if (browser) await browser.close();
  const { code } = await srv.stop();
  if (code !== 0) {
    failed = true;
    console.log(`FAIL the server exited with ${code}`);
  }
}
process.exit(failed ? 1 : 0);
