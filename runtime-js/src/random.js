/**
 * numpy's default random generator in JavaScript: `np.random.default_rng(seed).random()`
 * (PCG64 seeded through SeedSequence), so a seed samples the same text in JavaScript as
 * `edgeseq generate --seed` does in Python.
 */

const M32 = 0xffffffffn;
const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const PCG_MULT = (2549297995355413924n << 64n) + 4865540595714422341n;

const mul32 = (a, b) => Number((BigInt(a) * BigInt(b)) & M32);

// SeedSequence's hash constants (numpy/random/bit_generator.pyx)
const INIT_A = 0x43b0d7e5;
const MULT_A = 0x931e8875;
const INIT_B = 0x8b51f9dd;
const MULT_B = 0x58f38ded;
const MIX_L = 0xca01f9dd;
const MIX_R = 0x4973f715;
const POOL = 4;

function seedWords(seed) {
  let s = BigInt(seed);
  if (s < 0n) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  const words = [];
  do {
    words.push(Number(s & M32));
    s >>= 32n;
  } while (s > 0n);
  return words;
}

/** `SeedSequence(seed).generate_state(words)` as uint32 words. */
export function seedSequence(seed, nWords) {
  const entropy = seedWords(seed);
  let hashA = INIT_A;
  const hashmix = (value) => {
    let v = (value ^ hashA) >>> 0;
    hashA = mul32(hashA, MULT_A);
    v = mul32(v, hashA);
    return (v ^ (v >>> 16)) >>> 0;
  };
  const mix = (x, y) => {
    let r = (mul32(MIX_L, x) - mul32(MIX_R, y)) >>> 0;
    return (r ^ (r >>> 16)) >>> 0;
  };
  const pool = new Array(POOL);
  for (let i = 0; i < POOL; i++) pool[i] = hashmix(i < entropy.length ? entropy[i] : 0);
  for (let src = 0; src < POOL; src++) {
    for (let dst = 0; dst < POOL; dst++) if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
  }
  for (let src = POOL; src < entropy.length; src++) {
    for (let dst = 0; dst < POOL; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
  }
  let hashB = INIT_B;
  const out = [];
  for (let i = 0; i < nWords; i++) {
    let v = (pool[i % POOL] ^ hashB) >>> 0;
    hashB = mul32(hashB, MULT_B);
    v = mul32(v, hashB);
    out.push((v ^ (v >>> 16)) >>> 0);
  }
  return out;
}

/** PCG64 (XSL-RR 128/64) seeded as `np.random.default_rng(seed)` seeds it. */
export class NumpyRandom {
  constructor(seed) {
    const w = seedSequence(seed, 8).map(BigInt);
    const u64 = [0, 2, 4, 6].map((k) => w[k] | (w[k + 1] << 32n)); // uint32 pairs, little-endian
    const initState = (u64[0] << 64n) | u64[1];
    const initSeq = (u64[2] << 64n) | u64[3];
    this.inc = ((initSeq << 1n) | 1n) & M128;
    this.state = 0n;
    this._step();
    this.state = (this.state + initState) & M128;
    this._step();
  }

  _step() {
    this.state = (this.state * PCG_MULT + this.inc) & M128;
  }

  /** The next uint64 as a BigInt. */
  nextUint64() {
    this._step();
    const s = this.state;
    const x = ((s >> 64n) ^ s) & M64;
    const rot = s >> 122n;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & M64;
  }

  /** A float in [0, 1), as `Generator.random()`. */
  random() {
    return Number(this.nextUint64() >> 11n) * (1.0 / 9007199254740992.0);
  }
}
