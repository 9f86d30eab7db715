/**
 * A call's outputs as the user gets them, as `runtime/_engine.py` assembles them: the
 * pieces of a split call joined along time, left context and padding dropped, the batch
 * axis (and a single frame's time axis) removed, and the contract's output scaling applied
 * to the first output.
 */

import { concatAxis, dropAxis, sliceAxis } from "./tensor.js";

export class Outputs {
  /**
   * @param ort onnxruntime's module (for its Tensor)
   * @param specs the contract's data outputs (`{name, dtype, batch_axis, time_axis}`)
   * @param preprocessing the contract's preprocessing (`out_mean`, `out_std`)
   * @param contextFrames left-context frames prepended to every call
   */
  constructor(ort, specs, preprocessing, contextFrames) {
    this.ort = ort;
    this.specs = specs;
    this.contextFrames = contextFrames;
    this.outStd = preprocessing.out_std ? Float32Array.from(preprocessing.out_std) : null;
    this.outMean = preprocessing.out_mean ? Float32Array.from(preprocessing.out_mean) : null;
  }

  /**
   * `pieces`: `[{outs: [ort.Tensor per data output], n: new frames, tIn: frames fed}]`.
   * Returns one ort.Tensor, or an object of them by name for several outputs.
   */
  assemble(pieces, single) {
    if (this._plain(pieces)) {
      // the per-frame hot path: one call, one (batch, time, ...) output, nothing to trim
      const [spec] = this.specs;
      const out = pieces[0].outs[0];
      const dims = out.dims.slice(single ? 2 : 1);
      const data = out.data instanceof BigInt64Array ? out.data : this.postprocess(out.data, dims);
      return new this.ort.Tensor(spec.dtype, data, dims);
    }
    const N = this.contextFrames;
    const result = {};
    this.specs.forEach((spec, i) => {
      const t = spec.time_axis;
      let arr;
      if (t === null) {
        const last = pieces[pieces.length - 1].outs[i]; // the call that held the last frame
        arr = { data: last.data, dims: [...last.dims] };
      } else {
        const parts = pieces.map(({ outs, n, tIn }) => {
          const a = { data: outs[i].data, dims: [...outs[i].dims] };
          return a.dims[t] === tIn && (N || tIn !== n) ? sliceAxis(a, t, N, N + n) : a;
        });
        arr = concatAxis(parts, t);
      }
      if (single && t !== null) arr = dropAxis(arr, t);
      const b = spec.batch_axis;
      if (b !== null) arr = dropAxis(arr, b - (single && t !== null && t < b ? 1 : 0));
      // onnxruntime's output buffers are fresh per call: a view of one needs no copy
      let data = arr.data;
      if (i === 0 && !(data instanceof BigInt64Array)) data = this.postprocess(data, arr.dims);
      result[spec.name] = new this.ort.Tensor(spec.dtype, data, arr.dims);
    });
    const names = Object.keys(result);
    return names.length === 1 ? result[names[0]] : result;
  }

  _plain(pieces) {
    if (pieces.length !== 1 || this.contextFrames || this.specs.length !== 1) return false;
    const { batch_axis: b, time_axis: t } = this.specs[0];
    const { outs, n, tIn } = pieces[0];
    return b === 0 && t === 1 && tIn === n && outs[0].dims[0] === 1 && outs[0].dims[1] === n;
  }

  /** `y * out_std + out_mean` in float32 (as numpy does), over the last axis, in place. */
  postprocess(y, dims) {
    if (!this.outStd && !this.outMean) return y;
    const last = dims.at(-1) ?? 1;
    for (let k = 0; k < y.length; k++) {
      const f = k % last;
      let v = y[k];
      if (this.outStd) v = Math.fround(v * this.outStd[this.outStd.length === 1 ? 0 : f]);
      if (this.outMean) v = Math.fround(v + this.outMean[this.outMean.length === 1 ? 0 : f]);
      y[k] = v;
    }
    return y;
  }
}
