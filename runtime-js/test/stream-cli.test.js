// bin/edgeseq-stream.js prints what `edgeseq stream` prints: the same stdout, stderr and
// exit code for CSV and JSON output, labels, another delimiter, a header, comments,
// blank lines, ties in rounding, a malformed line and a NaN.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { ROOT, fixture, fixtures } from "./helpers.js";

const BIN = join(ROOT, "bin", "edgeseq-stream.js");

function run(args, input = null) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ stdout, stderr, code }));
    child.stdin.end(input ?? "");
  });
}

for (const c of fixtures().stream_cli) {
  test(`edgeseq-stream ${c.model} -i ${c.csv} ${c.args.join(" ")} prints what Python prints`, async () => {
    const res = await run([fixture(c.model), "-i", fixture(c.csv), ...c.args]);
    assert.equal(res.stdout, c.stdout);
    assert.equal(res.stderr, c.stderr);
    assert.equal(res.code, c.exit_code);
  });
}

test("reads stdin when no file is given (the end of a pipe)", async () => {
  const c = fixtures().stream_cli[0];
  const res = await run([fixture(c.model)], readFileSync(fixture(c.csv)));
  assert.equal(res.stdout, c.stdout);
  assert.equal(res.code, 0);
});

test("usage errors exit 2; a missing model exits 1 with one line", async () => {
  const usage = await run(["--format", "xml", fixture("lstm-native.onnx")]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /Error: Invalid value for '--format': 'xml' is not one of 'csv', 'json'/);
  const missing = await run([fixture("nope.onnx"), "-i", fixture("frames.csv")]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^Error: model file '.*nope.onnx' does not exist/);
  assert.equal(missing.stderr.trim().split("\n").length, 1);
});
