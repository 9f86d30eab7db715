/**
 * The edgeseq error hierarchy for JavaScript: one root, the same names as Python's
 * `edgeseq/errors.py`. Every message says what was expected, what was got, and what to do.
 */

/** Root of every error the edgeseq runtime throws on purpose. */
export class EdgeseqError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The state contract is missing, malformed, or disagrees with the graph. */
export class ContractError extends EdgeseqError {}

/** A model could not be read or parsed by onnxruntime. */
export class ModelLoadError extends EdgeseqError {}

/** Frames or other call arguments have the wrong rank, size, type or values. */
export class InputError extends EdgeseqError {}

/** A snapshot is corrupt or belongs to another model. */
export class SnapshotError extends EdgeseqError {}
