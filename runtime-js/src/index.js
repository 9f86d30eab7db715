/**
 * edgeseq's runtime for JavaScript: stream any edgeseq-exported ONNX model in Node.js or a
 * browser with onnxruntime's own packages, reading the state contract from the file.
 *
 * ```js
 * import * as ort from "onnxruntime-node";          // in a browser: "onnxruntime-web"
 * import { StreamingPredictor } from "edgeseq-runtime";
 * const p = await StreamingPredictor.create("model.onnx", { ort });
 * for (const frame of sensor) console.log((await p.step(frame)).data);  // state carried
 * ```
 *
 * The same names as Python's `edgeseq.runtime` (methods in camelCase): StreamingPredictor
 * with step/reset/state/setState/snapshot/restore/generate, Snapshot with
 * toBytes/fromBytes (the same bytes as Python's), EncoderDecoder with start/greedy/beam/generate,
 * Contract, and the error classes.
 */

export { Contract, CONTRACT_VERSION, METADATA_KEY } from "./contract.js";
export { ContractError, EdgeseqError, InputError, ModelLoadError, SnapshotError } from "./errors.js";
export { decodeIds, encodePrompt, sampleToken } from "./generate.js";
export { readMetadata, sidecarOf } from "./model-file.js";
export { StreamingPredictor } from "./predictor.js";
export { NumpyRandom } from "./random.js";
export { FORMAT, FORMAT_VERSION, Snapshot } from "./snapshot.js";
export { EncoderDecoder } from "./encoder-decoder.js";
export { checkBeamOptions, lengthPenalties, logSoftmax } from "./beam.js";
