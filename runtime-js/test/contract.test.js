// The contract as Python reads it: the same digest (snapshots carry it), read from the
// .onnx file's metadata, or from MODEL.contract.json beside an .ort file; and the
// pieces that make digests and printed numbers equal: Python's JSON and float formatting,
// numpy's random generator.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

import { Contract, ContractError, METADATA_KEY, NumpyRandom, StreamingPredictor, readMetadata } from "../src/index.js";
import { dumpsPython, parseExact, pyFloatRepr, pyRound } from "../src/pyjson.js";
import { assertClose, calls, fixture, fixtures } from "./helpers.js";

const manifest = fixtures();

test("every model's contract digest equals Python's", async () => {
  for (const c of manifest.parity) {
    const p = await StreamingPredictor.create(fixture(c.model), { ort, constants: c.constants });
    assert.equal(await p.contract.hash(), c.hash, c.name);
  }
});

test("the metadata read from the .onnx bytes is the contract Python wrote", () => {
  const meta = readMetadata(readFileSync(fixture("lstm-native.onnx")));
  const json = readFileSync(fixture(manifest.ort.contract), "utf8").trim();
  assert.equal(meta[METADATA_KEY], json);
  assert.equal(Contract.fromJSON(json).text, json);
});

test("an .ort file streams with MODEL.contract.json beside it (its metadata is not readable here)", async () => {
  const like = manifest.parity.find((c) => c.name === manifest.ort.like);
  const bytes = readFileSync(fixture(manifest.ort.model));
  assert.equal(readMetadata(bytes), null, "ORT format detected");
  const byPath = await StreamingPredictor.create(fixture(manifest.ort.model), { ort });
  const byBytes = await StreamingPredictor.create(bytes, { ort, contract: readFileSync(fixture(manifest.ort.contract), "utf8") });
  const byUrl = await StreamingPredictor.create(bytes, { ort, contract: fixture(manifest.ort.contract) });
  for (const p of [byPath, byBytes, byUrl]) {
    assert.equal(await p.contract.hash(), like.hash);
    const ys = [];
    for (const x of calls(like, 7)) ys.push(await p.step(x));
    ys.forEach((y, k) => assertClose(y.data, like.outputs["7"][k], `.ort call ${k}`));
  }
  await assert.rejects(StreamingPredictor.create(bytes, { ort }), (e) => e instanceof ContractError && /ORT-format file .* no 'edgeseq.contract' metadata.*contract.json/.test(e.message));
});

test("a plain-object contract works (JSON.parse output)", async () => {
  const obj = JSON.parse(readFileSync(fixture(manifest.ort.contract), "utf8"));
  const p = await StreamingPredictor.create(fixture("lstm-native.onnx"), { ort, contract: obj });
  assert.deepEqual(p.contract.stateViews().map((v) => v.name), ["state_in.m.rnn.h", "state_in.m.rnn.c"]);
  assert.equal(p.contract.model.cell, "lstm");
});

test("Python's float repr and round(v, 6), value by value", () => {
  for (const [x, repr, rounded] of manifest.formatting.floats) {
    const v = Number(x);
    assert.equal(pyFloatRepr(v), repr, `repr(${x})`);
    assert.equal(pyFloatRepr(pyRound(v, 6)), rounded, `round(${x}, 6)`);
  }
});

test("Python's json.dumps(sort_keys=True, separators=(',', ':'))", () => {
  for (const [text, want] of manifest.formatting.dumps) assert.equal(dumpsPython(parseExact(text)), want);
});

test("numpy's default_rng(seed).random() stream", () => {
  for (const [seed, values] of Object.entries(manifest.formatting.random)) {
    const rng = new NumpyRandom(BigInt(seed));
    for (const v of values) assert.equal(rng.random(), v, `seed ${seed}`);
  }
});
