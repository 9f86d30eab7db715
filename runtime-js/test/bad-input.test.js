// Bad input throws an edgeseq error that names what was expected and what was got, and
// leaves the stream exactly as it was: the next good frame gives the outputs a stream
// that never saw the bad call gives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

import { ContractError, InputError, ModelLoadError, StreamingPredictor } from "../src/index.js";
import { fixture, fixtures } from "./helpers.js";

const manifest = fixtures();
const lstm = manifest.parity.find((c) => c.name === "lstm-native");
const frame = (t) => Float32Array.from(lstm.frames.slice(t * 3, t * 3 + 3));
const snapshotOf = (p) => [p.framesSeen, Object.values(p.state).map((t) => Array.from(t.data))];

async function refused(p, frames, pattern) {
  const before = snapshotOf(p);
  await assert.rejects(p.step(frames), (exc) => {
    assert.ok(exc instanceof InputError, `expected InputError, got ${exc?.name}: ${exc?.message}`);
    assert.match(exc.message, pattern);
    return true;
  });
  assert.deepEqual(snapshotOf(p), before, "state changed by a failed call");
}

test("wrong length, NaN, wrong types: errors name expected and got; state unchanged", async () => {
  const p = await StreamingPredictor.create(fixture(lstm.model), { ort });
  await p.step(frame(0));
  await refused(p, new Float32Array(5), /expected 3 values per frame .*got 5 values/);
  await refused(p, new Float32Array(0), /expected at least one frame .*got zero/);
  await refused(p, Float32Array.of(1, NaN, 2), /expected finite float32 values .*got NaN or Inf \(first at index \(1,\)\)/);
  await refused(p, Float32Array.of(1, 2, 3, 4, 5, Infinity), /first at index \(1, 2\)/);
  await refused(p, "0.1,0.2,0.3", /expected float32 values shaped \[3\] .*got string/);
  await refused(p, [0.1, "0.2", 0.3], /got string at index 1/);
  await refused(p, [true, false, true], /got boolean at index 0/);
  await refused(p, [[1, 2, 3], [4, 5]], /expected 3 values per frame .*got 2 values in row 1/);
  await refused(p, 0.5, /got a single number\. Pass 3 values per frame/);
  await refused(p, null, /got null/);
  await refused(p, { x: [1, 2, 3] }, /got Object/);
  await refused(p, new DataView(new ArrayBuffer(12)), /got DataView/);
  // the stream goes on as if the bad calls never happened
  const y = await p.step(frame(1));
  const fresh = await StreamingPredictor.create(fixture(lstm.model), { ort });
  await fresh.step(frame(0));
  assert.deepEqual(Array.from(y.data), Array.from((await fresh.step(frame(1))).data));
});

test("integer frames a float32 input would round are refused in Python's words; state unchanged", async () => {
  const cases = manifest.inexact;
  assert.ok(cases.length >= 3, "the manifest's inexact cases");
  for (const c of cases) {
    const p = await StreamingPredictor.create(fixture(c.model), { ort });
    await p.step(frame(0));
    const flat = c.frames.flat();
    const nested = Array.isArray(c.frames[0]);
    const asRows = nested ? c.frames.map((r) => Int32Array.from(r)) : Int32Array.from(flat);
    for (const frames of [Int32Array.from(flat), BigInt64Array.from(flat.map(BigInt)), asRows]) {
      const before = snapshotOf(p);
      await assert.rejects(p.step(frames), (exc) => exc instanceof InputError && exc.message === c.message);
      assert.deepEqual(snapshotOf(p), before, "state changed by a failed call");
    }
  }
  // exact integers (beyond 2**24 too) run; plain numbers are float64 and keep their rounding
  const p = await StreamingPredictor.create(fixture(lstm.model), { ort });
  const q = await StreamingPredictor.create(fixture(lstm.model), { ort });
  const y = await p.step(Int32Array.of(2 ** 25, -(2 ** 24), 3));
  assert.deepEqual(Array.from(y.data), Array.from((await q.step(Float32Array.of(2 ** 25, -(2 ** 24), 3))).data));
  const z = await p.step([1, 2 ** 24 + 1, 3]);
  assert.deepEqual(Array.from(z.data), Array.from((await q.step(Float32Array.of(1, 2 ** 24, 3))).data));
});

test("token models refuse floats, non-integers and ids outside the vocabulary", async () => {
  const text = manifest.text;
  const p = await StreamingPredictor.create(fixture(text.model), { ort });
  await p.step(p.encode("def "));
  await refused(p, Float32Array.of(4, 5), /expected integer token ids .*got Float32Array\. Encode text with the model's vocabulary first/);
  await refused(p, [4, 5.5], /got the non-integer 5.5 at index 1/);
  await refused(p, [4, text.vocab.length], new RegExp(`expected token ids in \\[0, ${text.vocab.length}\\), got values from 4 to ${text.vocab.length}`));
  await refused(p, BigInt64Array.of(-1n), /got values from -1 to -1/);
  await refused(p, "def", /got string/);
  await p.step(BigInt64Array.of(5n));
  await p.step([5, 6]);
});

test("an unrolled graph (fixed chunk of 4) takes any number of frames: padded and masked", async () => {
  const c = manifest.parity.find((x) => x.name === "gru-unrolled");
  const p = await StreamingPredictor.create(fixture(c.model), { ort });
  const y = await p.step(Float32Array.from(c.frames.slice(0, 11 * 3))); // 4 + 4 + 3 (padded)
  assert.deepEqual(y.dims, [11, 2]);
});

test("setState checks names, shapes and values; nothing changes on a refusal", async () => {
  const p = await StreamingPredictor.create(fixture(lstm.model), { ort });
  await p.step(frame(0));
  const before = snapshotOf(p);
  const good = p.state;
  const [h, c] = Object.keys(good);
  assert.throws(() => p.setState({ [h]: good[h] }), /setState needs exactly the states .*got/);
  assert.throws(
    () => p.setState({ [h]: good[h], [c]: { data: new Float32Array(8), dims: [1, 1, 8] } }),
    /state 'state_in.m.rnn.c': expected a float array of shape \[2, 1, 8\], got Float32Array \[1, 1, 8\]/,
  );
  const bad = { data: good[c].data.slice(), dims: good[c].dims };
  bad.data[3] = NaN;
  assert.throws(() => p.setState({ [h]: good[h], [c]: bad }), /contains NaN or Inf/);
  assert.deepEqual(snapshotOf(p), before);
  p.setState(good);
  assert.deepEqual(snapshotOf(p), before);
});

test("loading: missing file, corrupt bytes, no contract, no ort, missing constants", async () => {
  await assert.rejects(StreamingPredictor.create(fixture("missing.onnx"), { ort }), (e) => e instanceof ModelLoadError && /missing.onnx' does not exist/.test(e.message));
  const bytes = readFileSync(fixture(lstm.model));
  await assert.rejects(StreamingPredictor.create(bytes.subarray(0, 200), { ort }), (e) => e instanceof ModelLoadError && /not an ONNX model|no ONNX graph|could not load/.test(e.message));
  await assert.rejects(StreamingPredictor.create(new TextEncoder().encode("hello world"), { ort }), ModelLoadError);
  await assert.rejects(StreamingPredictor.create(new Uint8Array(0), { ort }), /bytes are empty/);
  await assert.rejects(StreamingPredictor.create(fixture("no-contract.onnx"), { ort }), (e) => e instanceof ContractError && /has no 'edgeseq.contract' metadata/.test(e.message));
  await assert.rejects(StreamingPredictor.create(fixture(lstm.model), {}), /expected onnxruntime's module as `ort`, got nothing/);
  await assert.rejects(StreamingPredictor.create(fixture("vad.onnx"), { ort }), /needs a value for 'sr' on every call/);
  await assert.rejects(StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: { sr: 1, rate: 2 } }), /constants\['rate'\]: expected one of this model's constant inputs \["sr"\]/);
  await assert.rejects(StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: { sr: [1, 2] } }), /constants\['sr'\]: expected 1 number\(s\) of shape \[\], got 2/);
  // left context: never on an edgeseq export (its state holds the past), never other than recorded
  await assert.rejects(StreamingPredictor.create(fixture(lstm.model), { ort, context: 2 }), (e) => e instanceof InputError && /context=2: expected no left context.*edgeseq exported it/.test(e.message));
  const sr = { sr: 16000n };
  await assert.rejects(StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: sr, context: 2 }), /contract records 4 frames of left context; expected that or none, got 2/);
  await StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: sr, context: 4 });
  // a constant whose cast would change it: refused, not wrapped or truncated
  for (const [v, now] of [[2n ** 64n + 16000n, "16000"], [16000.5, "an int64 it cannot hold"]]) {
    await assert.rejects(StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: { sr: v } }), (e) => e instanceof InputError && e.message.includes(`got ${v}, which the cast to int64 would change to ${now}.`));
  }
});

test("a contract that disagrees with the graph names the field", async () => {
  const text = readFileSync(fixture(manifest.ort.contract), "utf8");
  const edit = (f) => {
    const c = JSON.parse(text);
    f(c);
    return JSON.stringify(c);
  };
  const cases = [
    [(c) => (c.version = 2), /'version': expected 1, got 2/],
    [(c) => (c.states[0].input = "h0"), /'states\[0\].input': expected a graph input \(the graph has .*got "h0"/],
    // the frames' two leading axes as the graph has them (time-major for native ops)
    [(c) => (c.inputs[0].shape = [...c.inputs[0].shape.slice(0, 2), 4]), /'inputs\[0\].name shape': expected \["(batch|time)", "(time|batch)", 3\] as in the graph/],
    [(c) => (c.preprocessing.std = [1, 0, 1]), /'preprocessing.std': expected non-zero scales/],
    [(c) => (c.model.colour = "red"), /unexpected keyword argument 'colour'/],
    [(c) => delete c.inputs, /'inputs': expected a non-empty list of tensors/],
    [(c) => (c.states[0].batch_axis = 5), /'states\[0\].batch_axis': expected an axis index in \[0, 3\) or null, got 5/],
    // what Python streams but this runtime does not: refused, never silently wrong
    [(c) => (c.model.extra.window = 4), /fixed windows of 4 samples .*'model.extra.window'.*does not cut windows/],
    [(c) => (c.inputs[0].time_axis = null), /frames input 'x' .*time axis null.*Stream this model from Python/],
    [(c) => Object.assign(c.inputs[0], { time_axis: 2, batch_axis: 0 }), /frames input 'x' .*time axis 2/],
  ];
  for (const [f, pattern] of cases) {
    await assert.rejects(StreamingPredictor.create(fixture(lstm.model), { ort, contract: edit(f) }), (e) => e instanceof ContractError && pattern.test(e.message), String(pattern));
  }
});
