#!/usr/bin/env node
// edgeseq-stream: `edgeseq stream` in Node.js. Frames in (a CSV file or stdin), one output
// line per frame out, as they come; the same lines the Python command prints.
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { StreamingPredictor, EdgeseqError } from "../src/index.js";
import { formatLine, parseFrame } from "../src/stream-lines.js";

const HELP = `Usage: edgeseq-stream MODEL [-i FILE] [-d DELIMITER] [--format csv|json] [--contract FILE]

  Stream frames through MODEL, printing one output line per frame as it arrives.

  Each input line is one frame: its feature values separated by the delimiter (a
  header line and lines starting with # are skipped). The model's state is carried
  from line to line, so this works at the end of a live pipe.

Options:
  -i, --input FILE      CSV file of frames, one per line ('-' reads stdin)  [default: -]
  -d, --delimiter TEXT  Field separator  [default: ,]
  --format csv|json     Output line format  [default: csv]
  --contract FILE       The model's contract.json (for .ort files without one beside them)
  -h, --help            Show this message and exit.

Examples:
  edgeseq-stream model.onnx -i held_out.csv
  tail -f /var/log/imu.csv | edgeseq-stream model.onnx --format json`;

class UsageError extends Error {}

const oneLine = (msg) => String(msg).split(/\s+/).filter(Boolean).join(" ");

// `edgeseq-stream ... | head`: a closed pipe ends the stream quietly
process.stdout.on("error", (exc) => {
  if (exc.code !== "EPIPE") throw exc;
  process.exit(0);
});

async function main(argv) {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        input: { type: "string", short: "i", default: "-" },
        delimiter: { type: "string", short: "d", default: "," },
        format: { type: "string", default: "csv" },
        contract: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (exc) {
    throw new UsageError(exc.message);
  }
  const { values, positionals } = args;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one MODEL argument, got ${positionals.length}`);
  if (!["csv", "json"].includes(values.format)) {
    throw new UsageError(`Invalid value for '--format': '${values.format}' is not one of 'csv', 'json'.`);
  }
  const ort = await import("onnxruntime-node").catch(() => {
    throw new EdgeseqError("edgeseq-stream needs onnxruntime-node: npm install onnxruntime-node");
  });
  ort.env.logLevel = "fatal";
  const predictor = await StreamingPredictor.create(positionals[0], {
    ort,
    contract: values.contract,
    sessionOptions: { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 4 },
  });
  const labels = predictor.contract.model.labels;
  const source = values.input === "-" ? process.stdin : createReadStream(values.input);
  await new Promise((ok, fail) => {
    source.once("open", ok);
    source.once("error", fail);
    if (source === process.stdin) ok();
  }).catch((exc) => {
    throw new EdgeseqError(`Invalid value for '-i' / '--input': '${values.input}': ${exc.code === "ENOENT" ? "No such file or directory" : exc.message}`);
  });
  let lineno = 0;
  let n = 0;
  for await (const line of createInterface({ input: source, crlfDelay: Infinity })) {
    lineno += 1;
    const frame = parseFrame(line, values.delimiter, lineno);
    if (frame === null) continue;
    const y = await predictor.step(frame);
    n += 1;
    const out = y.data !== undefined ? y : Object.values(y)[0];
    process.stdout.write(`${formatLine(out.data, n, { labels, delimiter: values.delimiter, format: values.format })}\n`);
  }
  process.stderr.write(`# ${n} frames streamed\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (exc) => {
    if (exc instanceof UsageError) {
      process.stderr.write(`Usage: edgeseq-stream MODEL [OPTIONS]\nTry 'edgeseq-stream -h' for help.\n\nError: ${exc.message}\n`);
      process.exitCode = 2;
    } else if (exc instanceof EdgeseqError) {
      process.stderr.write(`Error: ${oneLine(exc.message)}\n`);
      process.exitCode = 1;
    } else {
      throw exc;
    }
  },
);
