// Inputs keep their meaning, as in Python's runtime (tests/test_meaning_kept.py): a
// sample-rate constant (sr, rate, fs, ...) that contradicts the rate the contract records
// is refused at load, in Python's words; the recorded rate itself, or a model that records
// none, is accepted.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";

import { InputError, StreamingPredictor } from "../src/index.js";
import { formatG } from "../src/options.js";
import { fixture, fixtures } from "./helpers.js";

const said = fixtures().refusals;

test("a rate constant against the recorded rate is refused", async () => {
  assert.match(said.rate, /^constants\['sr'\] tells the model its samples are at 8000 Hz; this model's contract records 16000 Hz/);
  for (const sr of [8000n, 8000, [8000], new ort.Tensor("int64", BigInt64Array.of(8000n), [])]) {
    await assert.rejects(StreamingPredictor.create(fixture("vad-rate.onnx"), { ort, constants: { sr } }), (e) => {
      assert.ok(e instanceof InputError, `expected InputError, got ${e?.name}: ${e?.message}`);
      assert.equal(e.message, said.rate, "the message Python's runtime gives");
      return true;
    });
  }
  const p = await StreamingPredictor.create(fixture("vad-rate.onnx"), { ort, constants: { sr: 16000n } });
  assert.equal(p.contextFrames, 4);
  // a model that records no rate takes the constant as given
  await StreamingPredictor.create(fixture("vad.onnx"), { ort, constants: { sr: 8000n } });
});

test("rates are written as Python's format(x, 'g') writes them", () => {
  const cases = [[8000, "8000"], [8000.5, "8000.5"], [1e6, "1e+06"], [123456.7, "123457"], [1.234e-5, "1.234e-05"], [16000.25, "16000.2"], [999999.5, "1e+06"]];
  for (const [x, py] of cases) assert.equal(formatG(x), py, `format(${x}, "g")`);
});
