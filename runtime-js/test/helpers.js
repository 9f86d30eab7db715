// Shared by the tests: where the fixtures are, Python's interpreter, comparisons.
import { existsSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = resolve(ROOT, "..");
export const FIXTURES = process.env.EDGESEQ_JS_FIXTURES ?? join(ROOT, "test", "fixtures");
export const ARTIFACTS = process.env.EDGESEQ_JS_ARTIFACTS ?? join(ROOT, "test-artifacts");
const venv = join(REPO, ".venv", "bin", "python");
export const PYTHON = process.env.EDGESEQ_PYTHON ?? (existsSync(venv) ? venv : "python3");
export const TOL = 1e-5;

let manifest;
/** The manifest Python wrote (see tests/js_fixtures.py); fails clearly when missing. */
export function fixtures() {
  const path = join(FIXTURES, "manifest.json");
  if (!existsSync(path)) {
    throw new Error(`no fixtures at ${path}: run \`npm test\` (its pretest writes them) or node test/make-fixtures.mjs`);
  }
  manifest ??= JSON.parse(readFileSync(path, "utf8"));
  return manifest;
}

export const fixture = (name) => join(FIXTURES, name);

/** Max |a - b| over two equal-length sequences; asserts the lengths match. */
export function maxDiff(a, b, what = "") {
  assert.equal(a.length, b.length, `${what}: ${a.length} values, expected ${b.length}`);
  let d = 0;
  for (let k = 0; k < a.length; k++) d = Math.max(d, Math.abs(Number(a[k]) - b[k]));
  return d;
}

export function assertClose(a, b, what, tol = TOL) {
  const d = maxDiff(a, b, what);
  assert.ok(d <= tol, `${what}: max |JS - Python| = ${d}, expected <= ${tol}`);
  return d;
}

/** Run Python with `args`; returns stdout, throws with stderr on failure. */
export function python(args) {
  const res = spawnSync(PYTHON, args, { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`${PYTHON} ${args.join(" ")} failed: ${res.stderr || res.error}`);
  return res.stdout;
}

/** Frames of a parity case fed `chunk` frames per call: [flat values, count] per call. */
export function calls(c, chunk) {
  const per = c.frame_shape.reduce((a, b) => a * b, 1);
  const total = c.frames.length / per;
  const out = [];
  for (let t = 0; t < total; t += chunk) {
    const n = Math.min(chunk, total - t);
    out.push(Float32Array.from(c.frames.slice(t * per, (t + n) * per)));
  }
  return out;
}
