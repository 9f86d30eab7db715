/**
 * The options of `StreamingPredictor.create` that need checking against the model: an
 * explicit contract, and constant inputs fed unchanged on every call.
 */

import { Contract } from "./contract.js";
import { InputError } from "./errors.js";
import { readSource } from "./model-file.js";
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
  return out;
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
