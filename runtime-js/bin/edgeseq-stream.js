#!/usr/bin/env node
// edgeseq-stream: `edgeseq stream` in Node.js. Frames in (a CSV file or stdin), one output
// line per frame out, as they come; the same lines the Python command prints.
import { createReadStream } from "node:fs";
import { parseArgs } from "node:util";

import { StreamingPredictor, EdgeseqError, InputError } from "../src/index.js";
import { CsvFrames, FrameLayout, byteLines } from "../src/csv-frames.js";
import { formatLine } from "../src/stream-lines.js";

const HELP = `Usage: edgeseq-stream MODEL [-i FILE] [-d DELIMITER] [--columns A,B] [--on-error stop|skip]
                      [--format csv|json] [--contract FILE]

  Stream frames through MODEL, printing one output line per frame as it arrives.

  Each input line is one frame: its feature values separated by the delimiter. Blank
  lines and lines starting with # are skipped; a first line of names is a header.
  Every other line must be a frame: a line that is not (an empty or non-numeric value,
  the wrong count, NaN) stops the stream with its line number, or is reported and
  skipped with --on-error skip. The model's state is carried from line to line, so
  this works at the end of a live pipe.

Options:
  -i, --input FILE      CSV file of frames, one per line ('-' reads stdin)  [default: -]
  -d, --delimiter TEXT  Field separator  [default: ,]
  --columns A,B         Columns to feed, in the model's feature order: header names or
                        1-based positions. Default: the feature names recorded at train
                        time when the input has a header, else every column.
  --on-error stop|skip  A bad line: stop with its line number, or report it and go on
                        [default: stop]
  --format csv|json     Output line format  [default: csv]
  --contract FILE       The model's contract.json (for .ort files without one beside them)
  -h, --help            Show this message and exit.

Examples:
  edgeseq-stream model.onnx -i held_out.csv
  tail -f /var/log/imu.csv | edgeseq-stream model.onnx --on-error skip --format json`;

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
        columns: { type: "string", default: "" },
        "on-error": { type: "string", default: "stop" },
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
  if (!["stop", "skip"].includes(values["on-error"])) {
    throw new UsageError(`Invalid value for '--on-error': '${values["on-error"]}' is not one of 'stop', 'skip'.`);
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
  const csv = new CsvFrames(FrameLayout.of(predictor), {
    delimiter: values.delimiter,
    columns: values.columns.split(",").filter((c) => c.trim()),
  });
  const source = values.input === "-" ? process.stdin : createReadStream(values.input);
  await new Promise((ok, fail) => {
    source.once("open", ok);
    source.once("error", fail);
    if (source === process.stdin) ok();
  }).catch((exc) => {
    throw new EdgeseqError(
      exc.code === "ENOENT"
        ? `input file '${values.input}' does not exist; expected a CSV file of frames, or '-' to read stdin`
        : `cannot read input file '${values.input}': ${exc.message}`,
    );
  });
  let lineno = 0;
  let n = 0;
  let skipped = 0;
  for await (const line of byteLines(source)) {
    lineno += 1;
    let item = csv.read(line, lineno);
    if (item === null) continue;
    if (item.values !== undefined) {
      try {
        const y = await predictor.step(item.values);
        n += 1;
        const out = y.data !== undefined ? y : Object.values(y)[0];
        process.stdout.write(`${formatLine(out.data, n, { labels, delimiter: values.delimiter, format: values.format })}\n`);
        continue;
      } catch (exc) {
        if (!(exc instanceof InputError)) throw exc;
        item = { where: item.where, problem: exc.message }; // refused; the state is unchanged
      }
    }
    if (values["on-error"] === "stop") {
      throw new InputError(`${item.where}: ${item.problem} (--on-error skip reports bad lines and goes on)`);
    }
    skipped += 1;
    process.stderr.write(`# skipped ${item.where}: ${item.problem}\n`);
  }
  const bad = skipped ? `, ${skipped} bad line${skipped === 1 ? "" : "s"} skipped` : "";
  process.stderr.write(`# ${n} frame${n === 1 ? "" : "s"} streamed${bad}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (exc) => {
    if (exc instanceof UsageError) {
      process.stderr.write(`Error: ${oneLine(exc.message)} (see: edgeseq-stream --help)\n`);
      process.exitCode = 2;
    } else if (exc instanceof EdgeseqError) {
      process.stderr.write(`Error: ${oneLine(exc.message)}\n`);
      process.exitCode = 1;
    } else {
      throw exc;
    }
  },
);
