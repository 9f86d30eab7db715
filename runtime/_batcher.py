"""Micro-batching: collect requests from many threads, run them together on one worker.

Requests wait until ``max_batch`` distinct keys are pending or the oldest has waited
``max_wait`` seconds, as Triton's sequence batcher and sherpa-onnx's servers do. A batch
holds at most one request per key (stream), so each stream's requests run in the order
they were submitted; later ones for the same key wait for the next batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edgeseq.errors import StreamError

__all__ = ["CallbackThread", "MicroBatcher", "Request"]

_LOG = logging.getLogger("edgeseq.runtime")


@dataclass
class Request:
    """One submitted call: the stream key, its checked payload, and the caller's future."""

    key: Any
    payload: Any
    future: Future = field(default_factory=Future)
    t: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """A background worker that hands batches of :class:`Request` to ``run``.

    ``run(batch)`` must resolve every future in ``batch``; any future it leaves pending
    gets the exception it raised (so no caller ever waits forever).
    """

    def __init__(
        self,
        run: Callable[[list[Request]], None],
        max_batch: int,
        max_wait: float,
        name: str = "edgeseq-pool",
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: deque[Request] = deque()
        self._counts: dict[Any, int] = {}  # pending requests per key
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Any, payload: Any) -> Future:
        req = Request(key, payload)
        with self._cond:
            if self._closing:
                raise StreamError(
                    "the pool is closed; expected submit() before close(). Create a new "
                    "StreamPool to keep streaming."
                )
            self._pending.append(req)
            self._counts[key] = self._counts.get(key, 0) + 1
            if len(self._counts) >= self.max_batch or len(self._pending) == 1:
                self._cond.notify()
        return req.future

    @property
    def busy(self) -> dict[Any, int]:
        """Pending requests per key (read-only: ``key in busy`` is safe from any thread)."""
        return self._counts

    def owns_current_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking requests; the worker finishes what is pending, then exits."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    # ------------------------------------------------------------------ worker
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return  # closing, and everything submitted has run
                deadline = self._pending[0].t + self.max_wait
                while not self._closing and len(self._counts) < self.max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._take()
            try:
                self._run(batch)
            except BaseException as exc:  # never leave a caller waiting
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)

    def _take(self) -> list[Request]:
        """The oldest request of up to ``max_batch`` distinct keys, keeping the rest in order."""
        batch: list[Request] = []
        keys: set[Any] = set()
        rest: deque[Request] = deque()
        for r in self._pending:
            if r.key in keys or len(batch) >= self.max_batch:
                rest.append(r)
                continue
            keys.add(r.key)
            batch.append(r)
            n = self._counts[r.key] - 1
            if n:
                self._counts[r.key] = n
            else:
                del self._counts[r.key]
        self._pending = rest
        return batch


class CallbackThread:
    """Runs user callbacks in the order posted, on one daemon thread, off the batcher.

    The thread starts on the first post and exits once it is shut down and idle; a post
    after that starts it again, so nothing posted is ever dropped. A callback that raises
    is logged (as :mod:`concurrent.futures` does) and the next one runs.
    """

    def __init__(self, name: str = "edgeseq-callbacks") -> None:
        self.name = name
        self._jobs: deque[tuple[Callable[..., Any], tuple]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            self._jobs.append((fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def owns_current_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def shutdown(self, wait: bool = True) -> None:
        """Run what is posted, then let the thread exit."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    self._thread = None  # a later post starts a new thread
                    return
                fn, args = self._jobs.popleft()
            try:
                fn(*args)
            except Exception:
                _LOG.exception("edgeseq: callback %r raised", fn)
