// Runs before `npm test`: Python exports the test models and records what its own runtime
// makes of them (tests/js_fixtures.py), in this same test run. EDGESEQ_PYTHON picks the
// interpreter (default: the repository's .venv, then python3).
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { FIXTURES, PYTHON, REPO } from "./helpers.js";

rmSync(FIXTURES, { recursive: true, force: true });
const started = Date.now();
const res = spawnSync(PYTHON, [`${REPO}/tests/js_fixtures.py`, "write", FIXTURES], { stdio: "inherit" });
if (res.error || res.status !== 0) {
  console.error(`fixture writer failed (${res.error?.message ?? `exit ${res.status}`}) with ${PYTHON}; ` +
    "set EDGESEQ_PYTHON to an interpreter with edgeseq[torch] installed (make install does).");
  process.exit(1);
}
console.log(`fixtures written by ${PYTHON} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
