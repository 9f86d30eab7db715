/**
 * Text generation from token models, as `runtime/generate.py` does it: the prompt is
 * encoded with the contract's vocabulary (longest match), fed in one call, and each
 * sampled id is fed back. Sampling (temperature, then top-k, then nucleus top-p) draws from
 * numpy's generator seeded the same way, so a seed gives Python's text.
 *
 * When the vocabulary starts with `<pad>, <unk>, <bos>, <eos>` (edgeseq's Vocabulary),
 * `<eos>` ends generation and the other specials are never sampled.
 */

import { InputError } from "./errors.js";
import { NumpyRandom } from "./random.js";

export const SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"];
export const [PAD, UNK, BOS, EOS] = [0, 1, 2, 3];

export const hasSpecials = (vocab) => SPECIALS.every((s, k) => vocab[k] === s);

export const UNKNOWN = ["error", "unk", "skip"]; // what encodePrompt does with characters not in the vocabulary

/**
 * Token ids `[T]` of `prompt`: longest vocabulary match at each position. A character no
 * token matches is refused with `unknown = "error"` (the default; the message lists every
 * such character, as Python's does), becomes `<unk>` with `"unk"`, or is dropped with `"skip"`.
 */
export function encodePrompt(prompt, vocab, unknown = "error") {
  if (!UNKNOWN.includes(unknown)) {
    throw new InputError(`unknown must be one of ['error', 'unk', 'skip'], got ${JSON.stringify(unknown)}.`);
  }
  if (typeof prompt !== "string") {
    const ids = Array.from(prompt ?? [], Number);
    const bad = ids.find((i) => !Number.isInteger(i) || i < 0 || i >= vocab.length);
    if (bad !== undefined) throw new InputError(`prompt ids must be integers in [0, ${vocab.length}); got ${bad}.`);
    return BigInt64Array.from(ids, BigInt);
  }
  const skip = hasSpecials(vocab) ? 4 : 0;
  const table = new Map();
  vocab.forEach((tok, i) => {
    if (i >= skip && tok && !table.has(tok)) table.set(tok, i);
  });
  const longest = Math.max(1, ...[...table.keys()].map((t) => t.length));
  const ids = [];
  const missing = new Map(); // character -> its positions
  let i = 0;
  while (i < prompt.length) {
    let matched = false;
    for (let n = Math.min(longest, prompt.length - i); n > 0; n--) {
      const tok = table.get(prompt.slice(i, i + n));
      if (tok !== undefined) {
        ids.push(tok);
        i += n;
        matched = true;
        break;
      }
    }
    if (!matched) {
      if (unknown === "unk" && skip) ids.push(UNK);
      else if (unknown !== "skip") missing.set(prompt[i], [...(missing.get(prompt[i]) ?? []), i]);
      i += 1;
    }
  }
  if (missing.size) throw new InputError(unknownMessage(missing, vocab, unknown, Boolean(skip)));
  return BigInt64Array.from(ids, BigInt);
}

function unknownMessage(missing, vocab, unknown, hasUnk) {
  const entries = [...missing.entries()];
  const shown = entries
    .slice(0, 12)
    .map(([ch, at]) => `'${ch}' (position ${at[0]}${at.length > 1 ? `, ${at.length} times` : ""})`)
    .join(", ");
  const more = entries.length > 12 ? ` and ${entries.length - 12} more` : "";
  const count = entries.reduce((n, [, at]) => n + at.length, 0);
  const head =
    `the prompt has ${count} character(s) that are not in the model's vocabulary of ` +
    `${vocab.length} tokens: ${shown}${more}`;
  const drop = "unknown: 'skip' to drop them";
  if (!hasUnk) {
    const why = unknown === "unk" ? "; this vocabulary has no <unk>" : "";
    return `${head}${why}. Expected text over its tokens: rewrite them, or pass ${drop}.`;
  }
  return `${head}. Expected text over its tokens: rewrite them, or pass unknown: 'unk' to feed each as <unk>, or ${drop}.`;
}

/** Text of `ids`: stops at `<eos>`, skips `<pad>`/`<bos>`, shows `<unk>` as U+FFFD. */
export function decodeIds(ids, vocab) {
  const list = Array.from(ids, Number);
  if (!hasSpecials(vocab)) return list.map((i) => vocab[i]).join("");
  const end = list.indexOf(EOS);
  const shown = ["", "\ufffd", "", "", ...vocab.slice(4)];
  return (end >= 0 ? list.slice(0, end) : list).map((i) => shown[i]).join("");
}

/** Check sampling options; the same rules and messages as Python's. */
export function checkOptions({ maxTokens, temperature, topK, topP }) {
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new InputError(`maxTokens must be an int >= 0, got ${maxTokens}.`);
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0) {
    throw new InputError(`temperature must be a finite number >= 0 (0: greedy), got ${temperature}.`);
  }
  if (topK != null && (!Number.isInteger(topK) || topK < 1)) throw new InputError(`topK must be a positive int or null, got ${topK}.`);
  if (topP != null && !(typeof topP === "number" && topP > 0 && topP <= 1)) {
    throw new InputError(`topP must be in (0, 1] or null, got ${topP}.`);
  }
}

/** numpy's pairwise summation (what `np.sum` does to a float64 array), for equal bits. */
export function pairwiseSum(a, lo = 0, n = a.length - lo) {
  if (n < 8) {
    let res = 0;
    for (let i = lo; i < lo + n; i++) res += a[i];
    return res;
  }
  if (n <= 128) {
    const r = Array.from(a.subarray(lo, lo + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[lo + i + j];
    let res = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
    for (; i < n; i++) res += a[lo + i];
    return res;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return pairwiseSum(a, lo, half) + pairwiseSum(a, lo + half, n - half);
}

/**
 * One id from `logits` `[vocab]`: temperature, then top-k, then nucleus (top-p), with
 * `rng.random()` choosing; `temperature = 0` is greedy (argmax). Ids in `banned` are
 * never chosen. Float64 arithmetic in numpy's order.
 */
export function sampleToken(logits, rng, { temperature = 1, topK = null, topP = null, banned = [] } = {}) {
  const z = Float64Array.from(logits);
  for (const b of banned) z[b] = -Infinity;
  if (temperature === 0) {
    let best = 0;
    for (let k = 1; k < z.length; k++) if (z[k] > z[best]) best = k;
    return best;
  }
  for (let k = 0; k < z.length; k++) z[k] /= temperature;
  if (topK != null && topK < z.length) {
    const kth = Float64Array.from(z).sort()[z.length - topK];
    for (let k = 0; k < z.length; k++) if (z[k] < kth) z[k] = -Infinity;
  }
  const max = z.reduce((a, b) => Math.max(a, b), -Infinity);
  const p = z.map((v) => Math.exp(v - max));
  const normalise = () => {
    const sum = pairwiseSum(p);
    for (let k = 0; k < p.length; k++) p[k] /= sum;
  };
  normalise();
  if (topP != null && topP < 1) {
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b); // stable, descending
    let cum = 0; // np.cumsum(p[order]) - p[order]: the mass of the more likely tokens
    const drop = [];
    for (const k of order) {
      cum += p[k];
      if (cum - p[k] >= topP) drop.push(k);
    }
    for (const k of drop) p[k] = 0;
    normalise();
  }
  const cdf = new Float64Array(p.length);
  let acc = 0;
  for (let k = 0; k < p.length; k++) cdf[k] = acc += p[k];
  const target = rng.random() * cdf[cdf.length - 1];
  let lo = 0;
  let hi = cdf.length; // first index with cdf > target (searchsorted side="right")
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] <= target) lo = mid + 1;
    else hi = mid;
  }
  return Math.min(lo, p.length - 1);
}

/** Holds back text that may start a stop string; cuts at the first stop. */
export class StopFilter {
  constructor(stop) {
    const stops = typeof stop === "string" ? [stop] : [...(stop ?? [])];
    if (!stops.every((s) => typeof s === "string" && s)) {
      throw new InputError(`stop must be a non-empty string or a list of them, got ${JSON.stringify(stop)}.`);
    }
    this.stops = stops;
    this.buf = "";
  }

  /** Returns `[text to emit, stopped]`. */
  feed(piece) {
    this.buf += piece;
    if (!this.stops.length) {
      const out = this.buf;
      this.buf = "";
      return [out, false];
    }
    const hits = this.stops.map((s) => this.buf.indexOf(s)).filter((i) => i >= 0);
    if (hits.length) return [this.buf.slice(0, Math.min(...hits)), true];
    let hold = 0;
    const longest = Math.max(...this.stops.map((s) => s.length));
    for (let k = 1; k <= Math.min(this.buf.length, longest - 1); k++) {
      if (this.stops.some((s) => s.startsWith(this.buf.slice(-k)))) hold = k;
    }
    const out = this.buf.slice(0, this.buf.length - hold);
    this.buf = this.buf.slice(this.buf.length - hold);
    return [out, false];
  }
}

export const lastRow = (y) => {
  const t = y.dims.length > 1 ? y.dims[0] : 1;
  const n = y.data.length / t;
  return y.data.subarray((t - 1) * n, t * n);
};

function randomSeed() {
  const w = new Uint32Array(2);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(w);
  else w.forEach((_, k) => (w[k] = Math.floor(Math.random() * 2 ** 32)));
  return (BigInt(w[0]) << 32n) | BigInt(w[1]);
}

/**
 * Yield text pieces sampled from `predictor` (a token model whose contract has a
 * vocabulary), one per generated token. See `StreamingPredictor.generate`.
 */
export async function* generate(predictor, prompt = "", options = {}) {
  const {
    maxTokens = 100,
    temperature = 1,
    topK = null,
    topP = null,
    seed = null,
    stop = null,
    reset = true,
    unknown = "error",
  } = options;
  const vocab = predictor.contract.preprocessing.vocab;
  if (!vocab || !predictor.frameSpec.isInt) {
    throw new InputError(
      "generate() needs a token model with a vocabulary in its contract; this model takes " +
        `${predictor.frameSpec.describe()} and has ${vocab ? "a" : "no"} vocabulary. Export a ` +
        "text model with edgeseq (`edgeseq train --task generate`, then `edgeseq export`).",
    );
  }
  checkOptions({ maxTokens, temperature, topK, topP });
  const stopper = new StopFilter(stop);
  let ids = encodePrompt(prompt, vocab, unknown);
  const specials = hasSpecials(vocab);
  if (!ids.length) {
    if (!specials) throw new InputError("the prompt is empty and the vocabulary has no <bos>; pass text.");
    ids = BigInt64Array.of(BigInt(BOS));
  }
  if (reset) predictor.reset();
  const logits = lastRow(await predictor.step(ids));
  yield* sampleLoop((tok) => predictor.step(BigInt64Array.of(BigInt(tok))), logits, vocab, {
    maxTokens, temperature, topK, topP, seed, stop: stopper,
  });
}

/**
 * Yield text sampled from `logits` `[vocab]` on: each sampled id is fed to `step` (an async
 * function of the id that resolves to the next outputs) for the next logits, as Python's
 * `sample_loop`. `<eos>` ends it when the vocabulary has edgeseq's specials, whose other
 * specials are never sampled. `stop`: a string, strings, or a StopFilter.
 */
export async function* sampleLoop(step, logits, vocab, { maxTokens = 100, temperature = 1, topK = null, topP = null, seed = null, stop = null } = {}) {
  checkOptions({ maxTokens, temperature, topK, topP });
  const stopper = stop instanceof StopFilter ? stop : new StopFilter(stop);
  if (logits.length !== vocab.length) {
    throw new InputError(
      `the model outputs ${logits.length} scores per step but its vocabulary has ${vocab.length} ` +
        "tokens; expected one score per token. Re-export with the vocabulary the model was trained on.",
    );
  }
  const specials = hasSpecials(vocab);
  const rng = new NumpyRandom(seed ?? randomSeed());
  const banned = specials ? [PAD, UNK, BOS] : [];
  for (let n = 0; n < maxTokens; n++) {
    const tok = sampleToken(logits, rng, { temperature, topK, topP, banned });
    if (specials && tok === EOS) break;
    const [text, hit] = stopper.feed(vocab[tok]);
    if (text) yield text;
    if (hit) return;
    logits = lastRow(await step(tok));
  }
  if (stopper.buf) yield stopper.buf;
}
