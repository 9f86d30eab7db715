// The signal page: stream frames (a CSV, or a synthetic signal) through an edgeseq model
// one at a time with onnxruntime-web, and plot inputs and outputs live.
//
// Query parameters: model=URL, frames=CSV URL, fps=N (0: as fast as possible), auto=1
// (start at once), max=N (stop after N frames), window=N (frames on the chart).
// window.edgeseq holds what a test reads: outputs, latencies (s), done, error.
import { StreamingPredictor } from "edgeseq-runtime";
import { CsvFrames, FrameLayout } from "../src/csv-frames.js";
import { $, fmtTime, param, showError, webOrt } from "./common.js";
import { StripChart } from "./plot.js";

const ort = webOrt();
window.edgeseq = { outputs: [], latencies: [], done: false, error: null };
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

let predictor = null;
let running = false;
let snapshot = null;

async function loadModel() {
  const file = $("model-file").files[0];
  const source = file ? new Uint8Array(await file.arrayBuffer()) : $("model-url").value.trim();
  if (!source) throw new Error("choose a model: an .onnx URL or a file exported by `edgeseq export`");
  return StreamingPredictor.create(source, { ort });
}

async function loadFrames(p) {
  const F = p.frameSpec.size;
  const file = $("frames-file").files[0];
  const url = $("frames-url").value.trim();
  if (!file && !url) return synthetic(F);
  const text = file ? await file.text() : await (await fetch(url)).text();
  const frames = [];
  const csv = new CsvFrames(FrameLayout.of(p)); // the rules and messages of `edgeseq stream`
  text.split("\n").forEach((line, k) => {
    const item = csv.read(line, k + 1);
    if (item === null) return;
    if (item.values === undefined) throw new Error(`${item.where}: ${item.problem}`);
    frames.push(item.values);
  });
  return frames.values();
}

function* synthetic(F) {
  // F channels of slow sines at different rates, a drift and a little noise
  for (let t = 0; ; t++) {
    yield Array.from({ length: F }, (_, c) => Math.sin((2 * Math.PI * t) / (40 + 17 * c)) + 0.3 * Math.sin(t / 300) + 0.05 * (Math.random() - 0.5));
  }
}

function describe(p) {
  const m = p.contract.model;
  $("facts").textContent = `${m.cell} · ${m.mode}${m.chunk ? ` (chunk ${m.chunk})` : ""} · ${m.topology}`;
  $("states").textContent = p.contract.states.map((s) => `${s.input.replace(/^state_in\./, "")} [${s.shape.join("×")}]`).join(", ") || "none";
  p.contract.hash().then((h) => ($("hash").textContent = h), () => ($("hash").textContent = "(no WebCrypto)"));
}

async function run() {
  $("error").hidden = true;
  $("start").disabled = true;
  try {
    predictor ??= await loadModel();
    const p = predictor;
    if (p.frameSpec.isInt) throw new Error("this model takes token ids: open text.html to generate text with it");
    describe(p);
    const F = p.frameSpec.size;
    const spec = p.dataOutputs[0];
    const labels = p.contract.model.labels;
    const outNames = labels ?? Array.from({ length: spec.shape.at(-1) }, (_, k) => `${spec.name}[${k}]`);
    const chart = new StripChart($("chart"), [
      { title: `frames in (${F} features)`, channels: Array.from({ length: F }, (_, k) => `x[${k}]`) },
      { title: `outputs (${outNames.length})`, channels: outNames },
    ], param("window", 300));
    $("legend-in").innerHTML = escape("in: ") + chart.legend(0);
    $("legend-out").innerHTML = escape("out: ") + chart.legend(1);
    window.edgeseq.chart = chart;
    const frames = await loadFrames(p);
    const fps = Number($("fps").value);
    const max = param("max", 0);
    running = true;
    for (const b of ["pause", "reset", "snap", "restore"]) $(b).disabled = false;
    let next = performance.now();
    for (const frame of frames) {
      if (!running) break;
      const t0 = performance.now();
      const y = await p.step(frame);
      const dt = (performance.now() - t0) / 1000;
      const values = y.data ?? Object.values(y)[0].data;
      window.edgeseq.outputs.push(Array.from(values, Number));
      window.edgeseq.latencies.push(dt);
      chart.push([frame, values]);
      const n = window.edgeseq.outputs.length;
      $("count").textContent = n.toLocaleString();
      if (labels) $("now").textContent = labels[values.indexOf(Math.max(...values))];
      else $("now").textContent = Array.from(values, (v) => v.toFixed(3)).join(", ");
      if (n % 10 === 0 || n < 10) {
        const last = window.edgeseq.latencies.slice(-100);
        $("latency").textContent = fmtTime(last.reduce((a, b) => a + b, 0) / last.length);
      }
      if (max && n >= max) break;
      if (fps > 0) {
        next += 1000 / fps;
        await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
      } else if (n % 25 === 0) {
        await new Promise((r) => setTimeout(r)); // let the page paint
      }
    }
    chart.draw();
  } catch (exc) {
    showError(exc);
  } finally {
    running = false;
    $("start").disabled = false;
    $("pause").disabled = true;
    window.edgeseq.done = true;
  }
}

$("start").onclick = run;
$("pause").onclick = () => (running = false);
$("reset").onclick = () => {
  predictor?.reset();
  window.edgeseq.chart?.clear();
};
$("snap").onclick = () => {
  try {
    snapshot = predictor.snapshot();
    const blob = new Blob([snapshot.toBytes()], { type: "application/octet-stream" });
    const a = $("snap-link");
    a.href = URL.createObjectURL(blob);
    a.download = `stream-${predictor.framesSeen}.snap`;
    a.textContent = `download snapshot (frame ${predictor.framesSeen})`;
    a.hidden = false;
  } catch (exc) {
    showError(exc);
  }
};
$("restore").onclick = () => {
  try {
    if (snapshot) predictor.restore(snapshot);
  } catch (exc) {
    showError(exc);
  }
};

$("model-url").value = param("model", "");
$("frames-url").value = param("frames", "");
$("fps").value = param("fps", 30);
if (param("auto", false)) run();
