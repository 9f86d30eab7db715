"""StreamPool: many independent streams of one model, stepped together in one call."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError, SnapshotError, StreamError
from edgeseq.runtime._batcher import MicroBatcher, Request
from edgeseq.runtime._engine import Engine, Outputs
from edgeseq.runtime._rows import RowStore
from edgeseq.runtime._session import ModelSource
from edgeseq.runtime.discover import StateSpec
from edgeseq.runtime.snapshot import PoolSnapshot, Snapshot, check_snapshot

__all__ = ["StreamPool"]

_POOL = object()  # close() without an id closes the pool
_REMEMBER = 4096  # closed/evicted ids kept for precise error messages


@dataclass
class _Stream:
    row: int  # row of the pool's state store
    frames_seen: int
    last_used: float


class StreamPool:
    """One model, many independent streams (sensors, users), stepped in batched calls.

    ``step({id: frames})`` gathers the streams' state rows on each pair's batch axis, runs
    ONE onnxruntime call (frame counts may differ: they are padded and passed through the
    model's ``lengths`` input; a model without one is called once per frame count),
    scatters the new rows back, and returns ``{id: outputs}`` exactly as separate
    :class:`~edgeseq.runtime.StreamingPredictor` s would. ``submit(id, frames)`` is the
    thread-safe asynchronous front: requests from many threads are micro-batched by a
    worker thread. Every call is all-or-nothing: a refused call changes no stream.

    Parameters
    ----------
    model, device, threads, contract, state, constants, context
        As for :class:`~edgeseq.runtime.StreamingPredictor`.
    max_streams
        Open streams at most; state is preallocated for this many rows.
    idle_timeout
        Seconds without a call after which a stream is closed (checked on open, step,
        submit batches and :meth:`evict_idle`). None keeps streams until closed.
    max_batch, max_wait_ms
        ``submit`` runs a batch when this many streams are waiting, or when the oldest
        request has waited this long.
    clock
        Seconds, monotonic; injectable for tests of idle eviction.
    resident
        Keep every stream's state on the device as one table and run all ``max_streams``
        rows each call (rows not stepped get zero frames and keep their state), so on a
        GPU state never crosses to the host between calls. None (default): on for non-CPU
        devices when the model allows it (an edgeseq export with a ``lengths`` input and no
        left context), off on CPU, where gathering the stepped rows is cheaper.

    Examples
    --------
    >>> with StreamPool("model.onnx", max_streams=256, idle_timeout=600) as pool:
    ...     a, b = pool.open(), pool.open()
    ...     out = pool.step({a: frame_a, b: chunk_b})    # {a: [out], b: [T, out]}
    ...     fut = pool.submit(a, frame_a)                 # from any thread
    ...     y = fut.result()
    """

    def __init__(
        self,
        model: ModelSource,
        max_streams: int = 256,
        device: str = "cpu",
        threads: int | None = None,
        idle_timeout: float | None = None,
        *,
        max_batch: int | None = None,
        max_wait_ms: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        contract: Contract | None = None,
        state: StateSpec | None = None,
        constants: Mapping[str, Any] | None = None,
        context: int | None = None,
        resident: bool | None = None,
    ) -> None:
        for name, value in (("max_streams", max_streams), ("max_batch", max_batch)):
            if name == "max_batch" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}.")
        if idle_timeout is not None and not idle_timeout > 0:
            raise InputError(
                f"idle_timeout must be positive seconds or None, got {idle_timeout!r}."
            )
        self.engine = engine = Engine(
            model,
            device,
            threads,
            contract=contract,
            state=state,
            constants=constants,
            context=context,
        )
        if not isinstance(engine.contract.frames.shape[0], str):
            raise InputError(
                f"the model's frames input has a fixed batch of {engine.contract.frames.shape[0]}"
                "; StreamPool needs a symbolic batch axis. Use one StreamingPredictor per "
                "stream, or re-export with a dynamic batch."
            )
        self.contract = engine.contract
        self.max_streams = max_streams
        self.idle_timeout = idle_timeout
        self.max_batch = min(max_batch or max_streams, max_streams)
        self.max_wait_ms = max_wait_ms
        self._clock = clock
        self._rows = RowStore(engine, max_streams, resident)
        self._streams: dict[int, _Stream] = {}
        self._free = list(range(max_streams - 1, -1, -1))
        self._next_id = 0
        self._gone: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.RLock()
        self._batcher: MicroBatcher | None = None
        self._closed = False

    # ------------------------------------------------------------------ streams
    def open(self, snapshot: Snapshot | bytes | None = None) -> int:
        """Open a stream at the initial state (or at ``snapshot``); return its id."""
        with self._lock:
            self._check_alive()
            checked = check_snapshot(snapshot, self.engine) if snapshot is not None else None
            self.evict_idle()
            if not self._free:
                raise StreamError(
                    f"the pool is full: {self.max_streams} streams open (max_streams="
                    f"{self.max_streams}), so no new stream can open. close() streams you are "
                    "done with, set idle_timeout to evict idle ones, or use a larger max_streams."
                )
            sid, self._next_id = self._next_id, self._next_id + 1
            stream = self._streams[sid] = _Stream(self._free.pop(), 0, self._clock())
            self._rows.write(stream.row)
            if checked is not None:
                self._load(stream, checked)
            return sid

    def close(self, stream_id: Any = _POOL) -> None:
        """Close stream ``stream_id``; without an id, close the pool (see :meth:`shutdown`)."""
        if stream_id is _POOL:
            self.shutdown()
            return
        with self._lock:
            self._get(stream_id)
            self._release(stream_id, "closed")

    def reset(self, stream_id: int) -> None:
        """Put one stream back at the initial state."""
        with self._lock:
            stream = self._get(stream_id)
            self._rows.write(stream.row)
            stream.frames_seen, stream.last_used = 0, self._clock()

    def evict_idle(self) -> list[int]:
        """Close streams idle for longer than ``idle_timeout``; return their ids."""
        if self.idle_timeout is None:
            return []
        with self._lock:
            now = self._clock()
            gone = [s for s, st in self._streams.items() if now - st.last_used > self.idle_timeout]
            for sid in gone:
                idle = now - self._streams[sid].last_used
                self._release(
                    sid, f"evicted after {idle:.3g} s idle (idle_timeout={self.idle_timeout} s)"
                )
            return gone

    @property
    def ids(self) -> list[int]:
        """Ids of the open streams."""
        with self._lock:
            return list(self._streams)

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    # ------------------------------------------------------------------ stepping
    def step(self, frames: Mapping[int, Any]) -> dict[int, Outputs]:
        """Step the given streams in one batched call; return ``{id: outputs}``.

        Each value is one frame ``[F]`` or a chunk ``[T, F]`` of that stream; outputs are
        as :meth:`StreamingPredictor.step` returns them. If any id or frames are bad,
        nothing runs and no stream's state changes.
        """
        if not isinstance(frames, Mapping):
            raise InputError(
                f"step() expects a dict {{stream id: frames}}, got {type(frames).__name__}. "
                "For one stream: pool.step({sid: frames})."
            )
        with self._lock:
            self._check_alive()
            self.evict_idle()
            prepared = [(self._get(sid), *self._check(sid, f)) for sid, f in frames.items()]
            outs = self._run(prepared)
        return dict(zip(frames, outs))

    def _check(self, sid: Any, frames: Any) -> tuple[np.ndarray, bool]:
        one = self.engine.frames.fast(frames)  # a well-formed single frame: cheap
        if one is not None:
            return one[None], True
        try:
            return self.engine.frames.check(frames)
        except InputError as exc:
            raise InputError(f"stream {sid!r}: {exc}") from None

    def _run(self, prepared: list[tuple[_Stream, np.ndarray, bool]]) -> list[Outputs]:
        """Run checked chunks in batched calls; commit every stream only if all succeeded."""
        outs = self._rows.run([(st.row, chunk, single) for st, chunk, single in prepared])
        now = self._clock()
        for stream, chunk, _ in prepared:
            stream.frames_seen += chunk.shape[0]
            stream.last_used = now
        return outs

    # ------------------------------------------------------------------ async front
    def submit(self, stream_id: int, frames: Any) -> Future:
        """Queue one stream's frames; the future resolves to that stream's outputs.

        Thread-safe. Frames are checked here (bad frames raise at once); a stream's
        requests run in submission order; up to ``max_batch`` streams share a call.
        """
        self._check_alive()
        if stream_id not in self._streams:
            raise self._unknown(stream_id)
        checked = self._check(stream_id, frames)
        if self._batcher is None:
            with self._lock:
                if self._batcher is None:
                    self._batcher = MicroBatcher(
                        self._run_requests, self.max_batch, self.max_wait_ms / 1000.0
                    )
        return self._batcher.submit(stream_id, checked)

    def _run_requests(self, batch: list[Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        done: list[tuple[Future, Any, bool]] = []
        with self._lock:
            self.evict_idle()
            ready = []
            for r in live:
                stream = self._streams.get(r.key)
                if stream is None:
                    done.append((r.future, self._unknown(r.key), False))
                else:
                    ready.append((r, stream))
            if ready:
                try:
                    outs = self._run([(s, *r.payload) for r, s in ready])
                    done += [(r.future, o, True) for (r, _), o in zip(ready, outs)]
                except Exception as exc:
                    done += [(r.future, exc, False) for r, _ in ready]
        for fut, value, ok in done:  # resolve outside the lock: callbacks may call the pool
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def shutdown(self, wait: bool = True) -> None:
        """Finish pending submits and stop the worker; the pool takes no more calls."""
        self._closed = True
        if self._batcher is not None:
            self._batcher.shutdown(wait)

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, stream_id: int) -> Snapshot:
        """One stream's state; restorable here, in another pool, or in a StreamingPredictor."""
        with self._lock:
            st = self._get(stream_id)
            states, ctx = self._rows.read(st.row)
            return Snapshot(self.engine.hash, states, st.frames_seen, ctx)

    def restore(self, stream_id: int, snapshot: Snapshot | bytes) -> None:
        """Continue stream ``stream_id`` from ``snapshot``; refuse another model's."""
        with self._lock:
            stream = self._get(stream_id)
            self._load(stream, check_snapshot(snapshot, self.engine))

    def snapshot_all(self) -> PoolSnapshot:
        """Every open stream by id; ``.to_bytes()`` / ``.save(path)`` persist it."""
        with self._lock:
            return PoolSnapshot(
                self.engine.hash, {s: self.snapshot(s) for s in self._streams}, self._next_id
            )

    def restore_all(self, snapshot: PoolSnapshot | bytes) -> None:
        """Replace every stream with those of a pool snapshot, keeping their ids."""
        if isinstance(snapshot, (bytes, bytearray, memoryview)):
            snapshot = PoolSnapshot.from_bytes(bytes(snapshot))
        if not isinstance(snapshot, PoolSnapshot):
            raise InputError(f"restore_all expects a PoolSnapshot, got {type(snapshot).__name__}.")
        if snapshot.contract_hash != self.engine.hash:
            raise SnapshotError(
                f"pool snapshot belongs to a model with contract {snapshot.contract_hash}; this "
                f"pool runs {self.engine.hash}. Restore it on a pool of the model that took it; "
                "no stream was changed."
            )
        with self._lock:
            checked = {s: check_snapshot(v, self.engine) for s, v in snapshot.streams.items()}
            if len(checked) > self.max_streams:
                raise StreamError(
                    f"the snapshot holds {len(checked)} streams; this pool has max_streams="
                    f"{self.max_streams}. Create the pool with max_streams >= {len(checked)}."
                )
            for sid in list(self._streams):
                self._release(sid, "replaced by restore_all()")
            for sid, c in checked.items():
                stream = self._streams[sid] = _Stream(self._free.pop(), 0, self._clock())
                self._load(stream, c)
                self._gone.pop(sid, None)
            self._next_id = max(self._next_id, snapshot.next_id, *(s + 1 for s in checked))

    # ------------------------------------------------------------------ internals
    def _load(self, stream: _Stream, checked: tuple) -> None:
        snap, states, ctx = checked
        self._rows.write(stream.row, states, ctx[0] if ctx is not None else None)
        stream.frames_seen, stream.last_used = snap.frames_seen, self._clock()

    def _get(self, sid: Any) -> _Stream:
        stream = self._streams.get(sid)
        if stream is None:
            raise self._unknown(sid)
        return stream

    def _unknown(self, sid: Any) -> StreamError:
        if sid in self._gone:
            return StreamError(
                f"stream {sid!r} was {self._gone[sid]}; expected an open stream id. open() a "
                "new stream (open(snapshot) resumes a saved one)."
            )
        some = list(self._streams)[:5]
        return StreamError(
            f"unknown stream id {sid!r}; expected an id returned by open() (open now: "
            f"{len(self._streams)}, e.g. {some}). Nothing was run."
        )

    def _release(self, sid: int, why: str) -> None:
        self._free.append(self._streams.pop(sid).row)
        self._gone[sid] = why
        if len(self._gone) > _REMEMBER:
            self._gone.popitem(last=False)

    def _check_alive(self) -> None:
        if self._closed:
            raise StreamError(
                "the pool is closed; expected calls before close(). Create a new StreamPool."
            )

    def __repr__(self) -> str:
        return (
            f"StreamPool(streams={len(self._streams)}/{self.max_streams}, "
            f"max_batch={self.max_batch}, cell={self.contract.model.cell})"
        )
