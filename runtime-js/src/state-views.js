/**
 * States as the user sees them, and as the graph carries them. A graph may carry one
 * state in parts (one pair per layer, the contract's `part_of`); `predictor.state` shows
 * each such state whole, stacked on axis 0, and `setState` takes it whole (or every pair
 * by its input name) and cuts it back into the pairs' batch-1 tensors. The JavaScript
 * side of the state views in `runtime/_views.py`.
 */

import { InputError } from "./errors.js";
import { ARRAY_OF, batchOne, size } from "./tensor.js";

/**
 * The pairs' batch-1 `tensors` (in `pairs` order) as one ort.Tensor per view, by view
 * name: a state in parts comes back whole, e.g. `[layers, 1, hidden]`.
 */
export function joinStates(ort, pairs, views, tensors) {
  return Object.fromEntries(
    views.map((v) => {
      const parts = v.pairs.map((k) => tensors[k]);
      const dims = parts.length === 1 ? [...parts[0].dims] : batchOne(v.shape);
      const data = new (ARRAY_OF[pairs[v.pairs[0]].dtype])(size(dims));
      let at = 0;
      for (const t of parts) {
        data.set(t.data, at); // batch-1 parts stack on axis 0: their data in order
        at += t.data.length;
      }
      return [v.name, new ort.Tensor(pairs[v.pairs[0]].dtype, data, dims)];
    }),
  );
}

/**
 * The pairs' batch-1 tensors (in `pairs` order) of `states`: every view in `shown` by
 * its name, or every pair by its input name, each `{data, dims}` of the batch-1 shape.
 * Throws InputError (and returns nothing) if any is missing, misshapen or not finite.
 */
export function splitStates(ort, pairs, shown, states) {
  const given = states && typeof states === "object" ? Object.keys(states) : null;
  const same = (names) => given && given.length === names.length && names.every((n) => given.includes(n));
  let views = shown;
  if (!same(views.map((v) => v.name)) && same(pairs.map((p) => p.input))) {
    views = pairs.map((p, k) => ({ name: p.input, pairs: [k], shape: p.shape }));
  }
  const names = views.map((v) => v.name);
  if (!same(names)) {
    throw new InputError(
      `setState needs exactly the states ${JSON.stringify([...names].sort())}; got ` +
        `${given ? JSON.stringify([...given].sort()) : typeof states}. Pass an object like predictor.state.`,
    );
  }
  const next = new Array(pairs.length);
  for (const v of views) {
    const want = batchOne(v.shape);
    const { data, dims } = states[v.name] ?? {};
    const ok = ArrayBuffer.isView(data) && /Float/.test(data.constructor.name) && Array.isArray(dims) &&
      dims.length === want.length && dims.every((d, k) => d === want[k]) && data.length === size(want);
    if (!ok) {
      throw new InputError(
        `state '${v.name}': expected a float array of shape [${want.join(", ")}], got ` +
          `${data?.constructor?.name ?? typeof data} [${Array.isArray(dims) ? dims.join(", ") : "?"}]. ` +
          "Pass batch-1 state as predictor.state has it.",
      );
    }
    if (!data.every(Number.isFinite)) {
      throw new InputError(`state '${v.name}' contains NaN or Inf; expected finite values. Nothing was changed.`);
    }
    let at = 0;
    for (const k of v.pairs) {
      const p = pairs[k];
      const part = v.pairs.length === 1 ? want : batchOne(p.shape);
      const n = size(part);
      next[k] = new ort.Tensor(p.dtype, ARRAY_OF[p.dtype].from(data.subarray(at, at + n)), part);
      at += n;
    }
  }
  return next;
}
