"""The server's limits and settings: one dataclass, every limit explicit with its default."""

from __future__ import annotations

import hmac
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeseq.errors import InputError
from edgeseq.runtime import LoadOptions

__all__ = ["ServeOptions", "log_to_stderr"]


def log_to_stderr(line: str) -> None:
    """The servers' default log: one line on stderr, flushed (the operator reads it live)."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServeOptions:
    """How ``edgeseq serve`` listens, what it accepts, and where it keeps state.

    Parameters
    ----------
    host, port
        Where to listen; 127.0.0.1 unless told otherwise (port 0 picks a free one).
    max_streams
        Streams held at once (connected, or detached waiting for a resume); more
        connections get HTTP 503. Also the pool's preallocated state rows.
    tokens
        Accepted bearer tokens; empty means no authentication.
    state_dir
        Folder where every stream is saved on shutdown, on idle eviction and every
        ``save_interval`` seconds, so clients can resume after a restart. None: streams
        live in memory only (lost on restart and after ``idle_timeout``).
    idle_timeout
        Seconds without a frame after which a stream leaves the pool (saved to
        ``state_dir`` when set). None keeps streams until they end.
    max_frames_per_message
        Frames one binary message may carry; more is refused with an ``error``.
    threads
        onnxruntime intra-op threads of the shared pool.
    max_inflight
        Messages one connection may have in flight (pipelined) before the server stops
        reading it; also the replies kept per stream for re-delivery after a resume.
    save_interval
        Seconds between periodic saves of changed streams (needs ``state_dir``; 0: off).
        Bounds what a crash (``kill -9``) can lose; a client replays the rest.
    max_batch
        Streams per onnxruntime call at most (None: ``max_streams``).
    max_wait_ms
        Deprecated: no effect on the server, still accepted (``edgeseq serve
        --max-wait-ms`` says so on stderr). The server steps the frames messages of one
        event-loop tick together and never holds a frame back for company: waiting for
        more was measured to cost latency and, under light load, throughput. The value
        only reaches the pool's own ``submit``, which the server does not call.
    shutdown_timeout
        Seconds a graceful shutdown may take to finish in-flight work and save.
    device
        onnxruntime device of the shared pool (``cpu``, ``cuda``, ...).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_streams: int = 256
    tokens: tuple[str, ...] = ()
    state_dir: Path | None = None
    idle_timeout: float | None = 300.0
    max_frames_per_message: int = 1024
    threads: int | None = 1
    max_inflight: int = 16
    save_interval: float = 10.0
    max_batch: int | None = None
    max_wait_ms: float = 2.0
    shutdown_timeout: float = 30.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        ints = {
            "max_streams": self.max_streams,
            "max_frames_per_message": self.max_frames_per_message,
            "max_inflight": self.max_inflight,
        }
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InputError(f"port must be 0..65535 (0: any free port), got {self.port!r}.")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise InputError(
                f"idle_timeout must be positive seconds or None, got {self.idle_timeout!r}."
            )
        for name in ("save_interval", "max_wait_ms"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        if not self.shutdown_timeout > 0:
            raise InputError(f"shutdown_timeout must be positive, got {self.shutdown_timeout!r}.")
        if any(not t for t in self.tokens):
            raise InputError("tokens must be non-empty strings; remove the empty one.")
        # threads checked here; whether the device exists, where the pool loads (a Ray
        # replica may have a GPU this machine lacks)
        LoadOptions(threads=self.threads)

    @property
    def loading(self) -> LoadOptions:
        """``device`` and ``threads`` as the :class:`~edgeseq.runtime.LoadOptions` the
        shared pool loads with (a device this onnxruntime lacks is refused here)."""
        return LoadOptions(device=self.device, threads=self.threads)

    def token_ok(self, given: str | None) -> bool:
        """Whether ``given`` is an accepted token (always true without tokens)."""
        if not self.tokens:
            return True
        if not given:
            return False
        good = False
        for t in self.tokens:  # compare with every token: the time says nothing about which
            good |= hmac.compare_digest(t.encode(), given.encode())
        return good
