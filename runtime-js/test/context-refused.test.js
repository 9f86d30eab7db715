// Left context is refused where the model's state already holds its past, as Python's
// runtime refuses it (tests/test_context_refused.py), in the same words.
//
// `context: N` re-feeds the last N frames on every call. A model whose state carries those
// frames (every edgeseq export; a plain LSTM from elsewhere, which streams exactly without
// context) would see them twice, so it is refused at load; a model with a stateless
// front-end (the VAD's conv) keeps it, a context recorded in the contract is the model
// author's word, and a fixed-chunk graph, which cannot be probed in pieces, is let through.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";

import { InputError, StreamingPredictor } from "../src/index.js";
import { assertClose, calls, fixture, fixtures } from "./helpers.js";

const manifest = fixtures();
const said = manifest.refusals;
const frames = Float32Array.from({ length: 8 * 3 }, (_, k) => Math.sin(k));

async function refusedAs(model, options, python) {
  await assert.rejects(StreamingPredictor.create(fixture(model), { ort, ...options }), (e) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${e?.name}: ${e?.message}`);
    assert.equal(e.message, python, "the message Python's runtime gives");
    return true;
  });
}

/** The contract of `model` as a plain object, to give back changed as {contract}. */
async function contractOf(model, options = {}) {
  const p = await StreamingPredictor.create(fixture(model), { ort, ...options });
  await p.close();
  return p.contract.toJSON();
}

test("context on an edgeseq export is refused, in Python's words", async () => {
  await refusedAs("lstm-native.onnx", { context: 3 }, said.context_export);
  for (const model of ["gru-native.onnx", "rnn-unrolled.onnx", "conv-cache.onnx"]) {
    await assert.rejects(
      StreamingPredictor.create(fixture(model), { ort, context: 3 }),
      /context=3: expected no left context.*edgeseq exported it.*edgeseq inspect MODEL --context 3 --write-contract OUT.onnx$/,
    );
  }
});

test("context on a model from elsewhere that streams exactly without it is refused", async () => {
  assert.match(said.context_exact, /8 frames in one call and in two calls of 4 without context end in the same state/);
  await refusedAs("external-lstm.onnx", { context: 2 }, said.context_exact);
  await refusedAs("external-lstm.onnx", { context: 1 }, said.context_exact.replaceAll("2", "1"));
  const p = await StreamingPredictor.create(fixture("external-lstm.onnx"), { ort }); // without: as before
  assert.deepEqual((await p.step(frames)).dims, [8, 2]);
});

test("context is kept where the state does not hold the past (the VAD's conv)", async () => {
  // the VAD's contract without its recorded context: the probe must find that the conv
  // front-end needs it, and streaming with it gives Python's outputs
  const vad = manifest.parity.find((c) => c.name === "vad");
  const constants = { sr: 16000n };
  const contract = await contractOf("vad.onnx", { constants });
  delete contract.model.extra.context;
  const p = await StreamingPredictor.create(fixture("vad.onnx"), { ort, constants, contract, context: vad.context });
  assert.equal(p.contextFrames, vad.context);
  const got = [];
  for (const x of calls(vad, 7)) got.push(...(await p.step(x)).data);
  assertClose(got, vad.outputs["7"].flat(), "vad, context without a recorded one");
});

test("the probe starts from the contract's initial state, as Python's does", async () => {
  // y[t] = (x[t] + x[t-1]) * h, h kept (tests/test_context_refused.py's gain model): from a
  // gain of 0 every output is 0 whatever the cut (refused, in Python's words); from the
  // contract's gain of 1 it needs its one frame of context (kept, and exact)
  await refusedAs("gain-zeros.onnx", { context: 1 }, said.context_gain_zeros);
  const p = await StreamingPredictor.create(fixture("gain-one.onnx"), { ort, context: 1 });
  assert.equal(p.contextFrames, 1);
  const x = Float32Array.from({ length: 9 }, (_, k) => Math.sin(k + 1));
  const got = [];
  for (const [a, b] of [[0, 4], [4, 5], [5, 9]]) got.push(...(await p.step(x.subarray(a, b))).data);
  assertClose(got, Array.from(x, (v, k) => v + (k ? x[k - 1] : 0)), "gain 1 with context 1");
});

test("a recorded context is the author's word", async () => {
  const p = await StreamingPredictor.create(fixture("external-lstm-context.onnx"), { ort });
  assert.equal(p.contextFrames, 2);
  assert.equal((await StreamingPredictor.create(fixture("external-lstm-context.onnx"), { ort, context: 2 })).contextFrames, 2);
  await assert.rejects(
    StreamingPredictor.create(fixture("external-lstm-context.onnx"), { ort, context: 3 }),
    /context=3: this model's contract records 2 frames of left context; expected that or none/,
  );
});

test("a fixed-chunk graph, which the probe cannot cut, keeps its context", async () => {
  const contract = await contractOf("external-lstm.onnx");
  contract.model.chunk = 8;
  const p = await StreamingPredictor.create(fixture("external-lstm.onnx"), { ort, contract, context: 2 });
  assert.equal(p.stepFrames, 6);
  assert.deepEqual((await p.step(frames.subarray(0, 6 * 3))).dims, [6, 2]);
});
