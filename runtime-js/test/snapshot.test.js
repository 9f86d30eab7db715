// Snapshots are portable: bytes Python wrote restore in JavaScript, bytes JavaScript wrote
// restore in Python, and either way the stream continues with Python's outputs ≤ 1e-5.
// Foreign, corrupt or mismatched snapshots are refused and the state stays as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";

import { Snapshot, SnapshotError, StreamingPredictor } from "../src/index.js";
import { decodeNpy, encodeNpy, readZip, writeZip } from "../src/npz.js";
import { REPO, assertClose, fixture, fixtures, python } from "./helpers.js";

const manifest = fixtures();
const cases = manifest.parity;
const per = (c) => c.frame_shape.reduce((a, b) => a * b, 1);
const head = (c) => Float32Array.from(c.frames.slice(0, c.snapshot.at * per(c)));
const tail = (c) => Float32Array.from(c.frames.slice(c.snapshot.at * per(c)));
const open = (c) => StreamingPredictor.create(fixture(c.model), { ort, constants: c.constants });

for (const c of cases) {
  test(`${c.name}: a snapshot written by Python restores in JavaScript`, async () => {
    const p = await open(c);
    await p.step(tail(c)); // some other state first: restore must replace it
    p.restore(readFileSync(fixture(c.snapshot.file)));
    assert.equal(p.framesSeen, c.snapshot.at);
    const y = await p.step(tail(c));
    assertClose(y.data, c.snapshot.after, `${c.name} after restore`);
  });
}

test("snapshots written by JavaScript restore in Python (every fixture model)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeseq-js-snap-"));
  const jobs = [];
  for (const c of cases) {
    const p = await open(c);
    await p.step(head(c));
    const bytes = p.snapshot().toBytes();
    assert.ok(bytes instanceof Uint8Array);
    const file = join(dir, `${c.name}.snap`);
    writeFileSync(file, bytes);
    jobs.push({
      model: fixture(c.model),
      snapshot: file,
      frames: Array.from(tail(c)),
      frame_shape: c.frame_shape,
      constants: c.constants,
    });
  }
  writeFileSync(join(dir, "jobs.json"), JSON.stringify(jobs));
  const results = JSON.parse(python([join(REPO, "tests", "js_fixtures.py"), "restore", join(dir, "jobs.json")]));
  results.forEach((r, k) => {
    assert.equal(r.frames_seen, cases[k].snapshot.at, cases[k].name);
    assertClose(r.outputs, cases[k].snapshot.after, `${cases[k].name}: Python after a JS snapshot`);
  });
});

test("restore rewinds a stream; Snapshot round-trips through bytes", async () => {
  const c = cases.find((x) => x.name === "vad"); // with left context
  const p = await open(c);
  await p.step(head(c));
  const snap = p.snapshot();
  const first = await p.step(tail(c));
  p.restore(Snapshot.fromBytes(snap.toBytes()));
  const again = await p.step(tail(c));
  assert.deepEqual(Array.from(again.data), Array.from(first.data));
  assert.deepEqual(snap.context.dims, [1, c.context]);
});

async function refusedKeepsState(p, bad, pattern) {
  const before = Object.fromEntries(Object.entries(p.state).map(([k, t]) => [k, Array.from(t.data)]));
  const seen = p.framesSeen;
  assert.throws(() => p.restore(bad), (exc) => exc instanceof SnapshotError && pattern.test(exc.message));
  for (const [k, t] of Object.entries(p.state)) assert.deepEqual(Array.from(t.data), before[k], k);
  assert.equal(p.framesSeen, seen);
}

/** A byte inside the data of the last .npy array stored in snapshot bytes `b`. */
function lastArrayByte(b) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
  for (let at = b.length - magic.length; at >= 0; at--) {
    if (magic.every((m, k) => b[at + k] === m)) return at + 10 + (b[at + 8] | (b[at + 9] << 8)) + 4;
  }
  throw new Error("no stored .npy array in the snapshot bytes");
}

test("a snapshot of another model, corrupt or truncated bytes are refused; state unchanged", async () => {
  const lstm = cases.find((x) => x.name === "lstm-native");
  const gru = cases.find((x) => x.name === "gru-native");
  const p = await open(lstm);
  await p.step(head(lstm));
  const other = readFileSync(fixture(gru.snapshot.file));
  await refusedKeepsState(p, other, /belongs to a model with contract [0-9a-f]{16}; this model's contract is [0-9a-f]{16}/);
  const good = p.snapshot().toBytes();
  const flipped = good.slice();
  flipped[lastArrayByte(good)] ^= 0xff; // inside the last state array
  await refusedKeepsState(p, flipped, /corrupt.*CRC/);
  await refusedKeepsState(p, good.slice(0, good.length - 30), /corrupt/);
  await refusedKeepsState(p, new TextEncoder().encode("not a snapshot"), /corrupt or not an edgeseq snapshot/);
  await refusedKeepsState(p, "a string", /expected snapshot bytes/);
});

test("a snapshot whose states do not fit the model is refused", async () => {
  const c = cases.find((x) => x.name === "lstm-native");
  const p = await open(c);
  const snap = p.snapshot();
  const name = Object.keys(snap.states)[0];
  snap.states[name] = { dtype: "float32", dims: [3, 1, 8], data: new Float32Array(24) }; // no pair's shape
  await refusedKeepsState(p, snap, /do not match the model's/);
  const nan = p.snapshot();
  nan.states[name].data[0] = NaN;
  await refusedKeepsState(p, nan, /NaN or Inf/);
});

test("without WebCrypto (a page on plain http) snapshots say why instead of writing bytes", async () => {
  const c = cases.find((x) => x.name === "gru-native");
  const p = await open(c);
  const bytes = readFileSync(fixture(c.snapshot.file));
  p._hash = null; // what create() leaves when crypto.subtle is missing
  assert.throws(() => p.snapshot(), (e) => e instanceof SnapshotError && /need WebCrypto's SHA-256.*https or from localhost/.test(e.message));
  assert.throws(() => p.restore(bytes), /need WebCrypto/);
});

test("a snapshot holding samples of an unfinished window (Python's window=) is refused", async () => {
  const c = cases.find((x) => x.name === "vad");
  const p = await open(c);
  const entries = [...readZip(readFileSync(fixture(c.snapshot.file))).entries()];
  assert.equal(entries[0][0], "header.npy");
  const header = JSON.parse(new TextDecoder().decode(decodeNpy(entries[0][1]).data));
  header.streams[0].pending = true;
  const text = new TextEncoder().encode(JSON.stringify(header));
  entries[0] = ["header.npy", encodeNpy({ dtype: "uint8", dims: [text.length], data: text })];
  entries.push(["p0.npy", encodeNpy({ dtype: "float32", dims: [3], data: Float32Array.of(1, 2, 3) })]);
  await refusedKeepsState(p, writeZip(entries), /pending window samples; this JavaScript predictor takes no window/);
});
