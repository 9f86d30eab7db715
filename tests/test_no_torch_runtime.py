"""The device side never imports torch (nor onnx): a fresh interpreter streams an exported
model, a pool, snapshots and a discovered third-party model with numpy + onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _models import VAD_CONTEXT, zoo

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys, warnings
import numpy as np
import edgeseq.runtime as rt

lstm, vad, context = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = rt.StreamingPredictor(lstm)
xs = np.random.default_rng(0).standard_normal((1000, 3)).astype(np.float32)
ys = [p.step(x) for x in xs] + [p.step(xs)]  # 1,000 frames one by one, then as one chunk
snap = rt.Snapshot.from_bytes(p.snapshot().to_bytes())
p.restore(snap)
with rt.StreamPool(lstm, max_streams=4) as pool:
    a, b = pool.open(), pool.open()
    pool.step({a: xs[:3], b: xs[0]})
    pool.submit(a, xs[1]).result()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", rt.DiscoveryWarning)
    v = rt.StreamingPredictor(vad, constants={"sr": np.array(16000)}, context=context)
v.step(np.zeros(32, np.float32))
print(json.dumps({
    "torch": "torch" in sys.modules,
    "onnx": "onnx" in sys.modules,
    "onnxscript": "onnxscript" in sys.modules,
    "finite": bool(np.isfinite(np.concatenate([np.ravel(y) for y in ys])).all()),
}))
"""


def test_runtime_streams_without_importing_torch_or_onnx() -> None:
    lstm, vad = zoo.get("lstm"), zoo.get("vad_plain")  # exported here, with torch
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(lstm), str(vad), str(VAD_CONTEXT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["finite"]
    assert not report["torch"], "edgeseq.runtime imported torch"
    assert not report["onnx"], "edgeseq.runtime imported onnx (a device has only onnxruntime)"
    assert not report["onnxscript"]
