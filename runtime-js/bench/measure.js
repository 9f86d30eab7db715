// Per-frame latency of one stream, one frame per call, in any JavaScript runtime: edgeseq's
// StreamingPredictor beside a hand-written session.run loop (state passed by hand), timed
// in the same interleaved rounds. Used by bench/latency.mjs (Node) and web/bench.js (a page).
//
// A sample is the mean time per call over one block of calls: a page's clock is too coarse
// (100 µs in Chromium without cross-origin isolation) to time a single call.
import { StreamingPredictor } from "../src/index.js";

function percentile(sorted, q) {
  const pos = ((sorted.length - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** `{median, p10, p90, n}` in seconds per call, from per-block means (seconds). */
export function stats(samples, calls) {
  const s = [...samples].sort((a, b) => a - b);
  return { available: true, median: percentile(s, 50), p10: percentile(s, 10), p90: percentile(s, 90), n: calls, blocks: s.length };
}

/** The loop a user writes without edgeseq: names from the contract, state fed back by hand. */
async function handLoop(ort, bytes, contract, sessionOptions) {
  const session = await ort.InferenceSession.create(bytes, sessionOptions);
  const feeds = {};
  for (const p of contract.states) {
    const dims = p.shape.map((d) => (typeof d === "string" ? 1 : d));
    feeds[p.input] = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
  }
  if (contract.lengths) feeds[contract.lengths] = new ort.Tensor("int32", Int32Array.of(1), [1]);
  const x = contract.frames.name;
  const y = contract.dataOutputs()[0].name;
  const F = contract.frames.shape.slice(2).reduce((a, b) => a * b, 1);
  return async (frame) => {
    feeds[x] = new ort.Tensor("float32", frame, [1, 1, F]);
    const out = await session.run(feeds);
    for (const p of contract.states) feeds[p.input] = out[p.output];
    return out[y];
  };
}

/**
 * Time `predictor` and `session_run` on one model: `rounds` rounds, each contender a block
 * of about `blockMs` per round in rotating order, after `warmupMs` of warm-up (which also
 * sizes the blocks). `now()` returns milliseconds.
 */
export async function measure({ ort, bytes, rounds = 20, blockMs = 25, warmupMs = 50, maxBlock = 2000, now, sessionOptions = {} }) {
  const predictor = await StreamingPredictor.create(bytes, { ort, sessionOptions });
  const contract = predictor.contract;
  if (predictor.frameSpec.isInt) throw new Error("the latency benchmark streams float frames; got a token model");
  const F = predictor.frameSpec.size;
  const frame = Float32Array.from({ length: F }, (_, k) => Math.sin(k + 1));
  const hand = await handLoop(ort, bytes, contract, sessionOptions);
  const contenders = { predictor: (f) => predictor.step(f), session_run: hand };
  const sizes = {};
  for (const [name, fn] of Object.entries(contenders)) {
    for (let i = 0; i < 20; i++) await fn(frame); // first calls: session warm-up
    const t0 = now();
    let calls = 0;
    while (calls < 3 || now() - t0 < warmupMs) {
      await fn(frame);
      calls += 1;
    }
    const perCall = (now() - t0) / calls;
    sizes[name] = Math.max(1, Math.min(maxBlock, Math.round(blockMs / perCall)));
  }
  const names = Object.keys(contenders);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    const k = r % names.length;
    for (const name of [...names.slice(k), ...names.slice(0, k)]) {
      const fn = contenders[name];
      const t0 = now();
      for (let i = 0; i < sizes[name]; i++) await fn(frame);
      samples[name].push((now() - t0) / 1000 / sizes[name]);
    }
  }
  await predictor.close();
  return Object.fromEntries(names.map((n) => [n, stats(samples[n], samples[n].length * sizes[n])]));
}
