"""The timed sections of the suite: latency, many streams, chunk sizes, modes and precisions.

Each section builds its contenders, times them together with
:func:`~edgeseq.bench._timing.interleave` and returns plain JSON-able dicts. A contender
this build cannot provide is ``{"available": False, "reason": ...}``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.bench._models import Prepared
from edgeseq.bench._timing import Budget, Stats, interleave, unavailable

__all__ = [
    "HandLoop",
    "TorchStream",
    "chunks",
    "latency",
    "modes",
    "streams",
    "streams_wide",
    "unavailable",
]


def _timing(stats: Stats, frames_per_call: int = 1) -> dict[str, Any]:
    """Stats plus frames/s (median, and the p10/p90 calls turned into rates)."""
    d: dict[str, Any] = {"available": True, **stats.to_dict(), "frames_per_call": frames_per_call}
    d["fps"] = frames_per_call / stats.median
    d["fps_p10"] = frames_per_call / stats.p90  # the slow calls give the low rate
    d["fps_p90"] = frames_per_call / stats.p10
    return d


def hand_session(path: Path, threads: int) -> tuple[Any, Any]:
    """A plain CPU onnxruntime session of ``path`` (``threads`` intra-op threads, one
    inter-op) and the contract in its metadata: what the hand-written contenders run."""
    import onnxruntime as ort

    from edgeseq.contract import Contract

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return session, Contract.from_metadata(session.get_modelmeta().custom_metadata_map)


class HandLoop:
    """What a user writes without edgeseq: ``session.run`` with the state passed as numpy."""

    def __init__(self, path: Path, threads: int, batch: int = 1) -> None:
        self.session, contract = hand_session(path, threads)
        self.frames = contract.frames.name
        self.time_major = (contract.frames.batch_axis, contract.frames.time_axis) == (1, 0)
        self.state_inputs = contract.state_inputs
        self.outputs = [contract.data_outputs()[0].name, *contract.state_outputs]
        self.feed: dict[str, np.ndarray] = {
            p.input: np.zeros([batch if isinstance(d, str) else d for d in p.shape], np.float32)
            for p in contract.states
        }
        if contract.lengths is not None:
            self.feed[contract.lengths] = np.ones(batch, np.int32)  # one frame per call

    def step(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(batch, 1, F)`` -> ``y``; the returned state is fed to the next call.

        A graph that takes frames time-major gets ``(1, batch, F)``: the same memory.
        """
        self.feed[self.frames] = x.reshape(1, *x.shape[:1], *x.shape[2:]) if self.time_major else x
        out = self.session.run(self.outputs, self.feed)
        for name, value in zip(self.state_inputs, out[1:]):
            self.feed[name] = value
        return out[0]


class TorchStream:
    """PyTorch eager: the SeqModel itself, state carried between calls (numpy in and out)."""

    def __init__(self, model: Any, batch: int = 1) -> None:
        self.model = model
        self.state = model.init_state(batch)

    def step(self, x: np.ndarray) -> np.ndarray:
        import torch

        y, self.state = self.model(torch.from_numpy(x), self.state)
        return y.numpy()


def _without_onednn(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with PyTorch's oneDNN (mkldnn) RNN path off: the faster eager LSTM at batch 1."""
    import torch

    flags = torch.backends.mkldnn

    def call() -> object:
        flags.enabled = False
        try:
            return fn()
        finally:
            flags.enabled = True

    return call


def _torch_mode() -> Any:
    import torch

    return torch.inference_mode()


def _identity_call(path: Path, threads: int, frame: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    x = frame.reshape(1, 1, -1)
    return lambda: sess.run(["y"], {"x": x})


def latency(prep: Prepared, threads: int, budget: Budget) -> dict[str, Any]:
    """Section 1: one stream, one frame per call, four ways."""
    from edgeseq.runtime import StreamingPredictor

    rng = np.random.default_rng(1)
    frame = rng.standard_normal(prep.spec.input_size).astype(np.float32)  # [F]
    x = frame.reshape(1, 1, -1)  # (batch, time, F)
    native = prep.files["native"]
    pred = StreamingPredictor(native, threads=threads)
    hand = HandLoop(native, threads)
    torch_stream, tuned = TorchStream(prep.model), TorchStream(prep.model)
    calls: dict[str, Callable[[], object]] = {
        "predictor": lambda: pred.step(frame),
        "session_run": lambda: hand.step(x),
        "torch_eager": lambda: torch_stream.step(x),
        "torch_eager_no_onednn": _without_onednn(lambda: tuned.step(x)),
        "identity": _identity_call(prep.identity, threads, frame),
    }
    with _torch_mode():
        stats = interleave(calls, budget)
    return {name: _timing(s) for name, s in stats.items()}


def _pool_calls(
    path: Path, threads: int, frames: np.ndarray
) -> dict[str, Callable[[], object]] | str:
    """Two StreamPools stepping every stream one frame, or the reason there are none:
    ``pool`` through the dict API (``step({id: [F]})``, ``{id: outputs}`` back) and
    ``pool_rows`` through the array API (``step_rows(ids, [N, F])``, ``[N, ...]`` back)."""
    try:
        from edgeseq.runtime import StreamPool  # type: ignore[attr-defined]
    except ImportError:
        return "edgeseq.runtime.StreamPool is not available in this build"
    size = max(256, len(frames))
    pool = StreamPool(path, max_streams=size, threads=threads)
    feed = {pool.open(): f for f in frames}  # stream id -> [F]
    rows = StreamPool(path, max_streams=size, threads=threads)
    ids = np.array([rows.open() for _ in frames])
    return {"pool": lambda: pool.step(feed), "pool_rows": lambda: rows.step_rows(ids, frames)}


def _pool_timings(pools: dict[str, Any] | str, stats: dict[str, Any], n: int) -> dict[str, Any]:
    if isinstance(pools, str):
        return {name: unavailable(pools) for name in ("pool", "pool_rows")}
    return {name: _timing(stats[name], n) for name in pools}


def streams(prep: Prepared, threads: int, budget: Budget, n: int) -> dict[str, Any]:
    """Section 2: ``n`` streams × 1 frame per round, as frames/s."""
    import time

    from edgeseq.runtime import StreamingPredictor

    rng = np.random.default_rng(2)
    frames = rng.standard_normal((n, prep.spec.input_size)).astype(np.float32)  # (n, F)
    batch = frames[:, None, :]  # (n, 1, F)
    native = prep.files["native"]
    t0 = time.perf_counter()
    preds = [StreamingPredictor(native, threads=threads) for _ in range(n)]
    open_s = time.perf_counter() - t0

    def loop() -> None:
        for p, f in zip(preds, frames):
            p.step(f)

    hand = HandLoop(native, threads, batch=n)
    torch_stream = TorchStream(prep.model, batch=n)
    calls: dict[str, Callable[[], object]] = {"loop_predictors": loop}
    pools = _pool_calls(native, threads, frames)
    if not isinstance(pools, str):
        calls.update(pools)
    calls["ort_batched"] = lambda: hand.step(batch)
    calls["torch_batched"] = lambda: torch_stream.step(batch)
    with _torch_mode():
        stats = interleave(calls, budget)
    out: dict[str, Any] = {"streams": n, "open_predictors_s": open_s}
    out.update(_pool_timings(pools, stats, n))
    for name in ("loop_predictors", "ort_batched", "torch_batched"):
        out[name] = _timing(stats[name], n)
    return out


def streams_wide(prep: Prepared, threads: int, budget: Budget, n: int) -> dict[str, Any]:
    """Section 2b: ``n`` streams × 1 frame, StreamPool (dict and array API) against one
    hand-written batched ``session.run`` of the same rows only (``n`` predictors would take
    too long to loop)."""
    rng = np.random.default_rng(8)
    frames = rng.standard_normal((n, prep.spec.input_size)).astype(np.float32)
    native = prep.files["native"]
    hand = HandLoop(native, threads, batch=n)
    calls: dict[str, Callable[[], object]] = {"ort_batched": lambda: hand.step(frames[:, None])}
    pools = _pool_calls(native, threads, frames)
    if not isinstance(pools, str):
        calls.update(pools)
    stats = interleave(calls, budget)
    out: dict[str, Any] = {"streams": n, "ort_batched": _timing(stats["ort_batched"], n)}
    out.update(_pool_timings(pools, stats, n))
    return out


def chunks(prep: Prepared, threads: int, budget: Budget, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Section 3: frames/s of one stream fed ``T`` frames per call."""
    from edgeseq.runtime import StreamingPredictor

    rng = np.random.default_rng(3)
    pred = StreamingPredictor(prep.files["native"], threads=threads)
    data = {t: rng.standard_normal((t, prep.spec.input_size)).astype(np.float32) for t in sizes}
    calls: dict[str, Callable[[], object]] = {
        str(t): (lambda c=chunk: pred.step(c)) for t, chunk in data.items()
    }
    stats = interleave(calls, budget)
    return {str(t): _timing(stats[str(t)], t) for t in sizes}


def _max_abs_diff(a: Path, b: Path, input_size: int, threads: int, frames: int = 64) -> float:
    """Largest output difference of two variants streaming the same frames one by one."""
    from edgeseq.runtime import StreamingPredictor

    xs = np.random.default_rng(4).standard_normal((frames, input_size)).astype(np.float32)
    pa, pb = StreamingPredictor(a, threads=threads), StreamingPredictor(b, threads=threads)
    worst = 0.0
    for x in xs:
        ya, yb = np.asarray(pa.step(x)), np.asarray(pb.step(x))
        worst = max(worst, float(np.max(np.abs(ya.astype(np.float64) - yb))))
    return worst


def modes(prep: Prepared, threads: int, budget: Budget, chunk: int = 32) -> dict[str, Any]:
    """Section 4: every variant's latency (1 frame), frames/s (``chunk`` frames), size, drift."""
    from edgeseq.runtime import StreamingPredictor

    rng = np.random.default_rng(5)
    frame = rng.standard_normal(prep.spec.input_size).astype(np.float32)  # [F]
    block = rng.standard_normal((chunk, prep.spec.input_size)).astype(np.float32)  # [T, F]
    calls: dict[str, Callable[[], object]] = {}
    fixed: dict[str, int | None] = {}
    stepped: dict[str, bool] = {}
    for variant, path in prep.files.items():
        pred = StreamingPredictor(path, threads=threads)
        fixed[variant] = pred.contract.model.chunk
        stepped[variant] = pred.engine.graph_for(1) is not pred.engine  # a one-step graph
        calls[variant] = lambda p=pred: p.step(frame)
        calls[f"{variant}@{chunk}"] = lambda p=pred: p.step(block)
    stats = interleave(calls, budget)
    native = prep.files["native"]
    out: dict[str, Any] = {}
    for variant, path in prep.files.items():
        out[variant] = {
            **_timing(stats[variant]),
            "chunk": chunk,
            "chunk_fps": _timing(stats[f"{variant}@{chunk}"], chunk)["fps"],
            "graph_chunk": fixed[variant],  # frames per call of a fixed-chunk graph
            "step_graph": stepped[variant],  # single frames run through a one-step graph
            "size_bytes": path.stat().st_size,
            "max_abs_diff_vs_native": _max_abs_diff(native, path, prep.spec.input_size, threads),
        }
    for variant, reason in prep.missing.items():
        out[variant] = unavailable(reason)
    return out


def export_times(prep: Prepared) -> dict[str, Any]:
    """Section 6: seconds per export (or conversion) of each variant, after one warm-up."""
    out: dict[str, Any] = {}
    for variant, runs in prep.export_s.items():
        out[variant] = {"available": True, "median_s": statistics.median(runs), "runs_s": runs}
    for variant, reason in prep.missing.items():
        out[variant] = unavailable(reason)
    return out
