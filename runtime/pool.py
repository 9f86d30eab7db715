"""StreamPool: many independent streams of one model, stepped together in one call."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError, SnapshotError, StreamError
from edgeseq.runtime._batcher import CallbackThread, MicroBatcher, Request
from edgeseq.runtime._engine import Engine, Outputs
from edgeseq.runtime._rows import RowStore
from edgeseq.runtime._session import ModelSource
from edgeseq.runtime._streams import Stream, StreamTable, exact_id
from edgeseq.runtime._window import Windower
from edgeseq.runtime.discover import StateSpec
from edgeseq.runtime.snapshot import PoolSnapshot, Snapshot, check_snapshot

__all__ = ["StreamPool"]

_POOL = object()  # close() without an id closes the pool
Evicted = list[tuple[int, Snapshot | None]]  # streams a sweep closed, for on_evict
_LOG = logging.getLogger("edgeseq.runtime")


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
    model, device, threads, contract, state, constants, context, window
        As for :class:`~edgeseq.runtime.StreamingPredictor`; with a window each stream keeps
        its own remainder, and streams that complete windows run in one batched call.
    max_streams
        Open streams at most; state is preallocated for this many rows.
    idle_timeout
        Seconds without a call after which a stream is closed. Expired streams are swept
        at the start of every pool call (``open``, ``step``, ``submit`` batches, ``len``,
        ``in``, ``ids``, :meth:`evict_idle`); a call that names an expired stream before a
        sweep closed it counts as its use. A sweep costs O(expired streams), however many
        are open. None keeps streams until closed.
    on_evict
        ``on_evict(stream_id, snapshot)`` is called once for every stream closed for
        idleness, with its :class:`~edgeseq.runtime.Snapshot` (as :meth:`snapshot` gives
        it), so a server can persist the stream instead of losing it (``open(snapshot)``
        resumes it). It runs after the pool's lock is released, so it may call back into
        the pool: in the thread whose call swept the stream, or, for sweeps by the
        ``submit`` worker, on the pool's callback thread. Exceptions it raises are logged
        (logger ``edgeseq.runtime``), never raised into the call that swept.
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
    on_batch
        Called after every batched run (``step`` or a ``submit`` batch) with the number of
        streams and of frames it ran, e.g. for a server's batch-size metrics. It runs on
        the calling thread and must be quick.

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
        window: int | None = None,
        resident: bool | None = None,
        on_evict: Callable[[int, Snapshot], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
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
        if on_evict is not None and not callable(on_evict):
            raise InputError(
                f"on_evict must be a callable (stream_id, snapshot) or None, got {on_evict!r}."
            )
        self.engine = engine = Engine(
            model,
            device,
            threads,
            contract=contract,
            state=state,
            constants=constants,
            context=context,
            window=window,
        )
        spec = engine.contract.frames
        if spec.batch_axis is None:
            raise InputError(
                f"the model's frames input {spec.name!r} {spec.shape} has no batch axis (it "
                "takes one stream per call), so StreamPool cannot batch streams into one call. "
                "Use one StreamingPredictor per stream."
            )
        if not isinstance(spec.shape[spec.batch_axis], str):
            raise InputError(
                f"the model's frames input has a fixed batch of {spec.shape[spec.batch_axis]}"
                "; StreamPool needs a symbolic batch axis. Use one StreamingPredictor per "
                "stream, or re-export with a dynamic batch."
            )
        plan = engine.windows  # per row: samples waiting for a window (none without a window)
        self._windowed = plan is not None
        size = plan.window if plan is not None else 1
        self._windows = [
            Windower(size, engine.frames.dtype) for _ in range(max_streams if plan else 0)
        ]
        self.contract = engine.contract
        self.max_streams = max_streams
        self.idle_timeout = idle_timeout
        self.on_evict = on_evict
        self.max_batch = min(max_batch or max_streams, max_streams)
        self.max_wait_ms = max_wait_ms
        self._clock = clock
        self._rows = RowStore(engine, max_streams, resident)
        self._table = StreamTable(max_streams, idle_timeout)
        self._lock = threading.RLock()
        self._batcher: MicroBatcher | None = None
        self._callbacks = CallbackThread()
        self._closed = False
        self._on_batch = on_batch

    # ------------------------------------------------------------------ streams
    def open(self, snapshot: Snapshot | bytes | None = None) -> int:
        """Open a stream at the initial state (or at ``snapshot``); return its id."""
        gone: Evicted = []
        try:
            with self._lock:
                self._check_alive()
                checked = check_snapshot(snapshot, self.engine) if snapshot is not None else None
                gone = self._sweep()
                sid, stream = self._table.add(self._clock())
                self._rows.write(stream.row)
                if self._windowed:
                    self._windows[stream.row].reset()
                if checked is not None:
                    self._load(stream, checked)
                return sid
        finally:
            self._notify(gone)

    def close(self, stream_id: Any = _POOL) -> None:
        """Close stream ``stream_id``; without an id, close the pool (see :meth:`shutdown`)."""
        if stream_id is _POOL:
            self.shutdown()
            return
        with self._lock:
            self._table.get(stream_id)
            self._table.release(stream_id, "closed")

    def reset(self, stream_id: int) -> None:
        """Put one stream back at the initial state."""
        with self._lock:
            stream = self._table.get(stream_id)
            self._rows.write(stream.row)
            if self._windowed:
                self._windows[stream.row].reset()
            stream.frames_seen = 0
            self._table.touch([stream_id], self._clock())

    def evict_idle(self) -> list[int]:
        """Close streams idle for longer than ``idle_timeout`` (calling ``on_evict`` for
        each); return their ids, oldest first."""
        with self._lock:
            gone = self._sweep()
        self._notify(gone)
        return [sid for sid, _ in gone]

    @property
    def ids(self) -> list[int]:
        """Ids of the open streams (expired ones are swept first), in order of opening."""
        with self._lock:
            gone = self._sweep()
            ids = list(self._table.open)
        self._notify(gone)
        return ids

    def __len__(self) -> int:
        """Open streams (expired ones are swept first)."""
        with self._lock:
            gone = self._sweep()
            n = len(self._table)
        self._notify(gone)
        return n

    def __contains__(self, stream_id: object) -> bool:
        """Whether ``stream_id`` is an open stream (an exact int id; expired ones are swept)."""
        with self._lock:
            gone = self._sweep()
            sid = exact_id(stream_id)
            found = sid is not None and sid in self._table.open
        self._notify(gone)
        return found

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
        gone: Evicted = []
        try:
            with self._lock:
                self._check_alive()
                get = self._table.get
                prepared = [(sid, get(sid), *self._check(sid, f)) for sid, f in frames.items()]
                gone = self._sweep(keep=frames)  # the streams named here count as used
                outs = self._run(prepared)
        finally:
            self._notify(gone)
        return dict(zip(frames, outs))

    def _check(self, sid: Any, frames: Any) -> tuple[np.ndarray, bool]:
        one = self.engine.frames.fast(frames)  # a well-formed single frame: cheap
        if one is not None:
            return one[None], True
        try:
            return self.engine.frames.check(frames)
        except InputError as exc:
            raise InputError(f"stream {sid!r}: {exc}") from None

    def _run(self, prepared: list[tuple[int, Stream, np.ndarray, bool]]) -> list[Outputs]:
        """Run checked chunks in batched calls; commit every stream only if all succeeded."""
        if self._windowed:
            return self._run_windows(prepared)
        outs = self._rows.run([(st.row, chunk, single) for _, st, chunk, single in prepared])
        self._table.used([(sid, st, len(chunk)) for sid, st, chunk, _ in prepared], self._clock())
        if self._on_batch is not None:
            self._on_batch(len(prepared), sum(len(chunk) for _, _, chunk, _ in prepared))
        return outs

    def _run_windows(self, prepared: list[tuple[int, Stream, np.ndarray, bool]]) -> list[Outputs]:
        """Each stream's complete windows, batched; the remainders wait for the next call."""
        taken = [self._windows[st.row].take(chunk) for _, st, chunk, _ in prepared]
        ready = [(st.row, r, False) for (_, st, _, _), (r, _, k) in zip(prepared, taken) if k]
        outs = iter(self._rows.run(ready) if ready else [])
        for (_, st, _, _), (_, rest, _) in zip(prepared, taken):
            self._windows[st.row].commit(rest)
        self._table.used([(sid, st, len(chunk)) for sid, st, chunk, _ in prepared], self._clock())
        if self._on_batch is not None and ready:
            self._on_batch(len(ready), sum(len(chunk) for _, chunk, _ in ready))
        return [next(outs) if k else self.engine.empty() for _, _, k in taken]

    # ------------------------------------------------------------------ async front
    def submit(self, stream_id: int, frames: Any) -> Future:
        """Queue one stream's frames; the future resolves to that stream's outputs.

        Thread-safe. Frames are checked here (bad frames raise at once); a stream's
        requests run in submission order; up to ``max_batch`` streams share a call.
        """
        self._check_alive()
        self._table.get(stream_id)
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
        gone: Evicted = []
        with self._lock:
            pending = self._batcher.busy if self._batcher is not None else {}
            gone = self._sweep(keep=_Either({r.key for r in batch}, pending))
            ready = []
            for r in live:
                stream = self._table.open.get(r.key)
                if stream is None:
                    done.append((r.future, self._table.unknown(r.key), False))
                else:
                    ready.append((r, stream))
            if ready:
                try:
                    outs = self._run([(r.key, s, *r.payload) for r, s in ready])
                    done += [(r.future, o, True) for (r, _), o in zip(ready, outs)]
                except Exception as exc:
                    done += [(r.future, exc, False) for r, _ in ready]
        for fut, value, ok in done:  # resolve outside the lock: callbacks may call the pool
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._notify(gone)

    def shutdown(self, wait: bool = True) -> None:
        """Finish pending submits and stop the worker; the pool takes no more calls."""
        self._closed = True
        if self._batcher is not None:
            self._batcher.shutdown(wait)
        self._callbacks.shutdown(wait)

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, stream_id: int) -> Snapshot:
        """One stream's state; restorable here, in another pool, or in a StreamingPredictor."""
        with self._lock:
            return self._snapshot(self._table.get(stream_id))

    def restore(self, stream_id: int, snapshot: Snapshot | bytes) -> None:
        """Continue stream ``stream_id`` from ``snapshot``; refuse another model's."""
        with self._lock:
            stream = self._table.get(stream_id)
            self._load(stream, check_snapshot(snapshot, self.engine))
            self._table.touch([stream_id], stream.last_used)

    def snapshot_all(self) -> PoolSnapshot:
        """Every open stream by id; ``.to_bytes()`` / ``.save(path)`` persist it."""
        with self._lock:
            return PoolSnapshot(
                self.engine.hash,
                {s: self._snapshot(st) for s, st in self._table.open.items()},
                self._table.next_id,
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
            table = self._table
            for sid in list(table.open):
                table.release(sid, "replaced by restore_all()")
            for sid, c in checked.items():
                self._load(table.add(self._clock(), sid)[1], c)
            table.next_id = max(table.next_id, snapshot.next_id, *(s + 1 for s in checked))

    # ------------------------------------------------------------------ internals
    def _snapshot(self, stream: Stream) -> Snapshot:
        states, ctx = self._rows.read(stream.row)
        pend = self._windows[stream.row].pending.copy() if self._windowed else None
        return Snapshot(self.engine.hash, states, stream.frames_seen, ctx, pending=pend)

    def _load(self, stream: Stream, checked: tuple) -> None:
        snap, states, ctx = checked
        self._rows.write(stream.row, states, ctx[0] if ctx is not None else None)
        stream.frames_seen, stream.last_used = snap.frames_seen, self._clock()
        if self._windowed:
            windower = self._windows[stream.row]
            pend = snap.pending if snap.pending is not None else windower.pending[:0]
            windower.commit(np.array(pend, dtype=windower.pending.dtype))

    def _sweep(self, keep: Container[int] = ()) -> Evicted:
        """Close the streams idle past the timeout, except ``keep`` (lock held); return them
        with their snapshots (when ``on_evict`` wants them) for :meth:`_notify`."""
        expired = self._table.expired(self._clock(), keep)
        gone: Evicted = []
        for sid, idle in expired:
            stream = self._table.open[sid]
            snap = self._snapshot(stream) if self.on_evict is not None else None
            why = f"evicted after {idle:.3g} s idle (idle_timeout={self.idle_timeout} s)"
            self._table.release(sid, why)
            gone.append((sid, snap))
        return gone

    def _notify(self, gone: Evicted) -> None:
        """Hand evicted streams to ``on_evict``: never under the lock, never on the worker."""
        hook = self.on_evict
        if not gone or hook is None:
            return
        if self._batcher is not None and self._batcher.owns_current_thread():
            for sid, snap in gone:
                self._callbacks.post(hook, sid, snap)
            return
        for sid, snap in gone:
            _call_logged(hook, sid, snap)

    def _check_alive(self) -> None:
        if self._closed:
            raise StreamError(
                "the pool is closed; expected calls before close(). Create a new StreamPool."
            )

    def __repr__(self) -> str:
        return (
            f"StreamPool(streams={len(self._table)}/{self.max_streams}, "
            f"max_batch={self.max_batch}, cell={self.contract.model.cell})"
        )


class _Either:
    """Membership in either of two containers, without building their union."""

    __slots__ = ("a", "b")

    def __init__(self, a: Container[Any], b: Container[Any]) -> None:
        self.a, self.b = a, b

    def __contains__(self, key: object) -> bool:
        return key in self.a or key in self.b


def _call_logged(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        _LOG.exception("edgeseq: on_evict hook %r raised", fn)
