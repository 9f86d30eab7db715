// The text page: generate characters from a character model (the contract carries its
// vocabulary), showing each one as soon as it is sampled.
//
// Query parameters: model=URL, prompt, temperature, topk, topp, seed, max, stop, auto=1.
// window.edgeseq holds what a test reads: text, done, error.
import { StreamingPredictor } from "edgeseq-runtime";
import { $, fmtTime, param, showError, webOrt } from "./common.js";

const ort = webOrt();
window.edgeseq = { text: "", done: false, error: null };
let predictor = null;
let loadedFrom = null;
let halted = false;

async function model() {
  const file = $("model-file").files[0];
  const key = file ? `file:${file.name}:${file.size}` : $("model-url").value.trim();
  if (!key) throw new Error("choose a character model: an .onnx URL or a file exported by `edgeseq export`");
  if (predictor && loadedFrom === key) return predictor;
  const source = file ? new Uint8Array(await file.arrayBuffer()) : key;
  predictor = await StreamingPredictor.create(source, { ort });
  loadedFrom = key;
  const m = predictor.contract.model;
  $("facts").textContent = `${m.cell} · ${m.layers ?? "?"}×${m.hidden_size ?? "?"} · ${m.mode}`;
  $("vocab").textContent = `${predictor.contract.preprocessing.vocab?.length ?? 0} tokens`;
  return predictor;
}

const unescape = (s) => s.replace(/\\n/g, "\n").replace(/\\t/g, "\t");

async function generate() {
  $("error").hidden = true;
  $("go").disabled = true;
  $("halt").disabled = false;
  halted = false;
  window.edgeseq.done = false;
  const out = $("out");
  try {
    const p = await model();
    const prompt = $("prompt").value;
    out.innerHTML = "";
    const shown = document.createElement("span");
    shown.className = "prompt";
    shown.textContent = prompt;
    const text = document.createTextNode("");
    const cursor = document.createElement("span");
    cursor.className = "cursor";
    cursor.innerHTML = "&nbsp;";
    out.append(shown, text, cursor);
    const seed = $("seed").value === "" ? null : BigInt($("seed").value);
    const stop = $("stop").value ? [unescape($("stop").value)] : null;
    const options = {
      maxTokens: Number($("max").value),
      temperature: Number($("temperature").value),
      topK: Number($("top-k").value) || null,
      topP: Number($("top-p").value) < 1 ? Number($("top-p").value) : null,
      seed,
      stop,
    };
    let n = 0;
    let generated = "";
    const t0 = performance.now();
    for await (const piece of p.generate(prompt, options)) {
      if (halted) break;
      generated += piece;
      text.data = generated;
      n += 1;
      $("count").textContent = String(n);
      $("latency").textContent = fmtTime((performance.now() - t0) / 1000 / n);
      window.edgeseq.text = generated;
      await new Promise((r) => setTimeout(r)); // let the page paint this character
    }
    cursor.remove();
  } catch (exc) {
    showError(exc);
  } finally {
    $("go").disabled = false;
    $("halt").disabled = true;
    window.edgeseq.done = true;
  }
}

$("go").onclick = generate;
$("halt").onclick = () => (halted = true);
$("model-url").value = param("model", "");
$("prompt").value = param("prompt", "The ");
$("temperature").value = param("temperature", 0.8);
$("top-k").value = param("topk", 0);
$("top-p").value = param("topp", 1);
$("seed").value = param("seed", "");
$("max").value = param("max", 400);
$("stop").value = param("stop", "");
if (param("auto", false)) generate();
