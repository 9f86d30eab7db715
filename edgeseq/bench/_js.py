"""Section 7: per-frame latency of the JavaScript runtime beside Python's.

``runtime-js/`` streams the same files in Node.js (onnxruntime-node) and in browsers
(onnxruntime-web, WASM, one thread). Here each runtime times its ``StreamingPredictor``
and a hand-written ``session.run`` loop on the reference model, one frame per call, in
interleaved rounds: Python in this process, Node.js through ``runtime-js/bench/latency.mjs``
and headless Chromium through ``runtime-js/bench/browser.mjs``. A sample is the mean time
per call over one block of calls (a page's clock is too coarse for single calls), so
Python is timed the same way here rather than taken from section 1.

The JavaScript runtimes need a source checkout with ``runtime-js/node_modules`` installed
(``make js-install``), Node.js and, for the browser, Debian's ``chromium``; a runtime that
is missing is reported with the reason instead of a figure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.bench._timing import Budget, percentile, time_text, unavailable

__all__ = ["RUNTIME_JS", "js_latency", "js_tables"]

RUNTIME_JS = Path(__file__).resolve().parents[2] / "runtime-js"
_RUNTIMES = {"node": "bench/latency.mjs", "browser": "bench/browser.mjs"}


def _stats(samples: list[float], calls: int) -> dict[str, Any]:
    s = sorted(samples)
    return {
        "available": True,
        "median": percentile(s, 50),
        "p10": percentile(s, 10),
        "p90": percentile(s, 90),
        "n": calls,
        "blocks": len(s),
    }


def _python(model: Path, threads: int, input_size: int, budget: Budget) -> dict[str, Any]:
    """Python's predictor and hand loop, block means in rotating order (as measure.js)."""
    import onnxruntime as ort

    from edgeseq.bench._sections import HandLoop
    from edgeseq.runtime import StreamingPredictor

    frame = np.sin(np.arange(1, input_size + 1)).astype(np.float32)
    p = StreamingPredictor(model, threads=threads)
    hand = HandLoop(model, threads)
    x = frame.reshape(1, 1, -1)
    calls = {"predictor": lambda: p.step(frame), "session_run": lambda: hand.step(x)}
    sizes = {}
    for name, fn in calls.items():
        for _ in range(20):
            fn()
        t0, n = time.perf_counter(), 0
        while n < 3 or time.perf_counter() - t0 < budget.warmup_s:
            fn()
            n += 1
        per = (time.perf_counter() - t0) / n
        sizes[name] = max(1, min(budget.max_calls_per_block, round(budget.block_s / per)))
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(budget.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = calls[name]
            t0 = time.perf_counter()
            for _ in range(sizes[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / sizes[name])
    out: dict[str, Any] = {n: _stats(samples[n], len(samples[n]) * sizes[n]) for n in names}
    return {"onnxruntime": f"onnxruntime {ort.__version__}", "threads": threads, **out}


def _javascript(
    runtime: str, model: Path, threads: int, budget: Budget, timeout_s: float
) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        return unavailable("Node.js is not installed (apt-get install nodejs npm)")
    if not (RUNTIME_JS / "node_modules").is_dir():
        return unavailable(f"{RUNTIME_JS}/node_modules is missing: run `make js-install`")
    cmd = [node, _RUNTIMES[runtime], "--model", str(model), "--json"]
    cmd += ["--rounds", str(budget.rounds), "--block-ms", str(budget.block_s * 1e3)]
    cmd += ["--warmup-ms", str(budget.warmup_s * 1e3)]
    if runtime == "node":
        cmd += ["--threads", str(threads)]
    try:
        done = subprocess.run(
            cmd, cwd=RUNTIME_JS, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return unavailable(f"{_RUNTIMES[runtime]} did not finish within {timeout_s:.0f} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return unavailable(f"{_RUNTIMES[runtime]} failed: {last[:300]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def js_latency(
    model: Path, threads: int, input_size: int, budget: Budget, timeout_s: float = 900
) -> dict[str, Any]:
    """Per-frame latency of Python, Node.js and Chromium on ``model`` (see the module doc)."""
    out = {"python": _python(model, threads, input_size, budget)}
    for runtime in _RUNTIMES:
        if (RUNTIME_JS / "package.json").is_file():
            out[runtime] = _javascript(runtime, model, threads, budget, timeout_s)
        else:
            out[runtime] = unavailable("runtime-js/ is not here (a source checkout is needed)")
    return out


def _fig(rec: dict[str, Any]) -> str:
    return f"{time_text(rec['median'])} ({time_text(rec['p10'])}–{time_text(rec['p90'])})"


def js_tables(results: dict[str, Any]) -> list[str]:
    """Markdown for section 7 from the results JSON (empty when the section did not run)."""
    from edgeseq.table import format_table

    cells = {c: d["js"] for c, d in results["cells"].items() if "js" in d}
    if not cells:
        return []
    names = {"python": "Python", "node": "Node.js", "browser": "Chromium"}
    rows = []
    for cell, rec in cells.items():
        for key, label in names.items():
            r = rec.get(key) or unavailable("not run")
            if "predictor" not in r:
                rows.append([cell, label, f"n/a: {r['reason']}", "", ""])
                continue
            ratio = r["predictor"]["median"] / r["session_run"]["median"]
            who = f"{label} ({r['onnxruntime']}, {r['threads']} thread(s))"
            rows.append([cell, who, _fig(r["predictor"]), _fig(r["session_run"]), f"{ratio:.2f}×"])
    return [
        "## 7. JavaScript: per-frame latency in Node.js and the browser, beside Python",
        "",
        "One stream, one frame per call, the same file in each runtime (`runtime-js/`). A "
        "sample is the mean per call over a block of calls (a page's clock is too coarse for "
        "one call), median and 10th–90th percentile over blocks; each runtime interleaves its "
        "two contenders, and the runtimes run one after another in separate processes.",
        "",
        format_table(
            ["cell", "runtime", "StreamingPredictor", "hand-written session.run loop", "ratio"],
            rows,
            markdown=True,
        ),
    ]
