/**
 * StreamingPredictor: one stream through an edgeseq model, state kept between calls.
 * The JavaScript side of `runtime/predictor.py`, on onnxruntime's own JavaScript packages
 * (`onnxruntime-node` in Node, `onnxruntime-web` in a browser), passed in as `{ort}`.
 */

import { ContractError, InputError, ModelLoadError, SnapshotError } from "./errors.js";
import { Contract, METADATA_KEY } from "./contract.js";
import { FrameSpec } from "./frames.js";
import { generate, encodePrompt, decodeIds } from "./generate.js";
import { loadSidecar, readMetadata, readSource } from "./model-file.js";
import { Snapshot, checkSnapshot } from "./snapshot.js";
import { Outputs } from "./outputs.js";
import { ARRAY_OF, batchOne, size } from "./tensor.js";
import { contractOption, constantTensors } from "./options.js";
import { checkContext, settleContext } from "./context.js";
import { joinStates, splitStates } from "./state-views.js";

const describeSource = (model, bytes) =>
  typeof model === "string" ? model : model instanceof URL ? model.href : `model bytes (${bytes.length} bytes)`;

async function resolveContract(model, bytes, given, what) {
  if (given !== undefined && given !== null) return await contractOption(given);
  const meta = readMetadata(bytes, what);
  if (meta && METADATA_KEY in meta) return Contract.fromJSON(meta[METADATA_KEY]);
  const sidecar = await loadSidecar(model);
  if (sidecar !== null) return Contract.fromJSON(sidecar);
  const where = meta === null ? "is an ORT-format file (its metadata is not readable here) and" : "has";
  throw new ContractError(
    `${what} ${where} no '${METADATA_KEY}' metadata, so edgeseq does not know which inputs ` +
      "carry state. Export it with edgeseq (`edgeseq export --ort` also writes " +
      "MODEL.contract.json beside it), pass {contract: <contract.json text, object or URL>}, or " +
      "store a discovered one with `edgeseq inspect MODEL --write-contract OUT.onnx`.",
  );
}

/**
 * Stream frames of one sequence through an ONNX model, carrying state between calls.
 *
 * ```js
 * import * as ort from "onnxruntime-node";            // or "onnxruntime-web"
 * const p = await StreamingPredictor.create("model.onnx", { ort });
 * const y = await p.step(Float32Array.of(0.1, 0.2, 0.3)); // one frame [F] -> Tensor [out]
 * const ys = await p.step(chunk);                         // T·F values -> Tensor [T, out]
 * ```
 *
 * Calls are queued: one stream's steps run in order even when not awaited. On any error
 * the state is left exactly as it was.
 */
export class StreamingPredictor {
  /**
   * Load a model and read its contract.
   *
   * @param model bytes (Uint8Array/ArrayBuffer), a URL, or (Node) a file path
   * @param options.ort onnxruntime's module (required): `onnxruntime-node` or `onnxruntime-web`
   * @param options.contract use this contract instead of the file's: a Contract, its JSON
   *   text, a plain object, or the URL/path of a `MODEL.contract.json`
   * @param options.constants `{input name: value}` fed unchanged on every call
   * @param options.context left context: the last N frames of each call are prepended to
   *   the next (default: the contract's `model.extra.context`, else 0); refused when it
   *   differs from the contract's, or on a model whose state already holds its past (an
   *   edgeseq export; a model from elsewhere that streams exactly without it)
   * @param options.sessionOptions passed to `ort.InferenceSession.create`
   */
  static async create(model, options = {}) {
    const { ort, contract, constants, context, sessionOptions } = options;
    if (!ort || typeof ort.InferenceSession?.create !== "function" || typeof ort.Tensor !== "function") {
      throw new InputError(
        "StreamingPredictor.create(model, {ort}): expected onnxruntime's module as `ort`, got " +
          `${ort === undefined ? "nothing" : typeof ort}. Pass e.g. {ort: await import("onnxruntime-node")}.`,
      );
    }
    const bytes = await readSource(model, "model");
    const what = describeSource(model, bytes);
    const c = await resolveContract(model, bytes, contract, what);
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions ?? {});
    } catch (exc) {
      const first = String(exc?.message ?? exc).split("\n")[0].slice(0, 300);
      throw new ModelLoadError(
        `onnxruntime could not load ${what}: expected a complete ONNX (or ORT) model, but ` +
          `parsing failed (${first}). The file may be truncated or not a model: re-export it.`,
      );
    }
    const io = (names, meta) =>
      meta && meta.length ? meta.map((m) => ({ name: m.name, type: m.type, shape: m.shape })) : names.map((name) => ({ name }));
    const gin = io(session.inputNames, session.inputMetadata);
    c.checkGraph(gin, io(session.outputNames, session.outputMetadata));
    let hash = null;
    try {
      hash = await c.hash();
    } catch {
      // no WebCrypto (a browser page on plain http that is not localhost): snapshots say so
    }
    let p;
    try {
      p = new StreamingPredictor(ort, session, c, { constants: constantTensors(ort, c, gin, constants), context, hash });
      await checkContext(p); // no left context on a model whose state holds its past
    } catch (exc) {
      await session.release?.();
      throw exc;
    }
    return p;
  }

  /** @internal use {@link StreamingPredictor.create} */
  constructor(ort, session, contract, { constants, context, hash }) {
    this.ort = ort;
    this.session = session;
    this.contract = contract;
    this.frameSpec = new FrameSpec(contract);
    this.pairs = contract.states;
    this.views = contract.stateViews(); // a state carried in parts is shown whole
    this.dataOutputs = contract.dataOutputs();
    if (!this.dataOutputs.length) {
      throw new ContractError(
        "contract field 'outputs': expected at least one output that is not state, got only " +
          `state outputs ${JSON.stringify(contract.stateOutputs)}. Declare the model's data output.`,
      );
    }
    this.constants = constants;
    const window = contract.model.extra?.window;
    if (window !== undefined && window !== null) {
      throw new ContractError(
        `this model streams fixed windows of ${window} samples (contract field 'model.extra.window'); ` +
          "the JavaScript runtime does not cut windows yet. Stream it from Python (window=), or " +
          "feed whole windows to a contract without 'window'.",
      );
    }
    this.contextFrames = settleContext(context, contract);
    this.chunk = contract.model.chunk; // frames per call of a fixed-length graph, context included
    this.stepFrames = this.chunk ? this.chunk - this.contextFrames : null;
    if (this.stepFrames !== null && this.stepFrames < 1) {
      throw new InputError(
        `context=${this.contextFrames} leaves no room for new frames in this graph's fixed ` +
          `${this.chunk} frames per call; expected context < ${this.chunk}.`,
      );
    }
    this._outputs = new Outputs(ort, this.dataOutputs, contract.preprocessing, this.contextFrames);
    this._hash = hash;
    this._feeds = { ...constants };
    this._lengthsCache = new Map(); // valid-frame count -> its (1,) int32 tensor
    this._tail = Promise.resolve();
    this._generation = 0;
    this.reset();
  }

  // ------------------------------------------------------------------ state
  /** Start a new sequence: every state back to the contract's initial value. */
  reset() {
    this._states = this.pairs.map((p) => {
      const dims = batchOne(p.shape);
      const Arr = ARRAY_OF[p.dtype];
      const data = p.init === "zeros" ? new Arr(size(dims)) : Arr.from(p.init);
      return new this.ort.Tensor(p.dtype, data, dims);
    });
    const F = this.frameSpec.size ?? 0;
    this._context = this.contextFrames ? new this.frameSpec.Array(this.contextFrames * F) : null;
    this.framesSeen = 0;
    this._generation++;
  }

  /**
   * A copy of the current state, by state input name, each an ort.Tensor with batch 1. A
   * state the graph carries in parts (one pair per layer, the contract's `part_of`) comes
   * back whole under its own name, e.g. `[layers, 1, hidden]`.
   */
  get state() {
    return joinStates(this.ort, this.pairs, this.views, this._states);
  }

  /**
   * Replace the state (e.g. with an encoder's final state); every state must be given as
   * `{data, dims}` (an ort.Tensor will do) of the batch-1 shape `predictor.state` has, or
   * every pair of the graph by its input name (e.g. an init model's outputs). Nothing
   * changes if any is wrong.
   */
  setState(states) {
    this._states = splitStates(this.ort, this.pairs, this.views, states);
    this._generation++;
  }

  /**
   * @internal A new sequence from `states` (as `setState` takes them): every state set and
   * `framesSeen` back to 0, or, if `states` are refused, nothing changed. EncoderDecoder's start.
   */
  _begin(states) {
    const next = splitStates(this.ort, this.pairs, this.views, states);
    this.reset();
    this._states = next;
  }

  /** Copy the stream's state; `restore()` rewinds to it, `toBytes()` persists it. */
  snapshot() {
    this._needHash();
    const states = Object.fromEntries(
      this.pairs.map((p, k) => [p.input, { dtype: p.dtype, dims: [...this._states[k].dims], data: this._states[k].data.slice() }]),
    );
    const ctx = this._context === null ? null : { dtype: this.frameSpec.dtype, dims: this._contextDims(), data: this._context.slice() };
    return new Snapshot(this._hash, states, this.framesSeen, ctx);
  }

  /** Continue from `snapshot` (a Snapshot or its bytes, from JavaScript or Python). */
  restore(snapshot) {
    this._needHash();
    const snap = snapshot instanceof Snapshot ? snapshot : Snapshot.fromBytes(snapshot);
    const want = this.pairs.map((p) => ({ name: p.input, dims: batchOne(p.shape), dtype: p.dtype }));
    const [states, ctx] = checkSnapshot(snap, this._hash, want, this._context === null ? null : this._contextDims());
    this._states = this.pairs.map((p, k) => new this.ort.Tensor(p.dtype, states[k].data, states[k].dims));
    this._context = ctx === null ? null : ctx.data;
    this.framesSeen = snap.framesSeen;
    this._generation++;
  }

  _needHash() {
    if (this._hash === null) {
      throw new SnapshotError(
        "snapshots need WebCrypto's SHA-256 to tie them to the model, and this page has none: " +
          "serve it over https or from localhost.",
      );
    }
  }

  _contextDims() {
    return [1, this.contextFrames, ...this.frameSpec.trailing];
  }

  // ------------------------------------------------------------------ stepping
  /**
   * Feed one frame or a chunk; resolve to this call's outputs: an ort.Tensor without the
   * batch axis (`[out]` for one frame, `[T, out]` for a chunk), or an object of them by
   * output name for a model with several outputs. Rejects with `InputError` (state
   * unchanged) on frames of the wrong length, type or values.
   */
  step(frames) {
    let checked;
    try {
      checked = this.frameSpec.check(frames);
    } catch (exc) {
      return Promise.reject(exc);
    }
    const run = this._tail.then(() => this._run(checked));
    this._tail = run.catch(() => {});
    return run;
  }

  async _run({ data, count, single }) {
    const gen = this._generation;
    const F = this.frameSpec.size;
    const N = this.contextFrames;
    const step = this.stepFrames ?? count;
    const lengthsName = this.contract.lengths;
    if (this.chunk && count % step && lengthsName === null) {
      throw new InputError(
        `this graph takes exactly ${step} new frames per call and cannot mask padding; got ` +
          `${count}. Pass a multiple of ${step} frames.`,
      );
    }
    if (this.chunk && !this.contract.model.stateful && count > step) {
      throw new InputError(
        `this offline graph takes one whole sequence of at most ${step} frames per call; got ` +
          `${count}. Re-export with --chunk >= ${count}, or use mode 'native'.`,
      );
    }
    let states = this._states;
    let ctx = this._context;
    const pieces = [];
    for (let start = 0; start < count; start += step) {
      const n = Math.min(step, count - start);
      let xs = data.subarray(start * F, (start + n) * F);
      if (N) {
        const joined = new xs.constructor((N + n) * F);
        joined.set(ctx);
        joined.set(xs, N * F);
        ctx = joined.slice(n * F, (n + N) * F);
        xs = joined;
      }
      const valid = n + N;
      let tIn = valid;
      if (this.chunk && tIn < this.chunk) {
        const padded = new xs.constructor(this.chunk * F);
        padded.set(xs);
        xs = padded;
        tIn = this.chunk;
      }
      const feeds = this._feeds; // one object, refilled per call: calls never overlap (queued)
      feeds[this.frameSpec.name] = new this.ort.Tensor(this.frameSpec.dtype, xs, this.frameSpec.dims(tIn));
      if (lengthsName !== null) feeds[lengthsName] = this._lengths(valid);
      for (let k = 0; k < this.pairs.length; k++) feeds[this.pairs[k].input] = states[k];
      let out;
      try {
        out = await this.session.run(feeds);
      } catch (exc) {
        const first = String(exc?.message ?? exc).split("\n")[0].slice(0, 300);
        throw new InputError(
          `onnxruntime refused the call (${first}); expected inputs that match the model's ` +
            "contract. The state is unchanged. Check the frames and constants, or re-export.",
        );
      }
      states = this.pairs.map((p) => out[p.output]);
      pieces.push({ outs: this.dataOutputs.map((o) => out[o.name]), n, tIn });
    }
    if (gen !== this._generation) {
      throw new InputError(
        "the stream was reset or restored while this step() ran; its outputs were discarded and " +
          "the new state kept. Await step() before calling reset(), restore() or setState().",
      );
    }
    this._states = states;
    this._context = ctx;
    this.framesSeen += count;
    return this._outputs.assemble(pieces, single);
  }

  _lengths(valid) {
    let t = this._lengthsCache.get(valid);
    if (!t) {
      t = new this.ort.Tensor("int32", Int32Array.of(valid), [1]);
      if (this._lengthsCache.size < 64) this._lengthsCache.set(valid, t);
    }
    return t;
  }

  // ------------------------------------------------------------------ text
  /**
   * Token ids of `text` with the contract's vocabulary (longest match). A character not in
   * it is refused unless `{unknown: "unk"}` (feed `<unk>`) or `{unknown: "skip"}` (drop it).
   */
  encode(text, { unknown = "error" } = {}) {
    return encodePrompt(text, this._vocab(), unknown);
  }

  /** Text of token ids (stops at `<eos>`). */
  decode(ids) {
    return decodeIds(ids, this._vocab());
  }

  _vocab() {
    const vocab = this.contract.preprocessing.vocab;
    if (!vocab) throw new InputError("this model's contract has no vocabulary; expected a token model exported by edgeseq.");
    return vocab;
  }

  /**
   * Yield text pieces sampled from a token model, one per generated token (an async
   * iterator): `for await (const piece of p.generate("The ", {maxTokens: 80, seed: 1}))`.
   * Options: maxTokens (100), temperature (1; 0 is greedy), topK, topP, seed, stop,
   * reset (true), unknown ("error": prompt characters not in the vocabulary are refused;
   * "unk" or "skip"). The same seed gives the same text as Python's `generate`.
   */
  generate(prompt = "", options = {}) {
    return generate(this, prompt, options);
  }

  /** Release onnxruntime's session. */
  async close() {
    await this.session.release?.();
  }

  toString() {
    const m = this.contract.model;
    return `StreamingPredictor(cell=${m.cell}, mode=${m.mode}, topology=${m.topology}, states=${this.pairs.length})`;
  }
}
