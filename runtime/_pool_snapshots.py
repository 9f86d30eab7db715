"""Snapshots of a :class:`~edgeseq.runtime.StreamPool`'s streams: take, restore, persist.

A mixin of the pool (it uses the pool's lock, stream table, rows and windows). Every call
on a stream first waits for that stream's earlier ``submit`` requests (call order), and a
restore is checked against the model before any state changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.errors import InputError, SnapshotError, StreamError
from edgeseq.runtime._streams import Stream, StreamTable, exact_id
from edgeseq.runtime.snapshot import PoolSnapshot, Snapshot, check_snapshot, pool_snapshot_for

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine
    from edgeseq.runtime._rows import RowStore
    from edgeseq.runtime._window import Windower

__all__ = ["PoolSnapshots"]


class PoolSnapshots:
    """``snapshot``/``restore`` of one stream and ``snapshot_all``/``restore_all``."""

    # the pool's, used here
    engine: Engine
    max_streams: int
    _lock: threading.RLock
    _table: StreamTable
    _rows: RowStore
    _windowed: bool
    _windows: list[Windower]
    _clock: Callable[[], float]
    _in_order: Callable[[Iterable[Any] | None], None]

    def snapshot(self, stream_id: int) -> Snapshot:
        """One stream's state (after its pending submits); restorable here, in another
        pool, or in a StreamingPredictor."""
        self._in_order([stream_id])
        with self._lock:
            return self._snapshot(self._table.get(stream_id))

    def restore(self, stream_id: int, snapshot: Snapshot | bytes) -> None:
        """Continue stream ``stream_id`` from ``snapshot``; refuse another model's."""
        self._in_order([stream_id])
        with self._lock:
            stream = self._table.get(stream_id)
            self._load(stream, check_snapshot(snapshot, self.engine))
            self._table.touch([stream_id], stream.last_used)

    def snapshot_all(self) -> PoolSnapshot:
        """Every open stream by id; ``.to_bytes()`` / ``.save(path)`` persist it."""
        self._in_order(None)
        with self._lock:
            return PoolSnapshot(
                self.engine.hash,
                {s: self._snapshot(st) for s, st in self._table.open.items()},
                self._table.next_id,
            )

    def restore_all(self, snapshot: PoolSnapshot | bytes) -> None:
        """Replace every stream with those of a pool snapshot, keeping their ids."""
        if isinstance(snapshot, (bytes, bytearray, memoryview)):
            snapshot = pool_snapshot_for(snapshot, self.engine)
        if not isinstance(snapshot, PoolSnapshot):
            raise InputError(f"restore_all expects a PoolSnapshot, got {type(snapshot).__name__}.")
        bad = [s for s in snapshot.streams if exact_id(s) is None or s < 0]
        if bad or exact_id(snapshot.next_id) is None:
            raise SnapshotError(
                f"pool snapshot stream ids must be non-negative ints, got {bad[:3] or None} "
                f"(next_id {snapshot.next_id!r}); expected a PoolSnapshot from snapshot_all(). "
                "No stream was changed."
            )
        if snapshot.contract_hash != self.engine.hash:
            raise SnapshotError(
                f"pool snapshot belongs to a model with contract {snapshot.contract_hash}; this "
                f"pool runs {self.engine.hash}. Restore it on a pool of the model that took it; "
                "no stream was changed."
            )
        self._in_order(None)
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

    def _save_streams(self, streams: Sequence[Stream]) -> list[Snapshot]:
        """What :meth:`_restore_streams` needs to undo calls that ran (rounds)."""
        return [self._snapshot(st) for st in streams]

    def _restore_streams(self, streams: Sequence[Stream], saved: list[Snapshot]) -> None:
        pairs = self.engine.pairs
        for stream, snap in zip(streams, saved):
            ctx = snap.context
            self._load(stream, (snap, [snap.states[p.input] for p in pairs], ctx))
