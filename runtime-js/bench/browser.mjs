#!/usr/bin/env node
// Per-frame latency in headless Chromium (onnxruntime-web, WASM, one thread): opens
// web/bench.html with MODEL and prints its result as a table, or JSON with --json.
// Exits 3 when no Chromium is installed (the reason on stderr).
//
//   node bench/browser.mjs --model model.onnx [--rounds 20] [--block-ms 25] [--warmup-ms 50] [--json]
import { parseArgs } from "node:util";
import { resolve } from "node:path";

import { chromiumMissing, launch, serve } from "../test/browser.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    rounds: { type: "string", default: "20" },
    "block-ms": { type: "string", default: "25" },
    "warmup-ms": { type: "string", default: "50" },
    json: { type: "boolean", default: false },
    screenshot: { type: "string" },
  },
});
if (!values.model) {
  console.error("usage: node bench/browser.mjs --model MODEL.onnx [--rounds N] [--block-ms MS] [--warmup-ms MS] [--json]");
  process.exit(2);
}
let missing;
try {
  missing = chromiumMissing();
} catch (exc) {
  missing = exc.message;
}
if (missing) {
  console.error(missing);
  process.exit(3);
}
const server = await serve();
const browser = await launch();
try {
  const page = await browser.newPage();
  // the model may live anywhere: the page fetches it from this route
  await page.route("**/__bench_model.onnx", (route) => route.fulfill({ path: resolve(values.model), contentType: "application/octet-stream" }));
  const q = new URLSearchParams({ model: "/__bench_model.onnx", rounds: values.rounds, block_ms: values["block-ms"], warmup_ms: values["warmup-ms"] });
  await page.goto(`${server.url}/web/bench.html?${q}`);
  await page.waitForFunction(() => window.edgeseq?.done === true, null, { timeout: 600000 });
  const { result, error } = await page.evaluate(() => window.edgeseq);
  if (values.screenshot) await page.screenshot({ path: values.screenshot });
  if (error) throw new Error(`the bench page failed: ${error}`);
  result.runtime = `chromium ${browser.version()}`;
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    const us = (s) => `${(s * 1e6).toFixed(1)} µs`;
    console.log(`${result.runtime}, ${result.onnxruntime}`);
    for (const name of ["predictor", "session_run"]) {
      const r = result[name];
      console.log(`${name.padEnd(12)} ${us(r.median)} (${us(r.p10)}–${us(r.p90)}) per frame, ${r.n} calls`);
    }
  }
} finally {
  await browser.close();
  await server.stop();
}
