"""Micro-batching: collect requests from many threads, run them together on one worker.

Requests wait until a batch is full or the oldest has waited ``max_wait`` seconds, as
Triton's sequence batcher and sherpa-onnx's servers do. A batch is full at ``max_batch``
distinct keys, or as soon as every key that could join is waiting (``joinable()``: with
one open stream, a request runs at once). A batch holds at most one request per key
(stream), so each key's requests run in the order they were submitted; a request that
needs more rounds (``requeue``) goes back to the front of the line.

User code never runs on the worker: done-callbacks of the futures it resolves are handed
to a :class:`CallbackThread`, so a callback that blocks (say, on another request's result)
delays other callbacks, never the batching. :meth:`MicroBatcher.wait_for` lets a
synchronous call wait until a key's earlier requests have finished, which keeps each
key's calls in call order across both fronts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edgeseq.errors import StreamError

__all__ = ["CallbackThread", "MicroBatcher", "PoolFuture", "Request"]

_LOG = logging.getLogger("edgeseq.runtime")


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
            del fn, args  # hold nothing of the caller's while idle


class PoolFuture(Future):
    """A :class:`~concurrent.futures.Future` whose done-callbacks never run on the pool's
    worker thread: resolved there, they run on the pool's callback thread instead."""

    def __init__(self, batcher: MicroBatcher) -> None:
        super().__init__()
        self._batcher = batcher

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        batcher = self._batcher

        def deliver(future: Future) -> None:
            if batcher.owns_current_thread():
                batcher.callbacks.post(fn, future)
            else:  # added after the result: the caller's thread, as Future does
                fn(future)

        super().add_done_callback(deliver)


@dataclass(eq=False)
class Request:
    """One submitted call: the stream key, its checked payload, the caller's future, and
    its progress when it runs in several rounds."""

    key: Any
    payload: Any
    future: Future
    owner: Any = None  # what runs it (the pool): kept alive while the request is pending
    seq: int = 0
    t: float = field(default_factory=time.monotonic)
    done_frames: int = 0  # frames already run, in earlier rounds
    parts: list = field(default_factory=list)  # their outputs
    saved: Any = None  # the state before the first round, to roll back a failure


class MicroBatcher:
    """A background worker that hands batches of :class:`Request` to ``run``.

    ``run(batch)`` must resolve every future in ``batch`` or :meth:`requeue` its request;
    any future left pending gets the exception ``run`` raised (no caller waits forever).
    The worker holds no reference to what runs the requests between batches, so a pool
    dropped without ``shutdown()`` can be collected (its finalizer stops the worker).
    """

    def __init__(
        self,
        run: Callable[[list[Request]], None],
        max_batch: int,
        max_wait: float,
        joinable: Callable[[], int] = lambda: 1 << 30,
        name: str = "edgeseq-pool",
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.joinable = joinable
        self.callbacks = CallbackThread(name + "-callbacks")
        self._pending: deque[Request] = deque()
        self._counts: dict[Any, int] = {}  # queued requests per key
        self.outstanding: dict[Any, deque[int]] = {}  # per key: seqs queued or running
        self._seq = 0
        self._waiters = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Any, payload: Any, owner: Any = None) -> Future:
        req = Request(key, payload, PoolFuture(self), owner)
        with self._cond:
            if self._closing:
                raise StreamError(
                    "the pool is closed; expected submit() before close(). Create a new "
                    "StreamPool to keep streaming."
                )
            self._seq += 1
            req.seq = self._seq
            self._pending.append(req)
            self._counts[key] = self._counts.get(key, 0) + 1
            self.outstanding.setdefault(key, deque()).append(req.seq)
            if len(self._pending) == 1 or len(self._counts) >= self._limit():
                self._cond.notify()
        return req.future

    def requeue(self, req: Request) -> None:
        """Put a request that needs another round back at the front (worker only)."""
        with self._cond:
            self._pending.appendleft(req)
            self._counts[req.key] = self._counts.get(req.key, 0) + 1

    def wait_for(self, keys: Iterable[Any] | None) -> None:
        """Return once every request submitted so far for ``keys`` (None: any key) has
        finished; requests submitted meanwhile are not waited for."""
        with self._cond:
            queues = self.outstanding
            wanted = queues if keys is None else (k for k in keys if k in queues)
            targets = [(k, queues[k][-1]) for k in wanted]
            if not targets:
                return
            if self.owns_current_thread():
                raise StreamError("the pool's worker cannot wait for its own requests.")
            self._waiters += 1
            try:
                while any(k in queues and queues[k][0] <= last for k, last in targets):
                    self._cond.wait()
            finally:
                self._waiters -= 1

    def owns_current_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking requests; the worker finishes what is pending, then exits."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
        self.callbacks.shutdown(wait)

    # ------------------------------------------------------------------ worker
    def _limit(self) -> int:
        return max(1, min(self.max_batch, self.joinable()))

    def _loop(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return  # closing, and everything submitted has run
            self._process(batch)
            del batch  # hold no request (nor its owner) while idle

    def _next(self) -> list[Request] | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = self._pending[0].t + self.max_wait
            while not self._closing and len(self._counts) < self._limit():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def _process(self, batch: list[Request]) -> None:
        try:
            self._run(batch)
        except BaseException as exc:  # never leave a caller waiting
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
        with self._cond:
            for r in batch:
                if r.future.done():  # finished (not requeued for another round)
                    queue = self.outstanding[r.key]
                    queue.popleft()
                    if not queue:
                        del self.outstanding[r.key]
            if self._waiters:
                self._cond.notify_all()

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
