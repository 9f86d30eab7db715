/**
 * The state contract, read the way `edgeseq/contract.py` reads it: the same JSON, the same
 * field names, the same checks and messages, and the same digest (snapshots carry it).
 *
 * A contract names the per-frame input (`inputs[0]`, `(batch, time, ...)`), the state
 * pairs carried between calls (`states[i].input` -> `states[i].output`), the optional
 * `lengths` input, constant inputs, the model's facts (`model.chunk` for fixed-length
 * unrolled graphs) and its preprocessing (`mean`/`std`, `out_mean`/`out_std`, `vocab`).
 */

import { ContractError } from "./errors.js";
import { PyNumber, dumpsPython, parseExact, toPlain } from "./pyjson.js";

export const METADATA_KEY = "edgeseq.contract";
export const CONTRACT_VERSION = 1;
export const DTYPES = ["float32", "float16", "float64", "int64", "int32", "bool", "uint8", "int8"];

// the dataclass fields of ModelFacts and Preprocessing with their defaults
const MODEL_FACTS = {
  cell: "unknown",
  layers: null,
  hidden_size: null,
  input_size: null,
  output_size: null,
  topology: "many_to_many",
  mode: "native",
  chunk: null,
  stateful: true,
  task: null,
  labels: null,
  extra: {},
};
const PREPROCESSING = { mean: null, std: null, out_mean: null, out_std: null, vocab: null };

const show = (v) => {
  if (v instanceof PyNumber) return v.raw;
  if (v === undefined) return "None";
  try {
    return dumpsPython(v, { item: ", ", key: ": " });
  } catch {
    return String(v);
  }
};

function fail(path, expected, got) {
  return new ContractError(
    `contract field '${path}': expected ${expected}, got ${show(got)}. Re-export the model ` +
      "with edgeseq, or write its contract with `edgeseq inspect MODEL --write-contract OUT.onnx`.",
  );
}

const get = (d, key, dflt) => (Object.hasOwn(d, key) ? d[key] : dflt); // Python's dict.get
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof PyNumber);
const isInt = (v) => v instanceof PyNumber && v.isInt;
const isNum = (v) => v instanceof PyNumber;

function checkShape(path, shape) {
  if (!Array.isArray(shape) || !shape.every((d) => (isInt(d) && d.value >= 0) || (typeof d === "string" && d))) {
    throw fail(path, "a list of non-negative ints and axis names", shape);
  }
  return shape;
}

function checkAxis(path, axis, rank, optional) {
  if ((axis === null || axis === undefined) && optional) return null;
  if (!isInt(axis) || !(axis.value >= 0 && axis.value < rank)) {
    throw fail(path, `an axis index in [0, ${rank})${optional ? " or null" : ""}`, axis);
  }
  return axis;
}

function checkDtype(path, dtype) {
  if (!DTYPES.includes(dtype)) throw fail(path, `one of ${show(DTYPES)}`, dtype);
  return dtype;
}

function tensorSpec(d, path) {
  if (!isObj(d) || typeof d.name !== "string" || !d.name) {
    throw fail(`${path}.name`, "a non-empty string", isObj(d) ? d.name : d);
  }
  const shape = checkShape(`${path}.shape`, d.shape);
  return {
    name: d.name,
    shape,
    dtype: checkDtype(`${path}.dtype`, get(d, "dtype", "float32")),
    batch_axis: checkAxis(`${path}.batch_axis`, d.batch_axis, shape.length, true),
    time_axis: checkAxis(`${path}.time_axis`, d.time_axis, shape.length, true),
  };
}

function statePair(d, path) {
  if (!isObj(d)) throw fail(path, "an object", d);
  for (const key of ["input", "output"]) {
    if (typeof d[key] !== "string" || !d[key]) throw fail(`${path}.${key}`, "a non-empty graph tensor name", d[key]);
  }
  const shape = checkShape(`${path}.shape`, d.shape);
  const init = get(d, "init", "zeros");
  if (init !== "zeros" && !(Array.isArray(init) && init.every(isNum))) {
    throw fail(`${path}.init`, '"zeros" or a list of numbers', init);
  }
  const pair = {
    input: d.input,
    output: d.output,
    shape,
    // null: a model that runs one stream per call (no batch axis)
    batch_axis: checkAxis(`${path}.batch_axis`, get(d, "batch_axis", new PyNumber(1, true, "1")), shape.length, true),
    dtype: checkDtype(`${path}.dtype`, get(d, "dtype", "float32")),
    init,
  };
  // a part of a state the graph carries per layer (Python's StatePair.part_of): written
  // only when set, so older contracts keep their text and digest
  const partOf = get(d, "part_of", null);
  if (partOf !== null && (typeof partOf !== "string" || !partOf)) {
    throw fail(`${path}.part_of`, "the name of the state this pair is a part of, or null", partOf);
  }
  if (partOf !== null) pair.part_of = partOf;
  return pair;
}

/**
 * The states as users see them (Python's `Contract.state_views()`): one per pair, except
 * that the parts of a state (pairs with the same `part_of`) make one view, stacked on
 * axis 0. `pairs` index `contract.states`; `dims` is the stacked batch-1 shape.
 */
function stateViews(states) {
  const groups = new Map();
  states.forEach((p, k) => {
    const name = p.part_of ?? p.input;
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(k);
  });
  const inputs = new Set(states.map((p) => p.input));
  return [...groups].map(([name, pairs]) => {
    const first = states[pairs[0]];
    if (first.part_of === undefined) return { name, pairs, shape: first.shape };
    const where = `states[${pairs[0]}].part_of`;
    if (inputs.has(name)) throw fail(where, "a name no state pair has as its input", name);
    const rest = pairs.map((k) => JSON.stringify([states[k].shape.slice(1), states[k].batch_axis, states[k].dtype]));
    const fixed = pairs.every((k) => typeof states[k].shape[0] === "number");
    if (new Set(rest).size !== 1 || !fixed) {
      throw fail(where, `parts of ${show(name)} that differ only in a fixed size on axis 0`, pairs.map((k) => states[k].shape));
    }
    if (first.batch_axis === 0) throw fail(where, "parts stacked on axis 0, which is not their batch axis", name);
    const total = pairs.reduce((n, k) => n + states[k].shape[0], 0);
    return { name, pairs, shape: [total, ...first.shape.slice(1)] };
  });
}

function dataclass(name, given, fields) {
  const unknown = Object.keys(given).filter((k) => !(k in fields));
  if (unknown.length) {
    throw new ContractError(
      `contract field 'model' or 'preprocessing': ${name}.__init__() got an unexpected keyword ` +
        `argument '${unknown[0]}'. Upgrade edgeseq's JavaScript runtime or re-export the model.`,
    );
  }
  return { ...structuredClone(fields), ...given };
}

/** The full description of a streaming model; see the module comment. */
export class Contract {
  /**
   * Read a contract from its JSON text (as stored in the model's metadata or written to
   * `MODEL.contract.json`). Throws `ContractError` naming the field that is wrong.
   */
  static fromJSON(text) {
    let tree;
    try {
      tree = parseExact(String(text));
    } catch (exc) {
      throw new ContractError(
        `the model's '${METADATA_KEY}' metadata is not valid JSON (${exc.message}). ` +
          "The file was edited or truncated: re-export it.",
      );
    }
    return Contract.fromTree(tree);
  }

  /** A contract from a plain object (`JSON.parse` output: 1.0 and 1 look the same). */
  static fromObject(obj) {
    return Contract.fromJSON(JSON.stringify(obj));
  }

  /** @internal a `parseExact` tree -> checked contract with Python's defaults filled in */
  static fromTree(data) {
    if (!isObj(data)) throw fail("<root>", "a JSON object", Array.isArray(data) ? "list" : typeof data);
    if (!(isInt(data.version) && data.version.value === CONTRACT_VERSION)) {
      throw new ContractError(
        `contract field 'version': expected ${CONTRACT_VERSION}, got ${show(data.version)}. ` +
          "The model was written by another edgeseq release: upgrade edgeseq or re-export.",
      );
    }
    for (const key of ["inputs", "outputs"]) {
      if (!Array.isArray(data[key]) || !data[key].length) throw fail(key, "a non-empty list of tensors", data[key]);
    }
    const states = get(data, "states", []);
    if (!Array.isArray(states)) throw fail("states", "a list of state pairs", states);
    const facts = get(data, "model", {});
    const prep = get(data, "preprocessing", {});
    if (!isObj(facts)) throw fail("model", "an object", facts);
    if (!isObj(prep)) throw fail("preprocessing", "an object", prep);
    const model = dataclass("ModelFacts", facts, MODEL_FACTS);
    const preprocessing = dataclass("Preprocessing", prep, PREPROCESSING);
    for (const name of ["mean", "std", "out_mean", "out_std"]) {
      const vals = preprocessing[name];
      if (vals !== null && !(Array.isArray(vals) && vals.every(isNum))) {
        throw fail(`preprocessing.${name}`, "a list of numbers or null", vals);
      }
    }
    if (preprocessing.std !== null && preprocessing.std.some((v) => v.value === 0)) {
      throw fail("preprocessing.std", "non-zero scales", preprocessing.std);
    }
    const vocab = preprocessing.vocab;
    if (vocab !== null && !(Array.isArray(vocab) && vocab.every((v) => typeof v === "string"))) {
      throw fail("preprocessing.vocab", "a list of strings or null", "…");
    }
    const lengths = get(data, "lengths", null);
    if (lengths !== null && typeof lengths !== "string") throw fail("lengths", "a graph input name or null", lengths);
    const constants = get(data, "constants", []);
    if (!Array.isArray(constants) || !constants.every((c) => typeof c === "string")) {
      throw fail("constants", "a list of input names", constants);
    }
    const chunk = model.chunk;
    if (chunk !== null && !(isInt(chunk) && chunk.value >= 1)) throw fail("model.chunk", "a positive int or null", chunk);
    const producer = get(data, "producer", {});
    const tree = {
      inputs: data.inputs.map((d, i) => tensorSpec(d, `inputs[${i}]`)),
      outputs: data.outputs.map((d, i) => tensorSpec(d, `outputs[${i}]`)),
      states: states.map((d, i) => statePair(d, `states[${i}]`)),
      lengths,
      constants: [...constants],
      model,
      preprocessing,
      producer: isObj(producer) ? producer : {},
      version: data.version,
    };
    stateViews(toPlain({ states: tree.states }).states); // parts that cannot stack: refused here
    return new Contract(tree);
  }

  constructor(tree) {
    this._canonical = dumpsPython(tree); // Python's Contract.to_json(), byte for byte
    Object.assign(this, toPlain(tree));
    Object.freeze(this);
  }

  /** Python's `Contract.to_json()`: sorted keys, no spaces; the text the digest covers. */
  toJSON() {
    return JSON.parse(this._canonical);
  }

  /** The canonical JSON text (what `edgeseq` writes to the metadata and contract.json). */
  get text() {
    return this._canonical;
  }

  /**
   * The short digest snapshots carry (`Contract.hash()` in Python): the first 16 hex
   * digits of SHA-256 over {@link text}. Async: it uses WebCrypto.
   */
  async hash() {
    const subtle = globalThis.crypto?.subtle ?? (await import("node:crypto")).webcrypto.subtle;
    const digest = await subtle.digest("SHA-256", new TextEncoder().encode(this._canonical));
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
      .join("")
      .slice(0, 16);
  }

  /** The per-frame data input. */
  get frames() {
    return this.inputs[0];
  }

  get stateInputs() {
    return this.states.map((s) => s.input);
  }

  get stateOutputs() {
    return this.states.map((s) => s.output);
  }

  /** The states as users see them: `[{name, pairs, shape}]` (see `stateViews`). */
  stateViews() {
    return stateViews(this.states);
  }

  /** Outputs that are not state: what a call returns to the user. */
  dataOutputs() {
    const carried = new Set(this.stateOutputs);
    return this.outputs.filter((o) => !carried.has(o.name));
  }

  /**
   * Refuse a contract that disagrees with the graph, naming the field that is wrong.
   * `graphInputs`/`graphOutputs`: `[{name, type, shape}]` as onnxruntime's
   * `session.inputMetadata` gives them (type and shape may be missing).
   */
  checkGraph(graphInputs, graphOutputs) {
    const gin = new Map(graphInputs.map((g) => [g.name, g]));
    const gout = new Map(graphOutputs.map((g) => [g.name, g]));
    const check = (path, name, table, kind, shape, dtype) => {
      if (!table.has(name)) throw fail(path, `a graph ${kind} (the graph has ${show([...table.keys()].sort())})`, name);
      const g = table.get(name);
      if (dtype && g.type && g.type !== dtype) throw fail(`${path} dtype`, `${g.type} as in the graph`, dtype);
      if (!shape || !Array.isArray(g.shape) || !g.shape.length) return;
      if (g.shape.length !== shape.length) {
        throw fail(`${path} shape`, `rank ${g.shape.length} as in the graph ${show(g.shape)}`, shape);
      }
      shape.forEach((want, k) => {
        const have = g.shape[k];
        if (typeof want === "number" && typeof have === "number" && have >= 0 && want !== have) {
          throw fail(`${path} shape`, `${show(g.shape)} as in the graph`, shape);
        }
      });
    };
    const declared = new Set();
    this.inputs.forEach((t, i) => {
      check(`inputs[${i}].name`, t.name, gin, "input", t.shape, t.dtype);
      declared.add(t.name);
    });
    this.outputs.forEach((t, i) => check(`outputs[${i}].name`, t.name, gout, "output", t.shape, t.dtype));
    this.states.forEach((s, i) => {
      check(`states[${i}].input`, s.input, gin, "input", s.shape, s.dtype);
      check(`states[${i}].output`, s.output, gout, "output", s.shape, s.dtype);
      declared.add(s.input);
    });
    if (this.lengths !== null) {
      check("lengths", this.lengths, gin, "input", null, null);
      declared.add(this.lengths);
    }
    for (const c of this.constants) {
      check("constants", c, gin, "input", null, null);
      declared.add(c);
    }
    const missing = [...gin.keys()].filter((n) => !declared.has(n)).sort();
    if (missing.length) {
      throw fail("inputs", `every graph input declared (undeclared: ${show(missing)})`, this.inputs.map((t) => t.name));
    }
  }
}
