// Seq2seq pairs (every cell, with and without attention; tests/js_seq2seq_fixtures.py):
// JavaScript's EncoderDecoder decodes the ids Python's does, greedy and beam (widths 1, 3,
// 5, with and without a length penalty), leaves the decoder in Python's state, and refuses
// what Python refuses, in the same words, changing no state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

import { ContractError, EncoderDecoder, InputError, lengthPenalties, logSoftmax } from "../src/index.js";
import { beamTokens } from "../src/beam.js";
import { assertClose, fixture, fixtures } from "./helpers.js";

const { seq2seq, seq2seq_frames: frames, one_to_many: captions, beam_ties: ties } = fixtures();

const collect = async (it) => {
  const out = [];
  for await (const t of it) out.push(t);
  return out;
};

const run = (pair, r, bos, eos) =>
  r.kind === "greedy"
    ? pair.greedy(r.source, bos, eos, r.max_len, { unknown: r.unknown ?? "error" })
    : pair.beam(r.source, bos, eos, r.max_len, r.width, { lengthPenalty: r.length_penalty });

const flat = (state) => Object.fromEntries(Object.entries(state).map(([k, v]) => [k, Array.from(v.data)]));

for (const c of seq2seq) {
  test(`${c.name}: greedy and beam ids equal Python's, and the decoder's state after them`, async () => {
    const pair = await EncoderDecoder.create(fixture(c.model), { ort });
    const key = (r) => `${r.source} ${r.max_len} ${r.width}`;
    const greedy = new Map(c.runs.filter((r) => r.kind === "greedy").map((r) => [key({ ...r, width: undefined }), r.ids]));
    const plain = new Map(c.runs.filter((r) => r.kind === "beam" && !r.length_penalty).map((r) => [key(r), r.ids]));
    let beams = 0;
    for (const r of c.runs) {
      const what = `${r.kind}(${JSON.stringify(r.source)}, maxLen ${r.max_len}${r.width ? `, width ${r.width}, penalty ${r.length_penalty}` : ""})`;
      assert.deepEqual(await collect(run(pair, r, c.bos, c.eos)), r.ids, what);
      assert.equal(pair.decoder.framesSeen, r.frames_seen, `${what}: framesSeen`);
      const got = flat(pair.decoder.state);
      assert.deepEqual(Object.keys(got).sort(), Object.keys(r.state).sort());
      for (const k of Object.keys(r.state)) assertClose(got[k], r.state[k], `${what}: state ${k}`);
      if (r.kind === "beam") beams += r.ids.length > 0;
    }
    // the fixtures prove something: beams that are not greedy, penalties that change the winner
    assert.ok(beams > 0, "every beam came back empty");
    const beam = c.runs.filter((r) => r.kind === "beam");
    assert.ok(beam.some((r) => String(r.ids) !== String(greedy.get(key({ ...r, width: undefined })))), "every beam equals greedy");
    assert.ok(beam.some((r) => r.length_penalty && String(r.ids) !== String(plain.get(key(r)))), "no penalty changed a winner");
    await pair.close();
  });

  test(`${c.name}: generate samples Python's text (greedy, top-k, top-p with a stop string)`, async () => {
    const pair = await EncoderDecoder.create(fixture(c.model), { ort });
    assert.ok(c.texts.some((t) => t.text.length > 1));
    for (const t of c.texts) {
      const opts = { maxTokens: t.max_tokens, temperature: t.temperature, topK: t.top_k ?? null, topP: t.top_p ?? null,
        seed: t.seed === undefined ? null : BigInt(t.seed), stop: t.stop ?? null };
      let out = "";
      for await (const piece of pair.generate(t.source, opts)) out += piece;
      assert.equal(out, t.text, `generate(${JSON.stringify(t.source)}, ${JSON.stringify({ ...opts, seed: t.seed })})`);
    }
    await pair.close();
  });

  test(`${c.name}: refusals throw Python's InputError and change no state`, async () => {
    const pair = await EncoderDecoder.create(fixture(c.model), { ort });
    await collect(pair.greedy("abc", c.bos, c.eos, 5));
    const before = flat(pair.decoder.state);
    const seen = pair.decoder.framesSeen;
    const js = (m) => m.replace("max_len must", "maxLen must").replace("length_penalty must", "lengthPenalty must");
    const refused = async (it, message) => {
      await assert.rejects(collect(it), (e) => {
        assert.ok(e instanceof InputError, `${e.name}: ${e.message}`);
        if (message instanceof RegExp) assert.match(e.message, message);
        else assert.equal(e.message, message);
        return true;
      });
      assert.deepEqual(flat(pair.decoder.state), before, "a refused call changed the decoder's state");
      assert.equal(pair.decoder.framesSeen, seen);
    };
    const { refusals } = c;
    await refused(pair.greedy("ab?c\u2603", c.bos, c.eos, 12), /'\?' \(position 2\), '\u2603' \(position 4\)/);
    await refused(pair.beam("ab?c", c.bos, c.eos, 12, 3), /not in the model's vocabulary of 11 tokens/);
    await refused(pair.beam("abc", c.bos, c.eos, 12, 0), refusals.width);
    await refused(pair.beam("abc", c.bos, c.eos, -1, 3), js(refusals.max_len));
    await refused(pair.beam("abc", c.bos, c.eos, 12, 3, { lengthPenalty: -0.5 }), js(refusals.length_penalty));
    await refused(pair.beam("abc", c.bos, c.eos, 12, 2.5), /beam width must be a whole number >= 1, got 2.5/);
    await refused(pair.beam("abc", c.bos, c.eos, 12, 3, { lengthPenalty: NaN }), /lengthPenalty must be a finite number/);
    await refused(pair.beam("abc", c.bos, c.eos, 12, 3, { lengthPenalty: "1" }), /lengthPenalty must be a finite number/);
    await refused(pair.generate("abc", { temperature: -1 }), /temperature must be a finite number >= 0/);
    await refused(pair.generate("abc", { maxTokens: 1.5 }), /maxTokens must be an int >= 0/);
    await refused(pair.generate("ab\u2603"), /not in the model's vocabulary/);
    if (c.attention) {
      await refused(pair.greedy("abcdefgab", c.bos, c.eos, 12), refusals.too_long);
      await refused(pair.beam("abcdefgabc", c.bos, c.eos, 12, 3), /outputs of shape \(10, 8\); .* memory holds 1 to 8 rows/);
      // at the limit it decodes
      assert.ok(Array.isArray(await collect(pair.greedy("abcdefga", c.bos, c.eos, 3))));
    } else {
      assert.equal(refusals.too_long, undefined);
      assert.ok(Array.isArray(await collect(pair.greedy("abcdefgabcdefg", c.bos, c.eos, 3))));
    }
    await pair.close();
  });
}

test("a pair whose encoder takes float frames (attention): Python's ids; text and too many frames refused", async () => {
  const pair = await EncoderDecoder.create(fixture(frames.model), { ort });
  for (const r of frames.runs) {
    const x = Float32Array.from(r.frames); // T·F values: one frame when T is 1
    const it = r.kind === "greedy" ? pair.greedy(x, frames.bos, frames.eos, r.max_len)
      : pair.beam(x, frames.bos, frames.eos, r.max_len, r.width, { lengthPenalty: r.length_penalty });
    const what = `${r.kind} of ${r.shape[0]} frames${r.width ? `, width ${r.width}, penalty ${r.length_penalty}` : ""}`;
    assert.deepEqual(await collect(it), r.ids, what);
    assert.equal(pair.decoder.framesSeen, r.frames_seen, what);
    for (const [k, v] of Object.entries(flat(pair.decoder.state))) assertClose(v, r.state[k], `${what}: state ${k}`);
  }
  const before = flat(pair.decoder.state);
  const isInput = (message) => (e) => e instanceof InputError && e.message === message;
  await assert.rejects(collect(pair.greedy("abc", frames.bos, frames.eos, 12)), isInput(frames.refusals.text));
  const long = Float32Array.from(frames.long);
  await assert.rejects(collect(pair.beam(long, frames.bos, frames.eos, 12, 3)), isInput(frames.refusals.too_long));
  assert.deepEqual(flat(pair.decoder.state), before);
  await pair.close();
});

test("a one-to-many decoder starts from its init graph's outputs: Python's ids; bad conditions refused in Python's words", async () => {
  const pair = await EncoderDecoder.create(fixture(captions.model), { ort });
  assert.equal(pair.role, "init");
  for (const r of captions.runs) {
    const x = Float32Array.from(r.condition);
    const it = r.kind === "greedy" ? pair.greedy(x, captions.bos, captions.eos, r.max_len)
      : pair.beam(x, captions.bos, captions.eos, r.max_len, r.width, { lengthPenalty: r.length_penalty });
    const what = `${r.kind}(${r.condition.map((v) => v.toFixed(2))}${r.width ? `, width ${r.width}, penalty ${r.length_penalty}` : ""})`;
    assert.deepEqual(await collect(it), r.ids, what);
    assert.equal(pair.decoder.framesSeen, r.frames_seen, what);
    for (const [k, v] of Object.entries(flat(pair.decoder.state))) assertClose(v, r.state[k], `${what}: state ${k}`);
  }
  const before = flat(pair.decoder.state);
  const isInput = (message) => (e) => e instanceof InputError && e.message === message;
  const { bos, eos, refusals } = captions;
  await assert.rejects(collect(pair.greedy(Int32Array.of(1, 2, 2 ** 24 + 1, 4), bos, eos, 10)), isInput(refusals.inexact));
  await assert.rejects(collect(pair.greedy(BigInt64Array.of(1n, 2n, 2n ** 24n + 1n, 4n), bos, eos, 10)), isInput(refusals.inexact));
  await assert.rejects(collect(pair.beam(new Float32Array(5), bos, eos, 10, 3)), isInput(refusals.size));
  await assert.rejects(collect(pair.greedy([1, NaN, 2, 3], bos, eos, 10)), /condition must be a finite float vector of shape \(4,\)/);
  assert.deepEqual(flat(pair.decoder.state), before);
  assert.ok(Array.isArray(await collect(pair.greedy(Int32Array.of(1, 2, 2 ** 24, 4), bos, eos, 3)))); // exact: runs
  await pair.close();
});

test("the decoder's encoder is found beside it (model.extra.init_model) or given; bytes need initModel", async () => {
  const c = seq2seq.find((s) => s.attention);
  const r = c.runs.find((x) => x.kind === "beam" && x.width === 3);
  const bytes = readFileSync(fixture(c.model));
  await assert.rejects(EncoderDecoder.create(bytes, { ort }), /names no init model file .* pass \{initModel\}/);
  const given = await EncoderDecoder.create(bytes, { ort, initModel: fixture(c.model.replace(/\.onnx$/, ".encoder.onnx")) });
  assert.deepEqual(await collect(run(given, r, c.bos, c.eos)), r.ids);
  assert.equal(given.decode(given.encode("fab")), "fab"); // the pair shares one vocabulary here
  await given.close();
  const encoder = fixture(c.model.replace(/\.onnx$/, ".encoder.onnx")); // an encoder names no encoder
  await assert.rejects(EncoderDecoder.create(encoder, { ort }), (e) => e instanceof ContractError && /names no init model/.test(e.message));
  const lm = fixture("pydoc-chars.onnx"); // a language model: no init model
  await assert.rejects(EncoderDecoder.create(lm, { ort }), (e) => e instanceof ContractError && /names no init model/.test(e.message));
});

test("log-softmax and the length penalty table are float32, computed as numpy does", () => {
  const lp = lengthPenalties(0.6, 4);
  assert.ok(lp instanceof Float32Array);
  assert.deepEqual(Array.from(lp), [0, 1, 2, 3, 4].map((n) => Math.fround(((5 + n) / 6) ** 0.6)));
  const l = logSoftmax(Float32Array.of(1, 2, 3, 3));
  assert.ok(l instanceof Float32Array);
  assert.equal(l[2], l[3]);
  assert.ok(Math.abs(l.reduce((s, v) => s + Math.exp(v), 0) - 1) < 1e-6);
});

/** A decoder whose logits come from a table by (step, last token), as Python's _Table. */
class Table {
  constructor(c) {
    [this.steps, this.vocab] = c.shape;
    this.logits = Float32Array.from(c.logits);
    this.at = [0, 0];
  }
  async step(ids) {
    const [n] = this.at;
    const t = Number(ids[0]);
    this.at = [n + 1, t];
    const row = (Math.min(n, this.steps - 1) * this.vocab + t) * this.vocab;
    return { dims: [this.vocab], data: this.logits.subarray(row, row + this.vocab) };
  }
  snapshot() {
    return [...this.at];
  }
  restore(at) {
    this.at = [...at];
  }
}

test("beam ranks exact ties as Python does (stable by parent, then token id)", async () => {
  assert.ok(ties.length >= 50 && ties.some((c) => c.ids.length > 2));
  for (const c of ties) {
    const got = await collect(beamTokens(new Table(c), 0, c.eos, 6, c.width, c.length_penalty));
    assert.deepEqual(got, c.ids, `table ${JSON.stringify(c.shape)}, eos ${c.eos}, width ${c.width}, penalty ${c.length_penalty}`);
  }
});
