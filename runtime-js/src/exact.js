/**
 * Integers a float dtype holds exactly: integer frames must reach the model unchanged.
 * The JavaScript side of `edgeseq/exact.py`, with the same rule and the same messages.
 *
 * A float32 holds every integer up to 2**24 exactly (a float64 up to 2**53); beyond that
 * a cast rounds some of them (16777217 becomes 16777216). Integer frames — integer typed
 * arrays (Int32Array, BigInt64Array, ...) and BigInt values — fed to a float model are
 * refused when the cast would change a value. Plain JavaScript numbers are float64 by
 * the language, like Python floats: they keep their usual rounding.
 */

import { pyFloatRepr } from "./pyjson.js";

/** The largest n such that the dtype holds every integer in [-n, n] exactly. */
export const LARGEST_EXACT = { float32: 2 ** 24, float64: 2 ** 53 };

/** `every integer up to ±16777216 = 2**24` for float32. */
export function inexactBound(dtype) {
  const limit = LARGEST_EXACT[dtype];
  return `every integer up to ±${limit} = 2**${Math.log2(limit)}`;
}

const floatRepr = (x) => (Number.isFinite(x) ? pyFloatRepr(x) : x > 0 ? "inf" : x < 0 ? "-inf" : "nan");

/** What happens to `value` and what to do: the tail every refusal shares. */
export function inexactProblem(value, becomes, dtype, floats = "") {
  const how = floats || `float frames (e.g. np.${dtype})`;
  return (
    `the cast to ${dtype} changes to ${floatRepr(becomes)}, so the model would see another number. ` +
    "Scale the feature (subtract an offset, divide by a unit) so its values stay within " +
    `±${LARGEST_EXACT[dtype]}, or pass ${how} to accept the rounding`
  );
}

/** What integer `v` (a number or a BigInt) becomes in `dtype`, or null if it stays exact. */
export function castChanges(v, dtype) {
  const x = Number(v);
  const becomes = dtype === "float32" ? Math.fround(x) : x;
  if (typeof v === "bigint") return Number.isFinite(becomes) && BigInt(becomes) === v ? null : becomes;
  return becomes === v ? null : becomes;
}
