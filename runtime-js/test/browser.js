// Headless Chromium for the tests and the benchmark: Debian's /usr/bin/chromium driven by
// playwright-core, pages served from runtime-js/ by `python -m http.server` on 127.0.0.1.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";

import { PYTHON, ROOT } from "./helpers.js";

export const CHROMIUM = process.env.EDGESEQ_CHROMIUM ?? "/usr/bin/chromium";
// what runs Chromium on these machines: no sandbox as root, no network beyond loopback
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Why Chromium cannot run here, or null. On CI (CI=true) a missing browser is a failure. */
export function chromiumMissing() {
  if (existsSync(CHROMIUM)) return null;
  const reason = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set EDGESEQ_CHROMIUM)`;
  if (process.env.CI) throw new Error(`${reason}; CI must run the browser tests`);
  return reason;
}

/** Serve `root` on 127.0.0.1 (a free port); resolves to {url, stop()}. */
export function serve(root = ROOT, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", root], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`http.server did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    let seen = "";
    child.stdout.on("data", (d) => {
      seen += d;
      const m = /port (\d+)/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: `http://127.0.0.1:${m[1]}`,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done();
              child.once("exit", done);
              process.kill(child.pid, "SIGTERM");
            }),
        });
      }
    });
    child.stderr.resume(); // request log
    child.on("error", (exc) => {
      clearTimeout(timer);
      reject(exc);
    });
  });
}

/** A headless Chromium (playwright-core) with the flags above. */
export async function launch() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
}
