"""Where one ``StreamingPredictor.step`` call spends its time.

Timed together (interleaved) on the same model, frame and session:

- ``step``: the public call, as users make it;
- ``iobinding``: a two-binding ping-pong (state bound in and out, nothing converted per
  call): the floor any Python front can reach with that session, so ``step - iobinding``
  is what edgeseq's own Python adds;
- ``session_run``: ``session.run`` with a numpy feed built once: ``session_run -
  iobinding`` is what converting the feed and fetching outputs as numpy costs;
- the Identity model's ``session.run`` (from the latency section): onnxruntime's fixed
  cost of one call from Python, so ``iobinding - identity`` is the graph's own work.

onnxruntime's profiler then splits the graph's work by op type. It adds several µs to
every node, so only its shares are reported, not its absolute times. Last, ``cProfile``
lists the Python functions ``step`` spends the most own time in.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.bench._timing import Budget, interleave

__all__ = ["ort_profile", "profile_pool", "profile_step"]


def _feed_for(session: Any, contract: Any, x: np.ndarray) -> tuple[list[str], dict[str, Any]]:
    """Output names and a prebuilt feed of one frame from the initial state."""
    from edgeseq.runtime import initial_state

    feed: dict[str, Any] = {contract.frames.name: x}
    feed.update({p.input: initial_state(p) for p in contract.states})
    if contract.lengths is not None:
        feed[contract.lengths] = np.ones(1, np.int32)
    names = [contract.data_outputs()[0].name, *contract.state_outputs]
    return names, feed


def _pingpong(session: Any, contract: Any, x: np.ndarray) -> Callable[[], object]:
    """One frame per call through two prebuilt IO bindings that swap state buffers."""
    import onnxruntime as ort

    names, feed = _feed_for(session, contract, x)
    value = ort.OrtValue.ortvalue_from_numpy
    fixed = {k: value(v) for k, v in feed.items() if k not in contract.state_inputs}
    y = session.run(names, feed)[0]
    y_out = ort.OrtValue.ortvalue_from_numpy(np.zeros_like(y))
    bufs = [
        [value(feed[p.input].copy()) for p in contract.states],
        [value(feed[p.input].copy()) for p in contract.states],
    ]
    bindings = []
    for src, dst in ((0, 1), (1, 0)):
        b = session.io_binding()
        for k, v in fixed.items():
            b.bind_ortvalue_input(k, v)
        b.bind_ortvalue_output(names[0], y_out)
        for i, p in enumerate(contract.states):
            b.bind_ortvalue_input(p.input, bufs[src][i])
            b.bind_ortvalue_output(p.output, bufs[dst][i])
        bindings.append(b)
    run = session.run_with_iobinding
    turn = [0]

    def call() -> object:
        run(bindings[turn[0]])
        turn[0] ^= 1
        return y_out.numpy()

    return call


def ort_profile(path: Path, threads: int, x: np.ndarray, calls: int, workdir: Path) -> dict:
    """Op-type shares of kernel time, and the kernels' share of ``model_run`` (profiled)."""
    import onnxruntime as ort

    from edgeseq.contract import Contract

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(workdir / "ort_profile")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    contract = Contract.from_metadata(sess.get_modelmeta().custom_metadata_map)
    names, feed = _feed_for(sess, contract, x)
    for _ in range(calls):
        sess.run(names, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    kernels: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            kernels[op] = kernels.get(op, 0.0) + e["dur"]
    total_run, total_kernels = sum(runs) or 1.0, sum(kernels.values()) or 1.0
    return {
        "model_run_profiled": statistics.median(runs) / 1e6 if runs else None,
        "kernel_share_of_run": total_kernels / total_run,
        "op_share": {k: v / total_kernels for k, v in sorted(kernels.items(), key=lambda i: -i[1])},
    }


def _cprofile(fn: Callable[[], object], calls: int, top: int = 8) -> list[dict[str, Any]]:
    """The ``top`` functions by own time while ``fn`` runs ``calls`` times (per call)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_, ncalls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}" if line else file
        rows.append(
            {
                "function": f"{func} ({where})",
                "calls_per_step": ncalls / calls,
                "own_s_per_step": tottime / calls,
            }
        )
    rows.sort(key=lambda r: -r["own_s_per_step"])
    return rows[:top]


def profile_step(
    path: Path, threads: int, input_size: int, budget: Budget, workdir: Path
) -> dict[str, Any]:
    """The per-call breakdown of ``StreamingPredictor.step`` on ``path`` (see module doc)."""
    from edgeseq.runtime import StreamingPredictor

    frame = np.random.default_rng(6).standard_normal(input_size).astype(np.float32)
    x = frame.reshape(1, 1, -1)
    pred = StreamingPredictor(path, threads=threads)
    names, feed = _feed_for(pred.session, pred.contract, x)
    session = pred.session
    calls: dict[str, Callable[[], object]] = {
        "step": lambda: pred.step(frame),
        "session_run": lambda: session.run(names, feed),
        "iobinding": _pingpong(session, pred.contract, x),
    }
    stats = interleave(calls, budget)
    n = max(200, min(2000, round(0.5 / max(stats["step"].median, 1e-6))))
    prof = ort_profile(path, threads, x, n, workdir)
    return {
        **{name: s.to_dict() for name, s in stats.items()},
        **prof,
        "cprofile": _cprofile(calls["step"], n),
        "calls_profiled": n,
    }


def profile_pool(path: Path, threads: int, input_size: int, streams: int) -> dict[str, Any]:
    """cProfile of ``StreamPool.step`` over ``streams`` streams × 1 frame, or why not."""
    try:
        from edgeseq.runtime import StreamPool  # type: ignore[attr-defined]
    except ImportError:
        return {"available": False, "reason": "StreamPool is not available in this build"}
    frames = np.random.default_rng(7).standard_normal((streams, input_size)).astype(np.float32)
    pool = StreamPool(path, threads=threads)
    feed = {pool.open(): f for f in frames}  # stream id -> [F]
    for _ in range(5):
        pool.step(feed)
    return {
        "available": True,
        "streams": streams,
        "cprofile": _cprofile(lambda: pool.step(feed), 50),
    }
