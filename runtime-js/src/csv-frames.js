/**
 * CSV frames for `edgeseq-stream` and the stream page: the JavaScript side of
 * `edgeseq/cli/_frames.py`, with the same rules and the same messages.
 *
 * Blank lines and `#` comments are skipped. The first other line is a header when it is a
 * line of names (no field is a number); every later line, and a first line with a number
 * in it, is a frame and must be exactly right. Columns: `columns` (header names or 1-based
 * positions) if given; else, with a header, the feature names the model recorded at train
 * time; else every field.
 */

import { InputError } from "./errors.js";
import { LARGEST_EXACT, inexactBound, inexactProblem } from "./exact.js";
import { pyFloat, pyStrRepr } from "./stream-lines.js";

const F32_MAX = 3.4028234663852886e38;

/** What one frame is: its value count (null: one scalar; 0: any) and recorded names. */
export class FrameLayout {
  constructor(size, names = null) {
    this.size = size;
    this.names = names;
  }

  /** From a predictor: its per-frame shape and the contract's `model.extra.features`. */
  static of(predictor) {
    const trailing = predictor.frameSpec.trailing;
    if (trailing.length > 1) {
      throw new InputError(
        `the model's frames are shaped ${JSON.stringify(trailing).replace(/,/g, ", ")}; text input holds one row of ` +
          "numbers per frame, so it can feed models with [F] or scalar frames only",
      );
    }
    const size = trailing.length === 0 ? null : typeof trailing[0] === "number" ? trailing[0] : 0;
    let names = predictor.contract.model.extra?.features ?? null;
    const ok = Array.isArray(names) && names.length && names.every((n) => typeof n === "string" && n);
    if (!ok || (size && names.length !== size)) names = null;
    return new FrameLayout(size, names);
  }

  describe() {
    if (this.size === null) return "1 value per frame";
    const what = this.size ? `${this.size} values per frame` : "the same count on every line";
    return what + (this.names ? ` (${this.names.join(", ")})` : "");
  }
}

const isNumber = (text) => pyFloat(text) !== null;
const INTEGER = /^[+-]?[0-9]+$/; // a field written as an integer (Python: the same rule)
const isDigits = (text) => /^[0-9]+$/.test(text);

/** Reads lines one at a time: `read(bytes, lineno)` -> a frame, a bad record, or null. */
export class CsvFrames {
  constructor(layout, { delimiter = ",", columns = [] } = {}) {
    if (!delimiter) throw new InputError("the delimiter is empty; expected a character such as ',' or ';'");
    this.layout = layout;
    this.delimiter = delimiter;
    this.columns = columns.map((c) => c.trim()).filter(Boolean);
    this.header = null;
    this.pick = null; // field indices fed, in order; null: all of them
    this.width = null; // fields per line, once known
    this.count = layout.size === null ? 1 : layout.size || null; // values per frame, once known
    this.started = false;
  }

  /**
   * One input line (a `Uint8Array` without its newline, or a string) numbered `lineno`:
   * `{values, where}` for a frame, `{where, problem}` for a bad line, null for a line that
   * holds no frame. Throws `InputError` for problems of the whole input (columns).
   */
  read(line, lineno) {
    const where = `line ${lineno}`;
    let text = line;
    if (typeof line !== "string") {
      const bad = firstInvalidUtf8(line);
      if (bad !== null) {
        return {
          where,
          problem:
            `not UTF-8 text (byte 0x${line[bad].toString(16).padStart(2, "0")} at position ${bad + 1}); ` +
            "expected numbers separated by the delimiter",
        };
      }
      text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(line);
    }
    text = (lineno === 1 ? text.replace(/^\uFEFF+/, "") : text).trim();
    if (!text || text.startsWith("#")) return null;
    const fields = text.split(this.delimiter).map((f) => f.trim());
    if (!this.started) {
      this.started = true;
      if (!fields.some(isNumber) && fields.some((f) => f)) {
        this._useHeader(fields);
        return null;
      }
      this._usePositions();
    }
    return this._parse(fields, where, text);
  }

  _useHeader(fields) {
    this.header = fields;
    this.width = fields.length;
    const describe = this.layout.describe();
    if (this.columns.length) {
      this.pick = this.columns.map((c) => this._column(c));
    } else if (this.layout.names) {
      const missing = this.layout.names.filter((n) => !fields.includes(n));
      if (missing.length) {
        throw new InputError(
          `the model was trained on columns ${this.layout.names.join(", ")} (in this order); the input's ` +
            `header has ${fields.join(", ")}, without ${missing.join(", ")}. Name the columns to feed, in ` +
            "that order: --columns A,B,...",
        );
      }
      this.pick = this.layout.names.map((n) => fields.indexOf(n));
    } else if (this.count && fields.length !== this.count) {
      throw new InputError(
        `the input's header has ${fields.length} columns (${fields.join(", ")}); the model takes ` +
          `${describe}. Pick its columns in order: --columns A,B,...`,
      );
    }
    if (this.pick !== null && this.count && this.pick.length !== this.count) {
      throw new InputError(`--columns picks ${this.pick.length} columns; the model takes ${describe}`);
    }
  }

  _usePositions() {
    if (!this.columns.length) return;
    const named = this.columns.filter((c) => !isDigits(c));
    if (named.length) {
      throw new InputError(
        `--columns ${named.join(",")} names columns, but the input has no header line; give 1-based ` +
          "positions (e.g. --columns 2,3) or start the input with a header",
      );
    }
    this.pick = this.columns.map((c) => this._column(c));
    if (this.count && this.pick.length !== this.count) {
      throw new InputError(`--columns picks ${this.pick.length} columns; the model takes ${this.layout.describe()}`);
    }
  }

  _column(name) {
    if (this.header !== null && this.header.includes(name)) return this.header.indexOf(name);
    const k = Number(name);
    if (isDigits(name) && k >= 1 && (this.width === null || k <= this.width)) return k - 1;
    const where = this.header ? `in the header (${this.header.join(", ")})` : "a position";
    throw new InputError(`--columns ${name}: not ${where}; expected a column name or position`);
  }

  _label(i) {
    const name = this.header && i < this.header.length ? ` (${this.header[i]})` : "";
    return `field ${i + 1}${name}`;
  }

  /** Why integer `field` (read as `v`) cannot be fed exactly ("" if it can): the value
   * reaches the model as a float32 (exact.js). */
  _inexact(field, v) {
    const value = BigInt(field);
    const becomes = Math.fround(v);
    if (BigInt(becomes) === value) return "";
    const shown = pyStrRepr(field.slice(0, 40));
    return (
      `${shown} is an integer that float32 does not hold exactly (${inexactBound("float32")}): ` +
      inexactProblem(value, becomes, "float32", `it written as a float (${value}.0)`)
    );
  }

  _parse(fields, where, text) {
    const trailing = fields.length > 1 && !fields.at(-1) ? " (a trailing delimiter?)" : "";
    if (this.width !== null && fields.length !== this.width) {
      const what = this.header ? "the header's" : "the first line's";
      return { where, problem: `expected ${this.width} fields (${what} count), got ${fields.length}${trailing}` };
    }
    let idx;
    if (this.pick === null) {
      idx = fields.map((_, k) => k);
      if (this.count && idx.length !== this.count) {
        return {
          where,
          problem: `expected ${this.layout.describe()}, got ${idx.length}${trailing}: ${pyStrRepr(text.slice(0, 80))}`,
        };
      }
    } else {
      idx = this.pick;
      const need = Math.max(...idx) + 1;
      if (need > fields.length) return { where, problem: `expected at least ${need} fields, got ${fields.length}` };
    }
    const values = [];
    for (const i of idx) {
      const field = fields[i];
      if (!field) return { where, problem: `${this._label(i)} is empty${trailing}` };
      const v = pyFloat(field);
      if (v === null) return { where, problem: `${this._label(i)}: ${pyStrRepr(field.slice(0, 40))} is not a number` };
      if (!(Math.abs(v) <= F32_MAX)) {
        return {
          where,
          problem:
            `${this._label(i)}: ${pyStrRepr(field.slice(0, 40))} is not a finite float32 number; one ` +
            "such value would poison the stream's state",
        };
      }
      if (Math.abs(v) > LARGEST_EXACT.float32 && INTEGER.test(field)) {
        const problem = this._inexact(field, v);
        if (problem) return { where, problem: `${this._label(i)}: ${problem}` };
      }
      values.push(v);
    }
    if (this.width === null && this.pick !== null) this.width = fields.length;
    if (this.count === null) this.count = values.length;
    return { values: this.layout.size === null ? values[0] : values, where };
  }
}

/** The index of the first byte that starts an invalid UTF-8 sequence, or null. */
export function firstInvalidUtf8(bytes) {
  for (let k = 0; k < bytes.length; ) {
    const b = bytes[k];
    let n;
    let lo = 0x80;
    let hi = 0xbf;
    if (b < 0x80) n = 0;
    else if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return k;
    for (let j = 1; j <= n; j++) {
      const c = bytes[k + j];
      const [a, z] = j === 1 ? [lo, hi] : [0x80, 0xbf];
      if (c === undefined || c < a || c > z) return k;
    }
    k += n + 1;
  }
  return null;
}

/** Lines of a byte stream as they arrive (without the newline), for `read`. */
export async function* byteLines(stream) {
  let rest = new Uint8Array(0);
  for await (const chunk of stream) {
    const data = new Uint8Array(rest.length + chunk.length);
    data.set(rest);
    data.set(chunk, rest.length);
    let start = 0;
    for (let k = 0; k < data.length; k++) {
      if (data[k] === 0x0a) {
        yield data.subarray(start, k);
        start = k + 1;
      }
    }
    rest = data.slice(start);
  }
  if (rest.length) yield rest;
}
