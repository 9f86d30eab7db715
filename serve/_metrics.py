"""What ``GET /metrics`` reports, in Prometheus text format (via ``prometheus_client``).

One registry per server (never the process-global one), so two servers in one process
(tests, benchmarks) keep separate counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.utils import floatToGoString

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
        self.step_seconds = StepSeconds(
            "edgeseq_step_seconds",
            "Seconds from a frames message arriving to its reply being sent.",
            _LATENCY,
        )
        r.register(self.step_seconds)
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


class StepSeconds:
    """A Prometheus histogram updated once per batch of replies (``observe_many``): a
    ``prometheus_client`` histogram observed per message takes two locked increments each.
    Exposed exactly as a histogram (``_bucket``, ``_count``, ``_sum``)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, float)
        self.counts = np.zeros(len(buckets) + 1, np.int64)  # the last: above every bound
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, seconds: np.ndarray) -> None:
        """Count every value of ``seconds`` (a bucket counts values <= its bound)."""
        add = np.bincount(np.searchsorted(self.bounds, seconds), minlength=len(self.counts))
        total = float(seconds.sum())
        with self._lock:
            self.counts += add
            self.sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self.counts).tolist(), self.sum
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(les, cumulative)), sum_value=total
        )

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)
