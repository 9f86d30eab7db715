"""The load generator of ``edgeseq bench --serve``: runs in its own process, opens many
WebSocket streams to a server, sends frames and times every reply.

Closed loop (``interval`` None): each connection sends its next message when the reply
to the last one arrived — the server's throughput. Open loop (``interval`` seconds): each
connection sends on a fixed schedule (phases spread over the interval), so latency is
measured at a given offered rate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Load", "run_load"]


@dataclass(frozen=True)
class Load:
    """What one client process does."""

    url: str
    connections: int
    frames_per_message: int
    features: int
    duration: float  # seconds of sending, after ``warmup``
    warmup: float = 0.5
    interval: float | None = None  # open loop: seconds between a connection's messages
    seed: int = 0


async def _connection(
    load: Load, index: int, ws: Any, t_start: float, t_end: float, out: list[int]
) -> int:
    rng = np.random.default_rng(load.seed * 100_003 + index)
    payloads = [
        rng.standard_normal((load.frames_per_message, load.features)).astype("<f4").tobytes()
        for _ in range(8)
    ]
    sent = 0
    loop = asyncio.get_running_loop()
    phase = (index / max(load.connections, 1)) * (load.interval or 0.0)
    next_at = t_start + phase
    while True:
        now = loop.time()
        if load.interval is not None:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += load.interval
        if loop.time() >= t_end:
            break
        t0 = time.perf_counter_ns()
        await ws.send(payloads[sent % len(payloads)])
        await ws.recv()
        if loop.time() >= t_start + load.warmup:
            out.append(time.perf_counter_ns() - t0)
        sent += 1
    await ws.send('{"type": "end"}')
    await ws.recv()
    return sent


async def _open(url: str) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, max_size=None, open_timeout=120)
    await ws.recv()  # ready
    return ws


async def _run(load: Load, barrier: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    sockets = await asyncio.gather(*(_open(load.url) for _ in range(load.connections)))
    await loop.run_in_executor(None, barrier.wait, 300)  # every process connected: go
    t_start = loop.time() + 0.05
    t_end = t_start + load.warmup + load.duration
    latencies: list[int] = []
    await asyncio.gather(
        *(_connection(load, i, ws, t_start, t_end, latencies) for i, ws in enumerate(sockets))
    )
    for ws in sockets:
        await ws.close()
    return {"latencies_ns": latencies, "frames": len(latencies) * load.frames_per_message}


def run_load(load: Load, results: Any, barrier: Any) -> None:
    """Process entry point: connect, wait at ``barrier`` for every other client process,
    run ``load``, and put its result (or the error) on ``results``."""
    try:
        results.put(asyncio.run(_run(load, barrier)))
    except BaseException as exc:  # reported by the parent
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
