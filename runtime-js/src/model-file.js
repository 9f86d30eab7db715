/**
 * Model files: fetch or read their bytes, and read an ONNX file's metadata.
 *
 * onnxruntime's JavaScript API does not expose a model's custom metadata, so the contract
 * is read from the bytes directly: `ModelProto.metadata_props` (field 14, repeated
 * `{key: 1, value: 2}` string pairs) found by walking the protobuf's top-level fields.
 * ORT-format files (flatbuffers, for onnxruntime's minimal builds) keep their metadata
 * where this walk cannot see it; `edgeseq export --ort` writes `MODEL.contract.json`
 * beside them, which {@link loadSidecar} reads.
 */

import { ModelLoadError } from "./errors.js";

const METADATA_PROPS = 14;
const utf8 = new TextDecoder("utf-8", { fatal: false });

/** Uint8Array view of bytes given as Uint8Array, Buffer, ArrayBuffer or a typed array. */
export function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && data instanceof SharedArrayBuffer)) {
    return new Uint8Array(data);
  }
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/** True for an ORT-format (flatbuffer) model: file identifier "ORTM" at bytes 4..8. */
export function isOrtFormat(bytes) {
  return bytes.length >= 8 && utf8.decode(bytes.subarray(4, 8)) === "ORTM";
}

function varint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (let k = 0; k < 10; k++) {
    if (pos >= bytes.length) throw new RangeError("truncated varint");
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (!(b & 0x80)) return [value, pos];
    scale *= 128;
  }
  throw new RangeError("varint longer than 10 bytes");
}

/** Walk one protobuf message's fields: yields [field number, wire type, value or bytes]. */
function* fields(bytes) {
  let pos = 0;
  while (pos < bytes.length) {
    let tag;
    [tag, pos] = varint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw new RangeError("field number 0");
    if (wire === 0) {
      let v;
      [v, pos] = varint(bytes, pos);
      yield [field, wire, v];
    } else if (wire === 2) {
      let n;
      [n, pos] = varint(bytes, pos);
      if (pos + n > bytes.length) throw new RangeError(`field ${field} runs past the end`);
      yield [field, wire, bytes.subarray(pos, pos + n)];
      pos += n;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      if (pos > bytes.length) throw new RangeError("truncated fixed-width field");
    } else {
      throw new RangeError(`wire type ${wire}`);
    }
  }
}

/**
 * The `metadata_props` of an ONNX model as a plain object (key -> value), or `null` for
 * an ORT-format file. Throws `ModelLoadError` when the bytes are not an ONNX model.
 */
export function readMetadata(bytes, what = "model bytes") {
  if (isOrtFormat(bytes)) return null;
  const props = {};
  let sawGraph = false;
  try {
    for (const [field, wire, value] of fields(bytes)) {
      if (field === 7 && wire === 2) sawGraph = true;
      if (field !== METADATA_PROPS || wire !== 2) continue;
      let key = "";
      let val = "";
      for (const [f, w, v] of fields(value)) {
        if (w !== 2) continue;
        if (f === 1) key = utf8.decode(v);
        else if (f === 2) val = utf8.decode(v);
      }
      props[key] = val;
    }
  } catch (exc) {
    throw new ModelLoadError(
      `${what} is not an ONNX model (its protobuf ${exc.message}); expected a complete .onnx ` +
        "or .ort file. The file may be truncated or not a model: re-export it.",
    );
  }
  if (!sawGraph) {
    throw new ModelLoadError(
      `${what} holds no ONNX graph; expected a complete .onnx or .ort file. The file may be ` +
        "truncated or not a model: re-export it.",
    );
  }
  return props;
}

const IN_NODE = typeof process !== "undefined" && Boolean(process.versions?.node);
// in a browser every reference is a URL; in Node, http(s) URLs are fetched, the rest are files
const fetched = (ref) => !IN_NODE || /^https?:\/\//i.test(ref);

/**
 * The bytes of `source`: a URL (fetched), a file path (Node), or bytes (returned as is).
 * Throws `ModelLoadError` naming what could not be read.
 */
export async function readSource(source, what = "model") {
  const direct = asBytes(source);
  if (direct) {
    if (!direct.length) throw new ModelLoadError(`${what} bytes are empty: expected a serialized ONNX model.`);
    return direct;
  }
  const ref = source instanceof URL ? source.href : source;
  if (typeof ref !== "string" || !ref) {
    throw new ModelLoadError(
      `${what}: expected bytes (Uint8Array/ArrayBuffer), a URL or a file path, got ${ref === null ? "null" : typeof ref}.`,
    );
  }
  if (fetched(ref)) {
    let res;
    try {
      res = await fetch(ref);
    } catch (exc) {
      throw new ModelLoadError(`could not fetch ${what} ${ref} (${exc.message}); check the URL and the server.`);
    }
    if (!res.ok) {
      throw new ModelLoadError(
        `could not fetch ${what} ${ref}: HTTP ${res.status} ${res.statusText}; expected 200. Check the URL.`,
      );
    }
    return new Uint8Array(await res.arrayBuffer());
  }
  const { readFile } = await import("node:fs/promises");
  const path = ref.startsWith("file:") ? new URL(ref) : ref;
  try {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (exc) {
    const hint = exc.code === "ENOENT" ? "does not exist. Check the path, or export one with `edgeseq export`" : exc.message;
    throw new ModelLoadError(`${what} file '${ref}' ${hint}.`);
  }
}

/** Where `edgeseq` writes a model's contract beside it: `x.onnx`/`x.ort` -> `x.contract.json`. */
export function sidecarOf(ref) {
  const href = ref instanceof URL ? ref.href : String(ref);
  const [, path, query] = /^([^?#]*)(.*)$/s.exec(href);
  const stem = path.replace(/\.(onnx|ort)$/i, "");
  return `${stem}.contract.json${query}`;
}

/** The text of `MODEL.contract.json` beside a model, or null when there is none. */
export async function loadSidecar(ref) {
  if (typeof ref !== "string" && !(ref instanceof URL)) return null;
  try {
    const bytes = await readSource(sidecarOf(ref), "contract");
    return utf8.decode(bytes);
  } catch (exc) {
    if (exc instanceof ModelLoadError) return null;
    throw exc;
  }
}
