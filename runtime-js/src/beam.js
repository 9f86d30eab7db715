/**
 * Beam search over a streaming token decoder, as `runtime/_beam.py` ranks it: each
 * hypothesis holds the decoder's snapshot after its last token and is stepped alone (one
 * batch-1 call per hypothesis, Python's `OneByOne` path); the tokens every kept
 * hypothesis shares are yielded as soon as they agree, the rest of the best one at the end.
 *
 * Hypotheses are ranked by total log-probability (float32 sums of float32 log-softmax
 * values) divided by GNMT's length penalty `((5 + length) / 6) ** alpha` (a float32 table,
 * computed in doubles as Python computes it); ties keep the lower parent, then the lower
 * token id, as Python's stable sorts do.
 */

import { InputError } from "./errors.js";
import { lastRow } from "./generate.js";

const f32 = Math.fround;
const whole = (v) => Number.isInteger(v); // an integral number (not a bool, string or BigInt)

/**
 * Refuse a bad beam width, `maxLen` or length penalty with an `InputError` (before
 * anything runs; the same rules and words as Python's). Returns alpha.
 */
export function checkBeamOptions(width, maxLen, lengthPenalty = 0) {
  if (!whole(width) || width < 1) {
    throw new InputError(`the beam width must be a whole number >= 1, got ${show(width)}; 1 is greedy decoding.`);
  }
  if (!whole(maxLen) || maxLen < 0) {
    throw new InputError(`maxLen must be a whole number >= 0 (tokens), got ${show(maxLen)}.`);
  }
  if (typeof lengthPenalty !== "number" || !Number.isFinite(lengthPenalty) || lengthPenalty < 0) {
    throw new InputError(
      "lengthPenalty must be a finite number >= 0 (GNMT's alpha: hypotheses are ranked by " +
        `log-probability / ((5 + length) / 6) ** alpha), got ${show(lengthPenalty)}; 0 ranks by ` +
        "total log-probability, 0.6 to 1.0 lets longer outputs win.",
    );
  }
  return lengthPenalty;
}

const show = (v) => (typeof v === "string" ? JSON.stringify(v) : String(v));

/** GNMT's length penalty `((5 + n) / 6) ** alpha` for n = 0 .. maxLen, as float32. */
export function lengthPenalties(alpha, maxLen) {
  return Float32Array.from({ length: maxLen + 1 }, (_, n) => ((5 + n) / 6) ** alpha);
}

/**
 * The log-probabilities of one step's logits, in float32 (each operation rounded to
 * float32, the sum in numpy's pairwise order). numpy's SIMD float32 `exp`/`log` may differ
 * from these correctly rounded ones in the last bit.
 */
export function logSoftmax(logits) {
  const x = Float32Array.from(logits);
  let max = -Infinity;
  for (const v of x) if (v > max || Number.isNaN(v)) max = v;
  for (let k = 0; k < x.length; k++) x[k] = f32(x[k] - max);
  const e = x.map((v) => f32(Math.exp(v)));
  const lse = f32(Math.log(pairwiseSum32(e)));
  return x.map((v) => f32(v - lse));
}

/** numpy's pairwise summation of a float32 array in float32 (np.sum(dtype=float32)). */
function pairwiseSum32(a, lo = 0, n = a.length - lo) {
  if (n < 8) {
    let res = -0;
    for (let i = lo; i < lo + n; i++) res = f32(res + a[i]);
    return res;
  }
  if (n <= 128) {
    const r = Array.from(a.subarray(lo, lo + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[lo + i + j]);
    let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) res = f32(res + a[lo + i]);
    return res;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return f32(pairwiseSum32(a, lo, half) + pairwiseSum32(a, lo + half, n - half));
}

const token = (t) => BigInt64Array.of(BigInt(t));

/** Indices of `ranks` by descending value, ties by index (np.argsort(-ranks, kind="stable")). */
function descending(ranks) {
  const key = (v) => (Number.isNaN(v) ? Infinity : -v); // numpy sorts NaN last
  return Array.from(ranks.keys()).sort((a, b) => key(ranks[a]) - key(ranks[b]) || a - b);
}

function commonPrefix(rows) {
  const [first] = rows;
  const n = Math.min(...rows.map((r) => r.length));
  for (let i = 0; i < n; i++) if (rows.some((r) => r[i] !== first[i])) return first.slice(0, i);
  return first.slice(0, n);
}

/**
 * Yield the token ids of the most probable output of `decoder` (a primed
 * StreamingPredictor of a token decoder), without BOS/EOS; see `EncoderDecoder.beam`.
 * Afterwards the decoder holds the best output's state.
 */
export async function* beamTokens(decoder, bos, eos, maxLen, width, lengthPenalty = 0) {
  const lp = lengthPenalties(checkBeamOptions(width, maxLen, lengthPenalty), maxLen);
  const first = logSoftmax(lastRow(await decoder.step(token(bos))));
  let beam = [{ score: 0, rank: 0, tokens: [], handle: decoder.snapshot(), logp: first }];
  let emitted = 0;
  for (let i = 0; i < maxLen; i++) {
    if (beam.every((h) => h.logp === null)) break;
    const candidates = []; // [rank, parent, token, score]
    beam.forEach((h, k) => {
      if (h.logp === null) {
        candidates.push([h.rank, k, eos, h.score]);
        return;
      }
      const total = h.logp.map((v) => f32(h.score + v));
      const ranks = total.map((v) => f32(v / lp[i + 1])); // every extension has i + 1 tokens
      for (const t of descending(ranks).slice(0, width)) candidates.push([ranks[t], k, t, total[t]]);
    });
    candidates.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
    const next = [];
    for (const [rank, k, t, score] of candidates.slice(0, width)) {
      const parent = beam[k];
      if (parent.logp === null) {
        next.push(parent); // finished: carried over unchanged
        continue;
      }
      const tokens = [...parent.tokens, t];
      if (t === eos) {
        next.push({ score, rank, tokens, handle: parent.handle, logp: null });
        continue;
      }
      decoder.restore(parent.handle);
      const logp = logSoftmax(lastRow(await decoder.step(token(t))));
      next.push({ score, rank, tokens, handle: decoder.snapshot(), logp });
    }
    beam = next;
    const agreed = commonPrefix(beam.map((h) => h.tokens));
    while (emitted < agreed.length && agreed[emitted] !== eos) yield agreed[emitted++];
  }
  const best = beam.reduce((a, h) => (h.rank > a.rank ? h : a)); // the first of equals
  decoder.restore(best.handle);
  const end = best.tokens.indexOf(eos);
  for (const t of (end >= 0 ? best.tokens.slice(0, end) : best.tokens).slice(emitted)) yield t;
}
