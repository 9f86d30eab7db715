// Text from the pydoc character model: the same prompt, options and seed give Python's
// text exactly (greedy, top-k, top-p with a stop string, high temperature).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";

import { InputError, StreamingPredictor } from "../src/index.js";
import { fixture, fixtures } from "./helpers.js";

const { text } = fixtures();

const options = (c) => ({
  maxTokens: c.max_tokens,
  temperature: c.temperature,
  topK: c.top_k ?? null,
  topP: c.top_p ?? null,
  seed: c.seed === undefined ? null : BigInt(c.seed),
  stop: c.stop ?? null,
});

for (const c of text.cases) {
  test(`generate(${JSON.stringify(c.prompt)}, temperature ${c.temperature}, seed ${c.seed}) equals Python's text`, async () => {
    const p = await StreamingPredictor.create(fixture(text.model), { ort });
    let out = "";
    for await (const piece of p.generate(c.prompt, options(c))) out += piece;
    assert.equal(out, c.text);
  });
}

test("encode/decode use the contract's vocabulary; bad options are refused", async () => {
  const p = await StreamingPredictor.create(fixture(text.model), { ort });
  const ids = p.encode("def x");
  assert.ok(ids instanceof BigInt64Array);
  assert.equal(p.decode(ids), "def x");
  assert.equal(p.decode(p.encode("\u2603", { unknown: "unk" })), "\ufffd"); // <unk>
  assert.equal(p.decode(p.encode("d\u2603ef", { unknown: "skip" })), "def");
  // not in the vocabulary: refused by default, every such character listed (as in Python)
  assert.throws(() => p.encode("de\u2603f\u2603"), (e) => e instanceof InputError &&
    e.message.includes("'\u2603' (position 2, 2 times)") && e.message.includes(`vocabulary of ${p.contract.preprocessing.vocab.length} tokens`));
  await assert.rejects(p.generate("\u2603").next(), /not in the model's vocabulary/);
  assert.equal(typeof (await p.generate("\u2603", { unknown: "unk", maxTokens: 1 }).next()).done, "boolean");
  const gen = (o) => p.generate("a", o).next();
  await assert.rejects(gen({ temperature: -1 }), /temperature must be a finite number >= 0/);
  await assert.rejects(gen({ topK: 0 }), /topK must be a positive int/);
  await assert.rejects(gen({ topP: 1.5 }), /topP must be in \(0, 1\]/);
  await assert.rejects(gen({ maxTokens: 2.5 }), /maxTokens must be an int >= 0/);
  const floats = await StreamingPredictor.create(fixture("lstm-native.onnx"), { ort });
  await assert.rejects(floats.generate("a").next(), (e) => e instanceof InputError && /needs a token model with a vocabulary/.test(e.message));
});
