// Starting and stopping `torchless serve` for the tests: on a free loopback
// port (--port 0; the server prints the one it bound), waiting until it
// serves.
import { spawn } from "node:child_process";

export async function startServer(cli, model, args = [], { quiet = true } = {}) {
  const proc = spawn(cli, ["serve", "-m", model, "--port", "0", "-t", "1", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start in 60 s:\n" + log)), 60000);
    proc.stderr.on("data", (d) => {
      log += d.toString();
      if (!quiet) process.stderr.write(d);
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && /torchless: serving/.test(log)) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before serving:\n${log}`));
    });
  });
  const port = await ready;
  const exited = new Promise((resolve) => proc.on("exit", (code, sig) => resolve({ code, sig })));
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    log: () => log,
    exited,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode !== null) return { code: proc.exitCode };
      proc.kill(signal);
      return exited;
    },
  };
}

// Prometheus text -> { name: value } (unlabelled metrics).
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const [name, value] = line.split(" ");
    out[name] = Number(value);
  }
  return out;
}

export async function metrics(url) {
  const r = await fetch(url + "/metrics");
  return parseMetrics(await r.text());
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
