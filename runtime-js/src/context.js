/**
 * Left context only where the model needs it: never on a model whose state holds its past.
 * The JavaScript side of `runtime/_context.py`, with the same rule and the same messages.
 *
 * Left context (`context: N`) prepends the last N frames of the previous call to each call
 * and trims their outputs. A model with a stateless front-end (a convolution over raw
 * samples) needs it; a model whose state already holds every frame it has seen (an RNN, an
 * edgeseq export with its conv caches) must not get it: the frames would be fed a second
 * time, and every output after the first call would be wrong.
 *
 * A caller's context that the contract does not record is refused when the model carries
 * its past in its state:
 *
 * - its contract was written by an edgeseq exporter (they carry recurrent state and conv
 *   caches, and record any context a model takes in `model.extra.context`), or
 * - it streams exactly without context: one random stream of 2n frames in one call and in
 *   two calls of n, carrying the state pairs, ends in the same states with the same
 *   outputs. A model that differs needs something its state does not carry, and context
 *   may be it; the check is then silent, as it is when the model cannot be run in pieces
 *   (a fixed chunk, a lengths input) or onnxruntime refuses the probe.
 *
 * A context recorded in the contract (`edgeseq inspect MODEL --context N --write-contract
 * OUT.onnx`) is the model author's word and is not second-guessed.
 */

import { InputError } from "./errors.js";
import { concatAxis, size } from "./tensor.js";

const PROBE_FRAMES = 4; // n: the probe runs 2n frames whole and in two calls of n

/**
 * The left context to run with: the caller's (`given`), else the contract's (default 0).
 * A caller's context that differs from a recorded one is refused.
 */
export function settleContext(given, contract) {
  const recorded = contract.model.extra?.context ?? null;
  const n = given ?? recorded ?? 0;
  if (!Number.isInteger(n) || n < 0) throw new InputError(`context must be a non-negative int of frames, got ${n}.`);
  if (recorded !== null && n !== recorded) {
    throw new InputError(
      `context=${n}: this model's contract records ${recorded} frames of left context; expected ` +
        `that or none, got ${n}. Drop the context to use the recorded one; for another, store it ` +
        "once: edgeseq inspect MODEL --context N --write-contract OUT.onnx",
    );
  }
  return n;
}

/**
 * Reject with `InputError` if the predictor's left context would re-feed frames its state
 * already holds; see the module comment. Runs the model (twice) only for a contract not
 * written by an edgeseq exporter.
 */
export async function checkContext(predictor) {
  const c = predictor.contract;
  const n = predictor.contextFrames;
  if (!n || n === (c.model.extra?.context ?? null)) return;
  if (!c.model.stateful || !predictor.pairs.length) return;
  const exporter = c.producer?.exporter ?? "";
  let why;
  if (exporter && exporter !== "external") {
    why =
      "edgeseq exported it: its exports carry every past frame a layer needs in their state " +
      "and record any context they take";
  } else {
    why = await exactWithoutContext(predictor);
    if (why === null) return;
  }
  throw new InputError(
    `context=${n}: expected no left context for this model, because it carries its past in its ` +
      `state (${why}); got ${n} frames, which would feed it again the last ${n} frames its state ` +
      "already holds, so every output after the first call would be wrong. Stream it without " +
      `left context. If its documentation says it takes ${n} frames of context on top of its ` +
      `state, record that once: edgeseq inspect MODEL --context ${n} --write-contract OUT.onnx`,
  );
}

/**
 * Why the model streams exactly without context, or null (it does not, or it cannot be run
 * in pieces: a fixed chunk, a lengths input, frames without a fixed shape).
 */
async function exactWithoutContext(p) {
  const c = p.contract;
  if (c.lengths !== null || c.model.chunk || !p.frameSpec.fixed) return null;
  const T = 2 * PROBE_FRAMES;
  const frames = probeFrames(p.frameSpec, T);
  const F = p.frameSpec.size;
  let whole, cut;
  try {
    whole = await runPieces(p, frames, F, [T]);
    cut = await runPieces(p, frames, F, [PROBE_FRAMES, PROBE_FRAMES]);
  } catch {
    return null; // onnxruntime's own errors: inconclusive
  }
  if (!whole.states.every((s, k) => close(cut.states[k], s))) return null;
  for (const spec of p.dataOutputs) {
    const one = whole.outs[0][spec.name];
    const two =
      spec.time_axis === null
        ? cut.outs.at(-1)[spec.name] // the output after the same last frame
        : concatAxis(cut.outs.map((o) => o[spec.name]), spec.time_axis);
    if (!close(two, one)) return null;
  }
  return (
    `${T} frames in one call and in two calls of ${PROBE_FRAMES} without context end in the ` +
    "same state with the same outputs"
  );
}

/** Small random frames of the model's dtype (0 and 1 for ids and bools), the same each time. */
function probeFrames(spec, count) {
  const data = new spec.Array(count * spec.size);
  let s = 0x2545f491;
  for (let k = 0; k < data.length; k++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5; // xorshift32: the same frames on every load
    const u = (s >>> 0) / 2 ** 32;
    const bit = u < 0.5 ? 0 : 1;
    data[k] = data instanceof BigInt64Array ? BigInt(bit) : spec.isInt || spec.dtype === "bool" ? bit : 0.2 * (u - 0.5);
  }
  return data;
}

/** One stream of frames cut into `pieces` calls from the initial state, carrying the pairs:
 * `{states: [{data, dims}] in pair order, outs: [{name: {data, dims}}] per call}`. */
async function runPieces(p, frames, F, pieces) {
  let states = p._states;
  const outs = [];
  let start = 0;
  for (const n of pieces) {
    const feeds = { ...p.constants };
    const xs = frames.slice(start * F, (start + n) * F);
    feeds[p.frameSpec.name] = new p.ort.Tensor(p.frameSpec.dtype, xs, p.frameSpec.dims(n));
    p.pairs.forEach((pair, k) => (feeds[pair.input] = states[k]));
    const out = await p.session.run(feeds, { logSeverityLevel: 4 }); // a refused probe is no error
    states = p.pairs.map((pair) => out[pair.output]);
    outs.push(Object.fromEntries(p.dataOutputs.map((o) => [o.name, { data: out[o.name].data, dims: [...out[o.name].dims] }])));
    start += n;
  }
  return { states: states.map((t) => ({ data: t.data, dims: [...t.dims] })), outs };
}

/** numpy's allclose as the Python probe uses it (rtol 1e-4, atol 1e-5 × the scale of b);
 * integers and bools must be equal. */
function close(a, b) {
  if (a.dims.length !== b.dims.length || a.dims.some((d, k) => d !== b.dims[k])) return false;
  if (a.data.length !== size(b.dims) || b.data.length !== a.data.length) return false;
  const float = a.data instanceof Float32Array || a.data instanceof Float64Array;
  if (!float) return a.data.every((v, k) => v === b.data[k]);
  let scale = 1;
  for (const v of b.data) scale = Math.max(scale, Math.abs(v));
  return a.data.every((v, k) => Math.abs(v - b.data[k]) <= 1e-5 * scale + 1e-4 * Math.abs(b.data[k]));
}
