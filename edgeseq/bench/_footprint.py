"""Section 5: wall time and peak RSS of fresh processes that stream a model.

Each run is a new interpreter (``sys.executable``) timed from spawn to exit by the
parent. Its peak resident set is the child's own ``VmHWM`` from ``/proc/self/status``,
read as it ends: ``ru_maxrss`` (getrusage, wait4) also counts the pages the child
shared with the parent between fork and exec, which here is the whole benchmark
process with torch loaded. Where ``/proc`` is missing, ``ru_maxrss`` of that one child
is used instead and flagged. The runtime child fails (exit status 3) if torch was
imported, so the figure can never include it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["TORCH_FREE_EXIT", "footprint", "run_child"]

TORCH_FREE_EXIT = 3  # the runtime child's status when torch was imported after all

_PEAK = """
def _status_mb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None

def _peak_mb():
    return _status_mb("VmHWM")
"""

# The resident set after each step tells which import or phase the memory goes to.
_RUNTIME_CHILD = """
import sys, time, json
rss = {"python": _status_mb("VmRSS")}
t0 = time.perf_counter()
import numpy as np
rss["numpy"] = _status_mb("VmRSS")
tn = time.perf_counter()
import onnxruntime
rss["onnxruntime"] = _status_mb("VmRSS")
to = time.perf_counter()
from edgeseq.runtime import StreamingPredictor
rss["edgeseq.runtime"] = _status_mb("VmRSS")
t1 = time.perf_counter()
path, threads, frames, features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
p = StreamingPredictor(path, threads=threads)
rss["load"] = _status_mb("VmRSS")
t2 = time.perf_counter()
for x in np.random.default_rng(0).standard_normal((frames, features)).astype(np.float32):
    p.step(x)
t3 = time.perf_counter()
rss["stream"] = _status_mb("VmRSS")
if "torch" in sys.modules:
    print("torch was imported by the runtime path", file=sys.stderr)
    sys.exit(3)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "stream_s": t3 - t2,
                  "import_numpy_s": tn - t0, "import_onnxruntime_s": to - tn,
                  "import_edgeseq_s": t1 - to, "rss_after_mb": rss,
                  "onnx_imported": "onnx" in sys.modules, "peak_mb": _peak_mb()}))
"""

_TORCH_CHILD = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np
import torch
from edgeseq.train.checkpoint import load_checkpoint
t1 = time.perf_counter()
path, threads, frames, features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model, _ = load_checkpoint(path)
state = model.init_state(1)
t2 = time.perf_counter()
with torch.inference_mode():
    for x in np.random.default_rng(0).standard_normal((frames, features)).astype(np.float32):
        y, state = model(torch.from_numpy(x).view(1, 1, -1), state)
        y.numpy()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "stream_s": t3 - t2,
                  "peak_mb": _peak_mb()}))
"""

_BARE_CHILD = """
import json
print(json.dumps({"peak_mb": _peak_mb()}))
"""


def run_child(script: str, args: list[str]) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; return its JSON record, wall time and peak RSS."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _PEAK + script, *args], stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss is KiB on Linux, bytes on macOS
            scale = 1 if sys.platform == "darwin" else 1024
            rss: float | None = usage.ru_maxrss * scale / 1e6
        else:  # no per-child rusage: time only
            proc.wait()
            wall, rss = time.perf_counter() - t0, None
        proc.stdout.close()
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark child exited with status {proc.returncode}: {message[-500:]}"
        )
    record = json.loads(out.decode().strip().splitlines()[-1])
    peak = record.pop("peak_mb", None)
    record["rss_source"] = "VmHWM" if peak is not None else "ru_maxrss"
    return {"wall_s": wall, "rss_mb": peak if peak is not None else rss, **record}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    rss = [r["rss_mb"] for r in runs if r["rss_mb"] is not None]
    keys = ("import_s", "load_s", "stream_s")
    keys += ("import_numpy_s", "import_onnxruntime_s", "import_edgeseq_s")
    phases = {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]}
    rss_after = {
        k: statistics.median(r["rss_after_mb"][k] or 0.0 for r in runs)
        for k in runs[0].get("rss_after_mb", {})
    }
    return {
        "available": True,
        "wall_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "rss_mb": statistics.median(rss) if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        "runs": len(runs),
        "phases_s": phases,
        "rss_after_mb": rss_after,
        "rss_source": runs[0]["rss_source"],
        "onnx_imported": any(r.get("onnx_imported") for r in runs),
    }


def footprint(
    native: Path, checkpoint: Path, features: int, threads: int, frames: int, runs: int
) -> dict[str, Any]:
    """Section 5: the runtime process vs the PyTorch process (and a bare interpreter).

    Runs are interleaved (runtime, torch, bare, runtime, ...) so load from elsewhere
    hits all three alike. Sizes are MB of 10^6 bytes.
    """
    args = [str(threads), str(frames), str(features)]
    results: dict[str, list[dict[str, Any]]] = {"runtime": [], "torch": [], "python": []}
    for _ in range(runs):
        results["runtime"].append(run_child(_RUNTIME_CHILD, [str(native), *args]))
        results["torch"].append(run_child(_TORCH_CHILD, [str(checkpoint), *args]))
        results["python"].append(run_child(_BARE_CHILD, []))
    out = {name: _summary(r) for name, r in results.items()}
    out["frames"] = frames
    return out
