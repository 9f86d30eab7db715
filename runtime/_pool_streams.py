"""The streams of a :class:`~edgeseq.runtime.StreamPool`: open, close, reset, evict idle
ones, and which are open.

A mixin of the pool (it uses the pool's lock, stream table, rows and windows, and its
sweep of idle streams). Calls on a stream first wait for that stream's earlier ``submit``
requests (call order); streams that a sweep closes reach ``on_evict`` after the lock is
released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from edgeseq.runtime._streams import Stream, StreamTable, exact_id
from edgeseq.runtime.snapshot import Snapshot, check_snapshot

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine
    from edgeseq.runtime._rows import RowStore
    from edgeseq.runtime._window import Windower

__all__ = ["Evicted", "PoolStreams"]

_POOL = object()  # close() without an id closes the pool
Evicted = list[tuple[int, Snapshot | None]]  # streams a sweep closed, for on_evict


class PoolStreams:
    """``open``, ``close``, ``reset``, ``evict_idle``, ``ids``, ``len`` and ``in``."""

    # the pool's, used here
    engine: Engine
    _lock: threading.RLock
    _table: StreamTable
    _rows: RowStore
    _windowed: bool
    _windows: list[Windower]
    _clock: Callable[[], float]
    _in_order: Callable[[Iterable[Any] | None], None]
    _notify: Callable[[Evicted], None]
    _check_alive: Callable[[], None]
    _sweep: Callable[..., Evicted]
    _load: Callable[[Stream, Snapshot], None]
    shutdown: Callable[[], None]

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
        """Close stream ``stream_id`` (after its pending submits); without an id, close the
        pool (see :meth:`shutdown`)."""
        if stream_id is _POOL:
            self.shutdown()
            return
        self._in_order([stream_id])
        with self._lock:
            self._table.get(stream_id)
            self._table.release(stream_id, "closed")

    def reset(self, stream_id: int) -> None:
        """Put one stream back at the initial state (after its pending submits)."""
        self._in_order([stream_id])
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
