"""Stream a model on emulated aarch64 and natively, and compare (see arm64_env.py).

Both sides run the same worker (this file, ``worker IN.npz OUT.npz``) on the same
pip-installed build of edgeseq; requests and results travel as ``.npz`` files, never
pickles. The worker imports only numpy and edgeseq.runtime (or onnxruntime), so it runs
unchanged under the emulated Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _env_module():
    """The sibling arm64_env module (already loaded by a test, or imported from HERE)."""
    if "arm64_env" not in sys.modules:
        sys.path.insert(0, str(HERE))
    import arm64_env

    return arm64_env


def _stream_worker(in_npz: str, out_npz: str) -> None:
    """Runs on both sides: reset, stream the frames chunk by chunk, time each call."""
    import numpy as np

    with np.load(in_npz, allow_pickle=False) as z:
        model, mode, frames = str(z["model"]), str(z["mode"]), z["frames"]
        chunks, threads = [int(c) for c in z["chunks"]], int(z["threads"])
    if mode == "predictor":
        from edgeseq.runtime import StreamingPredictor

        pred = StreamingPredictor(model, device="cpu", threads=threads)
        step, reset = pred.step, pred.reset
    else:  # "ort": plain onnxruntime; input 0 takes the frames, the others are state
        import onnxruntime as ort  # fed back from outputs 1.. in order, zeros after reset

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        ins, names, state = sess.get_inputs(), [o.name for o in sess.get_outputs()], []

        def reset():
            state[:] = [
                np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                for i in ins[1:]
            ]

        def step(x):
            res = sess.run(None, dict(zip([i.name for i in ins], [x, *state], strict=True)))
            state[:] = res[1 : len(ins)]
            return dict(zip(names, res, strict=True))

    out = {}
    for c in chunks:
        reset()
        times = []
        for i, start in enumerate(range(0, len(frames), c)):
            t0 = time.perf_counter()
            y = step(frames[start : start + c])
            times.append(time.perf_counter() - t0)
            for name, arr in y.items() if isinstance(y, dict) else [("output", y)]:
                out[f"{c}/{i}/{name}"] = np.asarray(arr)
        out[f"{c}/seconds"] = np.array(times)
    out["torch_loaded"] = np.array("torch" in sys.modules)
    np.savez(out_npz, **out)


def _stream(runner, model_path, chunks, frames, mode: str, threads: int, seed: int) -> dict:
    import numpy as np

    if isinstance(frames, int):  # N random frames; the feature size from the model's input
        import onnxruntime as ort

        feat = ort.InferenceSession(str(model_path)).get_inputs()[0].shape[-1]
        frames = np.random.default_rng(seed).standard_normal((frames, feat))
    with tempfile.TemporaryDirectory(prefix="edgeseq-stream-") as tmp:
        src, dst, t0 = Path(tmp, "in.npz"), Path(tmp, "out.npz"), time.monotonic()
        np.savez(
            src,
            model=np.array(str(Path(model_path).resolve())),
            mode=np.array(mode),
            frames=np.asarray(frames, np.float32),
            chunks=np.array(list(chunks)),
            threads=np.array(threads),
        )
        res = runner([__file__, "worker", src, dst])
        if res.returncode != 0:
            raise RuntimeError(f"stream worker failed ({res.returncode}):\n{res.stderr[-3000:]}")
        with np.load(dst, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    result = {
        "chunks": {},
        "torch_loaded": bool(data.pop("torch_loaded")),
        "wall_seconds": time.monotonic() - t0,
    }
    for c in chunks:
        times = data.pop(f"{c}/seconds")
        calls = [{} for _ in times]
        for key in [k for k in data if k.startswith(f"{c}/")]:
            calls[int(key.split("/")[1])][key.split("/", 2)[2]] = data.pop(key)
        result["chunks"][c] = {"calls": calls, "seconds": times}
    return result


def stream_on_aarch64(
    model_path,
    chunks,
    frames,
    *,
    mode: str = "predictor",
    threads: int = 1,
    seed: int = 0,
    arm_env=None,
    timeout: float = 1800,
) -> dict:
    """Stream frames ([N, F] float32 array, or an int N for N random frames) through the model
    on emulated aarch64, once per chunk size, with a reset before each. Returns {"chunks":
    {c: {"calls": [{output: array}, ...], "seconds": per-call array}}, "torch_loaded": bool,
    "wall_seconds": float}. mode "predictor": edgeseq.runtime.StreamingPredictor; "ort":
    plain onnxruntime (input 0 = frames, other inputs = state fed back from outputs 1..)."""
    env = _env_module()
    arm = arm_env or env.ensure_env()
    return _stream(
        lambda argv: env.run_aarch64(argv, arm_env=arm, timeout=timeout),
        model_path,
        chunks,
        frames,
        mode,
        threads,
        seed,
    )


def stream_local(
    model_path,
    chunks,
    frames,
    *,
    mode: str = "predictor",
    threads: int = 1,
    seed: int = 0,
    site_dirs=(),
    timeout: float = 600,
) -> dict:
    """stream_on_aarch64's native twin: this python, in a subprocess, site_dirs on PYTHONPATH."""
    path = os.pathsep.join([*map(str, site_dirs), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return _stream(
        lambda argv: subprocess.run(
            [sys.executable, *map(str, argv)],
            env=env,
            timeout=timeout,
            capture_output=True,
            text=True,
        ),
        model_path,
        chunks,
        frames,
        mode,
        threads,
        seed,
    )


def max_abs_diff(a: dict, b: dict, chunk: int) -> float:
    """Largest |a - b| over all outputs of all calls for one chunk size; inf if they differ
    in number of calls, output names or shapes."""
    ca, cb = a["chunks"][chunk]["calls"], b["chunks"][chunk]["calls"]
    pairs = [(x[k], y[k]) for x, y in zip(ca, cb, strict=False) for k in x if k in y]
    same_names = all(x.keys() == y.keys() for x, y in zip(ca, cb, strict=False))
    if len(ca) != len(cb) or not same_names or any(x.shape != y.shape for x, y in pairs):
        return float("inf")
    return max(
        (float(abs(x.astype("float64") - y).max(initial=0.0)) for x, y in pairs), default=0.0
    )


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _stream_worker(*sys.argv[2:4])
