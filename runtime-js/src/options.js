/**
 * The options of `StreamingPredictor.create` that need checking against the model: an
 * explicit contract, and constant inputs fed unchanged on every call.
 */

import { Contract } from "./contract.js";
import { InputError } from "./errors.js";
import { readSource } from "./model-file.js";
import { pyRound } from "./pyjson.js";
import { ARRAY_OF, size } from "./tensor.js";

/**
 * A contract given as an option: a Contract, its JSON text, a plain object, or the URL or
 * (Node) path of a `MODEL.contract.json`.
 */
export async function contractOption(given) {
  if (given instanceof Contract) return given;
  if (typeof given === "string" && given.trimStart().startsWith("{")) return Contract.fromJSON(given);
  if (typeof given === "string" || given instanceof URL) {
    const bytes = await readSource(given, "contract");
    return Contract.fromJSON(new TextDecoder().decode(bytes));
  }
  if (given && typeof given === "object" && !ArrayBuffer.isView(given)) return Contract.fromObject(given);
  throw new InputError(
    `contract: expected a Contract, its JSON text, an object or the URL/path of a contract.json, got ${typeof given}.`,
  );
}

/**
 * `{name: ort.Tensor}` for the contract's constant inputs from `given` (`{name: value}`);
 * values may be numbers, arrays, typed arrays or ort.Tensors. The graph's metadata gives
 * each input's type and shape.
 */
export function constantTensors(ort, contract, graphInputs, given = {}) {
  const declared = contract.constants;
  const graph = new Map(graphInputs.map((g) => [g.name, g]));
  for (const name of Object.keys(given ?? {})) {
    if (!declared.includes(name)) {
      throw new InputError(
        `constants['${name}']: expected one of this model's constant inputs ${JSON.stringify(declared)}, ` +
          `got '${name}'. Remove it, or check the input name.`,
      );
    }
  }
  const missing = declared.filter((n) => !(n in (given ?? {})));
  if (missing.length) {
    throw new InputError(
      `the model needs a value for ${missing.map((n) => `'${n}'`).join(", ")} on every call; expected ` +
        `constants: {${missing.map((n) => `${n}: value`).join(", ")}}, got none.`,
    );
  }
  const out = {};
  for (const name of declared) {
    const value = given[name];
    if (value instanceof ort.Tensor) {
      out[name] = value;
      continue;
    }
    const g = graph.get(name);
    const type = g?.type;
    const shape = g?.shape;
    if (!type || !Array.isArray(shape) || !shape.every((d) => typeof d === "number" && d >= 0)) {
      throw new InputError(
        `constants['${name}']: this onnxruntime does not report the input's fixed type and shape; ` +
          "pass an ort.Tensor of the right type and shape instead.",
      );
    }
    const flat = typeof value === "number" || typeof value === "bigint" ? [value] : Array.from(value ?? []);
    if (flat.length !== size(shape) || !flat.every((v) => typeof v === "number" || typeof v === "bigint")) {
      throw new InputError(
        `constants['${name}']: expected ${size(shape)} number(s) of shape [${shape.join(", ")}], got ` +
          `${flat.length} value(s). Pass e.g. ${shape.length ? "an array" : "a number"} of ${type}.`,
      );
    }
    const Arr = ARRAY_OF[type];
    if (!Arr) throw new InputError(`constants['${name}']: input type ${type} is not supported here; pass an ort.Tensor.`);
    const big = Arr === BigInt64Array;
    const data = big ? BigInt64Array.from(flat, (v) => (isInt(v) ? BigInt(v) : 0n)) : Arr.from(flat, Number);
    const bad = flat.findIndex((v, k) => !castKeeps(v, data[k], type));
    if (bad >= 0) {
      const was = flat[bad];
      const now = big && !isInt(was) ? "an int64 it cannot hold" : String(data[bad]);
      throw new InputError(
        `constants['${name}']: expected values the graph's ${type} holds, got ${was}, which the ` +
          `cast to ${type} would change to ${now}. Pass a value the model's input holds.`,
      );
    }
    out[name] = new ort.Tensor(type, data, shape);
  }
  checkRateConstant(contract.model.extra?.rate ?? null, out);
  return out;
}

// constant input names that tell a model the sample rate of its audio (Silero's `sr`)
export const RATE_NAMES = ["sr", "rate", "fs", "sample_rate", "samplerate", "sampling_rate", "sample_rate_hz"];
const NUMERIC = /^(float|u?int)\d*$/;

/** The sample-rate constant among `tensors` (`{name: ort.Tensor}`; by name, one number),
 * as `[name, value]`, or null. */
export function rateConstant(tensors) {
  for (const [name, t] of Object.entries(tensors)) {
    if (RATE_NAMES.includes(name.toLowerCase()) && NUMERIC.test(t.type) && t.data.length === 1) {
      return [name, Number(t.data[0])];
    }
  }
  return null;
}

/** Refuse a sample-rate constant that contradicts the rate the contract records. */
export function checkRateConstant(recorded, tensors) {
  const found = rateConstant(tensors);
  if (recorded === null || found === null || found[1] === Number(recorded)) return;
  const [name, value] = found;
  throw new InputError(
    `constants['${name}'] tells the model its samples are at ${formatG(value)} Hz; this model's ` +
      `contract records ${recorded} Hz (its windows and context are in samples at that rate). ` +
      `Expected ${name}=${recorded}; for another rate, store a contract made for it: edgeseq ` +
      "inspect MODEL --rate N --window N --context N --write-contract OUT.onnx",
  );
}

/** Python's `format(x, "g")`: 6 significant digits, trailing zeros dropped, an exponent
 * (`1e+06`) below 1e-4 or from 1e6. */
export function formatG(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const [mant, e] = x.toExponential(5).split("e");
  const exp = Number(e);
  const strip = (t) => (t.includes(".") ? t.replace(/\.?0+$/, "") : t);
  if (exp < -4 || exp >= 6) return `${strip(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return strip(pyRound(x, 5 - exp).toFixed(5 - exp)); // ties to even, as Python
}

const isInt = (v) => typeof v === "bigint" || Number.isInteger(v);

/** Whether `stored` (the typed array's value) is `v` as given: an int that does not wrap or
 * truncate, a bool from 0/1 only, a finite float that stays finite. */
function castKeeps(v, stored, type) {
  if (type === "int64") return isInt(v) && BigInt(v) === stored;
  if (type === "float32" || type === "float64") return !Number.isFinite(Number(v)) || Number.isFinite(stored);
  if (type === "bool") return Number(v) === 0 || Number(v) === 1;
  return isInt(v) && Number(v) === stored;
}
