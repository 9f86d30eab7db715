"""StreamPool: many independent streams of one model, stepped together in one call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError, StreamError
from edgeseq.runtime._engine import Engine, Outputs
from edgeseq.runtime._front import SubmitFront
from edgeseq.runtime._options import LoadOptions
from edgeseq.runtime._pool_rows import PoolRows
from edgeseq.runtime._pool_snapshots import PoolSnapshots
from edgeseq.runtime._pool_streams import Evicted, PoolStreams
from edgeseq.runtime._rounds import frames_cap, run_in_rounds
from edgeseq.runtime._rows import RowStore
from edgeseq.runtime._session import ModelSource
from edgeseq.runtime._streams import Stream, StreamTable
from edgeseq.runtime._window import Windower
from edgeseq.runtime.discover import StateSpec
from edgeseq.runtime.snapshot import Snapshot

__all__ = ["StreamPool"]

_INT = {int}
Item = tuple[Any, Stream, np.ndarray, bool]  # (stream id, stream, checked chunk, single)


class StreamPool(SubmitFront, PoolSnapshots, PoolStreams, PoolRows):
    """One model, many independent streams (sensors, users), stepped in batched calls.

    ``step({id: frames})`` gathers the streams' state rows on each pair's batch axis, runs
    ONE onnxruntime call (frame counts may differ: they are padded and passed through the
    model's ``lengths`` input; a model without one is called once per frame count),
    scatters the new rows back, and returns ``{id: outputs}`` exactly as separate
    :class:`~edgeseq.runtime.StreamingPredictor` s would. ``step_rows(ids, frames)`` is its
    array form (one frame per stream as one ``[N, ...]`` array, or ``T`` frames each as
    ``[N, T, ...]``, in; ``[N, ...]`` outputs out; no Python per stream). Stepping some of
    the open streams runs one call over just their rows. ``submit(id, frames)`` is the
    thread-safe asynchronous front: requests from many threads are micro-batched by a
    worker thread. Every call is all-or-nothing: a refused call changes no stream.

    Per stream, calls apply in the order they are made, whichever front they come
    through: ``step``, ``reset``, ``restore``, ``snapshot`` and ``close`` of a stream first
    wait until that stream's earlier ``submit`` requests have run. ``submit`` owns its
    frames once it returns (the caller may reuse its buffer), and values are checked as
    the model receives them (after the cast to its dtype and input scaling). Futures'
    done-callbacks never run on the worker thread. Stream ids are the exact ints
    ``open()`` returns. A pool dropped without :meth:`shutdown` stops its threads when it
    is garbage-collected (pending requests keep it alive until they have run).

    Parameters
    ----------
    model, device, threads, contract, state, constants, context, window, options
        As for :class:`~edgeseq.runtime.StreamingPredictor` (``options``: the others as one
        :class:`~edgeseq.runtime.LoadOptions`); with a window each stream keeps its own
        remainder, and streams that complete windows run in one batched call.
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
        ``submit`` runs a batch when this many streams are waiting (or every open stream
        is: with one open stream a request runs at once), or when the oldest request has
        waited ``max_wait_ms``.
    max_frames_per_call
        Frames of one stream in one batched call at most (rounded up to whole chunks of a
        fixed-chunk graph); the remainder runs in the next round (``step``: within the
        call; ``submit``: the next batch, with other streams' requests), so a long chunk
        never stalls the streams batched with it. Outputs and order are as one call's.
        Applies to edgeseq's stateful graphs; other models' calls run whole. None: no cap.
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
    ...     ys = pool.step_rows([b, a], np.stack([frame_b, frame_a]))  # [2, out]
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
        max_frames_per_call: int | None = 256,
        clock: Callable[[], float] = time.monotonic,
        contract: Contract | None = None,
        state: StateSpec | None = None,
        constants: Mapping[str, Any] | None = None,
        context: int | None = None,
        window: int | None = None,
        resident: bool | None = None,
        on_evict: Callable[[int, Snapshot], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        options: LoadOptions | None = None,
    ) -> None:
        loading = LoadOptions.given(
            options, device=device, threads=threads, contract=contract, state=state,
            constants=constants, context=context, window=window,
        )  # fmt: skip
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
        self.engine = engine = Engine(model, loading)
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
        self.options = loading
        self.max_streams = max_streams
        self.idle_timeout = idle_timeout
        self.on_evict = on_evict
        self.max_batch = min(max_batch or max_streams, max_streams)
        self.max_wait_ms = max_wait_ms
        self.max_frames_per_call = max_frames_per_call
        self._cap = frames_cap(max_frames_per_call, engine)
        self._clock = clock
        self._rows = RowStore(engine, max_streams, resident)
        self._table = StreamTable(max_streams, idle_timeout)
        self._mark = np.empty(max_streams, np.intp)  # step_rows' repeated-id check
        self._lock = threading.RLock()
        self._on_batch = on_batch
        self._start_front()  # submit's worker (started on first use) and finalizer

    # ------------------------------------------------------------------ stepping
    def step(self, frames: Mapping[int, Any]) -> dict[int, Outputs]:
        """Step the given streams in one batched call; return ``{id: outputs}``.

        Each value is one frame ``[F]`` or a chunk ``[T, F]`` of that stream; outputs are
        as :meth:`StreamingPredictor.step` returns them. If any id or frames are bad,
        nothing runs and no stream's state changes. Streams with pending ``submit``
        requests are stepped after those have run.
        """
        if not isinstance(frames, Mapping):
            raise InputError(
                f"step() expects a dict {{stream id: frames}}, got {type(frames).__name__}. "
                "For one stream: pool.step({sid: frames})."
            )
        self._in_order(frames)
        gone: Evicted = []
        try:
            with self._lock:
                self._check_alive()
                outs = self._step_frames(frames)
                if outs is not None:  # one good frame per stream: checked all at once
                    gone = self._sweep(keep=frames)
                    return dict(zip(frames, outs))
                items, longest = self._prepare(frames)
                gone = self._sweep(keep=frames)  # the streams named here count as used
                if self._cap is None or longest <= self._cap:
                    outs = self._run(items)
                else:
                    outs = run_in_rounds(
                        self._run,
                        self._save_streams,
                        self._restore_streams,
                        self.engine,
                        items,
                        self._cap,
                    )
        finally:
            self._notify(gone)
        return dict(zip(frames, outs))

    def _step_frames(self, frames: Mapping[Any, Any]) -> Sequence[Outputs] | None:
        """The many-streams hot path: open streams by exact int ids, one well-formed frame
        each, as whole arrays (rows, frames, outputs, counters). None: take :meth:`_prepare`
        (which names the stream at fault); nothing has changed then."""
        if self._windowed or not frames or set(map(type, frames)) != _INT:
            return None
        table = self._table
        rows = table.rows_of(frames)
        if rows is None:
            return None
        x = self.engine.frames.joined(list(frames.values()))
        if x is None:
            return None
        outs = self._rows.run_joined(rows, x)
        if outs is None:
            return None
        self._commit(frames, rows)  # type: ignore[arg-type]
        return outs

    def _prepare(self, frames: Mapping[Any, Any]) -> tuple[list[Item], int]:
        """Each stream and its checked frames; and the most frames any stream has."""
        table, fast, check = self._table, self.engine.frames.fast, self._check
        open_ = table.open
        items: list[Item] = []
        longest = 1
        for sid, f in frames.items():
            stream = open_.get(sid) if type(sid) is int else None
            if stream is None:
                stream = table.get(sid)  # numpy ints, or raises for unknown ids
            one = fast(f)  # a well-formed single frame: cheap
            if one is not None:
                items.append((sid, stream, one[None], True))
                continue
            chunk, single = check(sid, f)
            longest = max(longest, len(chunk))
            items.append((sid, stream, chunk, single))
        return items, longest

    def _check(self, sid: Any, frames: Any, own: bool = False) -> tuple[np.ndarray, bool]:
        one = self.engine.frames.fast(frames, own)
        if one is not None:
            return one[None], True
        try:
            return self.engine.frames.check(frames, own)
        except InputError as exc:
            raise InputError(f"stream {sid!r}: {exc}") from None

    def _run(self, items: list[Item]) -> list[Outputs]:
        """Run checked chunks in batched calls; commit every stream only if all succeeded."""
        if self._windowed:
            return self._run_windows(items)
        if items and self.engine.frames.fixed and all(s for *_, s in items):  # a frame each
            rows = np.fromiter([st.row for _, st, _, _ in items], np.intp, len(items))
            outs = list(self._rows.run_frames(rows, np.concatenate([c for *_, c, _ in items])))
            self._commit([sid for sid, *_ in items], rows)
            return outs
        outs = self._rows.run([(st.row, chunk, single) for _, st, chunk, single in items])
        self._table.used([(sid, st, len(c)) for sid, st, c, _ in items], self._clock())
        if self._on_batch is not None:
            self._on_batch(len(items), sum(len(chunk) for _, _, chunk, _ in items))
        return outs

    def _run_windows(self, items: list[Item]) -> list[Outputs]:
        """Each stream's complete windows, batched; the remainders wait for the next call."""
        taken = [self._windows[st.row].take(chunk) for _, st, chunk, _ in items]
        ready = [(st.row, r, False) for (_, st, _, _), (r, _, k) in zip(items, taken) if k]
        outs = iter(self._rows.run(ready) if ready else [])
        for (_, st, _, _), (_, rest, _) in zip(items, taken):
            self._windows[st.row].commit(rest)
        self._table.used([(sid, st, len(chunk)) for sid, st, chunk, _ in items], self._clock())
        if self._on_batch is not None and ready:
            self._on_batch(len(ready), sum(len(chunk) for _, chunk, _ in ready))
        return [next(outs) if k else self.engine.empty() for _, _, k in taken]

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ internals
    def _sweep(self, keep: Any = ()) -> Evicted:
        """Close the streams idle past the timeout, except those in ``keep`` (lock held);
        return them with their snapshots (when ``on_evict`` wants them) for :meth:`_notify`."""
        expired = self._table.expired(self._clock(), keep)
        gone: Evicted = []
        for sid, idle in expired:
            stream = self._table.open[sid]
            snap = self._snapshot(stream) if self.on_evict is not None else None
            why = f"evicted after {idle:.3g} s idle (idle_timeout={self.idle_timeout} s)"
            self._table.release(sid, why)
            gone.append((sid, snap))
        return gone

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
