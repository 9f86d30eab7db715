"""The asynchronous front of :class:`~edgeseq.runtime.StreamPool`: ``submit`` and its worker.

A mixin of the pool (it uses the pool's lock, stream table, rows and ``_run``), kept apart
because it owns the threads: requests are micro-batched by a :class:`MicroBatcher`, run in
rounds of at most ``max_frames_per_call`` frames per stream (:mod:`._rounds`), resolved
outside the pool's lock, their callbacks handed off the worker; and a synchronous call on
a stream first waits for that stream's earlier requests (:meth:`SubmitFront._in_order`).
The worker never holds the pool between batches, so a pool dropped without ``shutdown()``
is collected and its finalizer stops the threads.

The batcher (and with it :mod:`concurrent.futures` and :mod:`logging`, about 0.7 MB of a
device's memory) is imported on the first ``submit``: a process that only calls
``pool.step`` never pays for it.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.runtime._rounds import join

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from concurrent.futures import Future

    from edgeseq.runtime._batcher import MicroBatcher, Request
    from edgeseq.runtime._engine import Engine
    from edgeseq.runtime._rows import RowStore
    from edgeseq.runtime._streams import Stream, StreamTable
    from edgeseq.runtime.snapshot import Snapshot

__all__ = ["SubmitFront"]


class SubmitFront:
    """``submit``, ``shutdown`` and call ordering, for :class:`~edgeseq.runtime.StreamPool`."""

    # the pool's, used here
    engine: Engine
    on_evict: Callable[[int, Snapshot], None] | None
    max_batch: int
    max_wait_ms: float
    _batcher: MicroBatcher | None
    _closed: bool
    _lock: threading.RLock
    _cap: int | None
    _table: StreamTable
    _rows: RowStore

    def _start_front(self) -> None:
        self._batcher = None
        self._workers = _Workers()  # stopped by shutdown(), or when the pool is collected
        weakref.finalize(self, self._workers.stop)
        self._closed = False

    def submit(self, stream_id: int, frames: Any) -> Future:
        """Queue one stream's frames; the future resolves to that stream's outputs.

        Thread-safe. Frames are checked and copied here (bad frames raise at once; the
        caller may reuse its buffer as soon as this returns); a stream's requests run in
        submission order; up to ``max_batch`` streams share a call. Done-callbacks run
        on the pool's callback thread (or the caller's, if added after the result).
        """
        self._check_alive()
        self._table.get(stream_id)
        checked = self._check(stream_id, frames, own=True)
        batcher = self._batcher
        if batcher is None:
            from edgeseq.runtime._batcher import MicroBatcher  # lazily, outside the lock

            with self._lock:
                self._check_alive()
                if self._batcher is None:
                    self._batcher = self._workers.batcher = MicroBatcher(
                        _run_batch,
                        self.max_batch,
                        self.max_wait_ms / 1000.0,
                        functools.partial(len, self._table.open),  # streams that could join
                    )
                batcher = self._batcher
        return batcher.submit(stream_id, checked, self)

    def _run_requests(self, batch: list[Request]) -> None:
        """One round of a batch of requests (the worker's job)."""
        # a request back for another round is already running
        live = [r for r in batch if r.done_frames or r.future.set_running_or_notify_cancel()]
        done: list[tuple[Request, Any, bool]] = []
        again: list[Request] = []
        batcher = self._batcher
        with self._lock:
            gone = self._sweep(keep=batcher.outstanding if batcher else ())
            ready: list[tuple[Request, Stream, np.ndarray]] = []
            for r in live:
                stream = self._table.open.get(r.key)
                if stream is None:
                    done.append((r, self._table.unknown(r.key), False))
                    continue
                chunk = r.payload[0]
                if self._cap is not None and len(chunk) > self._cap:  # this round's piece
                    if r.saved is None:
                        r.saved = self._save_streams([stream])
                    chunk = chunk[r.done_frames : r.done_frames + self._cap]
                ready.append((r, stream, chunk))
            try:
                outs = (
                    self._run([(r.key, st, c, r.payload[1]) for r, st, c in ready]) if ready else []
                )
            except Exception as exc:
                for r, st, _ in ready:
                    if r.saved is not None:  # undo its earlier rounds
                        self._restore_streams([st], r.saved)
                    done.append((r, exc, False))
            else:
                for (r, _, piece), out in zip(ready, outs):
                    r.done_frames += len(piece)
                    r.parts.append(out)
                    if r.done_frames < len(r.payload[0]):
                        again.append(r)
                    else:
                        done.append((r, join(self.engine, r.parts), True))
        for r in reversed(again):  # the remainder goes first in the next batch
            batcher.requeue(r)  # type: ignore[union-attr]
        for r, value, ok in done:  # resolve outside the lock: callbacks may call the pool
            r.parts = []
            if ok:
                r.future.set_result(value)
            else:
                r.future.set_exception(value)
        self._notify(gone)

    def _notify(self, gone: list[tuple[int, Snapshot | None]]) -> None:
        """Hand evicted streams to ``on_evict``: never under the lock, never on the worker."""
        hook = self.on_evict
        if not gone or hook is None:
            return
        batcher = self._batcher
        if batcher is not None and batcher.owns_current_thread():
            for sid, snap in gone:
                batcher.callbacks.post(hook, sid, snap)
            return
        for sid, snap in gone:
            try:
                hook(sid, snap)
            except Exception:
                import logging  # lazily: see above

                logging.getLogger("edgeseq.runtime").exception(
                    "edgeseq: on_evict hook %r raised", hook
                )

    def _in_order(self, keys: Iterable[Any] | None) -> None:
        """Wait until earlier submits of these streams (None: of all) have run."""
        batcher = self._batcher
        if batcher is not None and batcher.outstanding:
            batcher.wait_for(keys)

    def shutdown(self, wait: bool = True) -> None:
        """Finish pending submits and stop the worker; the pool takes no more calls."""
        self._closed = True
        if self._batcher is not None:
            self._batcher.shutdown(wait)


class _Workers:
    """The pool's threads, reachable by its finalizer without reaching the pool."""

    batcher: MicroBatcher | None = None

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.shutdown(wait=False)


def _run_batch(batch: list[Request]) -> None:
    """The worker's job: the pool comes with the requests, so the idle worker holds none."""
    batch[0].owner._run_requests(batch)
