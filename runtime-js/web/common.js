// Shared by the pages: onnxruntime-web on WASM with one thread, query parameters, numbers.
import * as ort from "onnxruntime-web";

/** onnxruntime-web configured for this page: WASM, one thread, files from node_modules. */
export function webOrt() {
  ort.env.wasm.numThreads = 1; // no SharedArrayBuffer needed: works on any static server
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("../node_modules/onnxruntime-web/dist/", import.meta.url).href;
  ort.env.logLevel = "error";
  return ort;
}

/** The page's query parameters with defaults: `param("fps", 30)` keeps the default's type. */
export function param(name, fallback) {
  const v = new URLSearchParams(location.search).get(name);
  if (v === null) return fallback;
  if (typeof fallback === "number") return Number(v);
  if (typeof fallback === "boolean") return v === "1" || v === "true";
  return v;
}

export const $ = (id) => document.getElementById(id);

/** A duration in seconds as µs or ms. */
export const fmtTime = (s) => (s < 1e-3 ? `${(s * 1e6).toFixed(0)} µs` : `${(s * 1e3).toFixed(2)} ms`);

export function median(values) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Show an error on the page (and keep it for tests). */
export function showError(exc) {
  const box = $("error");
  box.textContent = `${exc.name ?? "Error"}: ${exc.message ?? exc}`;
  box.hidden = false;
  window.edgeseq.error = box.textContent;
}
