"""Closed-loop client load for the serving benchmarks: sequences × 1 request at a time.

Each sequence is one thread that sends a request (``frames`` frames), waits for the reply,
and sends the next, from a common start until a common deadline (wall clock, so client
processes agree). Only requests sent after the warm-up and answered before the deadline
count. Targets: ``triton`` (gRPC, tritonclient), ``serve`` (an ``edgeseq serve`` server
through :class:`~edgeseq.client.StreamClient`, one WebSocket per sequence) and ``pool`` (an
in-process StreamPool's ``submit``, the floor without a network).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Load", "run_load"]


@dataclass(frozen=True)
class Load:
    """One measured setting."""

    target: str  # "triton", "serve" or "pool"
    address: str  # gRPC host:port, the ws:// URL for "serve", or the model path for "pool"
    model: str  # Triton model name
    sequences: int
    frames: int
    input_size: int
    seconds: float
    warmup: float
    first_id: int = 1


def _sequence(load: Load, sid: int, start: float, stop: float, pool: Any, out: list) -> None:
    rng = np.random.default_rng(sid)
    x = rng.normal(size=(1, load.frames, load.input_size)).astype(np.float32)
    lat: list[float] = []
    k = 0
    if load.target == "triton":
        import tritonclient.grpc as g

        client = g.InferenceServerClient(load.address)
        tensor = g.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)

        def send(first: bool, last: bool) -> None:
            client.infer(load.model, [tensor], sequence_id=sid, sequence_start=first,
                         sequence_end=last, client_timeout=60)  # fmt: skip
    elif load.target == "serve":
        from edgeseq.client import StreamClient

        remote = StreamClient(load.address)
        frames = x[0, 0] if load.frames == 1 else x[0]

        def send(first: bool, last: bool) -> None:
            remote.step(frames)
    else:
        stream = pool.open()
        frames = x[0, 0] if load.frames == 1 else x[0]  # one frame takes the fast path

        def send(first: bool, last: bool) -> None:
            pool.submit(stream, frames).result(60)

    while True:
        t0 = time.time()
        last = t0 >= stop
        send(k == 0, last)
        t1 = time.time()
        if t0 >= start and t1 <= stop:
            lat.append(t1 - t0)
        k += 1
        if last:
            break
    if load.target == "serve":
        remote.close()
    out.append(lat)


def _process(load: Load, ids: list[int], start: float, stop: float, queue: Any) -> None:
    pool = None
    if load.target == "pool":
        from edgeseq.runtime import StreamPool

        pool = StreamPool(load.address, max_streams=max(len(ids), 1), threads=1)
    out: list[list[float]] = []
    threads = [threading.Thread(target=_sequence, args=(load, i, start, stop, pool, out))
               for i in ids]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(load.warmup + load.seconds + 120)
    if pool is not None:
        pool.shutdown()
    queue.put([x for lat in out for x in lat])


def run_load(load: Load, processes: int) -> dict[str, Any]:
    """Run ``load`` from ``processes`` client processes (1 for the in-process pool)."""
    ids = list(range(load.first_id, load.first_id + load.sequences))
    n = 1 if load.target == "pool" else max(1, min(processes, load.sequences))
    ctx = multiprocessing.get_context("spawn")  # grpc and onnxruntime do not survive fork
    queue = ctx.Queue()
    start = time.time() + 3.0 + load.warmup  # spawned interpreters need a moment to import
    stop = start + load.seconds
    procs = [ctx.Process(target=_process, args=(load, ids[i::n], start, stop, queue))
             for i in range(n)]  # fmt: skip
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        latencies += queue.get(timeout=load.warmup + load.seconds + 180)
    for p in procs:
        p.join(30)
    if not latencies:
        raise RuntimeError(f"no request completed inside the {load.seconds} s window")
    lat = np.sort(np.asarray(latencies))
    return {
        "requests": len(lat),
        "fps": len(lat) * load.frames / load.seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }
