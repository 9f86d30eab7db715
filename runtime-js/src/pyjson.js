/**
 * JSON exactly as Python writes it, so digests and printed numbers match edgeseq's.
 *
 * Python's contract digest is `sha256(json.dumps(contract, sort_keys=True,
 * separators=(",", ":")))`, which keeps `1.0` apart from `1`. `JSON.parse` loses that, so
 * `parseExact` keeps every number's kind (int or float) and `dumpsPython` writes
 * Python's `json.dumps` text: sorted keys, ASCII escapes, Python's float `repr`.
 */

/** A JSON number with its Python kind: `isInt` for an int literal, else a float. */
export class PyNumber {
  constructor(value, isInt, raw) {
    this.value = value;
    this.isInt = isInt;
    this.raw = raw; // the literal as written (exact for big ints)
  }
}

const WS = new Set([" ", "\t", "\n", "\r"]);

/**
 * Parse JSON text into plain objects, arrays, strings, booleans and null, with numbers as
 * `PyNumber`. Accepts what Python's `json.loads` accepts (including NaN and Infinity).
 * Throws `SyntaxError` naming the position on anything else.
 */
export function parseExact(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${i}`);
  };
  const skip = () => {
    while (i < text.length && WS.has(text[i])) i++;
  };
  const literal = (word, value) => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail(`unexpected ${JSON.stringify(text[i] ?? "end of text")}`);
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) {
      if (text.startsWith("-Infinity", i)) return literal("-Infinity", new PyNumber(-Infinity, false, "-Infinity"));
      return fail("expected a value");
    }
    i += m[0].length;
    return new PyNumber(Number(m[0]), m[2] === undefined && m[3] === undefined, m[0]);
  };
  const string = () => {
    i++; // opening quote
    let out = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) fail("unterminated string");
      if (c === '"') {
        i++;
        return out;
      }
      if (c === "\\") {
        const e = text[i + 1];
        const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else {
          fail("bad escape");
        }
        continue;
      }
      if (c < " ") fail("control character in string");
      out += c;
      i++;
    }
  };
  const value = () => {
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      skip();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail("expected a key");
        const key = string();
        skip();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true });
        skip();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      skip();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        skip();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true", true);
    if (c === "f") return literal("false", false);
    if (c === "n") return literal("null", null);
    if (c === "N") return literal("NaN", new PyNumber(NaN, false, "NaN"));
    if (c === "I") return literal("Infinity", new PyNumber(Infinity, false, "Infinity"));
    return number();
  };
  const result = value();
  skip();
  if (i !== text.length) fail("extra data");
  return result;
}

/** Replace every `PyNumber` of a `parseExact` tree by a plain number. */
export function toPlain(tree) {
  if (tree instanceof PyNumber) return tree.value;
  if (Array.isArray(tree)) return tree.map(toPlain);
  if (tree !== null && typeof tree === "object") {
    const out = {};
    for (const [k, v] of Object.entries(tree)) out[k] = toPlain(v);
    return out;
  }
  return tree;
}

/** Python's `repr(float)`: the shortest round-trip digits, `1.0`, `1e-05`, `1e+16`. */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, e] = x.toExponential().split("e");
  const exp = Number(e);
  const sign = mant[0] === "-" ? "-" : "";
  const digits = mant.replace("-", "").replace(".", "");
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1);
  return `${sign}${whole}.${frac || "0"}`;
}

/**
 * Python's `round(x, ndigits)` for a finite float: the exact binary value rounded to
 * `ndigits` decimals, ties to even (JavaScript's `toFixed` breaks ties away from zero).
 */
export function pyRound(x, ndigits) {
  if (!Number.isFinite(x) || x === 0 || Math.abs(x) >= 1e21) return x;
  // x = m·2^e exactly; it lies halfway between two ndigits-decimals iff it is an odd
  // multiple of 2^-(ndigits+1) (scaling by powers of two is exact)
  const m = x * 2 ** (ndigits + 1);
  if (Number.isInteger(m) && !Number.isInteger(x * 2 ** ndigits) && Math.abs(m) < 2 ** 53) {
    const q = BigInt(Math.abs(m)) * 5n ** BigInt(ndigits); // x·10^n = q/2, q odd
    let t = (q - 1n) / 2n;
    if (t % 2n === 1n) t += 1n; // ties to even
    const r = Number(t) / 10 ** ndigits;
    return x < 0 ? -r : r;
  }
  const r = Number(x.toFixed(ndigits));
  return r === 0 && x < 0 ? -0 : r;
}

function escapeString(s) {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const ch = s[k];
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let k = 0; k < Math.min(x.length, y.length); k++) if (x[k] !== y[k]) return x[k] - y[k];
  return x.length - y.length;
}

/**
 * Python's `json.dumps(value, sort_keys=sortKeys, separators=(item, key))` with
 * `ensure_ascii=True`. Numbers may be `PyNumber` (kind kept) or plain numbers (integral
 * values are written as ints).
 */
export function dumpsPython(value, { sortKeys = true, item = ",", key = ":" } = {}) {
  const walk = (v) => {
    if (v === null || v === undefined) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (v instanceof PyNumber) {
      if (v.isInt) return BigInt(v.raw).toString();
      return pyFloatRepr(v.value);
    }
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
    if (typeof v === "string") return escapeString(v);
    if (Array.isArray(v)) return `[${v.map(walk).join(item)}]`;
    if (typeof v === "object") {
      let keys = Object.keys(v);
      if (sortKeys) keys = keys.sort(byCodePoint);
      return `{${keys.map((k) => `${escapeString(k)}${key}${walk(v[k])}`).join(item)}}`;
    }
    throw new TypeError(`cannot write ${typeof v} as JSON`);
  };
  return walk(value);
}
