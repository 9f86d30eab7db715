/**
 * EncoderDecoder: seq2seq pairs (translation, pronunciation) as `runtime/conditioned.py`
 * runs them. The decoder's contract names its encoder (`model.extra.init_model`, a file
 * beside it); the encoder streams the source and its final state starts the decoder. An
 * attention decoder (`model.extra.attention`) also takes the encoder's outputs as its
 * per-stream memory, padded to `max_source` rows, with a mask of the valid ones. A
 * one-to-many decoder (captioning) names an init graph instead, which maps a condition
 * vector to the decoder's first state.
 *
 * ```js
 * import * as ort from "onnxruntime-node";
 * const pair = await EncoderDecoder.create("translate.onnx", { ort });
 * const ids = [];
 * for await (const id of pair.beam("hello", 2, 3, 40, 4, { lengthPenalty: 0.6 })) ids.push(id);
 * console.log(pair.decode(ids));
 * ```
 */

import { beamTokens, checkBeamOptions } from "./beam.js";
import { Contract, METADATA_KEY } from "./contract.js";
import { ContractError, InputError, ModelLoadError } from "./errors.js";
import { castChanges, inexactBound, inexactProblem } from "./exact.js";
import { readMetadata, readSource } from "./model-file.js";
import { BOS, checkOptions, decodeIds, encodePrompt, hasSpecials, lastRow, sampleLoop, StopFilter } from "./generate.js";
import { StreamingPredictor } from "./predictor.js";

/** `name` in the same folder as `ref` (a file path, or a URL). */
function besideOf(ref, name) {
  if (ref instanceof URL || /^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) return new URL(name, ref).href;
  const cut = Math.max(ref.lastIndexOf("/"), ref.lastIndexOf("\\"));
  return ref.slice(0, cut + 1) + name;
}

/** A one-to-many decoder's init graph (condition vector -> the decoder's first state). */
async function openBridge(ort, source, sessionOptions) {
  const bytes = await readSource(source, "init model");
  const meta = readMetadata(bytes, "init model");
  if (!meta || !(METADATA_KEY in meta)) {
    throw new ContractError(`the init model has no '${METADATA_KEY}' metadata; expected the init graph edgeseq exported beside the decoder.`);
  }
  const contract = Contract.fromJSON(meta[METADATA_KEY]);
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, sessionOptions ?? {});
  } catch (exc) {
    throw new ModelLoadError(`onnxruntime could not load the init model (${String(exc?.message ?? exc).split("\n")[0]}); re-export it.`);
  }
  const io = (names, metas) => (metas?.length ? metas.map((m) => ({ name: m.name, type: m.type, shape: m.shape })) : names.map((name) => ({ name })));
  try {
    contract.checkGraph(io(session.inputNames, session.inputMetadata), io(session.outputNames, session.outputMetadata));
  } catch (exc) {
    await session.release?.();
    throw exc;
  }
  const spec = contract.inputs[0];
  const size = spec.shape[spec.shape.length - 1];
  return {
    contract,
    close: () => session.release?.(),
    /** The decoder's first states from condition vector `cond` `[size]`; refuses a bad one. */
    async run(ortModule, cond) {
      const values = ArrayBuffer.isView(cond) || Array.isArray(cond) ? Array.from(cond) : null;
      const ints = ArrayBuffer.isView(cond) && !/Float/.test(cond.constructor.name);
      for (const [k, v] of (values ?? []).entries()) {
        const becomes = ints || typeof v === "bigint" ? castChanges(v, "float32") : null;
        if (becomes !== null) {
          throw new InputError(
            `condition: expected integer values that the model's float32 input holds exactly ` +
              `(${inexactBound("float32")}), got ${v} at index (${k},), which ` +
              `${inexactProblem(v, becomes, "float32")}; the decoder's state is unchanged.`,
          );
        }
      }
      const x = values && Float32Array.from(values, Number);
      if (!x || x.length !== size || !x.every(Number.isFinite)) {
        const got = x ? `float32 (${x.length},)` : typeof cond; // as Python: after the cast
        throw new InputError(`condition must be a finite float vector of shape (${size},); got ${got}.`);
      }
      const outs = await session.run({ [spec.name]: new ortModule.Tensor("float32", x, [1, size]) });
      return Object.fromEntries(contract.outputs.map((o) => [o.name, outs[o.name]]));
    },
  };
}

const argmax = (v) => {
  let best = 0;
  for (let k = 1; k < v.length; k++) if (v[k] > v[best] || (Number.isNaN(v[k]) && !Number.isNaN(v[best]))) best = k;
  return best;
};

/** An encoder and the token decoder it starts: `start`, `greedy`, `beam`. */
export class EncoderDecoder {
  /**
   * Load a decoder and its encoder.
   *
   * @param decoder the decoder model: a file path (Node), a URL, or bytes
   * @param options.ort onnxruntime's module (`onnxruntime-node` or `onnxruntime-web`)
   * @param options.initModel the encoder (path, URL or bytes); by default the file the
   *   decoder's contract names (`model.extra.init_model`), beside the decoder
   * @param options.sessionOptions passed to `ort.InferenceSession.create` for both
   */
  static async create(decoder, options = {}) {
    const { ort, initModel = null, sessionOptions } = options;
    const dec = await StreamingPredictor.create(decoder, { ort, sessionOptions });
    try {
      const extra = dec.contract.model.extra ?? {};
      let source = initModel;
      if (source === null) {
        const name = extra.init_model;
        if (!name || (typeof decoder !== "string" && !(decoder instanceof URL))) {
          throw new ContractError(
            "the decoder's contract names no init model file (model.extra.init_model) or the " +
              "decoder was given as bytes; pass {initModel} explicitly.",
          );
        }
        source = besideOf(decoder, name);
      }
      if (dec.contract.model.topology === "seq2seq") {
        return new EncoderDecoder(dec, await StreamingPredictor.create(source, { ort, sessionOptions }), null);
      }
      return new EncoderDecoder(dec, null, await openBridge(ort, source, sessionOptions));
    } catch (exc) {
      await dec.close();
      throw exc;
    }
  }

  /** @internal use {@link EncoderDecoder.create} */
  constructor(decoder, encoder, bridge) {
    this.decoder = decoder;
    /** The seq2seq encoder (a StreamingPredictor), or null for a one-to-many decoder. */
    this.encoder = encoder;
    this._bridge = bridge; // a one-to-many decoder's init graph: {contract, run, close}
    /** "encoder" (seq2seq) or "init" (a condition vector through an init graph). */
    this.role = encoder ? "encoder" : "init";
    /** The decoder's vocabulary (output ids), or null. */
    this.vocab = decoder.contract.preprocessing.vocab ?? null;
    /** An attention decoder's memory inputs `{kind, memory, mask, max_source}`, or null. */
    this.attention = decoder.contract.model.extra?.attention ?? null;
  }

  /** Token ids `[T]` of text `source` with the encoder's vocabulary; other sources as given. */
  encode(source, { unknown = "error" } = {}) {
    if (this.encoder === null || typeof source !== "string") return source;
    const vocab = this.encoder.contract.preprocessing.vocab;
    if (!vocab) {
      throw new InputError(
        "the encoder has no vocabulary, so text cannot be encoded; expected its frames [T, F] or token ids [T].",
      );
    }
    return encodePrompt(source, vocab, unknown);
  }

  /** Text of decoded ids with the decoder's vocabulary (stops at `<eos>`). */
  decode(ids) {
    if (!this.vocab) throw new InputError("the decoder's contract has no vocabulary; expected a text decoder exported by edgeseq.");
    return decodeIds(ids, this.vocab);
  }

  /**
   * Prime the decoder: `source` is text (encoded with the encoder's vocabulary; characters
   * not in it are refused unless `{unknown: "unk"}` or `{unknown: "skip"}`), token ids
   * `[T]` or frames `[T, F]`; for a one-to-many decoder, the condition vector `[C]`. The
   * decoder starts a new sequence (`framesSeen` 0) from the encoder's final state (and
   * memory) or the init graph's outputs; a refused source changes none of its state.
   */
  async start(source, { unknown = "error" } = {}) {
    if (this.encoder === null) {
      this.decoder._begin(await this._bridge.run(this.decoder.ort, source));
      return;
    }
    const ids = this.encode(source, { unknown });
    this.encoder.reset();
    const outputs = await this.encoder.step(ids);
    const states = { ...this.encoder.state, ...this._memory(outputs) };
    this.decoder._begin(states);
  }

  /** Memory and mask of an attention decoder from the encoder's outputs `[S, M]`. */
  _memory(outputs) {
    const spec = this.attention;
    if (!spec) return {};
    const out = outputs instanceof this.decoder.ort.Tensor ? outputs : outputs[this.encoder.dataOutputs[0].name];
    const pair = this.decoder.pairs.find((p) => p.input === spec.memory);
    const [rows, size] = pair.shape.slice(1);
    const last = out.dims.length ? out.dims[out.dims.length - 1] : null;
    const shape = last === null ? [] : [last ? out.data.length / last : 0, last];
    const n = shape[0];
    if (shape.length !== 2 || last !== size || !(n >= 1 && n <= rows)) {
      const shown = shape.length ? `(${shape.join(", ")})` : "()";
      throw new InputError(
        `the encoder gave outputs of shape ${shown}; this attention decoder's memory holds 1 to ` +
          `${rows} rows of ${size}. Pass a source of at most ${rows} frames or tokens, or re-export ` +
          "with a larger max_source.",
      );
    }
    const memory = new Float32Array(rows * size);
    memory.set(out.data);
    const mask = new Float32Array(rows).fill(1, 0, n);
    return { [spec.memory]: { data: memory, dims: [1, rows, size] }, [spec.mask]: { data: mask, dims: [1, rows] } };
  }

  /**
   * Yield the decoded token ids one by one (argmax at each step), stopping at `eos` or
   * after `maxLen` tokens: `for await (const id of pair.greedy("abc", 2, 3, 40))`.
   */
  async *greedy(source, bos, eos, maxLen = 64, { unknown = "error" } = {}) {
    await this.start(source, { unknown }); // a new decoder sequence, or no change if refused
    let tok = bos;
    for (let n = 0; n < maxLen; n++) {
      tok = argmax(lastRow(await this.decoder.step(BigInt64Array.of(BigInt(tok)))));
      if (tok === eos) return;
      yield tok;
    }
  }

  /**
   * Yield the token ids of the most probable output a beam search of `width` hypotheses
   * finds (`width` 1 is greedy), without BOS/EOS; the same ranking as Python's
   * `EncoderDecoder.beam`. Tokens every kept hypothesis shares are yielded as soon as they
   * agree, the rest when the search ends. Afterwards the decoder holds the best output's
   * state. Hypotheses are ranked by total log-probability divided by
   * `((5 + length) / 6) ** lengthPenalty` (default 0: the total itself, which favours short
   * outputs; 0.6 to 1.0 lets longer ones win). A bad width, `maxLen` or `lengthPenalty`
   * throws InputError before any state changes.
   */
  async *beam(source, bos, eos, maxLen = 64, width = 5, { lengthPenalty = 0, unknown = "error" } = {}) {
    checkBeamOptions(width, maxLen, lengthPenalty);
    await this.start(source, { unknown }); // sets every decoder state, or none
    yield* beamTokens(this.decoder, bos, eos, maxLen, width, lengthPenalty);
  }

  /**
   * Yield the decoded text piece by piece, sampled as `StreamingPredictor.generate` samples
   * (options maxTokens (64), temperature (1; 0 is greedy), topK, topP, seed, stop, unknown);
   * the same source, options and seed give Python's text. Bad options are refused before
   * any state changes.
   */
  async *generate(source, options = {}) {
    const { maxTokens = 64, temperature = 1, topK = null, topP = null, seed = null, stop = null, unknown = "error" } = options;
    if (!this.vocab || !hasSpecials(this.vocab)) {
      throw new InputError(
        "generate() needs the decoder's vocabulary with <pad>, <unk>, <bos>, <eos> first; this " +
          "decoder's contract has none. Use greedy() for raw token ids.",
      );
    }
    checkOptions({ maxTokens, temperature, topK, topP });
    const stopper = new StopFilter(stop);
    await this.start(source, { unknown }); // a new decoder sequence, or no change if refused
    const step = (tok) => this.decoder.step(BigInt64Array.of(BigInt(tok)));
    const logits = lastRow(await step(BOS));
    yield* sampleLoop(step, logits, this.vocab, { maxTokens, temperature, topK, topP, seed, stop: stopper });
  }

  /** Release both onnxruntime sessions. */
  async close() {
    await this.decoder.close();
    await (this.encoder ?? this._bridge).close();
  }
}
