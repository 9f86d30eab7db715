/**
 * The line format of `edgeseq stream`: Python's number parsing (`float()`) for the frames
 * read by `csv-frames.js`, and one output line per frame with Python's number formatting
 * (`repr(round(v, 6))`), so Node prints what Python prints.
 */

import { PyNumber, dumpsPython, pyFloatRepr, pyRound } from "./pyjson.js";

// Python's float() literals: decimals with optional underscores between digits,
// exponents, inf/infinity/nan, surrounding whitespace
const DIGITS = "\\d(?:_?\\d)*";
const PY_FLOAT = new RegExp(
  `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf(?:inity)?|nan)$`,
  "i",
);

/** Python's `float(text)`, or NaN-free `null` when Python would raise ValueError. */
export function pyFloat(text) {
  const t = text.trim();
  if (!PY_FLOAT.test(t)) return null;
  const low = t.toLowerCase().replace(/^[+]/, "");
  if (/^-?inf/.test(low)) return low.startsWith("-") ? -Infinity : Infinity;
  if (/nan$/.test(low)) return NaN;
  return Number(t.replace(/_/g, ""));
}

/** Python's `repr(str)` for the common cases (quotes chosen as Python does). */
export function pyStrRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${quote}${out}${quote}`;
}

/** The output line `edgeseq stream` prints for frame `n` (1-based) with outputs `values`. */
export function formatLine(values, n, { labels = null, delimiter = ",", format = "csv", precision = 6 } = {}) {
  const flat = Array.from(values, (v) => pyRound(Number(v), precision));
  let label = null;
  if (labels && flat.length === labels.length) {
    let best = 0;
    flat.forEach((v, k) => {
      if (v > flat[best]) best = k;
    });
    label = labels[best];
  }
  if (format === "json") {
    const rec = { frame: n, output: flat.map((v) => new PyNumber(v, false, String(v))) };
    if (label !== null) rec.label = label;
    return dumpsPython(rec, { sortKeys: false, item: ", ", key: ": " });
  }
  const text = flat.map(pyFloatRepr).join(delimiter);
  return label === null ? text : `${text}${delimiter}${label}`;
}
