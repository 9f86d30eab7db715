/**
 * Snapshots: one stream's state as self-describing bytes, in the format of Python's
 * `edgeseq.runtime.snapshot`, so bytes written on one side restore on the other.
 *
 * The bytes are an `.npz` archive (never pickle)::
 *
 *     header.npy  uint8 JSON {"format": "edgeseq.snapshot", "version": 1, "kind": "stream",
 *                 "contract_hash", "next_id": null, "streams": [{"id": null,
 *                 "frames_seen", "states": [state input names], "context": bool, "meta"}]}
 *     s0_{k}.npy  state k (contract order), batch 1, e.g. (layers, 1, hidden)
 *     c0.npy      left-context frames (1, N, ...), when the stream keeps any
 *     p0.npy      samples waiting for a window (Python's window=; refused here)
 *
 * Zip CRCs catch corrupt bytes; the contract hash ties a snapshot to its model.
 * Pool snapshots (`kind: "pool"`, Python's StreamPool) are refused with a clear message.
 */

import { SnapshotError } from "./errors.js";
import { decodeNpy, encodeNpy, readZip, writeZip } from "./npz.js";

export const FORMAT = "edgeseq.snapshot";
export const FORMAT_VERSION = 1;
const CORRUPT =
  "expected bytes written by Snapshot.toBytes() (JavaScript) or Snapshot.to_bytes() " +
  "(Python). Use an intact copy, or start the stream afresh with reset().";

const copy = (a) => ({ dtype: a.dtype, dims: [...a.dims], data: a.data.slice() });

/** A copy of one stream's state; `restore()` accepts it on a predictor of the same model. */
export class Snapshot {
  /**
   * @param {string} contractHash the model's contract digest
   * @param {Object<string, {dtype, dims, data}>} states by state input name, batch 1
   * @param {number} framesSeen frames streamed since the last reset
   * @param {{dtype, dims, data}|null} context left-context frames `(1, N, ...)`
   * @param {object} meta JSON-able extras
   */
  constructor(contractHash, states, framesSeen = 0, context = null, meta = {}) {
    this.contractHash = contractHash;
    this.states = states;
    this.framesSeen = framesSeen;
    this.context = context;
    this.meta = meta;
  }

  /** Self-describing bytes (npz + JSON header); {@link Snapshot.fromBytes} reads them back. */
  toBytes() {
    const names = Object.keys(this.states);
    const header = {
      contract_hash: this.contractHash,
      format: FORMAT,
      kind: "stream",
      next_id: null,
      streams: [
        { context: this.context !== null, frames_seen: this.framesSeen, id: null, meta: this.meta, pending: false, states: names },
      ],
      version: FORMAT_VERSION,
    };
    let text;
    try {
      text = JSON.stringify(header);
    } catch (exc) {
      throw new SnapshotError(`snapshot meta must be JSON-serialisable (${exc.message}); convert it before saving.`);
    }
    const bytes = new TextEncoder().encode(text);
    const entries = [["header.npy", encodeNpy({ dtype: "uint8", dims: [bytes.length], data: bytes })]];
    names.forEach((n, k) => entries.push([`s0_${k}.npy`, encodeNpy(this.states[n])]));
    if (this.context !== null) entries.push(["c0.npy", encodeNpy(this.context)]);
    return writeZip(entries);
  }

  /** Read `toBytes()` (or Python's `to_bytes()`) output; throws `SnapshotError` if corrupt. */
  static fromBytes(data) {
    const bytes =
      data instanceof Uint8Array
        ? data
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : ArrayBuffer.isView(data)
            ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
            : null;
    if (!bytes) {
      throw new SnapshotError(`expected snapshot bytes (Uint8Array), got ${data === null ? "null" : typeof data}.`);
    }
    let header;
    let arrays;
    try {
      arrays = readZip(bytes);
      const raw = arrays.get("header.npy");
      if (!raw) throw new Error("no header.npy");
      header = JSON.parse(new TextDecoder().decode(decodeNpy(raw).data));
    } catch (exc) {
      throw new SnapshotError(`snapshot bytes are corrupt or not an edgeseq snapshot (${exc.message}); ${CORRUPT}`);
    }
    if (header === null || typeof header !== "object" || header.format !== FORMAT) {
      throw new SnapshotError(`the bytes are an npz archive but not an '${FORMAT}'; ${CORRUPT}`);
    }
    if (header.version !== FORMAT_VERSION) {
      throw new SnapshotError(
        `snapshot format version ${header.version}; this edgeseq reads version ${FORMAT_VERSION}. ` +
          "Restore it with the edgeseq that wrote it.",
      );
    }
    if (header.kind !== "stream") {
      throw new SnapshotError(
        `this is a '${header.kind}' snapshot, expected a 'stream' one; a StreamPool snapshot ` +
          "restores in Python (PoolSnapshot.from_bytes).",
      );
    }
    try {
      if (!Array.isArray(header.streams) || header.streams.length !== 1) {
        throw new Error(`a stream snapshot holds ${header.streams?.length} streams`);
      }
      const rec = header.streams[0];
      if (rec.pending && arrays.has("p0.npy") && decodeNpy(arrays.get("p0.npy")).dims[0] > 0) {
        throw new SnapshotError(
          "snapshot has pending window samples; this JavaScript predictor takes no window. " +
            "Restore it in Python with the same window= setting as when it was taken.",
        );
      }
      const states = {};
      rec.states.forEach((name, k) => {
        const arr = arrays.get(`s0_${k}.npy`);
        if (!arr) throw new Error(`missing s0_${k}.npy`);
        states[name] = decodeNpy(arr);
      });
      let context = null;
      if (rec.context) {
        const arr = arrays.get("c0.npy");
        if (!arr) throw new Error("missing c0.npy");
        context = decodeNpy(arr);
      }
      return new Snapshot(String(header.contract_hash), states, Number(rec.frames_seen), context, rec.meta ?? {});
    } catch (exc) {
      if (exc instanceof SnapshotError) throw exc;
      throw new SnapshotError(`snapshot bytes are corrupt or not an edgeseq snapshot (${exc.message}); ${CORRUPT}`);
    }
  }
}

/**
 * Validate `snapshot` for a model: its contract hash, its states' names, shapes and dtypes
 * (`want`: `[{name, dims, dtype}]` in contract order) and its context shape (`contextDims`
 * or null). Returns `[states in contract order, context]` as fresh copies.
 */
export function checkSnapshot(snapshot, hash, want, contextDims) {
  if (!(snapshot instanceof Snapshot)) {
    throw new SnapshotError(`restore() expects a Snapshot (from snapshot()) or its bytes, got ${typeof snapshot}.`);
  }
  if (snapshot.contractHash !== hash) {
    throw new SnapshotError(
      `snapshot belongs to a model with contract ${snapshot.contractHash}; this model's contract is ` +
        `${hash}. Restore it on a predictor of the model that took it; no state was changed.`,
    );
  }
  const fmt = (rec) => `${rec.dtype} [${rec.dims.join(", ")}]`;
  const wanted = want.map((w) => `${w.name}: ${fmt(w)}`).join(", ");
  const got = Object.entries(snapshot.states)
    .map(([n, a]) => `${n}: ${fmt(a)}`)
    .join(", ");
  const same =
    Object.keys(snapshot.states).length === want.length &&
    want.every((w) => {
      const a = snapshot.states[w.name];
      return a && a.dtype === w.dtype && a.dims.length === w.dims.length && a.dims.every((d, k) => d === w.dims[k]);
    });
  if (!same) {
    throw new SnapshotError(
      `snapshot states {${got}} do not match the model's {${wanted}}; expected a snapshot of this ` +
        "model. No state was changed.",
    );
  }
  const states = want.map((w) => copy(snapshot.states[w.name]));
  if (states.some((s) => !s.data.every((v) => Number.isFinite(Number(v))))) {
    throw new SnapshotError("snapshot state contains NaN or Inf; refusing to load it. No state was changed.");
  }
  const ctx = snapshot.context;
  const ctxOk =
    (ctx === null) === (contextDims === null) &&
    (ctx === null || (ctx.dims.length === contextDims.length && ctx.dims.every((d, k) => d === contextDims[k])));
  if (!ctxOk) {
    throw new SnapshotError(
      `snapshot context ${ctx === null ? "None" : `[${ctx.dims.join(", ")}]`} does not match this ` +
        `predictor's context ${contextDims === null ? "None" : `[${contextDims.join(", ")}]`}; expected ` +
        "the same context setting as when it was taken.",
    );
  }
  return [states, ctx === null ? null : copy(ctx)];
}
