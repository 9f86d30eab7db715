#!/usr/bin/env node
// Per-frame latency in Node.js (onnxruntime-node, one thread): StreamingPredictor and a
// hand-written session.run loop on MODEL. Prints a table, or JSON with --json.
//
//   node bench/latency.mjs --model model.onnx [--rounds 20] [--block-ms 25] [--warmup-ms 50] [--json]
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import { measure } from "./measure.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    rounds: { type: "string", default: "20" },
    "block-ms": { type: "string", default: "25" },
    "warmup-ms": { type: "string", default: "50" },
    threads: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
  },
});
if (!values.model) {
  console.error("usage: node bench/latency.mjs --model MODEL.onnx [--rounds N] [--block-ms MS] [--warmup-ms MS] [--json]");
  process.exit(2);
}
const ort = await import("onnxruntime-node");
const threads = Number(values.threads);
const result = await measure({
  ort,
  bytes: new Uint8Array(await readFile(values.model)),
  rounds: Number(values.rounds),
  blockMs: Number(values["block-ms"]),
  warmupMs: Number(values["warmup-ms"]),
  now: () => performance.now(),
  sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential" },
});
const { createRequire } = await import("node:module");
const version = createRequire(import.meta.url)("onnxruntime-node/package.json").version;
const record = { runtime: `node ${process.version}`, onnxruntime: `onnxruntime-node ${version}`, threads, ...result };
if (values.json) {
  console.log(JSON.stringify(record));
} else {
  const us = (s) => `${(s * 1e6).toFixed(1)} µs`;
  console.log(`${record.runtime}, ${record.onnxruntime}, ${threads} thread(s)`);
  for (const name of ["predictor", "session_run"]) {
    const r = record[name];
    console.log(`${name.padEnd(12)} ${us(r.median)} (${us(r.p10)}–${us(r.p90)}) per frame, ${r.n} calls`);
  }
}
