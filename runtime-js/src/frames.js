/**
 * Check one stream's frames against the contract before anything runs, and apply the
 * contract's input preprocessing. The JavaScript side of `runtime/_frames.py`.
 *
 * Feature models (`(batch, time, F)`) take one frame (F numbers) or a chunk (T·F numbers
 * flat, or T rows of F); token models (`(batch, time)` int) take one id or T ids;
 * raw-sample models (`(batch, time)` float) take one sample or T samples.
 */

import { ContractError, InputError } from "./errors.js";
import { LARGEST_EXACT, castChanges, inexactBound, inexactProblem } from "./exact.js";
import { ARRAY_OF } from "./tensor.js";

const FLOAT_ARRAYS = [Float32Array, Float64Array];
const INT_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array];
const BIG_ARRAYS = [BigInt64Array, BigUint64Array];
const isAny = (v, kinds) => kinds.some((K) => v instanceof K);

function kindOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an Array";
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  return typeof v === "object" ? (v.constructor?.name ?? "object") : typeof v;
}

/** What one frame of a stream looks like, and how raw frames become model inputs. */
export class FrameSpec {
  constructor(contract) {
    const spec = contract.frames;
    this.name = spec.name;
    this.dtype = spec.dtype;
    this.Array = ARRAY_OF[spec.dtype];
    if (!this.Array) {
      throw new ContractError(
        `the frames input '${spec.name}' is ${spec.dtype}; this JavaScript runtime feeds ` +
          `${Object.keys(ARRAY_OF).join(", ")}. Export the model in float32.`,
      );
    }
    this.isInt = /int/.test(spec.dtype);
    const [b, t] = [spec.batch_axis, spec.time_axis];
    // batch 1 lies anywhere in memory; the per-frame axes must follow the time axis
    if (t === null || spec.shape.some((_, k) => k < t && k !== b)) {
      throw new ContractError(
        `the frames input '${spec.name}' has shape ${JSON.stringify(spec.shape)} with batch axis ${b} ` +
          `and time axis ${t}; this JavaScript runtime feeds frames as (batch, time, ...) or ` +
          "(time, batch, ...), time before the per-frame axes. Stream this model from Python.",
      );
    }
    this.layout = { rank: spec.shape.length, batch: b, time: t };
    this.trailing = spec.shape.filter((_, k) => k !== b && k !== t); // per-frame shape
    this.fixed = this.trailing.every((d) => typeof d === "number");
    this.size = this.fixed ? this.trailing.reduce((a, b) => a * b, 1) : null;
    const prep = contract.preprocessing;
    this.mean = prep.mean ? Float32Array.from(prep.mean) : null;
    this.std = prep.std ? Float32Array.from(prep.std) : null;
    this.vocabSize = prep.vocab ? prep.vocab.length : null;
    // integer frames are cast to this first (the scaling runs in float32): every value
    // must survive that cast exactly (exact.js)
    this.cast = this.mean || this.std ? "float32" : this.dtype;
    const per = this.trailing.at(-1) ?? 1; // statistics broadcast over the last axis
    for (const [name, v] of [["mean", this.mean], ["std", this.std]]) {
      if (v && v.length !== 1 && v.length !== per) {
        throw new ContractError(
          `contract field 'preprocessing.${name}': expected 1 or ${per} values (one per feature), ` +
            `got ${v.length}. Re-export the model with matching statistics.`,
        );
      }
    }
  }

  /** The frames tensor's dims for `tIn` frames of one stream, in the graph's axis order. */
  dims(tIn) {
    const { rank, batch, time } = this.layout;
    const dims = [];
    let f = 0;
    for (let k = 0; k < rank; k++) dims.push(k === batch ? 1 : k === time ? tIn : this.trailing[f++]);
    return dims;
  }

  describe() {
    const dims = this.trailing.join(", ");
    const one = dims ? `[${dims}]` : "a scalar";
    const chunk = dims ? `[T, ${dims}]` : "[T]";
    const kind = this.isInt ? "integer token ids" : `${this.dtype} values`;
    return `${kind} shaped ${one} (one frame) or ${chunk} (a chunk of T frames)`;
  }

  /**
   * Check `frames` and return `{data, count, single}`: a fresh typed array of the model's
   * dtype holding `count` frames (preprocessed), and whether one frame was given.
   * Throws `InputError` saying what was expected and what was got.
   */
  check(frames) {
    if (!this.fixed) {
      throw new InputError(
        `the frames input has symbolic per-frame axes ${JSON.stringify(this.trailing)}; this ` +
          "JavaScript runtime needs a fixed frame shape. Re-export with fixed feature sizes.",
      );
    }
    const F = this.size;
    const rank0 = this.trailing.length === 0;
    let values;
    let single;
    if (typeof frames === "number" || typeof frames === "bigint") {
      if (!rank0) {
        throw new InputError(`expected ${this.describe()}, got a single number. Pass ${F} values per frame.`);
      }
      values = [frames];
      single = true;
    } else if (ArrayBuffer.isView(frames) && !(frames instanceof DataView)) {
      values = frames;
      single = !rank0 && frames.length === F;
    } else if (Array.isArray(frames)) {
      const nested = frames.length > 0 && (Array.isArray(frames[0]) || ArrayBuffer.isView(frames[0]));
      if (nested && rank0) {
        throw new InputError(
          `expected ${this.describe()}, without a batch axis; got nested arrays. Pass one ` +
            "stream's frames per call.",
        );
      }
      values = nested ? this._rows(frames, F) : frames;
      single = !nested && !rank0 && frames.length === F;
    } else {
      throw new InputError(
        `expected ${this.describe()}, got ${kindOf(frames)}. Pass a ${this.isInt ? "BigInt64Array, Int32Array or Array" : "Float32Array or Array"} of numbers.`,
      );
    }
    this._checkKind(values);
    if (values.length === 0) {
      throw new InputError(`expected at least one frame (${this.describe()}), got zero values. Skip the call instead.`);
    }
    if (values.length % F) {
      throw new InputError(
        `expected ${F} values per frame (${this.describe()}), got ${values.length} values, which ` +
          `is not a multiple of ${F}. Check the feature count and order.`,
      );
    }
    const count = values.length / F;
    return { data: this.isInt ? this._ids(values) : this._floats(values, F, single), count, single };
  }

  _rows(rows, F) {
    const flat = [];
    rows.forEach((row, t) => {
      if (!(Array.isArray(row) || ArrayBuffer.isView(row)) || row.length !== F) {
        const got = Array.isArray(row) || ArrayBuffer.isView(row) ? `${row.length} values` : kindOf(row);
        throw new InputError(
          `expected ${F} values per frame (${this.describe()}), got ${got} in row ${t}. Check ` +
            "the feature count and order.",
        );
      }
      const ints = isAny(row, INT_ARRAYS); // integer rows stay integer frames (BigInt)
      for (const v of row) flat.push(ints ? BigInt(v) : v);
    });
    return flat;
  }

  _checkKind(values) {
    if (ArrayBuffer.isView(values)) {
      const ok = this.isInt ? isAny(values, [...INT_ARRAYS, ...BIG_ARRAYS]) : isAny(values, [...FLOAT_ARRAYS, ...INT_ARRAYS, ...BIG_ARRAYS]);
      if (!ok) {
        const hint = this.isInt
          ? "Encode text with the model's vocabulary first (predictor.encode(text))."
          : "Convert with Float32Array.from(values).";
        throw new InputError(`expected ${this.describe()}, got ${values.constructor.name}. ${hint}`);
      }
      return;
    }
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      const number = typeof v === "number" || typeof v === "bigint";
      if (!number || (this.isInt && typeof v === "number" && !Number.isInteger(v))) {
        const got = number ? `the non-integer ${v}` : kindOf(v);
        const hint = this.isInt ? "Encode text with the model's vocabulary first (predictor.encode(text))." : "Pass numbers only.";
        throw new InputError(`expected ${this.describe()}, got ${got} at index ${k}. ${hint}`);
      }
    }
  }

  _ids(values) {
    const out = new this.Array(values.length);
    const big = out instanceof BigInt64Array;
    let lo = Infinity;
    let hi = -Infinity;
    for (let k = 0; k < values.length; k++) {
      const v = Number(values[k]);
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
      out[k] = big ? BigInt(values[k]) : v;
    }
    if (this.vocabSize !== null && (lo < 0 || hi >= this.vocabSize)) {
      throw new InputError(
        `expected token ids in [0, ${this.vocabSize}), got values from ${lo} to ${hi}. Encode ` +
          "with the model's vocabulary.",
      );
    }
    return out;
  }

  /** `(t, f)` of flat index `k`, as Python prints the index (`(k,)`, `()` for one scalar). */
  _where(k, F, single) {
    const rank0 = this.trailing.length === 0;
    const idx = single ? [k] : rank0 ? [k] : [Math.floor(k / F), k % F];
    return single && rank0 ? "()" : idx.length === 1 ? `(${idx[0]},)` : `(${idx.join(", ")})`;
  }

  /** Refuse integer frames (integer typed arrays, BigInts) whose value the cast to
   * `this.cast` would change; plain numbers are float64 and keep their rounding. */
  _exact(values, F, single) {
    const typed = isAny(values, [...INT_ARRAYS, ...BIG_ARRAYS]);
    if (!typed && !Array.isArray(values)) return;
    const limit = LARGEST_EXACT[this.cast];
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      if (typeof v === "bigint" ? v >= -limit && v <= limit : !typed || Math.abs(v) <= limit) continue;
      const becomes = castChanges(v, this.cast);
      if (becomes === null) continue;
      const what = this.cast === this.dtype && !(this.mean || this.std)
        ? `the model's ${this.cast} input`
        : "float32, in which the contract's input scaling runs,";
      throw new InputError(
        `expected integer values that ${what} holds exactly (${inexactBound(this.cast)}), got ` +
          `${v} at index ${this._where(k, F, single)}, which ${inexactProblem(v, becomes, this.cast)}; ` +
          "the stream's state is unchanged.",
      );
    }
  }

  _floats(values, F, single) {
    const out = new this.Array(values.length);
    for (let k = 0; k < values.length; k++) out[k] = Number(values[k]);
    this._exact(values, F, single);
    for (let k = 0; k < out.length; k++) {
      if (!Number.isFinite(out[k])) {
        const where = this._where(k, F, single);
        throw new InputError(
          `expected finite ${this.describe()}, got NaN or Inf (first at index ${where}); one bad ` +
            "value would poison the stream's state. Clean or impute the frames first; the " +
            "stream's state is unchanged.",
        );
      }
    }
    if (this.mean || this.std) {
      const last = this.trailing.at(-1) ?? 1;
      for (let k = 0; k < out.length; k++) {
        let v = out[k];
        const f = k % last;
        if (this.mean) v = Math.fround(v - this.mean[this.mean.length === 1 ? 0 : f]);
        if (this.std) v = Math.fround(v / this.std[this.std.length === 1 ? 0 : f]);
        out[k] = v;
      }
    }
    return out;
  }
}
