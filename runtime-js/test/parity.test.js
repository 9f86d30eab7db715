// Node parity: every fixture model (each cell × {native, unrolled}, a scaled model, a
// classifier, a third-party VAD with constants and left context) streamed in chunkings
// {1, 3, 7} equals Python's StreamingPredictor ≤ 1e-5, call by call, state included.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";

import { StreamingPredictor } from "../src/index.js";
import { TOL, assertClose, calls, fixture, fixtures } from "./helpers.js";

const CHUNKINGS = [1, 3, 7];
const manifest = fixtures();

test("the fixtures cover every cell × export mode", () => {
  const names = manifest.parity.map((c) => c.name);
  for (const cell of ["rnn", "lstm", "gru"]) {
    for (const mode of ["native", "unrolled"]) assert.ok(names.includes(`${cell}-${mode}`), `${cell}-${mode}`);
  }
});

for (const c of manifest.parity) {
  for (const chunk of CHUNKINGS) {
    test(`${c.name}: chunks of ${chunk} equal Python's StreamingPredictor`, async () => {
      const p = await StreamingPredictor.create(fixture(c.model), { ort, constants: c.constants });
      const want = c.outputs[String(chunk)];
      const dims = c.dims[String(chunk)];
      const frameRank = c.frame_shape.length;
      const got = calls(c, chunk);
      let worst = 0;
      for (let k = 0; k < got.length; k++) {
        const y = await p.step(got[k]);
        worst = Math.max(worst, assertClose(y.data, want[k], `${c.name} chunk ${chunk} call ${k}`));
        // a flat array of exactly F values is one frame: its outputs lose the time axis
        const single = frameRank > 0 && got[k].length === c.frame_shape[0];
        assert.deepEqual(y.dims, single ? dims[k].slice(1) : dims[k], `${c.name} call ${k} dims`);
      }
      for (const [name, values] of Object.entries(c.state[String(chunk)])) {
        assertClose(p.state[name].data, values, `${c.name} final state ${name}`);
      }
      assert.equal(p.framesSeen, c.frames.length / (c.frame_shape[0] ?? 1));
      assert.ok(worst <= TOL);
    });
  }
}

test("nested rows and a flat chunk give the same outputs", async () => {
  const c = manifest.parity.find((x) => x.name === "gru-unrolled");
  const a = await StreamingPredictor.create(fixture(c.model), { ort });
  const b = await StreamingPredictor.create(fixture(c.model), { ort });
  const rows = [];
  for (let t = 0; t < 5; t++) rows.push(c.frames.slice(t * 3, t * 3 + 3));
  const ya = await a.step(rows);
  const yb = await b.step(Float32Array.from(c.frames.slice(0, 15)));
  assert.deepEqual(ya.dims, [5, 2]);
  assert.deepEqual(Array.from(ya.data), Array.from(yb.data));
  assertClose(ya.data, c.outputs["7"][0].slice(0, 10), "first 5 frames");
});

test("steps that are not awaited still run in order", async () => {
  const c = manifest.parity.find((x) => x.name === "lstm-native");
  const p = await StreamingPredictor.create(fixture(c.model), { ort });
  const pending = calls(c, 1).map((frame) => p.step(frame));
  const ys = await Promise.all(pending);
  ys.forEach((y, k) => assertClose(y.data, c.outputs["1"][k], `call ${k}`));
});

test("reset starts the sequence again", async () => {
  const c = manifest.parity.find((x) => x.name === "rnn-native");
  const p = await StreamingPredictor.create(fixture(c.model), { ort });
  const [first] = calls(c, 3);
  const y1 = await p.step(first);
  await p.step(first);
  p.reset();
  assert.equal(p.framesSeen, 0);
  const y2 = await p.step(first);
  assert.deepEqual(Array.from(y2.data), Array.from(y1.data));
});
