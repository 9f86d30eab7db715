/**
 * Row-major arrays as `{data, dims}` (the fields onnxruntime's Tensor has): typed-array
 * constructors per dtype, and slicing, joining and dropping axes without copies where
 * a view will do.
 */

/** The typed array class onnxruntime uses for each contract dtype (float16: none here). */
export const ARRAY_OF = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};

export const size = (dims) => dims.reduce((a, b) => a * b, 1);

/** `a[..., start:stop, ...]` along `axis`: a view when the axis is the outermost one. */
export function sliceAxis(a, axis, start, stop) {
  const { data, dims } = a;
  const inner = size(dims.slice(axis + 1));
  const outer = size(dims.slice(0, axis));
  const len = dims[axis];
  const out = dims.slice();
  out[axis] = stop - start;
  if (outer === 1) return { data: data.subarray(start * inner, stop * inner), dims: out };
  const res = new data.constructor(outer * (stop - start) * inner);
  for (let o = 0; o < outer; o++) {
    res.set(data.subarray((o * len + start) * inner, (o * len + stop) * inner), o * (stop - start) * inner);
  }
  return { data: res, dims: out };
}

/** Join arrays along `axis` (all other dims equal). */
export function concatAxis(parts, axis) {
  if (parts.length === 1) return parts[0];
  const dims = parts[0].dims.slice();
  dims[axis] = parts.reduce((n, p) => n + p.dims[axis], 0);
  const inner = size(dims.slice(axis + 1));
  const outer = size(dims.slice(0, axis));
  const res = new parts[0].data.constructor(size(dims));
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const n = p.dims[axis] * inner;
      res.set(p.data.subarray(o * n, (o + 1) * n), at);
      at += n;
    }
  }
  return { data: res, dims };
}

/** Index 0 of `axis` (a length-1 axis, such as batch 1): same data, one dim fewer. */
export function dropAxis(a, axis) {
  if (a.dims[axis] === 1) return { data: a.data, dims: a.dims.filter((_, k) => k !== axis) };
  return dropAxis(sliceAxis(a, axis, 0, 1), axis);
}

/** Concrete dims for `shape` with every symbolic axis (batch) set to 1. */
export const batchOne = (shape) => shape.map((d) => (typeof d === "string" ? 1 : d));
