"""What ``GET /metrics`` reports, in Prometheus text format (via ``prometheus_client``).

One registry per server (never the process-global one), so two servers in one process
(tests, benchmarks) keep separate counts.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The server's counters; ``render()`` is the ``/metrics`` body."""

    def __init__(self, open_streams: Callable[[], int], connections: Callable[[], int]) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        Gauge(
            "edgeseq_open_streams", "Streams holding a row of the pool (connected or detached).",
            registry=r,
        ).set_function(open_streams)  # fmt: skip
        Gauge(
            "edgeseq_connections", "Open stream connections.", registry=r
        ).set_function(connections)  # fmt: skip
        self.frames = Counter("edgeseq_frames", "Frames stepped through the model.", registry=r)
        self.messages = Counter(
            "edgeseq_messages", "Frame messages answered with outputs.", registry=r
        )
        self.batch_streams = Histogram(
            "edgeseq_batch_streams", "Streams per batched onnxruntime call.", buckets=_BATCH,
            registry=r,
        )  # fmt: skip
        self.batch_frames = Histogram(
            "edgeseq_batch_frames", "Frames per batched onnxruntime call.", buckets=_BATCH,
            registry=r,
        )  # fmt: skip
        self.step_seconds = Histogram(
            "edgeseq_step_seconds",
            "Seconds from a frames message arriving to its reply being sent.",
            buckets=_LATENCY,
            registry=r,
        )
        self.refused = Counter(
            "edgeseq_refused", "Refused handshakes and messages, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.saves = Counter(
            "edgeseq_saves", "Streams written to the state folder, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.connects = Counter(
            "edgeseq_connects", "Accepted stream connections, by kind.", ["kind"], registry=r
        )

    def on_batch(self, streams: int, frames: int) -> None:
        """The pool's ``on_batch`` hook (its worker thread)."""
        self.batch_streams.observe(streams)
        self.batch_frames.observe(frames)
        self.frames.inc(frames)

    def render(self) -> bytes:
        return generate_latest(self.registry)
